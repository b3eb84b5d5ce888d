// The deployment KV layout codec and kernels (optimized/kv_pack.cuh) against the reference's
// fp8 stores (model/kv_cache.cc: v4_entry_stores(KvLayout::fp8) -> the 584-byte FP8 entry and
// the 68-byte FP4 key). Spec: docs/v4-architecture.md §2.2-§2.4, §4.
//
// Oracles, on rows that probe every rounding rule (random magnitudes from 2^-140 to 2^120,
// exact e4m3 / e2m1 / BF16 rounding ties, zeros of both signs, float subnormals, blocks whose
// amax is below the floor, saturation at 448 / 6, NaN and infinities):
//   bytes    expected_entry / expected_key build the row's bytes with the reference's own
//            encoders (ref::fp8_encode_block, ref::fp4_encode_block, fmt::bf16_encode) in the
//            order model/kv_cache.cc's stores write them; the codec must give the same bytes
//            (bitwise).
//   decoded  the reference store itself: the row written to a v4_entry_stores(fp8) store and
//            read() back must equal the codec's unpack of the codec's bytes (bitwise; NaN as NaN).
// The host tests run the codec compiled for the host (it is DSV4_HD: the device kernels run the
// same source), so they run without a device. The device tests run the kernels on the same rows
// and require the host codec's bytes and floats bitwise. Label gpu: the device tests skip
// without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "optimized/device.cuh"
#include "optimized/kv_pack.cuh"
#include "reference/constants.h"
#include "reference/formats.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "tests/support/device_harness.h"
#include "tests/support/expect_error.h"

