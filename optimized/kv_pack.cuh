// The deployment KV cache layout (model/kv_cache.h, layout fp8; docs/v4-architecture.md §4) on
// the GPU: float rows packed into the FP8 entry and the FP4 indexer key, byte for byte as the
// reference's fp8 stores write them (model/kv_cache.cc: Fp8RowStore with the V4 entry format,
// Fp4KeyStore), and decoded as those stores read them.
//
// V4 entry, d = kHeadDim = 512 (window and compressed rows), kFp8EntryBytes = 584 bytes:
//   bytes [0, 448)    e4m3fn codes of dims 0..447, blocks b = 0..6 of 64 dims
//   bytes [448, 455)  UE8M0 scale of block b at 448 + b
//   byte  455         padding, 0
//   bytes [456, 584)  dims 448..511 (the RoPE dims) in BF16 (RNE, NaN kept quiet), little-endian
// Per block of n values x (ref::fp8_encode_block, in double as there):
//   amax  = max |x| over the non-NaN values (std::max skips a NaN), 0 when none
//   e     = the smallest integer with 448 * 2^e >= max(amax, 1e-4); e = 128 (byte 0xFF, a NaN
//           scale: the whole block decodes to NaN) when amax is infinite
//   code  = e4m3_rne(clamp(x * 2^-e, -448, 448))   NaN x -> 0x7F (either sign)
//   scale byte = e + 127
// V4 indexer key, dI = kIndexerDim = 128, kFp4KeyBytes = 68 bytes:
//   bytes [0, 64)     e2m1 codes, two per byte: dim 2k in the low nibble, 2k + 1 in the high
//   bytes [64, 68)    UE8M0 scale of block b = 0..3 of 32 dims (ref::fp4_encode_block)
// with the same per-block rule (qmax 6, amax floor 6 * 2^-126). e2m1 has no NaN code: the
// reference's encoder is undefined for a NaN value (a float-to-int conversion of NaN); this
// codec writes the saturated code of the value's sign (0x7 / 0xF) there.
// Decoding: value = code * 2^(scale - 127) in double, rounded to float once (exact: at most 4
// significant bits); a 0xFF scale or a NaN code gives NaN; BF16 dims widen exactly.
//
// The codec below is DSV4_HD (host and device: the same source compiles for both, so host
// tests check the device's arithmetic against the reference's encoders without a device).
// Every step is exact except the one RNE onto the format's grid (rint of an exact quotient
// by a power-of-two step), as in reference/formats.h.
//
// Kernels (kv_pack.cu), one thread per (row, unit), kKvPackThreads per CUDA block:
//   pack_fp8_entries  units: the 7 FP8 blocks of a row (64 values each) and one unit for the
//                     pad byte and the 64 BF16 dims; x [R, 512] float -> out [R, 584] bytes
//   pack_fp4_keys     units: the 4 FP4 blocks of a row (32 values each); x [R, 128] -> [R, 68]
//   unpack_fp4_keys   one thread per code byte (two dims); [R, 68] bytes -> y [R, 128] float
// Row strides are in elements of the view (bytes for the packed views). Every pointer is a
// DEVICE pointer; shapes are checked on the host (dsv4::InputError); asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "optimized/attention.cuh"
#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4::cuda {

// The 68-byte FP4 indexer key (see above).
inline constexpr int64_t kFp4KeyCodeBytes = kIndexerDim / 2;               // 64
inline constexpr int64_t kFp4KeyBlocks = kIndexerDim / kFp4Block;          // 4
inline constexpr int64_t kFp4KeyBytes = kFp4KeyCodeBytes + kFp4KeyBlocks;  // 68
inline constexpr int64_t kFp8EntryBlocks = kNopeDim / kFp8KvBlock;         // 7
static_assert(kFp4KeyBytes == 68 && kIndexerDim % kFp4Block == 0 && kFp8EntryBlocks == 7,
              "kv_pack: the indexer key layout of model/kv_cache.h");

inline constexpr int kKvPackThreads = 256;

namespace kv_codec {

inline constexpr int kUe8m0NanExp = 128;  // no UE8M0 scale: byte 0xFF (fmt::kUe8m0NanExp)
inline constexpr uint8_t kUe8m0NanByte = 0xFF;
inline constexpr uint8_t kE4m3NanCode = 0x7F;
inline constexpr int kE4m3MantBits = 3, kE4m3MinExp = -6, kE4m3SubnormalShift = 9;  // step 2^-9
inline constexpr int kE2m1MantBits = 1, kE2m1MinExp = 0;                            // step 0.5

DSV4_HD inline uint64_t bits_of(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, 8);
  return u;
#endif
}
DSV4_HD inline double double_of(uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, 8);
  return x;
