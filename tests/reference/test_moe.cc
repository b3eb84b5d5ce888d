// MoE router, SwiGLU expert and MoE layer (reference/moe_route.h, moe.h) against naive
// double loops written from spec §3.2 and §9 items 1-3:
//   s = Wg x; score_e = sqrt(softplus(s_e)) (V4), sigmoid(s_e) or softmax(s)_e
//   score routing: top-k of score_e + bias_e (bias only selects), by descending value,
//                  ties to the lower id; hash routing: tid2eid[id] in table order, no bias
//   weights = score[chosen] / sum(score[chosen]) * route_scale  (softmax: not renormalised)
//   expert: g = W1 x, u = W3 x; limit > 0: u <- clamp(u, -limit, limit), g <- min(g, limit);
//           h = SiLU(g) u * route_weight; y = W2 h
//   moe:    y = sum_c expert_{e_c}(x; w_c) + shared(x; 1)
//
// Tolerances are derived in the oracles below from reduction_tol<T>:
//   router: ds = reduction_tol<T>(D, sum_d |Wg_ed x_d|) for s; every score function has slope
//     <= 1 in s (sqrt-softplus <= 0.35, sigmoid <= 1/4, softmax entries <= 1/2 per logit,
//     2 for the pair), so dscore = 2 ds + reduction_tol<T>(4, 1) (its own few roundings).
//     A weight w = score_c / S * scale errs by scale * (dscore / S + score_c k dscore / S^2).
//   expert: dg = reduction_tol<T>(D, sum_d |W1_id x_d|), du likewise; h = SiLU(g) u rw errs by
//     rw (1.1 |u| dg + |SiLU(g)| du) + reduction_tol<T>(3, |h|)  (SiLU' <= 1.1); y errs by
//     sum_i |W2_di| dh_i + reduction_tol<T>(I, sum_i |W2_di h_i|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "reference/errors.h"
#include "reference/moe.h"
#include "reference/moe_route.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace {

using namespace dsv4;
namespace naive = dsv4::test::naive;
using dsv4::test::all_close;
using dsv4::test::nan_vec;
using dsv4::test::reduction_tol;
using dsv4::test::to_double;


// ---- router oracle ----------------------------------------------------------------------

struct RouteOut {
  std::vector<int32_t> chosen;   // [T, k]
  std::vector<double> weights;   // [T, k]
  std::vector<double> wtol;      // [T, k] derived bound per weight
  double min_gap = INFINITY;     // smallest gap between consecutive sorted (score + bias)
                                 // among the top k+1, over tokens (score routing)
  double dscore_max = 0;
};

template <class T>
RouteOut route_naive(const std::vector<double>& x, const std::vector<double>& gate,
                     const std::vector<double>* bias, const std::vector<int64_t>* tid2eid,
                     const std::vector<int64_t>* ids, int64_t Tn, int64_t D, int64_t E, int64_t k,
                     double route_scale, ScoreFunc func) {
  RouteOut o;
  for (int64_t t = 0; t < Tn; ++t) {
    std::vector<double> s(E), sabs(E), score(E);
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t d = 0; d < D; ++d) {
        s[e] += gate[e * D + d] * x[t * D + d];
        sabs[e] += std::fabs(gate[e * D + d] * x[t * D + d]);
      }
    }
    if (func == ScoreFunc::softmax) {
      score = naive::softmax(s.data(), E);
    } else {
      for (int64_t e = 0; e < E; ++e)
        score[e] = func == ScoreFunc::sigmoid ? naive::sigmoid(s[e])
                                              : std::sqrt(std::log1p(std::exp(s[e])));
    }
    std::vector<int32_t> pick(k);
    if (tid2eid) {
      for (int64_t c = 0; c < k; ++c) pick[c] = int32_t((*tid2eid)[(*ids)[t] * k + c]);
    } else {
      std::vector<double> sel(E);
      for (int64_t e = 0; e < E; ++e) sel[e] = score[e] + (bias ? (*bias)[e] : 0.0);
      std::vector<int32_t> ids_(E);
      std::iota(ids_.begin(), ids_.end(), 0);
      const std::vector<int32_t> order = naive::rank_desc(sel.data(), ids_);  // ties: lower id first
      for (int64_t c = 0; c < k; ++c) pick[c] = order[c];
      for (int64_t c = 0; c < std::min(k + 1, E) - 1; ++c)
        o.min_gap = std::min(o.min_gap, sel[order[c]] - sel[order[c + 1]]);
    }
    double ds = 0;
    for (int64_t e = 0; e < E; ++e) ds = std::max(ds, reduction_tol<T>(double(D), sabs[e]));
    const double dscore = 2 * ds + reduction_tol<T>(4, 1.0);
    o.dscore_max = std::max(o.dscore_max, dscore);
    double S = 0, smax = 0;
    for (int64_t c = 0; c < k; ++c) {
      S += score[pick[c]];
      smax = std::max(smax, score[pick[c]]);
    }
    for (int64_t c = 0; c < k; ++c) {
      o.chosen.push_back(pick[c]);
      if (func == ScoreFunc::softmax) {
        o.weights.push_back(score[pick[c]] * route_scale);
        o.wtol.push_back(route_scale * dscore);
      } else {
        o.weights.push_back(score[pick[c]] / S * route_scale);
        o.wtol.push_back(route_scale * (dscore / S + smax * double(k) * dscore / (S * S)) +
                         reduction_tol<T>(double(k), route_scale));
      }
    }
  }
  return o;
}