namespace dsv4 {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// Rows of width w probing the encoders. Row kinds (by r % 8, or r % 6 without specials):
// 0 unit normals; 1 normals times a random power of two per 32 dims (2^-140 .. 2^120: float
// subnormals, amax below the floor, huge scales); 2 e4m3 / e2m1 rounding ties (k/16 in [1, 2),
// halves), qmax itself; 3 zeros of both signs and float subnormals; 4 one 2^100-sized value
// per 32 dims among tiny ones (the others round to zero codes); 5 BF16 ties in every dim;
// with_specials: 6 NaNs of both signs and payloads, 7 NaNs and infinities among 2^120-sized values.
std::vector<float> probe_rows(int64_t rows, int64_t w, bool with_specials, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_int_distribution<int> exp_dist(-140, 120), pick(0, 63), coin(0, 1);
  std::vector<float> v(static_cast<size_t>(rows * w));
  for (int64_t r = 0; r < rows; ++r) {
    float* x = v.data() + r * w;
    const int kind = int(r % (with_specials ? 8 : 6));
    int block_exp = 0;
    for (int64_t i = 0; i < w; ++i) {
      float y = n01(g);
      if (i % kFp4Block == 0) block_exp = exp_dist(g);  // one magnitude per 32 dims
      switch (kind) {
        case 1:
          y = std::ldexp(y, block_exp);
          break;
        case 2: {
          // e4m3: k/16 steps in [1, 2) at scale 2^0 are ties between codes (3 mantissa bits);
          // e2m1: halves; plus exact qmax and values just past it.
          static constexpr float kTies[] = {1.0625f, 1.1875f,  1.3125f, 1.4375f,      0.25f, 0.75f,
                                            1.25f,   1.75f,    2.5f,    3.5f,         5.0f,  448.0f,
                                            6.0f,    -1.0625f, -2.5f,   0.0009765625f};
          y = kTies[size_t(pick(g)) % (sizeof(kTies) / sizeof(float))];
          break;
        }
        case 3:
          y = coin(g) ? (coin(g) ? 0.0f : -0.0f)
                      : std::ldexp(float(pick(g) + 1), -149 + pick(g) % 20);
          break;
        case 4:
          y = (i % 32 == 0) ? std::ldexp(1.0f + float(pick(g)) / 64, 100) : std::ldexp(y, -60);
          break;
        case 5: {
          // BF16 ties: bit 15 set, lower bits clear; alternate even / odd kept bit.
          uint32_t u = fmt::bits_of(y);
          u = (u & 0xFFFF0000u) | 0x8000u;
          y = fmt::float_of(u);
          break;
        }
        case 6: {  // NaNs of either sign, quiet and signalling payloads: the block keeps a finite
                   // scale
          const int k = pick(g);
          if (k == 0)
            y = kNan;
          else if (k == 1)
            y = -kNan;
          else if (k == 2)
            y = fmt::float_of(0x7F800001u);  // BF16: must stay NaN (not round to inf)
          else if (k == 3)
            y = fmt::float_of(0xFFBFFFFFu);  // BF16: quieted, payload kept
          break;
        }
        case 7: {  // NaN and infinities among 2^120-sized values: most blocks lose their scale
          // (0xFF) and their finite values still get codes (x 2^-128 ~ 2^-8: nonzero)
          const int k = pick(g);
          y = std::ldexp(y, 120);
          if (k == 0)
            y = kNan;
          else if (k == 1)
            y = kInf;
          else if (k == 2)
            y = -kInf;
          break;
        }
        default:
          break;
      }
      x[i] = y;
    }
  }
  return v;
}

// The 584-byte entry exactly as model/kv_cache.cc's Fp8RowStore::write makes it (V4 format:
// fp8 = 448 dims in blocks of 64, UE8M0 scales padded to 8 bytes, then BF16), from the
// reference's own encoders.
std::vector<uint8_t> expected_entry(const float* row) {
  std::vector<uint8_t> b(size_t(cuda::kFp8EntryBytes), 0xAB);
  for (int64_t k = 0; k < kNopeDim / kFp8KvBlock; ++k)
    b[size_t(kNopeDim + k)] =
        ref::fp8_encode_block(row + k * kFp8KvBlock, kFp8KvBlock, b.data() + k * kFp8KvBlock);
  b[size_t(kNopeDim + kNopeDim / kFp8KvBlock)] = 0;  // the pad byte
  for (int64_t i = 0; i < kRopeDim; ++i) {
    const uint16_t h = fmt::bf16_encode(row[kNopeDim + i]);
    std::memcpy(b.data() + cuda::kFp8EntryRopeOffset + 2 * i, &h, 2);
  }
  return b;
}

// The 68-byte key as Fp4KeyStore::write makes it.
std::vector<uint8_t> expected_key(const float* row) {
  std::vector<uint8_t> b(size_t(cuda::kFp4KeyBytes), 0xAB);
  for (int64_t k = 0; k < kIndexerDim / kFp4Block; ++k)
    b[size_t(kIndexerDim / 2 + k)] =
        ref::fp4_encode_block(row + k * kFp4Block, kFp4Block, b.data() + k * kFp4Block / 2);
  return b;
}

// Bitwise equality of floats, NaN equal to NaN (payloads differ between encoders' NaNs).
bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || fmt::bits_of(a) == fmt::bits_of(b);
}

// The reference store's read() of `rows` written rows of width w.
std::vector<float> store_round_trip(EntryKind kind, const std::vector<float>& x, int64_t rows,
                                    int64_t w, int64_t* row_bytes) {
  auto store = v4_entry_stores<float>(KvLayout::fp8, kRopeDim)(kind, w);
  store->append(x.data(), rows);
  *row_bytes = store->bytes() / rows;
  std::vector<float> y(static_cast<size_t>(rows * w));
  store->read(0, rows, y.data());
  return y;
}

constexpr int64_t kRows = 96;

