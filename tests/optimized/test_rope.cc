// dsv4::cuda::rope against a double-precision oracle written from the spec
// (docs/v4-architecture.md §2.7, §1.2, §2.10; tests/support/naive.h: its own frequency tables
// and rotations) and against its CPU twin ref::rope<float>: the V4 tables (window-only θ 10000;
// compressed θ 160000 with YaRN ×16, whose correction range [15, 25] the spec states), the
// inverse rotation, far positions, pos_step = m of compressed entries, the real head layouts
// of V4-Flash and V4-Pro, and the V3.2 indexer's half_split on the first 64 dims. Label gpu;
// the host-side validation test runs everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/rope.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/rope.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::rerun_bitwise;

constexpr int64_t kFlashHeads = 64, kProHeads = 128;  // v4-architecture.md: query heads H
constexpr int64_t kCsaRatio = 4, kHcaRatio = 128;     // m: compressed entry positions step by m
constexpr double kXMax = 2.0;                          // inputs uniform in [-2, 2)

enum class Table { swa, compressed, v32_indexer };

RopeConfig config_of(Table t) {
  switch (t) {
    case Table::swa: return rope_v4_swa();
    case Table::compressed: return rope_v4_compressed();
    case Table::v32_indexer: return rope_v32_indexer();
  }
  return {};
}
// The oracle's table, from the spec (naive.h), not from reference/rope.h.
const std::vector<double>& oracle_freqs(Table t) {
  switch (t) {
    case Table::swa: return test::naive::v4_window_freqs();
    case Table::compressed: return test::naive::v4_compressed_freqs();
    case Table::v32_indexer: return test::naive::v3_freqs();
  }
  return test::naive::v4_window_freqs();
}

struct Case {
  Table table;
  int64_t rows, heads, head_dim, ld;
  int64_t pos0, pos_step;
  bool inverse;
  uint64_t seed;
};

// Oracle: every head of row r rotated at position pos0 + r * pos_step, in double.
std::vector<double> oracle(const Case& k, const std::vector<float>& x) {
  std::vector<double> y(x.begin(), x.end());
  const int64_t cols = k.heads * k.head_dim;
  const double sign = k.inverse ? -1.0 : 1.0;
  for (int64_t r = 0; r < k.rows; ++r)
    for (int64_t h = 0; h < k.heads; ++h) {
      double* v = &y[size_t(r * cols + h * k.head_dim)];
      const double pos = double(k.pos0 + r * k.pos_step);
      if (k.table == Table::v32_indexer)
        test::naive::rope_half_split(v, pos, oracle_freqs(k.table), sign);
      else
        test::naive::rope_interleaved(v + k.head_dim - kRopeDim, pos, oracle_freqs(k.table), sign);
    }
  return y;
}

// Tolerance, absolute: an output is x0 c - x1 s (or x0 s + x1 c) with c, s rounded to float
// (u relative each), two products and a sum (u each): a few u times |x0| + |x1| <= 2 kXMax;
// kSafety covers the count. The angle's own error (double, |a| < 2^21) is below 2^-30 rad.
double rope_atol() { return test::kSafety * test::unit_roundoff<float>() * 2.0 * kXMax; }
constexpr double kTwoImpls = 2.0;

void check(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "table " << int(k.table) << " rows " << k.rows << " heads " << k.heads
                                    << " head_dim " << k.head_dim << " ld " << k.ld << " pos0 " << k.pos0
                                    << " step " << k.pos_step << (k.inverse ? " inverse" : ""));
  const int64_t cols = k.heads * k.head_dim;
  const std::vector<float> x = test::uniform<float>(size_t(k.rows * cols), k.seed, -kXMax, kXMax);
  const Guarded g{k.rows, cols, k.ld};
  cuda::DeviceBuffer<float> dx(g.image(x));
  RopeParams<float> p{g.view(dx.data()), k.heads, k.head_dim, k.pos0, k.pos_step, k.inverse, config_of(k.table)};
  launch_and_sync([&] { cuda::rope(p); });

  const std::vector<float> img = dx.download();
  EXPECT_TRUE(g.canaries_intact(img));
  const std::vector<float> y = g.extract(img);

  // The dims outside the rotated range are untouched, bit for bit.
  const int64_t start = k.table == Table::v32_indexer ? 0 : k.head_dim - kRopeDim;
  bool untouched = true;
  for (int64_t r = 0; r < k.rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t in_head = c % k.head_dim;
      const size_t i = size_t(r * cols + c);
      if ((in_head < start || in_head >= start + kRopeDim) && std::memcmp(&y[i], &x[i], sizeof(float)) != 0)
        untouched = false;
    }
  EXPECT_TRUE(untouched) << "a dimension outside the rotated range changed";

  EXPECT_TRUE(test::all_close(y, oracle(k, x), rope_atol(), 0.0)) << "against the fp64 oracle";

  std::vector<float> y_ref = x;
  RopeParams<float> pr{view2(y_ref.data(), k.rows, cols), k.heads, k.head_dim, k.pos0, k.pos_step, k.inverse,
                       config_of(k.table)};
  ref::rope(pr);
  EXPECT_TRUE(test::all_close(y, y_ref, kTwoImpls * rope_atol(), 0.0)) << "against ref::rope<float>";

  EXPECT_TRUE(rerun_bitwise(dx, g.image(x), img, [&] { cuda::rope(p); })) << "rerun differs";
}

