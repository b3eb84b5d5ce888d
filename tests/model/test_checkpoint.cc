// model/checkpoint: the table of expected tensors against spec §7 (real Flash/Pro shapes),
// init -> load round trips decoded bit for bit by an independent decoder, FP8/FP4
// dequantisation against hand-computed values, the writer's atomicity and refusals, the
// name map, and transformers-saved checkpoints (tests/data/transformers_v4_ckpt, from
// tests/oracle/gen_transformers_checkpoint.py). Loader errors: test_checkpoint_errors.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <set>

#include "model/checkpoint_names.h"
#include "tests/model/checkpoint_test_util.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

std::map<std::string, const TensorSpec*> by_name(const std::vector<TensorSpec>& v) {
  std::map<std::string, const TensorSpec*> m;
  for (const auto& s : v) m[s.name] = &s;
  return m;
}

// ---- the table against spec §7 --------------------------------------------------------------

TEST(CheckpointTable, FlashShapesAndEncodingsMatchSpec7) {
  const ModelConfig c = config_preset("v4-flash");
  const auto specs = expected_tensors(c);
  const auto m = by_name(specs);
  auto shape = [&](const std::string& n) {
    EXPECT_TRUE(m.count(n)) << n;
    return m.count(n) ? m.at(n)->shape : std::vector<int64_t>{};
  };
  auto stored = [&](const std::string& n) { return stored_shape(c, *m.at(n), release_encoding(c, m.at(n)->role)); };
  using V = std::vector<int64_t>;
  EXPECT_EQ(shape("layers.5.attn_norm.weight"), V({4096}));
  EXPECT_EQ(shape("layers.5.attn.wq_a.weight"), V({1024, 4096}));
  EXPECT_EQ(stored("layers.5.attn.wq_a.weight").dtype, "F8_E4M3");
  EXPECT_EQ(stored("layers.5.attn.wq_a.weight").scale_shape, V({8, 32}));
  EXPECT_EQ(stored("layers.5.attn.wq_b.weight").scale_shape, V({256, 8}));
  EXPECT_EQ(shape("layers.5.attn.wq_b.weight"), V({32768, 1024}));
  EXPECT_EQ(shape("layers.5.attn.wkv.weight"), V({512, 4096}));
  EXPECT_EQ(shape("layers.5.attn.wo_a.weight"), V({8192, 4096}));
  EXPECT_EQ(shape("layers.5.attn.wo_b.weight"), V({4096, 8192}));
  EXPECT_EQ(shape("layers.5.attn.attn_sink"), V({64}));
  EXPECT_EQ(stored("layers.5.attn.attn_sink").dtype, "F32");
  EXPECT_EQ(shape("layers.4.attn.compressor.wkv.weight"), V({1024, 4096}));  // CSA (even)
  EXPECT_EQ(shape("layers.4.attn.compressor.ape"), V({4, 1024}));
  EXPECT_EQ(shape("layers.5.attn.compressor.wgate.weight"), V({512, 4096}));  // HCA (odd)
  EXPECT_EQ(shape("layers.5.attn.compressor.ape"), V({128, 512}));
  EXPECT_EQ(stored("layers.5.attn.compressor.wgate.weight").dtype, "BF16");
  EXPECT_EQ(shape("layers.4.attn.indexer.wq_b.weight"), V({8192, 1024}));
  EXPECT_EQ(shape("layers.4.attn.indexer.weights_proj.weight"), V({64, 4096}));
  EXPECT_EQ(shape("layers.4.attn.indexer.compressor.wkv.weight"), V({256, 4096}));
  EXPECT_EQ(shape("layers.4.attn.indexer.compressor.ape"), V({4, 256}));
  EXPECT_EQ(shape("layers.4.attn.indexer.compressor.norm.weight"), V({128}));
  EXPECT_EQ(shape("layers.4.hc_attn_fn"), V({24, 16384}));
  EXPECT_EQ(shape("layers.4.hc_ffn_base"), V({24}));
  EXPECT_EQ(shape("layers.4.hc_ffn_scale"), V({3}));
  EXPECT_EQ(shape("layers.4.ffn.gate.weight"), V({256, 4096}));
  EXPECT_EQ(shape("layers.3.ffn.gate.bias"), V({256}));
  EXPECT_EQ(shape("layers.2.ffn.gate.tid2eid"), V({129280, 6}));
  EXPECT_EQ(stored("layers.2.ffn.gate.tid2eid").dtype, "I64");
  EXPECT_EQ(stored("layers.7.ffn.experts.255.w1.weight").dtype, "I8");
  EXPECT_EQ(stored("layers.7.ffn.experts.255.w1.weight").shape, V({2048, 2048}));
  EXPECT_EQ(stored("layers.7.ffn.experts.255.w1.weight").scale_shape, V({2048, 128}));
  EXPECT_EQ(stored("layers.7.ffn.experts.0.w2.weight").shape, V({4096, 1024}));
  EXPECT_EQ(stored("layers.7.ffn.experts.0.w2.weight").scale_shape, V({4096, 64}));
  EXPECT_EQ(shape("layers.7.ffn.shared_experts.w1.weight"), V({2048, 4096}));
  EXPECT_EQ(shape("layers.7.ffn.shared_experts.w2.weight"), V({4096, 2048}));
  EXPECT_EQ(stored("layers.7.ffn.shared_experts.w2.weight").dtype, "F8_E4M3");
  EXPECT_EQ(shape("embed.weight"), V({129280, 4096}));
  EXPECT_EQ(shape("head.weight"), V({129280, 4096}));
  EXPECT_EQ(shape("hc_head_fn"), V({4, 16384}));
  EXPECT_EQ(shape("hc_head_scale"), V({1}));
  EXPECT_EQ(shape("mtp.0.e_proj.weight"), V({4096, 4096}));
  EXPECT_EQ(stored("mtp.0.h_proj.weight").dtype, "F8_E4M3");
  EXPECT_EQ(shape("mtp.0.hc_head_base"), V({4}));
  EXPECT_EQ(shape("mtp.0.ffn.gate.bias"), V({256}));  // §9.6: MTP is score-routed
  for (const char* absent : {"layers.0.attn.compressor.wkv.weight", "layers.1.attn.compressor.ape",
                             "layers.5.attn.indexer.wq_b.weight", "layers.3.ffn.gate.tid2eid",
                             "layers.2.ffn.gate.bias", "mtp.0.attn.compressor.wkv.weight", "mtp.0.ffn.gate.tid2eid",
                             "mtp.0.embed.weight", "mtp.0.head.weight"})
    EXPECT_FALSE(m.count(absent)) << absent;
  // §1.1: 2 window-only, 21 CSA, 20 HCA layers
  int64_t comp = 0, idx = 0;
  for (const auto& s : specs) {
    comp += s.name.find(".attn.compressor.wkv.weight") != std::string::npos && s.name.rfind("layers.", 0) == 0;
    idx += s.name.find(".attn.indexer.wq_b.weight") != std::string::npos;
  }
  EXPECT_EQ(comp, 41);
  EXPECT_EQ(idx, 21);
  // §1.1: 284B parameters (main model; the MTP module adds ~6.6B)
  const CheckpointSize z = checkpoint_size(c, false);
  std::cout << "v4-flash: " << z.parameters << " parameters without MTP, " << checkpoint_size(c).parameters
            << " with; " << checkpoint_size(c).stored_bytes << " bytes stored\n";
  EXPECT_NEAR(double(z.parameters) / 284e9, 1.0, 0.005);
}