// ---- expert oracle ----------------------------------------------------------------------

struct ExpertOut {
  std::vector<double> y, bound, mag;  // [T, D]; mag = sum_i |W2_di h_i| (h with rw)
};

double silu(double g) { return g / (1.0 + std::exp(-g)); }

// rw: per-token route weight (nullptr: 1). Counts of clamp hits are reported if asked.
template <class T>
ExpertOut expert_naive(const std::vector<double>& x, const double* w1, const double* w3,
                       const double* w2, int64_t Tn, int64_t D, int64_t I, const double* rw,
                       double limit, int* hits = nullptr, bool clamp_g_below = false) {
  ExpertOut o{std::vector<double>(Tn * D), std::vector<double>(Tn * D),
              std::vector<double>(Tn * D)};
  for (int64_t t = 0; t < Tn; ++t) {
    const double r = rw ? rw[t] : 1.0;
    std::vector<double> h(I), dh(I);
    for (int64_t i = 0; i < I; ++i) {
      double g = 0, u = 0, ga = 0, ua = 0;
      for (int64_t d = 0; d < D; ++d) {
        g += w1[i * D + d] * x[t * D + d];
        u += w3[i * D + d] * x[t * D + d];
        ga += std::fabs(w1[i * D + d] * x[t * D + d]);
        ua += std::fabs(w3[i * D + d] * x[t * D + d]);
      }
      if (hits) {
        hits[0] += g > limit;
        hits[1] += g < -limit;
        hits[2] += u > limit;
        hits[3] += u < -limit;
      }
      if (limit > 0) {
        u = std::min(std::max(u, -limit), limit);
        g = std::min(g, limit);
        if (clamp_g_below) g = std::max(g, -limit);  // NOT the spec: non-vacuity probe only
      }
      h[i] = silu(g) * u * r;
      dh[i] = std::fabs(r) * (1.1 * std::fabs(u) * reduction_tol<T>(double(D), ga) +
                              std::fabs(silu(g)) * reduction_tol<T>(double(D), ua)) +
              reduction_tol<T>(3, std::fabs(h[i]));
    }
    for (int64_t d = 0; d < D; ++d) {
      double s = 0, m = 0, b = 0;
      for (int64_t i = 0; i < I; ++i) {
        s += w2[d * I + i] * h[i];
        m += std::fabs(w2[d * I + i] * h[i]);
        b += std::fabs(w2[d * I + i]) * dh[i];
      }
      o.y[t * D + d] = s;
      o.mag[t * D + d] = m;
      o.bound[t * D + d] = b + reduction_tol<T>(double(I), m);
    }
  }
  return o;
}

// all_close with a per-element absolute bound.
template <class A>
::testing::AssertionResult within_bounds(const std::vector<A>& got, const std::vector<double>& want,
                                         const std::vector<double>& bound) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]);
    if (!(std::fabs(g - want[i]) <= bound[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << g << ", want "
                                           << want[i] << ", bound " << bound[i];
  }
  return ::testing::AssertionSuccess();
}

template <class T>
class Moe : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Moe, Types);

// ---- router -----------------------------------------------------------------------------

template <class T>
struct RouteRun {
  std::vector<int32_t> chosen;
  std::vector<T> weights;
};