// q of a window-only layer (§2.1, §2.7): V4-Flash [T, 64 * 512], V4-Pro [T, 128 * 512].
TEST(RopeCuda, QueriesFlashAndPro) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({Table::swa, 3, kFlashHeads, kHeadDim, kFlashHeads * kHeadDim, 5, 1, false, 1});
  check({Table::swa, 2, kProHeads, kHeadDim, kProHeads * kHeadDim, 1000, 1, false, 2});
}

// The compressed table (YaRN) on KV entries [T, 512] at positions far past the original
// context (up to 1M tokens), CSA and HCA entry steps, forward and inverse (§2.6 output path).
TEST(RopeCuda, CompressedYarnFarPositions) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({Table::compressed, 40, 1, kHeadDim, kHeadDim, 1 << 20, kCsaRatio, false, 3});
  check({Table::compressed, 7, 1, kHeadDim, kHeadDim + 8, 65536 * 4, kHcaRatio, false, 4});
  check({Table::compressed, 5, kFlashHeads, kHeadDim, kFlashHeads * kHeadDim, 777777, 1, true, 5});
}

// The inverse rotation undoes the forward one (to rounding).
TEST(RopeCuda, InverseUndoesForward) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t rows = 6, heads = 4, cols = heads * kHeadDim;
  const std::vector<float> x = test::uniform<float>(size_t(rows * cols), 6, -kXMax, kXMax);
  cuda::DeviceBuffer<float> dx(x);
  RopeParams<float> p{view2(dx.data(), rows, cols), heads, kHeadDim, 123456, kCsaRatio, false, rope_v4_compressed()};
  launch_and_sync([&] { cuda::rope(p); });
  p.inverse = true;
  launch_and_sync([&] { cuda::rope(p); });
  EXPECT_TRUE(test::all_close(dx.download(), x, 2.0 * rope_atol(), 0.0));
}

// The V3.2 indexer (§2.10): half_split on the FIRST 64 of 128 dims, 64 heads, the V3 table.
TEST(RopeCuda, V32IndexerHalfSplitFirst) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({Table::v32_indexer, 4, kIndexerHeads, kIndexerDim, kIndexerHeads * kIndexerDim + 3, 9000, 1, false, 7});
}

// Edge shapes: rope_dim = head_dim (the whole head rotates), one head of 64 at position 0,
// 5 heads (pairs not a multiple of the warp), a single row.
TEST(RopeCuda, EdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({Table::swa, 3, 2, kRopeDim, 2 * kRopeDim + 1, 0, 1, false, 8});
  check({Table::swa, 1, 1, kRopeDim, kRopeDim, 0, 1, true, 9});
  check({Table::compressed, 9, 5, 96, 5 * 96, 31, 3, false, 10});
}

// Host-side validation, before any device work (the reference's messages, plus this twin's
// rope_dim limit): needs no device, so it runs everywhere.
TEST(RopeCuda, RejectsBadShapesBeforeLaunch) {
  float dummy = 0;
  RopeParams<float> p;
  p.x = view2(&dummy, 2, 100);
  p.heads = 3;  // 100 columns are not 3 heads
  EXPECT_THROW(cuda::rope(p), InputError);
  p.heads = 0;
  EXPECT_THROW(cuda::rope(p), InputError);
  p.heads = 2;
  p.head_dim = 40;  // 2 * 40 != 100
  EXPECT_THROW(cuda::rope(p), InputError);
  p.head_dim = 50;
  p.cfg.rope_dim = 64;  // > head_dim
  EXPECT_THROW(cuda::rope(p), InputError);
  p.cfg.rope_dim = 33;  // odd
  EXPECT_THROW(cuda::rope(p), InputError);
  p.cfg.rope_dim = 32;
  p.cfg.theta = 1.0;  // must be > 1
  EXPECT_THROW(cuda::rope(p), InputError);
  p.cfg = rope_v4_compressed();
  p.cfg.yarn_orig = 0;  // YaRN needs the original context
  p.cfg.rope_dim = 32;
  EXPECT_THROW(cuda::rope(p), InputError);
  // This twin's own limit: the table travels in the kernel parameters.
  p.x = view2(&dummy, 2, 2 * 2 * cuda::kRopeMaxDim);
  p.head_dim = 2 * cuda::kRopeMaxDim;
  p.cfg = rope_v4_swa();
  p.cfg.rope_dim = cuda::kRopeMaxDim + 2;
  EXPECT_THROW(cuda::rope(p), InputError);
}

}  // namespace
}  // namespace dsv4
