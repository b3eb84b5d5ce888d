// Device code shared by optimized/sinkhorn.cu and optimized/hc_pre.cu: the Sinkhorn-Knopp
// sequence of reference/sinkhorn.h on ONE n x n matrix held by one warp, element (i, k) of the
// row-major matrix in lane i*n + k (n*n <= 32). Device-only (include from .cu files).
//
//   M <- row_softmax(L) + eps                   (row max, exp(L - max), sum, M = e / s + eps)
//   M <- M / (colsum(M) + eps)
//   repeat iters - 1 times:  M <- M / (rowsum(M) + eps);  M <- M / (colsum(M) + eps)
//
// Every sum is formed exactly as the reference forms it: starting from 0, adding the row's
// (or column's) entries in increasing index order; each lane gathers the entries of its row or
// column with __shfl_sync and adds them itself, so all lanes of a row (column) hold the same
// sum and the result does not depend on the lane that computes it. Divisions are IEEE (no fast
// math), so each step rounds as the reference's float step does; only expf may differ from the
// host's std::exp by an ulp or two.
//
// Lanes >= n*n take part in every shuffle (all 32 lanes must) but their values are ignored;
// their gather sources are clamped into the warp, so they read nothing out of range.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsv4::cuda::sinkhorn_warp {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
// Largest n: the n*n entries must fit in the lanes of one warp.
inline constexpr int64_t kMaxN = 5;
static_assert(kMaxN * kMaxN <= kWarpSize, "sinkhorn_warp: n*n entries must fit in one warp");

// Entry `lane_of_entry` of the warp's matrix, delivered to every lane (a gather source outside
// the warp, only computed by the ignored lanes, is folded back into it).
__device__ inline float entry(float v, int lane_of_entry) {
  return __shfl_sync(kFullMask, v, lane_of_entry & (kWarpSize - 1));
}

// Sum over the calling lane's row i (stride 1) or column k (stride n): first index `first`,
// n entries `stride` lanes apart, added in index order from 0.
__device__ inline float line_sum(float v, int first, int stride, int n) {
  float s = 0.f;
  for (int e = 0; e < n; ++e) s += entry(v, first + e * stride);
  return s;
}

// The Sinkhorn matrix entry of the calling lane from its logit `l` (lane = i*n + k, n*n <= 32;
// every lane of the warp must call this with the same n, iters, eps).
__device__ inline float sinkhorn(float l, int n, int iters, float eps) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int row_first = lane / n * n;  // lane of (i, 0)
  const int col_first = lane % n;      // lane of (0, k)

  // Row softmax + eps.
  float mx = entry(l, row_first);
  for (int e = 1; e < n; ++e) {
    const float v = entry(l, row_first + e);
    mx = mx < v ? v : mx;  // std::max(mx, v): a NaN max stays NaN, as in the reference
  }
  const float ex = expf(l - mx);
  float m = ex / line_sum(ex, row_first, 1, n) + eps;

  m = m / (line_sum(m, col_first, n, n) + eps);
  for (int it = 1; it < iters; ++it) {
    m = m / (line_sum(m, row_first, 1, n) + eps);
    m = m / (line_sum(m, col_first, n, n) + eps);
  }
  return m;
}

}  // namespace dsv4::cuda::sinkhorn_warp
