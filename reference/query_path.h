// Query path of a V4 attention layer. Spec: docs/v4-architecture.md §2.1.
//
//   c_q = RMSNorm_w(Wq_a x)              [T, q_rank]   (q_norm, weighted; reused by the indexer)
//   q   = Wq_b c_q -> [T, H, d]
//   q_h <- q_h / sqrt(mean(q_h^2) + eps)  per head, unweighted
//   RoPE on q_h[d - d_r, d) at position pos0 + r (the layer's table, §2.7)
// act_quant (official numerics, §9.4): FP8 round trip (1x128 blocks, UE8M0) of x before
// Wq_a and of c_q before Wq_b.
// Shapes: x [T, D], wq_a [q_rank, D], q_norm [q_rank], wq_b [H*d, q_rank]
//   -> cq [T, q_rank], q [T, H*d]. Overwrites both.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct QueryPathParams {
  View2<const T> x;          // [T, D]
  const T* wq_a = nullptr;   // [q_rank, D]
  const T* q_norm = nullptr;  // [q_rank]
  const T* wq_b = nullptr;   // [H*d, q_rank]
  int64_t q_rank = 0;
  int64_t heads = 0;
  int64_t head_dim = kHeadDim;
  int64_t pos0 = 0;
  RopeConfig rope;
  double eps = kNormEps;
  bool act_quant = false;
  View2<T> cq;  // [T, q_rank] out
  View2<T> q;   // [T, H*d] out
};

namespace ref {
template <class T>
void query_path(const QueryPathParams<T>& p);
}  // namespace ref

}  // namespace dsv4
