// Compact expert weights (optimized/compact_weights.cuh) and cuda::moe_compact
// (optimized/moe.cuh). Spec: docs/v4-architecture.md §7 (FP4 e2m1 with a UE8M0 scale per 32
// inputs, element 2j in the low nibble; FP8 e4m3 with 128x128 UE8M0 blocks), §3.2.
//
// The oracle is this file's own decode of the checkpoint layout, written from §7 (never the
// code under test): W[r, c] = e2m1(nibble) * 2^(scale byte - 127), or e4m3(byte) * 2^(..).
//   host (run everywhere):
//     * re-encoding the floats of random checkpoint tensors gives back the same values bit for
//       bit (signed zeros included), over every code, scale bytes 0 .. 254, partial blocks and
//       odd widths; a block stored with the smallest scale gets back its own bytes; a block
//       stored with a larger scale than needed (its largest code magnitude <= 3) gets back
//       the smallest scale, byte max(0, b - d) for d = 1, 2, 3 (largest magnitude 2-3, 1-1.5,
//       0.5), and an all-zero block byte 0;
//     * non-representable weights (uniform floats, BF16-rounded floats, one element one ulp
//       off, a value between grid points, NaN / inf) are refused with InputError naming the
//       tensor, the block and the element;
//     * the byte accounting and moe_compact's host-side validation.
//   device (label gpu, skip without one):
//     * dequant_fp4 / dequant_fp8 == the host decode bitwise (both FP4 paths: 8 codes per
//       thread and 1 byte per thread), poisoned outputs with canaries;
//     * moe_compact == moe on the dequantised FP32 weights BITWISE (y, chosen ids, route
//       weights), at v4-tiny shapes (model/config.cc preset "v4-tiny": D 256, E 8, k 2,
//       I 128, a hash-routed and a score-routed layer, shared expert FP8 / FP32 / none,
//       act_quant on and off) and a V4-Flash slice (D 4096, I 2048, k 6, 8 experts); canaries
//       and a bitwise rerun.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "optimized/compact_weights.cuh"
#include "optimized/device.cuh"
#include "optimized/moe.cuh"
#include "reference/errors.h"
#include "reference/moe.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/random.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;

constexpr int64_t kB4 = 32;             // §7: FP4 inputs per scale
constexpr int64_t kB8 = 128;            // §7: FP8 block edge
constexpr int kMaxFiniteFp4Byte = 252;  // 6 * 2^(252 - 127) = 1.5 * 2^127 < FLT_MAX

// ---- the oracle decode (§7) -------------------------------------------------------------

float scale_of(uint8_t b) {
  return float(std::ldexp(1.0, int(b) - 127));
}  // b < 255

float e2m1_of(uint8_t c) {
  static constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return (c & 8) ? -kMag[c & 7] : kMag[c & 7];
}

// e4m3fn: sign bit 7, exponent 6:3 (bias 7), mantissa 2:0; exponent 0: mant 2^-9.
float e4m3_of(uint8_t c) {
  const int ex = (c >> 3) & 15, mant = c & 7;
  const double v = ex == 0 ? std::ldexp(mant, -9) : std::ldexp(8 + mant, ex - 10);
  return (c & 0x80) ? -float(v) : float(v);
}

uint8_t nibble(const std::vector<uint8_t>& codes, int64_t bpr, int64_t r, int64_t c) {
  const uint8_t byte = codes[size_t(r * bpr + c / 2)];
  return (c % 2) ? uint8_t(byte >> 4) : uint8_t(byte & 15);
}

std::vector<float> decode_fp4(const std::vector<uint8_t>& codes, const std::vector<uint8_t>& scales,
                              int64_t rows, int64_t cols) {
  const int64_t bpr = (cols + 1) / 2, spr = (cols + kB4 - 1) / kB4;
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      w[size_t(r * cols + c)] =
          e2m1_of(nibble(codes, bpr, r, c)) * scale_of(scales[size_t(r * spr + c / kB4)]);
  return w;
}

std::vector<float> decode_fp8(const std::vector<uint8_t>& codes, const std::vector<uint8_t>& scales,
                              int64_t rows, int64_t cols, int64_t B) {
  const int64_t sc = (cols + B - 1) / B;
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      w[size_t(r * cols + c)] =
          e4m3_of(codes[size_t(r * cols + c)]) * scale_of(scales[size_t((r / B) * sc + c / B)]);
  return w;
}

// ---- random checkpoint tensors ----------------------------------------------------------

// How much larger than needed a block's scale is, from its largest code magnitude
// (magnitude codes 6, 7 = 4, 6: 0; 4, 5 = 2, 3: 1; 2, 3 = 1, 1.5: 2; 1 = 0.5: 3).
int excess_of(int max_mag_code) {
  static constexpr int kExcess[8] = {0, 3, 2, 2, 1, 1, 0, 0};
  return kExcess[max_mag_code];
}

// A checkpoint FP4 tensor [rows, cols]: per block a kind (minimal scale, 1-3 steps too large,
// all zero), codes of magnitude up to the kind's bound (one element at the bound), any sign
// (so -0 too), a scale byte up to the largest whose values stay finite (edges 0 and max
// often); the padding nibble of an odd row is 0. want_scales: the bytes the exact re-encoding
// must produce.
struct Fp4Tensor {
  int64_t rows, cols;
  std::vector<uint8_t> codes, scales, want_scales;
  int64_t minimal = 0, excess = 0, zero = 0;  // block counts by kind
};

