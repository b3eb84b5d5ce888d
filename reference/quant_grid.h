// The float fast path shared by quant_fp8 and quant_fp4: the same round trip as their double
// path, bit for bit, in float arithmetic that vectorises. Internal to reference/.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "reference/formats.h"

namespace dsv4::ref::quant_detail {

// ---- the float fast path: bit for bit the double path, vectorised --------------------------
// Every step of the round trip is exact, so float arithmetic gives the double path's bits:
//   v = x 2^-e            a power-of-two scaling (a value small enough to lose bits in float
//                         rounds to 0 on the grid either way)
//   clamp |v| to qmax     on the bits (non-negative floats order as their bits; NaN kept)
//   round to the grid     normal range (|v| >= 2^min_exp): RNE of the float's mantissa to the
//                         format's bits, an integer add and mask; below it, multiples of the
//                         subnormal step: the float addition of `magic` (whose ulp is the step)
//                         rounds there RNE, and subtracting it back is exact
//   y = q 2^e             exact (q has at most 4 significant bits)
// Integer selects instead of branches so that the loop vectorises (float compares may trap).
// The block scale exponent (fmt::ue8m0_scale_exp) from the exponents of amax and qmax: the
// ratio of the mantissas is in (1/2, 2), so ceil(log2(amax / qmax)) is one of two values,
// told apart by one exact product.
// kLimBits: qmax as float bits; kNormBits: the smallest normal of the format; kDrop: float
// mantissa bits dropped (23 - the format's); magic: a float whose ulp is the subnormal step.
template <uint32_t kLimBits, uint32_t kNormBits, int kDrop>
inline float round_to_grid(float v, float magic) {
  const uint32_t sign = fmt::bits_of(v) & 0x80000000u;
  uint32_t ua = fmt::bits_of(v) & 0x7FFFFFFFu;
  const uint32_t over = -uint32_t((ua > kLimBits) & (ua <= 0x7F800000u));
  ua = (kLimBits & over) | (ua & ~over);
  uint32_t un = ua + ((1u << (kDrop - 1)) - 1u) + ((ua >> kDrop) & 1u);
  un &= ~((1u << kDrop) - 1u);
  const float a = fmt::float_of(ua);
  const uint32_t us = fmt::bits_of((a + magic) - magic);
  const uint32_t normal = -uint32_t(ua >= kNormBits);
  // A NaN passes through unchanged: the rounding add above can carry a large payload into
  // the sign bit (0x7FFFFFFF -> -0), so it must not reach the result.
  const uint32_t nan = -uint32_t((fmt::bits_of(v) & 0x7FFFFFFFu) > 0x7F800000u);
  return fmt::float_of(((((un & normal) | (us & ~normal)) | sign) & ~nan) | (fmt::bits_of(v) & nan));
}

// max |x| over n floats, NaN skipped (as std::max(amax, |x|) skips it), as a double.
inline double amax_float(const float* x, int64_t n) {
  uint32_t m = 0;
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = fmt::bits_of(x[i]) & 0x7FFFFFFFu;
    m = std::max(m, u & -uint32_t(u <= 0x7F800000u));
  }
  return double(fmt::float_of(m));
}

inline int scale_exp(double amax, double amax_floor, double qmax) {
  const double a = amax > amax_floor ? amax : amax_floor;
  int e = fmt::exponent_of(a) - fmt::exponent_of(qmax);
  if (qmax * fmt::pow2(e) < a) ++e;
  return e;
}

// One block of n floats x -> y through the format: false (nothing written) when the block
// holds an infinity (the double path's scale exponent is then out of range and it decides).
// Format: kLimBits = qmax as float bits, kNormBits = its smallest normal as float bits, kDrop =
// float mantissa bits dropped, magic = a float whose ulp is the subnormal step.
template <uint32_t kLimBits, uint32_t kNormBits, int kDrop>
inline bool round_trip_block(const float* x, float* y, int64_t n, double amax_floor, double qmax, float magic) {
  const double amax = amax_float(x, n);
  if (!std::isfinite(amax)) return false;
  const int e = scale_exp(amax, amax_floor, qmax);
  const float down = float(fmt::pow2(-e)), up = float(fmt::pow2(e));
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = round_to_grid<kLimBits, kNormBits, kDrop>(x[i] * down, magic) * up;
  return true;
}

}  // namespace dsv4::ref::quant_detail
