// model/checkpoint loader errors: every class is an InputError that names the file and the
// tensor, never a crash or a silent zero; plus the accepted variants (F32 scales, I32
// tid2eid, one model.safetensors, MTP policies, skipped mtp.*.embed copies).
#include <gtest/gtest.h>

#include "tests/model/checkpoint_test_util.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

// One valid micro checkpoint per suite; each test edits a copy.
class CheckpointErrors : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new TmpDir;
    write_random_checkpoint(micro_config(), 21, *base_ / "ok", 0);
  }
  static void TearDownTestSuite() {
    delete base_;
    base_ = nullptr;
  }
  void SetUp() override {
    dir_ = tmp_ / "c";
    copy_dir(*base_ / "ok", dir_);
  }
  std::string shard() const { return dir_ + "/model-00001-of-00001.safetensors"; }
  std::string load_error(const LoadOptions& o = {}) {
    try {
      load_checkpoint(dir_, o);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  static TmpDir* base_;
  TmpDir tmp_;
  std::string dir_;
};
TmpDir* CheckpointErrors::base_ = nullptr;

TEST_F(CheckpointErrors, TheUneditedCopyLoads) { EXPECT_EQ(load_error(), ""); }

TEST_F(CheckpointErrors, MissingTensor) {
  Ckpt k(dir_);
  k.remove("layers.1.attn.wkv.weight");
  k.remove("layers.1.attn.wkv.scale");
  k.save();
  expect_input_error([&] { load_checkpoint(dir_); },
                     {dir_, "missing tensor 'layers.1.attn.wkv.weight'", "self_attn.kv_proj.weight", "[128, 128]"});
}

TEST_F(CheckpointErrors, WrongShape) {
  Ckpt k(dir_);
  Entry& e = k.at("layers.2.attn.attn_sink");
  e.shape = {3};
  e.bytes.resize(12, 0);
  k.save();
  expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "'layers.2.attn.attn_sink'", "expected shape [2], found [3]"});
}

TEST_F(CheckpointErrors, WrongDtype) {
  {
    Ckpt k(dir_);
    k.at("layers.0.attn_norm.weight").dtype = DType::I16;  // same byte size as BF16
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "'layers.0.attn_norm.weight'", "dtype I16"});
  }
  {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.attn.q_norm.weight");  // FP8 is only for projections
    e.dtype = DType::F8_E4M3;
    e.bytes.resize(e.bytes.size() / 2);
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"'layers.0.attn.q_norm.weight'", "F8_E4M3", "not allowed"});
  }
  {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.ffn.gate.tid2eid");
    e.dtype = DType::F64;
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"'layers.0.ffn.gate.tid2eid'", "expected I64 (or I32), found F64"});
  }
}

TEST_F(CheckpointErrors, MissingScale) {
  Ckpt k(dir_);
  k.remove("layers.0.attn.wq_a.scale");
  k.save();
  expect_input_error([&] { load_checkpoint(dir_); },
                     {shard(), "'layers.0.attn.wq_a.weight'", "missing scale tensor 'layers.0.attn.wq_a.scale'"});
  copy_dir(*base_ / "ok", dir_);
  Ckpt k2(dir_);
  k2.remove("layers.1.ffn.experts.2.w2.scale");
  k2.save();
  expect_input_error([&] { load_checkpoint(dir_); }, {"missing scale", "layers.1.ffn.experts.2.w2.scale"});
}

TEST_F(CheckpointErrors, ScaleOfTheWrongShapeOrDtype) {
  {
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.attn.wq_b.scale");  // [2, 1] for [256, 128] with 128-blocks
    e.shape = {1, 2};
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); },
                       {shard(), "'layers.0.attn.wq_b.scale'", "scale must have shape [2, 1], found [1, 2]"});
  }
  {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.3.ffn.experts.0.w1.scale");  // FP4: [64, 128/32]
    e.shape = {64, 2};
    e.bytes.resize(128);
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"'layers.3.ffn.experts.0.w1.scale'", "[64, 4]"});
  }
  {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.attn.wq_a.scale");
    e.dtype = DType::I8;
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"'layers.0.attn.wq_a.scale'", "F8_E8M0 (or F32)", "I8"});
  }
}

