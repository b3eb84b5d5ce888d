// dsv4::cuda::moe_route and dsv4::cuda::moe (the MoE router and layer) against a
// double-precision oracle written from the spec and against their CPU twins
// ref::moe_route<float> / ref::moe<float>. Spec: docs/v4-architecture.md §3.2, §9 items 1-4:
//   s = Wg x; score = sqrt(softplus(s)) | sigmoid(s) | softmax(s); top-k of score + bias by
//   descending value, ties to the lower id (or tid2eid[ids] in table order); weights = score /
//   sum * route_scale (softmax: no renormalisation); expert: g = W1 x, u = W3 x, u clamped to
//   [-limit, limit], g <- min(g, limit), h = SiLU(g) u w, out = W2 h; y = sum of the chosen
//   experts' outputs + the shared expert's.
//
// Tolerances (derived, as in tests/reference/test_moe.cc):
//   router: ds = reduction_tol<float>(D, sum_d |Wg_ed x_d|) per logit; every score function has
//     slope <= 1 in the logits (softmax: <= 2 for the pair), so dscore = 2 ds +
//     reduction_tol<float>(4, 1) (its own few roundings); score + bias rounds once more
//     (u |sel|). A chosen list is accepted when its c-th id's fp64 value of score + bias is
//     within tau = 2 (dscore + u |sel|) of the c-th largest fp64 value (the GPU and the
//     reference may order two values closer than their rounding either way); tokens whose top
//     k+1 are separated by more than 2 tau must match the oracle's ids exactly, and at least 90%
//     of the tokens must route exactly as ref::moe_route<float> does (tau is a worst case that
//     can exceed real score gaps at D = 4096; actual rounding almost never reorders). A weight w =
//     score_c / S * scale errs by scale (dscore / S + smax k dscore / S^2) + reduction_tol(k,
//     scale), and the GPU's worst weight error is at most 2x the float reference's + that floor.
//   experts: oracle evaluated at the GPU's own ids and weights (so near-ties in the routing do
//     not matter there; the comparison with ref::moe<float> uses the tokens routed alike):
//     dg = reduction_tol<float>(D, sum_d |W1_id x_d|), du likewise; h errs by |w| (1.1 |u| dg +
//     |SiLU(g)| du) + reduction_tol(3, |h|) (SiLU' <= 1.1); an output by sum_i |W2_di| dh_i +
//     reduction_tol(I, sum_i |W2_di h_i|); the combine (k + 1 <= 8 terms) by reduction_tol(8, .)
//     of each term's magnitude. The GPU's worst error is also at most 2x the float reference's
//     plus a floor of half the largest bound.
//   act_quant: FP8 rounding of x and h is discontinuous (an ulp of difference can move a value
//     to the next FP8 step), so the check is statistical: the RMS difference from
//     ref::moe<float> with act_quant is below a tenth of the act_quant effect itself (the RMS
//     difference between the reference with and without it).
// Label gpu: every test that needs a device skips, with the reason, when there is none; the
// host-side validation tests run everywhere. Real shapes: the router at V4-Flash (D 4096, E 256,
// k 6) and V4-Pro (D 7168, E 384) sizes plus a hash layer with the real vocabulary; the layer
// at the real widths (D 4096, I 2048, k 6) with 8 experts (the full 256 would need 24 GB of
// host weights), and at V4-Pro widths behind DSV4_LONG_TESTS=1.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/moe.cuh"
#include "optimized/moe_route.cuh"
#include "reference/errors.h"
#include "reference/moe.h"
#include "reference/moe_route.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::reduction_tol;

constexpr double kU = test::unit_roundoff<float>();
constexpr int32_t kIdPoison = -7;          // unwritten id slot
constexpr int32_t kIdCanary = -123456789;  // around and between the id rows

// ---- inputs -----------------------------------------------------------------------------

// n floats uniform in [lo, hi) (generated in float: the real-width weights are hundreds of MB).
std::vector<float> uniform_f(size_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d{float(lo), float(hi)};
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

struct Router {
  int64_t T, D, E, k;
  double scale = 1.5;
  ScoreFunc f = ScoreFunc::sqrt_softplus;
  std::vector<float> x, gate, bias;   // bias empty: none
  std::vector<int64_t> tid2eid, ids;  // empty: score routing
  int64_t V = 0;
};

// x ~ U(-1, 1), gate ~ U(-gs, gs) with gs = 2 / sqrt(D) (logits of order 1), bias ~ U(-0.1, 0.1).
Router make_router(int64_t T, int64_t D, int64_t E, int64_t k, ScoreFunc f, bool bias,
                   uint64_t seed) {
  Router R{T, D, E, k};
  R.f = f;
  const double gs = 2.0 / std::sqrt(double(D));
  R.x = uniform_f(size_t(T * D), seed, -1, 1);
  R.gate = uniform_f(size_t(E * D), seed + 1, -gs, gs);
  if (bias) R.bias = uniform_f(size_t(E), seed + 2, -0.1, 0.1);
  return R;
}

// A hash table [V, k] of distinct experts per row (no sorted order) and ids in [0, V).
void make_hash(Router& R, int64_t V, uint64_t seed) {
  R.V = V;
  R.tid2eid.resize(size_t(V * R.k));
  std::mt19937_64 g(seed);
  std::vector<int64_t> perm(size_t(R.E));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t c = 0; c < R.k; ++c)
      std::swap(perm[size_t(c)], perm[size_t(c + int64_t(g() % uint64_t(R.E - c)))]);
    for (int64_t c = 0; c < R.k; ++c) R.tid2eid[size_t(v * R.k + c)] = perm[size_t(c)];
  }
  R.ids.resize(size_t(R.T));
  for (auto& id : R.ids) id = int64_t(g() % uint64_t(V));
}

// ---- router oracle ----------------------------------------------------------------------