TEST(KvPack, Fp8EntryBytesAreTheReferenceStoresBytes) {
  const std::vector<float> x = probe_rows(kRows, kHeadDim, true, 11);
  int64_t rb = 0;
  const std::vector<float> ref_read = store_round_trip(EntryKind::window, x, kRows, kHeadDim, &rb);
  EXPECT_EQ(rb, cuda::kFp8EntryBytes);
  EXPECT_EQ(v4_entry_bytes(KvLayout::fp8, kHeadDim, kRopeDim), cuda::kFp8EntryBytes);
  int64_t nan_blocks = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    const float* row = x.data() + r * kHeadDim;
    std::vector<uint8_t> got(size_t(cuda::kFp8EntryBytes), 0xCD);
    cuda::kv_codec::pack_fp8_entry(row, got.data());
    ASSERT_EQ(got, expected_entry(row)) << "row " << r;
    for (int64_t k = 0; k < cuda::kFp8EntryBlocks; ++k)
      nan_blocks += got[size_t(kNopeDim + k)] == 0xFF;
    std::vector<float> dec(static_cast<size_t>(kHeadDim));
    cuda::kv_codec::unpack_fp8_entry(got.data(), dec.data());
    for (int64_t i = 0; i < kHeadDim; ++i)
      ASSERT_TRUE(same_float(dec[size_t(i)], ref_read[size_t(r * kHeadDim + i)]))
          << "row " << r << " dim " << i << ": " << dec[size_t(i)] << " vs "
          << ref_read[size_t(r * kHeadDim + i)];
  }
  EXPECT_GT(nan_blocks, 0) << "the probe rows must reach a block with an infinity";
}

TEST(KvPack, Fp4KeyBytesAreTheReferenceStoresBytes) {
  // No NaN: e2m1 has no NaN code and the reference's encoder is undefined for one (header).
  std::vector<float> x = probe_rows(kRows, kIndexerDim, false, 12);
  for (int64_t r = 0; r < kRows; r += 7)
    x[size_t(r * kIndexerDim + r % kIndexerDim)] = (r % 2) ? kInf : -kInf;
  int64_t rb = 0;
  const std::vector<float> ref_read =
      store_round_trip(EntryKind::index_key, x, kRows, kIndexerDim, &rb);
  EXPECT_EQ(rb, cuda::kFp4KeyBytes);
  EXPECT_EQ(v4_index_key_bytes(KvLayout::fp8, kIndexerDim), cuda::kFp4KeyBytes);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* row = x.data() + r * kIndexerDim;
    std::vector<uint8_t> got(size_t(cuda::kFp4KeyBytes), 0xCD);
    cuda::kv_codec::pack_fp4_key(row, got.data());
    ASSERT_EQ(got, expected_key(row)) << "row " << r;
    std::vector<float> dec(static_cast<size_t>(kIndexerDim));
    cuda::kv_codec::unpack_fp4_key(got.data(), dec.data());
    for (int64_t i = 0; i < kIndexerDim; ++i)
      ASSERT_TRUE(same_float(dec[size_t(i)], ref_read[size_t(r * kIndexerDim + i)]))
          << "row " << r << " dim " << i;
  }
}

// Rows already on the grid (Numerics::official's rows) survive a second pack unchanged.
TEST(KvPack, OnGridRowsRepackLosslessly) {
  const std::vector<float> x = probe_rows(kRows, kHeadDim, false, 13);
  for (int64_t r = 0; r < kRows; ++r) {
    std::vector<uint8_t> b1(static_cast<size_t>(cuda::kFp8EntryBytes)), b2(b1.size());
    std::vector<float> y1(static_cast<size_t>(kHeadDim)), y2(y1.size());
    cuda::kv_codec::pack_fp8_entry(x.data() + r * kHeadDim, b1.data());
    cuda::kv_codec::unpack_fp8_entry(b1.data(), y1.data());
    cuda::kv_codec::pack_fp8_entry(y1.data(), b2.data());
    cuda::kv_codec::unpack_fp8_entry(b2.data(), y2.data());
    for (int64_t i = 0; i < kHeadDim; ++i)
      ASSERT_TRUE(same_float(y1[size_t(i)], y2[size_t(i)])) << r << " " << i;
  }
}

