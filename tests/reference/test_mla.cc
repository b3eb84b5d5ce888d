// Tests of ref::mla (reference/mla.h; op-contract `mla`; spec §1.2, §2.10): the absorbed
// MLA core of DeepSeek-V3 (dense causal) and V3.2 (sparse, indices from the DSA indexer).
//
// Oracle: a naive double loop written from the contract (never calls the op):
//   query row r has position p = pos0 + r, kv row j has position j; visible j <= p;
//   dense: every visible row; sparse: the listed rows, skipping -1 and future rows, a
//   duplicated index counting twice; s_j = scale * q . kv_j over all dl + dr dims;
//   o = sum_j softmax_j(s) kv_j[0:dl] (values = the latent part; no sink);
//   lse = ln sum_j exp(s_j); nothing attended -> o = 0, lse = -inf.
// The per-head softmax (naive::attend with no sink) and its tolerances are the shared ones
// of tests/support/naive.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "reference/errors.h"
#include "reference/mla.h"
#include "reference/rope.h"
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

struct Case {
  int64_t T = 1, Tk = 1, H = 2, dl = 64, dr = 32, pos0 = 0;
  double scale = 0;  // 0: 1/sqrt(dl + dr)
  std::vector<double> q, kv;  // float-representable values
  bool sparse = false;
  int64_t k = 0;
  std::vector<int32_t> idx;
  int64_t dk() const { return dl + dr; }
};

// q, kv ~ N(0, 1): scores q.kv/sqrt(dk) of unit spread.
Case make_case(int64_t T, int64_t Tk, int64_t H, int64_t dl, int64_t dr, int64_t pos0,
               uint64_t seed) {
  Case c;
  c.T = T, c.Tk = Tk, c.H = H, c.dl = dl, c.dr = dr, c.pos0 = pos0;
  c.q = float_exact(test::normal(size_t(T * H * (dl + dr)), seed));
  c.kv = float_exact(test::normal(size_t(Tk * (dl + dr)), seed + 1));
  return c;
}

// Each slot -1 with probability p_neg, else uniform in [0, Tk) (future rows included).
void random_indices(Case& c, int64_t k, uint64_t seed, double p_neg = 0.1) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::uniform_int_distribution<int64_t> pick(0, c.Tk - 1);
  c.sparse = true;
  c.k = k;
  c.idx.assign(size_t(c.T * k), -1);
  for (auto& j : c.idx)
    if (u(g) >= p_neg) j = int32_t(pick(g));
}

struct Ref {
  std::vector<double> o, lse;
  double smag = 0, omag = 0, lsemax = 0;
  int64_t nmax = 0;
};

Ref oracle(const Case& c, bool dedupe = false) {
  const int64_t dk = c.dk();
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(dk));
  Ref r;
  naive::AttendStats st;
  r.o.assign(size_t(c.T * c.H * c.dl), 0.0);
  r.lse.assign(size_t(c.T * c.H), -kInf);
  for (int64_t row = 0; row < c.T; ++row) {
    const int64_t p = c.pos0 + row;
    std::vector<int64_t> ent;
    if (!c.sparse) {
      for (int64_t j = 0; j <= p && j < c.Tk; ++j) ent.push_back(j);
    } else {
      for (int64_t k = 0; k < c.k; ++k) {
        const int32_t j = c.idx[size_t(row * c.k + k)];
        if (j < 0 || j > p) continue;
        if (dedupe && std::find(ent.begin(), ent.end(), j) != ent.end()) continue;
        ent.push_back(j);
      }
    }
    r.nmax = std::max<int64_t>(r.nmax, int64_t(ent.size()));
    if (ent.empty()) continue;  // o = 0, lse = -inf
    std::vector<const double*> rows;  // keys [0, dk), values their first dl dims
    for (int64_t j : ent) rows.push_back(&c.kv[size_t(j * dk)]);
    for (int64_t h = 0; h < c.H; ++h) {
      const double lse = naive::attend(&c.q[size_t((row * c.H + h) * dk)], rows, dk, c.dl, scale,
                                       -kInf, &r.o[size_t((row * c.H + h) * c.dl)], &st);
      r.lse[size_t(row * c.H + h)] = lse;
      r.lsemax = std::max(r.lsemax, std::fabs(lse));
    }
  }
  r.smag = st.smag;
  r.omag = st.omag;
  return r;
}