struct RouteOracle {
  std::vector<double> score, sel;  // [T, E] fp64
  std::vector<double> dscore;      // [T] bound on a score's float error
  std::vector<double> tau;         // [T] accepted fp64 distance between rank-c values
};

RouteOracle route_oracle(const Router& R) {
  RouteOracle o{std::vector<double>(size_t(R.T * R.E)), std::vector<double>(size_t(R.T * R.E)),
                std::vector<double>(size_t(R.T)), std::vector<double>(size_t(R.T))};
  for (int64_t t = 0; t < R.T; ++t) {
    std::vector<double> s(size_t(R.E));
    double ds = 0;
    for (int64_t e = 0; e < R.E; ++e) {
      double acc = 0, mag = 0;
      for (int64_t d = 0; d < R.D; ++d) {
        const double p = double(R.gate[size_t(e * R.D + d)]) * double(R.x[size_t(t * R.D + d)]);
        acc += p;
        mag += std::fabs(p);
      }
      s[size_t(e)] = acc;
      ds = std::max(ds, reduction_tol<float>(double(R.D), mag));
    }
    std::vector<double> sc(size_t(R.E));
    if (R.f == ScoreFunc::softmax) {
      sc = test::naive::softmax(s.data(), R.E);
    } else {
      for (int64_t e = 0; e < R.E; ++e)
        sc[size_t(e)] = R.f == ScoreFunc::sigmoid ? test::naive::sigmoid(s[size_t(e)])
                                                  : std::sqrt(std::log1p(std::exp(s[size_t(e)])));
    }
    double selmax = 0;
    for (int64_t e = 0; e < R.E; ++e) {
      o.score[size_t(t * R.E + e)] = sc[size_t(e)];
      const double v = sc[size_t(e)] + (R.bias.empty() ? 0.0 : double(R.bias[size_t(e)]));
      o.sel[size_t(t * R.E + e)] = v;
      selmax = std::max(selmax, std::fabs(v));
    }
    // softmax: its normalising sum over E terms rounds too (scores <= 1)
    o.dscore[size_t(t)] =
        2 * ds + reduction_tol<float>(4, 1.0) +
        (R.f == ScoreFunc::softmax ? reduction_tol<float>(double(R.E), 1.0) : 0.0);
    o.tau[size_t(t)] = 2 * (o.dscore[size_t(t)] + kU * selmax);
  }
  return o;
}

// Checks one routing result (ids [T, k], weights [T, k]) against the oracle; returns the worst
// weight error against fp64 (the weights at the result's own ids), NaN on a failed check.
double check_route(const Router& R, const RouteOracle& o, const std::vector<int32_t>& ids,
                   const std::vector<float>& w, const char* who) {
  const int64_t k = R.k, E = R.E;
  double worst = 0;
  for (int64_t t = 0; t < R.T; ++t) {
    SCOPED_TRACE(::testing::Message() << who << ", token " << t);
    const int32_t* got = &ids[size_t(t * k)];
    const double* sel = &o.sel[size_t(t * E)];
    const double* sc = &o.score[size_t(t * E)];
    if (!R.tid2eid.empty()) {
      for (int64_t c = 0; c < k; ++c)
        if (got[c] != R.tid2eid[size_t(R.ids[size_t(t)] * k + c)]) {
          ADD_FAILURE() << "slot " << c << ": expert " << got[c] << ", table says "
                        << R.tid2eid[size_t(R.ids[size_t(t)] * k + c)];
          return NAN;
        }
    } else {
      std::vector<int32_t> all(static_cast<size_t>(E));
      std::iota(all.begin(), all.end(), 0);
      const std::vector<int32_t> order = test::naive::rank_desc(sel, all);
      bool clear = true;
      for (int64_t c = 0; c < std::min(k + 1, E) - 1; ++c)
        clear = clear && sel[order[size_t(c)]] - sel[order[size_t(c + 1)]] > 2 * o.tau[size_t(t)];
      for (int64_t c = 0; c < k; ++c) {
        if (got[c] < 0 || got[c] >= E || std::count(got, got + k, got[c]) != 1) {
          ADD_FAILURE() << "slot " << c << ": expert " << got[c] << " invalid or repeated";
          return NAN;
        }
        const double off = std::fabs(sel[got[c]] - sel[order[size_t(c)]]);
        if (!(off <= o.tau[size_t(t)]) || (clear && got[c] != order[size_t(c)])) {
          ADD_FAILURE() << "slot " << c << ": expert " << got[c] << " (score+bias " << sel[got[c]]
                        << "), the oracle's rank " << c << " is " << order[size_t(c)] << " ("
                        << sel[order[size_t(c)]] << "), tau " << o.tau[size_t(t)];
          return NAN;
        }
      }
    }
    double S = 0, smax = 0;
    for (int64_t c = 0; c < k; ++c) {
      S += sc[got[c]];
      smax = std::max(smax, sc[got[c]]);
    }
    const double ds = o.dscore[size_t(t)];
    for (int64_t c = 0; c < k; ++c) {
      const bool soft = R.f == ScoreFunc::softmax;
      const double want = soft ? sc[got[c]] * R.scale : sc[got[c]] / S * R.scale;
      const double tol = soft ? R.scale * ds + reduction_tol<float>(2, R.scale)
                              : R.scale * (ds / S + smax * double(k) * ds / (S * S)) +
                                    reduction_tol<float>(double(k), R.scale);
      const double err = std::fabs(double(w[size_t(t * k + c)]) - want);
      if (!(err <= tol)) {
        ADD_FAILURE() << "weight " << c << ": " << w[size_t(t * k + c)] << ", want " << want
                      << ", tol " << tol;
        return NAN;
      }
      worst = std::max(worst, err);
    }
  }
  return worst;
}

// ---- running the router -----------------------------------------------------------------

