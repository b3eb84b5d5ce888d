// dsv4::cuda::indexer (lightning-indexer scores and top-k) against a double-precision oracle
// written from the spec and against its CPU twin ref::indexer<float>.
// Spec: docs/v4-architecture.md §2.4 (indexer), §2.8 (visibility):
//   scores[r][j] = sum_h w[r][h] max(0, q[r, h, :] . k[j, :])  for visible j
//                  (m j + m - 1 <= pos0 + r and j < N), -inf otherwise;
//   indices[r]   = visible j by descending score, ties to the lower j, the first
//                  min(topk, #visible), padded with -1.
// Oracle: naive::index_scores / index_topk (tests/support/naive.h) through
// tests/support/selection.h; none of it calls reference/ or optimized/.
// Label gpu: every test that needs a device skips, with the reason, when there is none; the
// host-side validation tests run everywhere. Harness: tests/support/device_harness.h.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/indexer.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/indexer.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/selection.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::kGuard;
using test::launch_and_sync;
using test::n_visible;
using test::oracle_scores;
using test::oracle_topk;
using test::score_tol;
using test::selection_invariants;
using test::selection_within_tol;
using test::unit_roundoff;

constexpr float kNaN = test::kPoison;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Index poison (every slot the op must write) and index canary (every slot it must not).
constexpr int32_t kPoisonIdx = 0x5EED5EED;
constexpr int32_t kIdxCanary = -0x2EADBEEF;

struct Case {
  int64_t T, N, HI, dI, m, topk, pos0;
  // §2.8: compressed key j is visible to row r once its block is complete.
  bool visible(int64_t r, int64_t j) const { return j < N && m * j + m - 1 <= pos0 + r; }
};
std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " N=" + std::to_string(c.N) + " HI=" + std::to_string(c.HI) +
         " dI=" + std::to_string(c.dI) + " m=" + std::to_string(c.m) + " topk=" +
         std::to_string(c.topk) + " pos0=" + std::to_string(c.pos0);
}

// Inputs in double, every value exactly a float (the oracle sees what the ops see).
struct Inputs {
  std::vector<double> q, k, w;  // [T, HI*dI], [N, dI], [T, HI]
};
Inputs uniform_inputs(const Case& c, uint64_t seed) {
  return {test::float_exact(test::uniform(size_t(c.T * c.HI * c.dI), seed)),
          test::float_exact(test::uniform(size_t(c.N * c.dI), seed + 1)),
          test::float_exact(test::uniform(size_t(c.T * c.HI), seed + 2))};
}

// Row strides of the device views; 0 = dense.
struct Strides {
  int64_t q = 0, k = 0, s = 0, i = 0;
};

struct Result {
  std::vector<float> scores;  // [T, N] dense (empty when not requested)
  std::vector<int32_t> idx;   // [T, topk] dense
};

// Index matrices in the geometry of Guarded (tests/support/device_harness.h), as int32.
std::vector<int32_t> idx_poisoned(const Guarded& g) {
  std::vector<int32_t> img(g.size(), kIdxCanary);
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) img[g.at(r, c)] = kPoisonIdx;
  return img;
}
std::vector<int32_t> idx_extract(const Guarded& g, const std::vector<int32_t>& img) {
  std::vector<int32_t> dense(size_t(g.rows * g.cols));
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) dense[size_t(r * g.cols + c)] = img[g.at(r, c)];
  return dense;
}
::testing::AssertionResult idx_canaries_intact(const Guarded& g, const std::vector<int32_t>& img) {
  std::vector<bool> slot(img.size(), false);
  for (int64_t r = 0; r < g.rows; ++r)
    for (int64_t c = 0; c < g.cols; ++c) slot[g.at(r, c)] = true;
  for (size_t i = 0; i < img.size(); ++i)
    if (!slot[i] && img[i] != kIdxCanary)
      return ::testing::AssertionFailure() << "index canary overwritten at allocation element " << i
                                           << ": found " << img[i];
  return ::testing::AssertionSuccess();
}

