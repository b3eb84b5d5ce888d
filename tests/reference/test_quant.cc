// FP8 / FP4 block quantisation (reference/quant_fp8.h, quant_fp4.h).
//
// Oracle, written here from op-contract.md (quant_fp8, quant_fp4) and spec §2.2, §2.3, §7:
//   per row, per block of `block` consecutive columns (a trailing partial block on its own):
//   e    = smallest integer with qmax * 2^e >= max(amax, floor)    (= ceil(log2(.../qmax)))
//   q    = nearest value of the grid to clamp(|x| / 2^e, 0, qmax), ties to the even code
//   y    = sign(x) * q * 2^e
// with qmax = 448, floor = 1e-4 and the e4m3fn grid (FP8), or qmax = 6, floor = 6 * 2^-126
// and the e2m1 grid {0, .5, 1, 1.5, 2, 3, 4, 6} (FP4). The grids are listed here from the
// format definitions. Every result is a short dyadic number, exactly representable in
// float and double, so the comparisons are bitwise (no tolerance is needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace {

using namespace dsv4;
using dsv4::test::bitwise_equal;

double pow2(int k) {
  double v = 1.0;
  for (int i = 0; i < k; ++i) v *= 2.0;
  for (int i = 0; i > k; --i) v *= 0.5;
  return v;
}

// Non-negative grid points with their magnitude codes, ascending.
struct Grid {
  std::vector<double> v;
  std::vector<uint8_t> code;
  uint8_t sign_bit;
  double qmax, floor;
};

Grid e4m3_grid() {
  Grid g{{}, {}, 0x80, 448.0, 1e-4};
  // e4m3fn: 1-4-3, bias 7; e == 0 subnormal m * 2^-3 * 2^(1-7); 0x7F is NaN.
  for (int c = 0; c < 0x7F; ++c) {
    const int e = c >> 3, m = c & 7;
    g.v.push_back(e == 0 ? m / 8.0 * pow2(-6) : (1 + m / 8.0) * pow2(e - 7));
    g.code.push_back(uint8_t(c));
  }
  return g;
}

Grid e2m1_grid() {
  Grid g{{0, 0.5, 1, 1.5, 2, 3, 4, 6}, {0, 1, 2, 3, 4, 5, 6, 7}, 0x8, 6.0, 6.0 * pow2(-126)};
  return g;
}

int scale_exp(double amax, const Grid& g, bool use_floor = true) {
  const double a = use_floor ? std::max(amax, g.floor) : amax;
  double s = pow2(-300);
  for (int e = -300; e <= 300; ++e, s *= 2.0)
    if (g.qmax * s >= a) return e;
  return 1000;
}

// Nearest grid point by a linear scan; ties to the even code.
size_t nearest(const Grid& g, double a) {
  size_t best = 0;
  for (size_t i = 1; i < g.v.size(); ++i) {
    const double d = std::fabs(a - g.v[i]), bd = std::fabs(a - g.v[best]);
    if (d < bd || (d == bd && (g.code[i] & 1) == 0)) best = i;
  }
  return best;
}

// One block: y values, codes (sign | magnitude code) and the exponent.
int quant_block(const Grid& g, const double* x, int64_t n, double* y, uint8_t* codes,
                bool use_floor = true) {
  double amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const int e = scale_exp(amax, g, use_floor);
  const double s = pow2(e);
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::min(std::fabs(x[i]) / s, g.qmax);
    const size_t k = nearest(g, a);
    const bool neg = std::signbit(x[i]);
    y[i] = (neg ? -g.v[k] : g.v[k]) * s;
    if (codes) codes[i] = uint8_t(g.code[k] | (neg ? g.sign_bit : 0));
  }
  return e;
}

// A whole [R, d] matrix: blocks within [0, dims), columns >= dims copied.
template <class T>
std::vector<T> quant_oracle(const Grid& g, const std::vector<T>& x, int64_t R, int64_t d,
                            int64_t block, int64_t dims = 0, bool use_floor = true) {
  if (dims == 0) dims = d;
  std::vector<double> xd(x.begin(), x.end()), yd(xd);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t b = 0; b < dims; b += block)
      quant_block(g, &xd[r * d + b], std::min(block, dims - b), &yd[r * d + b], nullptr,
                  use_floor);
  return std::vector<T>(yd.begin(), yd.end());
}