struct RouteResult {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

MoeRouteParams<float> host_route_params(const Router& R) {
  MoeRouteParams<float> p;
  p.x = view2(R.x.data(), R.T, R.D);
  p.gate = R.gate.data();
  p.bias = R.bias.empty() ? nullptr : R.bias.data();
  if (!R.tid2eid.empty()) {
    p.tid2eid = view2(R.tid2eid.data(), R.V, R.k);
    p.ids = R.ids.data();
  }
  p.experts = R.E;
  p.topk = R.k;
  p.route_scale = R.scale;
  p.score = R.f;
  return p;
}

RouteResult run_ref_route(const Router& R) {
  RouteResult r{std::vector<int32_t>(size_t(R.T * R.k), kIdPoison),
                test::nan_vec<float>(size_t(R.T * R.k))};
  MoeRouteParams<float> p = host_route_params(R);
  p.chosen = view2(r.ids.data(), R.T, R.k);
  p.weights = view2(r.w.data(), R.T, R.k);
  ref::moe_route(p);
  return r;
}

// An int32 [rows, cols] output with row stride ld inside a device allocation whose other slots
// hold kIdCanary (the int twin of test::Guarded); element slots start as kIdPoison.
struct GuardedIds {
  int64_t rows, cols, ld;
  size_t size() const { return size_t(2 * test::kGuard + (rows > 0 ? (rows - 1) * ld + cols : 0)); }
  size_t at(int64_t r, int64_t c) const { return size_t(test::kGuard + r * ld + c); }
  std::vector<int32_t> poisoned() const {
    std::vector<int32_t> img(size(), kIdCanary);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) img[at(r, c)] = kIdPoison;
    return img;
  }
  std::vector<int32_t> extract(const std::vector<int32_t>& img) const {
    std::vector<int32_t> d(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) d[size_t(r * cols + c)] = img[at(r, c)];
    return d;
  }
  bool canaries_intact(const std::vector<int32_t>& img) const {
    size_t slots = 0, canaries = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) slots += img[at(r, c)] == kIdCanary;
    for (int32_t v : img) canaries += v == kIdCanary;
    return canaries - slots == img.size() - size_t(rows * cols);
  }
  View2<int32_t> view(int32_t* base) const { return {base + test::kGuard, rows, cols, ld}; }
};

// The device copies of a router's inputs.
struct DeviceRouter {
  cuda::DeviceBuffer<float> x, gate, bias;
  cuda::DeviceBuffer<int64_t> tid2eid, ids;
  explicit DeviceRouter(const Router& R)
      : x(R.x), gate(R.gate), bias(R.bias), tid2eid(R.tid2eid), ids(R.ids) {}
  MoeRouteParams<float> params(const Router& R) {
    MoeRouteParams<float> p;
    p.x = view2<const float>(x.data(), R.T, R.D);
    p.gate = gate.data();
    p.bias = bias.empty() ? nullptr : bias.data();
    if (!R.tid2eid.empty()) {
      p.tid2eid = view2<const int64_t>(tid2eid.data(), R.V, R.k);
      p.ids = ids.data();
    }
    p.experts = R.E;
    p.topk = R.k;
    p.route_scale = R.scale;
    p.score = R.f;
    return p;
  }
};

// The GPU router on poisoned, canaried outputs (row strides k + pad); checks the canaries and
// a bitwise rerun.
RouteResult run_gpu_route(const Router& R, int64_t pad = 3) {
  DeviceRouter dr(R);
  const GuardedIds gi{R.T, R.k, R.k + pad};
  const Guarded gw{R.T, R.k, R.k + pad};
  cuda::DeviceBuffer<int32_t> did(gi.poisoned());
  cuda::DeviceBuffer<float> dw(gw.poisoned());
  MoeRouteParams<float> p = dr.params(R);
  p.chosen = gi.view(did.data());
  p.weights = gw.view(dw.data());
  cuda::MoeRouteWorkspace ws(R.T, R.E);
  auto launch = [&] { cuda::moe_route(p, ws); };
  launch_and_sync(launch);
  const std::vector<int32_t> ids_img = did.download();
  const std::vector<float> w_img = dw.download();
  EXPECT_TRUE(gi.canaries_intact(ids_img)) << "id canary overwritten";
  EXPECT_TRUE(gw.canaries_intact(w_img));
  did.upload(gi.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dw, gw.poisoned(), w_img, launch)) << "weights rerun differs";
  EXPECT_EQ(did.download(), ids_img) << "ids rerun differs";
  return {gi.extract(ids_img), gw.extract(w_img)};
}

// Tokens whose k ids are the same in a and b ([T, k] each).
std::vector<bool> same_ids(const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                           int64_t k) {
  std::vector<bool> same(a.size() / size_t(k));
  for (size_t t = 0; t < same.size(); ++t)
    same[t] =
        std::equal(a.begin() + long(t) * k, a.begin() + long(t + 1) * k, b.begin() + long(t) * k);
  return same;
}

// At least 90% of the tokens route exactly as the reference does: the worst-case tau can
// exceed the gaps between real scores at D = 4096, but the actual rounding (~ sqrt(D) u |s|)
// almost never reorders them, so a wrong selection cannot hide behind tau.
void expect_mostly_same(const std::vector<bool>& same) {
  const auto n = std::count(same.begin(), same.end(), true);
  EXPECT_GE(double(n), 0.9 * double(same.size()))
      << n << " of " << same.size() << " tokens route as the reference";
}

// GPU and reference against the oracle, and the GPU's weight error against the reference's.
void check_router(const Router& R, int64_t pad = 3) {
  const RouteOracle o = route_oracle(R);
  const RouteResult gpu = run_gpu_route(R, pad), ref = run_ref_route(R);
  const double e_gpu = check_route(R, o, gpu.ids, gpu.w, "GPU");
  const double e_ref = check_route(R, o, ref.ids, ref.w, "ref::moe_route<float>");
  const double floor = reduction_tol<float>(double(R.k), R.scale);
  EXPECT_LE(e_gpu, 2 * e_ref + floor) << "GPU weight error vs the float reference's";
  expect_mostly_same(same_ids(gpu.ids, ref.ids, R.k));
}