Fp4Tensor make_fp4(int64_t rows, int64_t cols, uint64_t seed, int bias_byte = -1) {
  std::mt19937_64 g(seed);
  const int64_t bpr = (cols + 1) / 2, spr = (cols + kB4 - 1) / kB4;
  Fp4Tensor t{rows, cols, std::vector<uint8_t>(size_t(rows * bpr), 0),
              std::vector<uint8_t>(size_t(rows * spr)), std::vector<uint8_t>(size_t(rows * spr))};
  // kind -> the block's largest magnitude code, in [lo, hi]: minimal (4 or 6), one, two,
  // three steps too large (2 or 3; 1 or 1.5; 0.5), all zero.
  static constexpr int kLo[5] = {6, 4, 2, 1, 0}, kHi[5] = {7, 5, 3, 1, 0};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < spr; ++b) {
      const int kind = g() % 2 ? 0 : int(g() % 4) + 1;  // half minimal
      const int bound = kLo[kind] + int(g() % uint64_t(kHi[kind] - kLo[kind] + 1));
      const int64_t c0 = b * kB4, c1 = std::min(cols, c0 + kB4);
      const int64_t at = c0 + int64_t(g() % uint64_t(c1 - c0));  // the element at the bound
      for (int64_t c = c0; c < c1; ++c) {
        const int mag = c == at ? bound : int(g() % uint64_t(bound + 1));
        const uint8_t code = uint8_t(mag | ((g() & 1) ? 8 : 0));
        t.codes[size_t(r * bpr + c / 2)] |= uint8_t(code << (4 * (c % 2)));
      }
      // Largest byte keeping bound * 2^(byte - 127) finite: 252 + the excess, at most 254.
      const int excess = bound == 0 ? 0 : excess_of(bound);
      const int top = std::min(kMaxFiniteFp4Byte + excess, 254);
      int byte = int(g() % uint64_t(top + 1));
      if (g() % 8 == 0) byte = (g() & 1) ? 0 : top;
      if (bias_byte >= 0) byte = bias_byte + int(g() % 3) - 1;
      t.scales[size_t(r * spr + b)] = uint8_t(byte);
      t.want_scales[size_t(r * spr + b)] =
          bound == 0 ? uint8_t(0) : uint8_t(std::max(0, byte - excess));
      (bound == 0 ? t.zero : excess == 0 ? t.minimal : t.excess) += 1;
    }
  return t;
}

// A checkpoint FP8 tensor [rows, cols] with B x B blocks: per block codes up to a magnitude
// bound (minimal or 1-3 exponent steps too large), never the NaN codes, scale bytes keeping
// the values finite (bias_byte >= 0: that byte +- 1).
struct Fp8Tensor {
  int64_t rows, cols, B;
  std::vector<uint8_t> codes, scales;
};

Fp8Tensor make_fp8(int64_t rows, int64_t cols, int64_t B, uint64_t seed, int bias_byte = -1) {
  std::mt19937_64 g(seed);
  const int64_t sr = (rows + B - 1) / B, sc = (cols + B - 1) / B;
  Fp8Tensor t{rows, cols, B, std::vector<uint8_t>(size_t(rows * cols)),
              std::vector<uint8_t>(size_t(sr * sc))};
  constexpr int kMaxCode = 0x7E;  // 448
  for (int64_t bi = 0; bi < sr; ++bi)
    for (int64_t bj = 0; bj < sc; ++bj) {
      const int steps = int(g() % 4);  // the bound 448 / 2^steps (codes 8 per binade)
      const int bound = kMaxCode - 8 * steps;
      int byte = int(g() % 246);  // 448 2^(byte - 127) finite for byte <= 246
      if (bias_byte >= 0) byte = bias_byte + int(g() % 3) - 1;
      t.scales[size_t(bi * sc + bj)] = uint8_t(byte);
      for (int64_t r = bi * B; r < std::min(rows, (bi + 1) * B); ++r)
        for (int64_t c = bj * B; c < std::min(cols, (bj + 1) * B); ++c)
          t.codes[size_t(r * cols + c)] =
              uint8_t(int(g() % uint64_t(bound + 1)) | ((g() & 1) ? 0x80 : 0));
    }
  return t;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// ---- host: exact re-encoding ------------------------------------------------------------

TEST(CompactWeightsFp4, ReencodingGivesBackTheSameValuesBitwise) {
  const int64_t shapes[][2] = {{64, 256}, {5, 37}, {4, 33}, {3, 40}, {2, 1}, {16, 2048}};
  int64_t minimal = 0, excess = 0, zero = 0, seed = 10;
  for (const auto& s : shapes) {
    const int64_t rows = s[0], cols = s[1];
    SCOPED_TRACE(::testing::Message() << "[" << rows << ", " << cols << "]");
    const Fp4Tensor t = make_fp4(rows, cols, uint64_t(seed++));
    minimal += t.minimal, excess += t.excess, zero += t.zero;
    const std::vector<float> w = decode_fp4(t.codes, t.scales, rows, cols);
    const cuda::Fp4HostMatrix m = cuda::encode_fp4_exact(w.data(), rows, cols, "w");
    ASSERT_EQ(m.rows, rows);
    ASSERT_EQ(m.cols, cols);
    ASSERT_EQ(m.codes.size(), t.codes.size());
    ASSERT_EQ(m.scales.size(), t.scales.size());
    EXPECT_TRUE(test::bitwise_equal(decode_fp4(m.codes, m.scales, rows, cols), w));
    EXPECT_EQ(m.scales, t.want_scales) << "not the smallest UE8M0 scale of each block";
    // Minimal blocks come back byte for byte (codes too), the padding nibble stays 0.
    const int64_t spr = (cols + kB4 - 1) / kB4, bpr = (cols + 1) / 2;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        if (t.want_scales[size_t(r * spr + c / kB4)] != t.scales[size_t(r * spr + c / kB4)])
          continue;
        ASSERT_EQ(nibble(m.codes, bpr, r, c), nibble(t.codes, bpr, r, c))
            << "element [" << r << ", " << c << "]";
      }
      if (cols % 2) {
        EXPECT_EQ(m.codes[size_t(r * bpr + bpr - 1)] >> 4, 0) << "padding nibble";
      }
    }
  }
  // Every kind of block was exercised (non-vacuity).
  EXPECT_GT(minimal, 100);
  EXPECT_GT(excess, 100);
  EXPECT_GT(zero, 10);
}

