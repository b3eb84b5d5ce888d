// Tests of ref::attention (reference/attention.h; op-contract `attention`; spec §2.5, §2.8).
//
// Oracle: a naive double loop written from the spec (never calls the op):
//   query row r has position p = pos0 + r; window kv row j has position pos0 + T - Tk + j
//   and is attended iff that position lies in [p - window + 1, p]; compressed entry j is
//   visible iff ratio*j + ratio - 1 <= p; without indices every visible entry is attended
//   (HCA), with indices the listed ones, skipping -1 and invisible ones, a duplicated
//   index counting twice; s = scale * q.e (scale default 1/sqrt(d));
//   lse = ln(exp(sink_h) + sum exp(s)); o = sum exp(s - lse) e.
// The per-head softmax with a sink and its tolerances are the shared naive::attend and
// attend_tol_* of tests/support/naive.h (also used by the MLA and layer tests).
// Invariant tests compare the op with itself (or with a second, simpler naive oracle) and
// say so in their names.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "reference/attention.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using test::float_exact;
using test::max_abs_diff;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// One attention problem. Inputs are stored in double but every value is representable in
// float, so the float and double instantiations see identical inputs.
struct Case {
  int64_t T = 1, Tk = 1, N = 0, H = 2, d = 32, ratio = kCsaRatio, window = kWindow, pos0 = 0;
  double scale = 0;  // 0: 1/sqrt(d)
  std::vector<double> q, kv, comp, sink;
  bool sparse = false;
  int64_t k = 0;
  std::vector<int32_t> idx;  // [T, k] when sparse
};

// Random inputs: q, kv, comp ~ N(0, 1) so that scores q.e/sqrt(d) have unit spread and the
// softmax is far from flat; sinks uniform in [-1, 2].
Case make_case(int64_t T, int64_t Tk, int64_t N, int64_t H, int64_t d, int64_t ratio,
               int64_t pos0, uint64_t seed) {
  Case c;
  c.T = T, c.Tk = Tk, c.N = N, c.H = H, c.d = d, c.ratio = ratio, c.pos0 = pos0;
  c.q = float_exact(test::normal(size_t(T * H * d), seed));
  c.kv = float_exact(test::normal(size_t(Tk * d), seed + 1));
  c.comp = float_exact(test::normal(size_t(N * d), seed + 2));
  c.sink = float_exact(test::uniform(size_t(H), seed + 3, -1.0, 2.0));
  return c;
}

// Random index rows: each slot is -1 with probability p_neg, else uniform in [0, N) (so
// duplicates and entries not yet visible occur). N == 0 gives all -1.
void random_indices(Case& c, int64_t k, uint64_t seed, double p_neg = 0.1) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  c.sparse = true;
  c.k = k;
  c.idx.assign(size_t(c.T * k), -1);
  for (auto& j : c.idx)
    if (c.N > 0 && u(g) >= p_neg) j = int32_t(std::uniform_int_distribution<int64_t>(0, c.N - 1)(g));
}

int64_t visible_count(const Case& c, int64_t pos) {  // §2.8: entries with ratio*j+ratio-1 <= pos
  return std::clamp<int64_t>((pos + 1) / c.ratio, 0, c.N);
}

// Index rows listing every visible entry (shuffled), padded with -1 to width k.
void all_visible_indices(Case& c, int64_t k, uint64_t seed) {
  std::mt19937_64 g(seed);
  c.sparse = true;
  c.k = k;
  c.idx.assign(size_t(c.T * k), -1);
  for (int64_t r = 0; r < c.T; ++r) {
    const int64_t nv = visible_count(c, c.pos0 + r);
    EXPECT_LE(nv, k) << "test setup: k must cover every visible entry";
    std::vector<int32_t> row(size_t(k), -1);
    std::iota(row.begin(), row.begin() + nv, 0);
    std::shuffle(row.begin(), row.end(), g);
    std::copy(row.begin(), row.end(), c.idx.begin() + r * k);
  }
}

// ---------------------------------------------------------------------------------------
// The naive double oracle.

struct Ref {
  std::vector<double> o, lse;  // [T, H*d], [T, H]
  double smag = 0;             // max over scores of scale * sum_i |q_i e_i|
  double omag = 0;             // max over rows, heads and dims i of sum_j w_j |e_j[i]|
  double lsemax = 0;           // max |lse|
  int64_t nmax = 0;            // most entries attended by one row
};