std::string name(ScoreFunc f) {
  return f == ScoreFunc::softmax ? "softmax" : f == ScoreFunc::sigmoid ? "sigmoid" : "sqrtsoftplus";
}

// ---- router tests -----------------------------------------------------------------------

// Edge shapes: one token, k = 1, k = E, E not a multiple of the block, more experts than
// threads; every score function, with and without bias.
TEST(MoeRouteCuda, EdgeShapesEveryScoreFunction) {
  DSV4_SKIP_WITHOUT_DEVICE();
  struct S {
    int64_t T, D, E, k;
  };
  for (const S s :
       {S{1, 16, 8, 1}, S{7, 33, 8, 8}, S{33, 64, 16, 4}, S{5, 40, 300, 6}, S{20, 128, 600, 13}})
    for (ScoreFunc f : {ScoreFunc::sqrt_softplus, ScoreFunc::sigmoid, ScoreFunc::softmax})
      for (bool bias : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "T " << s.T << " D " << s.D << " E " << s.E << " k "
                                          << s.k << " " << name(f) << (bias ? " bias" : ""));
        check_router(make_router(s.T, s.D, s.E, s.k, f, bias, uint64_t(s.T * 1000 + s.E)));
      }
}

// Dyadic inputs make every logit exact in any summation order, so duplicated gate rows give
// exactly equal scores: the tie must go to the lower id, in every score function.
TEST(MoeRouteCuda, ExactTiesGoToTheLowerId) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t D = 8, E = 10, k = 4;
  Router R{1, D, E, k};
  R.x.resize(size_t(D));
  for (int64_t d = 0; d < D; ++d)
    R.x[size_t(d)] = float(((d * 7) % 4 + 1) * 0.5 * ((d % 3) ? 1 : -1));
  R.gate.resize(size_t(E * D));
  for (int64_t e = 0; e < E; ++e)  // small distinct rows: |s| <= 3/32 sum|x|
    for (int64_t d = 0; d < D; ++d)
      R.gate[size_t(e * D + d)] = float((((e * 5 + d * 3) % 7) - 3) / 32.0);
  for (int64_t d = 0; d < D; ++d) {  // the top row (s = sum|x| / 2), shared by 6, 1, 4
    const float sign = R.x[size_t(d)] > 0 ? 1.f : -1.f;
    for (int64_t e : {1, 4, 6}) R.gate[size_t(e * D + d)] = 0.5f * sign;
    for (int64_t e : {3, 7}) R.gate[size_t(e * D + d)] = 0.25f * sign;  // the second row
  }
  const std::vector<int32_t> want = {1, 4, 6, 3};
  for (ScoreFunc f : {ScoreFunc::sqrt_softplus, ScoreFunc::sigmoid, ScoreFunc::softmax}) {
    SCOPED_TRACE(name(f));
    R.f = f;
    R.bias.assign(size_t(E),
                  f == ScoreFunc::sqrt_softplus ? 0.25f : 0.f);  // equal: ties stay exact
    const RouteResult gpu = run_gpu_route(R), ref = run_ref_route(R);
    EXPECT_EQ(ref.ids, want);
    EXPECT_EQ(gpu.ids, want);
    EXPECT_EQ(gpu.w[0], gpu.w[1]);  // equal scores, equal weights
    EXPECT_EQ(gpu.w[1], gpu.w[2]);
  }
}

// Hash routing: the table's order, the bias ignored; an id or a table entry out of range gives
// ids -1 and NaN weights for that token only; check_hash_routing gives the reference's errors.
TEST(MoeRouteCuda, HashRoutingKeepsTableOrderIgnoresBias) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Router R = make_router(9, 48, 16, 4, ScoreFunc::sqrt_softplus, true, 70);
  make_hash(R, 11, 71);
  check_router(R);
  const RouteResult biased = run_gpu_route(R);
  Router nb = R;
  nb.bias.clear();
  const RouteResult plain = run_gpu_route(nb);
  EXPECT_EQ(biased.ids, plain.ids);
  EXPECT_TRUE(test::bitwise_equal(biased.w, plain.w)) << "the bias changed hash-routed weights";
  // Bad rows on the device: token 2 reads id 11 (outside [0, 11)), token 5 a row with expert 16.
  Router bad = R;
  bad.ids[2] = 11;
  bad.tid2eid[size_t(bad.ids[5] * bad.k + 1)] = 16;
  const RouteResult got = run_gpu_route(bad);
  for (int64_t t = 0; t < R.T; ++t)
    for (int64_t c = 0; c < R.k; ++c) {
      const size_t i = size_t(t * R.k + c);
      if (t == 2 || t == 5 || bad.ids[size_t(t)] == bad.ids[5]) {
        EXPECT_EQ(got.ids[i], -1) << "token " << t;
        EXPECT_TRUE(std::isnan(got.w[i])) << "token " << t;
      } else {
        EXPECT_EQ(got.ids[i], plain.ids[i]) << "token " << t;
        EXPECT_EQ(got.w[i], plain.w[i]) << "token " << t;
      }
    }
}

// V4-Flash (D 4096, E 256, k 6, scale 1.5) and V4-Pro (D 7168, E 384, scale 2.5) score
// routing with bias; a Flash hash layer with the real vocabulary (129280 rows).
TEST(MoeRouteCuda, RealShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Router flash = make_router(64, 4096, 256, 6, ScoreFunc::sqrt_softplus, true, 80);
  check_router(flash);
  Router pro = make_router(32, 7168, 384, 6, ScoreFunc::sqrt_softplus, true, 81);
  pro.scale = 2.5;
  check_router(pro);
  Router hash = make_router(32, 4096, 256, 6, ScoreFunc::sqrt_softplus, false, 82);
  make_hash(hash, 129280, 83);
  check_router(hash, 0);
}