// The GPU op on poisoned outputs with canaries; checks the canaries, that the inputs are
// untouched, that a rerun on re-poisoned outputs gives the same bits, and (with_scores) that
// a run without the scores output selects the same indices (the scratch path).
Result run_gpu(const Case& c, const Inputs& in, Strides st = {}) {
  const Guarded gq{c.T, c.HI * c.dI, st.q ? st.q : c.HI * c.dI}, gk{c.N, c.dI, st.k ? st.k : c.dI},
      gw{c.T, c.HI, c.HI}, gs{c.T, c.N, st.s ? st.s : c.N}, gi{c.T, c.topk, st.i ? st.i : c.topk};
  const std::vector<float> q_img = gq.image(test::cast<float>(in.q)),
                           k_img = gk.image(test::cast<float>(in.k)),
                           w_img = gw.image(test::cast<float>(in.w));
  cuda::DeviceBuffer<float> dq(q_img), dk(k_img), dw(w_img), ds(gs.poisoned());
  cuda::DeviceBuffer<int32_t> di(idx_poisoned(gi));
  IndexerParams<float> p;
  p.q = gq.view<const float>(dq.data());
  p.k = gk.view<const float>(dk.data());
  p.w = gw.view<const float>(dw.data());
  p.heads = c.HI;
  p.ratio = c.m;
  p.topk = c.topk;
  p.pos0 = c.pos0;
  p.scores = gs.view(ds.data());
  p.indices = View2<int32_t>{di.data() + kGuard, c.T, c.topk, gi.ld};
  launch_and_sync([&] { cuda::indexer(p); });

  const std::vector<float> s_img = ds.download();
  const std::vector<int32_t> i_img = di.download();
  EXPECT_TRUE(gs.canaries_intact(s_img));
  EXPECT_TRUE(idx_canaries_intact(gi, i_img));
  EXPECT_TRUE(test::bitwise_equal(dq.download(), q_img)) << "the op wrote into q";
  EXPECT_TRUE(test::bitwise_equal(dk.download(), k_img)) << "the op wrote into k";
  EXPECT_TRUE(test::bitwise_equal(dw.download(), w_img)) << "the op wrote into w";
  Result out{gs.extract(s_img), idx_extract(gi, i_img)};

  // Rerun: the same bits.
  ds.upload(gs.poisoned());
  di.upload(idx_poisoned(gi));
  launch_and_sync([&] { cuda::indexer(p); });
  EXPECT_TRUE(test::bitwise_equal(ds.download(), s_img)) << "rerun: scores differ";
  EXPECT_TRUE(test::bitwise_equal(di.download(), i_img)) << "rerun: indices differ";

  // Without the scores output: the same selection, and the scores buffer untouched.
  ds.upload(gs.poisoned());
  di.upload(idx_poisoned(gi));
  p.scores = View2<float>{};
  launch_and_sync([&] { cuda::indexer(p); });
  EXPECT_TRUE(test::bitwise_equal(di.download(), i_img)) << "without scores: indices differ";
  EXPECT_TRUE(test::bitwise_equal(ds.download(), gs.poisoned())) << "without scores: scores written";
  return out;
}

Result run_ref(const Case& c, const Inputs& in) {
  const std::vector<float> q = test::cast<float>(in.q), k = test::cast<float>(in.k),
                           w = test::cast<float>(in.w);
  Result o{std::vector<float>(size_t(c.T * c.N), kNaN), std::vector<int32_t>(size_t(c.T * c.topk), kPoisonIdx)};
  IndexerParams<float> p;
  p.q = view2(q.data(), c.T, c.HI * c.dI);
  p.k = view2(k.data(), c.N, c.dI);
  p.w = view2(w.data(), c.T, c.HI);
  p.heads = c.HI;
  p.ratio = c.m;
  p.topk = c.topk;
  p.pos0 = c.pos0;
  p.scores = view2(o.scores.data(), c.T, c.N);
  p.indices = view2(o.idx.data(), c.T, c.topk);
  ref::indexer<float>(p);
  return o;
}

