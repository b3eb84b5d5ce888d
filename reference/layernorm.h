// LayerNorm with weight and bias: the V3.2 DSA indexer key norm (spec §2.10).
//
//   mu = mean_c x[r, c],  var = mean_c (x[r, c] - mu)^2
//   y[r, c] = (x[r, c] - mu) / sqrt(var + eps) * w[c] + b[c]
//
// Shapes: x [R, d], w [d], b [d] (either may be nullptr: 1 and 0), y [R, d].
// Overwrites y; y may alias x.
#pragma once

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct LayerNormParams {
  View2<const T> x;      // [R, d]
  const T* w = nullptr;  // [d]
  const T* b = nullptr;  // [d]
  View2<T> y;            // [R, d]
  double eps = kNormEps;
};

namespace ref {
template <class T>
void layernorm(const LayerNormParams<T>& p);
}  // namespace ref

}  // namespace dsv4