// Random rows whose blocks span many magnitudes: block b of row r is scaled by 2^(3(b+r) - 9)
// times a random factor, so the per-block scales differ.
template <class T>
std::vector<T> spread_input(int64_t R, int64_t d, int64_t block, uint64_t seed) {
  auto v = test::normal<double>(size_t(R * d), seed);
  std::vector<T> x(v.size());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < d; ++c)
      x[r * d + c] = T(v[r * d + c] * pow2(int(3 * ((c / block) % 7 + r) - 9)));
  return x;
}

template <class T>
std::vector<T> nan_vec(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

template <class T>
std::vector<T> run_fp8(const std::vector<T>& x, int64_t R, int64_t d, int64_t block,
                       int64_t dims = 0) {
  auto y = nan_vec<T>(x.size());
  QuantFp8Params<T> p{view2(x.data(), R, d), view2(y.data(), R, d), block, dims};
  ref::quant_fp8(p);
  return y;
}

template <class T>
std::vector<T> run_fp4(const std::vector<T>& x, int64_t R, int64_t d, int64_t block) {
  auto y = nan_vec<T>(x.size());
  QuantFp4Params<T> p{view2(x.data(), R, d), view2(y.data(), R, d), block};
  ref::quant_fp4(p);
  return y;
}

template <class T>
class Quant : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Quant, Types);

// ---------------------------------------------------------------------------------------
// FP8

TYPED_TEST(Quant, Fp8MatchesOracle) {
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 3, d = 256;
  for (int64_t block : {64, 128}) {
    const auto x = spread_input<T>(R, d, block, 100 + block);
    const auto y = run_fp8(x, R, d, block);
    EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, R, d, block))) << "block " << block;
    EXPECT_FALSE(bitwise_equal(y, x));  // quantisation did something
  }
}

TYPED_TEST(Quant, Fp8V4KvLayoutLeavesRopeDims) {
  // §2.2: kv [.., 512], dims 0:448 in FP8 blocks of 64, dims 448:512 untouched.
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 4, d = kHeadDim, dims = kNopeDim, block = kFp8KvBlock;
  const auto x = spread_input<T>(R, d, block, 7);
  const auto y = run_fp8(x, R, d, block, dims);
  EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, R, d, block, dims)));
  int changed_rope = 0, changed_nope = 0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < d; ++c) {
      const bool same = std::memcmp(&y[r * d + c], &x[r * d + c], sizeof(T)) == 0;
      (c < dims ? changed_nope : changed_rope) += same ? 0 : 1;
    }
  EXPECT_EQ(changed_rope, 0);
  EXPECT_GT(changed_nope, R * dims / 2);
}

TYPED_TEST(Quant, Fp8ActivationLayoutBlock128) {
  // §7 / §9.4: activations in 1 x 128 blocks over the whole row.
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 2, d = 1024, block = kActBlock;
  const auto x = spread_input<T>(R, d, block, 8);
  EXPECT_TRUE(bitwise_equal(run_fp8(x, R, d, block), quant_oracle(g, x, R, d, block)));
}

TYPED_TEST(Quant, Fp8PartialTrailingBlock) {
  // d = 100 in blocks of 64: [0, 64) and [64, 100). The trailing block is 1000x smaller,
  // so a scale taken from the wrong block would flush it.
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 2, d = 100, block = 64;
  auto x = test::uniform<T>(size_t(R * d), 9, -50.0, 50.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 64; c < d; ++c) x[r * d + c] *= T(1e-3);
  EXPECT_TRUE(bitwise_equal(run_fp8(x, R, d, block), quant_oracle(g, x, R, d, block)));
  // dims that end inside a block: dims = 100 of d = 128.
  const int64_t d2 = 128;
  auto x2 = test::uniform<T>(size_t(R * d2), 10, -3.0, 3.0);
  EXPECT_TRUE(bitwise_equal(run_fp8(x2, R, d2, block, 100), quant_oracle(g, x2, R, d2, block, 100)));
}