TEST(CheckpointTable, ProShapesMatchSpec7) {
  const ModelConfig c = config_preset("v4-pro");
  const auto specs = expected_tensors(c);
  const auto m = by_name(specs);
  using V = std::vector<int64_t>;
  auto stored = [&](const std::string& n) { return stored_shape(c, *m.at(n), release_encoding(c, m.at(n)->role)); };
  EXPECT_EQ(m.at("layers.0.attn.compressor.ape")->shape, V({128, 512}));  // Pro: L0-L1 HCA
  EXPECT_EQ(m.at("layers.9.attn.wo_a.weight")->shape, V({16384, 4096}));
  EXPECT_EQ(m.at("layers.9.attn.wo_b.weight")->shape, V({7168, 16384}));
  EXPECT_EQ(m.at("layers.9.attn.wq_b.weight")->shape, V({65536, 1536}));
  EXPECT_EQ(m.at("layers.8.attn.indexer.wq_b.weight")->shape, V({8192, 1536}));
  EXPECT_EQ(m.at("layers.9.hc_attn_fn")->shape, V({24, 28672}));
  EXPECT_EQ(stored("layers.9.ffn.experts.383.w1.weight").shape, V({3072, 3584}));
  EXPECT_EQ(stored("layers.9.ffn.experts.383.w1.weight").scale_shape, V({3072, 224}));
  EXPECT_EQ(stored("layers.9.ffn.experts.0.w2.weight").shape, V({7168, 1536}));
  EXPECT_EQ(stored("layers.9.ffn.experts.0.w2.weight").scale_shape, V({7168, 96}));
  EXPECT_EQ(m.at("layers.2.ffn.gate.tid2eid")->shape, V({129280, 6}));
  const CheckpointSize z = checkpoint_size(c, false);
  std::cout << "v4-pro: " << z.parameters << " parameters without MTP, " << checkpoint_size(c).parameters << " with\n";
  EXPECT_NEAR(double(checkpoint_size(c).parameters) / 1.6e12, 1.0, 0.02);  // "1.6T"
}