Ref oracle(const Case& c, bool dedupe = false) {
  const int64_t T = c.T, H = c.H, d = c.d;
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(d));
  Ref r;
  naive::AttendStats st;
  r.o.assign(size_t(T * H * d), 0.0);
  r.lse.assign(size_t(T * H), 0.0);
  for (int64_t row = 0; row < T; ++row) {
    const int64_t p = c.pos0 + row;
    std::vector<const double*> ent;
    for (int64_t j = 0; j < c.Tk; ++j) {
      const int64_t pj = c.pos0 + T - c.Tk + j;
      if (pj >= p - c.window + 1 && pj <= p) ent.push_back(&c.kv[size_t(j * d)]);
    }
    auto visible = [&](int64_t j) { return c.ratio * j + c.ratio - 1 <= p; };
    if (!c.sparse) {
      for (int64_t j = 0; j < c.N; ++j)
        if (visible(j)) ent.push_back(&c.comp[size_t(j * d)]);
    } else {
      std::vector<int32_t> seen;
      for (int64_t k = 0; k < c.k; ++k) {
        const int32_t j = c.idx[size_t(row * c.k + k)];
        if (j == -1 || !visible(j)) continue;
        if (dedupe && std::find(seen.begin(), seen.end(), j) != seen.end()) continue;
        seen.push_back(j);
        ent.push_back(&c.comp[size_t(j * d)]);
      }
    }
    r.nmax = std::max<int64_t>(r.nmax, int64_t(ent.size()));
    for (int64_t h = 0; h < H; ++h) {
      const double lse = naive::attend(&c.q[size_t((row * H + h) * d)], ent, d, d, scale,
                                       c.sink[size_t(h)], &r.o[size_t((row * H + h) * d)], &st);
      r.lse[size_t(row * H + h)] = lse;
      r.lsemax = std::max(r.lsemax, std::fabs(lse));
    }
  }
  r.smag = st.smag;
  r.omag = st.omag;
  return r;
}

// ---------------------------------------------------------------------------------------
// Running the op (outputs poisoned with NaN first, so an unwritten output fails).

template <class T>
struct Out {
  std::vector<T> o, lse;
};

template <class T>
Out<T> run(const Case& c) {
  const std::vector<T> q = test::cast<T>(c.q), kv = test::cast<T>(c.kv),
                       comp = test::cast<T>(c.comp), sink = test::cast<T>(c.sink);
  Out<T> out;
  out.o.assign(size_t(c.T * c.H * c.d), T(kNaN));
  out.lse.assign(size_t(c.T * c.H), T(kNaN));
  AttentionParams<T> p;
  p.q = view2(q.data(), c.T, c.H * c.d);
  p.kv = view2(kv.data(), c.Tk, c.d);
  p.comp = view2(comp.data(), c.N, c.d);
  p.sink = sink.data();
  if (c.sparse) p.indices = view2(c.idx.data(), c.T, c.k);
  p.heads = c.H;
  p.ratio = c.ratio;
  p.window = c.window;
  p.scale = c.scale;
  p.pos0 = c.pos0;
  p.o = view2(out.o.data(), c.T, c.H * c.d);
  p.lse = view2(out.lse.data(), c.T, c.H);
  ref::attention(p);
  return out;
}

// ---------------------------------------------------------------------------------------
// Tolerances: naive::attend_tol_o / attend_tol_lse (derivation in tests/support/naive.h),
// with d-long scores and Z of n + 1 terms (the sink's).
template <class T>
double tol_o(const Ref& r, int64_t d) {
  return naive::attend_tol_o<T>(r.smag, r.omag, d, r.nmax);
}
template <class T>
double tol_lse(const Ref& r, int64_t d) {
  return naive::attend_tol_lse<T>(r.smag, r.lsemax, d, r.nmax + 1);
}

template <class T>
void expect_matches_oracle(const Case& c, const Ref& r) {
  const Out<T> out = run<T>(c);
  EXPECT_TRUE(test::all_close(out.o, r.o, tol_o<T>(r, c.d))) << "o";
  EXPECT_TRUE(test::all_close(out.lse, r.lse, tol_lse<T>(r, c.d))) << "lse";
}

