// model/kv_cache: the row layouts of spec §4 (584 B FP8 entry, 68 B FP4 indexer key, 656 B
// MLA row, 132 B V3.2 key), the per-token figures of the §4 table, allocated bytes equal to
// the analytic count for every preset, and that the stores keep what the reference computes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/kv_cache.h"
#include "reference/attention_layer.h"
#include "reference/formats.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace dsv4 {
namespace {

TEST(KvLayout, RowBytesOfTheSpec) {
  EXPECT_EQ(v4_entry_bytes(KvLayout::fp8, 512, 64), 584);
  EXPECT_EQ(v4_entry_bytes(KvLayout::bf16, 512, 64), 1024);
  EXPECT_EQ(v4_index_key_bytes(KvLayout::fp8, 128), 68);
  EXPECT_EQ(v4_index_key_bytes(KvLayout::bf16, 128), 256);
  EXPECT_EQ(mla_row_bytes(KvLayout::fp8, 512, 64), 656);
  EXPECT_EQ(mla_row_bytes(KvLayout::bf16, 512, 64), 1152);
  EXPECT_EQ(dsa_key_bytes(KvLayout::fp8, 128), 132);
  EXPECT_EQ(dsa_key_bytes(KvLayout::bf16, 128), 256);
}

// §4's table at L = 2^20: bytes per token without window and state (the paper's accounting).
TEST(KvAnalytic, PerTokenFiguresOfTheSpecTable) {
  const int64_t L = int64_t(1) << 20;
  auto per_token = [&](const char* preset, KvLayout l) {
    const KvBytes b = kv_bytes_analytic(config_preset(preset), L, l);
    return double(b.compressed + b.index_keys) / double(L);
  };
  EXPECT_NEAR(per_token("v3", KvLayout::bf16), 70272, 1e-9);
  EXPECT_NEAR(per_token("v3", KvLayout::fp8), 40016, 1e-9);
  EXPECT_NEAR(per_token("v3.2", KvLayout::bf16), 85888, 1e-9);
  EXPECT_NEAR(per_token("v3.2", KvLayout::fp8), 48068, 1e-9);
  EXPECT_NEAR(per_token("v4-pro", KvLayout::bf16), 9848, 1);
  EXPECT_NEAR(per_token("v4-pro", KvLayout::fp8), 5031, 1);
  EXPECT_NEAR(per_token("v4-flash", KvLayout::bf16), 6880, 1);
  EXPECT_NEAR(per_token("v4-flash", KvLayout::fp8), 3514, 1);
  // The paper's ratios: V3.2 / V4-Pro = 9.55x, V3.2 / V4-Flash = 13.68x (FP8 layouts).
  EXPECT_NEAR(per_token("v3.2", KvLayout::fp8) / per_token("v4-pro", KvLayout::fp8), 9.55, 0.01);
  EXPECT_NEAR(per_token("v3.2", KvLayout::fp8) / per_token("v4-flash", KvLayout::fp8), 13.68, 0.01);
}

TEST(KvAnalytic, StateOfTheSpec) {
  // CSA: 64 KiB main + 16 KiB indexer; HCA: 512 KiB per layer (§4).
  const auto flash = config_preset("v4-flash");
  const KvBytes b = kv_bytes_analytic(flash, 1000, KvLayout::fp8);
  EXPECT_EQ(b.state, 21 * (64 + 16) * 1024 + 20 * 512 * 1024);
}

// Allocated == analytic, byte for byte, for every preset, layout and a sweep of lengths
// around the block and window edges.
TEST(KvMeasured, EqualsAnalyticEverywhere) {
  for (const char* preset : {"v4-tiny", "v4-flash", "v4-pro"}) {
    const auto c = config_preset(preset);
    for (KvLayout l : {KvLayout::f32, KvLayout::bf16, KvLayout::fp8}) {
      const std::vector<int64_t> lengths =
          std::string(preset) == "v4-tiny" ? std::vector<int64_t>{1, 3, 4, 5, 127, 128, 129, 255, 256, 257, 1031, 4096}
                                           : std::vector<int64_t>{1, 129, 1031};
      for (int64_t L : lengths) {
        KvCache cache(c, l);
        cache.fill_synthetic(L, 7);
        const KvBytes m = cache.bytes(), a = kv_bytes_analytic(c, L, l);
        SCOPED_TRACE(std::string(preset) + " " + kv_layout_name(l) + " L=" + std::to_string(L));
        EXPECT_EQ(m.window, a.window);
        EXPECT_EQ(m.compressed, a.compressed);
        EXPECT_EQ(m.index_keys, a.index_keys);
        EXPECT_EQ(m.state, a.state);
        EXPECT_EQ(m.csa, a.csa);
        EXPECT_EQ(m.hca, a.hca);
      }
    }
  }
  for (const char* preset : {"v3", "v3.2"}) {
    for (KvLayout l : {KvLayout::bf16, KvLayout::fp8}) {
      MlaCache cache(config_preset(preset), l);
      cache.fill_synthetic(33, 3);
      EXPECT_EQ(cache.bytes().total(), kv_bytes_analytic(config_preset(preset), 33, l).total()) << preset;
    }
  }
}

// A row written to an fp8 store reads back as the FP8 round trip of its first 448 dims
// (blocks of 64, UE8M0) and the BF16 rounding of its RoPE dims; an index key as the FP4
// round trip (blocks of 32). Values already on those grids come back unchanged.
TEST(KvStores, Fp8EntryAndFp4KeyRoundTrips) {
  const auto f = v4_entry_stores<float>(KvLayout::fp8, 64);
  auto entry = f(EntryKind::compressed, 512);
  auto key = f(EntryKind::index_key, 128);
  const auto x = test::normal<float>(512, 1), k = test::normal<float>(128, 2);
  std::vector<float> want(x), got(512), kwant(k), kgot(128);
  ref::quant_fp8<float>({view2<const float>(x.data(), 1, 512), view2(want.data(), 1, 512), 64, 448});
  for (int i = 448; i < 512; ++i) want[size_t(i)] = fmt::bf16_round(x[size_t(i)]);
  ref::quant_fp4<float>({view2<const float>(k.data(), 1, 128), view2(kwant.data(), 1, 128), 32});
  entry->append(x.data(), 1);
  key->append(k.data(), 1);
  entry->read(0, 1, got.data());
  key->read(0, 1, kgot.data());
  EXPECT_TRUE(test::bitwise_equal(got, want));
  EXPECT_TRUE(test::bitwise_equal(kgot, kwant));
  EXPECT_EQ(entry->bytes(), 584);
  EXPECT_EQ(key->bytes(), 68);
  // On-grid rows are kept exactly.
  entry->write(0, want.data());
  entry->read(0, 1, got.data());
  EXPECT_TRUE(test::bitwise_equal(got, want));
  // BF16 store: every value BF16-rounded.
  auto b = v4_entry_stores<float>(KvLayout::bf16, 64)(EntryKind::window, 512);
  b->append(x.data(), 1);
  b->read(0, 1, got.data());
  for (int i = 0; i < 512; ++i) EXPECT_EQ(got[size_t(i)], fmt::bf16_round(x[size_t(i)]));
}

}  // namespace
}  // namespace dsv4
