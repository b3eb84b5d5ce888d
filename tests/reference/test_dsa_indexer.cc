// Tests of reference/dsa_indexer.h: the DeepSeek-V3.2 DSA indexer (token-level keys).
// Spec: docs/v4-architecture.md §2.10 and §1.2; op-contract.md `dsa_indexer`.
//
// Oracles (naive double loops written from the spec in this file):
//   keys    k_j = LayerNorm_{w,b}(Wk x_j) (eps 1e-6), RoPE half_split (pairs (i, i+32)) on
//           the FIRST 64 dims at pos0 + j with the V3 YaRN table (theta 1e4, factor 40,
//           orig 4096, beta 32 / 1, no magnitude factor), normalised Hadamard, optional
//           FP8 e4m3 round trip in blocks of 128 (UE8M0 scale, amax floor 1e-4);
//   queries q = Wq_b c_q per head, the same RoPE at pos0 + r, Hadamard, optional FP8;
//           w = Wweights x HI^-1/2 dI^-1/2;
//   select  scores[r][j] = sum_h w_h ReLU(q_h . k_j) for j <= pos0 + r (ratio 1: key j is
//           token j, visible to its own position), -inf otherwise; top-k by descending
//           score, ties to the lower j, -1 padding.
// The shared oracle pieces (V3 YaRN table and half_split rotation, LayerNorm, Hadamard, FP8
// round trip, index scores and top-k) live in tests/support/naive.h, the selection checks in
// tests/support/selection.h; none calls reference/.
#include "reference/dsa_indexer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/selection.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using naive::Fmt;
using test::all_close;
using test::oracle_scores;
using test::oracle_topk;
using test::reduction_tol;
using test::round_to;
using test::score_tol;
using test::selection_invariants;
using test::selection_within_tol;
using test::unit_roundoff;

constexpr double kInf = naive::kInf;

// Non-interleaved RoPE on the FIRST 64 dims of a head (pairs (i, i + 32)), V3 table.
void rope_first_half_split(double* v, double pos) {
  naive::rope_half_split(v, pos, naive::v3_freqs());
}

