// The float fast paths shared by quant_fp8 and quant_fp4: the same round trip as their double
// path, bit for bit, in float arithmetic that vectorises, and an AVX2 kernel for whole blocks
// of 32, 64 and 128 that gets the same bits with fewer instructions. Internal to reference/.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

// ---- the AVX2 block kernel: the same bits with fewer instructions -------------------------
// For blocks of 32, 64 or 128 floats (FP4; FP8 KV; FP8 activations) whose amax is finite and
// below 2^(127 - kDrop) (else the float path above decides, NaN included). Per block:
//   amax     a tree of integer maxima over the |x| bits (non-negative floats order as their
//            bits; a NaN or an infinity is the largest pattern, so one compare sends its block
//            to the float path)
//   e        from the bits of amax (scale_exp_of_bits), then max(e, e_floor): the scale is
//            monotone in amax, so the floor is a maximum on e
//   y        round |x| on the grid scaled by 2^e directly: the step there is 2^(E - mbits) for
//            |x| = 1.m 2^E with E >= min_exp + e, else 2^(min_exp + e - mbits); the float add
//            of magic = step 2^23 (an exponent field, an integer maximum and add) rounds |x|
//            to a multiple of the step, RNE, and subtracting it back is exact. This is
//            2^e round_to_grid(x 2^-e) bit for bit: x 2^-e is exact wherever it is not below
//            2^-126, and there both give 0; |x| 2^-e <= qmax, so the clamp never applies; the
//            magic stays finite for the amax bound above. The sign is put back with an or.
// kLimBits: qmax as float bits; kNormBits: the smallest normal of the format; kDrop: float
// mantissa bits dropped (23 - the format's).
// In L2 (a 256 KiB input, one thread): 36 -> 13 ns an FP8 block of 64, 23 -> 6 ns an FP4 block
// of 32, against the float path; at the benchmark's 64 MiB the op then runs at about half
// its in-cache rate, bound by memory.

// ceil(log2(amax / qmax)) for amax = float_of(m) normal and finite, from the bits: with
// amax = 1.f 2^E and qmax = 1.g 2^G, it is E - G when f <= g, else E - G + 1, an add that
// carries into the exponent field exactly when f > g. For m = 0 or a subnormal it is at most
// 1 - 127 - G, below the scale of any floor in use (1e-4 for FP8, 6 2^-126 for FP4).
template <uint32_t kLimBits>
constexpr int scale_exp_of_bits(uint32_t m) {
  return int((m + (0x7FFFFFu - (kLimBits & 0x7FFFFFu))) >> 23) - int(kLimBits >> 23);
}

#if defined(__AVX2__)
// One block of kVecs x 8 floats x -> y (y may be x); false (nothing written) when amax is not
// below 2^(127 - kDrop) (NaN and infinity included). e_floor: the scale exponent of the floor.
template <uint32_t kLimBits, uint32_t kNormBits, int kDrop, int kVecs>
inline bool round_trip_block_avx2(const float* x, float* y, int e_floor) {
  // amax bits from here on would make the magic (amax's exponent + kDrop) overflow.
  constexpr uint32_t kAmaxLimit = uint32_t(255 - kDrop) << 23;
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), exp_mask = _mm256_set1_epi32(0x7F800000);
  // Every loop over the kVecs packets is unrolled so that the arrays live in registers: GCC's
  // -O2 keeps them on the stack otherwise (37 ns a block of 64 in L2 instead of 12-13 ns).
  __m256i v[kVecs], a[kVecs], m[kVecs];
#pragma GCC unroll 16
  for (int k = 0; k < kVecs; ++k) {
    v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * k));
    m[k] = a[k] = _mm256_and_si256(v[k], abs_mask);
  }
  // amax: a tree of maxima over the packets, then across the 8 lanes of one.
#pragma GCC unroll 4
  for (int w = kVecs / 2; w >= 1; w /= 2)
#pragma GCC unroll 8
    for (int k = 0; k < w; ++k) m[k] = _mm256_max_epu32(m[k], m[k + w]);
  __m128i h = _mm_max_epu32(_mm256_castsi256_si128(m[0]), _mm256_extracti128_si256(m[0], 1));
  h = _mm_max_epu32(h, _mm_shuffle_epi32(h, 0x4E));
  h = _mm_max_epu32(h, _mm_shuffle_epi32(h, 0xB1));
  const uint32_t amax = uint32_t(_mm_cvtsi128_si32(h));
  if (amax >= kAmaxLimit) return false;
  const int e = std::max(scale_exp_of_bits<kLimBits>(amax), e_floor);
  const __m256i norm = _mm256_set1_epi32(int(kNormBits + (uint32_t(e) << 23)));
  const __m256i drop = _mm256_set1_epi32(kDrop << 23);
#pragma GCC unroll 16
  for (int k = 0; k < kVecs; ++k) {
    const __m256 magic = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_max_epu32(_mm256_and_si256(v[k], exp_mask), norm), drop));
    const __m256 r = _mm256_sub_ps(_mm256_add_ps(_mm256_castsi256_ps(a[k]), magic), magic);
    const __m256 s = _mm256_castsi256_ps(_mm256_andnot_si256(abs_mask, v[k]));
    _mm256_storeu_ps(y + 8 * k, _mm256_or_ps(r, s));
  }
  return true;
}
#endif

// One block through the fastest path that takes it: the AVX2 kernel, else the float path;
// false when neither does (an infinity: the double path decides). e_floor: the scale of
// amax_floor (fmt::ue8m0_scale_exp(amax_floor, amax_floor, qmax)).
template <uint32_t kLimBits, uint32_t kNormBits, int kDrop>
inline bool fast_block(const float* x, float* y, int64_t n, double amax_floor, double qmax, float magic,
                       int e_floor) {
#if defined(__AVX2__)
  switch (n) {
    case 32:
      if (round_trip_block_avx2<kLimBits, kNormBits, kDrop, 4>(x, y, e_floor)) return true;
      break;
    case 64:
      if (round_trip_block_avx2<kLimBits, kNormBits, kDrop, 8>(x, y, e_floor)) return true;
      break;
    case 128:
      if (round_trip_block_avx2<kLimBits, kNormBits, kDrop, 16>(x, y, e_floor)) return true;
      break;
    default:
      break;
  }
#else
  (void)e_floor;
#endif
  return round_trip_block<kLimBits, kNormBits, kDrop>(x, y, n, amax_floor, qmax, magic);
}

}  // namespace dsv4::ref::quant_detail