template <class T>
struct Out {
  std::vector<T> o, lse;
};

template <class T>
Out<T> run(const Case& c) {
  const std::vector<T> q = test::cast<T>(c.q), kv = test::cast<T>(c.kv);
  Out<T> out;
  out.o.assign(size_t(c.T * c.H * c.dl), T(kNaN));
  out.lse.assign(size_t(c.T * c.H), T(kNaN));
  MlaParams<T> p;
  p.q = view2(q.data(), c.T, c.H * c.dk());
  p.kv = view2(kv.data(), c.Tk, c.dk());
  if (c.sparse) p.indices = view2(c.idx.data(), c.T, c.k);
  p.heads = c.H;
  p.latent_dim = c.dl;
  p.scale = c.scale;
  p.pos0 = c.pos0;
  p.o = view2(out.o.data(), c.T, c.H * c.dl);
  p.lse = view2(out.lse.data(), c.T, c.H);
  ref::mla(p);
  return out;
}

// Tolerances: naive::attend_tol_o / attend_tol_lse (derivation in tests/support/naive.h),
// with dk-long scores and Z of n terms (no sink).
template <class T>
double tol_o(const Ref& r, int64_t dk) {
  return naive::attend_tol_o<T>(r.smag, r.omag, dk, r.nmax);
}
template <class T>
double tol_lse(const Ref& r, int64_t dk) {
  return naive::attend_tol_lse<T>(r.smag, r.lsemax, dk, r.nmax);
}

template <class T>
void expect_matches_oracle(const Case& c, const Ref& r) {
  const Out<T> out = run<T>(c);
  EXPECT_TRUE(test::all_close(out.o, r.o, tol_o<T>(r, c.dk()))) << "o";
  EXPECT_TRUE(test::all_close(out.lse, r.lse, tol_lse<T>(r, c.dk()))) << "lse";
}
template <class T>
void expect_matches_oracle(const Case& c) {
  expect_matches_oracle<T>(c, oracle(c));
}

template <class T>
class MlaTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MlaTyped, Types);

TYPED_TEST(MlaTyped, DenseCausalPrefillMatchesOracle) {
  using T = TypeParam;
  for (int64_t Tn : {1, 5, 64, 131}) {
    SCOPED_TRACE("T = " + std::to_string(Tn));
    expect_matches_oracle<T>(make_case(Tn, Tn, 4, 128, 64, 0, 100 + Tn));
  }
}

TYPED_TEST(MlaTyped, SparseMatchesOracle) {
  using T = TypeParam;
  Case c = make_case(40, 40, 4, 128, 64, 0, 200);
  random_indices(c, 16, 201);  // -1, duplicates and future rows included
  expect_matches_oracle<T>(c);
  Case dec = make_case(3, 300, 4, 128, 64, 297, 210);
  random_indices(dec, 64, 211);
  expect_matches_oracle<T>(dec);
}

// Non-vacuity: an oracle that lets each query see one future row disagrees with the op.
TYPED_TEST(MlaTyped, ToleranceDetectsOneFutureRow) {
  using T = TypeParam;
  Case c = make_case(30, 31, 4, 128, 64, 0, 250);  // row 30 of kv is the extra future row
  const Ref good = oracle(c);
  Case wrong = c;
  wrong.pos0 = 1;  // every query sees one row more
  const Ref bad = oracle(wrong);
  const Out<T> out = run<T>(c);
  EXPECT_TRUE(test::all_close(out.o, good.o, tol_o<T>(good, c.dk())));
  EXPECT_FALSE(test::all_close(out.o, bad.o, tol_o<T>(good, c.dk())));
}

