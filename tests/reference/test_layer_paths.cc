// Tests of the per-token paths of a V4 attention layer (spec §2.1, §2.2, §2.6, §2.7, §9.4):
//   ref::query_path   (reference/query_path.h)
//   ref::window_kv    (reference/window_kv.h)
//   ref::output_proj  (reference/output_proj.h)
// Oracles: naive double loops written from the spec, built from the shared pieces of
// tests/support/naive.h (RoPE table §2.7 and rotation, RMSNorm, the FP8 e4m3 round trip of
// §2.2 step 3 / §9.4 with its own scalar grid, attention with a sink) and the error model of
// tests/support/error_model.h; they never call a reference op.
// The SHIFT test at the end is an invariant that ties query_path + window_kv + attention +
// output_proj together (§2.6: with the inverse RoPE, y depends on relative positions only).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reference/attention.h"
#include "reference/output_proj.h"
#include "reference/query_path.h"
#include "reference/rope.h"
#include "reference/window_kv.h"
#include "tests/support/attention_weights.h"
#include "tests/support/compare.h"
#include "tests/support/error_model.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using test::ErrModel;
using test::float_exact;
using test::max_abs;
using test::max_abs_diff;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kRd = naive::kRopeDim;  // §2.7: RoPE on the last 64 dims of every head

// ---------------------------------------------------------------------------------------
// Naive building blocks, from the spec (tests/support/naive.h).

// §2.7 RoPE frequencies: compressed layers theta 160000 with YaRN factor 16 over [15, 25];
// window-only layers theta 10000, plain.
const std::vector<double>& spec_freqs(bool compressed) {
  return compressed ? naive::v4_compressed_freqs() : naive::v4_window_freqs();
}

// FP8 round trip of v[0..n) in blocks of `block`: UE8M0 scale 2^e with e the smallest integer
// such that 448 * 2^e >= max(amax, 1e-4), e4m3fn rounding (to nearest even) of v / 2^e.
void spec_fp8(double* v, int64_t n, int64_t block) {
  naive::quant_blocks(naive::Fmt::fp8, v, n, block);
}

// ---------------------------------------------------------------------------------------
// A small layer: D = 256, H = 4, d = 128 (RoPE on the last 64), q_rank = 128, groups 2,
// o_rank 64. Every act_quant width (D, q_rank, groups*o_rank) is a multiple of 128, so no
// partial FP8 block arises. Weights are uniform with unit gain (sqrt(3/fan_in)), norm
// weights in [0.5, 1.5], x ~ N(0, 1); all float-representable.
struct Layer {
  int64_t D = 256, H = 4, d = 128, q_rank = 128, groups = 2, o_rank = 64;
  std::vector<double> wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  int64_t gw() const { return (H / groups) * d; }
};

Layer make_layer(uint64_t seed, int64_t head_dim = 128) {
  Layer L;
  L.d = head_dim;
  test::fill_attention_path_weights(L, seed);  // seeds seed + 1 .. seed + 8
  return L;
}

struct Quant {  // where the official numerics round activations to FP8 (§9.4)
  bool wq_a = false, wq_b = false, wkv = false, wo_a = false, wo_b = false, kv = false;
};
Quant official_act() { return {true, true, true, false, true, false}; }