TEST(CompactWeightsFp4, SignedZerosAndExtremeScalesSurvive) {
  // Row 0: -0 and +0 only. Row 1: smallest scale (byte 0: 0.5 * 2^-127 = 2^-128, subnormal).
  // Row 2: largest finite values (6 * 2^125) with the code 1.5 * 2^127 (byte 254, excess 2).
  const int64_t cols = 32;
  std::vector<float> w(size_t(3 * cols));
  for (int64_t c = 0; c < cols; ++c) {
    w[size_t(c)] = (c % 2) ? -0.0f : 0.0f;
    w[size_t(cols + c)] = float(std::ldexp(double(e2m1_of(uint8_t(c % 16))), -127));
    w[size_t(2 * cols + c)] = (c == 5) ? float(std::ldexp(1.5, 127)) : -float(std::ldexp(6.0, 125));
  }
  const cuda::Fp4HostMatrix m = cuda::encode_fp4_exact(w.data(), 3, cols, "w");
  EXPECT_TRUE(test::bitwise_equal(decode_fp4(m.codes, m.scales, 3, cols), w));
  EXPECT_EQ(m.scales[0], 0);
  EXPECT_EQ(m.scales[1], 0);
  EXPECT_EQ(m.scales[2], 127 + 127 - 2);  // 1.5 * 2^127 = 6 * 2^125
}

// Every code at every scale whose values stay finite: a block holding all 16 codes (twice)
// has amax 6 2^s, so it comes back with its own bytes exactly.
TEST(CompactWeightsFp4, EveryCodeAtEveryScaleComesBackByteForByte) {
  const int64_t rows = kMaxFiniteFp4Byte + 1, cols = kB4;
  std::vector<uint8_t> codes(size_t(rows * cols / 2)), scales(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    scales[size_t(r)] = uint8_t(r);
    for (int64_t j = 0; j < cols / 2; ++j)
      codes[size_t(r * cols / 2 + j)] = uint8_t((2 * j) % 16 | ((2 * j + 1) % 16) << 4);
  }
  const std::vector<float> w = decode_fp4(codes, scales, rows, cols);
  const cuda::Fp4HostMatrix m = cuda::encode_fp4_exact(w.data(), rows, cols, "w");
  EXPECT_EQ(m.codes, codes);
  EXPECT_EQ(m.scales, scales);
}

// Every e4m3 code but the two NaNs (448 in their place) at every scale byte whose values stay
// finite (0 .. 246), one 16 x 16 block each.
TEST(CompactWeightsFp8, EveryCodeAtEveryScaleComesBackByteForByte) {
  constexpr int64_t B = 16, kBytes = 247;
  const int64_t rows = B * kBytes, cols = B;
  std::vector<uint8_t> codes(size_t(rows * cols)), scales(static_cast<size_t>(kBytes));
  for (int64_t b = 0; b < kBytes; ++b) {
    scales[size_t(b)] = uint8_t(b);
    for (int64_t i = 0; i < B * B; ++i) {
      const uint8_t c = uint8_t(i);
      codes[size_t(b * B * B + i)] = (c & 0x7F) == 0x7F ? uint8_t(c - 1) : c;
    }
  }
  const std::vector<float> w = decode_fp8(codes, scales, rows, cols, B);
  const cuda::Fp8HostMatrix m = cuda::encode_fp8_exact(w.data(), rows, cols, B, "w");
  EXPECT_EQ(m.codes, codes);
  EXPECT_EQ(m.scales, scales);
}

