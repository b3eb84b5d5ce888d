// mHC pre-mix (and the final head's reduced form). Spec: docs/v4-architecture.md §3.1.
//
// Per token, X = its n residual streams, v = vec(X) stream-major (n*D values):
//   rs  = 1 / sqrt(mean(v^2) + norm_eps)
//   mu  = rs * (Phi v)                               [2n + n^2]
//   pre_j  = sigmoid(alpha0 mu_j + b_j) + eps          j < n
//   post_j = 2 sigmoid(alpha1 mu_{n+j} + b_{n+j})
//   comb   = sinkhorn(alpha2 mu_{2n + n i + k} + b_{2n + n i + k})   [n, n], (i, k) row-major
//   u      = sum_j pre_j X_j                          [D]
// The caller applies attn_norm / ffn_norm to u.
// hc_head (final head, §3.1 last line): Phi [n, n*D], b [n], alpha [1];
//   pre = sigmoid(alpha mu + b) + eps, u = sum_j pre_j X_j.
// Shapes: x [T, n*D], fn [2n+n^2, n*D], base [2n+n^2], scale [3]
//   -> u [T, D], post [T, n], comb [T, n*n]. Overwrites all three.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct HcPreParams {
  View2<const T> x;        // [T, n*D]
  const T* fn = nullptr;   // [2n+n^2, n*D]
  const T* base = nullptr;  // [2n+n^2]
  const T* scale = nullptr;  // [3]
  int64_t n = kHcMult;
  int64_t iters = kSinkhornIters;
  double eps = kHcEps;        // pre + eps and Sinkhorn
  double norm_eps = kNormEps;  // inside the RMS
  View2<T> u;     // [T, D]
  View2<T> post;  // [T, n]
  View2<T> comb;  // [T, n*n]
};

template <class T>
struct HcHeadParams {
  View2<const T> x;         // [T, n*D]
  const T* fn = nullptr;    // [n, n*D]
  const T* base = nullptr;  // [n]
  const T* scale = nullptr;  // [1]
  int64_t n = kHcMult;
  double eps = kHcEps;
  double norm_eps = kNormEps;
  View2<T> u;  // [T, D]
};

namespace ref {
template <class T>
void hc_pre(const HcPreParams<T>& p);
template <class T>
void hc_head(const HcHeadParams<T>& p);
}  // namespace ref

}  // namespace dsv4
