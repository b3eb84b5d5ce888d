// mHC post-mix on the GPU: the CUDA twin of reference/hc_post.h (same params struct, same
// semantics). Spec: docs/v4-architecture.md §3.1 ("Post-mix").
//
//   y_k = post_k f + sum_j comb[j, k] X_j        k = 0..n-1
// (column k of comb mixes the old streams into new stream k).
//
// Shapes: x [T, n*D], f [T, D], post [T, n], comb [T, n*n] -> y [T, n*D], each with its own row
// stride (.ld); every pointer is a DEVICE pointer. Overwrites y; y must not overlap x, f, post
// or comb. Real shapes: n = 4 (kHcMult), D = 4096 (V4-Flash) / 7168 (V4-Pro).
//
// Precision: FP32: post_k * f, then one fused multiply-add per stream, j = 0..n-1 (the
// reference's order; its host build, -mfma with GCC's default contraction, fuses the same
// operations). Deterministic.
//
// Launch geometry: grid [T, ceil(D / 256)], kHcPostThreads (256) per block; block (t, b),
// thread i handles column c = 256 b + i of token t: it reads f[t, c] and the n stream values
// X_j[c] once (coalesced) and writes the n outputs y_k[c]. post and comb of the token are read by
// every thread (broadcast loads from L1).
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError), plus the GPU limits (n <= kHcPostMaxN, T < 2^31, D <= 65535 * 256);
// a failed launch throws dsv4::cuda::CudaError. The launch is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/hc_post.h"

namespace dsv4::cuda {

inline constexpr int kHcPostThreads = 256;
// The n stream values of a column are held in registers.
inline constexpr int64_t kHcPostMaxN = 8;

void hc_post(const HcPostParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