// §2.1
struct QRef {
  std::vector<double> cq, q;
  ErrModel em_cq, em_q;
};
QRef spec_query(const Layer& L, const std::vector<double>& x, int64_t T, int64_t pos0,
                bool compressed_table, const Quant& qz) {
  const auto f = spec_freqs(compressed_table);
  QRef r;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> xi(x.begin() + t * L.D, x.begin() + (t + 1) * L.D);
    if (qz.wq_a) spec_fp8(xi.data(), L.D, 128);
    std::vector<double> cq = test::linear_noted(L.wq_a, L.q_rank, L.D, xi.data(), &r.em_cq, "wq_a");
    naive::rmsnorm(cq.data(), L.q_rank, L.q_norm.data());
    r.cq.insert(r.cq.end(), cq.begin(), cq.end());
    if (qz.wq_b) spec_fp8(cq.data(), L.q_rank, 128);
    std::vector<double> q = test::linear_noted(L.wq_b, L.H * L.d, L.q_rank, cq.data(), &r.em_q, "wq_b");
    for (int64_t h = 0; h < L.H; ++h) {
      naive::rmsnorm(&q[size_t(h * L.d)], L.d, nullptr);
      naive::rope_interleaved(&q[size_t(h * L.d + L.d - kRd)], double(pos0 + t), f);
    }
    r.q.insert(r.q.end(), q.begin(), q.end());
  }
  r.em_q.stages.insert(r.em_cq.stages.begin(), r.em_cq.stages.end());
  return r;
}

// §2.2 (pre, when non-null, receives the rows before the step-3 rounding)
std::vector<double> spec_kv(const Layer& L, const std::vector<double>& x, int64_t T, int64_t pos0,
                            bool compressed_table, const Quant& qz, ErrModel* em,
                            int64_t kv_block = 64, std::vector<double>* pre = nullptr) {
  const auto f = spec_freqs(compressed_table);
  std::vector<double> out;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> xi(x.begin() + t * L.D, x.begin() + (t + 1) * L.D);
    if (qz.wkv) spec_fp8(xi.data(), L.D, 128);
    std::vector<double> kv = test::linear_noted(L.wkv, L.d, L.D, xi.data(), em, "wkv");
    naive::rmsnorm(kv.data(), L.d, L.kv_norm.data());
    naive::rope_interleaved(&kv[size_t(L.d - kRd)], double(pos0 + t), f);
    if (pre) pre->insert(pre->end(), kv.begin(), kv.end());  // before the rounding
    if (qz.kv) {  // step 3: FP8 non-RoPE dims in blocks, BF16 RoPE dims
      spec_fp8(kv.data(), L.d - kRd, kv_block);
      naive::round_bf16_all(&kv[size_t(L.d - kRd)], kRd);
    }
    out.insert(out.end(), kv.begin(), kv.end());
  }
  return out;
}

// §2.6
std::vector<double> spec_output(const Layer& L, const std::vector<double>& o, int64_t T,
                                int64_t pos0, bool compressed_table, const Quant& qz,
                                ErrModel* em) {
  const auto f = spec_freqs(compressed_table);
  const int64_t gr = L.groups * L.o_rank;
  std::vector<double> y;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> ot(o.begin() + t * L.H * L.d, o.begin() + (t + 1) * L.H * L.d);
    for (int64_t h = 0; h < L.H; ++h)
      naive::rope_interleaved(&ot[size_t(h * L.d + L.d - kRd)], double(pos0 + t), f, -1.0);  // angle -p
    std::vector<double> u(static_cast<size_t>(gr));
    for (int64_t g = 0; g < L.groups; ++g) {
      // group g: heads [g*H/g, (g+1)*H/g) concatenated, rows [g*r, (g+1)*r) of wo_a
      std::vector<double> cat(ot.begin() + g * L.gw(), ot.begin() + (g + 1) * L.gw());
      if (qz.wo_a) spec_fp8(cat.data(), L.gw(), 128);
      std::vector<double> wg(L.wo_a.begin() + g * L.o_rank * L.gw(),
                             L.wo_a.begin() + (g + 1) * L.o_rank * L.gw());
      std::vector<double> ug = test::linear_noted(wg, L.o_rank, L.gw(), cat.data(), em, "wo_a");
      std::copy(ug.begin(), ug.end(), u.begin() + g * L.o_rank);
    }
    if (qz.wo_b) spec_fp8(u.data(), gr, 128);
    std::vector<double> yt = test::linear_noted(L.wo_b, L.D, gr, u.data(), em, "wo_b");
    y.insert(y.end(), yt.begin(), yt.end());
  }
  return y;
}