// The op's order must follow its own scores exactly (the selection is exact on FP32):
// descending, ties to the lower index, nothing unselected above the last selected one.
::testing::AssertionResult order_follows_own_scores(const Case& c, const Result& o) {
  for (int64_t r = 0; r < c.T; ++r) {
    const float* s = &o.scores[size_t(r * c.N)];
    const int32_t* id = &o.idx[size_t(r * c.topk)];
    const int64_t k = std::min(c.topk, n_visible(c, r));
    auto before = [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
    for (int64_t i = 0; i + 1 < k; ++i)
      if (!before(id[i], id[i + 1]))
        return ::testing::AssertionFailure()
               << "row " << r << ": " << id[i] << " before " << id[i + 1] << " breaks the order";
    if (k == 0) continue;
    const std::set<int32_t> sel(id, id + k);
    for (int64_t j = 0; j < c.N; ++j)
      if (c.visible(r, j) && !sel.count(int32_t(j)) && before(int32_t(j), id[k - 1]))
        return ::testing::AssertionFailure()
               << "row " << r << ": unselected " << j << " ranks above selected " << id[k - 1];
  }
  return ::testing::AssertionSuccess();
}

// Per-row all_close (infinities compared first and exactly, then |a - e| <= tol[r]).
template <class E>
::testing::AssertionResult scores_close(const Case& c, const std::vector<float>& got,
                                        const std::vector<E>& want, const std::vector<double>& tol,
                                        double factor = 1.0) {
  for (int64_t r = 0; r < c.T; ++r) {
    auto res = test::all_close(&got[size_t(r * c.N)], &want[size_t(r * c.N)], size_t(c.N),
                               factor * tol[size_t(r)]);
    if (!res) return res << " (row " << r << ")";
  }
  return ::testing::AssertionSuccess();
}

template <class A>
double max_finite_err(const std::vector<A>& got, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (std::isfinite(want[i])) e = std::max(e, std::fabs(double(got[i]) - want[i]));
  return e;
}

// How a case's selection is checked against the oracle.
enum class Select {
  within_tol,  // random scores: a different set only among oracle scores within 2 tol
  exact,       // inputs built with score gaps > 2 tol (checked): the oracle's indices exactly
  exact_scores,  // integer inputs: every score exact in FP32, scores and indices exactly the oracle's
};

// Below this many finite scores the max error of a case is too noisy for the 2x-of-reference
// comparison (a handful of samples); the absolute tolerance still applies.
constexpr size_t kMinScoresForRatio = 1000;

// Full check of one case.
Result check_case(const Case& c, const Inputs& in, Select mode, Strides st = {}) {
  SCOPED_TRACE(describe(c));
  std::vector<double> os, mag;
  oracle_scores(c, in.q, in.k, in.w, os, mag);
  // Tolerance per row: each score is a length-dI FMA chain per head and a length-HI head sum,
  // |err| <= (sqrt(dI) + sqrt(HI)) kSafety u M_r <= score_tol<float> (selection.h), M_r the
  // row's max sum_h |w_h| sum_i |q_hi k_ji| from the oracle. The same bound holds the float
  // reference in tests/reference/test_indexer.cc; two such ops differ by at most 2 tol.
  std::vector<double> tol(size_t(c.T));
  for (int64_t r = 0; r < c.T; ++r) tol[size_t(r)] = score_tol<float>(c, mag[size_t(r)]);

  const Result gpu = run_gpu(c, in, st);
  const Result ref = run_ref(c, in);
  EXPECT_TRUE(selection_invariants(c, gpu.idx));
  EXPECT_TRUE(scores_close(c, gpu.scores, os, tol)) << "against the fp64 oracle";
  EXPECT_TRUE(scores_close(c, gpu.scores, ref.scores, tol, 2.0)) << "against ref::indexer<float>";
  EXPECT_TRUE(order_follows_own_scores(c, gpu));

  // Error against fp64 at most ~2x the float reference's, plus a rounding floor of 4 u of the
  // largest |score| (a few roundings of the result), over the whole case.
  size_t finite = 0;
  double smax = 0;
  for (double s : os)
    if (std::isfinite(s)) ++finite, smax = std::max(smax, std::fabs(s));
  if (finite >= kMinScoresForRatio) {
    const double e_gpu = max_finite_err(gpu.scores, os), e_ref = max_finite_err(ref.scores, os);
    EXPECT_LE(e_gpu, 2.0 * e_ref + 4.0 * unit_roundoff<float>() * smax)
        << "GPU error " << e_gpu << " vs float reference error " << e_ref;
  }

  switch (mode) {
    case Select::within_tol: {
      int64_t differing = 0;
      EXPECT_TRUE(selection_within_tol(c, gpu.idx, os, tol, &differing));
      break;
    }
    case Select::exact_scores:
      EXPECT_TRUE(test::all_close(gpu.scores, os, 0.0)) << "integer inputs: exact scores";
      EXPECT_EQ(gpu.idx, ref.idx) << "integer inputs: the reference's indices";
      [[fallthrough]];
    case Select::exact:
      EXPECT_EQ(gpu.idx, oracle_topk(c, os)) << "the oracle's indices";
      break;
  }
  return gpu;
}

// ---------------------------------------------------------------------------------------
// Small and edge shapes.

// The reference test's fixed cases, plus the GPU's tile edges: keys around the 128-key tile,
// heads around the 64-head tile, dI around the 32-dim chunk, topk at the shared-memory limit.
TEST(IndexerCuda, MatchesOracleOnSmallAndEdgeCases) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const std::vector<Case> cases = {
      {7, 20, 4, 32, 4, 5, 40},           // rows see 10, 11, ... keys
      {9, 12, 3, 16, 4, 64, 0},           // topk > visible; early rows see none
      {4, 6, 2, 8, 128, 3, 300},          // HCA-like ratio
      {5, 33, 1, 128, 4, 33, 200},        // every key visible, topk == N
      {6, 40, 8, 16, 1, 7, 10},           // ratio 1
      {2, 127, 64, 128, 4, 50, 4 * 127},  // one partial key tile
      {2, 129, 64, 128, 4, 100, 4 * 129}, // a full tile and one key
      {3, 300, 65, 33, 4, 64, 4 * 290},   // two head tiles (the second of 1), a partial dI chunk
      {2, 200, 130, 1, 4, 17, 800},       // dI = 1, three head tiles
      {1, 257, 63, 31, 4, 256, 4 * 257},  // partial head tile and chunk, topk ~ vis
      {1, 5000, 4, 16, 4, cuda::kIndexerMaxTopk, 4 * 5000},       // topk at the GPU limit
      {1, 4096, 4, 16, 4, cuda::kIndexerMaxTopk, 4 * 4096 - 1},   // vis == topk == the limit
  };
  for (size_t i = 0; i < cases.size(); ++i)
    check_case(cases[i], uniform_inputs(cases[i], 1000 + 10 * i), Select::within_tol);
}

