// Scalar number formats (reference/formats.h, dsv4::fmt): bf16, f16, e4m3fn, e2m1, ue8m0.
//
// Oracles, all written here from the format definitions (spec §7 "Encodings", op-contract
// quant_fp8 / quant_fp4), never from the encoder under test:
//   - decode: value = (-1)^s * 2^(e - bias) * (1 + m / 2^M) for e > 0, and
//     (-1)^s * 2^(1 - bias) * (m / 2^M) for e == 0 (subnormal), with each format's specials.
//   - encode: the nearest value of the format's grid by a search over that grid; a tie goes
//     to the code whose last bit is 0 (round to nearest even). IEEE formats (bf16, f16)
//     overflow to inf (the grid gets one extra point 2^(emax+1) whose code is inf, which is
//     exactly how RNE with an unbounded exponent decides overflow); e4m3fn and e2m1 saturate
//     at their largest finite value (formats.h: the quantisers clamp first).
//   - ue8m0_scale_exp: the smallest integer e with qmax * 2^e >= max(amax, floor), by a
//     linear search over e.
// Every comparison here is exact: these are bit-level formats.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "reference/constants.h"
#include "reference/formats.h"

namespace {

using namespace dsv4;

// 2^k by repeated exact multiplication (independent of ldexp/pow).
double pow2(int k) {
  double v = 1.0;
  for (int i = 0; i < k; ++i) v *= 2.0;
  for (int i = 0; i > k; --i) v *= 0.5;
  return v;
}

// A minifloat with E exponent bits, M mantissa bits and bias B; code layout s|e|m.
struct Minifloat {
  int E, M, bias;
  bool ieee_specials;  // exponent all ones = inf (m == 0) / NaN (m != 0)
  bool fn_nan;         // e4m3fn: only s.1111.111 is NaN, no inf

  uint32_t sign_bit() const { return 1u << (E + M); }
  uint32_t codes() const { return 1u << (E + M + 1); }