template <class T>
RouteRun<T> run_route(const std::vector<T>& x, const std::vector<T>& gate,
                      const std::type_identity_t<T>* bias,
                      const std::vector<int64_t>* tid2eid, const std::vector<int64_t>* ids,
                      int64_t Tn, int64_t D, int64_t E, int64_t k, double route_scale,
                      ScoreFunc func, int64_t V = 0) {
  RouteRun<T> r{std::vector<int32_t>(size_t(Tn * k), -7), nan_vec<T>(size_t(Tn * k))};
  MoeRouteParams<T> p;
  p.x = view2(x.data(), Tn, D);
  p.gate = gate.data();
  p.bias = bias;
  if (tid2eid) p.tid2eid = view2(tid2eid->data(), V, k);
  p.ids = ids ? ids->data() : nullptr;
  p.experts = E;
  p.topk = k;
  p.route_scale = route_scale;
  p.score = func;
  p.chosen = view2(r.chosen.data(), Tn, k);
  p.weights = view2(r.weights.data(), Tn, k);
  ref::moe_route(p);
  return r;
}

TYPED_TEST(Moe, ScoreRoutingMatchesNaive) {
  using T = TypeParam;
  const int64_t Tn = 8, D = 32, E = 16, k = 4;
  const double scale = 1.5;
  const auto x = test::normal<T>(size_t(Tn * D), 10);
  const auto gate = test::normal<T>(size_t(E * D), 11, 0.3);
  const auto bias = test::normal<T>(size_t(E), 12, 0.1);
  for (ScoreFunc f : {ScoreFunc::sqrt_softplus, ScoreFunc::sigmoid, ScoreFunc::softmax}) {
    SCOPED_TRACE(::testing::Message() << "score func " << int(f));
    const auto bd = to_double(bias);
    const auto want =
        route_naive<T>(to_double(x), to_double(gate), &bd, nullptr, nullptr, Tn, D, E, k, scale, f);
    // The test data must separate the top k+1 by more than the score error, or the
    // comparison of ids would depend on rounding.
    ASSERT_GT(want.min_gap, 4 * want.dscore_max);
    const auto got = run_route(x, gate, bias.data(), nullptr, nullptr, Tn, D, E, k, scale, f);
    EXPECT_EQ(got.chosen, want.chosen);
    EXPECT_TRUE(within_bounds(got.weights, want.weights, want.wtol));
    if (f == ScoreFunc::softmax) {  // not renormalised: the k weights sum to < scale
      for (int64_t t = 0; t < Tn; ++t) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c) s += double(got.weights[t * k + c]);
        EXPECT_LT(s, 0.99 * scale);
      }
    } else {  // renormalised: they sum to route_scale
      for (int64_t t = 0; t < Tn; ++t) {
        double s = 0;
        for (int64_t c = 0; c < k; ++c) s += double(got.weights[t * k + c]);
        EXPECT_NEAR(s, scale, reduction_tol<T>(double(k), scale));
      }
    }
  }
}

TYPED_TEST(Moe, BiasSelectsButWeightsComeFromUnbiasedScores) {
  using T = TypeParam;
  const int64_t Tn = 4, D = 16, E = 8, k = 3;
  const double scale = 2.5;
  const auto x = test::normal<T>(size_t(Tn * D), 20);
  const auto gate = test::normal<T>(size_t(E * D), 21, 0.3);
  // Expert 5 gets +10 (always selected first), expert 2 gets -10 (never selected).
  std::vector<T> bias = test::uniform<T>(size_t(E), 22, -0.01, 0.01);
  bias[5] = T(10);
  bias[2] = T(-10);
  const auto bd = to_double(bias);
  const auto want = route_naive<T>(to_double(x), to_double(gate), &bd, nullptr, nullptr, Tn, D, E, k, scale,
                                   ScoreFunc::sqrt_softplus);
  ASSERT_GT(want.min_gap, 4 * want.dscore_max);
  const auto got = run_route(x, gate, bias.data(), nullptr, nullptr, Tn, D, E, k, scale,
                             ScoreFunc::sqrt_softplus);
  EXPECT_EQ(got.chosen, want.chosen);
  EXPECT_TRUE(within_bounds(got.weights, want.weights, want.wtol));
  for (int64_t t = 0; t < Tn; ++t) {
    EXPECT_EQ(got.chosen[t * k], 5);
    for (int64_t c = 0; c < k; ++c) EXPECT_NE(got.chosen[t * k + c], 2);
    // If the bias leaked into the weights, expert 5's would be ~ (s + 10) / (sum + 10) ~ 1.
    EXPECT_LT(double(got.weights[t * k]), 0.7 * scale);
  }
}