// Random small cases: positions, pos0, ratio, topk, N, heads, dI.
TEST(IndexerCuda, RandomSweep) {
  DSV4_SKIP_WITHOUT_DEVICE();
  std::mt19937_64 g(4242);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); };
  const int64_t ratios[] = {1, 4, 4, 4, 128};
  for (int n = 0; n < 60; ++n) {
    Case c;
    c.m = ratios[pick(0, 4)];
    c.N = pick(0, 300);
    c.T = pick(1, 5);
    c.HI = pick(1, 70);
    c.dI = pick(1, 40);
    c.topk = pick(1, c.N + 4);
    c.pos0 = pick(0, c.m * (c.N + 2));
    check_case(c, uniform_inputs(c, 7000 + 3 * uint64_t(n)), Select::within_tol);
    if (::testing::Test::HasFailure()) return;
  }
}

// The reference test's exact-tie construction (integer arithmetic: exact in FP32): k_j = c_j b
// with q_h . b > 0 and w > 0, so score_j = c_j S; c_j <= 0 scores exactly 0.
TEST(IndexerCuda, ExactTiesGoToTheLowerIndex) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t HI = 3, dI = 8, N = 14;
  const std::vector<int> cj = {2, 3, 1, 3, -1, 2, 3, 0, 1, 2, -2, 3, 1, 0};
  Inputs in{std::vector<double>(size_t(HI * dI)), std::vector<double>(size_t(N * dI)),
            std::vector<double>(size_t(HI))};
  std::vector<double> b(static_cast<size_t>(dI));
  for (int64_t i = 0; i < dI; ++i) b[size_t(i)] = double(i % 3 + 1);
  for (int64_t j = 0; j < N; ++j)
    for (int64_t i = 0; i < dI; ++i) in.k[size_t(j * dI + i)] = cj[size_t(j)] * b[size_t(i)];
  for (int64_t h = 0; h < HI; ++h) {
    for (int64_t i = 0; i < dI; ++i) in.q[size_t(h * dI + i)] = double((h + i) % 4 + 1);
    in.w[size_t(h)] = double(h + 1);
  }
  // c = 3 at 1, 3, 6, 11; c = 2 at 0, 5, 9; c = 1 at 2, 8, 12; score 0 at 4, 7, 10, 13.
  const std::vector<int32_t> order = {1, 3, 6, 11, 0, 5, 9, 2, 8, 12, 4, 7, 10, 13};
  for (int64_t topk : {int64_t(5), int64_t(14), int64_t(20)}) {
    const Case c{1, N, HI, dI, 4, topk, 4 * N};
    const Result o = check_case(c, in, Select::exact_scores);
    for (int64_t i = 0; i < topk; ++i) EXPECT_EQ(o.idx[size_t(i)], i < N ? order[size_t(i)] : -1) << "slot " << i;
  }
}