template <class T>
void expect_matches_oracle(const Case& c) {
  expect_matches_oracle<T>(c, oracle(c));
}

// Tolerance for comparing two runs of the op on the same math (different summation
// order or a different GEMM shape): twice the oracle tolerance, since each run may err by
// it (triangle inequality).
template <class T>
void expect_same_op(const Out<T>& a, const Out<T>& b, const Ref& r, int64_t d) {
  EXPECT_TRUE(test::all_close(a.o, b.o, 2 * tol_o<T>(r, d))) << "o";
  EXPECT_TRUE(test::all_close(a.lse, b.lse, 2 * tol_lse<T>(r, d))) << "lse";
}

template <class T>
class AttentionTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(AttentionTyped, Types);

// ---------------------------------------------------------------------------------------
// Oracle comparisons on small shapes.

TYPED_TEST(AttentionTyped, SmallShapesMatchOracle) {
  using T = TypeParam;
  for (int64_t d : {64, 128}) {
    SCOPED_TRACE("d = " + std::to_string(d));
    {  // HCA prefill: 300 tokens, 2 complete blocks, dense
      Case c = make_case(300, 300, 2, 4, d, kHcaRatio, 0, 100 + d);
      expect_matches_oracle<T>(c);
    }
    {  // CSA prefill with random indices (-1, duplicates and invisible entries included)
      Case c = make_case(150, 150, 37, 4, d, kCsaRatio, 0, 200 + d);
      random_indices(c, 8, 201);
      expect_matches_oracle<T>(c);
    }
    {  // window only
      Case c = make_case(200, 200, 0, 4, d, kCsaRatio, 0, 300 + d);
      expect_matches_oracle<T>(c);
    }
    {  // chunked prefill: pos0 > 0 and more kv rows than queries (some beyond the window)
      Case c = make_case(7, 140, 80, 4, d, kCsaRatio, 300, 400 + d);
      random_indices(c, 12, 401);
      expect_matches_oracle<T>(c);
    }
    {  // explicit scale and a small window
      Case c = make_case(40, 40, 10, 4, d, kCsaRatio, 0, 500 + d);
      c.scale = 0.3;
      c.window = 5;
      expect_matches_oracle<T>(c);
    }
  }
}

// Non-vacuity: the oracle comparison detects a one-position window error (the oracle with
// window 127 instead of 128 disagrees with the op by far more than the tolerance).
TYPED_TEST(AttentionTyped, ToleranceDetectsOffByOneWindow) {
  using T = TypeParam;
  Case c = make_case(200, 200, 0, 4, 64, kCsaRatio, 0, 600);
  const Ref good = oracle(c);
  Case wrong = c;
  wrong.window = kWindow - 1;
  const Ref bad = oracle(wrong);
  const Out<T> out = run<T>(c);
  EXPECT_TRUE(test::all_close(out.o, good.o, tol_o<T>(good, c.d)));
  EXPECT_FALSE(test::all_close(out.o, bad.o, tol_o<T>(good, c.d)));
}

// ---------------------------------------------------------------------------------------
// Real V4-Flash shapes (float vs the double oracle).

TEST(AttentionRealShape, FlashCsaDecodeTop512Of2048) {
  // H = 64, d = 512, T = 1 at pos0 = 8200: window 128 + top-512 of N = 2048 entries
  // (all 2048 visible: 4*2047+3 = 8191 <= 8200).
  Case c = make_case(1, kWindow, 2048, 64, kHeadDim, kCsaRatio, 8200, 700);
  std::mt19937_64 g(701);
  std::vector<int32_t> all(2048);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), g);
  c.sparse = true;
  c.k = 512;
  c.idx.assign(all.begin(), all.begin() + 512);
  const Ref r = oracle(c);
  ASSERT_EQ(r.nmax, kWindow + 512);
  expect_matches_oracle<float>(c, r);
}

TEST(AttentionRealShape, FlashHcaDecode64Entries) {
  // H = 64, d = 512, T = 1 at pos0 = 8200, N = 64 HCA entries (all visible: 128*63+127 =
  // 8191 <= 8200), dense.
  Case c = make_case(1, kWindow, 64, 64, kHeadDim, kHcaRatio, 8200, 800);
  const Ref r = oracle(c);
  ASSERT_EQ(r.nmax, kWindow + 64);
  expect_matches_oracle<float>(c, r);
}

