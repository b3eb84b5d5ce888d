// RoPE with YaRN tables (reference/rope.h) against a table and rotation recomputed here
// from spec §2.7 (V4), §1.2 and §2.10 (V3 / V3.2):
//   f_i = theta^(-2i / 64), i = 0..31
//   YaRN: low  = floor(64 ln(orig / (beta_fast 2 pi)) / (2 ln theta)),
//         high = ceil (64 ln(orig / (beta_slow 2 pi)) / (2 ln theta)), clamped to [0, 63];
//         s_i = 1 - clamp((i - low) / (high - low), 0, 1);  f_i <- f_i s_i + f_i/factor (1 - s_i)
//   V4 compressed: theta 160000, factor 16, orig 65536, beta 32/1 -> [15, 25], no mscale.
//   V4 window-only: theta 10000, no YaRN.  V3: theta 1e4, factor 40, orig 4096.
//   Rotation at position p, angle a_i = p f_i: interleaved pairs (2i, 2i+1) on the LAST 64
//   dims of each head (V4, V3); half_split pairs (i, i+32) on the FIRST 64 (V3.2 indexer).
//   (Range, table and rotations: the shared naive:: ones of tests/support/naive.h.)
//
// Tolerances:
//   - tables: the op and the oracle evaluate the same closed form in double; a few ulp:
//     kTableRtol = 8 eps(double).
//   - a rotated pair: each output is a 2-term sum x0 cos - x1 sin with cos/sin rounded to T:
//     reduction_tol<T>(2, |pair|); plus the angle: an f_i that differs by up to
//     kTableRtol relative turns into an angle error p f_i kTableRtol, i.e. |pair| p kTableRtol
//     (f_i <= 1).
//   - dot products of rotated vectors: reduction_tol<T>(d, sum |q_c k_c|) plus the angle term
//     for both vectors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/rope.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace {

using namespace dsv4;
namespace naive = dsv4::test::naive;
using dsv4::test::reduction_tol;

constexpr double kTableRtol = 8 * std::numeric_limits<double>::epsilon();
constexpr int64_t kDr = naive::kRopeDim;  // rope dims in every table of the spec

struct Table {
  std::vector<double> f;
  int64_t low = -1, high = -1;
};

Table spec_table(double theta, double factor, double orig, double beta_fast = 32.0,
                 double beta_slow = 1.0) {
  Table t;
  if (factor > 1) naive::yarn_range(theta, orig, beta_fast, beta_slow, &t.low, &t.high);
  t.f = naive::rope_freqs(theta, factor, t.low, t.high);
  return t;
}

void expect_table(const std::vector<double>& got, const Table& want) {
  ASSERT_EQ(got.size(), want.f.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want.f[i], kTableRtol * want.f[i]) << "i = " << i;
}

// Naive rotation of x [R, heads * hd] in double; row r at position pos0 + r * step.
std::vector<double> rotate_oracle(const std::vector<double>& x, int64_t R, int64_t heads,
                                  int64_t hd, const std::vector<double>& f, int64_t pos0,
                                  int64_t step, bool inverse, bool half_split, bool first) {
  std::vector<double> y = x;
  const int64_t start = first ? 0 : hd - kDr;
  for (int64_t r = 0; r < R; ++r) {
    const double p = double(pos0 + r * step);
    for (int64_t h = 0; h < heads; ++h) {
      double* v = &y[size_t(r * heads * hd + h * hd + start)];
      if (half_split)
        naive::rope_half_split(v, p, f, inverse ? -1.0 : 1.0);
      else
        naive::rope_interleaved(v, p, f, inverse ? -1.0 : 1.0);
    }
  }
  return y;
}

template <class T>
void run_rope(std::vector<T>& x, int64_t R, int64_t heads, int64_t hd, const RopeConfig& cfg,
              int64_t pos0, int64_t step, bool inverse) {
  RopeParams<T> p;
  p.x = view2(x.data(), R, heads * hd);
  p.heads = heads;
  p.head_dim = hd;
  p.pos0 = pos0;
  p.pos_step = step;
  p.inverse = inverse;
  p.cfg = cfg;
  ref::rope(p);
}