TEST(CompactWeightsFp8, ReencodingGivesBackTheSameValuesBitwise) {
  const int64_t shapes[][3] = {{256, 384, kB8}, {300, 200, kB8}, {7, 5, 2}, {1, 1, kB8}};
  int64_t seed = 30;
  for (const auto& s : shapes) {
    SCOPED_TRACE(::testing::Message() << "[" << s[0] << ", " << s[1] << "] block " << s[2]);
    const Fp8Tensor t = make_fp8(s[0], s[1], s[2], uint64_t(seed++));
    const std::vector<float> w = decode_fp8(t.codes, t.scales, t.rows, t.cols, t.B);
    const cuda::Fp8HostMatrix m = cuda::encode_fp8_exact(w.data(), t.rows, t.cols, t.B, "w");
    ASSERT_EQ(m.codes.size(), t.codes.size());
    ASSERT_EQ(m.scales.size(), t.scales.size());
    EXPECT_TRUE(test::bitwise_equal(decode_fp8(m.codes, m.scales, t.rows, t.cols, t.B), w));
    for (size_t i = 0; i < m.scales.size(); ++i)
      EXPECT_LE(m.scales[i], t.scales[i]) << "block " << i << ": a larger scale than stored";
  }
}

// ---- host: refusals ---------------------------------------------------------------------

// Runs f, which must throw InputError; returns its message.
template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