// ---------------------------------------------------------------------------------------
// Running the ops (outputs poisoned with NaN).

RopeConfig table(bool compressed) { return compressed ? rope_v4_compressed() : rope_v4_swa(); }

template <class T>
struct QOut {
  std::vector<T> cq, q;
};

template <class T>
QOut<T> run_query(const Layer& L, const std::vector<double>& x, int64_t Tn, int64_t pos0,
                  bool compressed, bool act_quant) {
  const auto xs = test::cast<T>(x), wa = test::cast<T>(L.wq_a), qn = test::cast<T>(L.q_norm),
             wb = test::cast<T>(L.wq_b);
  QOut<T> out;
  out.cq.assign(size_t(Tn * L.q_rank), T(kNaN));
  out.q.assign(size_t(Tn * L.H * L.d), T(kNaN));
  QueryPathParams<T> p;
  p.x = view2(xs.data(), Tn, L.D);
  p.wq_a = wa.data();
  p.q_norm = qn.data();
  p.wq_b = wb.data();
  p.q_rank = L.q_rank;
  p.heads = L.H;
  p.head_dim = L.d;
  p.pos0 = pos0;
  p.rope = table(compressed);
  p.act_quant = act_quant;
  p.cq = view2(out.cq.data(), Tn, L.q_rank);
  p.q = view2(out.q.data(), Tn, L.H * L.d);
  ref::query_path(p);
  return out;
}

template <class T>
std::vector<T> run_kv(const Layer& L, const std::vector<double>& x, int64_t Tn, int64_t pos0,
                      bool compressed, bool quant, bool act_quant) {
  const auto xs = test::cast<T>(x), w = test::cast<T>(L.wkv), n = test::cast<T>(L.kv_norm);
  std::vector<T> kv(size_t(Tn * L.d), T(kNaN));
  WindowKvParams<T> p;
  p.x = view2(xs.data(), Tn, L.D);
  p.wkv = w.data();
  p.kv_norm = n.data();
  p.head_dim = L.d;
  p.pos0 = pos0;
  p.rope = table(compressed);
  p.quant = quant;
  p.act_quant = act_quant;
  p.kv = view2(kv.data(), Tn, L.d);
  ref::window_kv(p);
  return kv;
}

template <class T>
std::vector<T> run_output(const Layer& L, const std::vector<T>& o, int64_t Tn, int64_t pos0,
                          bool compressed, bool act_quant) {
  const auto wa = test::cast<T>(L.wo_a), wb = test::cast<T>(L.wo_b);
  std::vector<T> y(size_t(Tn * L.D), T(kNaN));
  OutputProjParams<T> p;
  p.o = view2(o.data(), Tn, L.H * L.d);
  p.wo_a = wa.data();
  p.wo_b = wb.data();
  p.heads = L.H;
  p.head_dim = L.d;
  p.groups = L.groups;
  p.o_rank = L.o_rank;
  p.pos0 = pos0;
  p.rope = table(compressed);
  p.act_quant = act_quant;
  p.y = view2(y.data(), Tn, L.D);
  ref::output_proj(p);
  return y;
}

template <class T>
class LayerPaths : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerPaths, Types);

constexpr int64_t kT = 20;

struct PathCase {
  int64_t pos0;
  bool compressed;
};
const PathCase kPathCases[] = {{0, false}, {0, true}, {5000, false}, {70000, true}};

std::string name(const PathCase& c) {
  return "pos0 " + std::to_string(c.pos0) + (c.compressed ? " YaRN table" : " theta 1e4");
}

// ---------------------------------------------------------------------------------------
// §2.1 query path.