TYPED_TEST(Quant, Fp8AllTinyBlockUsesAmaxFloor) {
  // amax < 1e-4: the scale is 2^-22 (448 * 2^-22 >= 1e-4 > 448 * 2^-23) whatever amax is.
  // Values log-uniform in [1e-10, 1e-6]: at 2^-22 the small ones fall on the subnormal grid
  // (step 2^-31), at the unfloored scale 2^-28 they would be normal, so the floor bites.
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t n = 64;
  const auto lg = test::uniform<double>(n, 11, -10.0, -6.0);
  std::vector<T> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = T((i % 3 ? 1 : -1) * std::pow(10.0, lg[i]));
  std::vector<uint8_t> codes(n), want_codes(n);
  const uint8_t scale = ref::fp8_encode_block(x.data(), n, codes.data());
  EXPECT_EQ(int(scale), -22 + 127);
  std::vector<double> xd(x.begin(), x.end()), yd(n);
  EXPECT_EQ(quant_block(g, xd.data(), n, yd.data(), want_codes.data()), -22);
  EXPECT_EQ(codes, want_codes);
  const auto y = run_fp8(x, 1, n, n);
  EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, 1, n, n)));
  EXPECT_FALSE(bitwise_equal(y, quant_oracle(g, x, 1, n, n, 0, /*use_floor=*/false)));
}

TYPED_TEST(Quant, Fp8GridValuesRoundTripExactly) {
  // Values already on the scaled grid come back bit-identical. Each block holds +-448*2^e
  // (so its scale is exactly 2^e) and random e4m3 grid values times 2^e.
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 3, d = 192, block = 64;
  std::mt19937_64 rng(12);
  std::uniform_int_distribution<size_t> pick(1, g.v.size() - 1);
  std::vector<T> x(R * d);
  const int exps[] = {-20, -7, 0, 3, 9, 30};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t b = 0; b < d / block; ++b) {
      const double s = pow2(exps[(r * 3 + b) % 6]);
      for (int64_t i = 0; i < block; ++i) {
        const double v = (i == 5 ? 448.0 : g.v[pick(rng)]) * s;
        x[r * d + b * block + i] = T(rng() & 1 ? -v : v);
      }
    }
  EXPECT_TRUE(bitwise_equal(run_fp8(x, R, d, block), x));
}

TYPED_TEST(Quant, Fp8TiesRoundToEven) {
  // A block with amax 448 (scale 1) and every midpoint between neighbouring grid values
  // (and their neighbours one ulp away): RNE decides each one.
  using T = TypeParam;
  const auto g = e4m3_grid();
  std::vector<T> x = {T(448)};
  for (size_t i = 0; i + 1 < g.v.size(); ++i) {
    const double mid = 0.5 * (g.v[i] + g.v[i + 1]);
    for (double v : {mid, double(std::nextafter(T(mid), T(0))), double(std::nextafter(T(mid), T(1e3)))})
      x.push_back(T(i & 1 ? -v : v));
  }
  const int64_t n = int64_t(x.size());
  const auto y = run_fp8(x, 1, n, n);
  EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, 1, n, n)));
  // The same values in blocks of 64 (the length the AVX2 kernel takes), 448 first in each.
  std::vector<T> xb;
  for (size_t i = 1; i < x.size(); ++i) {
    if (xb.size() % kFp8KvBlock == 0) xb.push_back(T(448));
    xb.push_back(x[i]);
  }
  xb.resize((xb.size() + kFp8KvBlock - 1) / kFp8KvBlock * kFp8KvBlock, T(0));
  const int64_t nb = int64_t(xb.size());
  EXPECT_TRUE(bitwise_equal(run_fp8(xb, 1, nb, kFp8KvBlock), quant_oracle(g, xb, 1, nb, kFp8KvBlock)));
  // By hand: 1.0625 is the tie of 1 and 1.125 -> 1; 1.1875 of 1.125 and 1.25 -> 1.25.
  const std::vector<T> hand = {T(448), T(1.0625), T(1.1875), T(-1.1875), T(432)};
  EXPECT_TRUE(bitwise_equal(run_fp8(hand, 1, 5, 5),
                            std::vector<T>{T(448), T(1), T(1.25), T(-1.25), T(448)}));
}

TYPED_TEST(Quant, Fp8Idempotent) {
  using T = TypeParam;
  for (int64_t block : {64, 128}) {
    const int64_t R = 3, d = 512;
    const auto x = spread_input<T>(R, d, block, 13 + block);
    const auto y1 = run_fp8(x, R, d, block, block == 64 ? 448 : 0);
    const auto y2 = run_fp8(y1, R, d, block, block == 64 ? 448 : 0);
    EXPECT_TRUE(bitwise_equal(y2, y1)) << "block " << block;
  }
}