TEST_F(CheckpointErrors, ScaleThatIsNaNOrZero) {
  {
    Ckpt k(dir_);
    k.at("layers.0.attn.wo_b.scale").bytes[0] = 0xFF;  // E8M0 NaN
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "'layers.0.attn.wo_b.scale'", "[0, 0]", "finite and positive"});
  }
  {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.attn.wo_b.scale");
    std::vector<float> f(e.bytes.size(), 0.0f);  // F32 scales (V3 style), all zero
    e.dtype = DType::F32;
    e.bytes.assign(reinterpret_cast<uint8_t*>(f.data()), reinterpret_cast<uint8_t*>(f.data() + f.size()));
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"'layers.0.attn.wo_b.scale'", "finite and positive"});
  }
}

TEST_F(CheckpointErrors, TruncatedFile) {
  fs::resize_file(shard(), fs::file_size(shard()) - 100);
  expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "past the data section"});
}

// A raw shard whose header is edited: offsets past the end, overlapping tensors.
TEST_F(CheckpointErrors, OffsetsPastTheEndAndOverlaps) {
  auto raw = [&](const std::string& header, size_t data) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char((header.size() >> (8 * i)) & 0xFF);
    std::ofstream(shard(), std::ios::binary) << s << header << std::string(data, '\0');
  };
  raw(R"({"hc_head_base":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("hc_head_scale":{"dtype":"F32","shape":[1],"data_offsets":[16,20]}})", 18);
  expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "hc_head_scale", "past the data section"});
  raw(R"({"hc_head_base":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("hc_head_scale":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16);
  expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "hc_head_base", "hc_head_scale", "overlap"});
}

TEST_F(CheckpointErrors, ShardNamedInTheIndexButAbsent) {
  fs::remove(shard());
  expect_input_error([&] { load_checkpoint(dir_); },
                     {dir_, "model-00001-of-00001.safetensors", "does not exist", "model.safetensors.index.json"});
}

TEST_F(CheckpointErrors, IndexNotJsonOrWithoutWeightMap) {
  std::ofstream(dir_ + "/model.safetensors.index.json") << "{\"weight_map\": {";
  expect_input_error([&] { load_checkpoint(dir_); }, {dir_ + "/model.safetensors.index.json", "not valid JSON"});
  std::ofstream(dir_ + "/model.safetensors.index.json") << R"({"metadata": {}})";
  expect_input_error([&] { load_checkpoint(dir_); }, {"model.safetensors.index.json", "no 'weight_map' object"});
  std::ofstream(dir_ + "/model.safetensors.index.json") << R"({"weight_map": {"embed.weight": 3}})";
  expect_input_error([&] { load_checkpoint(dir_); }, {"'embed.weight'", "not a file name"});
  std::ofstream(dir_ + "/model.safetensors.index.json") << R"({"weight_map": {"embed.weight": "../x.safetensors"}})";
  expect_input_error([&] { load_checkpoint(dir_); }, {"outside the directory"});
}

TEST_F(CheckpointErrors, IndexAndShardsDisagree) {
  Ckpt k(dir_);
  k.save();
  std::ofstream(dir_ + "/model.safetensors.index.json")
      << R"({"weight_map": {"embed.weight": "model-00001-of-00001.safetensors", "nope": "model-00001-of-00001.safetensors"}})";
  expect_input_error([&] { load_checkpoint(dir_); }, {"maps tensor 'nope'", "no such tensor"});
  std::ofstream(dir_ + "/model.safetensors.index.json")
      << R"({"weight_map": {"embed.weight": "model-00001-of-00001.safetensors"}})";
  expect_input_error([&] { load_checkpoint(dir_); }, {shard(), "is not listed in index"});
}

TEST_F(CheckpointErrors, NoConfigOrNoWeights) {
  fs::remove(dir_ + "/config.json");
  expect_input_error([&] { load_checkpoint(dir_); }, {dir_, "no config.json"});
  copy_dir(*base_ / "ok", dir_);
  fs::remove(dir_ + "/model.safetensors.index.json");
  expect_input_error([&] { load_checkpoint(dir_); }, {dir_, "neither model.safetensors.index.json nor model.safetensors"});
  expect_input_error([&] { load_checkpoint(dir_ + "/absent"); }, {"not a directory"});
}