// Duplicated keys score bitwise equal wherever they sit in a tile, so they tie exactly and
// must come out in ascending index order. Random float keys, each of 300 distinct keys
// repeated at scattered positions, N = 1000 across 8 key tiles, topk 512 cuts through groups.
TEST(IndexerCuda, DuplicatedKeysTieToTheLowerIndex) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Case c{2, 1000, kIndexerHeads, kIndexerDim, 4, 512, 4 * 1000};
  Inputs in = uniform_inputs(c, 31);
  constexpr int64_t kDistinct = 300;
  std::vector<int64_t> base(size_t(c.N));
  std::mt19937_64 g(32);
  for (int64_t j = 0; j < c.N; ++j) {
    base[size_t(j)] = j < kDistinct ? j : std::uniform_int_distribution<int64_t>(0, kDistinct - 1)(g);
    std::copy_n(&in.k[size_t(base[size_t(j)] * c.dI)], c.dI, &in.k[size_t(j * c.dI)]);
  }
  const Result o = check_case(c, in, Select::within_tol);
  for (int64_t r = 0; r < c.T; ++r) {
    for (int64_t j = 0; j < c.N; ++j) {
      const float a = o.scores[size_t(r * c.N + j)], b = o.scores[size_t(r * c.N + base[size_t(j)])];
      ASSERT_EQ(std::memcmp(&a, &b, sizeof(float)), 0) << "row " << r << ": key " << j << " duplicates "
                                                       << base[size_t(j)] << " but scores differently";
    }
    // Every duplicate group present in the selection appears in ascending index order.
    std::vector<int32_t> last(size_t(kDistinct), -1);
    for (int64_t i = 0; i < c.topk; ++i) {
      const int32_t j = o.idx[size_t(r * c.topk + i)];
      int32_t& prev = last[size_t(base[size_t(j)])];
      EXPECT_LT(prev, j) << "row " << r << " slot " << i << ": duplicate " << j << " after " << prev;
      prev = j;
    }
  }
}

// Integer inputs, q, k in [-3, 3] and w in [-2, 3]: every product and partial sum is an integer
// below 2^24 (|dot| <= 128 * 9, |score| <= 64 * 3 * 1152), so FP32 is exact: the scores equal
// the oracle's bitwise and the many equal scores are exact ties, at the real head shape and
// several key tiles; rows see 4998..4999 keys; keys 100..199 also duplicate keys 0..99.
TEST(IndexerCuda, IntegerInputsExactScoresAndIndices) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Case c{3, 5000, kIndexerHeads, kIndexerDim, kCsaRatio, 512, 4 * 5000 - 6};
  std::mt19937_64 g(55);
  auto ints = [&](size_t n, int lo, int hi) {
    std::vector<double> v(n);
    for (double& x : v) x = double(std::uniform_int_distribution<int>(lo, hi)(g));
    return v;
  };
  Inputs in{ints(size_t(c.T * c.HI * c.dI), -3, 3), ints(size_t(c.N * c.dI), -3, 3), ints(size_t(c.T * c.HI), -2, 3)};
  std::copy_n(in.k.begin(), 100 * c.dI, in.k.begin() + 100 * c.dI);
  check_case(c, in, Select::exact_scores);
}

