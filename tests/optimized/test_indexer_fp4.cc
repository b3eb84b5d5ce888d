// dsv4::cuda::indexer_fp4 (the lightning indexer over packed 68-byte FP4 keys) against
// dsv4::cuda::indexer on the same keys dequantised on the host (kv_pack.cuh's codec,
// kv_codec::unpack_fp4_key, the bytes the reference's Fp4KeyStore reads back):
//   indexer_fp4(q, keys, w) == indexer(q, unpack(keys), w)   bit for bit, scores and indices,
// since indexer_fp4 dequantises each element exactly while staging it and shares the FP32
// path's arithmetic (optimized/indexer.cuh, "FP4 keys"). indexer itself is checked against
// the oracle and the reference in test_indexer.cc.
// Key layout (kv_pack.cuh): bytes [0, 64) e2m1 codes (dim 2k low nibble, 2k + 1 high), bytes
// [64, 68) UE8M0 scales of the 32-dim blocks; rows byte-strided.
// Label gpu: the device tests skip, with the reason, when there is none; the host-side
// validation tests run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/indexer.cuh"
#include "optimized/kv_pack.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "tests/support/device_harness.h"

namespace dsv4 {
namespace {

using test::launch_and_sync;

constexpr int64_t kDim = kIndexerDim;                // dI = 128
constexpr int64_t kKeyBytes = cuda::kFp4KeyBytes;    // 68
constexpr float kPoisonScore = -12345.5f;            // every score slot the ops must write
constexpr int32_t kPoisonIdx = 0x5EED5EED;           // every index slot the ops must write

struct Case {
  int64_t T, N, HI, m, topk, pos0;
  int64_t key_ld = kKeyBytes;  // row stride of the packed keys in bytes (>= 68)
  bool raw_bytes = false;      // keys as random bytes (every code; scales in a finite range)
};
std::string describe(const Case& c) {
  return "T=" + std::to_string(c.T) + " N=" + std::to_string(c.N) + " HI=" + std::to_string(c.HI) +
         " m=" + std::to_string(c.m) + " topk=" + std::to_string(c.topk) + " pos0=" + std::to_string(c.pos0) +
         " key_ld=" + std::to_string(c.key_ld) + (c.raw_bytes ? " raw" : "");
}

// Packed keys [N, key_ld] bytes (the gap after each row poisoned) and their host decode [N, 128].
struct Keys {
  std::vector<uint8_t> packed;
  std::vector<float> dequant;
};
Keys make_keys(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Keys k{std::vector<uint8_t>(size_t(c.N * c.key_ld), 0xA5), std::vector<float>(size_t(c.N * kDim))};
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> byte(0, 255), scale(127 - 12, 127 + 4);  // 2^-12 .. 2^4
  std::vector<float> row(static_cast<size_t>(kDim));
  for (int64_t j = 0; j < c.N; ++j) {
    uint8_t* out = &k.packed[size_t(j * c.key_ld)];
    if (c.raw_bytes) {
      for (int64_t b = 0; b < cuda::kFp4KeyCodeBytes; ++b) out[b] = uint8_t(byte(rng));
      for (int64_t b = 0; b < cuda::kFp4KeyBlocks; ++b) out[cuda::kFp4KeyCodeBytes + b] = uint8_t(scale(rng));
    } else {
      // Per-block magnitudes apart by powers of two, so the four scales differ.
      for (int64_t i = 0; i < kDim; ++i) row[size_t(i)] = float(normal(rng) * std::ldexp(1.0, int(i / 32) - 2));
      cuda::kv_codec::pack_fp4_key(row.data(), out);
    }
    cuda::kv_codec::unpack_fp4_key(out, &k.dequant[size_t(j * kDim)]);
  }
  return k;
}
std::vector<float> uniform_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

template <class T>
::testing::AssertionResult same_bits(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << what << ": sizes differ";
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0)
      return ::testing::AssertionFailure() << what << ": first difference at element " << i << ": " << a[i]
                                           << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

struct Outputs {
  std::vector<float> scores;
  std::vector<int32_t> idx;
};

// Runs indexer on the dequantised keys and indexer_fp4 on the packed ones (with scores, and
// without: the scratch path's selection), and compares them bitwise.
void check_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  const Keys keys = make_keys(c, seed);
  const std::vector<float> q = uniform_floats(size_t(c.T * c.HI * kDim), seed + 1),
                           w = uniform_floats(size_t(c.T * c.HI), seed + 2);
  cuda::DeviceBuffer<float> dq(q), dw(w), dk(keys.dequant);
  cuda::DeviceBuffer<uint8_t> dp(keys.packed);
  const std::vector<float> s_init(size_t(c.T * c.N), kPoisonScore);
  const std::vector<int32_t> i_init(size_t(c.T * c.topk), kPoisonIdx);
  cuda::DeviceBuffer<float> ds(s_init);
  cuda::DeviceBuffer<int32_t> di(i_init);
  const View2<float> scores{ds.data(), c.T, c.N, c.N};
  const View2<int32_t> indices{di.data(), c.T, c.topk, c.topk};

