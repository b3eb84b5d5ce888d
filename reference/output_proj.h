// Output path of a V4 attention layer. Spec: docs/v4-architecture.md §2.6.
//
//   o_h[d - d_r, d) <- RoPE at angle -p (inverse) for row position p = pos0 + r
//   u_g = Wo_a^(g) [o_{g*H/g} ; ... ; o_{(g+1)*H/g - 1}]   g = 0..groups-1, heads grouped
//         contiguously; Wo_a^(g) = rows [g*r, (g+1)*r) of wo_a          [r = o_rank]
//   y   = Wo_b [u_0; ...; u_{groups-1}]
// act_quant (official numerics): FP8 round trip (1x128) of u before Wo_b; wo_a is BF16
// in the official code and its input is not quantised (§9.4).
// Shapes: o [T, H*d], wo_a [groups*o_rank, (H/groups)*d], wo_b [D, groups*o_rank] -> y [T, D].
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct OutputProjParams {
  View2<const T> o;         // [T, H*d] attention output before inverse RoPE
  const T* wo_a = nullptr;  // [groups*o_rank, (H/groups)*d]
  const T* wo_b = nullptr;  // [D, groups*o_rank]
  int64_t heads = 0;
  int64_t head_dim = kHeadDim;
  int64_t groups = 0;
  int64_t o_rank = 0;
  int64_t pos0 = 0;
  RopeConfig rope;
  bool act_quant = false;
  View2<T> y;  // [T, D] out
};

namespace ref {
template <class T>
void output_proj(const OutputProjParams<T>& p);
}  // namespace ref

}  // namespace dsv4
