// MoE router. Spec: docs/v4-architecture.md §3.2, §9 items 2-3.
//
//   s = Wg x (computed in T), score_e = f(s_e) with f = sqrt(softplus) (V4),
//   sigmoid or softmax (V3; no group limit here)
//   score routing: experts = top-k of score_e + bias_e (bias only selects), listed by
//                  descending score + bias, ties to the lower id
//   hash routing:  experts = tid2eid[ids[t], :] in table order; bias ignored
//   weights = score at the chosen experts / their sum * route_scale
//             (softmax scores are not renormalised, as in the official code)
// Shapes: x [T, D], gate [E, D], bias [E] or none, tid2eid [V, k] + ids [T] or none
//   -> experts [T, k] int32, weights [T, k].
#pragma once

#include <cstdint>

#include "reference/view.h"

namespace dsv4 {

enum class ScoreFunc { sqrt_softplus, sigmoid, softmax };

template <class T>
struct MoeRouteParams {
  View2<const T> x;                  // [T, D]
  const T* gate = nullptr;           // [E, D]
  const T* bias = nullptr;           // [E] or nullptr
  View2<const int64_t> tid2eid;      // [V, k] or empty (score routing)
  const int64_t* ids = nullptr;      // [T] token ids (hash routing)
  int64_t experts = 0;               // E
  int64_t topk = 6;
  double route_scale = 1.5;
  ScoreFunc score = ScoreFunc::sqrt_softplus;
  View2<int32_t> chosen;  // [T, k] out
  View2<T> weights;       // [T, k] out
};

namespace ref {
template <class T>
void moe_route(const MoeRouteParams<T>& p);
}  // namespace ref

}  // namespace dsv4