  IndexerParams<float> pf;
  pf.q = View2<const float>{dq.data(), c.T, c.HI * kDim, c.HI * kDim};
  pf.k = View2<const float>{dk.data(), c.N, kDim, kDim};
  pf.w = View2<const float>{dw.data(), c.T, c.HI, c.HI};
  pf.heads = c.HI;
  pf.ratio = c.m;
  pf.topk = c.topk;
  pf.pos0 = c.pos0;
  pf.scores = scores;
  pf.indices = indices;
  launch_and_sync([&] { cuda::indexer(pf); });
  const Outputs want{ds.download(), di.download()};

  cuda::IndexerFp4Params p4;
  p4.q = pf.q;
  p4.keys = View2<const uint8_t>{dp.data(), c.N, kKeyBytes, c.key_ld};
  p4.w = pf.w;
  p4.heads = c.HI;
  p4.ratio = c.m;
  p4.topk = c.topk;
  p4.pos0 = c.pos0;
  p4.scores = scores;
  p4.indices = indices;
  ds.upload(s_init);
  di.upload(i_init);
  launch_and_sync([&] { cuda::indexer_fp4(p4); });
  EXPECT_TRUE(same_bits(ds.download(), want.scores, "scores"));
  EXPECT_TRUE(same_bits(di.download(), want.idx, "indices"));
  EXPECT_TRUE(same_bits(dp.download(), keys.packed, "the op wrote into the keys"));

  // Without the scores output: the same selection, the scores buffer untouched.
  ds.upload(s_init);
  di.upload(i_init);
  p4.scores = View2<float>{};
  launch_and_sync([&] { cuda::indexer_fp4(p4); });
  EXPECT_TRUE(same_bits(di.download(), want.idx, "without scores: indices"));
  EXPECT_TRUE(same_bits(ds.download(), s_init, "without scores: scores written"));

  // The comparison must not be vacuous: some key visible to the last row gets selected.
  if (c.T > 0 && c.N > 0 && c.pos0 + c.T >= c.m) {
    EXPECT_GE(want.idx[size_t((c.T - 1) * c.topk)], 0) << "no key selected for the last row";
  }
}

// Edge N (below, at and around the 128-key tile, below topk), prefill rows crossing the
// visibility boundary, strided key rows, raw code bytes.
TEST(IndexerFp4Cuda, MatchesIndexerOnDequantisedKeysEdgeCases) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const std::vector<Case> cases = {
      {1, 0, 64, 4, 512, 0},                       // no keys
      {1, 1, 64, 4, 512, 3},                       // one key
      {3, 127, 64, 4, 512, 4 * 127 - 2},           // N < tile; the last rows see all
      {2, 128, 64, 4, 512, 4 * 128 - 1},           // one full tile
      {2, 129, 64, 4, 64, 4 * 129 - 1},            // a one-key tail tile, topk < N
      {5, 700, 64, 4, 512, 4 * 600},               // visibility grows across the rows
      {4, 1000, 64, 4, 512, 4 * 1000 - 4, 75},     // odd byte stride
      {4, 1000, 64, 4, 1024, 4 * 1000, 136, true},  // raw bytes, stride of two rows
      {2, 3000, 64, 4, 1024, 4 * 3000, 68, true},
      {2, 600, 8, 4, 100, 4 * 600},                // fewer heads than a head tile
      {2, 600, 96, 4, 100, 4 * 600},               // a partial second head tile
  };
  uint64_t seed = 100;
  for (const Case& c : cases) check_case(c, seed += 10);
}