// ---- dequantisation by hand ---------------------------------------------------------------

TEST(CheckpointDequant, Fp8BlocksWithDistinctScalesAndPartialEdges) {
  // 3 x 5 weight, block 2: scale grid 2 x 3; row 2 and column 4 fall in partial blocks.
  const std::vector<uint8_t> codes = {
      0x38, 0x40, 0xB8, 0x30, 0x01,   // 1, 2, -1, 0.5, 2^-9
      0x3C, 0x00, 0x48, 0x7E, 0xC0,   // 1.5, 0, 4, 448, -2
      0x39, 0x80, 0x41, 0x01, 0x38};  // 1.125, -0, 2.25, 2^-9, 1
  const std::vector<float> scales = {0.5f, 1.0f, 2.0f,      // block row 0 (rows 0-1)
                                     4.0f, 0.125f, 32.0f};  // block row 1 (row 2 only)
  const std::vector<float> want = {0.5f,  1.0f, -1.0f,  0.5f,  0x1p-8f,
                                   0.75f, 0.0f, 4.0f,   448.0f, -4.0f,
                                   4.5f,  -0.0f, 0.28125f, 0x1p-12f, 32.0f};
  std::vector<float> out(15, std::nanf(""));
  dequantize_fp8(codes.data(), 3, 5, scales.data(), 2, out.data());
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_EQ(out[i], want[i]) << i;
    EXPECT_EQ(std::signbit(out[i]), std::signbit(want[i])) << i;
  }
}

TEST(CheckpointDequant, Fp4NibbleOrderAndScalePer32) {
  // Row 0: 34 inputs (17 bytes, 2 scales); row 1: the same bytes, other scales. Byte j holds
  // element 2j in its LOW nibble: 0x21 -> (0.5, 1.0); 0xF8 -> (-0, -6); 0x7A -> (-1, 6).
  const int64_t cols = 34;
  std::vector<uint8_t> packed(2 * 17, 0x00);
  for (int r = 0; r < 2; ++r) {
    packed[size_t(r * 17 + 0)] = 0x21;
    packed[size_t(r * 17 + 1)] = 0xF8;
    packed[size_t(r * 17 + 15)] = 0x7A;  // elements 30, 31: the last of block 0
    packed[size_t(r * 17 + 16)] = 0x53;  // elements 32, 33: block 1 -> (1.5, 3)
  }
  const std::vector<float> scales = {2.0f, 0.25f, 1.0f, 8.0f};
  std::vector<float> out(size_t(2 * cols), std::nanf(""));
  dequantize_fp4(packed.data(), 2, cols, scales.data(), out.data());
  const float r0[] = {1.0f, 2.0f, -0.0f, -12.0f};
  for (int k = 0; k < 4; ++k) EXPECT_EQ(out[size_t(k)], r0[k]) << k;
  EXPECT_TRUE(std::signbit(out[2]));
  EXPECT_EQ(out[30], -2.0f);
  EXPECT_EQ(out[31], 12.0f);
  EXPECT_EQ(out[32], 0.375f);
  EXPECT_EQ(out[33], 0.75f);
  EXPECT_EQ(out[size_t(cols + 0)], 0.5f);
  EXPECT_EQ(out[size_t(cols + 3)], -6.0f);
  EXPECT_EQ(out[size_t(cols + 32)], 12.0f);
  EXPECT_EQ(out[size_t(cols + 33)], 24.0f);
  for (int k = 4; k < 30; ++k) EXPECT_EQ(out[size_t(k)], 0.0f) << k;
}