// Host-side validation, no device needed: the reference's messages, then the GPU's limits.
TEST(MoeRouteCuda, RejectsBadParamsBeforeLaunch) {
  float fx[64] = {1.f};
  int32_t ids_out[64] = {};
  float w_out[64] = {};
  int64_t table[64] = {}, tok[8] = {};
  auto base = [&](int64_t k) {
    MoeRouteParams<float> p;
    p.x = view2<const float>(fx, 2, 4);
    p.gate = fx;
    p.experts = 6;
    p.topk = k;
    p.chosen = view2(ids_out, 2, k);
    p.weights = view2(w_out, 2, k);
    return p;
  };
  auto same_error = [&](const MoeRouteParams<float>& p, const char* what) {
    SCOPED_TRACE(what);
    std::string ref_msg, gpu_msg;
    try {
      ref::moe_route(p);
    } catch (const InputError& e) {
      ref_msg = e.what();
    }
    try {
      cuda::moe_route(p);
    } catch (const InputError& e) {
      gpu_msg = e.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
  };
  same_error(base(7), "topk > experts");
  same_error(base(0), "topk 0");
  MoeRouteParams<float> p = base(3);
  p.chosen = view2(ids_out, 3, 3);
  same_error(p, "experts rows");
  p = base(3);
  p.weights = view2(w_out, 2, 2);
  same_error(p, "weights cols");
  p = base(3);
  p.tid2eid = view2<const int64_t>(table, 4, 3);
  same_error(p, "hash without ids");
  p.ids = tok;
  p.tid2eid = view2<const int64_t>(table, 4, 2);
  same_error(p, "tid2eid columns");
  // The GPU's limit on experts (the reference has none).
  p = base(3);
  p.experts = cuda::kMoeMaxExperts + 1;
  EXPECT_THROW(cuda::moe_route(p), InputError);
  // check_hash_routing: the reference's range errors on host tables.
  for (int64_t i = 0; i < 12; ++i) table[i] = i % 6;
  tok[0] = 1;
  tok[1] = 3;
  const View2<const int64_t> tv = view2<const int64_t>(table, 4, 3);
  EXPECT_NO_THROW(cuda::check_hash_routing(tv, tok, 2, 6));
  auto hash_error = [&](const char* what) {
    SCOPED_TRACE(what);
    MoeRouteParams<float> q = base(3);
    q.tid2eid = tv;
    q.ids = tok;
    std::string ref_msg, gpu_msg;
    try {
      ref::moe_route(q);
    } catch (const InputError& e) {
      ref_msg = e.what();
    }
    try {
      cuda::check_hash_routing(tv, tok, 2, 6);
    } catch (const InputError& e) {
      gpu_msg = e.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
  };
  tok[1] = 4;
  hash_error("id == V");
  tok[1] = -1;
  hash_error("id < 0");
  tok[1] = 3;
  table[3 * 3 + 2] = 6;
  hash_error("expert == E");
  table[3 * 3 + 2] = -1;
  hash_error("expert < 0");
}

// ---- the layer --------------------------------------------------------------------------

struct Layer {
  Router R;
  int64_t I;
  double limit = kSwigluLimit;
  bool shared = true, act_quant = false;
  std::vector<float> w1, w3, w2, s1, s3, s2;  // [E, I, D], [E, I, D], [E, D, I]; shared [I, D] ...
};

// W1, W3 ~ U(-a, a) with a = wscale 2.5 sqrt(3 / D): with x ~ U(-1, 1), g and u ~ N(0, (1.44
// wscale)^2); wscale 6 puts |g|, |u| past the clamp at 10 on all four sides often (the small
// layer test counts the hits), wscale 1 rarely. W2 ~ U(-1, 1) / sqrt(I).
Layer make_layer(Router R, int64_t I, double wscale, uint64_t seed) {
  Layer L{std::move(R), I};
  const int64_t E = L.R.E, D = L.R.D;
  const double a = wscale * 2.5 * std::sqrt(3.0) / std::sqrt(double(D)),
               b = 1.0 / std::sqrt(double(I));
  L.w1 = uniform_f(size_t(E * I * D), seed, -a, a);
  L.w3 = uniform_f(size_t(E * I * D), seed + 1, -a, a);
  L.w2 = uniform_f(size_t(E * D * I), seed + 2, -b, b);
  L.s1 = uniform_f(size_t(I * D), seed + 3, -a, a);
  L.s3 = uniform_f(size_t(I * D), seed + 4, -a, a);
  L.s2 = uniform_f(size_t(D * I), seed + 5, -b, b);
  return L;
}

struct LayerOut {
  std::vector<float> y;  // [T, D]
  RouteResult route;
};

double silu_of(double g) {
  return g / (1.0 + std::exp(-g));
}

// How far SiLU(min(g', limit)) can be from SiLU(min(g, limit)) for |g' - g| <= dg (limit <= 0:
// no clamp): the larger end-point deviation (SiLU is monotone on either side of its minimum
// at -1.2785), or 1.1 dg (|SiLU'| <= 1.1) when the interval holds the minimum. Far below zero
// this is ~ |g| e^g dg, so saturated SiLU inputs get a tight bound.
double silu_err(double g, double dg, double limit) {
  auto c = [&](double v) { return limit > 0 ? std::min(v, limit) : v; };
  constexpr double kSiluMin = -1.2785;
  if (g - dg <= kSiluMin && kSiluMin <= g + dg) return 1.1 * dg;
  const double s = silu_of(c(g));
  return std::max(std::fabs(silu_of(c(g + dg)) - s), std::fabs(silu_of(c(g - dg)) - s));
}

// fp64 expert of token x_t (D) with route weight w, accumulated into y/bound (D each); clamp
// hits counted into hits[4] (g > l, g < -l, u > l, u < -l).
void expert_oracle(const float* x, const float* w1, const float* w3, const float* w2, int64_t D,
                   int64_t I, double w, double limit, double* y, double* bound, int64_t* hits) {
  std::vector<double> h(static_cast<size_t>(I)), dh(static_cast<size_t>(I));
  for (int64_t i = 0; i < I; ++i) {
    double g = 0, u = 0, ga = 0, ua = 0;
    for (int64_t d = 0; d < D; ++d) {
      const double xd = double(x[d]);
      g += double(w1[i * D + d]) * xd;
      u += double(w3[i * D + d]) * xd;
      ga += std::fabs(double(w1[i * D + d]) * xd);
      ua += std::fabs(double(w3[i * D + d]) * xd);
    }
    hits[0] += g > limit;
    hits[1] += g < -limit;
    hits[2] += u > limit;
    hits[3] += u < -limit;
    if (limit > 0) {
      u = std::min(std::max(u, -limit), limit);
      g = std::min(g, limit);
    }
    const double silu = silu_of(g);
    h[size_t(i)] = silu * u * w;
    dh[size_t(i)] =
        std::fabs(w) * (std::fabs(u) * silu_err(g, reduction_tol<float>(double(D), ga), limit) +
                        std::fabs(silu) * reduction_tol<float>(double(D), ua)) +
        reduction_tol<float>(3, std::fabs(h[size_t(i)]));
  }
  for (int64_t d = 0; d < D; ++d) {
    double s = 0, m = 0, b = 0;
    for (int64_t i = 0; i < I; ++i) {
      s += double(w2[d * I + i]) * h[size_t(i)];
      m += std::fabs(double(w2[d * I + i]) * h[size_t(i)]);
      b += std::fabs(double(w2[d * I + i])) * dh[size_t(i)];
    }
    y[d] += s;
    bound[d] +=
        b + reduction_tol<float>(double(I), m) + reduction_tol<float>(8, m);  // + the combine
  }
}

MoeParams<float> layer_params(const Layer& L, MoeRouteParams<float> route, const float* w1,
                              const float* w3, const float* w2, const float* s1, const float* s3,
                              const float* s2) {
  MoeParams<float> p;
  p.route = route;
  p.w1 = w1;
  p.w3 = w3;
  p.w2 = w2;
  if (L.shared) {
    p.shared_w1 = s1;
    p.shared_w3 = s3;
    p.shared_w2 = s2;
  }
  p.inter = L.I;
  p.swiglu_limit = L.limit;
  p.act_quant = L.act_quant;
  return p;
}

LayerOut run_ref_layer(const Layer& L) {
  const Router& R = L.R;
  LayerOut o{test::nan_vec<float>(size_t(R.T * R.D)),
             {std::vector<int32_t>(size_t(R.T * R.k), kIdPoison),
              test::nan_vec<float>(size_t(R.T * R.k))}};
  MoeParams<float> p = layer_params(L, host_route_params(R), L.w1.data(), L.w3.data(), L.w2.data(),
                                    L.s1.data(), L.s3.data(), L.s2.data());
  p.route.chosen = view2(o.route.ids.data(), R.T, R.k);
  p.route.weights = view2(o.route.w.data(), R.T, R.k);
  p.y = view2(o.y.data(), R.T, R.D);
  ref::moe(p);
  return o;
}

// The GPU layer on a poisoned, canaried y (row stride D + 5) and route outputs; canaries and a
// bitwise rerun checked.
LayerOut run_gpu_layer(const Layer& L) {
  const Router& R = L.R;
  DeviceRouter dr(R);
  cuda::DeviceBuffer<float> w1(L.w1), w3(L.w3), w2(L.w2), s1(L.s1), s3(L.s3), s2(L.s2);
  const Guarded gy{R.T, R.D, R.D + 5}, gw{R.T, R.k, R.k + 2};
  const GuardedIds gi{R.T, R.k, R.k + 2};
  cuda::DeviceBuffer<float> dy(gy.poisoned()), dw(gw.poisoned());
  cuda::DeviceBuffer<int32_t> did(gi.poisoned());
  MoeParams<float> p = layer_params(L, dr.params(R), w1.data(), w3.data(), w2.data(), s1.data(),
                                    s3.data(), s2.data());
  p.route.chosen = gi.view(did.data());
  p.route.weights = gw.view(dw.data());
  p.y = gy.view(dy.data());
  cuda::MoeWorkspace ws(R.T, R.D, R.E, R.k, L.I);
  auto launch = [&] { cuda::moe(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> y_img = dy.download(), w_img = dw.download();
  const std::vector<int32_t> id_img = did.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(gw.canaries_intact(w_img));
  EXPECT_TRUE(gi.canaries_intact(id_img)) << "id canary overwritten";
  did.upload(gi.poisoned());
  dw.upload(gw.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dy, gy.poisoned(), y_img, launch)) << "y rerun differs";
  EXPECT_EQ(did.download(), id_img) << "ids rerun differs";
  EXPECT_TRUE(test::bitwise_equal(dw.download(), w_img)) << "weights rerun differs";
  return {gy.extract(y_img), {gi.extract(id_img), gw.extract(w_img)}};
}

struct LayerOracle {
  std::vector<double> y, bound;
  int64_t hits[4] = {0, 0, 0, 0};
  std::vector<int64_t> per_expert;  // tokens routed to each expert
};

// The fp64 layer at the given routing (ids, float weights); tokens with an id -1 are skipped.
LayerOracle layer_oracle(const Layer& L, const RouteResult& route) {
  const Router& R = L.R;
  const int64_t D = R.D, I = L.I;
  LayerOracle o{std::vector<double>(size_t(R.T * D)), std::vector<double>(size_t(R.T * D)), {}, {}};
  o.per_expert.assign(size_t(R.E), 0);
  for (int64_t t = 0; t < R.T; ++t) {
    const float* x = &R.x[size_t(t * D)];
    double* y = &o.y[size_t(t * D)];
    double* b = &o.bound[size_t(t * D)];
    for (int64_t c = 0; c < R.k; ++c) {
      const int64_t e = route.ids[size_t(t * R.k + c)];
      if (e < 0) continue;
      ++o.per_expert[size_t(e)];
      expert_oracle(x, &L.w1[size_t(e * I * D)], &L.w3[size_t(e * I * D)], &L.w2[size_t(e * D * I)],
                    D, I, double(route.w[size_t(t * R.k + c)]), L.limit, y, b, o.hits);
    }
    if (L.shared)
      expert_oracle(x, L.s1.data(), L.s3.data(), L.s2.data(), D, I, 1.0, L.limit, y, b, o.hits);
  }
  return o;
}

::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& want,
                                  const std::vector<double>& bound) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= bound[i]))
      return ::testing::AssertionFailure()
             << "element " << i << ": " << got[i] << ", want " << want[i] << ", bound " << bound[i];
  return ::testing::AssertionSuccess();
}