TYPED_TEST(Quant, Fp8InPlace) {
  using T = TypeParam;
  const auto g = e4m3_grid();
  const int64_t R = 3, d = kHeadDim, dims = kNopeDim, block = kFp8KvBlock;
  const auto x = spread_input<T>(R, d, block, 14);
  auto buf = x;
  QuantFp8Params<T> p{view2<const T>(buf.data(), R, d), view2(buf.data(), R, d), block, dims};
  ref::quant_fp8(p);
  EXPECT_TRUE(bitwise_equal(buf, quant_oracle(g, x, R, d, block, dims)));
}

TYPED_TEST(Quant, Fp8EncodeDecodeBlock) {
  using T = TypeParam;
  const auto g = e4m3_grid();
  for (int64_t n : {64, 128, 37}) {
    const auto x = spread_input<T>(1, n, n, 15 + n);
    std::vector<uint8_t> codes(n, 0xAA), want(n);
    const uint8_t scale = ref::fp8_encode_block(x.data(), n, codes.data());
    std::vector<double> xd(x.begin(), x.end()), yd(n);
    const int e = quant_block(g, xd.data(), n, yd.data(), want.data());
    EXPECT_EQ(int(scale), e + 127);
    EXPECT_EQ(codes, want);
    auto y = nan_vec<T>(n);
    ref::fp8_decode_block(codes.data(), n, scale, y.data());
    EXPECT_TRUE(bitwise_equal(y, std::vector<T>(yd.begin(), yd.end())));
  }
}

TYPED_TEST(Quant, Fp8BadKeysThrow) {
  using T = TypeParam;
  std::vector<T> x(2 * 64, T(1)), y(2 * 64);
  QuantFp8Params<T> p{view2<const T>(x.data(), 2, 64), view2(y.data(), 2, 64), 64, 65};
  EXPECT_THROW(ref::quant_fp8(p), InputError);  // dims > d
  p.dims = 0;
  p.block = 0;
  EXPECT_THROW(ref::quant_fp8(p), InputError);
}

// ---------------------------------------------------------------------------------------
// FP4

TYPED_TEST(Quant, Fp4MatchesOracle) {
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t R = 3, d = 128, block = kFp4Block;
  const auto x = spread_input<T>(R, d, block, 20);
  const auto y = run_fp4(x, R, d, block);
  EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, R, d, block)));
  EXPECT_FALSE(bitwise_equal(y, x));
}

TYPED_TEST(Quant, Fp4PartialTrailingBlock) {
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t R = 2, d = 40, block = 32;  // [0, 32) and [32, 40)
  auto x = test::uniform<T>(size_t(R * d), 21, -8.0, 8.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 32; c < d; ++c) x[r * d + c] *= T(1e-4);
  EXPECT_TRUE(bitwise_equal(run_fp4(x, R, d, block), quant_oracle(g, x, R, d, block)));
}

TYPED_TEST(Quant, Fp4AllTinyBlockUsesAmaxFloor) {
  // Values k * 2^-128, 1 <= |k| <= 9: amax = 2.25 * 2^-126 < 6 * 2^-126, so the floor sets
  // the scale to 2^-126 (without it: 2^-127). Scaled values k/4; 0.25 is the tie of 0 and
  // 0.5 -> 0, 1.25 the tie of 1 and 1.5 -> 1 (even codes).
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t n = 32;
  std::vector<T> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = T((i % 9 + 1) * (i % 3 ? 1 : -1) * pow2(-128));
  std::vector<uint8_t> packed(n / 2);
  EXPECT_EQ(int(ref::fp4_encode_block(x.data(), n, packed.data())), -126 + 127);
  const auto y = run_fp4(x, 1, n, n);
  EXPECT_TRUE(bitwise_equal(y, quant_oracle(g, x, 1, n, n)));
  EXPECT_FALSE(bitwise_equal(y, quant_oracle(g, x, 1, n, n, 0, /*use_floor=*/false)));
  EXPECT_EQ(double(y[0]), -0.0);               // k = -1 -> -0.25 -> -0
  EXPECT_TRUE(std::signbit(y[0]));
  EXPECT_EQ(double(y[4]), pow2(-126));         // k = 5 -> 1.25 -> 1
}