// Invariant: dense == sparse with indices listing every visible row (shuffled, -1 padded).
TYPED_TEST(MlaTyped, InvariantDenseEqualsSparseOverAllVisible) {
  using T = TypeParam;
  Case dense = make_case(20, 50, 4, 128, 64, 30, 300);  // positions 30..49
  Case sparse = dense;
  sparse.sparse = true;
  sparse.k = 64;
  sparse.idx.assign(size_t(sparse.T * sparse.k), -1);
  std::mt19937_64 g(301);
  for (int64_t r = 0; r < sparse.T; ++r) {
    int32_t* row = &sparse.idx[size_t(r * sparse.k)];
    std::iota(row, row + dense.pos0 + r + 1, 0);
    std::shuffle(row, row + sparse.k, g);
  }
  const Ref r = oracle(dense);
  const Out<T> a = run<T>(dense), b = run<T>(sparse);
  EXPECT_TRUE(test::all_close(a.o, b.o, 2 * tol_o<T>(r, dense.dk())));
  EXPECT_TRUE(test::all_close(a.lse, b.lse, 2 * tol_lse<T>(r, dense.dk())));
  expect_matches_oracle<T>(sparse, r);
}

// Invariant: a duplicated index counts twice (matches the counting-twice oracle, which
// differs from the de-duplicated one by far more than the tolerance).
TYPED_TEST(MlaTyped, InvariantDuplicatedIndexCountsTwice) {
  using T = TypeParam;
  Case c = make_case(10, 10, 4, 128, 64, 0, 400);
  c.sparse = true;
  c.k = 5;
  c.idx.assign(size_t(c.T * c.k), -1);
  for (int64_t r = 0; r < c.T; ++r) {
    int32_t* row = &c.idx[size_t(r * c.k)];
    row[0] = row[1] = row[2] = int32_t(r);  // self, three times
    row[3] = 0;
  }
  const Ref twice = oracle(c), once = oracle(c, true);
  expect_matches_oracle<T>(c, twice);
  EXPECT_GT(max_abs_diff(twice.o, once.o), 100 * tol_o<T>(twice, c.dk()));
}

// Invariant: -1 entries (and future rows) are ignored: removing them changes nothing.
TYPED_TEST(MlaTyped, InvariantMinusOneAndFutureIgnored) {
  using T = TypeParam;
  Case c = make_case(12, 12, 4, 128, 64, 0, 500);
  random_indices(c, 10, 501, 0.4);
  Case cleaned = c;
  for (int64_t r = 0; r < c.T; ++r) {  // visible ones first, then -1 padding
    int32_t* row = &cleaned.idx[size_t(r * c.k)];
    std::vector<int32_t> keep;
    for (int64_t k = 0; k < c.k; ++k)
      if (row[k] >= 0 && row[k] <= r) keep.push_back(row[k]);
    std::fill(row, row + c.k, -1);
    std::copy(keep.begin(), keep.end(), row);
  }
  const Ref r = oracle(c);
  const Out<T> a = run<T>(c), b = run<T>(cleaned);
  EXPECT_TRUE(test::bitwise_equal(a.o, b.o));
  EXPECT_TRUE(test::bitwise_equal(a.lse, b.lse));
  expect_matches_oracle<T>(c, r);
}

// All indices -1 (or only future rows): o = 0 exactly and lse = -inf.
TYPED_TEST(MlaTyped, AllMinusOneGivesZeroAndMinusInf) {
  using T = TypeParam;
  Case c = make_case(4, 8, 4, 128, 64, 0, 600);
  c.sparse = true;
  c.k = 3;
  c.idx.assign(size_t(c.T * c.k), -1);
  c.idx[0 * 3 + 1] = 5;  // row 0 (position 0): a future row only
  const Out<T> out = run<T>(c);
  EXPECT_TRUE(test::all_close(out.o, std::vector<double>(out.o.size(), 0.0), 0.0));
  EXPECT_TRUE(test::all_close(out.lse, std::vector<double>(out.lse.size(), -kInf), 0.0));
  const Ref r = oracle(c);
  EXPECT_TRUE(test::all_close(out.o, r.o, 0.0));
  EXPECT_TRUE(test::all_close(out.lse, r.lse, 0.0));
}

// V3 softmax scale: v3_softmax_scale() is 1/sqrt(192) * mscale^2, mscale = 0.1 ln 40 + 1
// (spec §1.2), and the op uses a given scale.
TYPED_TEST(MlaTyped, V3SoftmaxScale) {
  using T = TypeParam;
  const double mscale = 0.1 * std::log(40.0) + 1.0;
  const double spec = mscale * mscale / std::sqrt(192.0);
  EXPECT_NEAR(v3_softmax_scale(), spec, 4 * std::numeric_limits<double>::epsilon() * spec);
  EXPECT_NEAR(spec, 0.1352, 1e-4);  // 1.3689^2 / 13.856
  Case c = make_case(16, 16, 4, 128, 64, 0, 700);
  c.scale = v3_softmax_scale();
  Case oracle_case = c;
  oracle_case.scale = spec;
  const Ref r = oracle(oracle_case);
  expect_matches_oracle<T>(c, r);
  // and the scale matters: the default 1/sqrt(192) gives something else
  Case dflt = c;
  dflt.scale = 0;
  EXPECT_GT(max_abs_diff(oracle(dflt).o, r.o), 100 * tol_o<T>(r, c.dk()));
}