  bool is_nan(uint32_t c) const {
    const uint32_t e = (c >> M) & ((1u << E) - 1), m = c & ((1u << M) - 1);
    if (ieee_specials) return e == (1u << E) - 1 && m != 0;
    if (fn_nan) return e == (1u << E) - 1 && m == (1u << M) - 1;
    return false;
  }
  bool is_inf(uint32_t c) const {
    const uint32_t e = (c >> M) & ((1u << E) - 1), m = c & ((1u << M) - 1);
    return ieee_specials && e == (1u << E) - 1 && m == 0;
  }
  // Value from the definition; NaN / inf handled by the caller via is_nan / is_inf.
  double value(uint32_t c) const {
    const bool neg = (c & sign_bit()) != 0;
    const int e = int((c >> M) & ((1u << E) - 1));
    const int m = int(c & ((1u << M) - 1));
    const double frac = double(m) / pow2(M);
    const double mag = e == 0 ? frac * pow2(1 - bias) : (1.0 + frac) * pow2(e - bias);
    if (is_inf(c)) return neg ? -std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::infinity();
    if (is_nan(c)) return std::numeric_limits<double>::quiet_NaN();
    return neg ? -mag : mag;
  }
};

const Minifloat kBf16{8, 7, 127, true, false};
const Minifloat kF16{5, 10, 15, true, false};
const Minifloat kE4m3{4, 3, 7, false, true};
const Minifloat kE2m1{2, 1, 1, false, false};

// Same value and same sign (so that -0 != +0), NaN == NaN.
::testing::AssertionResult same_value(double got, double want, uint32_t code) {
  if (std::isnan(want) && std::isnan(got)) return ::testing::AssertionSuccess();
  if (got == want && std::signbit(got) == std::signbit(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "code 0x" << std::hex << code << std::dec << ": got "
                                       << got << ", want " << want;
}

// Sorted non-negative grid of a format: (magnitude, code) for every finite non-negative
// code, plus (for IEEE formats) the overflow point 2^(emax+1) carrying the inf code.
struct GridPoint {
  double v;
  uint32_t code;
};
std::vector<GridPoint> positive_grid(const Minifloat& f) {
  std::vector<GridPoint> g;
  for (uint32_t c = 0; c < f.sign_bit(); ++c) {
    if (f.is_nan(c)) continue;
    if (f.is_inf(c)) {
      const int emax = (1 << f.E) - 2 - f.bias;
      g.push_back({pow2(emax + 1), c});
      continue;
    }
    g.push_back({f.value(c), c});
  }
  std::sort(g.begin(), g.end(), [](const GridPoint& a, const GridPoint& b) { return a.v < b.v; });
  return g;
}

// Brute-force nearest: a linear scan over the grid (ties to the even code). Values beyond
// the last point take the last point (saturation, or inf for IEEE formats).
uint32_t nearest_code(const Minifloat& f, const std::vector<GridPoint>& grid, double x) {
  const double a = std::fabs(x);
  if (a >= grid.back().v) return grid.back().code | (std::signbit(x) ? f.sign_bit() : 0u);
  size_t best = 0;
  double best_d = std::fabs(a - grid[0].v);
  for (size_t i = 1; i < grid.size(); ++i) {
    const double d = std::fabs(a - grid[i].v);
    if (d < best_d || (d == best_d && (grid[i].code & 1u) == 0 && (grid[best].code & 1u) != 0)) {
      best = i;
      best_d = d;
    }
  }
  return grid[best].code | (std::signbit(x) ? f.sign_bit() : 0u);
}

// The same answer by bisection (for the 2^15-point grids of bf16 / f16, where a linear scan
// per value would be slow). Checked against nearest_code on a sample in a test below.
uint32_t nearest_code_bisect(const Minifloat& f, const std::vector<GridPoint>& grid, double x) {
  const double a = std::fabs(x);
  auto it = std::lower_bound(grid.begin(), grid.end(), a,
                             [](const GridPoint& p, double v) { return p.v < v; });
  size_t best;
  if (it == grid.end()) {
    best = grid.size() - 1;
  } else if (it == grid.begin()) {
    best = 0;
  } else {
    const size_t hi = size_t(it - grid.begin()), lo = hi - 1;
    const double dlo = a - grid[lo].v, dhi = grid[hi].v - a;
    if (dlo < dhi)
      best = lo;
    else if (dhi < dlo)
      best = hi;
    else
      best = (grid[lo].code & 1u) == 0 ? lo : hi;
  }
  return grid[best].code | (std::signbit(x) ? f.sign_bit() : 0u);
}

// Midpoints of consecutive grid points and their immediate neighbours in double.
std::vector<double> edge_values(const std::vector<GridPoint>& grid, bool float_neighbours) {
  std::vector<double> v;
  for (size_t i = 0; i < grid.size(); ++i) {
    v.push_back(grid[i].v);
    if (i + 1 == grid.size()) continue;
    const double mid = 0.5 * (grid[i].v + grid[i + 1].v);  // exact: both are dyadic
    v.push_back(mid);
    if (float_neighbours) {
      const float mf = float(mid);
      v.push_back(std::nextafter(mf, 0.0f));
      v.push_back(std::nextafter(mf, std::numeric_limits<float>::infinity()));
    } else {
      v.push_back(std::nextafter(mid, 0.0));
      v.push_back(std::nextafter(mid, std::numeric_limits<double>::infinity()));
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------
// Decode, exhaustively.

TEST(Formats, DecodeBf16AllCodes) {
  for (uint32_t c = 0; c < 65536; ++c)
    ASSERT_TRUE(same_value(fmt::bf16_decode(uint16_t(c)), kBf16.value(c), c));
}

TEST(Formats, DecodeF16AllCodes) {
  for (uint32_t c = 0; c < 65536; ++c)
    ASSERT_TRUE(same_value(fmt::f16_decode(uint16_t(c)), kF16.value(c), c));
}

TEST(Formats, DecodeE4m3AllCodes) {
  int nans = 0;
  for (uint32_t c = 0; c < 256; ++c) {
    ASSERT_TRUE(same_value(fmt::e4m3_decode(uint8_t(c)), kE4m3.value(c), c));
    nans += std::isnan(fmt::e4m3_decode(uint8_t(c))) ? 1 : 0;
  }
  EXPECT_EQ(nans, 2);  // only 0x7F and 0xFF
  EXPECT_EQ(fmt::e4m3_decode(0x7E), 448.0f);
  EXPECT_EQ(fmt::e4m3_decode(0x01), 1.0f / 512);  // subnormal step 2^-9
  EXPECT_EQ(fmt::e4m3_decode(0x08), 1.0f / 64);   // smallest normal 2^-6
}

TEST(Formats, DecodeE2m1AllCodes) {
  const double mags[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (uint32_t c = 0; c < 16; ++c) {
    ASSERT_TRUE(same_value(fmt::e2m1_decode(uint8_t(c)), kE2m1.value(c), c));
    ASSERT_EQ(std::fabs(fmt::e2m1_decode(uint8_t(c))), mags[c & 7]);
  }
}

TEST(Formats, DecodeUe8m0AllCodes) {
  for (uint32_t b = 0; b < 256; ++b) {
    const double want =
        b == 0xFF ? std::numeric_limits<double>::quiet_NaN() : pow2(int(b) - 127);
    ASSERT_TRUE(same_value(fmt::ue8m0_decode(uint8_t(b)), want, b));
  }
  for (int e = -127; e <= 127; ++e) ASSERT_EQ(fmt::ue8m0_encode_exp(e), uint8_t(e + 127));
}

// ---------------------------------------------------------------------------------------
// encode(decode(c)) == c for every finite code (including -0).

TEST(Formats, RoundTripBf16FiniteCodes) {
  for (uint32_t c = 0; c < 65536; ++c) {
    if (kBf16.is_nan(c) || kBf16.is_inf(c)) continue;
    ASSERT_EQ(fmt::bf16_encode(fmt::bf16_decode(uint16_t(c))), c) << std::hex << c;
  }
}

TEST(Formats, RoundTripF16FiniteCodes) {
  for (uint32_t c = 0; c < 65536; ++c) {
    if (kF16.is_nan(c) || kF16.is_inf(c)) continue;
    ASSERT_EQ(fmt::f16_encode(fmt::f16_decode(uint16_t(c))), c) << std::hex << c;
  }
}

TEST(Formats, RoundTripE4m3FiniteCodes) {
  for (uint32_t c = 0; c < 256; ++c) {
    if (c == 0x7F || c == 0xFF) continue;
    ASSERT_EQ(fmt::e4m3_encode(fmt::e4m3_decode(uint8_t(c))), c) << std::hex << c;
  }
}

TEST(Formats, RoundTripE2m1AllCodes) {
  for (uint32_t c = 0; c < 16; ++c) ASSERT_EQ(fmt::e2m1_encode(fmt::e2m1_decode(uint8_t(c))), c);
}

TEST(Formats, SignedZeroAndNaN) {
  EXPECT_EQ(fmt::bf16_encode(-0.0f), 0x8000);
  EXPECT_EQ(fmt::f16_encode(-0.0f), 0x8000);
  EXPECT_EQ(fmt::e4m3_encode(-0.0), 0x80);
  EXPECT_EQ(fmt::e2m1_encode(-0.0), 0x8);
  // A tiny negative value rounds to -0, keeping the sign.
  EXPECT_EQ(fmt::e4m3_encode(-1e-30), 0x80);
  EXPECT_EQ(fmt::e2m1_encode(-0.1), 0x8);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(fmt::bf16_decode(fmt::bf16_encode(nan))));
  EXPECT_TRUE(std::isnan(fmt::bf16_decode(fmt::bf16_encode(-nan))));
  EXPECT_TRUE(std::isnan(fmt::f16_decode(fmt::f16_encode(nan))));
  EXPECT_EQ(fmt::e4m3_encode(std::numeric_limits<double>::quiet_NaN()), 0x7F);
}

// ---------------------------------------------------------------------------------------
// Encode against the grid search: edges (grid points, midpoints, one ulp either side) and
// random values.

TEST(Formats, BisectSearchAgreesWithLinearSearch) {
  // The bisection used for bf16/f16 below is itself checked against the linear scan.
  const auto grid = positive_grid(kF16);
  std::mt19937_64 g(11);
  std::uniform_real_distribution<double> u(-20.0, 17.0);
  for (int i = 0; i < 500; ++i) {
    const double x = (i & 1 ? -1 : 1) * std::exp2(u(g));
    ASSERT_EQ(nearest_code_bisect(kF16, grid, x), nearest_code(kF16, grid, x)) << x;
  }
  // Every 23rd edge value (midpoints, their neighbours), to keep the linear scans short.
  const auto edges = edge_values(grid, true);
  for (size_t i = 0; i < edges.size(); i += 23) {
    ASSERT_EQ(nearest_code_bisect(kF16, grid, edges[i]), nearest_code(kF16, grid, edges[i]))
        << edges[i];
  }
}

TEST(Formats, EncodeE4m3EdgesAndRandom) {
  const auto grid = positive_grid(kE4m3);
  ASSERT_EQ(grid.size(), 127u);  // 0 .. 448, codes 0x00 .. 0x7E
  ASSERT_EQ(grid.back().v, 448.0);
  std::vector<double> xs = edge_values(grid, false);
  // Saturation: above 448 (also above the would-be next point 480 and its midpoint 464).
  for (double x : {448.0, std::nextafter(448.0, 1e9), 460.0, 464.0, 470.0, 480.0, 1e4, 1e30})
    xs.push_back(x);
  // Subnormal region in detail: multiples of 2^-11 up to 2^-5.
  for (int k = 1; k <= 64; ++k) xs.push_back(k * pow2(-11));
  std::mt19937_64 g(1);
  std::uniform_real_distribution<double> ue(-14.0, 9.5);
  for (int i = 0; i < 20000; ++i) xs.push_back(std::exp2(ue(g)));
  for (double a : xs) {
    for (double x : {a, -a}) {
      ASSERT_EQ(fmt::e4m3_encode(x), nearest_code(kE4m3, grid, x)) << "x = " << x;
    }
  }
  // Hand-checked ties: 2^-10 lies between 0 and 2^-9 -> 0 (even); 1.0625 between 1 (0x38)
  // and 1.125 (0x39) -> 1; 1.1875 between 1.125 (0x39) and 1.25 (0x3A) -> 1.25.
  EXPECT_EQ(fmt::e4m3_encode(pow2(-10)), 0x00);
  EXPECT_EQ(fmt::e4m3_encode(3 * pow2(-10)), 0x02);
  EXPECT_EQ(fmt::e4m3_encode(1.0625), 0x38);
  EXPECT_EQ(fmt::e4m3_encode(1.1875), 0x3A);
  EXPECT_EQ(fmt::e4m3_encode(-1.1875), 0xBA);
  EXPECT_EQ(fmt::e4m3_encode(432.0), 0x7E);  // midpoint of 416 (0x7D) and 448 (0x7E)
  EXPECT_EQ(fmt::e4m3_encode(416.0 + 16.0), 0x7E);
  EXPECT_EQ(fmt::e4m3_encode(std::nextafter(432.0, 0.0)), 0x7D);
  EXPECT_EQ(fmt::e4m3_encode(1e6), 0x7E);
  EXPECT_EQ(fmt::e4m3_encode(-1e6), 0xFE);
}

TEST(Formats, EncodeE2m1EdgesAndRandom) {
  const auto grid = positive_grid(kE2m1);
  ASSERT_EQ(grid.size(), 8u);
  std::vector<double> xs = edge_values(grid, false);
  for (double x : {6.0, 6.5, 7.0, 8.0, 100.0}) xs.push_back(x);
  std::mt19937_64 g(2);
  std::uniform_real_distribution<double> u(0.0, 7.0);
  for (int i = 0; i < 20000; ++i) xs.push_back(u(g));
  for (double a : xs) {
    for (double x : {a, -a}) {
      ASSERT_EQ(fmt::e2m1_encode(x), nearest_code(kE2m1, grid, x)) << x;
    }
  }
  // Every midpoint by hand: ties go to the even code.
  const struct { double x; uint8_t code; } ties[] = {
      {0.25, 0x0}, {0.75, 0x2}, {1.25, 0x2}, {1.75, 0x4}, {2.5, 0x4}, {3.5, 0x6}, {5.0, 0x6}};
  for (auto t : ties) {
    EXPECT_EQ(fmt::e2m1_encode(t.x), t.code) << t.x;
    EXPECT_EQ(fmt::e2m1_encode(-t.x), t.code | 0x8) << -t.x;
  }
}

TEST(Formats, EncodeF16EdgesAndRandom) {
  const auto grid = positive_grid(kF16);
  std::vector<double> xs = edge_values(grid, true);
  // Overflow: 65504 is the max; 65520 is the tie with 65536 (inf code, even) -> inf.
  for (double x : {65504.0, 65519.0, 65520.0, 65521.0, 1e6, double(1e38f)}) xs.push_back(x);
  std::mt19937_64 g(3);
  std::uniform_real_distribution<double> ue(-26.0, 16.5);
  for (int i = 0; i < 50000; ++i) xs.push_back(double(float(std::exp2(ue(g)))));
  for (double a : xs) {
    for (double x : {a, -a}) {
      const float f = float(x);
      ASSERT_EQ(double(f), x);  // every probe is a float
      ASSERT_EQ(fmt::f16_encode(f), nearest_code_bisect(kF16, grid, x)) << "x = " << x;
    }
  }
  EXPECT_EQ(fmt::f16_encode(65520.0f), 0x7C00);
  EXPECT_EQ(fmt::f16_encode(65519.0f), 0x7BFF);
  EXPECT_EQ(fmt::f16_encode(float(pow2(-25))), 0x0000);        // tie 0 / 2^-24 -> 0
  EXPECT_EQ(fmt::f16_encode(float(3 * pow2(-25))), 0x0002);    // tie 1 / 2 (x 2^-24) -> 2
}

TEST(Formats, EncodeBf16EdgesAndRandom) {
  const auto grid = positive_grid(kBf16);
  std::vector<double> xs = edge_values(grid, true);
  std::mt19937_64 g(4);
  std::uniform_int_distribution<uint32_t> ub(0, 0x7F7FFFFFu);  // random finite float bits
  for (int i = 0; i < 50000; ++i) xs.push_back(double(fmt::float_of(ub(g))));
  const float fmax = std::numeric_limits<float>::max();
  xs.push_back(double(fmax));
  for (double a : xs) {
    if (!(a <= double(fmax))) continue;  // midpoint above the bf16 max may exceed float
    for (double x : {a, -a}) {
      const float f = float(x);
      ASSERT_EQ(double(f), x);
      ASSERT_EQ(fmt::bf16_encode(f), nearest_code_bisect(kBf16, grid, x)) << "x = " << x;
    }
  }
  // 1 + 2^-8 is the tie between 1 (0x3F80) and 1 + 2^-7 (0x3F81) -> 0x3F80.
  EXPECT_EQ(fmt::bf16_encode(1.0f + 1.0f / 256), 0x3F80);
  EXPECT_EQ(fmt::bf16_encode(1.0f + 3.0f / 256), 0x3F82);
  EXPECT_EQ(fmt::bf16_encode(fmax), 0x7F80);  // beyond the bf16 max midpoint -> inf
}

// ---------------------------------------------------------------------------------------
// UE8M0 scale exponent.

int scale_exp_by_definition(double amax, double floor, double qmax) {
  const double a = std::max(amax, floor);
  double s = pow2(-300);  // qmax * 2^e for e = -300, -299, ... (each step exact)
  for (int e = -300; e <= 300; ++e, s *= 2.0)
    if (qmax * s >= a) return e;
  return 1000;
}

TEST(Formats, Ue8m0ScaleExpExactPowersAndOneUlpEitherSide) {
  for (double qmax : {kFp8Max, kFp4Max}) {
    const double floor = qmax == kFp8Max ? kFp8AmaxFloor : kFp4AmaxFloor;
    const int kmin = qmax == kFp8Max ? -22 : -126;
    for (int k = kmin; k <= 100; ++k) {
      const double a = qmax * pow2(k);
      const double lo = std::nextafter(a, 0.0), hi = std::nextafter(a, 1e300);
      for (double x : {a, lo, hi}) {
        const int want = scale_exp_by_definition(x, floor, qmax);
        ASSERT_EQ(fmt::ue8m0_scale_exp(x, floor, qmax), want) << "qmax " << qmax << " amax " << x;
      }
      if (a > floor) {
        EXPECT_EQ(fmt::ue8m0_scale_exp(a, floor, qmax), k);
        EXPECT_EQ(fmt::ue8m0_scale_exp(hi, floor, qmax), k + 1);
        EXPECT_EQ(fmt::ue8m0_scale_exp(lo, floor, qmax), k);
      }
    }
    // Float neighbours too (the quantisers see float amax values).
    for (int k = kmin + 1; k <= 100; ++k) {
      const float a = float(qmax * pow2(k));
      for (float x : {a, std::nextafter(a, 0.0f), std::nextafter(a, 3e38f)})
        ASSERT_EQ(fmt::ue8m0_scale_exp(x, floor, qmax), scale_exp_by_definition(x, floor, qmax))
            << x;
    }
  }
}

TEST(Formats, Ue8m0ScaleExpFloorAndRandom) {
  // The floor: amax = 0 or anything below it uses the floor.
  EXPECT_EQ(fmt::ue8m0_scale_exp(0.0, kFp8AmaxFloor, kFp8Max), -22);  // 448 * 2^-22 >= 1e-4
  EXPECT_EQ(fmt::ue8m0_scale_exp(1e-9, kFp8AmaxFloor, kFp8Max), -22);
  EXPECT_EQ(fmt::ue8m0_scale_exp(0.0, kFp4AmaxFloor, kFp4Max), -126);
  EXPECT_EQ(fmt::ue8m0_scale_exp(1e-40, kFp4AmaxFloor, kFp4Max), -126);
  std::mt19937_64 g(5);
  std::uniform_real_distribution<double> ue(-140.0, 120.0);
  for (int i = 0; i < 20000; ++i) {
    const double a = std::exp2(ue(g));
    for (double qmax : {kFp8Max, kFp4Max}) {
      const double floor = qmax == kFp8Max ? kFp8AmaxFloor : kFp4AmaxFloor;
      ASSERT_EQ(fmt::ue8m0_scale_exp(a, floor, qmax), scale_exp_by_definition(a, floor, qmax))
          << a;
    }
  }
}

}  // namespace