// ---------------------------------------------------------------------------------------
// Invariants (op vs op, or op vs a second naive oracle).

// Invariant (engineering.md §3): CSA with top-k >= visible == dense attention over every
// visible entry. Indices list all visible entries in random order, padded with -1.
TYPED_TEST(AttentionTyped, InvariantTopkCoveringAllVisibleEqualsDense) {
  using T = TypeParam;
  Case dense = make_case(90, 90, 22, 4, 64, kCsaRatio, 0, 900);
  Case sparse = dense;
  all_visible_indices(sparse, 30, 901);
  const Ref r = oracle(dense);
  const Out<T> a = run<T>(dense), b = run<T>(sparse);
  expect_same_op<T>(a, b, r, dense.d);
  expect_matches_oracle<T>(sparse, r);
}

// Invariant: window-only attention (N = 0) with T <= 128 is plain causal MQA with a sink,
// written here as a second, simpler naive loop (every earlier token is attended).
TYPED_TEST(AttentionTyped, InvariantWindowOnlyIsCausalMqaWithSink) {
  using T = TypeParam;
  for (int64_t Tn : {1, 17, 128}) {
    SCOPED_TRACE("T = " + std::to_string(Tn));
    const int64_t H = 4, d = 64;
    Case c = make_case(Tn, Tn, 0, H, d, kCsaRatio, 0, 1000 + Tn);
    std::vector<double> o(size_t(Tn * H * d), 0.0), lse(size_t(Tn * H));
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> s(size_t(t + 1));
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) dot += c.q[size_t((t * H + h) * d + i)] * c.kv[size_t(j * d + i)];
          s[size_t(j)] = dot / std::sqrt(double(d));
        }
        double z = std::exp(c.sink[size_t(h)]);
        for (double v : s) z += std::exp(v);
        lse[size_t(t * H + h)] = std::log(z);
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < d; ++i)
            o[size_t((t * H + h) * d + i)] += std::exp(s[size_t(j)]) / z * c.kv[size_t(j * d + i)];
      }
    const Ref r = oracle(c);  // for the tolerance magnitudes only
    const Out<T> out = run<T>(c);
    EXPECT_TRUE(test::all_close(out.o, o, tol_o<T>(r, d)));
    EXPECT_TRUE(test::all_close(out.lse, lse, tol_lse<T>(r, d)));
  }
}

// Invariant: sink -> -inf is attention without a sink: o is a plain softmax average and lse
// is the logsumexp of the scores (second naive oracle written here).
TYPED_TEST(AttentionTyped, InvariantSinkMinusInfIsPlainSoftmax) {
  using T = TypeParam;
  const int64_t H = 4, d = 64;
  Case c = make_case(60, 60, 15, H, d, kCsaRatio, 0, 1100);
  random_indices(c, 6, 1101);
  std::fill(c.sink.begin(), c.sink.end(), -kInf);
  const Ref r = oracle(c);
  const Out<T> out = run<T>(c);
  // Plain softmax over the oracle's attended set, rebuilt from scratch for row r.
  std::vector<double> lse(size_t(c.T * H));
  for (int64_t row = 0; row < c.T; ++row) {
    std::vector<const double*> ent;
    for (int64_t j = 0; j <= row; ++j) ent.push_back(&c.kv[size_t(j * d)]);
    for (int64_t k = 0; k < c.k; ++k) {
      const int32_t j = c.idx[size_t(row * c.k + k)];
      if (j >= 0 && 4 * j + 3 <= row) ent.push_back(&c.comp[size_t(j * d)]);
    }
    for (int64_t h = 0; h < H; ++h) {
      double z = 0;
      for (const double* e : ent) {
        double dot = 0;
        for (int64_t i = 0; i < d; ++i) dot += c.q[size_t((row * H + h) * d + i)] * e[i];
        z += std::exp(dot / std::sqrt(double(d)));
      }
      lse[size_t(row * H + h)] = std::log(z);
    }
  }
  EXPECT_TRUE(test::all_close(out.lse, lse, tol_lse<T>(r, d)));
  EXPECT_TRUE(test::all_close(out.o, r.o, tol_o<T>(r, d)));
  // Plain softmax weights sum to one: with every entry equal to the same vector v, o == v.
  Case flat = c;
  for (int64_t j = 0; j < c.Tk; ++j) std::copy_n(&c.kv[0], d, &flat.kv[size_t(j * d)]);
  for (int64_t j = 0; j < c.N; ++j) std::copy_n(&c.kv[0], d, &flat.comp[size_t(j * d)]);
  const Out<T> fo = run<T>(flat);
  std::vector<double> expect(fo.o.size());
  for (size_t i = 0; i < expect.size(); ++i) expect[i] = c.kv[i % size_t(d)];
  EXPECT_TRUE(test::all_close(fo.o, expect, tol_o<T>(oracle(flat), d)));
}