// Compares rows of dI (heads or keys): plain within delta, or FP8-consistent when quant.
template <class T>
::testing::AssertionResult rows_match(const std::vector<T>& got, const std::vector<double>& pre,
                                      const std::vector<double>& out, int64_t dI, bool quant,
                                      double delta) {
  if (got.size() != out.size()) return ::testing::AssertionFailure() << "size";
  for (size_t at = 0; at < got.size(); ++at) {
    const double g = double(got[at]);
    if (!std::isfinite(g)) return ::testing::AssertionFailure() << "[" << at << "] = " << g;
    if (!quant) {
      if (std::fabs(g - out[at]) > delta)
        return ::testing::AssertionFailure() << "[" << at << "]: got " << g << ", oracle "
                                             << out[at] << ", |diff| "
                                             << std::fabs(g - out[at]) << " > " << delta;
      continue;
    }
    const int64_t b0 = int64_t(at) / 128 * 128, row0 = int64_t(at) / dI * dI;
    const int64_t len = std::min<int64_t>(128, row0 + dI - b0);
    const double amax = naive::block_amax(&pre[b0], len);
    if (!naive::quant_consistent(Fmt::fp8, g, pre[at], amax, delta, out[at]))
      return ::testing::AssertionFailure() << "[" << at << "]: got " << g
                                           << ", not an FP8 rounding of " << pre[at] << " +- "
                                           << delta << " (oracle " << out[at] << ")";
    // ideal bound: half an e4m3 step, <= |x| 2^-4 + half the subnormal step
    if (std::fabs(g - pre[at]) > naive::ideal_bound(Fmt::fp8, pre[at], amax) + delta)
      return ::testing::AssertionFailure() << "[" << at << "] beyond half an FP8 step";
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------
// Keys and queries.

struct KOracle {
  std::vector<double> pre, k;  // pre: before the FP8 rounding
  double Mk = 0, sd_min = kInf, ratio = 0, Ymax = 0, Wn = 0, Bn = 0;
  double Hmag = 0;  // max over rows of sum_i |y_i| / sqrt(dI), before the Hadamard
};
KOracle key_oracle(int64_t T, int64_t D, int64_t dI, int64_t pos0, bool quant,
                   const std::vector<double>& x, const std::vector<double>& wk,
                   const std::vector<double>& nw, const std::vector<double>& nb) {
  KOracle o;
  o.pre.assign(T * dI, 0.0);
  o.Wn = naive::block_amax(nw.data(), dI);
  o.Bn = naive::block_amax(nb.data(), dI);
  for (int64_t j = 0; j < T; ++j) {
    double* y = &o.pre[j * dI];
    double mk = 0;
    const std::vector<double> k = naive::linear(wk.data(), dI, D, &x[j * D], &mk);
    o.Mk = std::max(o.Mk, mk);
    std::copy(k.begin(), k.end(), y);
    const naive::LayerNormStats st = naive::layernorm(y, dI, nw.data(), nb.data(), kNormEps);
    double dmax = 0;  // max |k - mu|, from the projection kept in k
    for (int64_t c = 0; c < dI; ++c) dmax = std::max(dmax, std::fabs(k[c] - st.mean));
    o.sd_min = std::min(o.sd_min, st.sd);
    o.ratio = std::max(o.ratio, dmax / st.sd);
    rope_first_half_split(y, double(pos0 + j));
    o.Ymax = std::max(o.Ymax, naive::block_amax(y, dI));
    o.Hmag = std::max(o.Hmag, naive::hadamard_magnitude(y, dI));
    naive::hadamard(y, dI);
  }
  o.k = o.pre;
  if (quant)
    for (int64_t j = 0; j < T; ++j) naive::quant_blocks(Fmt::fp8, &o.k[j * dI], dI, 128);
  return o;
}

// Derived key bound for an op in T: Wk x a length-D reduction (ek); LayerNorm
// y = (k - mu) w / sd + b: |dy| <= Wn (2 ek / sd)(1 + max|k - mu| / sd) + its own
// length-dI reductions + u |b|; RoPE sqrt(2) |dy| + 4 u Ymax;
// Hadamard dh_j = sum_i +-d_i / sqrt(dI): |dh| <= max|d| in the typical (sqrt(k))
// combination reduction_tol assumes, + its own length-dI reduction of magnitude Hmag.
template <class T>
double key_delta(int64_t D, int64_t dI, const KOracle& o) {
  const double u = unit_roundoff<T>();
  const double ek = reduction_tol<T>(double(D), o.Mk);
  const double ey = o.Wn * (2 * ek / o.sd_min) * (1 + o.ratio) +
                    reduction_tol<T>(double(dI), o.Wn * o.ratio) + 2 * u * o.Bn;
  const double er = std::sqrt(2.0) * ey + 4 * u * o.Ymax;
  return er + reduction_tol<T>(double(dI), o.Hmag);
}

struct QOracle {
  std::vector<double> pre, q, w;
  double Mq = 0, Qmax = 0, Mw = 0, Hmag = 0;
};

QOracle query_oracle(int64_t T, int64_t D, int64_t qr, int64_t HI, int64_t dI, int64_t pos0,
                     bool quant, const std::vector<double>& cq, const std::vector<double>& x,
                     const std::vector<double>& wqb, const std::vector<double>& wproj) {
  QOracle o;
  const int64_t W = HI * dI;
  o.pre.assign(T * W, 0.0);
  o.w.assign(T * HI, 0.0);
  for (int64_t r = 0; r < T; ++r) {
    double mq = 0;
    const std::vector<double> qrow = naive::linear(wqb.data(), W, qr, &cq[r * qr], &mq);
    o.Mq = std::max(o.Mq, mq);
    std::copy(qrow.begin(), qrow.end(), o.pre.begin() + r * W);
    for (int64_t h = 0; h < HI; ++h) {
      double* v = &o.pre[r * W + h * dI];
      rope_first_half_split(v, double(pos0 + r));
      o.Qmax = std::max(o.Qmax, naive::block_amax(v, dI));
      o.Hmag = std::max(o.Hmag, naive::hadamard_magnitude(v, dI));
      naive::hadamard(v, dI);
    }
    double mw = 0;
    const std::vector<double> wrow = naive::linear(wproj.data(), HI, D, &x[r * D], &mw);
    o.Mw = std::max(o.Mw, mw);
    for (int64_t h = 0; h < HI; ++h)
      o.w[r * HI + h] = wrow[h] / std::sqrt(double(HI)) / std::sqrt(double(dI));
  }
  o.q = o.pre;
  if (quant)
    for (int64_t h = 0; h < T * HI; ++h) naive::quant_blocks(Fmt::fp8, &o.q[h * dI], dI, 128);
  return o;
}

template <class T>
double query_delta(int64_t qr, int64_t dI, const QOracle& o) {
  const double er = std::sqrt(2.0) * reduction_tol<T>(double(qr), o.Mq) +
                    4 * unit_roundoff<T>() * o.Qmax;
  // Hadamard: as for the keys (typical combination + its own reduction)
  return er + reduction_tol<T>(double(dI), o.Hmag);
}

template <class T>
class DsaIndexer : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(DsaIndexer, Types);

TEST(DsaRopeTable, V3CorrectionRange) {
  // By hand: 64 ln(4096 / 64 pi) / (2 ln 1e4) = 10.47 -> 10;
  //          64 ln(4096 / 2 pi) / (2 ln 1e4)  = 22.51 -> 23.
  int64_t low, high;
  naive::yarn_range(10000.0, 4096.0, 32.0, 1.0, &low, &high);
  EXPECT_EQ(low, 10);
  EXPECT_EQ(high, 23);
}

struct KeyCase {
  int64_t T, D, dI, pos0;
  bool quant;
};

template <class T>
std::vector<T> run_keys(const KeyCase& c, const std::vector<T>& x, const std::vector<T>& wk,
                        const std::vector<T>& nw, const std::vector<T>& nb) {
  std::vector<T> k(c.T * c.dI, std::numeric_limits<T>::quiet_NaN());
  DsaKeyParams<T> p;
  p.x = view2(x.data(), c.T, c.D);
  p.wk = wk.data();
  p.norm_w = nw.data();
  p.norm_b = nb.data();
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.quant = c.quant;
  p.k = view2(k.data(), c.T, c.dI);
  ref::dsa_indexer_keys<T>(p);
  return k;
}

TYPED_TEST(DsaIndexer, KeysMatchOracle) {
  using T = TypeParam;
  for (bool quant : {false, true})
    for (int64_t pos0 : {int64_t(0), int64_t(5000)}) {
      const KeyCase c{6, 40, 128, pos0, quant};
      SCOPED_TRACE("quant " + std::to_string(quant) + " pos0 " + std::to_string(pos0));
      const uint64_t seed = 10 + quant + pos0;
      const std::vector<double> x = round_to<T>(test::uniform(c.T * c.D, seed));
      const double sd = 1.0 / std::sqrt(double(c.D));
      const std::vector<double> wk = round_to<T>(test::uniform(c.dI * c.D, seed + 1, -sd, sd));
      const std::vector<double> nw = round_to<T>(test::uniform(c.dI, seed + 2, 0.5, 1.5));
      const std::vector<double> nb = round_to<T>(test::uniform(c.dI, seed + 3, -0.5, 0.5));
      const KOracle o = key_oracle(c.T, c.D, c.dI, c.pos0, c.quant, x, wk, nw, nb);
      const std::vector<T> k = run_keys<T>(c, test::cast<T>(x), test::cast<T>(wk), test::cast<T>(nw), test::cast<T>(nb));
      EXPECT_TRUE(rows_match(k, o.pre, o.k, c.dI, c.quant, key_delta<T>(c.D, c.dI, o)));
      // Non-vacuity: the bias, the norm weight and the RoPE position all matter.
      const std::vector<double> zeros(c.dI, 0.0), ones(c.dI, 1.0);
      EXPECT_FALSE(rows_match(k, o.pre,
                              key_oracle(c.T, c.D, c.dI, c.pos0, c.quant, x, wk, nw, zeros).k,
                              c.dI, false, 10 * key_delta<T>(c.D, c.dI, o)));
      EXPECT_FALSE(rows_match(k, o.pre,
                              key_oracle(c.T, c.D, c.dI, c.pos0, c.quant, x, wk, ones, nb).k,
                              c.dI, false, 10 * key_delta<T>(c.D, c.dI, o)));
      EXPECT_FALSE(rows_match(k, o.pre,
                              key_oracle(c.T, c.D, c.dI, c.pos0 + 1, c.quant, x, wk, nw, nb).k,
                              c.dI, false, 10 * key_delta<T>(c.D, c.dI, o)));
    }
}

struct QCase {
  int64_t T, D, qr, HI, dI, pos0;
  bool quant;
};

template <class T>
void run_query(const QCase& c, const std::vector<T>& cq, const std::vector<T>& x,
               const std::vector<T>& wqb, const std::vector<T>& wp, std::vector<T>& q,
               std::vector<T>& w) {
  q.assign(c.T * c.HI * c.dI, std::numeric_limits<T>::quiet_NaN());
  w.assign(c.T * c.HI, std::numeric_limits<T>::quiet_NaN());
  DsaQueryParams<T> p;
  p.cq = view2(cq.data(), c.T, c.qr);
  p.x = view2(x.data(), c.T, c.D);
  p.wq_b = wqb.data();
  p.weights_proj = wp.data();
  p.heads = c.HI;
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.quant = c.quant;
  p.q = view2(q.data(), c.T, c.HI * c.dI);
  p.w = view2(w.data(), c.T, c.HI);
  ref::dsa_indexer_query<T>(p);
}

TYPED_TEST(DsaIndexer, QueriesMatchOracle) {
  using T = TypeParam;
  for (bool quant : {false, true}) {
    // HI = 64, dI = 128: the weight scale is 64^-1/2 128^-1/2 as in §2.10.
    for (const QCase& c : {QCase{3, 24, 64, 64, 128, 700, quant},
                           QCase{4, 24, 96, 4, 128, 0, quant}}) {
      SCOPED_TRACE("HI " + std::to_string(c.HI) + " quant " + std::to_string(quant));
      const uint64_t seed = 40 + quant + c.HI;
      const std::vector<double> cq = round_to<T>(test::uniform(c.T * c.qr, seed));
      const std::vector<double> x = round_to<T>(test::uniform(c.T * c.D, seed + 1));
      const double sq = 1.0 / std::sqrt(double(c.qr)), sd = 1.0 / std::sqrt(double(c.D));
      const std::vector<double> wqb =
          round_to<T>(test::uniform(c.HI * c.dI * c.qr, seed + 2, -sq, sq));
      const std::vector<double> wp = round_to<T>(test::uniform(c.HI * c.D, seed + 3, -sd, sd));
      const QOracle o = query_oracle(c.T, c.D, c.qr, c.HI, c.dI, c.pos0, c.quant, cq, x, wqb, wp);
      std::vector<T> q, w;
      run_query<T>(c, test::cast<T>(cq), test::cast<T>(x), test::cast<T>(wqb), test::cast<T>(wp), q, w);
      EXPECT_TRUE(rows_match(q, o.pre, o.q, c.dI, c.quant, query_delta<T>(c.qr, c.dI, o)));
      const double scale = 1.0 / std::sqrt(double(c.HI)) / std::sqrt(double(c.dI));
      EXPECT_TRUE(all_close(w, o.w, scale * reduction_tol<T>(double(c.D), o.Mw),
                            4 * unit_roundoff<T>()));
      // Non-vacuity: the half_split layout on the first 64 dims differs from rotating the
      // last 64 (the V4 placement): shift the oracle's position and it must fail.
      const QOracle o2 =
          query_oracle(c.T, c.D, c.qr, c.HI, c.dI, c.pos0 + 1, c.quant, cq, x, wqb, wp);
      EXPECT_FALSE(rows_match(q, o2.pre, o2.q, c.dI, false, 100 * query_delta<T>(c.qr, c.dI, o)));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Selection (ratio 1).

struct Case {
  int64_t T, N, HI, dI, topk, pos0;
  // ratio 1: key j is token j, visible to its own position.
  bool visible(int64_t r, int64_t j) const { return j < N && j <= pos0 + r; }
};
std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " N=" + std::to_string(c.N) + " HI=" +
         std::to_string(c.HI) + " dI=" + std::to_string(c.dI) + " topk=" +
         std::to_string(c.topk) + " pos0=" + std::to_string(c.pos0);
}
// Scores, top-k, score_tol (length-dI dot products and a length-HI head sum) and the
// selection checks: tests/support/selection.h.

template <class T>
struct Out {
  std::vector<T> scores;
  std::vector<int32_t> idx;
};

// The op is called with ratio = 4 on purpose: dsa_indexer ignores it (always 1).
template <class T>
Out<T> run(const Case& c, const std::vector<T>& q, const std::vector<T>& k,
           const std::vector<T>& w) {
  Out<T> o;
  o.scores.assign(std::max<int64_t>(c.T * c.N, 1), std::numeric_limits<T>::quiet_NaN());
  o.idx.assign(c.T * c.topk, 0x5EED5EED);
  IndexerParams<T> p;
  p.q = view2(q.data(), c.T, c.HI * c.dI);
  p.k = view2(k.data(), c.N, c.dI);
  p.w = view2(w.data(), c.T, c.HI);
  p.heads = c.HI;
  p.ratio = 4;
  p.topk = c.topk;
  p.pos0 = c.pos0;
  p.scores = view2(o.scores.data(), c.T, c.N);
  p.indices = view2(o.idx.data(), c.T, c.topk);
  ref::dsa_indexer<T>(p);
  o.scores.resize(c.T * c.N);
  return o;
}

template <class T>
void check_case(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                const std::vector<double>& w) {
  SCOPED_TRACE(describe(c));
  std::vector<double> os, mag;
  oracle_scores(c, q, k, w, os, mag);
  std::vector<double> tol(c.T);
  for (int64_t r = 0; r < c.T; ++r) tol[r] = score_tol<T>(c, mag[r]);
  const Out<T> o = run<T>(c, test::cast<T>(q), test::cast<T>(k), test::cast<T>(w));
  EXPECT_TRUE(selection_invariants(c, o.idx));
  for (int64_t r = 0; r < c.T; ++r)
    EXPECT_TRUE(all_close(&o.scores[r * c.N], &os[r * c.N], c.N, tol[r])) << "row " << r;
  if constexpr (std::is_same_v<T, double>) {
    EXPECT_EQ(o.idx, oracle_topk(c, os));
  } else {
    EXPECT_TRUE(selection_within_tol(c, o.idx, os, tol));
  }
}

template <class T>
void check_random_case(const Case& c, uint64_t seed) {
  check_case<T>(c, round_to<T>(test::uniform(c.T * c.HI * c.dI, seed)),
                round_to<T>(test::uniform(c.N * c.dI, seed + 1)),
                round_to<T>(test::uniform(c.T * c.HI, seed + 2)));
}

TYPED_TEST(DsaIndexer, SelectionMatchesOracle) {
  using T = TypeParam;
  check_random_case<T>({6, 20, 4, 32, 5, 0}, 60);    // rows see 1..6 keys: topk > visible
  check_random_case<T>({5, 30, 2, 16, 8, 10}, 61);   // rows see 11..15 keys
  check_random_case<T>({3, 12, 3, 8, 4, 100}, 62);   // every key visible
}

TYPED_TEST(DsaIndexer, RandomPropertySweep) {
  using T = TypeParam;
  std::mt19937_64 g(77);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(g);
  };
  for (int n = 0; n < 300; ++n) {
    Case c;
    c.N = pick(0, 40);
    c.T = pick(1, 6);
    c.HI = pick(1, 4);
    c.dI = int64_t(1) << pick(1, 5);
    c.topk = pick(1, c.N + 4);
    c.pos0 = pick(0, c.N + 3);
    check_random_case<T>(c, 9000 + 3 * n);
    if (::testing::Test::HasFailure()) return;
  }
}

// Key t is visible to position t: with pos0 = 0 and T = N, row r sees exactly keys 0..r,
// so row 0 selects key 0 alone.
TYPED_TEST(DsaIndexer, KeyOfTheCurrentTokenIsVisible) {
  using T = TypeParam;
  const Case c{8, 8, 2, 16, 3, 0};
  const Out<T> o = run<T>(c, test::cast<T>(test::uniform(c.T * c.HI * c.dI, 63)),
                          test::cast<T>(test::uniform(c.N * c.dI, 64)),
                          test::cast<T>(test::uniform(c.T * c.HI, 65)));
  EXPECT_EQ(o.idx[0], 0);
  EXPECT_EQ(o.idx[1], -1);
  EXPECT_EQ(o.idx[2], -1);
  for (int64_t r = 0; r < c.T; ++r)
    for (int64_t j = 0; j < c.N; ++j)
      EXPECT_EQ(std::isinf(o.scores[r * c.N + j]), j > r) << "row " << r << " key " << j;
  for (int64_t r = 0; r < c.T; ++r) {
    const std::set<int32_t> sel(&o.idx[r * c.topk], &o.idx[r * c.topk] + c.topk);
    if (r < 2) {
      EXPECT_TRUE(sel.count(-1)) << "row " << r;
    }
    for (int32_t j : sel) EXPECT_LE(j, r);
  }
}

// Integer inputs: exact ties, which go to the lower index.
TYPED_TEST(DsaIndexer, ExactTiesGoToTheLowerIndex) {
  using T = TypeParam;
  const int64_t HI = 2, dI = 8, N = 10;
  const std::vector<int> cj = {1, 2, 2, 0, 1, 2, -1, 1, 2, 0};
  std::vector<double> k(N * dI), q(HI * dI), w(HI);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = 0; i < dI; ++i) k[j * dI + i] = cj[j] * double(i % 2 + 1);
  for (int64_t i = 0; i < HI * dI; ++i) q[i] = double(i % 3 + 1);
  for (int64_t h = 0; h < HI; ++h) w[h] = double(h + 2);
  const Case c{1, N, HI, dI, 12, 20};
  const Out<T> o = run<T>(c, test::cast<T>(q), test::cast<T>(k), test::cast<T>(w));
  const std::vector<int32_t> expect = {1, 2, 5, 8, 0, 4, 7, 3, 6, 9, -1, -1};
  EXPECT_EQ(o.idx, expect);
  // And a row that sees only keys 0..4 (pos0 = 4).
  const Case c2{1, N, HI, dI, 3, 4};
  const Out<T> o2 = run<T>(c2, test::cast<T>(q), test::cast<T>(k), test::cast<T>(w));
  EXPECT_EQ(o2.idx, (std::vector<int32_t>{1, 2, 0}));
}

TYPED_TEST(DsaIndexer, NoKeys) {
  using T = TypeParam;
  const Case c{2, 0, 2, 8, 4, 5};
  const Out<T> o = run<T>(c, test::cast<T>(test::uniform(c.T * c.HI * c.dI, 66)), std::vector<T>(),
                          test::cast<T>(test::uniform(c.T * c.HI, 67)));
  for (int32_t j : o.idx) EXPECT_EQ(j, -1);
}

// The whole V3.2 indexer on a small model, double: queries and keys from the ops, scored
// and selected; vs the oracle chain (exact selection).
TEST(DsaIndexerPipeline, QueriesKeysSelection) {
  const int64_t T = 12, D = 32, qr = 48, HI = 4, dI = 128, topk = 5;
  for (bool quant : {false, true}) {
    SCOPED_TRACE("quant " + std::to_string(quant));
    const std::vector<double> x = test::uniform(T * D, 70 + quant);
    const std::vector<double> cq = test::uniform(T * qr, 71);
    const std::vector<double> wqb = test::uniform(HI * dI * qr, 72, -0.15, 0.15);
    const std::vector<double> wp = test::uniform(HI * D, 73, -0.2, 0.2);
    const std::vector<double> wk = test::uniform(dI * D, 74, -0.2, 0.2);
    const std::vector<double> nw = test::uniform(dI, 75, 0.5, 1.5);
    const std::vector<double> nb = test::uniform(dI, 76, -0.3, 0.3);
    std::vector<double> q, w;
    run_query<double>({T, D, qr, HI, dI, 0, quant}, cq, x, wqb, wp, q, w);
    const std::vector<double> k = run_keys<double>({T, D, dI, 0, quant}, x, wk, nw, nb);
    const Case c{T, T, HI, dI, topk, 0};
    const Out<double> o = run<double>(c, q, k, w);
    const QOracle qo = query_oracle(T, D, qr, HI, dI, 0, quant, cq, x, wqb, wp);
    const KOracle ko = key_oracle(T, D, dI, 0, quant, x, wk, nw, nb);
    std::vector<double> os, mag;
    oracle_scores(c, qo.q, ko.k, qo.w, os, mag);
    EXPECT_TRUE(selection_invariants(c, o.idx));
    EXPECT_EQ(o.idx, oracle_topk(c, os));
  }
}

// V3.2's default top-2048 on a real-shape slice: HI = 64, dI = 128, 3000 keys, rows at
// positions 2500..2502 (2501..2503 visible), float vs the double oracle.
TEST(DsaIndexerRealShape, V32Top2048) {
  const Case c{3, 3000, 64, 128, kDsaTopk, 2500};
  ASSERT_EQ(kDsaTopk, 2048);
  const double ws = 1.0 / (std::sqrt(64.0) * std::sqrt(128.0));
  const std::vector<double> q = round_to<float>(test::uniform(c.T * c.HI * c.dI, 80));
  const std::vector<double> k = round_to<float>(test::uniform(c.N * c.dI, 81));
  const std::vector<double> w = round_to<float>(test::uniform(c.T * c.HI, 82, -ws, ws));
  check_case<float>(c, q, k, w);
}

TEST(DsaIndexerBadInput, WrongWeightShapeAndTopk) {
  const Case c{3, 10, 2, 8, 4, 20};
  const std::vector<double> q = test::uniform(c.T * c.HI * c.dI, 90);
  const std::vector<double> k = test::uniform(c.N * c.dI, 91);
  const std::vector<double> w = test::uniform(c.T * (c.HI + 1), 92);
  std::vector<int32_t> idx(c.T * c.topk);
  auto params = [&] {
    IndexerParams<double> p;
    p.q = view2(q.data(), c.T, c.HI * c.dI);
    p.k = view2(k.data(), c.N, c.dI);
    p.w = view2(w.data(), c.T, c.HI);
    p.heads = c.HI;
    p.topk = c.topk;
    p.pos0 = c.pos0;
    p.indices = view2(idx.data(), c.T, c.topk);
    return p;
  };
  EXPECT_NO_THROW(ref::dsa_indexer<double>(params()));
  {
    auto p = params();
    p.w = view2(w.data(), c.T, c.HI + 1);
    EXPECT_THROW(ref::dsa_indexer<double>(p), InputError);
  }
  for (int64_t bad : {int64_t(0), int64_t(-3)}) {
    auto p = params();
    p.topk = bad;
    p.indices = view2(idx.data(), c.T, 0);
    EXPECT_THROW(ref::dsa_indexer<double>(p), InputError);
  }
}

}  // namespace
}  // namespace dsv4