// Pairwise comparison: element c of the rotated part (or any other) within
// tol_pair(|pair|) where the pair is the one element c belongs to.
template <class T>
::testing::AssertionResult pairs_close(const std::vector<T>& got, const std::vector<double>& want,
                                       const std::vector<double>& ref_in, int64_t pmax) {
  // |pair| is bounded by the largest |x| * sqrt(2); use the per-vector max for simplicity.
  double xmax = 0;
  for (double v : ref_in) xmax = std::max(xmax, std::fabs(v));
  const double mag = std::sqrt(2.0) * xmax;
  const double atol = reduction_tol<T>(2, mag) + mag * double(pmax) * kTableRtol;
  return test::all_close(got.data(), want.data(), got.size(), atol);
}

// ---------------------------------------------------------------------------------------
// Tables.

TEST(Rope, V4CompressedTable) {
  const RopeConfig c = rope_v4_compressed();
  EXPECT_EQ(c.rope_dim, 64);
  EXPECT_EQ(c.theta, 160000.0);
  EXPECT_EQ(c.yarn_factor, 16.0);
  EXPECT_EQ(c.yarn_orig, 65536);
  EXPECT_EQ(c.beta_fast, 32.0);
  EXPECT_EQ(c.beta_slow, 1.0);
  EXPECT_EQ(c.attn_factor, 1.0);  // no magnitude (mscale) factor
  EXPECT_EQ(c.layout, RopeLayout::interleaved);
  EXPECT_EQ(c.placement, RopePlacement::last);
  const Table want = spec_table(160000.0, 16.0, 65536.0);
  EXPECT_EQ(want.low, 15);  // the spec's stated range
  EXPECT_EQ(want.high, 25);
  int64_t low = -1, high = -1;
  yarn_correction_range(c, &low, &high);
  EXPECT_EQ(low, 15);
  EXPECT_EQ(high, 25);
  const auto f = rope_inv_freq(c);
  expect_table(f, want);
  // Spot checks of the ramp: i <= 15 unscaled, i >= 25 divided by 16.
  EXPECT_NEAR(f[3], std::pow(160000.0, -6.0 / 64), kTableRtol);
  EXPECT_NEAR(f[30], std::pow(160000.0, -60.0 / 64) / 16, kTableRtol * f[30]);
  EXPECT_NEAR(f[20], std::pow(160000.0, -40.0 / 64) * (0.5 + 0.5 / 16), kTableRtol * f[20]);
}

TEST(Rope, V4WindowOnlyTable) {
  const RopeConfig c = rope_v4_swa();
  EXPECT_EQ(c.theta, 10000.0);
  EXPECT_LE(c.yarn_factor, 1.0);
  EXPECT_EQ(c.attn_factor, 1.0);
  EXPECT_EQ(c.layout, RopeLayout::interleaved);
  EXPECT_EQ(c.placement, RopePlacement::last);
  expect_table(rope_inv_freq(c), spec_table(10000.0, 1.0, 0.0));
}

TEST(Rope, V3AndV32IndexerTables) {
  const RopeConfig c = rope_v3();
  EXPECT_EQ(c.theta, 10000.0);
  EXPECT_EQ(c.yarn_factor, 40.0);
  EXPECT_EQ(c.yarn_orig, 4096);
  EXPECT_EQ(c.layout, RopeLayout::interleaved);
  EXPECT_EQ(c.placement, RopePlacement::last);
  const Table want = spec_table(10000.0, 40.0, 4096.0);
  int64_t low = -1, high = -1;
  yarn_correction_range(c, &low, &high);
  EXPECT_EQ(low, want.low);
  EXPECT_EQ(high, want.high);
  EXPECT_EQ(want.low, 10);  // 64 ln(4096 / 64 pi) / (2 ln 1e4) = 10.47
  EXPECT_EQ(want.high, 23);  // 64 ln(4096 / 2 pi) / (2 ln 1e4) = 22.5
  expect_table(rope_inv_freq(c), want);
  const RopeConfig ci = rope_v32_indexer();
  EXPECT_EQ(ci.layout, RopeLayout::half_split);
  EXPECT_EQ(ci.placement, RopePlacement::first);
  expect_table(rope_inv_freq(ci), want);
}