TEST(CompactWeightsFp4, RefusesValuesThatDidNotComeFromFp4) {
  const std::string name = "layers.2.ffn.experts.5.w1.weight";
  const int64_t rows = 4, cols = 96;
  // Uniform floats: the first block already fails.
  const std::vector<float> u = test::uniform<float>(size_t(rows * cols), 50, -0.1, 0.1);
  std::string msg = input_error([&] { cuda::encode_fp4_exact(u.data(), rows, cols, name); });
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  EXPECT_NE(msg.find("FP4 block (row 0, inputs [0, 32))"), std::string::npos) << msg;
  EXPECT_NE(msg.find("keep the tensor in FP32"), std::string::npos) << msg;
  // BF16-rounded floats (a BF16 checkpoint): 8 significant bits do not fit e2m1.
  std::vector<float> bf(u);
  for (float& x : bf) {
    int ex = 0;
    const double m = std::frexp(double(x), &ex);  // x = m 2^ex, 0.5 <= |m| < 1
    x = float(std::ldexp(std::round(std::ldexp(m, 8)), ex - 8));
  }
  EXPECT_THROW(cuda::encode_fp4_exact(bf.data(), rows, cols, name), InputError);
  // A representable tensor with one element changed: the message names its block and it.
  const Fp4Tensor t = make_fp4(rows, cols, 51);
  const std::vector<float> good = decode_fp4(t.codes, t.scales, rows, cols);
  ASSERT_NO_THROW(cuda::encode_fp4_exact(good.data(), rows, cols, name));
  // The block (row 3, inputs [64, 96)), its first element (the first one checked: changing
  // the block's scale cannot make an earlier element the one reported).
  const int64_t r = 3, c = 64;
  auto with = [&](float v) {
    std::vector<float> w(good);
    w[size_t(r * cols + c)] = v;
    return w;
  };
  // One ulp above the block's largest magnitude (1 for an all-zero block); 5/6 of 4/3 of it
  // (between two grid values at the block's scale, whichever it is).
  float big = 0;
  for (int64_t k = 64; k < 96; ++k) big = std::max(big, std::fabs(good[size_t(r * cols + k)]));
  if (big == 0) big = 1;
  for (float v :
       {std::nextafter(big, 2 * big), 1.25f * big / 6.0f * 4.0f,
        std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(::testing::Message() << "value " << v);
    const std::vector<float> w = with(v);
    msg = input_error([&] { cuda::encode_fp4_exact(w.data(), rows, cols, name); });
    EXPECT_NE(msg.find("FP4 block (row 3, inputs [64, 96))"), std::string::npos) << msg;
    EXPECT_NE(msg.find("element [3, 64]"), std::string::npos) << msg;
  }
  // 1.25 at the scale 2^0 (between the grid values 1 and 1.5).
  std::vector<float> w(size_t(cols), 1.0f);
  w[0] = 6.0f;  // the block scale 2^0
  w[10] = 1.25f;
  msg = input_error([&] { cuda::encode_fp4_exact(w.data(), 1, cols, name); });
  EXPECT_NE(msg.find("element [0, 10] = 1.25 is not an e2m1 value times the block scale 2^0"),
            std::string::npos)
      << msg;
}

TEST(CompactWeightsFp8, RefusesValuesThatDidNotComeFromFp8) {
  const std::string name = "layers.0.ffn.shared_experts.w2.weight";
  const std::vector<float> u = test::uniform<float>(size_t(200 * 300), 60, -1, 1);
  std::string msg = input_error([&] { cuda::encode_fp8_exact(u.data(), 200, 300, kB8, name); });
  EXPECT_NE(msg.find(name + ": FP8 block [0, 0] (rows [0, 128), inputs [0, 128))"),
            std::string::npos)
      << msg;
  const Fp8Tensor t = make_fp8(200, 300, kB8, 61);
  std::vector<float> w = decode_fp8(t.codes, t.scales, 200, 300, kB8);
  ASSERT_NO_THROW(cuda::encode_fp8_exact(w.data(), 200, 300, kB8, name));
  // The first element of block [1, 2] (the first checked), one ulp larger in magnitude.
  float& v = w[size_t(128 * 300 + 256)];
  v = std::nextafter(v, std::signbit(v) ? -1e30f : 1e30f);
  msg = input_error([&] { cuda::encode_fp8_exact(w.data(), 200, 300, kB8, name); });
  EXPECT_NE(msg.find("FP8 block [1, 2] (rows [128, 200), inputs [256, 300))"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("element [128, 256]"), std::string::npos) << msg;
}

// ---- host: accounting and validation ----------------------------------------------------

TEST(CompactWeights, ByteAccounting) {
  // V4-Flash routed expert w1 [2048, 4096]: codes 2048 * 2048, scales 2048 * 128.
  EXPECT_EQ(cuda::fp4_weight_bytes(2048, 4096), size_t(2048 * 2048 + 2048 * 128));
  EXPECT_EQ(cuda::fp4_weight_bytes(3, 33), size_t(3 * 17 + 3 * 2));
  // Shared expert w1 [2048, 4096] FP8: codes + 16 x 32 scales.
  EXPECT_EQ(cuda::fp8_weight_bytes(2048, 4096), size_t(2048 * 4096 + 16 * 32));
  EXPECT_EQ(cuda::fp8_weight_bytes(200, 300, 128), size_t(200 * 300 + 2 * 3));
  // One V4-Flash layer: 256 experts FP4 + the shared expert FP8.
  const int64_t E = 256, I = 2048, D = 4096;
  const uint8_t* any = reinterpret_cast<const uint8_t*>(&E);  // never dereferenced
  cuda::MoeCompactWeights w;
  w.w1 = w.w3 = {any, any, E, I, D};
  w.w2 = {any, any, E, D, I};
  const size_t routed = size_t(3 * E) * cuda::fp4_weight_bytes(I, D);
  EXPECT_EQ(cuda::moe_compact_bytes(w), routed);
  w.shared_w1 = w.shared_w3 = {any, any, I, D};
  w.shared_w2 = {any, any, D, I};
  EXPECT_EQ(cuda::moe_compact_bytes(w), routed + 3 * cuda::fp8_weight_bytes(I, D));
  EXPECT_EQ(cuda::moe_fp32_expert_bytes(E, I, D, true), size_t(3 * 257 * I * D * 4));
  // FP4 is 17/32 byte per weight: 7.53x less than FP32.
  EXPECT_NEAR(double(cuda::moe_fp32_expert_bytes(E, I, D, false)) / double(routed), 128.0 / 17.0,
              1e-12);
}

TEST(MoeCompact, RejectsBadWeightsBeforeLaunch) {
  float f[256] = {1.f};
  int32_t ids_out[64] = {};
  const uint8_t* any = reinterpret_cast<const uint8_t*>(f);
  MoeParams<float> p;
  p.route.x = view2<const float>(f, 2, 4);
  p.route.gate = f;
  p.route.experts = 4;
  p.route.topk = 2;
  p.route.chosen = view2(ids_out, 2, 2);
  p.route.weights = view2(f + 200, 2, 2);
  p.inter = 3;
  p.y = view2(f + 100, 2, 4);
  cuda::MoeCompactWeights good;
  good.w1 = good.w3 = {any, any, 4, 3, 4};
  good.w2 = {any, any, 4, 4, 3};
  EXPECT_NO_THROW(cuda::validate_moe_compact(p, good));
  auto msg_of = [&](const cuda::MoeCompactWeights& w) {
    return input_error([&] { cuda::validate_moe_compact(p, w); });
  };
  cuda::MoeCompactWeights w = good;
  w.w2 = {any, any, 4, 3, 4};  // transposed
  EXPECT_EQ(msg_of(w), "moe_compact: FP4 w2 is a stack [4, 3, 4]; expected [E, D, I] = [4, 4, 3]");
  w = good;
  w.w1.count = 3;
  EXPECT_NE(msg_of(w).find("FP4 w1 is a stack [3, 3, 4]"), std::string::npos);
  w = good;
  w.w3.scales = nullptr;
  EXPECT_NE(msg_of(w).find("w3 has null codes or scales"), std::string::npos);
  w = good;
  w.shared_w1 = {any, any, 3, 4};
  EXPECT_NE(msg_of(w).find("needs all of shared_w1, shared_w3 and shared_w2 (1 of 3 given)"),
            std::string::npos);
  w.shared_w3 = {any, any, 3, 4};
  w.shared_w2 = {any, any, 3, 4};  // should be [D, I] = [4, 3]
  EXPECT_NE(msg_of(w).find("FP8 shared_w2 is [3, 4]"), std::string::npos);
  // validate_moe's own errors come first.
  MoeParams<float> q = p;
  q.y = view2(f + 100, 2, 3);
  EXPECT_EQ(input_error([&] { cuda::validate_moe_compact(q, good); }),
            input_error([&] { cuda::validate_moe(q); }));
  // An FP32 workspace has no scratch; a compact one too small for the call (0 tokens: no device).
  cuda::MoeWorkspace fp32_ws(0, 4, 4, 2, 3);
  EXPECT_NE(input_error([&] { cuda::moe_compact(p, good, fp32_ws); }).find("MoeWeightForm::fp32"),
            std::string::npos);
  cuda::MoeWorkspace small(0, 4, 4, 2, 3, cuda::MoeWeightForm::compact);
  EXPECT_NE(input_error([&] { cuda::moe_compact(p, good, small); }).find("the workspace holds 0"),
            std::string::npos);
}

// ---- device: dequantisation == host decode ----------------------------------------------

// Random codes (every value) and scale bytes 0 .. 254 (products may overflow to inf: IEEE on
// both sides), `count` matrices.
TEST(CompactWeightsCuda, DequantFp4MatchesTheHostDecodeBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // [count, rows, cols], the matrix, and whether the output pointer is offset by one float
  // (not 16-byte aligned: the byte path even when cols % 8 == 0).
  struct Case {
    int64_t count, rows, cols, index;
    bool misalign;
  };
  const Case cases[] = {{3, 128, 256, 2, false}, {3, 128, 256, 1, true}, {2, 5, 37, 1, false},
                        {1, 3, 40, 0, false},    {1, 4, 33, 0, false},   {1, 2, 1, 0, false},
                        {2, 256, 128, 1, false}};
  uint64_t seed = 70;
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "[" << k.count << ", " << k.rows << ", " << k.cols << "] matrix " << k.index
                 << (k.misalign ? " misaligned" : ""));
    const int64_t bpr = (k.cols + 1) / 2, spr = (k.cols + kB4 - 1) / kB4;
    std::mt19937_64 g(seed++);
    std::vector<uint8_t> codes(size_t(k.count * k.rows * bpr)),
        scales(size_t(k.count * k.rows * spr));
    for (auto& c : codes) c = uint8_t(g());
    for (auto& s : scales) s = uint8_t(g() % 255);
    const std::vector<uint8_t> mc(codes.begin() + k.index * k.rows * bpr,
                                  codes.begin() + (k.index + 1) * k.rows * bpr),
        ms(scales.begin() + k.index * k.rows * spr, scales.begin() + (k.index + 1) * k.rows * spr);
    const std::vector<float> want = decode_fp4(mc, ms, k.rows, k.cols);
    cuda::DeviceBuffer<uint8_t> dc(codes), ds(scales);
    const Guarded go{k.rows, k.cols, k.cols};
    std::vector<float> img = go.poisoned();
    if (k.misalign) img.insert(img.begin(), test::kSentinel);
    cuda::DeviceBuffer<float> out(img);
    float* base = out.data() + (k.misalign ? 1 : 0);
    const cuda::Fp4WeightStack w{dc.data(), ds.data(), k.count, k.rows, k.cols};
    launch_and_sync([&] { cuda::dequant_fp4(w, k.index, go.view(base).data); });
    std::vector<float> got = out.download();
    if (k.misalign) {
      EXPECT_EQ(bits_of(got[0]), bits_of(test::kSentinel));
      got.erase(got.begin());
    }
    EXPECT_TRUE(go.canaries_intact(got));
    EXPECT_TRUE(test::bitwise_equal(go.extract(got), want));
  }
}