TEST_F(CheckpointErrors, Tid2eidOutOfRange) {
  for (int64_t bad : {int64_t(4), int64_t(-1)}) {
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry& e = k.at("layers.0.ffn.gate.tid2eid");  // [512, 2], 4 experts
    std::memcpy(e.bytes.data() + 8 * (2 * 37 + 1), &bad, 8);
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); },
                       {shard(), "'layers.0.ffn.gate.tid2eid'", "[37, 1] = " + std::to_string(bad), "[0, n_routed_experts = 4)"});
  }
}

// §9.7: a repeated expert in a row is legal (applied once by the official code): loaded, noted.
TEST_F(CheckpointErrors, Tid2eidRepeatedExpertIsLoadedWithANote) {
  Ckpt k(dir_);
  Entry& e = k.at("layers.0.ffn.gate.tid2eid");
  std::memcpy(e.bytes.data() + 8 * (2 * 5 + 1), e.bytes.data() + 8 * (2 * 5), 8);  // row 5: (a, a)
  k.save();
  LoadInfo info;
  ModelWeights w = load_checkpoint(dir_, {}, &info);
  EXPECT_EQ(w.layers[0].tid2eid[10], w.layers[0].tid2eid[11]);
  ASSERT_EQ(info.notes.size(), 1u);
  EXPECT_NE(info.notes[0].find("layers.0.ffn.gate.tid2eid: 1 row(s) repeat an expert"), std::string::npos) << info.notes[0];
}

TEST_F(CheckpointErrors, NaNOrInfInAWeight) {
  struct Case {
    const char* tensor;
    size_t byte;
    std::vector<uint8_t> value;
    const char* where;
    const char* what;
  };
  const Case cases[] = {
      {"layers.0.attn_norm.weight", 2 * 5, {0xC0, 0x7F}, "[5]", "NaN"},              // BF16 NaN
      {"layers.1.attn.wq_b.weight", 130, {0x7F}, "[1, 2]", "NaN"},                    // e4m3 NaN code
      {"layers.2.hc_ffn_fn", 4 * 3, {0x00, 0x00, 0x80, 0xFF}, "[0, 3]", "infinite"},  // F32 -inf
      {"embed.weight", 2 * 7, {0x80, 0x7F}, "[0, 7]", "infinite"},                    // BF16 +inf
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.tensor);
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    std::memcpy(k.at(c.tensor).bytes.data() + c.byte, c.value.data(), c.value.size());
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); },
                       {shard(), std::string("'") + c.tensor + "'", std::string("element ") + c.where, c.what});
  }
}

TEST_F(CheckpointErrors, UnexpectedTensorsAndOrphanScales) {
  Ckpt k(dir_);
  k.add<float>("layers.0.attn.bogus.weight", DType::F32, {2}, {1.0f, 2.0f});
  k.save();
  expect_input_error([&] { load_checkpoint(dir_); }, {"1 tensor(s) the config does not use", "layers.0.attn.bogus.weight", shard()});
  LoadOptions o;
  o.allow_unexpected = true;
  LoadInfo info;
  EXPECT_NO_THROW(load_checkpoint(dir_, o, &info));
  ASSERT_EQ(info.notes.size(), 1u);
  EXPECT_NE(info.notes[0].find("bogus"), std::string::npos);

  copy_dir(*base_ / "ok", dir_);
  Ckpt k2(dir_);
  k2.add<uint8_t>("layers.0.attn.q_norm.scale", DType::F8_E8M0, {1}, {127});  // q_norm is BF16
  k2.save();
  expect_input_error([&] { load_checkpoint(dir_); }, {"layers.0.attn.q_norm.scale"});
  copy_dir(*base_ / "ok", dir_);
  Ckpt k3(dir_);
  k3.add<uint8_t>("layers.0.attn.wq_a.weight_scale_inv", DType::F8_E8M0, {1, 2}, {127, 127});  // a second scale
  k3.save();
  expect_input_error([&] { load_checkpoint(dir_); }, {"layers.0.attn.wq_a.weight_scale_inv", "are both 'layers.0.attn.wq_a.scale'"});
}

TEST_F(CheckpointErrors, SameTensorUnderTwoNames) {
  Ckpt k(dir_);
  Entry copy = k.at("layers.0.attn.attn_sink");
  copy.name = "model.layers.0.self_attn.sinks";
  k.entries.push_back(copy);
  k.save();
  expect_input_error([&] { load_checkpoint(dir_); },
                     {"model.layers.0.self_attn.sinks", "layers.0.attn.attn_sink", "are both 'layers.0.attn.attn_sink'"});
}