// ---- init -> load round trips ----------------------------------------------------------------

// Decodes a spec's stored bytes with the test's own decoders and compares with the loaded
// floats bit for bit; checks the stored encoding is the release one.
void expect_round_trip(const ModelConfig& c, const std::string& dir, const ModelWeights& w) {
  Ckpt raw(dir);
  std::map<std::string, const Entry*> e;
  for (const auto& x : raw.entries) e[x.name] = &x;
  std::set<std::string> consumed;
  ModelWeights& mw = const_cast<ModelWeights&>(w);
  int64_t checked = 0, nonzero = 0, total = 0;
  for (const auto& s : expected_tensors(c)) {
    ASSERT_TRUE(e.count(s.name)) << s.name;
    const Entry& t = *e.at(s.name);
    consumed.insert(s.name);
    const Encoding enc = release_encoding(c, s.role);
    const StoredShape st = stored_shape(c, s, enc);
    ASSERT_EQ(std::string(dtype_name(t.dtype)), st.dtype) << s.name;
    ASSERT_EQ(t.shape, st.shape) << s.name;
    if (s.role == TensorRole::index) {
      const std::vector<int64_t>& got = *s.dest_int(mw);
      ASSERT_EQ(int64_t(got.size()), s.numel());
      ASSERT_EQ(std::memcmp(got.data(), t.bytes.data(), t.bytes.size()), 0) << s.name;
      const int64_t k = s.shape[1];
      for (int64_t r = 0; r < s.shape[0]; ++r) {
        std::set<int64_t> row(got.begin() + r * k, got.begin() + (r + 1) * k);
        ASSERT_EQ(int64_t(row.size()), k) << "duplicate expert in " << s.name << " row " << r;
        ASSERT_GE(*row.begin(), 0);
        ASSERT_LT(*row.rbegin(), c.n_routed_experts);
      }
      continue;
    }
    std::vector<double> want(size_t(s.numel()));
    const int64_t cols = s.shape.size() == 2 ? s.shape[1] : 1;
    if (enc == Encoding::fp8 || enc == Encoding::fp4) {
      const std::string sn = s.name.substr(0, s.name.size() - 7) + ".scale";
      ASSERT_TRUE(e.count(sn)) << sn;
      const Entry& sc = *e.at(sn);
      consumed.insert(sn);
      ASSERT_EQ(std::string(dtype_name(sc.dtype)), "F8_E8M0");
      ASSERT_EQ(sc.shape, st.scale_shape) << sn;
      const int64_t sc_cols = sc.shape[1];
      for (int64_t i = 0; i < s.numel(); ++i) {
        const int64_t r = i / cols, k = i % cols;
        if (enc == Encoding::fp8) {
          const int64_t B = c.weight_block;
          want[size_t(i)] = spec_e4m3(t.bytes[size_t(i)]) * spec_e8m0(sc.bytes[size_t((r / B) * sc_cols + k / B)]);
        } else {
          const uint8_t byte = t.bytes[size_t(r * t.shape[1] + k / 2)];
          const uint8_t nib = k % 2 == 0 ? (byte & 15) : (byte >> 4);
          want[size_t(i)] = spec_e2m1(nib) * spec_e8m0(sc.bytes[size_t(r * sc_cols + k / 32)]);
        }
      }
    } else {
      for (int64_t i = 0; i < s.numel(); ++i) {
        if (enc == Encoding::bf16) {
          uint16_t h;
          std::memcpy(&h, t.bytes.data() + 2 * i, 2);
          want[size_t(i)] = spec_bf16(h);
        } else {
          float f;
          std::memcpy(&f, t.bytes.data() + 4 * i, 4);
          want[size_t(i)] = f;
        }
      }
    }
    const std::vector<float>& got = *s.dest(mw);
    ASSERT_EQ(int64_t(got.size()), s.dest_numel) << s.name;
    for (int64_t i = 0; i < s.numel(); ++i) {
      const float g = got[size_t(s.offset + i)], x = float(want[size_t(i)]);
      ASSERT_TRUE(std::memcmp(&g, &x, 4) == 0) << s.name << " element " << i << ": loaded " << g << ", stored " << x;
      nonzero += g != 0.0f;
    }
    total += s.numel();
    ++checked;
  }
  EXPECT_EQ(consumed.size(), raw.entries.size()) << "the files hold tensors the table does not name";
  EXPECT_GT(double(nonzero), 0.9 * double(total)) << "mostly zero weights";
  EXPECT_GT(checked, 0);
}