// The GPU layer against the fp64 oracle at its own routing (within the derived bound), its
// routing against the router oracle, and against ref::moe<float> (2x its error + a floor).
// Returns the oracle (for the callers' coverage checks).
LayerOracle check_layer(const Layer& L) {
  const LayerOut gpu = run_gpu_layer(L), ref = run_ref_layer(L);
  const RouteOracle ro = route_oracle(L.R);
  check_route(L.R, ro, gpu.route.ids, gpu.route.w, "GPU layer routing");
  const LayerOracle o = layer_oracle(L, gpu.route);
  for (float v : gpu.y) EXPECT_TRUE(std::isfinite(v)) << "non-finite y";
  EXPECT_TRUE(within(gpu.y, o.y, o.bound)) << "against the fp64 oracle at the GPU's routing";
  // Against the reference on the tokens it routes the same way (its error against the oracle
  // at the GPU's routing includes the weights' rounding difference, far below the floor of
  // half the largest derived bound).
  const std::vector<bool> same = same_ids(gpu.route.ids, ref.route.ids, L.R.k);
  expect_mostly_same(same);
  double e_gpu = 0, e_ref = 0;
  for (int64_t t = 0; t < L.R.T; ++t)
    if (same[size_t(t)])
      for (int64_t d = 0; d < L.R.D; ++d) {
        const size_t i = size_t(t * L.R.D + d);
        e_gpu = std::max(e_gpu, std::fabs(double(gpu.y[i]) - o.y[i]));
        e_ref = std::max(e_ref, std::fabs(double(ref.y[i]) - o.y[i]));
      }
  const double floor = 0.5 * *std::max_element(o.bound.begin(), o.bound.end());
  EXPECT_LE(e_gpu, 2 * e_ref + floor) << "GPU error vs the float reference's";
  return o;
}