TYPED_TEST(Moe, ExactTiesGoToTheLowerId) {
  // Dyadic inputs (x in {+-0.5, +-1, +-1.5, +-2}, gate entries multiples of 1/32, D = 8) make
  // every dot product exact in any summation order, so duplicated gate rows give exactly
  // equal scores. Experts 6, 1, 4 share the top row; 7 and 3 tie for the last slot.
  using T = TypeParam;
  const int64_t Tn = 1, D = 8, E = 10, k = 4;
  std::vector<T> x(size_t(Tn * D));
  for (int64_t i = 0; i < Tn * D; ++i) x[i] = T(((i * 7) % 4 + 1) * 0.5 * ((i % 3) ? 1 : -1));
  std::vector<T> gate(size_t(E * D));
  // A distinct integer row per expert first; x[0] row's dot products decide the order.
  for (int64_t e = 0; e < E; ++e)
    for (int64_t d = 0; d < D; ++d) gate[e * D + d] = T((((e * 5 + d * 3) % 7) - 3) / 32.0);
  auto copy_row = [&](int64_t to, int64_t from) {
    for (int64_t d = 0; d < D; ++d) gate[to * D + d] = gate[from * D + d];
  };
  const auto xd = to_double(x);
  auto s0 = [&](int64_t e) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += double(gate[e * D + d]) * xd[d];
    return s;
  };
  // Top row: s = sum|x| / 2; second: s = sum|x| / 4; any other row |s| <= 3/32 sum|x|.
  // (Moderate values: sigmoid(40) would round to 1 in float and tie everything.)
  for (int64_t d = 0; d < D; ++d) {
    gate[6 * D + d] = T(xd[d] > 0 ? 0.5 : -0.5);
    gate[7 * D + d] = T(xd[d] > 0 ? 0.25 : -0.25);
  }
  copy_row(1, 6);
  copy_row(4, 6);
  copy_row(3, 7);
  for (int64_t e : {0, 2, 5, 8, 9}) ASSERT_LT(s0(e), s0(7)) << "expert " << e;
  const std::vector<T> bias(size_t(E), T(0.25));  // equal bias keeps the ties exact
  const auto got = run_route(x, gate, bias.data(), nullptr, nullptr, 1, D, E, k, 1.5,
                             ScoreFunc::sqrt_softplus);
  EXPECT_EQ(got.chosen, (std::vector<int32_t>{1, 4, 6, 3}));
  // Equal scores -> equal weights, exactly.
  EXPECT_EQ(got.weights[0], got.weights[1]);
  EXPECT_EQ(got.weights[1], got.weights[2]);
  for (ScoreFunc f : {ScoreFunc::sigmoid, ScoreFunc::softmax}) {
    const auto g2 = run_route(x, gate, nullptr, nullptr, nullptr, 1, D, E, k, 1.5, f);
    EXPECT_EQ(g2.chosen, (std::vector<int32_t>{1, 4, 6, 3})) << "score func " << int(f);
  }
}

TYPED_TEST(Moe, HashRoutingKeepsTableOrderAndIgnoresBias) {
  using T = TypeParam;
  const int64_t Tn = 5, D = 16, E = 12, k = 4, V = 9;
  const double scale = 1.5;
  const auto x = test::normal<T>(size_t(Tn * D), 30);
  const auto gate = test::normal<T>(size_t(E * D), 31, 0.3);
  std::vector<int64_t> table(size_t(V * k));
  for (int64_t v = 0; v < V; ++v)  // distinct experts per row, in no sorted order
    for (int64_t c = 0; c < k; ++c) table[v * k + c] = (v * 5 + c * 7 + 3) % E;
  const std::vector<int64_t> ids = {4, 0, 8, 4, 2};
  const auto want = route_naive<T>(to_double(x), to_double(gate), nullptr, &table, &ids, Tn, D, E, k, scale,
                                   ScoreFunc::sqrt_softplus);
  const auto got = run_route(x, gate, nullptr, &table, &ids, Tn, D, E, k, scale,
                             ScoreFunc::sqrt_softplus, V);
  EXPECT_EQ(got.chosen, want.chosen);
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t c = 0; c < k; ++c) EXPECT_EQ(got.chosen[t * k + c], table[ids[t] * k + c]);
  EXPECT_TRUE(within_bounds(got.weights, want.weights, want.wtol));
  // A bias changes nothing.
  std::vector<T> bias(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) bias[e] = T(e % 2 ? 5.0 : -5.0);
  const auto biased = run_route(x, gate, bias.data(), &table, &ids, Tn, D, E, k, scale,
                                ScoreFunc::sqrt_softplus, V);
  EXPECT_EQ(biased.chosen, got.chosen);
  EXPECT_TRUE(test::bitwise_equal(biased.weights, got.weights));
}