TEST(CheckpointRoundTrip, TinyInitThenLoadIsBitExactAgainstAnIndependentDecode) {
  TmpDir d;
  const ModelConfig c = config_preset("v4-tiny");
  const WriteSummary ws = write_random_checkpoint(c, 11, d / "tiny", 4 << 20);
  EXPECT_GT(ws.shards, 1);
  LoadInfo info;
  const auto t0 = std::chrono::steady_clock::now();
  const ModelWeights w = load_checkpoint(d / "tiny", {}, &info);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "v4-tiny load: " << sec << " s, " << info.shards << " shards, " << info.file_bytes << " file bytes, "
            << w.bytes() << " float bytes, peak RSS " << info.peak_rss_bytes / (1 << 20) << " MiB\n";
  EXPECT_EQ(info.naming, "official");
  EXPECT_EQ(info.shards, ws.shards);
  EXPECT_EQ(w.config.n_mtp_layers, 1);
  EXPECT_EQ(w.layers.size(), 4u);
  EXPECT_EQ(w.mtp.size(), 1u);
  EXPECT_EQ(w.bytes(), checkpoint_size(c).float_bytes);
  EXPECT_EQ(config_to_json(w.config), config_to_json(c));
  expect_round_trip(c, d / "tiny", w);
}

TEST(CheckpointRoundTrip, PartialFp8BlocksAndBf16Experts) {
  TmpDir d;
  ModelConfig c = micro_config();
  c.weight_block = 96;  // 128-wide tensors: one full and one partial block per dimension
  write_random_checkpoint(c, 3, d / "a", 0);
  expect_round_trip(c, d / "a", load_checkpoint(d / "a"));
  c.expert_dtype = "bf16";
  c.fp8_weights = false;
  write_random_checkpoint(c, 3, d / "b", 0);
  expect_round_trip(c, d / "b", load_checkpoint(d / "b"));
}

TEST(CheckpointRoundTrip, SameSeedSameBytesAndShardingDoesNotChangeWeights) {
  TmpDir d;
  const ModelConfig c = micro_config();
  write_random_checkpoint(c, 5, d / "a", 64 << 10);
  write_random_checkpoint(c, 5, d / "b", 64 << 10);
  write_random_checkpoint(c, 5, d / "one/", 0);  // a trailing slash names the same directory
  write_random_checkpoint(c, 6, d / "other", 0);
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  int files = 0;
  for (const auto& p : fs::directory_iterator(d / "a")) {
    EXPECT_EQ(slurp(p.path()), slurp(fs::path(d / "b") / p.path().filename())) << p.path();
    ++files;
  }
  EXPECT_GT(files, 4);  // config, index, several shards
  const ModelWeights a = load_checkpoint(d / "a"), one = load_checkpoint(d / "one"), other = load_checkpoint(d / "other");
  int same = 0, differ = 0;
  for (const auto& s : expected_tensors(c)) {
    if (s.role == TensorRole::index) {
      EXPECT_EQ(*s.dest_int(const_cast<ModelWeights&>(a)), *s.dest_int(const_cast<ModelWeights&>(one)));
      continue;
    }
    const auto& x = *s.dest(const_cast<ModelWeights&>(a));
    same += std::memcmp(x.data(), s.dest(const_cast<ModelWeights&>(one))->data(), x.size() * 4) == 0;
    differ += std::memcmp(x.data(), s.dest(const_cast<ModelWeights&>(other))->data(), x.size() * 4) != 0;
  }
  const int n = int(expected_tensors(c).size()) - c.n_hash_layers;
  EXPECT_EQ(same, n);
  EXPECT_GE(differ, n - 10);  // another seed changes the random tensors (not the constant parts)
}

