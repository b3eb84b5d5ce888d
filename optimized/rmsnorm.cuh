// RMSNorm on the GPU: the CUDA twin of reference/rmsnorm.h (same params struct, same
// semantics). Spec: docs/v4-architecture.md §2.1 (q_norm and the per-head unweighted RMS),
// §2.2 (kv_norm), §2.3 (compressor norm), §3.1 (attn/ffn norm).
//
//   y[r, c] = x[r, c] / sqrt(mean_c'(x[r, c']^2) + eps) * (w ? w[c] : 1)
//
// Shapes: x [R, d], w [d] or nullptr, y [R, d]; every pointer is a DEVICE pointer, rows
// strided by x.ld / y.ld. Overwrites y; y may alias x exactly (in place), but must not
// overlap it otherwise. The per-head RMS of §2.1 step 3 is this op over q viewed as
// [T*H, d] = [T*64, 512] with w = nullptr; the model-width norms have d = 4096.
//
// Precision: FP32 in, FP32 accumulation of the sum of squares, FP32 out. The reduction order
// is fixed by the launch geometry, so reruns are bitwise identical.
//
// Launch geometry: one block of kRmsNormThreads (256 = 8 warps) per row, grid [R]. Each
// thread accumulates x^2 over columns c = tid, tid + 256, ... (coalesced); each warp reduces
// with __shfl_xor_sync, the 8 warp sums meet in shared memory and every thread adds them in
// the same order; then each thread writes its columns. All reads of x finish (barrier)
// before the first write of y, which is what makes y == x safe.
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError); a failed launch throws dsv4::cuda::CudaError. The launch is
// asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "reference/rmsnorm.h"

namespace dsv4::cuda {

inline constexpr int kRmsNormThreads = 256;

void rmsnorm(const RmsNormParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
