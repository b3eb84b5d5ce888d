// mHC pre-mix and the final head's reduction on the GPU: the CUDA twins of reference/hc_pre.h
// (same params structs, same semantics). Spec: docs/v4-architecture.md §3.1.
//
// hc_pre, per token t, X = its n residual streams, v = vec(X) stream-major (n*D values):
//   rs  = 1 / sqrt(mean(v^2) + norm_eps)
//   mu  = rs * (Phi v)                                [2n + n^2]
//   pre_j  = sigmoid(alpha0 mu_j + b_j) + eps           j < n
//   post_j = 2 sigmoid(alpha1 mu_{n+j} + b_{n+j})
//   comb   = sinkhorn(alpha2 mu_{2n + n i + k} + b_{2n + n i + k})   [n, n], (i, k) row-major
//   u      = sum_j pre_j X_j                           [D]
// hc_head (§3.1 last line): Phi [n, n*D], b [n], alpha [1]; pre as above, u = sum_j pre_j X_j.
//
// Shapes: x [T, n*D] (row stride x.ld), fn = Phi [2n+n^2, n*D] (hc_head: [n, n*D]) dense,
// base [2n+n^2] ([n]), scale [3] ([1]) -> u [T, D], post [T, n], comb [T, n*n] (row strides
// .ld). Every pointer is a DEVICE pointer. Overwrites u, post, comb; they must not overlap x or
// the weights. Real shapes: n = 4 (kHcMult), D = 4096 (V4-Flash) / 7168 (V4-Pro), so n*D =
// 16384 / 28672 and Phi has 24 rows; iters = 20.
//
// Precision: FP32 in, FP32 accumulation (fmaf), FP32 out. Each thread accumulates its columns
// c = tid, tid + 256, ... of every dot product and of the sum of squares in order; the 256
// partial sums meet in a fixed tree (warp butterfly, then the 8 warp sums in order). The
// affine steps (alpha mu + b) and u are fused multiply-adds, u in stream order; the Sinkhorn
// step is optimized/sinkhorn_warp.cuh (the reference's order of every sum and division).
// Reruns are bitwise identical, and a token's results do not depend on T or on the tile it
// lands in (every tile size gives each (token, row) sum the same order).
//
// Launch geometry: one kernel, kHcPreThreads (256 = 8 warps) per block, each block a tile of
// tokens: kHcPreWideTile (4) tokens when T >= kHcPreWideMinTokens (enough tiles to fill the
// GPU; each Phi element read from L2 then serves 4 tokens), else 1 token (more blocks for
// decode-sized T). Per block: (1) every thread streams its columns of the tile's x rows and of
// the 2n+n^2 Phi rows, accumulating tile x (2n+n^2 + 1) sums in registers; (2) the block
// reduction above, into shared memory (barrier); (3) warp w finishes token w of the tile: rs,
// pre (into shared memory), post, and the Sinkhorn matrix (one lane per entry); barrier;
// (4) all threads form u over the tile's rows (the x rows are read again, from L2).
// Phi is read from L2 once per tile: for V4-Flash prefill that is 24/4 = 6 times the bytes of
// x; a tensor-core GEMM (cuBLAS) would cut that, at the price of a workspace for mu.
//
// Limits: n <= kHcPreMaxN = 4 (the per-thread accumulators are sized for 2n+n^2 <= 24).
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError), plus the GPU limits; a failed launch throws dsv4::cuda::CudaError. The
// launch is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/hc_pre.h"

namespace dsv4::cuda {

inline constexpr int kHcPreThreads = 256;
inline constexpr int64_t kHcPreMaxN = 4;
inline constexpr int kHcPreWideTile = 4;
inline constexpr int64_t kHcPreWideMinTokens = 1024;

void hc_pre(const HcPreParams<float>& p, cudaStream_t stream = 0);
void hc_head(const HcHeadParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
