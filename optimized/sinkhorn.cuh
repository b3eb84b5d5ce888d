// Sinkhorn-Knopp normalisation of the mHC mixing matrices on the GPU: the CUDA twin of
// reference/sinkhorn.h (same params struct, same semantics). Spec: docs/v4-architecture.md
// §3.1 step 5. The iteration sequence itself is the semantics:
//   M <- row_softmax(L) + eps
//   M <- M / (colsum(M) + eps)
//   repeat iters - 1 times:  M <- M / (rowsum(M) + eps);  M <- M / (colsum(M) + eps)
//
// Shapes: logits [R, n, n], m [R, n, n] (row-major n x n per item, dense); both DEVICE
// pointers. Overwrites m; m may alias logits exactly (in place), but must not overlap it
// otherwise. mHC has n = 4 (kHcMult) and iters = 20 (kSinkhornIters); R = tokens.
//
// Precision: FP32, every sum formed in the reference's order (from 0, increasing index) and
// every division IEEE-rounded, so the only difference to ref::sinkhorn<float> is expf against
// std::exp (an ulp or two), carried through the 2*iters normalisations. Deterministic.
//
// Launch geometry: one warp per item, kSinkhornThreads (256 = 8 items) per block, grid
// [ceil(R / 8)]; lane i*n + k holds entry (i, k) (optimized/sinkhorn_warp.cuh), so n*n <= 32:
// n <= kSinkhornMaxN = 5. Each lane reads its logit before any write, and no two warps share
// an item, which is what makes m == logits safe.
//
// Errors: bad parameters are rejected on the host before any launch, with the reference's
// messages (dsv4::InputError), plus the GPU limit on n; a failed launch throws
// dsv4::cuda::CudaError. The launch is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/sinkhorn.h"

namespace dsv4::cuda {

inline constexpr int kSinkhornThreads = 256;
inline constexpr int64_t kSinkhornMaxN = 5;

void sinkhorn(const SinkhornParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