// Projections keep a unit-RMS input at unit RMS (variance-preserving init), and the mHC
// bases give pre = 1/n, so activations stay O(1) through the layers.
TEST(CheckpointInit, ScalesKeepActivationsSane) {
  TmpDir d;
  const ModelConfig c = micro_config();
  write_random_checkpoint(c, 9, d / "m", 0);
  ModelWeights w = load_checkpoint(d / "m");
  for (const auto& s : expected_tensors(c)) {
    if (s.shape.size() != 2 || s.name == "embed.weight" || s.name.find("hc_") != std::string::npos ||
        s.name.find(".ape") != std::string::npos || s.role == TensorRole::index)
      continue;
    const float* p = s.dest(w)->data() + s.offset;
    double ms = 0;
    for (int64_t i = 0; i < s.numel(); ++i) ms += double(p[i]) * p[i];
    ms /= double(s.numel());
    const double gain = s.name.find("_proj.weight") != std::string::npos && s.name.rfind("mtp.", 0) == 0 ? 0.5 : 1.0;
    // mean square * fan_in = E[(W x)_i^2] for unit-RMS x; 4096+ entries: sampling error < 5%,
    // FP4 rounding (step/value <= 1/4 inside a scale block) adds < 10%
    EXPECT_NEAR(ms * double(s.shape[1]) / gain, 1.0, 0.2) << s.name;
  }
  const int64_t n = c.hc_mult;
  for (const auto& l : w.layers) {
    double pre = 0;
    for (int64_t j = 0; j < n; ++j) pre += 1.0 / (1.0 + std::exp(-l.hc_attn_base[size_t(j)])) / double(n);
    EXPECT_NEAR(pre, 1.0 / double(n), 0.05);
    for (float x : l.attn_norm) EXPECT_NEAR(x, 1.0, 0.1 + 0x1p-7);  // 1 + U(-0.1, 0.1), then BF16 (ulp 2^-7)
  }
}

// ---- the writer's refusals and atomicity --------------------------------------------------------

TEST(CheckpointWriter, RefusesNonEmptyDirectoriesAndReplacesWithForce) {
  TmpDir d;
  const ModelConfig c = micro_config();
  fs::create_directories(d / "empty");
  write_random_checkpoint(c, 1, d / "empty", 0);  // an empty directory is fine
  EXPECT_TRUE(fs::exists(d / "empty/config.json"));
  fs::create_directories(d / "full");
  std::ofstream(d / "full/keep.txt") << "x";
  expect_input_error([&] { write_random_checkpoint(c, 1, d / "full", 0); }, {d / "full", "not empty", "--force"});
  EXPECT_TRUE(fs::exists(d / "full/keep.txt"));
  WriteOptions o;
  o.force = true;
  write_random_checkpoint(c, 1, d / "full", 0, o);
  EXPECT_FALSE(fs::exists(d / "full/keep.txt"));
  EXPECT_NO_THROW(load_checkpoint(d / "full"));
  int left = 0;
  for (const auto& p : fs::directory_iterator(d.path())) left += p.path().filename().string().find(".old-") != std::string::npos;
  EXPECT_EQ(left, 0);
}

TEST(CheckpointWriter, AFailedWriteLeavesNothingBehind) {
  TmpDir d;
  const ModelConfig c = micro_config();
  WriteOptions o;
  o.tokenizer = d / "no-such-tokenizer.json";  // fails after every shard is written
  expect_input_error([&] { write_random_checkpoint(c, 1, d / "x", 0, o); }, {"tokenizer", "does not exist"});
  fs::create_directories(d / "y");
  std::ofstream(d / "y/keep.txt") << "x";
  o.force = true;
  expect_input_error([&] { write_random_checkpoint(c, 1, d / "y", 0, o); }, {"tokenizer"});
  std::vector<std::string> names;
  for (const auto& p : fs::directory_iterator(d.path())) names.push_back(p.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"y"});
  EXPECT_TRUE(fs::exists(d / "y/keep.txt"));
}

