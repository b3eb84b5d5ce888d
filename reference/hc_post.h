// mHC post-mix. Spec: docs/v4-architecture.md §3.1 ("Post-mix").
//
//   y_k = post_k f + sum_j comb[j, k] X_j        k = 0..n-1
// (column k of comb mixes the old streams into new stream k).
// Shapes: x [T, n*D], f [T, D], post [T, n], comb [T, n*n] -> y [T, n*D]. Overwrites y;
// y must not alias x.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct HcPostParams {
  View2<const T> x;     // [T, n*D]
  View2<const T> f;     // [T, D]
  View2<const T> post;  // [T, n]
  View2<const T> comb;  // [T, n*n]
  int64_t n = kHcMult;
  View2<T> y;           // [T, n*D]
};

namespace ref {
template <class T>
void hc_post(const HcPostParams<T>& p);
}  // namespace ref

}  // namespace dsv4