TYPED_TEST(Quant, Fp4GridValuesRoundTripExactly) {
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t R = 2, d = 96, block = 32;
  std::mt19937_64 rng(22);
  std::vector<T> x(R * d);
  const int exps[] = {-100, -3, 0, 7, 60, 120};
  for (int64_t r = 0; r < R; ++r)
    for (int64_t b = 0; b < d / block; ++b) {
      const double s = pow2(exps[(r * 3 + b) % 6]);
      for (int64_t i = 0; i < block; ++i) {
        const double v = (i == 3 ? 6.0 : g.v[1 + rng() % 7]) * s;
        x[r * d + b * block + i] = T(rng() & 1 ? -v : v);
      }
    }
  EXPECT_TRUE(bitwise_equal(run_fp4(x, R, d, block), x));
}

TYPED_TEST(Quant, Fp4TiesRoundToEven) {
  using T = TypeParam;
  const std::vector<T> x = {T(6), T(0.25), T(0.75), T(1.25), T(1.75), T(2.5), T(3.5), T(5),
                            T(-0.25), T(-0.75), T(-1.25), T(-1.75), T(-2.5), T(-3.5), T(-5), T(-6)};
  const std::vector<T> want = {T(6), T(0), T(1), T(1), T(2), T(2), T(4), T(4),
                               T(-0.0), T(-1), T(-1), T(-2), T(-2), T(-4), T(-4), T(-6)};
  EXPECT_TRUE(bitwise_equal(run_fp4(x, 1, 16, 16), want));
  // Twice over, one block of 32 (the length the AVX2 kernel takes).
  std::vector<T> x2 = x, want2 = want;
  x2.insert(x2.end(), x.begin(), x.end());
  want2.insert(want2.end(), want.begin(), want.end());
  EXPECT_TRUE(bitwise_equal(run_fp4(x2, 1, 32, 32), want2));
}

TYPED_TEST(Quant, Fp4Idempotent) {
  using T = TypeParam;
  const int64_t R = 3, d = 256, block = 32;
  const auto x = spread_input<T>(R, d, block, 23);
  const auto y1 = run_fp4(x, R, d, block);
  EXPECT_TRUE(bitwise_equal(run_fp4(y1, R, d, block), y1));
}

TYPED_TEST(Quant, Fp4InPlace) {
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t R = 3, d = 128, block = 32;
  const auto x = spread_input<T>(R, d, block, 24);
  auto buf = x;
  QuantFp4Params<T> p{view2<const T>(buf.data(), R, d), view2(buf.data(), R, d), block};
  ref::quant_fp4(p);
  EXPECT_TRUE(bitwise_equal(buf, quant_oracle(g, x, R, d, block)));
}

