// LayerNorm with weight and bias on the GPU: the CUDA twin of reference/layernorm.h (same
// params struct, same semantics). Spec: docs/v4-architecture.md §2.10 (the V3.2 DSA indexer's
// key norm).
//
//   mu = mean_c x[r, c],  var = mean_c (x[r, c] - mu)^2            (biased, two passes)
//   y[r, c] = (x[r, c] - mu) / sqrt(var + eps) * (w ? w[c] : 1) + (b ? b[c] : 0)
//
// Shapes: x [R, d], w [d] or nullptr, b [d] or nullptr, y [R, d]; every pointer is a DEVICE
// pointer, rows strided by x.ld / y.ld. Overwrites y; y may alias x exactly (in place), but
// must not overlap it otherwise. The V3.2 indexer key norm has d = 128.
//
// Precision: FP32 in, FP32 accumulation of both sums (the mean, then the squared deviations
// from it, as the reference does: no one-pass E[x^2] - mu^2 cancellation), FP32 out. The
// reduction order is fixed by the launch geometry, so reruns are bitwise identical.
//
// Launch geometry: one block of kLayerNormThreads (256 = 8 warps) per row, grid [R]. Each
// thread accumulates its columns c = tid, tid + 256, ... (coalesced); each warp reduces with
// __shfl_xor_sync; the 8 warp sums meet in shared memory and every thread adds them in the
// same order. Two such block sums (mean, variance), each ending in a barrier so the shared
// slots can be reused; then each thread writes its columns. All reads of x for the sums finish
// before the first write of y, and the last pass reads x[c] before writing y[c] in the same
// thread, which is what makes y == x safe.
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError); a failed launch throws dsv4::cuda::CudaError. The launch is
// asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "reference/layernorm.h"

namespace dsv4::cuda {

inline constexpr int kLayerNormThreads = 256;

void layernorm(const LayerNormParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