// Small layer, every expert reached, with and without the shared expert; the clamp is hit on
// all four sides; strided outputs; a layer where the bias empties two experts; limit 0 (no
// clamp).
TEST(MoeCuda, SmallLayerEveryAndEmptyExperts) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (bool shared : {true, false}) {
    SCOPED_TRACE(shared ? "shared expert" : "no shared expert");
    Layer L =
        make_layer(make_router(40, 32, 8, 3, ScoreFunc::sqrt_softplus, true, 90), 24, 6.0, 91);
    L.shared = shared;
    const LayerOracle o = check_layer(L);
    for (int64_t e = 0; e < L.R.E; ++e)
      EXPECT_GT(o.per_expert[size_t(e)], 0) << "expert " << e << " unused";
    for (int h = 0; h < 4; ++h) EXPECT_GT(o.hits[h], 0) << "clamp side " << h << " never hit";
  }
  Layer L = make_layer(make_router(24, 32, 8, 2, ScoreFunc::sqrt_softplus, true, 92), 16, 1.0, 93);
  L.R.bias[2] = -100.f;
  L.R.bias[5] = -100.f;
  const LayerOracle o = check_layer(L);
  EXPECT_EQ(o.per_expert[2], 0);
  EXPECT_EQ(o.per_expert[5], 0);
  L.limit = 0.0;
  check_layer(L);
}

// The clamp of g is one-sided (g <- min(g, limit)): with x > 0, W1 < 0 and W3 > 0 every g is
// about -36 and every u about +36 (clamped to 10), so h = SiLU(g) u w ~ 1e-14 and y ~ 0 within a
// tiny bound; clamping g from below too would give h = SiLU(-10) 10 w ~ -4.5e-3 w, far outside.
TEST(MoeCuda, GClampIsOneSided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Layer L = make_layer(make_router(10, 32, 4, 2, ScoreFunc::sqrt_softplus, true, 95), 16, 1.0, 96);
  L.R.x = uniform_f(L.R.x.size(), 97, 0.5, 1.0);
  for (auto* w : {&L.w1, &L.s1}) *w = uniform_f(w->size(), 98, -2.0, -1.0);
  for (auto* w : {&L.w3, &L.s3}) *w = uniform_f(w->size(), 99, 1.0, 2.0);
  const LayerOracle o = check_layer(L);
  EXPECT_GT(o.hits[1], 0);  // g < -limit
  EXPECT_GT(o.hits[2], 0);  // u > limit
  for (double b : o.bound) ASSERT_LT(b, 1e-6) << "the bound must be far below SiLU(-10) 10 w";
}

// Many tokens over the V4 router geometry (E 256, k 6: the permutation walks 1800 entries in
// 57 warp steps), narrow experts to keep the oracle short; softmax and sigmoid routing too.
TEST(MoeCuda, ManyTokensFlashRouting) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (ScoreFunc f : {ScoreFunc::sqrt_softplus, ScoreFunc::softmax, ScoreFunc::sigmoid}) {
    SCOPED_TRACE(name(f));
    // A bias of 0.1 would outweigh the spread of softmax scores (~1/E) and of sigmoid's.
    Layer L = make_layer(make_router(300, 64, 256, 6, f, f == ScoreFunc::sqrt_softplus, 100), 32,
                         1.0, 101);
    const LayerOracle o = check_layer(L);
    int64_t used = 0;
    for (int64_t n : o.per_expert) used += n > 0;
    EXPECT_GT(used, 200) << "too few experts reached";
  }
}