// Real shapes: HI 64, dI 128, topk 512 (Flash) / 1024 (Pro); decode over 2^18 keys (1M tokens).
TEST(IndexerFp4Cuda, MatchesIndexerOnDequantisedKeysRealShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kMaxKeys = int64_t(1) << 18;
  check_case({1, kMaxKeys, kIndexerHeads, kCsaRatio, 1024, kCsaRatio * kMaxKeys - 1}, 7);
  check_case({1, 40000, kIndexerHeads, kCsaRatio, 512, kCsaRatio * 40000 - 1}, 8);
  check_case({16, 8192, kIndexerHeads, kCsaRatio, 512, kCsaRatio * 8192 - 16}, 9);
  check_case({4, 8192, kIndexerHeads, kCsaRatio, 1024, kCsaRatio * 8192, kKeyBytes, true}, 10);
}

// Host side (no device needed): bad parameters throw InputError before any device work.
struct HostParams {
  std::vector<float> q = std::vector<float>(2 * 2 * kDim), w = std::vector<float>(2 * 2), s = std::vector<float>(2 * 5);
  std::vector<uint8_t> k = std::vector<uint8_t>(5 * kKeyBytes);
  std::vector<int32_t> idx = std::vector<int32_t>(2 * 3);
  cuda::IndexerFp4Params p;
  HostParams() {
    p.q = view2(static_cast<const float*>(q.data()), 2, 2 * kDim);
    p.keys = View2<const uint8_t>{k.data(), 5, kKeyBytes, kKeyBytes};
    p.w = view2(static_cast<const float*>(w.data()), 2, 2);
    p.heads = 2;
    p.ratio = 4;
    p.topk = 3;
    p.scores = view2(s.data(), 2, 5);
    p.indices = view2(idx.data(), 2, 3);
  }
};
void expect_refused(const cuda::IndexerFp4Params& p, const std::string& needle) {
  try {
    cuda::indexer_fp4(p);
    ADD_FAILURE() << "accepted; expected an InputError naming '" << needle << "'";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("indexer_fp4"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(IndexerFp4Cuda, RefusesHeadDimOtherThan128) {
  for (const int64_t dI : {int64_t(64), int64_t(256)}) {
    SCOPED_TRACE(dI);
    HostParams h;
    std::vector<float> q(size_t(2 * 2 * dI));
    h.p.q = view2(static_cast<const float*>(q.data()), 2, 2 * dI);
    h.p.head_dim = dI;
    expect_refused(h.p, "head_dim");
  }
  {  // head_dim 128 but q shaped for dI 64
    HostParams h;
    h.p.q.cols = 2 * 64;
    expect_refused(h.p, "tensor 'q'");
  }
}

TEST(IndexerFp4Cuda, RejectsBadParamsBeforeLaunch) {
  {
    HostParams h;
    h.p.keys.cols = kDim / 2;  // codes without the scales
    expect_refused(h.p, "tensor 'keys'");
  }
  {
    HostParams h;
    h.p.keys.ld = kKeyBytes - 1;
    expect_refused(h.p, "row stride");
  }
  {
    HostParams h;
    h.p.ratio = 0;
    expect_refused(h.p, "ratio");
  }
  {
    HostParams h;
    h.p.w.cols = 3;
    expect_refused(h.p, "tensor 'w'");
  }
  {
    HostParams h;
    h.p.indices.rows = 1;
    expect_refused(h.p, "indices");
  }
  {
    HostParams h;
    h.p.scores.cols = 4;
    expect_refused(h.p, "scores");
  }
  {
    HostParams h;
    h.p.topk = cuda::kIndexerMaxTopk + 1;
    h.p.indices.cols = h.p.topk;
    expect_refused(h.p, "topk");
  }
}

}  // namespace
}  // namespace dsv4