TEST(CheckpointWriter, RefusesPresetsTooLargeWithTheSizeTheyNeed) {
  TmpDir d;
  WriteOptions o;
  o.max_bytes = 64ll << 30;
  expect_input_error([&] { write_random_checkpoint(config_preset("v4-flash"), 1, d / "f", 0, o); },
                     {"v4-flash", "B parameters", "GB"});
  EXPECT_FALSE(fs::exists(d / "f"));
}

TEST(CheckpointWriter, CopiesTheTinyTokenizerWhenItFits) {
  TmpDir d;
  const std::string tok = default_tokenizer_asset();
  if (!fs::exists(tok)) GTEST_SKIP() << "no tokenizer asset at " << tok;
  const WriteSummary s = write_random_checkpoint(config_preset("v4-tiny"), 1, d / "t", 0);
  EXPECT_TRUE(s.tokenizer_copied) << s.tokenizer_note;
  EXPECT_EQ(fs::file_size(d / "t/tokenizer.json"), fs::file_size(tok));
  const WriteSummary m = write_random_checkpoint(micro_config(), 1, d / "m", 0);  // vocab 512: too small
  EXPECT_FALSE(m.tokenizer_copied);
  EXPECT_FALSE(fs::exists(d / "m/tokenizer.json"));
}

// ---- names ---------------------------------------------------------------------------------------

TEST(CheckpointNames, EveryOfficialNameMapsToItselfAndFromTransformers) {
  std::set<std::string> tf;
  for (const auto& s : expected_tensors(config_preset("v4-tiny"))) {
    const CanonicalName o = canonical_name(s.name);
    ASSERT_EQ(o.kind, CanonicalName::Kind::tensor) << s.name;
    EXPECT_EQ(o.official, s.name);
    EXPECT_FALSE(o.transformers);
    const CanonicalName h = canonical_name("model." + s.name);  // save_original_format=True
    if (s.name != "embed.weight" && s.name.rfind("mtp.", 0) != 0) {
      EXPECT_EQ(h.official, s.name) << s.name;
    }
    const std::string t = transformers_name(s.name);
    if (s.name.rfind("mtp.", 0) == 0) {
      EXPECT_EQ(t, "") << s.name;
      continue;
    }
    ASSERT_NE(t, "") << s.name;
    EXPECT_TRUE(tf.insert(t).second) << "two official names map to " << t;
    const CanonicalName back = canonical_name(t);
    EXPECT_EQ(back.official, s.name) << t;
    EXPECT_TRUE(back.transformers) << t;
  }
  using K = CanonicalName::Kind;
  EXPECT_EQ(canonical_name("model.layers.0.attn.norm.weight").official, "layers.0.attn.kv_norm.weight");
  EXPECT_EQ(canonical_name("model.layers.1.attn.compressor.norm.weight").official, "layers.1.attn.compressor.norm.weight");
  EXPECT_EQ(canonical_name("layers.0.attn.wq_a.scale").official, "layers.0.attn.wq_a.scale");
  EXPECT_EQ(canonical_name("model.layers.0.self_attn.q_a_proj.weight_scale_inv").official, "layers.0.attn.wq_a.scale");
  EXPECT_EQ(canonical_name("layers.3.ffn.experts.7.w2.scale").official, "layers.3.ffn.experts.7.w2.scale");
  EXPECT_EQ(canonical_name("model.layers.2.attn_hc.scale").official, "layers.2.hc_attn_scale");
  EXPECT_EQ(canonical_name("model.layers.2.mlp.experts.gate_up_proj").kind, K::packed_gate_up);
  EXPECT_EQ(canonical_name("model.layers.2.mlp.experts.down_proj").kind, K::packed_down);
  EXPECT_EQ(canonical_name("model.layers.2.mlp.experts.5.up_proj.weight").official, "layers.2.ffn.experts.5.w3.weight");
  EXPECT_EQ(canonical_name("mtp.0.embed.weight").kind, K::skip);
  EXPECT_EQ(canonical_name("mtp.0.head.weight").kind, K::skip);
  EXPECT_EQ(canonical_name("mtp.0.e_proj.scale").official, "mtp.0.e_proj.scale");
  for (const char* bad : {"model.layers.x.attn.wq_a.weight", "layers.0.attn.wq_c.weight", "foo", "layers.0.",
                          "model.layers.0.self_attn.rotary_emb.inv_freq"})
    EXPECT_EQ(canonical_name(bad).kind, K::unknown) << bad;
}