TEST(Rope, V3SoftmaxScale) {
  const double mscale = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(v3_softmax_scale(), mscale * mscale / std::sqrt(192.0),
              4 * std::numeric_limits<double>::epsilon());
  EXPECT_NEAR(mscale, 1.369, 1e-3);  // the spec's ~1.369
}

// ---------------------------------------------------------------------------------------
// Rotation.

template <class T>
class RopeT : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RopeT, Types);

struct Case {
  const char* name;
  RopeConfig cfg;
  Table table;
  int64_t R, heads, hd, pos0, step;
};

std::vector<Case> cases() {
  return {
      {"v4-compressed, [5, 3, 128], pos0 7, step 4 (compressed entries)", rope_v4_compressed(),
       spec_table(160000.0, 16.0, 65536.0), 5, 3, 128, 7, 4},
      {"v4-compressed, [3, 2, 512], pos0 1000000 - 3", rope_v4_compressed(),
       spec_table(160000.0, 16.0, 65536.0), 3, 2, 512, 1000000 - 3, 1},
      {"v4-swa, [6, 4, 64], pos0 0", rope_v4_swa(), spec_table(10000.0, 1.0, 0.0), 6, 4, 64, 0, 1},
      {"v3, [4, 2, 192], pos0 123, step 1", rope_v3(), spec_table(10000.0, 40.0, 4096.0), 4, 2,
       192, 123, 1},
  };
}

TYPED_TEST(RopeT, RotatesLast64InterleavedAndLeavesTheRest) {
  using T = TypeParam;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const size_t n = size_t(c.R * c.heads * c.hd);
    const std::vector<T> x = test::normal<T>(n, 100 + n);
    const std::vector<double> xd(x.begin(), x.end());
    const int64_t pmax = c.pos0 + (c.R - 1) * c.step;
    for (bool inverse : {false, true}) {
      std::vector<T> y = x;
      run_rope(y, c.R, c.heads, c.hd, c.cfg, c.pos0, c.step, inverse);
      const auto want = rotate_oracle(xd, c.R, c.heads, c.hd, c.table.f, c.pos0, c.step, inverse,
                                      false, false);
      EXPECT_TRUE(pairs_close(y, want, xd, pmax)) << "inverse " << inverse;
      // Dims outside the last 64 of each head: bit-identical.
      for (size_t k = 0; k < n; ++k) {
        if (int64_t(k) % c.hd < c.hd - kDr) {
          ASSERT_EQ(y[k], x[k]) << "element " << k;
        }
      }
    }
  }
}

TYPED_TEST(RopeT, InverseUndoesRope) {
  using T = TypeParam;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const size_t n = size_t(c.R * c.heads * c.hd);
    const std::vector<T> x = test::normal<T>(n, 200 + n);
    std::vector<T> y = x;
    run_rope(y, c.R, c.heads, c.hd, c.cfg, c.pos0, c.step, false);
    run_rope(y, c.R, c.heads, c.hd, c.cfg, c.pos0, c.step, true);
    double xmax = 0;
    for (T v : x) xmax = std::max(xmax, std::fabs(double(v)));
    // Two rotations by exactly opposite angles: 2 x (2-term sum) per element.
    EXPECT_TRUE(test::all_close(y, x, reduction_tol<T>(4, std::sqrt(2.0) * xmax)));
  }
}

TYPED_TEST(RopeT, PreservesPairNorms) {
  using T = TypeParam;
  const Case c = cases()[0];
  const size_t n = size_t(c.R * c.heads * c.hd);
  const std::vector<T> x = test::normal<T>(n, 300);
  std::vector<T> y = x;
  run_rope(y, c.R, c.heads, c.hd, c.cfg, c.pos0, c.step, false);
  int moved = 0;
  for (int64_t r = 0; r < c.R; ++r)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < kDr / 2; ++i) {
        const size_t k = size_t(r * c.heads * c.hd + h * c.hd + c.hd - kDr + 2 * i);
        const double n0 = std::hypot(double(x[k]), double(x[k + 1]));
        const double n1 = std::hypot(double(y[k]), double(y[k + 1]));
        EXPECT_NEAR(n1, n0, reduction_tol<T>(2, n0)) << "row " << r << " head " << h << " pair " << i;
        moved += std::fabs(double(y[k]) - double(x[k])) > 1e-3 * n0 ? 1 : 0;
      }
  EXPECT_GT(moved, 0);
}

