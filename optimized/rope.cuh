// Rotary position embedding on the GPU: the CUDA twin of reference/rope.h (same params
// struct, same semantics). Spec: docs/v4-architecture.md §2.7 (V4: partial, interleaved, the
// last 64 dims of each head; θ 10000 on window-only layers, θ 160000 with YaRN ×16 on the
// compressed ones), §1.2 and §2.10 (V3 / V3.2 tables, half_split on the first 64 dims).
//
//   f_i  = rope_inv_freq(cfg)[i], i < d_r/2        (θ^(-2i/d_r) with the YaRN ramp, in double)
//   p    = pos0 + r * pos_step;  a_i = (inverse ? -1 : 1) * p * f_i
//   (x[j0], x[j1]) <- (x0 cos a_i - x1 sin a_i, x0 sin a_i + x1 cos a_i) * attn_factor
//   j0, j1 = start + 2i, start + 2i + 1 (interleaved) or start + i, start + i + d_r/2
//   (half_split); start = head_dim - d_r (placement last) or 0 (first), in every head.
//
// Shapes: x [R, heads * head_dim], rotated in place; x is a DEVICE view, rows strided by x.ld.
// head_dim = 0 means x.cols / heads. Real shapes: q [T, 64 * 512] (Flash) or [T, 128 * 512]
// (Pro) with heads = 64 / 128; a KV or compressed entry [T, 512] with heads = 1.
//
// Precision, matching the reference's numerics: the frequency table is the reference's own
// (rope_inv_freq, computed on the HOST in double once per launch and passed by value in the
// kernel parameters, no device allocation); the angle p * f_i and its sin and cos are computed
// on the DEVICE in double (CUDA's sincos: within 2 ulp of double, the reference's glibc within
// 1), multiplied by attn_factor in double and rounded to float, exactly the reference's
// expression order; the rotation is FP32 (4 multiplies, 2 adds, possibly fused), as the
// reference's. Each output is a pure function of its pair: reruns are bitwise identical.
//
// Launch geometry: one block per row, grid [R]; min(256, pairs rounded up to a warp) threads,
// pairs = heads * d_r/2. The first d_r/2 threads (looping if fewer) compute the row's cos and
// sin into d_r floats of dynamic shared memory; a barrier; then each thread rotates pairs
// k = tid, tid + blockDim, ... (head k / (d_r/2), pair k % (d_r/2)), reading both values before
// writing them back, so no other thread touches them.
//
// Errors: the reference's checks with its messages (heads * head_dim = x.cols, rope_dim <=
// head_dim, rope_dim even and positive, theta > 1, yarn_orig > 0 with YaRN) on the host before
// any launch (dsv4::InputError), plus this twin's limit rope_dim <= kRopeMaxDim (the table
// travels in the kernel's parameters); a failed launch throws dsv4::cuda::CudaError. The
// launch is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/rope.h"

namespace dsv4::cuda {

// Largest rope_dim: the d_r/2 double frequencies are a kernel parameter (2 KiB at 512, inside
// the 4 KiB parameter space). Every table of the spec has d_r = 64.
inline constexpr int64_t kRopeMaxDim = 512;
inline constexpr int kRopeMaxThreads = 256;

void rope(const RopeParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
