// SwiGLU experts and the MoE layer. Spec: docs/v4-architecture.md §3.2, §9 items 1-3.
//
// expert (one SwiGLU FFN, optionally weighted):
//   g = W1 x, u = W3 x;  with limit > 0: u <- clamp(u, -limit, limit), g <- min(g, limit)
//   h = SiLU(g) * u * route_weight (1 when absent);   y (+)= W2 h
// moe: y = sum_{c < k} expert_{experts[t,c]}(x_t; weights[t,c]) + shared(x_t; 1)
//   with experts/weights from moe_route.
// act_quant (official numerics, §9.4): FP8 round trip (1x128 blocks, UE8M0) of x before W1/W3
// and of h before W2 — the expert weights are FP8/FP4 in the checkpoint; the router gate is
// not quantised.
// Shapes: x [T, D], w1/w3 [I, D], w2 [D, I] (moe: stacked [E, I, D], [E, D, I]), y [T, D].
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/moe_route.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct ExpertParams {
  View2<const T> x;             // [T, D]
  const T* w1 = nullptr;        // [I, D]
  const T* w3 = nullptr;        // [I, D]
  const T* w2 = nullptr;        // [D, I]
  int64_t inter = 0;            // I
  const T* route_weight = nullptr;  // [T] (stride weight_stride) or nullptr
  int64_t weight_stride = 1;
  double swiglu_limit = kSwigluLimit;  // <= 0: no clamp
  bool accumulate = false;      // y += instead of y =
  bool act_quant = false;       // FP8 round trip of x and h (official numerics)
  View2<T> y;                   // [T, D]
};

template <class T>
struct MoeParams {
  MoeRouteParams<T> route;      // x, gate, bias / tid2eid + ids, experts, topk, ...
  const T* w1 = nullptr;        // [E, I, D]
  const T* w3 = nullptr;        // [E, I, D]
  const T* w2 = nullptr;        // [E, D, I]
  const T* shared_w1 = nullptr;  // [I, D] or nullptr (no shared expert)
  const T* shared_w3 = nullptr;
  const T* shared_w2 = nullptr;
  int64_t inter = 0;            // I (routed and shared)
  double swiglu_limit = kSwigluLimit;
  bool act_quant = false;       // official numerics
  View2<T> y;                   // [T, D]
};

namespace ref {
template <class T>
void expert(const ExpertParams<T>& p);
// Also fills p.route.chosen / p.route.weights.
template <class T>
void moe(const MoeParams<T>& p);
}  // namespace ref

}  // namespace dsv4