TEST(CompactWeightsCuda, DequantFp8MatchesTheHostDecodeBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t shapes[][3] = {{256, 128, kB8}, {300, 200, kB8}, {7, 5, 2}, {128, 4096, kB8}};
  uint64_t seed = 80;
  for (const auto& s : shapes) {
    const int64_t rows = s[0], cols = s[1], B = s[2];
    SCOPED_TRACE(::testing::Message() << "[" << rows << ", " << cols << "] block " << B);
    std::mt19937_64 g(seed++);
    std::vector<uint8_t> codes(size_t(rows * cols)),
        scales(size_t(((rows + B - 1) / B) * ((cols + B - 1) / B)));
    for (auto& c : codes) {
      do c = uint8_t(g());
      while ((c & 0x7F) == 0x7F);  // not the NaN codes
    }
    for (auto& x : scales) x = uint8_t(g() % 255);
    const std::vector<float> want = decode_fp8(codes, scales, rows, cols, B);
    cuda::DeviceBuffer<uint8_t> dc(codes), ds(scales);
    const Guarded go{rows, cols, cols};
    cuda::DeviceBuffer<float> out(go.poisoned());
    const cuda::Fp8Weight w{dc.data(), ds.data(), rows, cols, B};
    launch_and_sync([&] { cuda::dequant_fp8(w, go.view(out.data()).data); });
    const std::vector<float> got = out.download();
    EXPECT_TRUE(go.canaries_intact(got));
    EXPECT_TRUE(test::bitwise_equal(go.extract(got), want));
  }
}

TEST(CompactWeightsCuda, DeviceStackRefusalNamesTheExpert) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t E = 3, rows = 4, cols = 64;
  std::vector<float> w;
  for (int64_t e = 0; e < E; ++e) {
    const Fp4Tensor t = make_fp4(rows, cols, uint64_t(90 + e));
    const std::vector<float> m = decode_fp4(t.codes, t.scales, rows, cols);
    w.insert(w.end(), m.begin(), m.end());
  }
  const cuda::DeviceFp4Stack ok(w.data(), E, rows, cols, "layers.1.ffn.experts.", ".w2.weight");
  EXPECT_EQ(ok.bytes(), size_t(E) * cuda::fp4_weight_bytes(rows, cols));
  w[size_t(2 * rows * cols + 1 * cols + 40)] = 0.1f;  // expert 2, row 1, block [32, 64)
  const std::string msg = input_error([&] {
    cuda::DeviceFp4Stack bad(w.data(), E, rows, cols, "layers.1.ffn.experts.", ".w2.weight");
  });
  EXPECT_NE(msg.find("layers.1.ffn.experts.2.w2.weight: FP4 block (row 1, inputs [32, 64))"),
            std::string::npos)
      << msg;
}