TYPED_TEST(Moe, RouterBadInputThrows) {
  using T = TypeParam;
  const int64_t Tn = 2, D = 4, E = 6, k = 3, V = 4;
  const auto x = test::normal<T>(size_t(Tn * D), 40);
  const auto gate = test::normal<T>(size_t(E * D), 41);
  auto call = [&](int64_t topk, std::vector<int64_t>* table, std::vector<int64_t>* ids,
                  int64_t cols) {
    std::vector<int32_t> chosen(size_t(Tn * topk));
    std::vector<T> w(size_t(Tn * topk));
    MoeRouteParams<T> p;
    p.x = view2(x.data(), Tn, D);
    p.gate = gate.data();
    if (table) p.tid2eid = view2<const int64_t>(table->data(), V, cols);
    p.ids = ids ? ids->data() : nullptr;
    p.experts = E;
    p.topk = topk;
    p.chosen = view2(chosen.data(), Tn, topk);
    p.weights = view2(w.data(), Tn, topk);
    ref::moe_route(p);
  };
  EXPECT_NO_THROW(call(k, nullptr, nullptr, k));
  EXPECT_THROW(call(E + 1, nullptr, nullptr, k), InputError);  // topk > experts
  EXPECT_THROW(call(0, nullptr, nullptr, k), InputError);
  std::vector<int64_t> table(size_t(V * k));
  for (int64_t i = 0; i < V * k; ++i) table[i] = i % E;
  std::vector<int64_t> ids = {1, 3};
  EXPECT_NO_THROW(call(k, &table, &ids, k));
  auto bad = table;
  bad[3 * k + 1] = E;  // expert id out of range
  EXPECT_THROW(call(k, &bad, &ids, k), InputError);
  bad = table;
  bad[1 * k + 2] = -1;
  EXPECT_THROW(call(k, &bad, &ids, k), InputError);
  std::vector<int64_t> bad_ids = {1, V};  // token id out of range
  EXPECT_THROW(call(k, &table, &bad_ids, k), InputError);
  bad_ids = {-1, 0};
  EXPECT_THROW(call(k, &table, &bad_ids, k), InputError);
  EXPECT_THROW(call(k, &table, nullptr, k), InputError);  // hash routing without ids
}

// ---- expert -----------------------------------------------------------------------------

template <class T>
std::vector<T> run_expert(const std::vector<T>& x, const std::vector<T>& w1,
                          const std::vector<T>& w3, const std::vector<T>& w2, int64_t Tn,
                          int64_t D, int64_t I, const std::type_identity_t<T>* rw, int64_t stride,
                          double limit) {
  auto y = nan_vec<T>(size_t(Tn * D));
  ExpertParams<T> p;
  p.x = view2(x.data(), Tn, D);
  p.w1 = w1.data();
  p.w3 = w3.data();
  p.w2 = w2.data();
  p.inter = I;
  p.route_weight = rw;
  p.weight_stride = stride;
  p.swiglu_limit = limit;
  p.y = view2(y.data(), Tn, D);
  ref::expert(p);
  return y;
}