#endif
}
DSV4_HD inline uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
DSV4_HD inline float float_of(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

DSV4_HD inline bool is_nan(double x) {
  return (bits_of(x) & 0x7FFFFFFFFFFFFFFFull) > 0x7FF0000000000000ull;
}
DSV4_HD inline bool sign_bit(double x) {
  return (bits_of(x) >> 63) != 0;
}
DSV4_HD inline double abs_of(double x) {
  return double_of(bits_of(x) & 0x7FFFFFFFFFFFFFFFull);
}
DSV4_HD inline double quiet_nan() {
  return double_of(0x7FF8000000000000ull);
}
// floor(log2 |a|) of a finite, normal, non-zero double, from its bits.
DSV4_HD inline int exponent_of(double a) {
  return int((bits_of(a) >> 52) & 0x7FF) - 1023;
}
// 2^e for e in the normal double range, from its bits.
DSV4_HD inline double pow2(int e) {
  return double_of(uint64_t(e + 1023) << 52);
}
// Round half to even of a double (the default rounding mode on the host, rint on the device).
DSV4_HD inline double rne(double v) {
  return ::rint(v);
}

// fmt::ue8m0_scale_exp: the smallest e with qmax 2^e >= max(amax, floor); kUe8m0NanExp when
// that exceeds 127 (an infinite amax: float inputs never need more). The mantissas of a and
// qmax differ by a factor in (1/2, 2), so e is the exponent difference or one more.
DSV4_HD inline int scale_exp(double amax, double amax_floor, double qmax) {
  const double a = amax > amax_floor ? amax : amax_floor;
  if (!(a <= qmax * pow2(127))) return kUe8m0NanExp;
  int e = exponent_of(a) - exponent_of(qmax);
  if (qmax * pow2(e) < a) ++e;
  return e;
}
DSV4_HD inline uint8_t scale_byte(int e) {
  return e >= kUe8m0NanExp ? kUe8m0NanByte : uint8_t(e + 127);
}
DSV4_HD inline double scale_value(uint8_t b) {
  return b == kUe8m0NanByte ? quiet_nan() : pow2(int(b) - 127);
}

// fmt::round_to_format: |a| (finite, >= 0) onto a grid with mant_bits explicit mantissa bits,
// normal from 2^min_exp, subnormal step 2^(min_exp - mant_bits); RNE.
DSV4_HD inline double round_to_format(double a, int mant_bits, int min_exp) {
  if (a == 0.0) return 0.0;
  int e = exponent_of(a);
  if (e < min_exp) e = min_exp;
  const double step = pow2(e - mant_bits);
  return rne(a / step) * step;
}

// fmt::e4m3_encode: NaN -> 0x7F; |x| > 448 saturates; -0 and values rounding to 0 keep the sign.
DSV4_HD inline uint8_t e4m3_code(double x) {
  if (is_nan(x)) return kE4m3NanCode;
  const uint8_t sign = sign_bit(x) ? 0x80 : 0x00;
  double q = round_to_format(abs_of(x), kE4m3MantBits, kE4m3MinExp);
  if (q > kFp8Max) q = kFp8Max;
  if (q == 0.0) return sign;
  const int e = exponent_of(q);
  if (e < kE4m3MinExp) return sign | uint8_t(q * pow2(kE4m3SubnormalShift));
  const int mant = int(q * pow2(kE4m3MantBits - e)) - 8;
  return sign | uint8_t(((e + 7) << 3) | mant);
}
// fmt::e2m1_encode (low nibble); NaN -> the saturated code of its sign (see the header).
DSV4_HD inline uint8_t e2m1_code(double x) {
  const uint8_t sign = sign_bit(x) ? 0x8 : 0x0;
  if (is_nan(x)) return sign | 0x7;
  double q = round_to_format(abs_of(x), kE2m1MantBits, kE2m1MinExp);
  if (q > kFp4Max) q = kFp4Max;
  if (q == 0.0) return sign;
  if (q < 1.0) return sign | 0x1;  // 0.5
  const int e = exponent_of(q);
  const int mant = int(q * pow2(kE2m1MantBits - e)) - 2;
  return sign | uint8_t(((e + 1) << 1) | mant);
}
// fmt::bf16_encode: RNE on the bits; NaN made quiet with its sign kept.
DSV4_HD inline uint16_t bf16_code(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

DSV4_HD inline double e4m3_value(uint8_t c) {
  const int ex = (c >> 3) & 0xF, mant = c & 0x7;
  if (ex == 0xF && mant == 0x7) return quiet_nan();
  const double v = ex == 0 ? mant * pow2(-kE4m3SubnormalShift) : (8 + mant) * pow2(ex - 10);
  return (c & 0x80) ? -v : v;
}
DSV4_HD inline double e2m1_value(uint8_t c) {
  // Magnitudes {0, .5, 1, 1.5, 2, 3, 4, 6}: subnormal m * 0.5 for m < 2, else (2 + mantissa
  // bit) * 2^(exponent field - 2), from the 2 exponent bits and the 1 mantissa bit.
  const int m = c & 0x7, ex = m >> 1, mant = m & 1;
  const double v = ex == 0 ? 0.5 * mant : (2 + mant) * pow2(ex - 2);
  return (c & 0x8) ? -v : v;
}
DSV4_HD inline float bf16_value(uint16_t h) {
  return float_of(uint32_t(h) << 16);
}

// max |x| over n floats as std::max(amax, |x|) takes it: a NaN never replaces the running max.
DSV4_HD inline double block_amax(const float* x, int64_t n) {
  double amax = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = abs_of(double(x[i]));
    if (amax < a) amax = a;
  }
  return amax;
}
// std::clamp(v, -q, q): a NaN passes through.
DSV4_HD inline double clamp_sym(double v, double q) {
  return v < -q ? -q : (q < v ? q : v);
}

// ref::fp8_encode_block: n values -> n codes; returns the scale byte.
DSV4_HD inline uint8_t fp8_encode_block(const float* x, int64_t n, uint8_t* codes) {
  const int e = scale_exp(block_amax(x, n), kFp8AmaxFloor, kFp8Max);
  const double down = pow2(-e);  // x * 2^-e is exact in double (ldexp there)
  for (int64_t i = 0; i < n; ++i) codes[i] = e4m3_code(clamp_sym(double(x[i]) * down, kFp8Max));
  return scale_byte(e);
}
// ref::fp4_encode_block: n (even) values -> n / 2 bytes, dim 2k low nibble; returns the scale byte.
DSV4_HD inline uint8_t fp4_encode_block(const float* x, int64_t n, uint8_t* packed) {
  const int e = scale_exp(block_amax(x, n), kFp4AmaxFloor, kFp4Max);
  const double down = pow2(-e);
  for (int64_t k = 0; k < n / 2; ++k)
    packed[k] = uint8_t(e2m1_code(clamp_sym(double(x[2 * k]) * down, kFp4Max)) |
                        (e2m1_code(clamp_sym(double(x[2 * k + 1]) * down, kFp4Max)) << 4));
  return scale_byte(e);
}

// Unit u of a 584-byte entry: u < 7 the FP8 block u, u == 7 the pad byte and the BF16 dims.
DSV4_HD inline void pack_fp8_entry_unit(const float* row, int u, uint8_t* out) {
  if (u < kFp8EntryBlocks) {
    out[kNopeDim + u] = fp8_encode_block(row + u * kFp8KvBlock, kFp8KvBlock, out + u * kFp8KvBlock);
    return;
  }
  for (int64_t b = kNopeDim + kFp8EntryBlocks; b < kFp8EntryRopeOffset; ++b) out[b] = 0;
  for (int64_t i = 0; i < kRopeDim; ++i) {
    const uint16_t h = bf16_code(row[kNopeDim + i]);
    out[kFp8EntryRopeOffset + 2 * i] = uint8_t(h & 0xFF);
    out[kFp8EntryRopeOffset + 2 * i + 1] = uint8_t(h >> 8);
  }
}
// A whole entry (host use: tests, download).
DSV4_HD inline void pack_fp8_entry(const float* row, uint8_t* out) {
  for (int u = 0; u <= kFp8EntryBlocks; ++u) pack_fp8_entry_unit(row, u, out);
}
DSV4_HD inline void unpack_fp8_entry(const uint8_t* in, float* row) {
  for (int64_t i = 0; i < kNopeDim; ++i)
    row[i] = float(e4m3_value(in[i]) * scale_value(in[kNopeDim + i / kFp8KvBlock]));
  for (int64_t i = 0; i < kRopeDim; ++i)
    row[kNopeDim + i] = bf16_value(uint16_t(in[kFp8EntryRopeOffset + 2 * i] |
                                            (uint16_t(in[kFp8EntryRopeOffset + 2 * i + 1]) << 8)));
}
// Block u of a 68-byte key.
DSV4_HD inline void pack_fp4_key_unit(const float* row, int u, uint8_t* out) {
  out[kFp4KeyCodeBytes + u] =
      fp4_encode_block(row + u * kFp4Block, kFp4Block, out + u * kFp4Block / 2);
}
DSV4_HD inline void pack_fp4_key(const float* row, uint8_t* out) {
  for (int u = 0; u < kFp4KeyBlocks; ++u) pack_fp4_key_unit(row, u, out);
}
// Code byte k of a key -> dims 2k, 2k + 1.
DSV4_HD inline void unpack_fp4_key_byte(const uint8_t* in, int64_t k, float* row) {
  const double s = scale_value(in[kFp4KeyCodeBytes + 2 * k / kFp4Block]);
  row[2 * k] = float(e2m1_value(in[k] & 0xF) * s);
  row[2 * k + 1] = float(e2m1_value(in[k] >> 4) * s);
}
DSV4_HD inline void unpack_fp4_key(const uint8_t* in, float* row) {
  for (int64_t k = 0; k < kFp4KeyCodeBytes; ++k) unpack_fp4_key_byte(in, k, row);
}

}  // namespace kv_codec

// x [R, 512] float -> out [R, 584] bytes (the V4 entry). R may be 0.
void pack_fp8_entries(View2<const float> x, View2<uint8_t> out, cudaStream_t stream = 0);
// x [R, 128] float -> out [R, 68] bytes (the V4 indexer key). R may be 0.
void pack_fp4_keys(View2<const float> x, View2<uint8_t> out, cudaStream_t stream = 0);
// keys [R, 68] bytes -> y [R, 128] float. R may be 0.
void unpack_fp4_keys(View2<const uint8_t> keys, View2<float> y, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
