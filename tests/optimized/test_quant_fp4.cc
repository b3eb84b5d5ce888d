// dsv4::cuda::quant_fp4 (FP4 e2m1 round trip, UE8M0 block scales, RNE) BITWISE against its
// CPU twin ref::quant_fp4<float>, and exactly against the fp64 oracle of tests/support/naive.h
// (§2.3, §2.4, §7): grid values, RNE ties and their neighbours at several scales (down to the
// 6 * 2^-126 floor, where the grid is float subnormals), an amax just past a power-of-two
// boundary, all-zero blocks, inf and NaN (tests/optimized/quant_cases.h), wide magnitudes, the
// indexer's keys and queries, partial blocks, strides, in place. Label gpu; the host-side
// validation test runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "optimized/quant_fp4.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/quant_fp4.h"
#include "tests/optimized/quant_cases.h"

namespace dsv4 {
namespace {

namespace quant = test::quant;
using test::naive::Fmt;

const quant::QuantFormat& fp4() {
  static const quant::QuantFormat f{
      Fmt::fp4,
      [](View2<const float> x, View2<float> y, int64_t block, int64_t) { ref::quant_fp4<float>({x, y, block}); },
      [](View2<const float> x, View2<float> y, int64_t block, int64_t) { cuda::quant_fp4({x, y, block}); }};
  return f;
}

// Grid values, ties and their float neighbours at scales 2^0, 2^-126 (the floor's: subnormal
// results), 2^-60 and 2^125; then with amax one float above 6 2^e (scale 2^(e+1)).
TEST(QuantFp4Cuda, GridBoundariesAndTies) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kBlock = 32;  // the sweep of one scale: 30 values + amax
  const int exps[] = {0, -126, -60, 125};
  std::vector<float> x;
  for (int e : exps) {
    const std::vector<float> row = quant::boundary_row(Fmt::fp4, e, kBlock);
    x.insert(x.end(), row.begin(), row.end());
  }
  for (int e : exps) {
    if (e == 125) continue;  // 6 2^126 overflows float
    std::vector<float> row = quant::boundary_row(Fmt::fp4, e, kBlock);
    row[0] = std::nextafter(row[0], std::numeric_limits<float>::infinity());
    x.insert(x.end(), row.begin(), row.end());
  }
  const int64_t rows = int64_t(x.size()) / kBlock;
  quant::check_finite(fp4(), x, rows, kBlock, kBlock, kBlock, kBlock, kBlock);
  quant::check_finite(fp4(), x, rows / 7, 7 * kBlock, 7 * kBlock, 7 * kBlock, kBlock, 7 * kBlock);
}

TEST(QuantFp4Cuda, ZerosInfinitiesAndNaNs) {
  DSV4_SKIP_WITHOUT_DEVICE();
  quant::check_special_values(fp4());
}

// Random magnitudes 2^-130 .. 2^120 across rows (float subnormals included); partial blocks.
TEST(QuantFp4Cuda, WideRangesAndPartialBlocks) {
  DSV4_SKIP_WITHOUT_DEVICE();
  quant::check_finite(fp4(), quant::wide_rows(50, 300, 71), 50, 300, 303, 301, kFp4Block, 300);  // 300 = 9*32 + 12
  quant::check_finite(fp4(), quant::wide_rows(11, 7, 72), 11, 7, 7, 7, kFp4Block, 7);              // one partial block
  quant::check_finite(fp4(), quant::wide_rows(9, 1, 73), 9, 1, 1, 1, kFp4Block, 1);                // a single column
}

// The indexer (§2.3, §2.4): keys [T, 128] and queries [T * 64, 128] in blocks of 32; in place.
TEST(QuantFp4Cuda, IndexerKeysAndQueries) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t t = 6;
  const std::vector<float> k = test::normal<float>(size_t(t * kIndexerDim), 81);
  quant::check_finite(fp4(), k, t, kIndexerDim, kIndexerDim, kIndexerDim, kFp4Block, kIndexerDim);
  const int64_t rows = t * kIndexerHeads;
  const std::vector<float> q = quant::wide_rows(rows, kIndexerDim, 82);
  quant::check_finite(fp4(), q, rows, kIndexerDim, kIndexerDim + 4, kIndexerDim, kFp4Block, kIndexerDim);
  quant::check_in_place(fp4(), q, rows, kIndexerDim, kIndexerDim + 2, kFp4Block, kIndexerDim);
}

// Host-side validation with the reference's messages, before any device work: runs everywhere.
TEST(QuantFp4Cuda, RejectsBadArgumentsBeforeLaunch) {
  float dummy = 0;
  QuantFp4Params<float> p{view2<const float>(&dummy, 2, 64), view2(&dummy, 2, 64), 0};
  EXPECT_THROW(cuda::quant_fp4(p), InputError);  // block 0
  p.block = -32;
  EXPECT_THROW(cuda::quant_fp4(p), InputError);
  p.block = 32;
  p.y = view2(&dummy, 2, 63);
  EXPECT_THROW(cuda::quant_fp4(p), InputError);
  p.y = view2(&dummy, 3, 64);
  EXPECT_THROW(cuda::quant_fp4(p), InputError);
}

}  // namespace
}  // namespace dsv4