TYPED_TEST(RopeT, DotProductDependsOnlyOnPositionDifference) {
  // q at position p + delta, k at position p: q.k is the same for every p (relative
  // positions), over the whole head (the unrotated dims add the same constant).
  using T = TypeParam;
  const int64_t hd = 128;
  for (const RopeConfig& cfg : {rope_v4_compressed(), rope_v4_swa()}) {
    const std::vector<T> q0 = test::normal<T>(hd, 401), k0 = test::normal<T>(hd, 402);
    double qk_abs = 0;
    for (int64_t c = 0; c < hd; ++c) qk_abs += std::fabs(double(q0[c]) * double(k0[c]));
    const int64_t bases[] = {0, 1, 37, 4096, 65536, 1000000};
    for (int64_t delta : {0, 1, 3, 17, 128, 5000}) {
      double first = 0;
      for (int64_t b : bases) {
        std::vector<T> q = q0, k = k0;
        run_rope(q, 1, 1, hd, cfg, b + delta, 1, false);
        run_rope(k, 1, 1, hd, cfg, b, 1, false);
        double dot = 0;
        for (int64_t c = 0; c < hd; ++c) dot += double(q[c]) * double(k[c]);
        if (b == 0) {
          first = dot;
          continue;
        }
        // Both dots carry the rounding of T (rotation, 2 terms) over hd products, plus the
        // angle rounding of positions up to b + delta in double for both vectors.
        const double tol = 2 * (reduction_tol<T>(2 * hd, qk_abs) +
                                2 * qk_abs * double(b + delta) * kTableRtol);
        EXPECT_NEAR(dot, first, tol) << "delta " << delta << " base " << b;
      }
    }
  }
}

TYPED_TEST(RopeT, V32IndexerHalfSplitFirst64) {
  using T = TypeParam;
  const int64_t R = 5, heads = 2, hd = 128, pos0 = 40, step = 1;
  const size_t n = size_t(R * heads * hd);
  const std::vector<T> x = test::normal<T>(n, 500);
  const std::vector<double> xd(x.begin(), x.end());
  const Table t = spec_table(10000.0, 40.0, 4096.0);
  for (bool inverse : {false, true}) {
    std::vector<T> y = x;
    run_rope(y, R, heads, hd, rope_v32_indexer(), pos0, step, inverse);
    const auto want = rotate_oracle(xd, R, heads, hd, t.f, pos0, step, inverse, true, true);
    EXPECT_TRUE(pairs_close(y, want, xd, pos0 + R - 1)) << "inverse " << inverse;
    for (size_t k = 0; k < n; ++k) {
      if (int64_t(k) % hd >= kDr) {
        ASSERT_EQ(y[k], x[k]) << "element " << k;
      }
    }
    // The same table interleaved would be a different answer: the layout is exercised.
    const auto inter = rotate_oracle(xd, R, heads, hd, t.f, pos0, step, inverse, false, true);
    EXPECT_FALSE(pairs_close(y, inter, xd, pos0 + R - 1));
  }
}

TYPED_TEST(RopeT, BadShapesThrow) {
  using T = TypeParam;
  std::vector<T> x(4 * 96, T(1));
  EXPECT_THROW(run_rope(x, 4, 2, 48, rope_v4_swa(), 0, 1, false), InputError);  // 48 < 64
  RopeParams<T> p;
  p.x = view2(x.data(), 4, 96);
  p.heads = 5;  // 96 is not 5 heads
  p.cfg = rope_v4_swa();
  EXPECT_THROW(ref::rope(p), InputError);
}

}  // namespace
