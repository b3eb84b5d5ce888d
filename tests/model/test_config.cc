// model/config: presets with the real shapes of spec §1, both config.json spellings (§9),
// the JSON round trip, and one clear error per missing or inconsistent field.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>

#include "model/config.h"
#include "reference/errors.h"

namespace dsv4 {
namespace {

namespace json = boost::json;

std::string data(const std::string& f) { return std::string(DSV4_TEST_DATA_DIR) + "/configs/" + f; }

// Every field, compared one by one so a failure names the field.
void expect_same(const ModelConfig& a, const ModelConfig& b) {
#define SAME(f) EXPECT_EQ(a.f, b.f) << #f
  SAME(arch); SAME(vocab_size); SAME(dim); SAME(n_layers); SAME(n_mtp_layers); SAME(n_heads);
  SAME(head_dim); SAME(rope_dim); SAME(q_lora_rank); SAME(max_position); SAME(norm_eps);
  SAME(bos_token_id); SAME(eos_token_id); SAME(o_groups); SAME(o_lora_rank); SAME(window);
  SAME(compress_ratios); SAME(compress_rope_theta); SAME(kv_lora_rank); SAME(qk_nope_head_dim);
  SAME(v_head_dim); SAME(index_n_heads); SAME(index_head_dim); SAME(index_topk); SAME(hc_mult);
  SAME(hc_sinkhorn_iters); SAME(hc_eps); SAME(n_routed_experts); SAME(n_shared_experts);
  SAME(experts_per_token); SAME(moe_inter_dim); SAME(n_hash_layers); SAME(first_dense_layers);
  SAME(dense_inter_dim); SAME(n_group); SAME(topk_group); SAME(route_scale); SAME(score_func);
  SAME(swiglu_limit); SAME(rope_theta); SAME(yarn.factor); SAME(yarn.original_max_position);
  SAME(yarn.beta_fast); SAME(yarn.beta_slow); SAME(fp8_weights); SAME(expert_dtype); SAME(weight_block);
#undef SAME
}

TEST(Config, PresetsHaveTheLayerMixOfTheSpec) {
  const auto flash = config_preset("v4-flash"), pro = config_preset("v4-pro");
  EXPECT_EQ(flash.count_layers(0), 2);
  EXPECT_EQ(flash.count_layers(4), 21);
  EXPECT_EQ(flash.count_layers(128), 20);
  EXPECT_EQ(pro.count_layers(0), 0);
  EXPECT_EQ(pro.count_layers(4), 30);
  EXPECT_EQ(pro.count_layers(128), 31);
  EXPECT_EQ(flash.ratio(0), 0);
  EXPECT_EQ(pro.ratio(0), 128);
  EXPECT_EQ(flash.ratio(43), 0);  // MTP: window-only
  EXPECT_EQ(flash.compress_ratios.size(), 44u);
  EXPECT_EQ(pro.compress_ratios.size(), 62u);
  EXPECT_EQ(flash.index_topk, 512);
  EXPECT_EQ(pro.index_topk, 1024);
  EXPECT_EQ(pro.n_routed_experts, 384);
  EXPECT_EQ(pro.route_scale, 2.5);
  const auto tiny = config_preset("v4-tiny");
  EXPECT_EQ(tiny.count_layers(0) + tiny.count_layers(4) + tiny.count_layers(128), tiny.n_layers);
  EXPECT_GT(tiny.count_layers(0), 0);
  EXPECT_GT(tiny.count_layers(4), 0);
  EXPECT_GT(tiny.count_layers(128), 0);
  EXPECT_GT(tiny.n_hash_layers, 0);
  EXPECT_LT(tiny.n_hash_layers, tiny.n_layers);  // score routing too
  EXPECT_EQ(tiny.n_mtp_layers, 1);
  EXPECT_EQ(config_preset("v3.2").index_topk, 2048);
  EXPECT_EQ(config_preset("v3").index_topk, 0);
  EXPECT_THROW(config_preset("v5"), InputError);
}

TEST(Config, LayerTablesFollowTheRatio) {
  const auto c = config_preset("v4-flash");
  const RopeConfig swa = c.rope_for_layer(0), csa = c.rope_for_layer(2), mtp = c.rope_for_layer(43);
  EXPECT_EQ(swa.theta, 10000);
  EXPECT_EQ(swa.yarn_factor, 1);
  EXPECT_EQ(csa.theta, 160000);
  EXPECT_EQ(csa.yarn_factor, 16);
  EXPECT_EQ(csa.yarn_orig, 65536);
  EXPECT_EQ(mtp.theta, 10000);
  const auto s = c.attention_shape(3);
  EXPECT_EQ(s.ratio, 128);
  EXPECT_EQ(s.heads, 64);
  EXPECT_EQ(s.groups, 8);
  EXPECT_EQ(config_preset("v3").rope_for_layer(0).yarn_factor, 40);
}

TEST(Config, BothSpellingsOfFlashEqualThePreset) {
  auto preset = config_preset("v4-flash");
  auto hf = config_from_file(data("v4-flash.hf.json"));
  auto inf = config_from_file(data("v4-flash.inference.json"));
  expect_same(hf, preset);
  expect_same(inf, preset);
}

TEST(Config, V3FileEqualsThePreset) { expect_same(config_from_file(data("v3.hf.json")), config_preset("v3")); }

TEST(Config, JsonRoundTripOfEveryPreset) {
  for (const auto& n : config_preset_names()) {
    const auto c = config_preset(n);
    expect_same(config_from_json(config_to_json(c), n), c);
    EXPECT_FALSE(config_describe(c).empty());
  }
}

TEST(Config, MtpEntryMayBeOmitted) {
  auto o = json::parse(config_to_json(config_preset("v4-tiny"))).as_object();
  auto& r = o["compress_ratios"].as_array();
  r.pop_back();
  const auto c = config_from_json(json::serialize(o), "x");
  EXPECT_EQ(c.compress_ratios.size(), 5u);
  EXPECT_EQ(c.compress_ratios.back(), 0);
}

// A field removed or changed -> InputError whose message names it.
struct Bad {
  const char* name;
  std::function<void(json::object&)> edit;
  const char* expect;
};

std::vector<Bad> bad_edits() {
  return {
      {"MissingHidden", [](json::object& o) { o.erase("hidden_size"); }, "'hidden_size' or 'dim'"},
      {"MissingHeadDim", [](json::object& o) { o.erase("head_dim"); }, "'head_dim'"},
      {"MissingRatios", [](json::object& o) { o.erase("compress_ratios"); }, "'compress_ratios'"},
      {"RatioCount", [](json::object& o) { o["compress_ratios"] = json::array{0, 4}; }, "compress_ratios"},
      {"NegativeRatio", [](json::object& o) { o["compress_ratios"].as_array()[1] = -4; }, "compress_ratios"},
      {"GroupsDoNotDivide", [](json::object& o) { o["o_groups"] = 3; }, "'o_groups'"},
      {"HeadsNotInteger", [](json::object& o) { o["num_attention_heads"] = "four"; }, "'num_attention_heads'"},
      {"TooManyActive", [](json::object& o) { o["num_experts_per_tok"] = 99; }, "'num_experts_per_tok'"},
      {"HashPastLayers", [](json::object& o) { o["num_hash_layers"] = 99; }, "'num_hash_layers'"},
      {"UnknownScore", [](json::object& o) { o["scoring_func"] = "relu"; }, "'scoring_func'"},
      {"IndexerMissing", [](json::object& o) { o.erase("index_topk"); }, "'index_topk'"},
      {"YarnWithoutOrig", [](json::object& o) { o["rope_scaling"].as_object().erase("original_max_position_embeddings"); }, "original_max_position_embeddings"},
      {"BadQuant", [](json::object& o) { o["quantization_config"].as_object()["quant_method"] = "gptq"; }, "'quant_method'"},
      {"BadExpertDtype", [](json::object& o) { o["expert_dtype"] = "int3"; }, "'expert_dtype'"},
      {"UnknownModelType", [](json::object& o) { o["model_type"] = "llama"; }, "'model_type'"},
      {"EosOutOfVocab", [](json::object& o) { o["eos_token_id"] = 1 << 20; }, "'eos_token_id'"},
      {"WindowZero", [](json::object& o) { o["sliding_window"] = 0; }, "'sliding_window'"},
  };
}

class ConfigBad : public ::testing::TestWithParam<size_t> {};

TEST_P(ConfigBad, NamesTheField) {
  const auto b = bad_edits()[GetParam()];
  auto o = json::parse(config_to_json(config_preset("v4-tiny"))).as_object();
  b.edit(o);
  try {
    config_from_json(json::serialize(o), "bad.json");
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(b.expect), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Fields, ConfigBad, ::testing::Range<size_t>(0, bad_edits().size()),
                         [](const auto& i) { return std::string(bad_edits()[i.param].name); });

TEST(Config, NotJsonAndMissingFile) {
  EXPECT_THROW(config_from_json("{", "x"), InputError);
  EXPECT_THROW(config_from_json("[]", "x"), InputError);
  EXPECT_THROW(config_from_file("/no/such/config.json"), InputError);
  EXPECT_THROW(config_load("no-such-preset-or-path"), InputError);
  EXPECT_EQ(config_load("v4-pro").n_layers, 61);
}

}  // namespace
}  // namespace dsv4