// ---- device: moe_compact == moe on the dequantised weights, bitwise ---------------------

struct CompactLayer {
  int64_t T, D, E, k, I;
  bool hash = false, act_quant = false;
  enum class Shared { fp8, fp32, none } shared = Shared::fp8;
  std::vector<float> x, gate, bias;
  std::vector<int64_t> tid2eid, ids;
  int64_t V = 0;
  Fp4Tensor w1, w3, w2;  // stacked [E * rows, cols]: every row its own scale blocks
  Fp8Tensor s1, s3, s2;
  std::vector<float> f1, f3, f2, g1, g3, g2;  // their decodes (the oracle's)
};

// Weights of realistic size: W1/W3 scale bytes around 127 + log2(2.5 sqrt(3 / D) / 6), W2
// around 127 + log2(1 / sqrt(I) / 6) (make_layer's ranges in test_moe.cc); FP8 likewise / 448.
int byte_for(double amax, double qmax) {
  return 127 + int(std::ceil(std::log2(amax / qmax)));
}

CompactLayer make_compact_layer(int64_t T, int64_t D, int64_t E, int64_t k, int64_t I, bool hash,
                                uint64_t seed) {
  CompactLayer L{T, D, E, k, I, hash};
  L.x = test::uniform<float>(size_t(T * D), seed, -1, 1);
  const double gs = 2.0 / std::sqrt(double(D));
  L.gate = test::uniform<float>(size_t(E * D), seed + 1, -gs, gs);
  if (!hash) L.bias = test::uniform<float>(size_t(E), seed + 2, -0.1, 0.1);
  if (hash) {
    L.V = 97;
    std::mt19937_64 g(seed + 3);
    std::vector<int64_t> perm(static_cast<size_t>(E));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t v = 0; v < L.V; ++v) {
      std::shuffle(perm.begin(), perm.end(), g);
      L.tid2eid.insert(L.tid2eid.end(), perm.begin(), perm.begin() + k);
    }
    for (int64_t t = 0; t < T; ++t) L.ids.push_back(int64_t(g() % uint64_t(L.V)));
  }
  const double a = 2.5 * std::sqrt(3.0 / double(D)), b = 1.0 / std::sqrt(double(I));
  L.w1 = make_fp4(E * I, D, seed + 4, byte_for(a, 6));
  L.w3 = make_fp4(E * I, D, seed + 5, byte_for(a, 6));
  L.w2 = make_fp4(E * D, I, seed + 6, byte_for(b, 6));
  L.s1 = make_fp8(I, D, kB8, seed + 7, byte_for(a, 448));
  L.s3 = make_fp8(I, D, kB8, seed + 8, byte_for(a, 448));
  L.s2 = make_fp8(D, I, kB8, seed + 9, byte_for(b, 448));
  L.f1 = decode_fp4(L.w1.codes, L.w1.scales, E * I, D);
  L.f3 = decode_fp4(L.w3.codes, L.w3.scales, E * I, D);
  L.f2 = decode_fp4(L.w2.codes, L.w2.scales, E * D, I);
  L.g1 = decode_fp8(L.s1.codes, L.s1.scales, I, D, kB8);
  L.g3 = decode_fp8(L.s3.codes, L.s3.scales, I, D, kB8);
  L.g2 = decode_fp8(L.s2.codes, L.s2.scales, D, I, kB8);
  return L;
}

struct MoeOut {
  std::vector<float> y, w;
  std::vector<int32_t> ids;
};