TYPED_TEST(Moe, ExpertSwigluClampHitsBothSides) {
  using T = TypeParam;
  const int64_t Tn = 4, D = 16, I = 32;
  const double limit = 10.0;
  const auto x = test::normal<T>(size_t(Tn * D), 50);
  // W1, W3 ~ N(0, (15/sqrt(D))^2): g and u ~ N(0, 15^2), well past +-10 on both sides.
  const auto w1 = test::normal<T>(size_t(I * D), 51, 15.0 / std::sqrt(double(D)));
  const auto w3 = test::normal<T>(size_t(I * D), 52, 15.0 / std::sqrt(double(D)));
  const auto w2 = test::normal<T>(size_t(D * I), 53, 1.0 / std::sqrt(double(I)));
  // Route weights with stride 2 (the odd slots are poison and must not be read).
  std::vector<T> rw = {T(0.7), T(NAN), T(0.2), T(NAN), T(1.3), T(NAN), T(0.05)};
  const std::vector<double> rwd = {0.7, 0.2, 1.3, 0.05};
  int hits[4] = {0, 0, 0, 0};
  const auto want = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(), Tn,
                                    D, I, rwd.data(), limit, hits);
  for (int h = 0; h < 4; ++h) ASSERT_GT(hits[h], 2) << "clamp case " << h << " not exercised";
  const auto y = run_expert(x, w1, w3, w2, Tn, D, I, rw.data(), 2, limit);
  EXPECT_TRUE(within_bounds(y, want.y, want.bound));
  // g is clamped from above only: clamping it from below too (SiLU(-10) = -4.5e-4 instead
  // of ~0 for g << -10) would be a different answer, and so would no clamp at all.
  const auto sym = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(), Tn,
                                   D, I, rwd.data(), limit, nullptr, /*clamp_g_below=*/true);
  EXPECT_FALSE(within_bounds(y, sym.y, sym.bound));
  const auto none = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(), Tn,
                                    D, I, rwd.data(), 0.0);
  EXPECT_FALSE(within_bounds(y, none.y, none.bound));
}

TYPED_TEST(Moe, ExpertLimitZeroOrNegativeDisablesClamp) {
  using T = TypeParam;
  const int64_t Tn = 3, D = 16, I = 24;
  const auto x = test::normal<T>(size_t(Tn * D), 60);
  const auto w1 = test::normal<T>(size_t(I * D), 61, 15.0 / std::sqrt(double(D)));
  const auto w3 = test::normal<T>(size_t(I * D), 62, 15.0 / std::sqrt(double(D)));
  const auto w2 = test::normal<T>(size_t(D * I), 63, 1.0 / std::sqrt(double(I)));
  const auto free = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(), Tn,
                                    D, I, nullptr, 0.0);
  const auto clamped = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(),
                                       Tn, D, I, nullptr, 10.0);
  for (double limit : {0.0, -1.0}) {
    const auto y = run_expert(x, w1, w3, w2, Tn, D, I, nullptr, 1, limit);
    EXPECT_TRUE(within_bounds(y, free.y, free.bound)) << "limit " << limit;
    EXPECT_FALSE(within_bounds(y, clamped.y, clamped.bound)) << "limit " << limit;
  }
}

TYPED_TEST(Moe, ExpertRouteWeightMultipliesBeforeW2) {
  // W2 entries near max(T)/64 and h ~ 25..100 (positive): W2 h overflows T, W2 (h rw) with
  // rw = 2^-10 does not. Only the order of §3.2 (weight before W2) gives a finite answer.
  using T = TypeParam;
  const int64_t Tn = 2, D = 4, I = 16;
  const auto x = test::uniform<T>(size_t(Tn * D), 70, 0.9, 1.1);
  const auto w1 = test::uniform<T>(size_t(I * D), 71, 1.5, 4.5);  // g in ~[5.4, 19.8]
  const auto w3 = test::uniform<T>(size_t(I * D), 72, 1.5, 4.5);  // u likewise
  const double big = double(std::numeric_limits<T>::max()) / 64;
  std::vector<T> w2 = test::uniform<T>(size_t(D * I), 73, 0.5, 1.0);
  for (auto& v : w2) v = T(double(v) * big);
  const std::vector<T> rw(size_t(Tn), T(1.0 / 1024));
  const std::vector<double> rwd(size_t(Tn), 1.0 / 1024);
  const auto want = expert_naive<T>(to_double(x), to_double(w1).data(), to_double(w3).data(), to_double(w2).data(), Tn,
                                    D, I, rwd.data(), 10.0);
  for (double v : want.mag) ASSERT_GT(v * 1024, double(std::numeric_limits<T>::max()));
  const auto y = run_expert(x, w1, w3, w2, Tn, D, I, rw.data(), 1, 10.0);
  for (T v : y) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(within_bounds(y, want.y, want.bound));
}

