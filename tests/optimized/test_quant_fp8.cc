// dsv4::cuda::quant_fp8 (FP8 e4m3fn round trip, UE8M0 block scales, RNE) BITWISE against its
// CPU twin ref::quant_fp8<float>, and exactly against the fp64 oracle of tests/support/naive.h
// (§2.2 step 3, §7, §9.4): grid values, RNE ties and their neighbours at several scales, an amax
// just past a power-of-two boundary, blocks under the 1e-4 amax floor, all-zero blocks, inf
// and NaN (tests/optimized/quant_cases.h), float subnormals to 2^120, the KV layout (dims 448 of
// 512, the RoPE dims copied), activations of V4-Flash and V4-Pro, partial blocks, strides, in
// place. Label gpu; the host-side validation test runs everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "optimized/quant_fp8.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/quant_fp8.h"
#include "tests/optimized/quant_cases.h"

namespace dsv4 {
namespace {

namespace quant = test::quant;
using test::naive::Fmt;

constexpr int64_t kFlashHidden = 4096, kProHidden = 7168;  // v4-architecture.md: hidden D
constexpr int64_t kActBlock = 128;                          // §9.4: activation blocks along K

const quant::QuantFormat& fp8() {
  static const quant::QuantFormat f{
      Fmt::fp8,
      [](View2<const float> x, View2<float> y, int64_t block, int64_t dims) {
        ref::quant_fp8<float>({x, y, block, dims});
      },
      [](View2<const float> x, View2<float> y, int64_t block, int64_t dims) {
        cuda::quant_fp8({x, y, block, dims});
      }};
  return f;
}

// Grid values, ties and their float neighbours at scales 2^0, 2^-22 (the smallest the 1e-4
// floor allows), 2^-10 and 2^100; then the same with amax one float above 448 2^e (scale 2^(e+1)).
TEST(QuantFp8Cuda, GridBoundariesAndTies) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kBlock = 512;  // holds the whole sweep of one scale
  const int exps[] = {0, -22, -10, 100};
  std::vector<float> x;
  for (int e : exps) {
    const std::vector<float> row = quant::boundary_row(Fmt::fp8, e, kBlock);
    x.insert(x.end(), row.begin(), row.end());
  }
  for (int e : exps) {
    std::vector<float> row = quant::boundary_row(Fmt::fp8, e, kBlock);
    row[0] = std::nextafter(row[0], std::numeric_limits<float>::infinity());
    x.insert(x.end(), row.begin(), row.end());
  }
  const int64_t rows = int64_t(x.size()) / kBlock;
  quant::check_finite(fp8(), x, rows, kBlock, kBlock, kBlock, kBlock, 0);
  quant::check_finite(fp8(), x, rows, kBlock, kBlock, kBlock, 64, 0);  // 8 blocks per row
}

// Blocks whose amax is under the 1e-4 floor, down to float subnormals.
TEST(QuantFp8Cuda, AmaxUnderTheFloor) {
  DSV4_SKIP_WITHOUT_DEVICE();
  std::vector<float> x = test::uniform<float>(4 * 64, 31, -1e-5, 1e-5);
  for (int64_t c = 0; c < 64; ++c) x[size_t(3 * 64 + c)] = float(std::ldexp(double(x[size_t(c)]), -120));
  quant::check_finite(fp8(), x, 4, 64, 64, 64, 64, 0);
}

TEST(QuantFp8Cuda, ZerosInfinitiesAndNaNs) {
  DSV4_SKIP_WITHOUT_DEVICE();
  quant::check_special_values(fp8());
}

// Random magnitudes 2^-130 .. 2^120 across rows; partial trailing blocks; strides.
TEST(QuantFp8Cuda, WideRangesAndPartialBlocks) {
  DSV4_SKIP_WITHOUT_DEVICE();
  quant::check_finite(fp8(), quant::wide_rows(50, 300, 41), 50, 300, 301, 307, 64, 0);   // 300 = 4*64 + 44
  quant::check_finite(fp8(), quant::wide_rows(20, 100, 42), 20, 100, 100, 100, 128, 0);  // one partial block
  quant::check_finite(fp8(), quant::wide_rows(9, 1, 43), 9, 1, 1, 1, 64, 0);             // a single column
}

// The KV layout (§2.2 step 3): entries [T, 512], dims 0:448 in blocks of 64, the 64 RoPE dims
// copied; out of place and in place.
TEST(QuantFp8Cuda, KvLayoutCopiesRopeDims) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t rows = 33;
  const std::vector<float> x = quant::wide_rows(rows, kHeadDim, 51);
  quant::check_finite(fp8(), x, rows, kHeadDim, kHeadDim + 5, kHeadDim + 3, kFp8KvBlock, kNopeDim);
  quant::check_in_place(fp8(), x, rows, kHeadDim, kHeadDim + 7, kFp8KvBlock, kNopeDim);
}

// Activations (§9.4): [T, 4096] (Flash) and [T, 7168] (Pro) in blocks of 128; in place too.
TEST(QuantFp8Cuda, ActivationsFlashAndPro) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const std::vector<float> a = test::normal<float>(8 * kFlashHidden, 61);
  quant::check_finite(fp8(), a, 8, kFlashHidden, kFlashHidden, kFlashHidden, kActBlock, 0);
  const std::vector<float> b = test::normal<float>(5 * kProHidden, 62, 30.0);
  quant::check_finite(fp8(), b, 5, kProHidden, kProHidden, kProHidden + 64, kActBlock, 0);
  quant::check_in_place(fp8(), b, 5, kProHidden, kProHidden + 1, kActBlock, 0);
}

// Host-side validation with the reference's messages, before any device work: runs everywhere.
TEST(QuantFp8Cuda, RejectsBadArgumentsBeforeLaunch) {
  float dummy = 0;
  QuantFp8Params<float> p{view2<const float>(&dummy, 2, 64), view2(&dummy, 2, 64), 0, 0};
  EXPECT_THROW(cuda::quant_fp8(p), InputError);  // block 0
  p.block = -64;
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
  p.block = 64;
  p.dims = 65;  // > cols
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
  p.dims = -1;
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
  p.dims = 0;
  p.y = view2(&dummy, 2, 63);
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
  p.y = view2(&dummy, 1, 64);
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
  p.x = view2<const float>(&dummy, 2, 0);  // no columns: dims 0 means all, and all is none
  p.y = view2(&dummy, 2, 0);
  EXPECT_THROW(cuda::quant_fp8(p), InputError);
}

}  // namespace
}  // namespace dsv4