TYPED_TEST(LayerPaths, QueryPathMatchesOracle) {
  using T = TypeParam;
  const Layer L = make_layer(100);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 101));
  for (const PathCase& c : kPathCases) {
    SCOPED_TRACE(name(c));
    const QRef r = spec_query(L, x, kT, c.pos0, c.compressed, {});
    const QOut<T> out = run_query<T>(L, x, kT, c.pos0, c.compressed, false);
    EXPECT_TRUE(test::all_close(out.cq, r.cq, r.em_cq.rel<T>() * max_abs(r.cq))) << "cq";
    EXPECT_TRUE(test::all_close(out.q, r.q, r.em_q.rel<T>() * max_abs(r.q))) << "q";
  }
}

// Non-vacuity: the oracle comparison tells the two RoPE tables apart, and the per-head RMS
// normalisation is really unweighted per head (a whole-row RMS oracle is rejected).
TYPED_TEST(LayerPaths, QueryPathToleranceDetectsWrongTable) {
  using T = TypeParam;
  const Layer L = make_layer(150);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 151));
  const QRef good = spec_query(L, x, kT, 1000, true, {});
  const QRef bad = spec_query(L, x, kT, 1000, false, {});
  const QOut<T> out = run_query<T>(L, x, kT, 1000, true, false);
  const double tol = good.em_q.rel<T>() * max_abs(good.q);
  EXPECT_TRUE(test::all_close(out.q, good.q, tol));
  EXPECT_FALSE(test::all_close(out.q, bad.q, tol));
  // per-head RMS: every head of the output has mean square 1 (up to eps)
  for (int64_t t = 0; t < kT; ++t)
    for (int64_t h = 0; h < L.H; ++h) {
      double ss = 0;
      for (int64_t i = 0; i < L.d; ++i) ss += double(out.q[size_t((t * L.H + h) * L.d + i)]) * double(out.q[size_t((t * L.H + h) * L.d + i)]);
      EXPECT_NEAR(ss / double(L.d), 1.0, 1e-4) << "t " << t << " h " << h;
    }
}

// act_quant: FP8 (1x128, UE8M0) round trip of the inputs of wq_a and wq_b.
TYPED_TEST(LayerPaths, QueryPathActQuantMatchesOracle) {
  using T = TypeParam;
  const Layer L = make_layer(200);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 201));
  const QRef r = spec_query(L, x, kT, 77, true, official_act());
  const QOut<T> out = run_query<T>(L, x, kT, 77, true, true);
  const double tol_q = r.em_q.rel<T>() * max_abs(r.q);
  EXPECT_TRUE(test::all_close(out.cq, r.cq, r.em_cq.rel<T>() * max_abs(r.cq))) << "cq";
  EXPECT_TRUE(test::all_close(out.q, r.q, tol_q)) << "q";
  // the rounding is real and of FP8 size: far above the tolerance, below the ideal
  // (unquantised) reference's loose bound of a few FP8 steps (2^-4 relative each).
  const QRef exact = spec_query(L, x, kT, 77, true, {});
  const double dq = max_abs_diff(r.q, exact.q);
  EXPECT_GT(dq, 100 * tol_q);
  EXPECT_LT(dq, 4 * 0.0625 * max_abs(exact.q));
  // and both inputs are quantised: an oracle quantising only x before wq_a is rejected
  Quant only_a;
  only_a.wq_a = true;
  const QRef partial = spec_query(L, x, kT, 77, true, only_a);
  EXPECT_FALSE(test::all_close(out.q, partial.q, tol_q));
}

// ---------------------------------------------------------------------------------------
// §2.2 window KV.