// Invariant: a sink takes probability mass: o(sink) = o(no sink) * Z / (Z + exp(sink)),
// Z = exp(lse(no sink)), and lse(sink) = ln(Z + exp(sink)). A large sink (8) shrinks o.
TYPED_TEST(AttentionTyped, InvariantLargeSinkShrinksOutput) {
  using T = TypeParam;
  const int64_t H = 4, d = 64;
  Case none = make_case(50, 50, 12, H, d, kCsaRatio, 0, 1200);
  std::fill(none.sink.begin(), none.sink.end(), -kInf);
  Case big = none;
  const std::vector<double> sinks = {8.0, 4.0, 0.5, -3.0};
  big.sink = sinks;
  const Out<T> a = run<T>(none), b = run<T>(big);
  const Ref ra = oracle(none), rb = oracle(big);
  std::vector<double> o(a.o.size()), lse(a.lse.size());
  double shrink_min = 1;
  for (int64_t row = 0; row < none.T; ++row)
    for (int64_t h = 0; h < H; ++h) {
      const double l0 = double(a.lse[size_t(row * H + h)]);
      const double z = std::exp(l0), es = std::exp(sinks[size_t(h)]);
      const double f = z / (z + es);
      if (h == 0) shrink_min = std::min(shrink_min, f);
      lse[size_t(row * H + h)] = std::log(z + es);
      for (int64_t i = 0; i < d; ++i)
        o[size_t((row * H + h) * d + i)] = double(a.o[size_t((row * H + h) * d + i)]) * f;
    }
  EXPECT_TRUE(test::all_close(b.o, o, 2 * tol_o<T>(rb, d)));
  EXPECT_TRUE(test::all_close(b.lse, lse, 2 * tol_lse<T>(rb, d) + tol_lse<T>(ra, d)));
  EXPECT_LT(shrink_min, 0.5) << "a sink of 8 should take most of the mass somewhere";
}

// Invariant: a duplicated index counts twice: the op matches the oracle that counts it
// twice, and that differs from the de-duplicated oracle by far more than the tolerance.
TYPED_TEST(AttentionTyped, InvariantDuplicatedIndexCountsTwice) {
  using T = TypeParam;
  Case c = make_case(40, 40, 10, 4, 64, kCsaRatio, 0, 1300);
  c.sparse = true;
  c.k = 6;
  c.idx.assign(size_t(c.T * c.k), -1);
  for (int64_t r = 0; r < c.T; ++r) {
    const int64_t nv = visible_count(c, r);
    if (nv == 0) continue;
    int32_t* row = &c.idx[size_t(r * c.k)];
    row[0] = row[1] = row[2] = int32_t(nv - 1);  // three copies of the newest entry
    row[3] = 0;
    row[4] = 0;  // two copies of the oldest
  }
  const Ref twice = oracle(c), once = oracle(c, /*dedupe=*/true);
  expect_matches_oracle<T>(c, twice);
  EXPECT_GT(max_abs_diff(twice.o, once.o), 100 * tol_o<T>(twice, c.d));
}

// Invariant: all indices -1 == window only (N = 0).
TYPED_TEST(AttentionTyped, InvariantAllIndicesMinusOneIsWindowOnly) {
  using T = TypeParam;
  Case win = make_case(150, 150, 0, 4, 64, kCsaRatio, 0, 1400);
  Case neg = win;
  neg.N = 37;
  neg.comp = float_exact(test::normal(size_t(neg.N * neg.d), 1401));
  neg.sparse = true;
  neg.k = 8;
  neg.idx.assign(size_t(neg.T * neg.k), -1);
  const Ref r = oracle(win);
  const Out<T> a = run<T>(win), b = run<T>(neg);
  EXPECT_TRUE(test::bitwise_equal(a.o, b.o));
  EXPECT_TRUE(test::bitwise_equal(a.lse, b.lse));
  expect_matches_oracle<T>(neg, r);
}

