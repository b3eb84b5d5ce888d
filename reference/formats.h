// Number formats of the V4 checkpoints and caches: scalar encode/decode.
//
//   bf16      1-8-7,  round to nearest even (RNE), NaN kept
//   f16       1-5-10 IEEE half, RNE, overflow to inf
//   e4m3fn    1-4-3, bias 7, no inf, max 448, NaN = 0x7F/0xFF, subnormal step 2^-9
//   e2m1      1-2-1 (FP4), magnitudes {0, 0.5, 1, 1.5, 2, 3, 4, 6}, sign = bit 3
//   ue8m0     8-bit exponent only: byte b -> 2^(b-127); 0xFF = NaN
//
// Encoders take finite inputs already scaled into range and saturate at the format's
// largest finite value (the quantisers clamp first, as the official kernels do).
// Rounding is RNE: ties go to the code whose last bit is 0. The arithmetic is exact:
// dividing by a power-of-two step and rounding to an integer loses nothing.
// Spec: docs/v4-architecture.md §2.2-§2.4, §7 (encodings).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace dsv4::fmt {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- bf16 -------------------------------------------------------------------------------
inline uint16_t bf16_encode(float f) {
  uint32_t u = bits_of(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN, sign kept
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_decode(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }
inline float bf16_round(float f) { return bf16_decode(bf16_encode(f)); }

// Exponent of a finite, non-zero, normal double (floor(log2 |a|)), read from its bits.
inline int exponent_of(double a) {
  uint64_t u;
  std::memcpy(&u, &a, 8);
  return int((u >> 52) & 0x7FF) - 1023;
}
// 2^e for e in the normal double range, built from its bits.
inline double pow2(int e) {
  const uint64_t u = uint64_t(e + 1023) << 52;
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}

// Rounds |a| (finite, >= 0, a float value or 0) to the grid of a binary format with
// `mant_bits` explicit mantissa bits whose smallest normal exponent is `min_exp`, RNE. Values
// below 2^min_exp fall on the subnormal grid of step 2^(min_exp - mant_bits). Bit-level
// exponent and step (no libm calls): every float is a normal double.
inline double round_to_format(double a, int mant_bits, int min_exp) {
  if (a == 0.0) return 0.0;
  int e = exponent_of(a);
  if (e < min_exp) e = min_exp;
  const double step = pow2(e - mant_bits);
  return std::nearbyint(a / step) * step;  // exact division; FE_TONEAREST: ties to even
}

// Rounds a finite double straight to the nearest BF16 value (RNE), without going through
// float (which would round twice); overflow goes to +-inf as bf16_encode does.
inline double bf16_round_value(double x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  constexpr double kBf16Max = 3.3895313892515355e38;  // (2 - 2^-7) * 2^127
  const double q = round_to_format(std::fabs(x), 7, -126);
  const double r = q > kBf16Max ? std::numeric_limits<double>::infinity() : q;
  return std::signbit(x) ? -r : r;
}

// ---- f16 --------------------------------------------------------------------------------
inline uint16_t f16_encode(float f) {
  const uint16_t sign = (bits_of(f) >> 16) & 0x8000u;
  if (std::isnan(f)) return sign | 0x7E00u;
  const double a = std::fabs(static_cast<double>(f));
  const double q = round_to_format(a, 10, -14);
  if (q >= 65536.0) return sign | 0x7C00u;  // overflow (65520 and up round here) -> inf
  if (q == 0.0) return sign;
  const int e = std::ilogb(q);
  if (e < -14) return sign | static_cast<uint16_t>(q * 16777216.0);  // subnormal, step 2^-24
  const uint16_t mant = static_cast<uint16_t>(std::ldexp(q, 10 - e) - 1024.0);
  return sign | static_cast<uint16_t>((e + 15) << 10) | mant;
}
inline float f16_decode(uint16_t h) {
  const int sign = (h & 0x8000u) ? -1 : 1;
  const int ex = (h >> 10) & 0x1F;
  const int mant = h & 0x3FF;
  if (ex == 0x1F) {
    return mant ? std::numeric_limits<float>::quiet_NaN()
                : sign * std::numeric_limits<float>::infinity();
  }
  const double v = ex == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, ex - 25);
  return static_cast<float>(sign * v);
}

// ---- e4m3fn (FP8) -----------------------------------------------------------------------
inline constexpr int kE4m3MinExp = -6;  // smallest normal 2^-6; subnormal step 2^-9

inline float e4m3_decode(uint8_t c) {
  const float sign = (c & 0x80) ? -1.0f : 1.0f;
  const int ex = (c >> 3) & 0xF;
  const int mant = c & 0x7;
  if (ex == 0xF && mant == 0x7) return std::numeric_limits<float>::quiet_NaN();
  const double v = ex == 0 ? std::ldexp(mant, -9) : std::ldexp(8 + mant, ex - 10);
  return sign * static_cast<float>(v);
}
// Finite x; |x| > 448 saturates to 448. NaN encodes as 0x7F.
inline uint8_t e4m3_encode(double x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  double q = round_to_format(std::fabs(x), 3, kE4m3MinExp);
  if (q > 448.0) q = 448.0;
  if (q == 0.0) return sign;
  const int e = std::ilogb(q);
  if (e < kE4m3MinExp) return sign | static_cast<uint8_t>(std::ldexp(q, 9));
  const int mant = static_cast<int>(std::ldexp(q, 3 - e)) - 8;
  return sign | static_cast<uint8_t>(((e + 7) << 3) | mant);
}
// Value-level round trip of a finite x: the same as e4m3_decode(e4m3_encode(x)), without
// building the code (the quantisers' hot loop).
inline double e4m3_round(double x) {
  double q = round_to_format(std::fabs(x), 3, kE4m3MinExp);
  if (q > 448.0) q = 448.0;
  return std::signbit(x) ? -q : q;
}

// ---- e2m1 (FP4) -------------------------------------------------------------------------
inline float e2m1_decode(uint8_t c) {
  static constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return (c & 0x8) ? -kMag[c & 0x7] : kMag[c & 0x7];
}
// Finite x; |x| > 6 saturates to 6. Low nibble only.
inline uint8_t e2m1_encode(double x) {
  const uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
  double q = round_to_format(std::fabs(x), 1, 0);  // normal from 2^0, subnormal step 0.5
  if (q > 6.0) q = 6.0;
  if (q == 0.0) return sign;
  if (q < 1.0) return sign | 0x1;  // 0.5
  const int e = std::ilogb(q);
  const int mant = static_cast<int>(std::ldexp(q, 1 - e)) - 2;
  return sign | static_cast<uint8_t>(((e + 1) << 1) | mant);
}
// Value-level round trip of a finite x: e2m1_decode(e2m1_encode(x)).
inline double e2m1_round(double x) {
  double q = round_to_format(std::fabs(x), 1, 0);
  if (q > 6.0) q = 6.0;
  return std::signbit(x) ? -q : q;
}

// ---- ue8m0 (power-of-two scale) ---------------------------------------------------------
inline double ue8m0_decode(uint8_t b) {
  if (b == 0xFF) return std::numeric_limits<double>::quiet_NaN();
  return std::ldexp(1.0, static_cast<int>(b) - 127);
}
// The scale exponent of a block that UE8M0 cannot scale: its amax is infinite or NaN-free
// but beyond qmax * 2^127 (only double inputs get there). Its byte is 0xFF (NaN), so the
// whole block decodes to NaN, as the official kernels give (a scale of inf: x / inf, then
// code * inf).
inline constexpr int kUe8m0NanExp = 128;
// Exponent e in [-127, 127] -> byte; kUe8m0NanExp (or anything above 127) -> 0xFF.
inline uint8_t ue8m0_encode_exp(int e) { return e >= kUe8m0NanExp ? uint8_t(0xFF) : static_cast<uint8_t>(e + 127); }

// The smallest integer e with qmax * 2^e >= max(amax, floor), i.e. ceil(log2(amax/qmax)):
// the UE8M0 block scale of §2.3 / op-contract quant_fp8, quant_fp4. Exact: qmax * 2^e is
// representable, so the comparison decides exactly where a float log2 might not.
// kUe8m0NanExp when amax is infinite or needs e > 127.
inline int ue8m0_scale_exp(double amax, double amax_floor, double qmax) {
  const double a = amax > amax_floor ? amax : amax_floor;
  if (!(a <= std::ldexp(qmax, 127))) return kUe8m0NanExp;
  int e = std::ilogb(a / qmax) + 1;  // first guess, at most one too large
  while (std::ldexp(qmax, e - 1) >= a) --e;
  while (std::ldexp(qmax, e) < a) ++e;
  return e;
}

}  // namespace dsv4::fmt