// Quantised KV rows [T, d] vs the oracle (§2.2 step 3), tol the derived bound on the op's
// error before the rounding: the FP8 dims [0, d-64) within tol of the oracle's rounding r
// (as all_close); the RoPE dims [d-64, d) BF16 values that round some value within tol of
// the oracle's pre-rounding value (naive::bf16_consistent: a float computation near a BF16
// rounding boundary may land on either neighbour; elsewhere exactly r), and within half a
// BF16 step + tol of it.
template <class T>
::testing::AssertionResult kv_quant_close(const std::vector<T>& kv, const std::vector<double>& pre,
                                          const std::vector<double>& r, int64_t d, double tol) {
  if (kv.size() != r.size() || pre.size() != r.size())
    return ::testing::AssertionFailure() << "size " << kv.size() << " != " << r.size();
  std::vector<double> got, want;
  for (size_t k = 0; k < kv.size(); ++k) {
    const double g = double(kv[k]);
    if (int64_t(k) % d < d - kRd) {
      got.push_back(g);
      want.push_back(r[k]);
      continue;
    }
    if (!std::isfinite(g) || !naive::bf16_consistent(g, pre[k], tol, r[k]))
      return ::testing::AssertionFailure()
             << "row " << int64_t(k) / d << " dim " << int64_t(k) % d << ": got " << g
             << ", not a BF16 rounding of " << pre[k] << " +- " << tol << " (oracle " << r[k] << ")";
    if (std::fabs(g - pre[k]) > naive::bf16_ideal_bound(pre[k]) + tol)
      return ::testing::AssertionFailure()
             << "row " << int64_t(k) / d << " dim " << int64_t(k) % d << ": got " << g
             << ", ideal " << pre[k] << " beyond half a BF16 step";
  }
  auto res = test::all_close(got, want, tol);
  if (!res) return res << " (FP8 dims)";
  return ::testing::AssertionSuccess();
}

TYPED_TEST(LayerPaths, WindowKvMatchesOracle) {
  using T = TypeParam;
  const Layer L = make_layer(300);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 301));
  for (const PathCase& c : kPathCases) {
    SCOPED_TRACE(name(c));
    ErrModel em;
    const auto r = spec_kv(L, x, kT, c.pos0, c.compressed, {}, &em);
    const auto kv = run_kv<T>(L, x, kT, c.pos0, c.compressed, false, false);
    EXPECT_TRUE(test::all_close(kv, r, em.rel<T>() * max_abs(r)));
  }
}

// FP8 on dims [0, d - 64) in blocks of 64, BF16 rounding of the RoPE dims, with and without
// the act_quant round trip of x before wkv. d = 512 as in V4: 448 FP8 dims = 7 blocks of 64.
TYPED_TEST(LayerPaths, WindowKvQuantMatchesOracle) {
  using T = TypeParam;
  const Layer L = make_layer(400, kHeadDim);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 401));
  for (bool act : {false, true}) {
    SCOPED_TRACE(act ? "act_quant" : "kv quant only");
    Quant qz;
    qz.kv = true;
    qz.wkv = act;
    ErrModel em;
    std::vector<double> pre;
    const auto r = spec_kv(L, x, kT, 33, true, qz, &em, 64, &pre);
    const auto kv = run_kv<T>(L, x, kT, 33, true, true, act);
    const double tol = em.rel<T>() * max_abs(pre);
    EXPECT_TRUE(kv_quant_close(kv, pre, r, L.d, tol));
    const auto exact = spec_kv(L, x, kT, 33, true, {}, nullptr);
    EXPECT_GT(max_abs_diff(r, exact), 100 * tol);
    // the RoPE dims are BF16 roundings of the unquantised values, not FP8 roundings (only
    // the act_quant of x reaches them beyond that)
    if (!act) {
      for (int64_t t = 0; t < kT; ++t)
        for (int64_t i = L.d - kRd; i < L.d; ++i) {
          const double e = exact[size_t(t * L.d + i)];
          EXPECT_TRUE(naive::bf16_consistent(double(kv[size_t(t * L.d + i)]), e, tol,
                                             naive::round_bf16(e)))
              << "t " << t << " dim " << i;
        }
    }
  }
  // Blocks of 64, not larger: FP8 is a floating format, so a block's power-of-two scale
  // only matters for values far below its amax (subnormals). Give dims [64, 128) a tiny
  // norm weight (1e-4): with their own block they keep ~2^-4 relative precision, inside a
  // block of 128 they would fall on the subnormal grid.
  {
    Layer small = L;
    for (int64_t i = 64; i < 128; ++i) small.kv_norm[size_t(i)] = double(float(small.kv_norm[size_t(i)] * 1e-4));
    Quant qz;
    qz.kv = true;
    ErrModel em;
    std::vector<double> pre;
    const auto r = spec_kv(small, x, kT, 33, true, qz, &em, 64, &pre);
    const auto kv = run_kv<T>(small, x, kT, 33, true, true, false);
    EXPECT_TRUE(kv_quant_close(kv, pre, r, L.d, em.rel<T>() * max_abs(pre)));
    // The small dims on their own scale (the error model is relative, so it applies to
    // them with their own magnitude); an oracle with one FP8 block of 128 is rejected.
    const auto r128 = spec_kv(small, x, kT, 33, true, qz, nullptr, 128);
    std::vector<double> got, want, want128;
    for (int64_t t = 0; t < kT; ++t)
      for (int64_t i = 64; i < 128; ++i) {
        got.push_back(double(kv[size_t(t * L.d + i)]));
        want.push_back(r[size_t(t * L.d + i)]);
        want128.push_back(r128[size_t(t * L.d + i)]);
      }
    const double tol_small = em.rel<T>() * max_abs(want);
    EXPECT_TRUE(test::all_close(got, want, tol_small));
    EXPECT_FALSE(test::all_close(got, want128, tol_small));
  }
  // act_quant alone (no kv quant)
  Quant qa;
  qa.wkv = true;
  ErrModel em;
  const auto r = spec_kv(L, x, kT, 33, true, qa, &em);
  const auto kv = run_kv<T>(L, x, kT, 33, true, false, true);
  EXPECT_TRUE(test::all_close(kv, r, em.rel<T>() * max_abs(r)));
}