// pos0 = Tk - T (the contract's default) means the last T kv rows are the queries'
// positions: equal to the oracle at those positions and to the last T rows of a full causal
// prefill over Tk queries.
TYPED_TEST(MlaTyped, Pos0LastRowsAreTheQueries) {
  using T = TypeParam;
  const int64_t Tk = 37, Tq = 5, H = 4, dl = 128, dr = 64, dk = dl + dr;
  Case full = make_case(Tk, Tk, H, dl, dr, 0, 800);
  Case tail = full;
  tail.T = Tq;
  tail.pos0 = Tk - Tq;
  tail.q.assign(full.q.begin() + (Tk - Tq) * H * dk, full.q.end());
  const Ref r = oracle(tail);
  expect_matches_oracle<T>(tail, r);
  const Out<T> a = run<T>(full), b = run<T>(tail);
  std::vector<T> rows(a.o.begin() + (Tk - Tq) * H * dl, a.o.end());
  EXPECT_TRUE(test::all_close(b.o, rows, 2 * tol_o<T>(r, dk)));
}

// Real V3.2 decode shape: H = 128, dl = 512, dr = 64, Tk = 4096, T = 1 (pos0 = 4095),
// 2048 distinct indices; float vs the double oracle.
TEST(MlaRealShape, V32SparseDecode2048Of4096) {
  Case c = make_case(1, 4096, 128, kMlaLatentDim, kRopeDim, 4095, 900);
  std::vector<int32_t> all(4096);
  std::iota(all.begin(), all.end(), 0);
  std::mt19937_64 g(901);
  std::shuffle(all.begin(), all.end(), g);
  c.sparse = true;
  c.k = kDsaTopk;
  c.idx.assign(all.begin(), all.begin() + kDsaTopk);
  c.scale = v3_softmax_scale();
  const Ref r = oracle(c);
  ASSERT_EQ(r.nmax, kDsaTopk);
  expect_matches_oracle<float>(c, r);
}

TEST(MlaBadInput, IndexOutOfRange) {
  Case c = make_case(4, 6, 2, 64, 32, 2, 1000);
  random_indices(c, 3, 1001);
  Case hi = c;
  hi.idx[2] = int32_t(c.Tk);
  EXPECT_THROW(run<float>(hi), InputError);
  EXPECT_THROW(run<double>(hi), InputError);
  Case lo = c;
  lo.idx[4] = -2;
  EXPECT_THROW(run<float>(lo), InputError);
  EXPECT_THROW(run<double>(lo), InputError);
  EXPECT_NO_THROW(run<double>(c));
}

TEST(MlaBadInput, ShapesAndPositions) {
  Case c = make_case(4, 6, 2, 64, 32, 2, 1100);
  Case late = c;
  late.pos0 = 3;  // rows 3..6 but only 6 kv rows
  EXPECT_THROW(run<float>(late), InputError);
  const std::vector<float> q = test::cast<float>(c.q), kv = test::cast<float>(c.kv);
  std::vector<float> o(size_t(4 * 2 * 64));
  MlaParams<float> p;
  p.q = view2(q.data(), 4, 2 * 96 - 1);
  p.kv = view2(kv.data(), 6, 96);
  p.heads = 2;
  p.latent_dim = 64;
  p.pos0 = 2;
  p.o = view2(o.data(), 4, 2 * 64);
  EXPECT_THROW(ref::mla(p), InputError);
  p.q = view2(q.data(), 4, 2 * 96);
  p.latent_dim = 97;  // more than the kv width
  EXPECT_THROW(ref::mla(p), InputError);
  p.latent_dim = 64;
  EXPECT_NO_THROW(ref::mla(p));
}

}  // namespace
}  // namespace dsv4
