// RMSNorm, weighted or unweighted. Spec: docs/v4-architecture.md §2.1 (q_norm and the
// per-head unweighted RMS), §2.2 (kv_norm), §2.3 (compressor norm), §3.1 (attn/ffn norm).
//
//   y[r, c] = x[r, c] / sqrt(mean_c'(x[r, c']^2) + eps) * (w ? w[c] : 1)
//
// Shapes: x [R, d], w [d] or nullptr, y [R, d]. Overwrites y; y may alias x (in place).
// The per-head RMS of §2.1 step 3 is this op over q viewed as [T*H, d] with w = nullptr.
#pragma once

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct RmsNormParams {
  View2<const T> x;    // [R, d]
  const T* w = nullptr;  // [d], or nullptr for the unweighted form
  View2<T> y;          // [R, d]
  double eps = kNormEps;
};

namespace ref {
template <class T>
void rmsnorm(const RmsNormParams<T>& p);
}  // namespace ref

}  // namespace dsv4