// §2.2 step 3: the RoPE dims of a quantised window entry are BF16 values, and the
// comparison tells the BF16 step apart: an output with the RoPE dims left unrounded is
// rejected, and so is an oracle without the BF16 step (under kv_quant_close and under the
// plain all_close the quant test used before).
TYPED_TEST(LayerPaths, WindowKvQuantRopeDimsAreBf16) {
  using T = TypeParam;
  const Layer L = make_layer(450, kHeadDim);
  const auto x = float_exact(test::normal(size_t(kT * L.D), 451));
  Quant qz;
  qz.kv = true;
  ErrModel em;
  std::vector<double> pre;
  const auto r = spec_kv(L, x, kT, 4000, false, qz, &em, 64, &pre);
  const auto kv = run_kv<T>(L, x, kT, 4000, false, true, false);
  const double tol = em.rel<T>() * max_abs(pre);
  EXPECT_TRUE(kv_quant_close(kv, pre, r, L.d, tol));
  int64_t pre_not_bf16 = 0;
  std::vector<T> unrounded = kv;
  std::vector<double> old = r;  // the previous semantics: RoPE dims not rounded
  for (int64_t t = 0; t < kT; ++t)
    for (int64_t i = L.d - kRd; i < L.d; ++i) {
      const size_t k = size_t(t * L.d + i);
      const double g = double(kv[k]);
      EXPECT_EQ(naive::round_bf16(g), g) << "t " << t << " dim " << i << " not BF16";
      if (naive::round_bf16(pre[k]) != pre[k]) ++pre_not_bf16;
      unrounded[k] = T(pre[k]);
      old[k] = pre[k];
    }
  EXPECT_GT(pre_not_bf16, kT * kRd / 2);  // the rounding is not vacuous
  EXPECT_FALSE(kv_quant_close(unrounded, pre, r, L.d, tol)) << "unrounded RoPE dims";
  EXPECT_FALSE(kv_quant_close(kv, pre, old, L.d, tol)) << "oracle without BF16";
  EXPECT_FALSE(test::all_close(kv, old, tol)) << "oracle without BF16, plain check";
}

// ---------------------------------------------------------------------------------------
// §2.6 output projection.