// ---- transformers-saved checkpoints --------------------------------------------------------------

const std::string kTf = std::string(DSV4_TEST_DATA_DIR) + "/transformers_v4_ckpt";

TEST(CheckpointTransformers, ConfigSpellingIsUnderstood) {
  const ModelConfig t = checkpoint_config(kTf + "/transformers");
  const ModelConfig o = checkpoint_config(kTf + "/official");
  EXPECT_EQ(t.rope_dim, 16);
  EXPECT_EQ(t.compress_ratios, (std::vector<int64_t>{0, 4, 128, 0}));  // + the config's MTP entry
  EXPECT_EQ(t.n_hash_layers, 1);
  EXPECT_EQ(t.yarn.factor, 16.0);
  EXPECT_EQ(t.yarn.original_max_position, 65536);
  EXPECT_EQ(t.compress_rope_theta, 160000.0);
  EXPECT_EQ(t.rope_theta, 10000.0);
  ModelConfig t2 = t;
  t2.name = o.name;
  t2.n_mtp_layers = 0;
  t2.compress_ratios.resize(3);
  EXPECT_EQ(config_to_json(t2), config_to_json(o));
}

TEST(CheckpointTransformers, BothSaveFormatsLoadToTheOfficialTensors) {
  LoadInfo io;
  ModelWeights off = load_checkpoint(kTf + "/official", {}, &io);
  EXPECT_EQ(io.naming, "official");
  for (const char* sub : {"transformers", "transformers_original"}) {
    SCOPED_TRACE(sub);
    LoadInfo it;
    ModelWeights tf = load_checkpoint(kTf + "/" + sub, {}, &it);
    // save_original_format=True keeps the official head.weight beside model.* names
    EXPECT_EQ(it.naming, std::string(sub) == "transformers" ? "transformers" : "mixed");
    ASSERT_EQ(it.notes.size(), 1u);
    EXPECT_NE(it.notes[0].find("MTP"), std::string::npos) << it.notes[0];
    EXPECT_EQ(tf.config.n_mtp_layers, 0);
    int n = 0;
    for (const auto& s : expected_tensors(off.config)) {
      if (s.role == TensorRole::index) {
        EXPECT_EQ(*s.dest_int(off), *s.dest_int(tf)) << s.name;
      } else {
        const auto &a = *s.dest(off), &b = *s.dest(tf);
        ASSERT_EQ(a.size(), b.size()) << s.name;
        EXPECT_EQ(std::memcmp(a.data() + s.offset, b.data() + s.offset, size_t(s.numel()) * 4), 0) << s.name;
      }
      ++n;
    }
    EXPECT_GT(n, 80);
  }
}

// The packed expert slices, read straight from the file: w1 = gate_up[e, :I], w3 =
// gate_up[e, I:], w2 = down[e].
TEST(CheckpointTransformers, PackedExpertsSplitAsTransformersConcatenates) {
  ModelWeights w = load_checkpoint(kTf + "/transformers");
  SafetensorsReader r(kTf + "/transformers/model.safetensors");
  const int64_t E = w.config.n_routed_experts, I = w.config.moe_inter_dim, D = w.config.dim;
  for (int64_t L = 0; L < w.config.n_layers; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".mlp.experts.";
    const TensorInfo* gu = r.find(p + "gate_up_proj");
    const TensorInfo* dn = r.find(p + "down_proj");
    ASSERT_TRUE(gu && dn);
    ASSERT_EQ(gu->dtype, DType::F32);
    const auto g = r.read_float<float>(*gu), dd = r.read_float<float>(*dn);
    const auto& l = w.layers[size_t(L)];
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t i = 0; i < I * D; ++i) {
        ASSERT_EQ(l.w1[size_t(e * I * D + i)], g[size_t(e * 2 * I * D + i)]);
        ASSERT_EQ(l.w3[size_t(e * I * D + i)], g[size_t(e * 2 * I * D + I * D + i)]);
        ASSERT_EQ(l.w2[size_t(e * D * I + i)], dd[size_t(e * D * I + i)]);
      }
    }
  }
}

}  // namespace
}  // namespace dsv4