TEST(IndexerCuda, TopkLargerThanVisiblePadsWithMinusOne) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // pos0 = 9: rows 0, 1 (p = 9, 10) see {0, 1}; rows 2, 3 (p = 11, 12) see {0, 1, 2}.
  const Case c{4, 10, 2, 16, 4, 8, 9};
  const Result o = check_case(c, uniform_inputs(c, 77), Select::within_tol);
  const int64_t expect_k[] = {2, 2, 3, 3};
  for (int64_t r = 0; r < c.T; ++r)
    for (int64_t i = 0; i < c.topk; ++i)
      EXPECT_EQ(o.idx[size_t(r * c.topk + i)] >= 0, i < expect_k[r]) << "row " << r << " slot " << i;
  // Decode early in a long sequence: 300 of 65536 keys visible, topk 512.
  const Case d{1, 65536, kIndexerHeads, kIndexerDim, kCsaRatio, 512, 4 * 300 + 2};
  const Result od = check_case(d, uniform_inputs(d, 78), Select::within_tol);
  EXPECT_EQ(std::count(od.idx.begin(), od.idx.end(), -1), 512 - 300);
}

// Rows 0..m-2 at pos0 = 0 complete no block: all -1 and all scores -inf; no keys at all.
TEST(IndexerCuda, NoVisibleEntryAndNoKeys) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t m : {int64_t(4), int64_t(128)}) {
    const Case c{m - 1, 300, 2, 16, m, 3, 0};
    const Result o = check_case(c, uniform_inputs(c, 81), Select::within_tol);
    for (int32_t j : o.idx) ASSERT_EQ(j, -1);
    for (float s : o.scores) ASSERT_EQ(s, kNegInf);
  }
  const Case c{3, 0, 2, 16, 4, 4, 100};
  const Result o = check_case(c, uniform_inputs(c, 84), Select::within_tol);
  for (int32_t j : o.idx) EXPECT_EQ(j, -1);
}

// Strided views (q, k, scores and indices rows with ld > cols), prefill rows.
TEST(IndexerCuda, StridedViews) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Case c{5, 300, 64, 128, 4, 40, 4 * 280};
  check_case(c, uniform_inputs(c, 89), Select::within_tol, Strides{64 * 128 + 7, 128 + 3, 300 + 5, 40 + 9});
}

// ---------------------------------------------------------------------------------------
// Real shapes (HI = 64, dI = 128).

// Prefill: 96 rows whose visible counts (496..520) cross topk = 512, N = 600.
TEST(IndexerCuda, PrefillRowsCrossTopk) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Case c{96, 600, kIndexerHeads, kIndexerDim, kCsaRatio, 512, 4 * 512 - 64};
  check_case(c, uniform_inputs(c, 91), Select::within_tol);
}

// Decode, T = 1, N = 65536 keys, Flash (topk 512) and Pro (topk 1024), random scores; and a
// row mid-sequence (pos0 > 0) that sees 40000 of them.
TEST(IndexerCuda, DecodeFlashAndProShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t topk : {int64_t(512), int64_t(1024)}) {
    const Case c{1, 65536, kIndexerHeads, kIndexerDim, kCsaRatio, topk, 4 * 65536 - 1};
    check_case(c, uniform_inputs(c, 101), Select::within_tol);
  }
  const Case c{1, 65536, kIndexerHeads, kIndexerDim, kCsaRatio, 1024, 4 * 40000 + 1};
  check_case(c, uniform_inputs(c, 102), Select::within_tol);
}

// Decode with scores built to be separated: k_j = c_j b, c_j = (1 + kGap)^pi(j) (pi a random
// permutation of the keys), b and w positive, so score_j = c_j S exactly in real arithmetic and
// consecutive scores differ by a factor 1 + kGap. kGap = 2e-4 is about 5x the relative 2 tol
// (~4e-5 with mag / score <= 2 here); the test checks the gaps it relies on, then requires
// exactly the oracle's indices, at the Flash and Pro top-k.
TEST(IndexerCuda, DecodeSeparatedScoresSelectExactly) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr double kGap = 2e-4;
  for (int64_t topk : {int64_t(512), int64_t(1024)}) {
    const Case c{1, 65536, kIndexerHeads, kIndexerDim, kCsaRatio, topk, 4 * 65536 - 1};
    SCOPED_TRACE(describe(c));
    Inputs in{test::float_exact(test::uniform(size_t(c.HI * c.dI), 111, -0.5, 1.5)),
              std::vector<double>(size_t(c.N * c.dI)),
              test::float_exact(test::uniform(size_t(c.HI), 112, 0.5, 1.5))};
    const std::vector<double> b = test::uniform(size_t(c.dI), 113, 0.5, 1.5);
    std::vector<int64_t> pi(size_t(c.N));
    std::iota(pi.begin(), pi.end(), 0);
    std::shuffle(pi.begin(), pi.end(), std::mt19937_64(114));
    for (int64_t j = 0; j < c.N; ++j)
      for (int64_t i = 0; i < c.dI; ++i)
        in.k[size_t(j * c.dI + i)] = double(float(std::pow(1 + kGap, double(pi[size_t(j)])) * b[size_t(i)]));
    // Precondition: among the top k + 1 oracle scores, consecutive gaps exceed 2 tol.
    std::vector<double> os, mag;
    oracle_scores(c, in.q, in.k, in.w, os, mag);
    std::vector<double> sorted(os);
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double tol = score_tol<float>(c, mag[0]);
    for (int64_t i = 0; i < topk; ++i)
      ASSERT_GT(sorted[size_t(i)] - sorted[size_t(i + 1)], 2 * tol) << "inputs not separated at rank " << i;
    check_case(c, in, Select::exact);
  }
}