// ---- accepted variants ------------------------------------------------------------------------

TEST_F(CheckpointErrors, F32ScalesI32Tid2eidAndOneFileGiveTheSameWeights) {
  const ModelWeights ref = load_checkpoint(dir_);
  Ckpt k(dir_);
  for (auto& e : k.entries) {
    if (e.dtype == DType::F8_E8M0) {  // 2^(b-127) as F32, V3 style
      std::vector<float> f(e.bytes.size());
      for (size_t i = 0; i < f.size(); ++i) f[i] = float(spec_e8m0(e.bytes[i]));
      e.dtype = DType::F32;
      e.bytes.assign(reinterpret_cast<uint8_t*>(f.data()), reinterpret_cast<uint8_t*>(f.data() + f.size()));
    } else if (e.dtype == DType::I64) {
      std::vector<int32_t> v(e.bytes.size() / 8);
      for (size_t i = 0; i < v.size(); ++i) {
        int64_t x;
        std::memcpy(&x, e.bytes.data() + 8 * i, 8);
        v[i] = int32_t(x);
      }
      e.dtype = DType::I32;
      e.bytes.assign(reinterpret_cast<uint8_t*>(v.data()), reinterpret_cast<uint8_t*>(v.data() + v.size()));
    }
  }
  k.save(/*index=*/false);
  EXPECT_FALSE(fs::exists(dir_ + "/model.safetensors.index.json"));
  ModelWeights got = load_checkpoint(dir_);
  ModelWeights& r = const_cast<ModelWeights&>(ref);
  for (const auto& s : expected_tensors(got.config)) {
    if (s.role == TensorRole::index) {
      EXPECT_EQ(*s.dest_int(got), *s.dest_int(r)) << s.name;
    } else {
      EXPECT_EQ(std::memcmp(s.dest(got)->data(), s.dest(r)->data(), s.dest(r)->size() * 4), 0) << s.name;
    }
  }
}

TEST_F(CheckpointErrors, MtpPolicies) {
  LoadOptions req;
  req.mtp = LoadOptions::Mtp::required;
  LoadOptions skip;
  skip.mtp = LoadOptions::Mtp::skip;
  LoadInfo info;
  EXPECT_EQ(load_checkpoint(dir_, skip, &info).config.n_mtp_layers, 0);
  EXPECT_NE(info.notes.at(0).find("skipped"), std::string::npos);
  {  // one MTP tensor missing: an error under every policy that loads MTP
    Ckpt k(dir_);
    k.remove("mtp.0.hnorm.weight");
    k.save();
    expect_input_error([&] { load_checkpoint(dir_); }, {"missing tensor 'mtp.0.hnorm.weight'"});
  }
  {  // no MTP tensor at all: dropped unless required
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    std::vector<Entry> keep;
    for (auto& e : k.entries)
      if (e.name.rfind("mtp.", 0) != 0) keep.push_back(e);
    k.entries = keep;
    k.save();
    ModelWeights w = load_checkpoint(dir_, {}, &info);
    EXPECT_EQ(w.config.n_mtp_layers, 0);
    EXPECT_TRUE(w.mtp.empty());
    EXPECT_NE(info.notes.at(0).find("MTP"), std::string::npos);
    expect_input_error([&] { load_checkpoint(dir_, req); }, {"missing tensor 'mtp.0."});
  }
  {  // mtp.0.embed / head copies are skipped (§9.6)
    copy_dir(*base_ / "ok", dir_);
    Ckpt k(dir_);
    Entry e = k.at("embed.weight");
    e.name = "mtp.0.embed.weight";
    k.entries.push_back(e);
    k.save();
    ModelWeights w = load_checkpoint(dir_, req, &info);
    EXPECT_EQ(w.config.n_mtp_layers, 1);
    EXPECT_NE(info.notes.at(0).find("mtp.*.embed/head"), std::string::npos);
  }
}

TEST_F(CheckpointErrors, TooLargeForMemory) {
  LoadOptions o;
  o.max_bytes = 1 << 20;
  expect_input_error([&] { load_checkpoint(dir_, o); }, {dir_, "float weights", "available"});
}

}  // namespace
}  // namespace dsv4