// A hash layer (layers 0-2): the table's experts, including a row that names one expert twice
// (the reference applies it twice; §9 item 7 says the official code applies it once, and
// generated checkpoints avoid such rows), and a token whose id is out of range on the device
// (a NaN row, the other rows unaffected).
TEST(MoeCuda, HashLayer) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Layer L =
      make_layer(make_router(20, 48, 12, 4, ScoreFunc::sqrt_softplus, false, 110), 16, 1.0, 111);
  make_hash(L.R, 30, 112);
  L.R.tid2eid[size_t(L.R.ids[3] * 4 + 2)] = L.R.tid2eid[size_t(L.R.ids[3] * 4)];  // duplicate
  const LayerOracle o = check_layer(L);
  // The bad token is in no expert group; the other tokens keep their routing (hash ids, and the
  // router GEMM has the same shape), but the groups' sizes change and with them possibly cuBLAS's
  // kernel choice: within the oracle's bound, not bitwise.
  Layer bad = L;
  bad.R.ids[7] = 30;
  const LayerOut got = run_gpu_layer(bad);
  for (int64_t t = 0; t < L.R.T; ++t)
    for (int64_t d = 0; d < L.R.D; ++d) {
      const size_t i = size_t(t * L.R.D + d);
      if (t == 7)
        EXPECT_TRUE(std::isnan(got.y[i])) << "token " << t;
      else
        ASSERT_LE(std::fabs(double(got.y[i]) - o.y[i]), o.bound[i])
            << "token " << t << " col " << d;
    }
}

// act_quant: the FP8 round trips of x and h (D, I multiples of 128 as in the real model).
TEST(MoeCuda, ActQuantMatchesTheReference) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Layer L =
      make_layer(make_router(24, 256, 8, 3, ScoreFunc::sqrt_softplus, true, 120), 256, 1.0, 121);
  L.act_quant = true;
  const LayerOut gpu = run_gpu_layer(L), ref = run_ref_layer(L);
  ASSERT_EQ(gpu.route.ids, ref.route.ids);
  Layer plain = L;
  plain.act_quant = false;
  const LayerOut ref_plain = run_ref_layer(plain);
  double diff = 0, effect = 0;
  for (size_t i = 0; i < gpu.y.size(); ++i) {
    ASSERT_TRUE(std::isfinite(gpu.y[i]));
    diff += std::pow(double(gpu.y[i]) - double(ref.y[i]), 2);
    effect += std::pow(double(ref.y[i]) - double(ref_plain.y[i]), 2);
  }
  EXPECT_GT(effect, 0);
  EXPECT_LT(std::sqrt(diff), 0.1 * std::sqrt(effect))
      << "GPU act_quant differs from the reference's by more than a tenth of its effect";
}

// The real widths: D 4096, I 2048, k 6 (V4-Flash), 8 experts, shared expert, 12 tokens.
TEST(MoeCuda, RealWidthsFlash) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Layer L =
      make_layer(make_router(12, 4096, 8, 6, ScoreFunc::sqrt_softplus, true, 130), 2048, 1.0, 131);
  check_layer(L);
}

// V4-Pro widths (D 7168, I 3072, scale 2.5): 1.8 GB of host weights, behind DSV4_LONG_TESTS=1.
TEST(MoeCuda, RealWidthsProLong) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const char* env = std::getenv("DSV4_LONG_TESTS");
  if (!env || std::string(env) != "1") GTEST_SKIP() << "set DSV4_LONG_TESTS=1 to run";
  Router R = make_router(8, 7168, 8, 6, ScoreFunc::sqrt_softplus, true, 140);
  R.scale = 2.5;
  check_layer(make_layer(std::move(R), 3072, 1.0, 141));
}

// Host-side validation, no device needed: ref::moe's messages, then the GPU's limits.
TEST(MoeCuda, RejectsBadParamsBeforeLaunch) {
  float f[256] = {1.f};
  int32_t ids_out[64] = {};
  auto base = [&]() {
    MoeParams<float> p;
    p.route.x = view2<const float>(f, 2, 4);
    p.route.gate = f;
    p.route.experts = 4;
    p.route.topk = 2;
    p.route.chosen = view2(ids_out, 2, 2);
    p.route.weights = view2(f + 200, 2, 2);
    p.w1 = p.w3 = p.w2 = f;
    p.inter = 3;
    p.y = view2(f + 100, 2, 4);
    return p;
  };
  auto same_error = [&](const MoeParams<float>& p, const char* what) {
    SCOPED_TRACE(what);
    std::string ref_msg, gpu_msg;
    try {
      ref::moe(p);
    } catch (const InputError& e) {
      ref_msg = e.what();
    }
    try {
      cuda::moe(p);
    } catch (const InputError& e) {
      gpu_msg = e.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
  };
  MoeParams<float> p = base();
  p.route.topk = 5;
  same_error(p, "topk > experts");
  p = base();
  p.y = view2(f + 100, 2, 3);
  same_error(p, "y cols");
  p = base();
  p.y = view2(f + 100, 1, 4);
  same_error(p, "y rows");
  p = base();
  p.inter = 0;
  same_error(p, "inter 0");
  // A workspace too small for the call (0 tokens: it needs no device; the check comes first).
  p = base();
  cuda::MoeWorkspace ws(0, 4, 4, 2, 3);
  EXPECT_THROW(cuda::moe(p, ws), InputError);
}

}  // namespace
}  // namespace dsv4