TYPED_TEST(LayerPaths, OutputProjMatchesOracle) {
  using T = TypeParam;
  const Layer L = make_layer(500);
  // attention outputs: convex combinations of RMS-1 vectors; N(0, 0.3) is representative
  const auto o = float_exact(test::normal(size_t(kT * L.H * L.d), 501, 0.3));
  for (const PathCase& c : kPathCases) {
    SCOPED_TRACE(name(c));
    ErrModel em;
    const auto r = spec_output(L, o, kT, c.pos0, c.compressed, {}, &em);
    const auto y = run_output<T>(L, test::cast<T>(o), kT, c.pos0, c.compressed, false);
    EXPECT_TRUE(test::all_close(y, r, em.rel<T>() * max_abs(r)));
  }
}

// Non-vacuity of the grouping: an oracle that interleaves heads across groups (head h in
// group h mod g) or skips the inverse RoPE is rejected.
TYPED_TEST(LayerPaths, OutputProjDetectsWrongGroupingAndMissingInverseRope) {
  using T = TypeParam;
  const Layer L = make_layer(550);
  const auto o = float_exact(test::normal(size_t(kT * L.H * L.d), 551, 0.3));
  ErrModel em;
  const auto r = spec_output(L, o, kT, 900, true, {}, &em);
  const auto y = run_output<T>(L, test::cast<T>(o), kT, 900, true, false);
  const double tol = em.rel<T>() * max_abs(r);
  EXPECT_TRUE(test::all_close(y, r, tol));
  std::vector<double> swapped = o;  // heads (0,1,2,3) -> (0,2,1,3): groups {0,2}, {1,3}
  for (int64_t t = 0; t < kT; ++t)
    std::swap_ranges(swapped.begin() + (t * L.H + 1) * L.d, swapped.begin() + (t * L.H + 2) * L.d,
                     swapped.begin() + (t * L.H + 2) * L.d);
  EXPECT_FALSE(test::all_close(y, spec_output(L, swapped, kT, 900, true, {}, nullptr), tol));
  EXPECT_FALSE(test::all_close(y, spec_output(L, o, kT, 0, true, {}, nullptr), tol));
}

// act_quant: FP8 round trip of u before wo_b only; wo_a's input is not quantised (§9.4).
TYPED_TEST(LayerPaths, OutputProjActQuantOnlyBeforeWoB) {
  using T = TypeParam;
  const Layer L = make_layer(600);
  const auto o = float_exact(test::normal(size_t(kT * L.H * L.d), 601, 0.3));
  ErrModel em;
  const auto r = spec_output(L, o, kT, 12, true, official_act(), &em);
  const auto y = run_output<T>(L, test::cast<T>(o), kT, 12, true, true);
  const double tol = em.rel<T>() * max_abs(r);
  EXPECT_TRUE(test::all_close(y, r, tol));
  Quant both = official_act();
  both.wo_a = true;  // the wrong reading: wo_a's input quantised too
  EXPECT_FALSE(test::all_close(y, spec_output(L, o, kT, 12, true, both, nullptr), tol));
  EXPECT_GT(max_abs_diff(r, spec_output(L, o, kT, 12, true, {}, nullptr)), 100 * tol);
}

// ---------------------------------------------------------------------------------------
// SHIFT (§2.6) — an invariant test tying query_path + window_kv + attention + output_proj
// together: with the inverse RoPE on the attention output, every score depends on
// pos_q - pos_k and every value's rotated part is turned back by -pos_q, so shifting every
// position (queries and keys) by the same offset leaves y unchanged up to rounding.
// Window-only (no compressed entries, whose block positions would need offsets that are
// multiples of the ratio). T = 150 > window so the window mask is exercised too.

