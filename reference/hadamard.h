// Normalised Walsh-Hadamard transform (spec §2.3, §2.4: the indexer's rotation before FP4).
//
//   y[r, :] = x[r, :] H_d / sqrt(d),   H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]] (Sylvester)
//
// H_d / sqrt(d) is orthonormal and symmetric, so the transform is its own inverse.
// Shapes: x [R, d], y [R, d], d a power of two. Overwrites y; y may alias x.
#pragma once

#include "reference/view.h"

namespace dsv4 {

template <class T>
struct HadamardParams {
  View2<const T> x;  // [R, d]
  View2<T> y;        // [R, d]
};

namespace ref {
template <class T>
void hadamard(const HadamardParams<T>& p);
}  // namespace ref

}  // namespace dsv4
