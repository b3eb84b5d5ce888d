// Sinkhorn-Knopp normalisation of the mHC mixing matrix. Spec: docs/v4-architecture.md
// §3.1 step 5. The iteration sequence itself is the semantics (20 rounds do not converge
// for peaked logits):
//   M <- row_softmax(L) + eps
//   M <- M / (colsum(M) + eps)
//   repeat iters - 1 times:  M <- M / (rowsum(M) + eps);  M <- M / (colsum(M) + eps)
// Shapes: logits [R, n, n] (row-major n x n per item) -> m [R, n, n]. m may alias logits.
#pragma once

#include <cstdint>

#include "reference/constants.h"

namespace dsv4 {

template <class T>
struct SinkhornParams {
  const T* logits = nullptr;  // [R, n, n]
  T* m = nullptr;             // [R, n, n]
  int64_t items = 0;          // R
  int64_t n = kHcMult;
  int64_t iters = kSinkhornIters;
  double eps = kHcEps;
};

namespace ref {
template <class T>
void sinkhorn(const SinkhornParams<T>& p);
}  // namespace ref

}  // namespace dsv4