template <class T>
std::vector<T> run_window_layer(const Layer& L, const std::vector<double>& x, int64_t Tn,
                                int64_t pos0, bool compressed, int64_t out_pos0) {
  const QOut<T> q = run_query<T>(L, x, Tn, pos0, compressed, false);
  const std::vector<T> kv = run_kv<T>(L, x, Tn, pos0, compressed, false, false);
  const std::vector<T> sink = test::cast<T>(L.sink);
  std::vector<T> o(size_t(Tn * L.H * L.d), T(kNaN));
  AttentionParams<T> p;
  p.q = view2(q.q.data(), Tn, L.H * L.d);
  p.kv = view2(kv.data(), Tn, L.d);
  p.comp = view2<const T>(nullptr, 0, L.d);
  p.sink = sink.data();
  p.heads = L.H;
  p.pos0 = pos0;
  p.o = view2(o.data(), Tn, L.H * L.d);
  ref::attention(p);
  return run_output<T>(L, o, Tn, out_pos0, compressed, false);
}

// The same chain in naive double: window-only causal attention with a sink (§2.5).
std::vector<double> spec_window_layer(const Layer& L, const std::vector<double>& x, int64_t Tn,
                                      int64_t pos0, bool compressed, ErrModel* em) {
  const QRef q = spec_query(L, x, Tn, pos0, compressed, {});
  const auto kv = spec_kv(L, x, Tn, pos0, compressed, {}, em);
  em->stages.insert(q.em_q.stages.begin(), q.em_q.stages.end());
  std::vector<double> o(size_t(Tn * L.H * L.d), 0.0);
  const double scale = 1.0 / std::sqrt(double(L.d));
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t h = 0; h < L.H; ++h) {
      std::vector<const double*> ent;  // the causal window
      for (int64_t j = std::max<int64_t>(0, t - kWindow + 1); j <= t; ++j)
        ent.push_back(&kv[size_t(j * L.d)]);
      double* oh = &o[size_t((t * L.H + h) * L.d)];
      naive::AttendStats st;  // this head's score and output magnitudes
      naive::attend(&q.q[size_t((t * L.H + h) * L.d)], ent, L.d, L.d, scale, L.sink[size_t(h)],
                    oh, &st);
      const double rms = test::rms_of(oh, L.d);
      // scores: abs error -> relative weight error (x2), times sum w|e| relative to rms(o)
      em->note("scores", double(L.d), 2 * st.smag * st.omag / rms);
      em->note("p.v", double(ent.size()), st.omag / rms);
    }
  const auto y = spec_output(L, o, Tn, pos0, compressed, {}, em);
  return y;
}

TYPED_TEST(LayerPaths, InvariantShiftAllPositionsLeavesOutputUnchanged) {
  using T = TypeParam;
  const Layer L = make_layer(700);
  const int64_t Tn = 150;
  const auto x = float_exact(test::normal(size_t(Tn * L.D), 701));
  for (bool compressed : {false, true}) {
    SCOPED_TRACE(compressed ? "YaRN table" : "theta 1e4");
    ErrModel em;
    const auto ref0 = spec_window_layer(L, x, Tn, 0, compressed, &em);
    const double tol = em.rel<T>() * max_abs(ref0);
    const std::vector<T> y0 = run_window_layer<T>(L, x, Tn, 0, compressed, 0);
    EXPECT_TRUE(test::all_close(y0, ref0, tol)) << "composition vs the naive chain";
    for (int64_t shift : {1, 1000, 65536 + 17}) {
      SCOPED_TRACE("shift " + std::to_string(shift));
      const std::vector<T> ys = run_window_layer<T>(L, x, Tn, shift, compressed, shift);
      // each run errs by <= tol against the exact (shift-free) value
      EXPECT_TRUE(test::all_close(ys, y0, 2 * tol));
      // non-vacuity: inverse RoPE at the unshifted positions breaks the invariance
      const std::vector<T> wrong = run_window_layer<T>(L, x, Tn, shift, compressed, 0);
      EXPECT_FALSE(test::all_close(wrong, y0, 2 * tol));
    }
  }
}

}  // namespace
}  // namespace dsv4
