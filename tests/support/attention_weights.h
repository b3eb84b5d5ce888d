// Random weights of the per-token paths of a V4 attention layer (§2.1 query, §2.2 window KV,
// §2.6 output, §2.5 sinks), shared by the layer-path and attention-layer tests: every value
// representable in float, so the float and double instantiations see identical inputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/support/random.h"
#include "tests/support/vectors.h"

namespace dsv4::test {

// [out, in] uniform with unit gain: U(-a, a), a = sqrt(3 / in).
inline std::vector<double> unit_gain_weights(int64_t out, int64_t in, uint64_t seed) {
  const double a = std::sqrt(3.0 / double(in));
  return float_exact(uniform(size_t(out * in), seed, -a, a));
}

// Fills wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b and sink of L from seeds seed + 1 ..
// seed + 8: unit-gain projections, norm weights in [0.5, 1.5], sinks in [-1, 1]. L has the
// int64_t members D, H, d, q_rank, groups, o_rank and gw() = (H / groups) * d.
template <class L>
void fill_attention_path_weights(L& M, uint64_t seed) {
  M.wq_a = unit_gain_weights(M.q_rank, M.D, seed + 1);
  M.q_norm = float_exact(uniform(size_t(M.q_rank), seed + 2, 0.5, 1.5));
  M.wq_b = unit_gain_weights(M.H * M.d, M.q_rank, seed + 3);
  M.wkv = unit_gain_weights(M.d, M.D, seed + 4);
  M.kv_norm = float_exact(uniform(size_t(M.d), seed + 5, 0.5, 1.5));
  M.wo_a = unit_gain_weights(M.groups * M.o_rank, M.gw(), seed + 6);
  M.wo_b = unit_gain_weights(M.D, M.groups * M.o_rank, seed + 7);
  M.sink = float_exact(uniform(size_t(M.H), seed + 8, -1.0, 1.0));
}

}  // namespace dsv4::test