// 1M-token context (N = 2^18 compressed keys), Pro top-k: opt-in (DSV4_LONG_TESTS=1), the
// fp64 oracle takes seconds.
TEST(IndexerCuda, DecodeOneMillionTokensLong) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const char* env = std::getenv("DSV4_LONG_TESTS");
  if (!env || std::string(env) != "1") GTEST_SKIP() << "set DSV4_LONG_TESTS=1 to run";
  const Case c{1, int64_t(1) << 18, kIndexerHeads, kIndexerDim, kCsaRatio, 1024, 4 * (int64_t(1) << 18) - 1};
  check_case(c, uniform_inputs(c, 121), Select::within_tol);
}

// ---------------------------------------------------------------------------------------
// Host-side validation: before any device work, so these run without a device.

// A well-formed parameter set over never-dereferenced host memory.
struct HostParams {
  std::vector<float> buf = std::vector<float>(64, 0.f);
  std::vector<int32_t> ibuf = std::vector<int32_t>(64, 0);
  IndexerParams<float> p;
  HostParams() {
    p.q = view2<const float>(buf.data(), 2, 2 * 4);  // T = 2, HI = 2, dI = 4
    p.k = view2<const float>(buf.data(), 5, 4);      // N = 5
    p.w = view2<const float>(buf.data(), 2, 2);
    p.heads = 2;
    p.ratio = 4;
    p.topk = 3;
    p.scores = view2(buf.data(), 2, 5);
    p.indices = view2(ibuf.data(), 2, 3);
  }
};

// Each bad parameter throws InputError with the reference's message (or, for the GPU-only
// limit, a message naming it).
TEST(IndexerCuda, RejectsBadParamsBeforeLaunch) {
  auto expect_same_error = [](const IndexerParams<float>& p, const char* what) {
    SCOPED_TRACE(what);
    std::string ref_msg, gpu_msg;
    try {
      ref::indexer<float>(p);
    } catch (const InputError& e) {
      ref_msg = e.what();
    }
    try {
      cuda::indexer(p);
    } catch (const InputError& e) {
      gpu_msg = e.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
  };
  {
    HostParams h;
    h.p.ratio = 0;
    expect_same_error(h.p, "ratio 0");
  }
  {
    HostParams h;
    h.p.q.cols = 7;
    expect_same_error(h.p, "q columns");
  }
  {
    HostParams h;
    h.p.heads = 0;
    expect_same_error(h.p, "no heads");
  }
  {
    HostParams h;
    h.p.w.cols = 3;
    expect_same_error(h.p, "w shape");
  }
  {
    HostParams h;
    h.p.topk = 0;
    h.p.indices.cols = 0;
    expect_same_error(h.p, "topk 0");
  }
  {
    HostParams h;
    h.p.indices.rows = 1;
    expect_same_error(h.p, "indices shape");
  }
  {
    HostParams h;
    h.p.scores.cols = 4;
    expect_same_error(h.p, "scores shape");
  }
  {
    HostParams h;
    h.p.topk = cuda::kIndexerMaxTopk + 1;
    h.p.indices.cols = h.p.topk;
    try {
      cuda::indexer(h.p);
      ADD_FAILURE() << "topk above the GPU limit accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("topk"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace dsv4