// Runs cuda::moe on the decoded FP32 weights (compact = false) or cuda::moe_compact on the
// re-encoded store (compact = true), on poisoned, canaried outputs; the compact run is rerun
// and must repeat bitwise.
MoeOut run_layer(const CompactLayer& L, bool compact) {
  const std::vector<float>&f1 = L.f1, &f3 = L.f3, &f2 = L.f2, &g1 = L.g1, &g3 = L.g3, &g2 = L.g2;
  cuda::DeviceBuffer<float> x(L.x), gate(L.gate), bias(L.bias), s1(g1), s3(g3), s2(g2);
  cuda::DeviceBuffer<int64_t> tid2eid(L.tid2eid), ids(L.ids);
  const Guarded gy{L.T, L.D, L.D + 3}, gw{L.T, L.k, L.k + 1}, gi{L.T, L.k, L.k + 1};
  cuda::DeviceBuffer<float> dy(gy.poisoned()), dw(gw.poisoned());
  cuda::DeviceBuffer<int32_t> did(std::vector<int32_t>(gi.size(), -7));
  MoeParams<float> p;
  p.route.x = view2<const float>(x.data(), L.T, L.D);
  p.route.gate = gate.data();
  p.route.bias = L.hash ? nullptr : bias.data();
  if (L.hash) {
    p.route.tid2eid = view2<const int64_t>(tid2eid.data(), L.V, L.k);
    p.route.ids = ids.data();
  }
  p.route.experts = L.E;
  p.route.topk = L.k;
  p.route.route_scale = 1.5;
  p.route.score = ScoreFunc::sqrt_softplus;
  p.route.chosen = View2<int32_t>{did.data() + test::kGuard, L.T, L.k, L.k + 1};
  p.route.weights = gw.view(dw.data());
  p.y = gy.view(dy.data());
  p.inter = L.I;
  p.act_quant = L.act_quant;
  if (L.shared != CompactLayer::Shared::none)
    p.shared_w1 = s1.data(), p.shared_w3 = s3.data(), p.shared_w2 = s2.data();
  MoeOut o;
  if (!compact) {
    cuda::DeviceBuffer<float> w1(f1), w3(f3), w2(f2);
    p.w1 = w1.data(), p.w3 = w3.data(), p.w2 = w2.data();
    cuda::MoeWorkspace ws(L.T, L.D, L.E, L.k, L.I);
    launch_and_sync([&] { cuda::moe(p, ws); });
    o.y = dy.download();
  } else {
    const cuda::DeviceFp4Stack w1(f1.data(), L.E, L.I, L.D, "experts.", ".w1"),
        w3(f3.data(), L.E, L.I, L.D, "experts.", ".w3"),
        w2(f2.data(), L.E, L.D, L.I, "experts.", ".w2");
    cuda::MoeCompactWeights cw{w1.view(), w3.view(), w2.view()};
    cuda::DeviceFp8Weight h1, h3, h2;
    if (L.shared == CompactLayer::Shared::fp8) {
      h1 = cuda::DeviceFp8Weight(g1.data(), L.I, L.D, kB8, "shared.w1");
      h3 = cuda::DeviceFp8Weight(g3.data(), L.I, L.D, kB8, "shared.w3");
      h2 = cuda::DeviceFp8Weight(g2.data(), L.D, L.I, kB8, "shared.w2");
      cw.shared_w1 = h1.view(), cw.shared_w3 = h3.view(), cw.shared_w2 = h2.view();
      p.shared_w1 = p.shared_w3 = p.shared_w2 = nullptr;  // the FP8 copy must be what is read
    }
    EXPECT_EQ(cuda::moe_compact_bytes(cw),
              w1.bytes() + w3.bytes() + w2.bytes() + h1.bytes() + h3.bytes() + h2.bytes());
    cuda::MoeWorkspace ws(L.T, L.D, L.E, L.k, L.I, cuda::MoeWeightForm::compact);
    auto launch = [&] { cuda::moe_compact(p, cw, ws); };
    launch_and_sync(launch);
    o.y = dy.download();
    const std::vector<float> w_img = dw.download();
    EXPECT_TRUE(test::rerun_bitwise(dy, gy.poisoned(), o.y, launch)) << "compact rerun differs";
    EXPECT_TRUE(test::bitwise_equal(dw.download(), w_img));
  }
  EXPECT_TRUE(gy.canaries_intact(o.y));
  o.w = dw.download();
  EXPECT_TRUE(gw.canaries_intact(o.w));
  o.ids = did.download();
  o.y = gy.extract(o.y);
  o.w = gw.extract(o.w);
  return o;
}

void check_compact_equals_fp32(const CompactLayer& L) {
  const MoeOut want = run_layer(L, false), got = run_layer(L, true);
  EXPECT_EQ(got.ids, want.ids) << "chosen experts (and the id canaries)";
  EXPECT_TRUE(test::bitwise_equal(got.w, want.w)) << "route weights";
  EXPECT_TRUE(test::bitwise_equal(got.y, want.y)) << "y";
  // Non-vacuity: every output finite and not all zero.
  double norm = 0;
  for (float v : got.y) {
    ASSERT_TRUE(std::isfinite(v));
    norm += double(v) * double(v);
  }
  EXPECT_GT(norm, 0.0);
}

// v4-tiny (model/config.cc): D 256, E 8, k 2, I 128; layer 0 hash-routed, the others scored.
TEST(MoeCompactCuda, TinyEqualsFp32MoeBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (bool hash : {true, false})
    for (bool act_quant : {false, true})
      for (auto shared :
           {CompactLayer::Shared::fp8, CompactLayer::Shared::fp32, CompactLayer::Shared::none}) {
        SCOPED_TRACE(::testing::Message() << "hash " << hash << ", act_quant " << act_quant
                                          << ", shared " << int(shared));
        CompactLayer L = make_compact_layer(19, 256, 8, 2, 128, hash, 200 + 10 * hash);
        L.act_quant = act_quant;
        L.shared = shared;
        check_compact_equals_fp32(L);
      }
}

// A V4-Flash slice: D 4096, I 2048, k 6 of 8 experts, shared FP8, 12 tokens (some experts get
// several rows, possibly one none), official numerics.
TEST(MoeCompactCuda, FlashSliceEqualsFp32MoeBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  CompactLayer L = make_compact_layer(12, 4096, 8, 6, 2048, false, 300);
  L.act_quant = true;
  check_compact_equals_fp32(L);
}

}  // namespace
}  // namespace dsv4