TYPED_TEST(Quant, Fp4PackingOrderAndDecodeBlock) {
  // §7: byte k holds element 2k in the low nibble and 2k+1 in the high nibble.
  using T = TypeParam;
  const auto g = e2m1_grid();
  const int64_t n = 32;
  const auto x = spread_input<T>(1, n, n, 25);
  std::vector<double> xd(x.begin(), x.end()), yd(n);
  std::vector<uint8_t> want(n);
  const int e = quant_block(g, xd.data(), n, yd.data(), want.data());
  std::vector<uint8_t> packed(n / 2, 0xEE);
  const uint8_t scale = ref::fp4_encode_block(x.data(), n, packed.data());
  EXPECT_EQ(int(scale), e + 127);
  for (int64_t k = 0; k < n / 2; ++k) {
    EXPECT_EQ(packed[k] & 0xF, want[2 * k]) << "low nibble of byte " << k;
    EXPECT_EQ(packed[k] >> 4, want[2 * k + 1]) << "high nibble of byte " << k;
  }
  // A hand-made block: codes 1..15 then 0 in order; amax 6 -> scale 2^0.
  std::vector<T> hand(n);
  const double mags[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int64_t i = 0; i < n; ++i) {
    const int c = int((i + 1) % 16);
    hand[i] = T(c & 8 ? -mags[c & 7] : mags[c & 7]);
  }
  EXPECT_EQ(int(ref::fp4_encode_block(hand.data(), n, packed.data())), 127);
  for (int64_t k = 0; k < n / 2; ++k)
    EXPECT_EQ(int(packed[k]), int(((2 * k + 1) % 16) | (((2 * k + 2) % 16) << 4))) << k;
  auto y = nan_vec<T>(n);
  ref::fp4_decode_block(packed.data(), n, 127, y.data());
  EXPECT_TRUE(bitwise_equal(y, hand));
  EXPECT_THROW(ref::fp4_encode_block(hand.data(), 31, packed.data()), InputError);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The float fast paths (reference/quant_grid.h: the AVX2 kernel for blocks of 32, 64 and
// 128, the float path for the rest) against the double path, bit for bit, on blocks built to
// reach every branch: random bit patterns over the whole float range (subnormals, values
// that underflow the block scale, the clamp at qmax, exact grid ties, amax beyond the
// kernel's bound), zeros of both signs, NaN (skipped by amax, kept in place; the kernel hands
// its block to the float path) and infinities (the float paths decline the block, the
// double path decides); and blocks whose amax sits at each edge of the scale exponent.
namespace {

std::vector<float> adversarial_blocks(int64_t rows, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> x(size_t(rows * d));
  for (int64_t r = 0; r < rows; ++r) {
    const int kind = int(r % 6);
    // A per-row centre exponent so that blocks sit at every scale of the float range.
    const int centre = int(rng() % 250) - 125;
    for (int64_t c = 0; c < d; ++c) {
      float v;
      if (kind == 0) {  // any finite bit pattern
        uint32_t u;
        do u = uint32_t(rng()); while ((u & 0x7F800000u) == 0x7F800000u);
        std::memcpy(&v, &u, 4);
      } else if (kind == 1) {  // a wide spread of magnitudes around the centre
        v = std::ldexp(float(int(rng() % 2001) - 1000) / 1000.0f, centre + int(rng() % 40) - 20);
      } else if (kind == 2) {  // subnormal floats only
        const uint32_t u = uint32_t(rng()) & 0x807FFFFFu;
        std::memcpy(&v, &u, 4);
      } else if (kind == 3) {  // grid midpoints and near-ties: short mantissas at the centre
        v = std::ldexp(float(int(rng() % 64) - 32) / 16.0f, centre);
      } else {  // normal values with a few specials mixed in
        v = std::ldexp(float(int(rng() % 2001) - 1000) / 1000.0f, centre);
        const int s = int(rng() % 97);
        if (s == 0) v = std::numeric_limits<float>::quiet_NaN();
        if (s == 1 && kind == 5) v = (rng() & 1) ? std::numeric_limits<float>::infinity()
                                                 : -std::numeric_limits<float>::infinity();
        if (s == 2) v = (rng() & 1) ? 0.0f : -0.0f;
        if (s == 3) {  // NaNs with large payloads: the float path's rounding add must not carry
          constexpr uint32_t kPayloads[] = {0x7FFFFFFFu, 0x7FE00000u, 0xFFF80000u, 0x7FF80000u};
          const uint32_t u = kPayloads[rng() % 4];
          std::memcpy(&v, &u, 4);
        }
      }
      x[size_t(r * d + c)] = v;
    }
  }
  return x;
}

// The float path's y against the double path's on the same rows, bit for bit (any NaN for NaN).
template <class Run>
void expect_same_bits(Run run, const std::vector<float>& xf, int64_t rows, int64_t d, int64_t block,
                      const char* what) {
  const std::vector<double> xd(xf.begin(), xf.end());
  const auto yf = run(xf, rows, d, block);
  const auto yd = run(xd, rows, d, block);
  for (size_t i = 0; i < yf.size(); ++i) {
    const float want = float(yd[i]);
    const bool same = (std::isnan(want) && std::isnan(yf[i])) || std::memcmp(&want, &yf[i], sizeof(float)) == 0;
    ASSERT_TRUE(same) << what << ", block " << block << ", element " << i << " (row " << int64_t(i) / d
                      << "): x = " << xf[i] << ", float path " << yf[i] << ", double path " << yd[i];
  }
}

template <class Run>
void expect_float_path_is_double_path(Run run, int64_t block) {
  for (int64_t d : {block, 3 * block + 5}) {  // whole blocks, and a trailing partial block
    const int64_t rows = 600;
    expect_same_bits(run, adversarial_blocks(rows, d, uint64_t(1000 + d)), rows, d, block, "adversarial rows");
  }
}

// One block per row whose amax sits at an edge of the scale computation, for every float
// exponent: mantissas 0 (a power of two), 1, 0x7FFFFF, and qmax's mantissa g and g +- 1
// (where ceil(log2(amax / qmax)) steps); rows of zeros of both signs (amax = 0) and of
// subnormals come with exponent field 0. The other values of a row are amax times random
// fractions, signs random.
std::vector<float> scale_edge_blocks(uint32_t qmax_bits, int64_t block, int64_t& rows) {
  const uint32_t g = qmax_bits & 0x7FFFFFu;
  const uint32_t mants[] = {0u, 1u, g - 1, g, g + 1, 0x7FFFFFu};
  std::mt19937_64 rng(31);
  std::uniform_real_distribution<float> frac(-1.0f, 1.0f);
  std::vector<float> x;
  for (uint32_t ex = 0; ex < 255; ++ex)
    for (uint32_t f : mants) {
      const float amax = std::bit_cast<float>((ex << 23) | f);
      const size_t at = x.size() + size_t(rng() % uint64_t(block));
      for (int64_t i = 0; i < block; ++i) x.push_back(amax * frac(rng));
      x[at] = rng() & 1 ? -amax : amax;
    }
  rows = int64_t(x.size()) / block;
  return x;
}

constexpr uint32_t kFp8MaxBits = std::bit_cast<uint32_t>(float(kFp8Max));
constexpr uint32_t kFp4MaxBits = std::bit_cast<uint32_t>(float(kFp4Max));

}  // namespace

TEST(QuantFloatPath, Fp8BitForBitTheDoublePath) {
  for (int64_t block : {kFp8KvBlock, kActBlock})
    expect_float_path_is_double_path(
        [](const auto& x, int64_t R, int64_t d, int64_t b) { return run_fp8(x, R, d, b); }, block);
}

TEST(QuantFloatPath, Fp4BitForBitTheDoublePath) {
  expect_float_path_is_double_path(
      [](const auto& x, int64_t R, int64_t d, int64_t b) { return run_fp4(x, R, d, b); }, kFp4Block);
}

TYPED_TEST(Quant, BlockWithAnInfinityBecomesNaN) {
  using T = TypeParam;
  const int64_t d = 3 * kFp4Block;
  std::vector<T> x(size_t(d), T(0.75));
  x[size_t(kFp4Block + 3)] = -std::numeric_limits<T>::infinity();  // in the second FP4 block
  const auto y4 = run_fp4(x, 1, d, kFp4Block);
  const auto y8 = run_fp8(x, 1, d, kFp4Block);
  for (int64_t c = 0; c < d; ++c) {
    const bool inf_block = c / kFp4Block == 1;
    EXPECT_EQ(std::isnan(y4[size_t(c)]), inf_block) << "fp4 column " << c;
    EXPECT_EQ(std::isnan(y8[size_t(c)]), inf_block) << "fp8 column " << c;
    if (!inf_block) {
      EXPECT_EQ(y4[size_t(c)], T(0.75)) << c;
    }
  }
  uint8_t codes[kFp8KvBlock];
  EXPECT_EQ(ref::fp8_encode_block(x.data() + kFp4Block, kFp4Block, codes), 0xFF);
}

TEST(QuantFloatPath, ScaleEdgeBlocksBitForBitTheDoublePath) {
  const auto fp8 = [](const auto& x, int64_t R, int64_t d, int64_t b) { return run_fp8(x, R, d, b); };
  const auto fp4 = [](const auto& x, int64_t R, int64_t d, int64_t b) { return run_fp4(x, R, d, b); };
  int64_t rows = 0;
  for (int64_t block : {kFp8KvBlock, kActBlock}) {
    const auto x = scale_edge_blocks(kFp8MaxBits, block, rows);
    expect_same_bits(fp8, x, rows, block, block, "fp8 scale edges");
  }
  const auto x = scale_edge_blocks(kFp4MaxBits, kFp4Block, rows);
  expect_same_bits(fp4, x, rows, kFp4Block, kFp4Block, "fp4 scale edges");
}