TEST(KvPack, RejectsBadShapesOnTheHost) {
  std::vector<float> f(static_cast<size_t>(4 * kHeadDim));
  std::vector<uint8_t> b(static_cast<size_t>(4 * cuda::kFp8EntryBytes));
  test::expect_input_error(
      [&] {
        cuda::pack_fp8_entries(view2<const float>(f.data(), 2, 256),
                               view2(b.data(), 2, cuda::kFp8EntryBytes));
      },
      {"pack_fp8_entries", "'x'", "512"});
  test::expect_input_error(
      [&] {
        cuda::pack_fp8_entries(view2<const float>(f.data(), 2, kHeadDim),
                               view2(b.data(), 3, cuda::kFp8EntryBytes));
      },
      {"pack_fp8_entries", "'out'"});
  test::expect_input_error(
      [&] {
        cuda::pack_fp4_keys(view2<const float>(f.data(), 2, kIndexerDim), view2(b.data(), 2, 64));
      },
      {"pack_fp4_keys", "'out'", "68"});
  test::expect_input_error(
      [&] {
        cuda::unpack_fp4_keys(view2<const uint8_t>(b.data(), 2, 64),
                              view2(f.data(), 2, kIndexerDim));
      },
      {"unpack_fp4_keys", "'keys'"});
}

// ---------------------------------------------------------------------------------------
// Device: the kernels give the host codec's bytes and floats, bitwise, with strided rows.

TEST(KvPackDevice, KernelsMatchTheCodec) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t R = 203, xld = kHeadDim + 8, eld = cuda::kFp8EntryBytes + 16;
  const std::vector<float> x =
      probe_rows(R, xld, true, 21);  // row r: dims [0, 512) of x[r * xld ...]
  cuda::DeviceBuffer<float> dx(x);
  cuda::DeviceBuffer<uint8_t> de(std::vector<uint8_t>(size_t(R * eld), 0xEE));
  test::launch_and_sync([&] {
    cuda::pack_fp8_entries({dx.data(), R, kHeadDim, xld},
                           {de.data(), R, cuda::kFp8EntryBytes, eld});
  });
  const std::vector<uint8_t> e = de.download();
  for (int64_t r = 0; r < R; ++r) {
    std::vector<uint8_t> want(static_cast<size_t>(cuda::kFp8EntryBytes));
    cuda::kv_codec::pack_fp8_entry(x.data() + r * xld, want.data());
    ASSERT_TRUE(std::equal(want.begin(), want.end(), e.begin() + r * eld)) << "entry row " << r;
    for (int64_t c = cuda::kFp8EntryBytes; c < eld; ++c)
      ASSERT_EQ(e[size_t(r * eld + c)], 0xEE) << "canary " << r;
  }

  constexpr int64_t kld = cuda::kFp4KeyBytes + 4, yld = kIndexerDim + 3;
  std::vector<float> xk = probe_rows(R, kIndexerDim, false, 22);
  cuda::DeviceBuffer<float> dxk(xk), dy(std::vector<float>(size_t(R * yld), -7.0f));
  cuda::DeviceBuffer<uint8_t> dk(std::vector<uint8_t>(size_t(R * kld), 0xEE));
  test::launch_and_sync([&] {
    cuda::pack_fp4_keys({dxk.data(), R, kIndexerDim, kIndexerDim},
                        {dk.data(), R, cuda::kFp4KeyBytes, kld});
    cuda::unpack_fp4_keys({dk.data(), R, cuda::kFp4KeyBytes, kld},
                          {dy.data(), R, kIndexerDim, yld});
  });
  const std::vector<uint8_t> k = dk.download();
  const std::vector<float> y = dy.download();
  for (int64_t r = 0; r < R; ++r) {
    std::vector<uint8_t> want(static_cast<size_t>(cuda::kFp4KeyBytes));
    std::vector<float> dec(static_cast<size_t>(kIndexerDim));
    cuda::kv_codec::pack_fp4_key(xk.data() + r * kIndexerDim, want.data());
    cuda::kv_codec::unpack_fp4_key(want.data(), dec.data());
    ASSERT_TRUE(std::equal(want.begin(), want.end(), k.begin() + r * kld)) << "key row " << r;
    for (int64_t i = 0; i < kIndexerDim; ++i)
      ASSERT_TRUE(same_float(y[size_t(r * yld + i)], dec[size_t(i)]))
          << "key row " << r << " dim " << i;
    for (int64_t c = kIndexerDim; c < yld; ++c)
      ASSERT_EQ(y[size_t(r * yld + c)], -7.0f) << "canary " << r;
  }
}

}  // namespace
}  // namespace dsv4