// Invariant: no compressed entry visible yet (every row at a position < ratio - 1) ==
// window only, dense or sparse.
TYPED_TEST(AttentionTyped, InvariantNoVisibleEntryIsWindowOnly) {
  using T = TypeParam;
  for (int64_t ratio : {kCsaRatio, kHcaRatio}) {
    SCOPED_TRACE("ratio = " + std::to_string(ratio));
    const int64_t Tn = ratio - 1;  // rows 0 .. ratio-2: entry 0 needs position ratio-1
    Case win = make_case(Tn, Tn, 0, 4, 64, ratio, 0, 1500 + ratio);
    Case dense = win;
    dense.N = 5;
    dense.comp = float_exact(test::normal(size_t(dense.N * dense.d), 1501));
    Case sparse = dense;
    sparse.sparse = true;
    sparse.k = 5;
    sparse.idx.resize(size_t(Tn * 5));
    for (size_t i = 0; i < sparse.idx.size(); ++i) sparse.idx[i] = int32_t(i % 5);
    const Out<T> a = run<T>(win), b = run<T>(dense), s = run<T>(sparse);
    EXPECT_TRUE(test::bitwise_equal(a.o, b.o));
    EXPECT_TRUE(test::bitwise_equal(a.lse, b.lse));
    EXPECT_TRUE(test::bitwise_equal(a.o, s.o));
    EXPECT_TRUE(test::bitwise_equal(a.lse, s.lse));
    expect_matches_oracle<T>(dense);
  }
}

// Invariant: indices of entries not yet visible are ignored: replacing them by -1 changes
// nothing.
TYPED_TEST(AttentionTyped, InvariantInvisibleIndicesIgnored) {
  using T = TypeParam;
  Case c = make_case(80, 80, 20, 4, 64, kCsaRatio, 0, 1600);
  random_indices(c, 10, 1601, 0.0);
  Case cleaned = c;
  int64_t dropped = 0;
  for (int64_t r = 0; r < c.T; ++r)
    for (int64_t k = 0; k < c.k; ++k) {
      int32_t& j = cleaned.idx[size_t(r * c.k + k)];
      if (4 * j + 3 > r) {
        j = -1;
        ++dropped;
      }
    }
  ASSERT_GT(dropped, 100) << "test setup: want many invisible indices";
  const Out<T> a = run<T>(c), b = run<T>(cleaned);
  EXPECT_TRUE(test::bitwise_equal(a.o, b.o));
  EXPECT_TRUE(test::bitwise_equal(a.lse, b.lse));
  expect_matches_oracle<T>(c);
}

