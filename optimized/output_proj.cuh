// Output path of a V4 attention layer on the GPU: the CUDA twin of ref::output_proj
// (reference/output_proj.h; same params struct, same semantics). Spec: docs/v4-architecture.md
// §2.6, §2.7 (RoPE), §9.4 (act_quant).
//
//   o_h[d - d_r, d) <- RoPE at angle -p (inverse), row position p = pos0 + r   (on a copy of o)
//   u_k = Wo_a^(k) [o_{k*H/g} ; ... ; o_{(k+1)*H/g - 1}]   k = 0..g-1, heads grouped
//         contiguously; Wo_a^(k) = rows [k*r, (k+1)*r) of wo_a                [r = o_rank]
//   y   = Wo_b [u_0; ...; u_{g-1}]
// act_quant: FP8 round trip (1x128) of u before Wo_b (wo_a's input is not quantised, §9.4).
//
// Shapes: o [T, H*d] (row stride o.ld), wo_a [g*r, (H/g)*d], wo_b [D, g*r] -> y [T, D] (row
// stride y.ld). Every pointer is a DEVICE pointer. Real shapes: Flash H 64, g 8, D 4096;
// Pro H 128, g 16, D 7168; d 512, r 1024.
//
// Precision: FP32. The grouped wo_a is one cublasSgemmStridedBatched over the g groups (the
// block-diagonal weight never materialised), wo_b a cublasSgemm (optimized/linear.cuh: default
// math mode, no TF32); RoPE and the FP8 round trip are the GPU twins rope and quant_fp8 (the
// latter bitwise the reference's quantiser). Reruns are bitwise identical.
//
// Launch geometry: cudaMemcpy2DAsync o -> workspace [T, H*d] (dense); rope (inverse) grid [T];
// strided-batched SGEMM (g batches) -> u [T, g*r]; [act_quant: quant_fp8 of u in place];
// SGEMM -> y.
//
// Errors: the reference's checks and messages (o columns = H*d, g divides H, y rows = T; the
// reference checks the last after computing) plus what its helper rope would reject (rope_dim
// <= head_dim, the RoPE table), and this twin's limits (positive head_dim, o_rank and D,
// non-null weights, rope_dim <= kRopeMaxDim, cuBLAS's int range, the workspace's capacity),
// all on the host before any device work (dsv4::InputError); a failed launch or cuBLAS call
// throws dsv4::cuda::CudaError. Asynchronous on `stream`, except the one-off overload.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "reference/output_proj.h"

namespace dsv4::cuda {

// Scratch of output_proj for up to max_tokens rows: the rotated copy of o [max_tokens, H*d],
// u [max_tokens, g*r] and the cuBLAS handle. One per stream that runs the op.
class OutputProjWorkspace {
 public:
  OutputProjWorkspace(int64_t max_tokens, int64_t o_width, int64_t u_width);
  OutputProjWorkspace(const OutputProjWorkspace&) = delete;
  OutputProjWorkspace& operator=(const OutputProjWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t o_width() const { return o_width_; }  // H*d
  int64_t u_width() const { return u_width_; }  // g*r

 private:
  friend void output_proj(const OutputProjParams<float>&, OutputProjWorkspace&, cudaStream_t);
  int64_t max_tokens_, o_width_, u_width_;
  DeviceBuffer<float> o_, u_;
  BlasHandle blas_;
};

void output_proj(const OutputProjParams<float>& p, OutputProjWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs and waits for `stream`.
void output_proj(const OutputProjParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