// ---- moe --------------------------------------------------------------------------------

TYPED_TEST(Moe, MoeIsWeightedSumOfChosenExpertsPlusShared) {
  using T = TypeParam;
  const int64_t Tn = 4, D = 16, I = 8, E = 8, k = 3;
  const double scale = 1.5, limit = 10.0;
  const auto x = test::normal<T>(size_t(Tn * D), 80, 2.0);
  const auto gate = test::normal<T>(size_t(E * D), 81, 0.3);
  const auto bias = test::normal<T>(size_t(E), 82, 0.1);
  // Large enough weights that some g, u hit the clamp.
  const double sw = 8.0 / std::sqrt(double(D));
  const auto w1 = test::normal<T>(size_t(E * I * D), 83, sw);
  const auto w3 = test::normal<T>(size_t(E * I * D), 84, sw);
  const auto w2 = test::normal<T>(size_t(E * D * I), 85, 1.0 / std::sqrt(double(I)));
  const auto s1 = test::normal<T>(size_t(I * D), 86, sw);
  const auto s3 = test::normal<T>(size_t(I * D), 87, sw);
  const auto s2 = test::normal<T>(size_t(D * I), 88, 1.0 / std::sqrt(double(I)));
  const auto bd = to_double(bias);
  const auto xd = to_double(x), w1d = to_double(w1), w3d = to_double(w3), w2d = to_double(w2);
  const auto route = route_naive<T>(xd, to_double(gate), &bd, nullptr, nullptr, Tn, D, E, k, scale,
                                    ScoreFunc::sqrt_softplus);
  ASSERT_GT(route.min_gap, 4 * route.dscore_max);

  for (bool shared : {true, false}) {
    SCOPED_TRACE(shared ? "with shared expert" : "no shared expert");
    // Oracle: per token, per slot.
    std::vector<double> want(size_t(Tn * D), 0.0), bound(size_t(Tn * D), 0.0);
    for (int64_t t = 0; t < Tn; ++t) {
      const std::vector<double> xt(xd.begin() + t * D, xd.begin() + (t + 1) * D);
      for (int64_t c = 0; c < k; ++c) {
        const int64_t e = route.chosen[t * k + c];
        const double w = route.weights[t * k + c];
        const auto o = expert_naive<T>(xt, &w1d[e * I * D], &w3d[e * I * D], &w2d[e * D * I], 1,
                                       D, I, &w, limit);
        for (int64_t d = 0; d < D; ++d) {
          want[t * D + d] += o.y[d];
          // The weight's own error scales the unweighted output (mag / w).
          bound[t * D + d] += o.bound[d] + route.wtol[t * k + c] * o.mag[d] / w +
                              reduction_tol<T>(double(k + 1), o.mag[d]);
        }
      }
      if (shared) {
        const auto o = expert_naive<T>(xt, to_double(s1).data(), to_double(s3).data(), to_double(s2).data(), 1, D,
                                       I, nullptr, limit);
        for (int64_t d = 0; d < D; ++d) {
          want[t * D + d] += o.y[d];
          bound[t * D + d] += o.bound[d] + reduction_tol<T>(double(k + 1), o.mag[d]);
        }
      }
    }
    auto y = nan_vec<T>(size_t(Tn * D));
    std::vector<int32_t> chosen(size_t(Tn * k), -7);
    auto weights = nan_vec<T>(size_t(Tn * k));
    MoeParams<T> p;
    p.route.x = view2(x.data(), Tn, D);
    p.route.gate = gate.data();
    p.route.bias = bias.data();
    p.route.experts = E;
    p.route.topk = k;
    p.route.route_scale = scale;
    p.route.chosen = view2(chosen.data(), Tn, k);
    p.route.weights = view2(weights.data(), Tn, k);
    p.w1 = w1.data();
    p.w3 = w3.data();
    p.w2 = w2.data();
    if (shared) {
      p.shared_w1 = s1.data();
      p.shared_w3 = s3.data();
      p.shared_w2 = s2.data();
    }
    p.inter = I;
    p.swiglu_limit = limit;
    p.y = view2(y.data(), Tn, D);
    ref::moe(p);
    EXPECT_EQ(chosen, route.chosen);
    EXPECT_TRUE(within_bounds(weights, route.weights, route.wtol));
    EXPECT_TRUE(within_bounds(y, want, bound));
  }
}

}  // namespace