// Invariant: decode (T = 1, pos0 = t, kv = the last min(t+1, 128) window rows) equals row t
// of a prefill over t + 1 tokens with the same compressed entries and the same index row.
TYPED_TEST(AttentionTyped, InvariantDecodeEqualsPrefillRow) {
  using T = TypeParam;
  const int64_t H = 4, d = 64, Tmax = 520;
  Case full = make_case(Tmax, Tmax, 130, H, d, kCsaRatio, 0, 1700);
  random_indices(full, 12, 1701);
  for (bool sparse : {false, true}) {
    for (int64_t t : {0, 3, 4, 127, 128, 129, 300, 519}) {
      SCOPED_TRACE("t = " + std::to_string(t) + (sparse ? " sparse" : " dense"));
      Case pre = full;
      pre.T = pre.Tk = t + 1;
      pre.q.resize(size_t((t + 1) * H * d));
      pre.kv.resize(size_t((t + 1) * d));
      pre.sparse = sparse;
      if (sparse) pre.idx.resize(size_t((t + 1) * pre.k));
      Case dec = pre;
      const int64_t nw = std::min<int64_t>(t + 1, kWindow);
      dec.T = 1;
      dec.Tk = nw;
      dec.pos0 = t;
      dec.q.assign(pre.q.begin() + t * H * d, pre.q.end());
      dec.kv.assign(pre.kv.begin() + (t + 1 - nw) * d, pre.kv.end());
      if (sparse) dec.idx.assign(pre.idx.begin() + t * pre.k, pre.idx.end());
      const Out<T> a = run<T>(pre), b = run<T>(dec);
      const Ref r = oracle(dec);
      Out<T> row;
      row.o.assign(a.o.begin() + t * H * d, a.o.end());
      row.lse.assign(a.lse.begin() + t * H, a.lse.end());
      expect_same_op<T>(row, b, r, d);
      expect_matches_oracle<T>(dec, r);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Edge sweeps: prefill from position 0 over T tokens with N = T / ratio entries (what a
// compressor emits), H = 2, d = 32; ratios 4 and 128, dense and sparse.

struct Sweep {
  int64_t T, ratio;
  bool sparse;
};

void PrintTo(const Sweep& s, std::ostream* os) {
  *os << "T=" << s.T << " ratio=" << s.ratio << (s.sparse ? " sparse" : " dense");
}

class AttentionSweep : public ::testing::TestWithParam<Sweep> {};

TEST_P(AttentionSweep, MatchesOracle) {
  const Sweep s = GetParam();
  Case c = make_case(s.T, s.T, s.T / s.ratio, 2, 32, s.ratio, 0, 2000 + uint64_t(s.T * 7 + s.ratio));
  if (s.sparse) random_indices(c, 16, 2001 + uint64_t(s.T));
  const Ref r = oracle(c);
  {
    SCOPED_TRACE("float");
    expect_matches_oracle<float>(c, r);
  }
  {
    SCOPED_TRACE("double");
    expect_matches_oracle<double>(c, r);
  }
}

std::vector<Sweep> sweep_cases() {
  std::vector<Sweep> v;
  for (int64_t T : {1, 3, 4, 5, 127, 128, 129, 255, 256, 257, 1009})  // 1009: odd prime
    for (int64_t ratio : {kCsaRatio, kHcaRatio})
      for (bool sparse : {false, true}) v.push_back({T, ratio, sparse});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Lengths, AttentionSweep, ::testing::ValuesIn(sweep_cases()),
                         [](const ::testing::TestParamInfo<Sweep>& i) {
                           return "T" + std::to_string(i.param.T) + "_m" +
                                  std::to_string(i.param.ratio) +
                                  (i.param.sparse ? "_sparse" : "_dense");
                         });

// ---------------------------------------------------------------------------------------
// Bad input -> dsv4::InputError.

TEST(AttentionBadInput, IndexOutOfRange) {
  Case c = make_case(8, 8, 2, 2, 32, kCsaRatio, 0, 3000);
  random_indices(c, 4, 3001);
  Case hi = c;
  hi.idx[5] = int32_t(c.N);  // == N
  EXPECT_THROW(run<float>(hi), InputError);
  EXPECT_THROW(run<double>(hi), InputError);
  Case lo = c;
  lo.idx[3] = -2;
  EXPECT_THROW(run<float>(lo), InputError);
  EXPECT_THROW(run<double>(lo), InputError);
  EXPECT_NO_THROW(run<float>(c));
}

TEST(AttentionBadInput, FewerKvRowsThanQueries) {
  Case c = make_case(8, 7, 0, 2, 32, kCsaRatio, 0, 3100);
  EXPECT_THROW(run<float>(c), InputError);
  EXPECT_THROW(run<double>(c), InputError);
}

TEST(AttentionBadInput, QueryColumnsNotHeadsTimesDim) {
  Case c = make_case(4, 4, 0, 2, 32, kCsaRatio, 0, 3200);
  const std::vector<float> q = test::cast<float>(c.q), kv = test::cast<float>(c.kv),
                           sink = test::cast<float>(c.sink);
  std::vector<float> o(size_t(4 * 2 * 32)), lse(8);
  AttentionParams<float> p;
  p.q = view2(q.data(), 4, 2 * 32 - 1);  // one column short
  p.kv = view2(kv.data(), 4, 32);
  p.sink = sink.data();
  p.heads = 2;
  p.o = view2(o.data(), 4, 2 * 32);
  p.lse = view2(lse.data(), 4, 2);
  EXPECT_THROW(ref::attention(p), InputError);
  p.q = view2(q.data(), 2, 4 * 32);  // reinterpreted as 2 rows of 4 heads
  p.o = view2(o.data(), 2, 2 * 32);
  p.lse = view2(lse.data(), 2, 2);
  EXPECT_THROW(ref::attention(p), InputError);
}

}  // namespace
}  // namespace dsv4
