#include "model/config.h"

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include "model/checkpoint_names.h"
#include "reference/engram.h"
#include "reference/errors.h"

namespace dsv4 {

namespace json = boost::json;

// ---- derived ----------------------------------------------------------------------------

int64_t ModelConfig::ratio(int64_t layer) const {
  if (layer < 0 || layer >= int64_t(compress_ratios.size())) return 0;
  return compress_ratios[size_t(layer)];
}

int64_t EngramConfig::index_of(int64_t layer) const {
  for (size_t i = 0; i < layer_ids.size(); ++i)
    if (layer_ids[i] == layer) return int64_t(i);
  return -1;
}

int64_t ModelConfig::count_layers(int64_t r) const {
  int64_t n = 0;
  for (int64_t l = 0; l < n_layers; ++l) n += ratio(l) == r;
  return n;
}

RopeConfig ModelConfig::rope_for_layer(int64_t layer) const {
  RopeConfig c;
  c.rope_dim = rope_dim;
  if (arch != Arch::v4) {  // V3 / V3.2: one YaRN table everywhere
    c.theta = rope_theta;
  } else if (ratio(layer) == 0) {  // §9: window-only layers, no YaRN
    c.theta = rope_theta;
    return c;
  } else {
    c.theta = compress_rope_theta;
  }
  c.yarn_factor = yarn.factor;
  c.yarn_orig = yarn.original_max_position;
  c.beta_fast = yarn.beta_fast;
  c.beta_slow = yarn.beta_slow;
  return c;
}

AttentionLayerShape ModelConfig::attention_shape(int64_t layer) const {
  require(arch == Arch::v4, "attention_shape: only V4 configs have V4 attention layers");
  AttentionLayerShape s;
  s.dim = dim;
  s.heads = n_heads;
  s.head_dim = head_dim;
  s.q_rank = q_lora_rank;
  s.groups = o_groups;
  s.o_rank = o_lora_rank;
  s.window = window;
  s.ratio = ratio(layer);
  s.index_heads = index_n_heads;
  s.index_dim = index_head_dim;
  s.index_topk = index_topk;
  s.eps = norm_eps;
  s.rope = rope_for_layer(layer);
  return s;
}

std::string arch_name(Arch a) {
  return a == Arch::v4 ? "deepseek_v4" : a == Arch::v32 ? "deepseek_v32" : "deepseek_v3";
}

// ---- presets ----------------------------------------------------------------------------

namespace {

ModelConfig v4_common() {
  ModelConfig c;
  c.arch = Arch::v4;
  c.vocab_size = 129280;
  c.n_mtp_layers = 1;
  c.head_dim = kHeadDim;
  c.max_position = 1048576;
  c.window = kWindow;
  c.index_n_heads = kIndexerHeads;
  c.index_head_dim = kIndexerDim;
  c.hc_mult = kHcMult;
  c.n_shared_experts = 1;
  c.experts_per_token = 6;
  c.n_hash_layers = 3;
  c.score_func = ScoreFunc::sqrt_softplus;
  c.swiglu_limit = kSwigluLimit;
  c.yarn = {kYarnFactorV4, kYarnOrigV4, kYarnBetaFast, kYarnBetaSlow, 1.0, 1.0};
  c.fp8_weights = true;
  c.expert_dtype = "fp4";
  return c;
}

// compress_ratios: first two layers `first`, then CSA on even and HCA on odd layers, MTP 0.
std::vector<int64_t> v4_ratios(int64_t n_layers, int64_t first) {
  std::vector<int64_t> r;
  for (int64_t l = 0; l < n_layers; ++l) r.push_back(l < 2 ? first : (l % 2 == 0 ? kCsaRatio : kHcaRatio));
  r.push_back(0);
  return r;
}

ModelConfig v3_common() {
  ModelConfig c;
  c.arch = Arch::v3;
  c.vocab_size = 129280;
  c.dim = 7168;
  c.n_layers = 61;
  c.n_mtp_layers = 1;
  c.n_heads = 128;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = kMlaLatentDim;
  c.qk_nope_head_dim = kMlaQkNopeDim;
  c.rope_dim = kRopeDim;
  c.v_head_dim = kMlaVDim;
  c.head_dim = kMlaQkNopeDim + kRopeDim;
  c.max_position = 163840;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.experts_per_token = 8;
  c.moe_inter_dim = 2048;
  c.first_dense_layers = 3;
  c.dense_inter_dim = 18432;
  c.n_group = 8;
  c.topk_group = 4;
  c.route_scale = 2.5;
  c.score_func = ScoreFunc::sigmoid;
  c.rope_theta = kRopeThetaV3;
  c.yarn = {kYarnFactorV3, kYarnOrigV3, kYarnBetaFast, kYarnBetaSlow, 1.0, 1.0};
  c.fp8_weights = true;
  c.compress_ratios.assign(size_t(c.n_layers + c.n_mtp_layers), 0);
  return c;
}

}  // namespace

std::vector<std::string> config_preset_names() { return {"v4-flash", "v4-pro", "v3.2", "v3", "v4-tiny"}; }

ModelConfig config_preset(const std::string& name) {
  ModelConfig c;
  if (name == "v4-flash") {
    c = v4_common();
    c.dim = 4096;
    c.n_layers = 43;
    c.n_heads = 64;
    c.q_lora_rank = 1024;
    c.o_groups = 8;
    c.o_lora_rank = 1024;
    c.compress_ratios = v4_ratios(c.n_layers, 0);
    c.index_topk = 512;
    c.n_routed_experts = 256;
    c.moe_inter_dim = 2048;
    c.route_scale = 1.5;
  } else if (name == "v4-pro") {
    c = v4_common();
    c.dim = 7168;
    c.n_layers = 61;
    c.n_heads = 128;
    c.q_lora_rank = 1536;
    c.o_groups = 16;
    c.o_lora_rank = 1024;
    c.compress_ratios = v4_ratios(c.n_layers, kHcaRatio);
    c.index_topk = 1024;
    c.n_routed_experts = 384;
    c.moe_inter_dim = 3072;
    c.route_scale = 2.5;
  } else if (name == "v3.2") {
    c = v3_common();
    c.arch = Arch::v32;
    c.index_n_heads = kIndexerHeads;
    c.index_head_dim = kIndexerDim;
    c.index_topk = kDsaTopk;
  } else if (name == "v3") {
    c = v3_common();
  } else if (name == "v4-tiny") {
    // Same structure as V4-Flash, small enough for a CPU: window-only, CSA, HCA and CSA
    // layers (the first hash-routed), one MTP layer; real head_dim, window, RoPE tables.
    c = v4_common();
    c.vocab_size = 4096;
    c.dim = 256;
    c.n_layers = 4;
    c.n_heads = 4;
    c.q_lora_rank = 128;
    c.o_groups = 2;
    c.o_lora_rank = 128;
    c.compress_ratios = {0, kCsaRatio, kHcaRatio, kCsaRatio, 0};
    c.index_n_heads = 4;
    c.index_topk = 16;
    c.n_routed_experts = 8;
    c.experts_per_token = 2;
    c.moe_inter_dim = 128;
    c.n_hash_layers = 1;
    c.route_scale = 1.5;
  } else {
    std::string all;
    for (const auto& n : config_preset_names()) all += (all.empty() ? "" : ", ") + n;
    throw InputError("unknown model preset '" + name + "' (presets: " + all + ")");
  }
  c.name = name;
  config_validate(c);
  return c;
}

// ---- JSON -------------------------------------------------------------------------------

namespace {

class Fields {
 public:
  Fields(const json::object& o, std::string origin) : o_(o), origin_(std::move(origin)) {}

  // The first of `names` that is present, or nullptr.
  const json::value* find(std::initializer_list<const char*> names, std::string* which = nullptr) const {
    for (const char* n : names) {
      if (const auto* v = o_.if_contains(n)) {
        if (which) *which = n;
        return v;
      }
    }
    return nullptr;
  }
  std::string spelled(std::initializer_list<const char*> names) const {
    std::string s;
    for (const char* n : names) s += std::string(s.empty() ? "'" : " or '") + n + "'";
    return s;
  }
  InputError error(const std::string& field, const std::string& what) const {
    return InputError("config '" + origin_ + "': field " + field + ": " + what);
  }

  int64_t integer(std::initializer_list<const char*> names, const int64_t* fallback) const {
    std::string which;
    const json::value* v = find(names, &which);
    if (!v) {
      if (fallback) return *fallback;
      throw error(spelled(names), "is missing");
    }
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64()) return int64_t(v->as_uint64());
    if (v->is_double() && std::floor(v->as_double()) == v->as_double()) return int64_t(v->as_double());
    throw error("'" + which + "'", "expected an integer, found " + json::serialize(*v));
  }
  int64_t req(std::initializer_list<const char*> names) const { return integer(names, nullptr); }
  int64_t opt(std::initializer_list<const char*> names, int64_t d) const { return integer(names, &d); }

  double real(std::initializer_list<const char*> names, double d) const {
    std::string which;
    const json::value* v = find(names, &which);
    if (!v) return d;
    if (v->is_double()) return v->as_double();
    if (v->is_int64()) return double(v->as_int64());
    if (v->is_uint64()) return double(v->as_uint64());
    throw error("'" + which + "'", "expected a number, found " + json::serialize(*v));
  }
  std::string str(std::initializer_list<const char*> names, const std::string& d) const {
    std::string which;
    const json::value* v = find(names, &which);
    if (!v || v->is_null()) return d;
    if (!v->is_string()) throw error("'" + which + "'", "expected a string, found " + json::serialize(*v));
    return std::string(v->as_string());
  }
  const json::object* object(std::initializer_list<const char*> names) const {
    std::string which;
    const json::value* v = find(names, &which);
    if (!v || v->is_null()) return nullptr;
    if (!v->is_object()) throw error("'" + which + "'", "expected an object");
    return &v->as_object();
  }
  std::vector<int64_t> ints(std::initializer_list<const char*> names, bool required) const {
    std::string which;
    const json::value* v = find(names, &which);
    if (!v) {
      if (required) throw error(spelled(names), "is missing");
      return {};
    }
    if (!v->is_array()) throw error("'" + which + "'", "expected an array of integers");
    std::vector<int64_t> out;
    for (const auto& e : v->as_array()) {
      if (!e.is_int64() && !e.is_uint64()) throw error("'" + which + "'", "expected an array of integers");
      out.push_back(e.is_int64() ? e.as_int64() : int64_t(e.as_uint64()));
    }
    return out;
  }
  const std::string& origin() const { return origin_; }

 private:
  const json::object& o_;
  std::string origin_;
};

ScoreFunc parse_score(const Fields& f) {
  const std::string s = f.str({"scoring_func", "score_func"}, "");
  if (s == "sqrtsoftplus") return ScoreFunc::sqrt_softplus;
  if (s == "sigmoid") return ScoreFunc::sigmoid;
  if (s == "softmax") return ScoreFunc::softmax;
  throw f.error("'scoring_func'", s.empty() ? "is missing" : "expected sqrtsoftplus, sigmoid or softmax, found '" + s + "'");
}

std::string score_name(ScoreFunc s) {
  return s == ScoreFunc::sqrt_softplus ? "sqrtsoftplus" : s == ScoreFunc::sigmoid ? "sigmoid" : "softmax";
}

}  // namespace

ModelConfig config_from_json(const std::string& text, const std::string& origin) {
  json::value root;
  try {
    root = json::parse(text);
  } catch (const std::exception& e) {
    throw InputError("config '" + origin + "': not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw InputError("config '" + origin + "': not a JSON object");
  const Fields f(root.as_object(), origin);
  ModelConfig c;
  c.name = origin;

  const std::string mt = f.str({"model_type"}, "");
  if (mt == "deepseek_v4") {
    c.arch = Arch::v4;
  } else if (mt == "deepseek_v32") {
    c.arch = Arch::v32;
  } else if (mt == "deepseek_v3") {
    c.arch = Arch::v3;
  } else if (mt.empty()) {  // DeepSeek's inference configs carry no model_type
    c.arch = f.find({"compress_ratios"}) ? Arch::v4 : f.find({"index_topk"}) ? Arch::v32 : Arch::v3;
  } else {
    throw f.error("'model_type'", "expected deepseek_v4, deepseek_v32 or deepseek_v3, found '" + mt + "'");
  }
  const bool v4 = c.arch == Arch::v4;

  c.vocab_size = f.req({"vocab_size"});
  c.dim = f.req({"hidden_size", "dim"});
  c.n_layers = f.req({"num_hidden_layers", "n_layers"});
  c.n_mtp_layers = f.opt({"num_nextn_predict_layers", "n_mtp_layers"}, 0);
  c.n_heads = f.req({"num_attention_heads", "n_heads"});
  c.rope_dim = f.opt({"qk_rope_head_dim", "rope_head_dim"}, kRopeDim);
  c.q_lora_rank = f.req({"q_lora_rank"});
  c.max_position = f.opt({"max_position_embeddings", "max_seq_len"}, 0);
  c.norm_eps = f.real({"rms_norm_eps", "norm_eps"}, kNormEps);
  c.bos_token_id = f.opt({"bos_token_id"}, 0);
  c.eos_token_id = f.opt({"eos_token_id"}, 1);

  if (v4) {
    c.head_dim = f.req({"head_dim"});
    c.o_groups = f.req({"o_groups"});
    c.o_lora_rank = f.req({"o_lora_rank"});
    c.window = f.opt({"sliding_window", "window_size"}, kWindow);
    c.compress_ratios = f.ints({"compress_ratios"}, true);
    // Some configs list the main layers only; the MTP layers are then window-only.
    if (int64_t(c.compress_ratios.size()) == c.n_layers)
      c.compress_ratios.resize(size_t(c.n_layers + c.n_mtp_layers), 0);
    c.compress_rope_theta = f.real({"compress_rope_theta"}, kRopeThetaCompressed);
    c.hc_mult = f.opt({"hc_mult"}, kHcMult);
    c.hc_sinkhorn_iters = f.opt({"hc_sinkhorn_iters"}, kSinkhornIters);
    c.hc_eps = f.real({"hc_eps"}, kHcEps);
    c.n_hash_layers = f.opt({"num_hash_layers", "n_hash_layers"}, 0);
  } else {
    c.kv_lora_rank = f.req({"kv_lora_rank"});
    c.qk_nope_head_dim = f.req({"qk_nope_head_dim"});
    c.v_head_dim = f.req({"v_head_dim"});
    c.head_dim = c.qk_nope_head_dim + c.rope_dim;
    c.first_dense_layers = f.opt({"first_k_dense_replace", "n_dense_layers"}, 0);
    c.dense_inter_dim = f.opt({"intermediate_size", "inter_dim"}, 0);
    c.n_group = f.opt({"n_group", "n_expert_groups"}, 1);
    c.topk_group = f.opt({"topk_group", "n_limited_groups"}, 1);
    c.compress_ratios.assign(size_t(c.n_layers + c.n_mtp_layers), 0);
  }
  if (v4 || c.arch == Arch::v32) {
    const bool needed = c.arch == Arch::v32 || [&] {
      for (int64_t r : c.compress_ratios)
        if (r == kCsaRatio) return true;
      return false;
    }();
    const int64_t zero = 0;
    c.index_n_heads = f.integer({"index_n_heads"}, needed ? nullptr : &zero);
    c.index_head_dim = f.integer({"index_head_dim"}, needed ? nullptr : &zero);
    c.index_topk = f.integer({"index_topk"}, needed ? nullptr : &zero);
  }

  c.n_routed_experts = f.req({"n_routed_experts"});
  c.n_shared_experts = f.opt({"n_shared_experts"}, 0);
  c.experts_per_token = f.req({"num_experts_per_tok", "n_activated_experts"});
  c.moe_inter_dim = f.req({"moe_intermediate_size", "moe_inter_dim"});
  c.route_scale = f.real({"routed_scaling_factor", "route_scale"}, 1.0);
  c.score_func = parse_score(f);
  c.swiglu_limit = f.real({"swiglu_limit"}, 0.0);

  c.rope_theta = f.real({"rope_theta"}, kRopeThetaSwa);
  if (const json::object* rs = f.object({"rope_scaling"})) {
    const Fields r(*rs, origin + "': 'rope_scaling");
    c.yarn.factor = r.real({"factor"}, 1.0);
    c.yarn.original_max_position = r.opt({"original_max_position_embeddings"}, 0);
    c.yarn.beta_fast = r.real({"beta_fast"}, kYarnBetaFast);
    c.yarn.beta_slow = r.real({"beta_slow"}, kYarnBetaSlow);
    c.yarn.mscale = r.real({"mscale"}, 1.0);
    c.yarn.mscale_all_dim = r.real({"mscale_all_dim"}, 1.0);
  } else {  // inference spelling
    c.yarn.factor = f.real({"rope_factor"}, 1.0);
    c.yarn.original_max_position = f.opt({"original_seq_len"}, 0);
    c.yarn.beta_fast = f.real({"beta_fast"}, kYarnBetaFast);
    c.yarn.beta_slow = f.real({"beta_slow"}, kYarnBetaSlow);
    c.yarn.mscale = f.real({"mscale"}, 1.0);
  }

  if (const json::object* q = f.object({"quantization_config"})) {
    const Fields qf(*q, origin + "': 'quantization_config");
    const std::string m = qf.str({"quant_method"}, "");
    if (m != "fp8") throw qf.error("'quant_method'", "expected fp8, found '" + m + "'");
    c.fp8_weights = true;
    const auto blk = qf.ints({"weight_block_size"}, false);
    if (!blk.empty()) {
      if (blk.size() != 2 || blk[0] != blk[1]) throw qf.error("'weight_block_size'", "expected [b, b]");
      c.weight_block = blk[0];
    }
  } else {
    c.fp8_weights = f.str({"dtype"}, "") == "fp8";
  }
  c.expert_dtype = f.str({"expert_dtype"}, "");
  if (const json::object* eo = f.object({"engram"})) {
    const Fields e(*eo, origin + "': 'engram");
    EngramConfig& g = c.engram;
    g.layer_ids = e.ints({"layer_ids"}, true);
    g.vocab_size = e.ints({"vocab_size", "engram_vocab_size"}, true);
    g.max_ngram = e.opt({"max_ngram_size"}, g.max_ngram);
    g.embed_per_ngram = e.opt({"n_embed_per_ngram"}, g.embed_per_ngram);
    g.heads_per_ngram = e.opt({"n_head_per_ngram"}, g.heads_per_ngram);
    g.kernel_size = e.opt({"kernel_size"}, g.kernel_size);
    g.pad_id = e.opt({"pad_id"}, g.pad_id);
    const int64_t seed = e.opt({"seed"}, 0);
    if (seed < 0) throw e.error("'seed'", "must be >= 0, found " + std::to_string(seed));
    g.seed = uint64_t(seed);
  }
  config_validate(c);
  return c;
}

ModelConfig config_from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("config '" + path + "': cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  // transformers' own spelling (layer_types, mlp_layer_types, rope_parameters) is rewritten
  // to the Hugging Face release spelling first.
  return config_from_json(normalize_config_json(s.str(), path), path);
}

ModelConfig config_load(const std::string& preset_or_path) {
  namespace fs = std::filesystem;
  for (const auto& n : config_preset_names())
    if (n == preset_or_path) return config_preset(n);
  std::error_code ec;
  if (fs::is_directory(preset_or_path, ec)) return config_from_file((fs::path(preset_or_path) / "config.json").string());
  if (fs::exists(preset_or_path, ec)) return config_from_file(preset_or_path);
  std::string all;
  for (const auto& n : config_preset_names()) all += (all.empty() ? "" : ", ") + n;
  throw InputError("'" + preset_or_path + "' is neither a preset (" + all + ") nor a config file or model directory");
}

// ---- --set overrides ----------------------------------------------------------------------

namespace {

std::vector<int64_t> parse_int_list(const std::string& key, const std::string& v) {
  std::vector<int64_t> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t x = 0;
    try {
      x = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size())
      throw InputError("--set " + key + ": expected integers separated by commas, found '" + v + "'");
    out.push_back(x);
  }
  if (out.empty()) throw InputError("--set " + key + ": expected at least one integer");
  return out;
}

}  // namespace

void config_set_engram(ModelConfig& c, const std::string& kv) {
  const size_t eq = kv.find('=');
  if (eq == std::string::npos) throw InputError("--set '" + kv + "': expected KEY=VALUE");
  const std::string key = kv.substr(0, eq), v = kv.substr(eq + 1);
  EngramConfig& g = c.engram;
  auto one = [&]() {
    const auto l = parse_int_list(key, v);
    if (l.size() != 1) throw InputError("--set " + key + ": expected one integer, found '" + v + "'");
    return l[0];
  };
  if (key == "engram") {
    if (v == "none") {
      g = EngramConfig{};
      return;
    }
    g.layer_ids = parse_int_list(key, v);
    if (g.vocab_size.empty()) g.vocab_size.assign(size_t(g.max_ngram - 1), kEngramDefaultTableFactor * c.vocab_size);
  } else if (key == "engram.vocab_size") {
    g.vocab_size = parse_int_list(key, v);
  } else if (key == "engram.max_ngram_size") {
    g.max_ngram = one();
    if (g.max_ngram >= 2 && !g.vocab_size.empty() && int64_t(g.vocab_size.size()) != g.max_ngram - 1)
      g.vocab_size.resize(size_t(g.max_ngram - 1), g.vocab_size.back());
  } else if (key == "engram.n_embed_per_ngram") {
    g.embed_per_ngram = one();
  } else if (key == "engram.n_head_per_ngram") {
    g.heads_per_ngram = one();
  } else if (key == "engram.kernel_size") {
    g.kernel_size = one();
  } else if (key == "engram.pad_id") {
    g.pad_id = one();
  } else if (key == "engram.seed") {
    const int64_t s = one();
    if (s < 0) throw InputError("--set engram.seed: must be >= 0");
    g.seed = uint64_t(s);
  } else {
    throw InputError("--set '" + key + "': unknown key (with --preset: engram, engram.vocab_size, engram.max_ngram_size, "
                     "engram.n_embed_per_ngram, engram.n_head_per_ngram, engram.kernel_size, engram.pad_id, engram.seed)");
  }
}

// ---- validation -------------------------------------------------------------------------

namespace {

template <class Bad>
void engram_validate(const ModelConfig& c, const Bad& bad) {
  const EngramConfig& g = c.engram;
  if (!g.enabled()) return;
  for (size_t i = 0; i < g.layer_ids.size(); ++i) {
    const int64_t l = g.layer_ids[i];
    if (l < 0 || l >= c.n_layers)
      throw bad("engram.layer_ids", "entry " + std::to_string(i) + " (" + std::to_string(l) +
                                        ") is outside the main layers [0, " + std::to_string(c.n_layers) + ")");
    if (i > 0 && l <= g.layer_ids[i - 1]) throw bad("engram.layer_ids", "must be strictly increasing");
  }
  if (g.max_ngram < 2 || g.max_ngram > kEngramMaxOrder)
    throw bad("engram.max_ngram_size", "must be in [2, " + std::to_string(kEngramMaxOrder) + "], found " +
                                           std::to_string(g.max_ngram));
  if (int64_t(g.vocab_size.size()) != g.max_ngram - 1)
    throw bad("engram.vocab_size", "has " + std::to_string(g.vocab_size.size()) +
                                       " entries, expected one per order 2..max_ngram_size = " + std::to_string(g.max_ngram - 1));
  for (int64_t v : g.vocab_size)
    if (v < 2 || v > kEngramMaxTable)
      throw bad("engram.vocab_size", "every table size must be in [2, " + std::to_string(kEngramMaxTable) + "], found " +
                                         std::to_string(v));
  if (g.heads_per_ngram <= 0) throw bad("engram.n_head_per_ngram", "must be positive");
  if (g.embed_per_ngram <= 0 || g.embed_per_ngram % g.heads_per_ngram)
    throw bad("engram.n_embed_per_ngram", "must be a positive multiple of n_head_per_ngram = " +
                                              std::to_string(g.heads_per_ngram) + ", found " + std::to_string(g.embed_per_ngram));
  if (g.kernel_size <= 0) throw bad("engram.kernel_size", "must be positive");
  if (g.pad_id < 0 || g.pad_id >= c.vocab_size) throw bad("engram.pad_id", "outside [0, vocab_size)");
}

}  // namespace

void config_validate(const ModelConfig& c) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return InputError("config '" + c.name + "': field '" + field + "': " + what);
  };
  auto positive = [&](const std::string& field, int64_t v) {
    if (v <= 0) throw bad(field, "must be positive, found " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.dim);
  positive("num_hidden_layers", c.n_layers);
  positive("num_attention_heads", c.n_heads);
  positive("q_lora_rank", c.q_lora_rank);
  if (c.n_mtp_layers < 0) throw bad("num_nextn_predict_layers", "must be >= 0");
  if (c.rope_dim <= 0 || c.rope_dim % 2) throw bad("qk_rope_head_dim", "must be positive and even, found " + std::to_string(c.rope_dim));
  if (!(c.norm_eps > 0)) throw bad("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 1)) throw bad("rope_theta", "must be > 1");
  if (c.yarn.factor < 1) throw bad("rope_scaling.factor", "must be >= 1");
  if (c.yarn.factor > 1 && c.yarn.original_max_position <= 0)
    throw bad("rope_scaling.original_max_position_embeddings", "must be positive when factor > 1");
  if (c.bos_token_id < 0 || c.bos_token_id >= c.vocab_size) throw bad("bos_token_id", "outside [0, vocab_size)");
  if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size) throw bad("eos_token_id", "outside [0, vocab_size)");
  if (int64_t(c.compress_ratios.size()) != c.n_layers + c.n_mtp_layers)
    throw bad("compress_ratios", "has " + std::to_string(c.compress_ratios.size()) + " entries, expected num_hidden_layers + num_nextn_predict_layers = " +
                                     std::to_string(c.n_layers + c.n_mtp_layers));
  positive("n_routed_experts", c.n_routed_experts);
  positive("moe_intermediate_size", c.moe_inter_dim);
  if (c.experts_per_token <= 0 || c.experts_per_token > c.n_routed_experts)
    throw bad("num_experts_per_tok", "must be in [1, n_routed_experts = " + std::to_string(c.n_routed_experts) + "], found " + std::to_string(c.experts_per_token));
  if (c.n_shared_experts < 0 || c.n_shared_experts > 1) throw bad("n_shared_experts", "must be 0 or 1");
  if (c.n_hash_layers < 0 || c.n_hash_layers > c.n_layers) throw bad("num_hash_layers", "must be in [0, num_hidden_layers]");
  if (!(c.route_scale > 0)) throw bad("routed_scaling_factor", "must be positive");
  if (!(c.expert_dtype.empty() || c.expert_dtype == "fp4" || c.expert_dtype == "fp8" || c.expert_dtype == "bf16"))
    throw bad("expert_dtype", "expected fp4, fp8 or bf16, found '" + c.expert_dtype + "'");
  positive("weight_block_size", c.weight_block);

  if (c.arch == Arch::v4) {
    if (c.head_dim <= c.rope_dim) throw bad("head_dim", "must exceed qk_rope_head_dim = " + std::to_string(c.rope_dim));
    positive("o_groups", c.o_groups);
    if (c.n_heads % c.o_groups) throw bad("o_groups", std::to_string(c.o_groups) + " does not divide num_attention_heads = " + std::to_string(c.n_heads));
    positive("o_lora_rank", c.o_lora_rank);
    positive("sliding_window", c.window);
    bool csa = false;
    for (size_t l = 0; l < c.compress_ratios.size(); ++l) {
      if (c.compress_ratios[l] < 0)
        throw bad("compress_ratios", "entry " + std::to_string(l) + " is negative (" + std::to_string(c.compress_ratios[l]) + ")");
      csa = csa || c.compress_ratios[l] == kCsaRatio;
    }
    if (!(c.compress_rope_theta > 1)) throw bad("compress_rope_theta", "must be > 1");
    if (csa) {
      positive("index_n_heads", c.index_n_heads);
      positive("index_topk", c.index_topk);
      if (c.index_head_dim < c.rope_dim)
        throw bad("index_head_dim", "must be at least qk_rope_head_dim = " + std::to_string(c.rope_dim));
    }
    positive("hc_mult", c.hc_mult);
    positive("hc_sinkhorn_iters", c.hc_sinkhorn_iters);
    if (!(c.hc_eps > 0)) throw bad("hc_eps", "must be positive");
    engram_validate(c, bad);
  } else {
    if (c.engram.enabled()) throw bad("engram", "Engram is supported on deepseek_v4 configs only");
    positive("kv_lora_rank", c.kv_lora_rank);
    positive("qk_nope_head_dim", c.qk_nope_head_dim);
    positive("v_head_dim", c.v_head_dim);
    if (c.n_group <= 0 || c.n_routed_experts % c.n_group) throw bad("n_group", "must divide n_routed_experts");
    if (c.topk_group <= 0 || c.topk_group > c.n_group) throw bad("topk_group", "must be in [1, n_group]");
    if (c.first_dense_layers < 0 || c.first_dense_layers > c.n_layers) throw bad("first_k_dense_replace", "must be in [0, num_hidden_layers]");
    if (c.first_dense_layers > 0) positive("intermediate_size", c.dense_inter_dim);
    if (c.arch == Arch::v32) {
      positive("index_n_heads", c.index_n_heads);
      positive("index_head_dim", c.index_head_dim);
      positive("index_topk", c.index_topk);
    }
  }
}

// ---- output -----------------------------------------------------------------------------

std::string config_to_json(const ModelConfig& c) {
  json::object o;
  o["model_type"] = arch_name(c.arch);
  o["vocab_size"] = c.vocab_size;
  o["hidden_size"] = c.dim;
  o["num_hidden_layers"] = c.n_layers;
  o["num_nextn_predict_layers"] = c.n_mtp_layers;
  o["num_attention_heads"] = c.n_heads;
  o["qk_rope_head_dim"] = c.rope_dim;
  o["q_lora_rank"] = c.q_lora_rank;
  o["max_position_embeddings"] = c.max_position;
  o["rms_norm_eps"] = c.norm_eps;
  o["bos_token_id"] = c.bos_token_id;
  o["eos_token_id"] = c.eos_token_id;
  if (c.arch == Arch::v4) {
    o["architectures"] = json::array{"DeepseekV4ForCausalLM"};
    o["head_dim"] = c.head_dim;
    o["num_key_value_heads"] = 1;
    o["o_groups"] = c.o_groups;
    o["o_lora_rank"] = c.o_lora_rank;
    o["sliding_window"] = c.window;
    json::array r;
    for (int64_t v : c.compress_ratios) r.push_back(v);
    o["compress_ratios"] = std::move(r);
    o["compress_rope_theta"] = c.compress_rope_theta;
    o["hc_mult"] = c.hc_mult;
    o["hc_sinkhorn_iters"] = c.hc_sinkhorn_iters;
    o["hc_eps"] = c.hc_eps;
    o["num_hash_layers"] = c.n_hash_layers;
  } else {
    o["kv_lora_rank"] = c.kv_lora_rank;
    o["qk_nope_head_dim"] = c.qk_nope_head_dim;
    o["v_head_dim"] = c.v_head_dim;
    o["first_k_dense_replace"] = c.first_dense_layers;
    o["intermediate_size"] = c.dense_inter_dim;
    o["n_group"] = c.n_group;
    o["topk_group"] = c.topk_group;
  }
  if (c.index_topk > 0) {
    o["index_n_heads"] = c.index_n_heads;
    o["index_head_dim"] = c.index_head_dim;
    o["index_topk"] = c.index_topk;
  }
  o["n_routed_experts"] = c.n_routed_experts;
  o["n_shared_experts"] = c.n_shared_experts;
  o["num_experts_per_tok"] = c.experts_per_token;
  o["moe_intermediate_size"] = c.moe_inter_dim;
  o["routed_scaling_factor"] = c.route_scale;
  o["scoring_func"] = score_name(c.score_func);
  o["swiglu_limit"] = c.swiglu_limit;
  o["rope_theta"] = c.rope_theta;
  if (c.yarn.factor > 1) {
    o["rope_scaling"] = json::object{{"type", "yarn"},
                                     {"factor", c.yarn.factor},
                                     {"original_max_position_embeddings", c.yarn.original_max_position},
                                     {"beta_fast", c.yarn.beta_fast},
                                     {"beta_slow", c.yarn.beta_slow},
                                     {"mscale", c.yarn.mscale},
                                     {"mscale_all_dim", c.yarn.mscale_all_dim}};
  }
  if (c.fp8_weights) {
    o["quantization_config"] = json::object{{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"scale_fmt", "ue8m0"},
                                            {"weight_block_size", json::array{c.weight_block, c.weight_block}}};
  }
  if (!c.expert_dtype.empty()) o["expert_dtype"] = c.expert_dtype;
  if (c.engram.enabled()) {
    const EngramConfig& g = c.engram;
    json::array ids, sizes;
    for (int64_t v : g.layer_ids) ids.push_back(v);
    for (int64_t v : g.vocab_size) sizes.push_back(v);
    o["engram"] = json::object{{"layer_ids", std::move(ids)},          {"vocab_size", std::move(sizes)},
                               {"max_ngram_size", g.max_ngram},        {"n_embed_per_ngram", g.embed_per_ngram},
                               {"n_head_per_ngram", g.heads_per_ngram}, {"kernel_size", g.kernel_size},
                               {"pad_id", g.pad_id},                   {"seed", g.seed}};
  }
  return json::serialize(o);
}

std::string config_describe(const ModelConfig& c) {
  std::ostringstream s;
  s << "model         " << c.name << " (" << arch_name(c.arch) << ")\n";
  s << "hidden        " << c.dim << ", vocab " << c.vocab_size << ", max context " << c.max_position << "\n";
  if (c.arch == Arch::v4) {
    s << "layers        " << c.n_layers << " (" << c.count_layers(0) << " window-only, " << c.count_layers(kCsaRatio) << " CSA m=4, "
      << c.count_layers(kHcaRatio) << " HCA m=128";
    const int64_t other = c.n_layers - c.count_layers(0) - c.count_layers(kCsaRatio) - c.count_layers(kHcaRatio);
    if (other) s << ", " << other << " other ratios";
    s << ") + " << c.n_mtp_layers << " MTP\n";
    s << "compress      [";
    for (size_t i = 0; i < c.compress_ratios.size(); ++i) s << (i ? " " : "") << c.compress_ratios[i];
    s << "]  (last " << c.n_mtp_layers << ": MTP)\n";
    s << "attention     " << c.n_heads << " heads x " << c.head_dim << " (K = V, MQA; RoPE on the last " << c.rope_dim
      << "), q_lora " << c.q_lora_rank << ", window " << c.window << ", " << c.o_groups << " output groups x " << c.o_lora_rank << "\n";
    s << "indexer       " << c.index_n_heads << " heads x " << c.index_head_dim << ", top-" << c.index_topk << "\n";
    s << "mHC           " << c.hc_mult << " streams, " << c.hc_sinkhorn_iters << " Sinkhorn iterations, eps " << c.hc_eps << "\n";
    s << "RoPE          window-only: theta " << c.rope_theta << "; compressed: theta " << c.compress_rope_theta
      << ", YaRN x" << c.yarn.factor << " from " << c.yarn.original_max_position << ", beta " << c.yarn.beta_fast << "/" << c.yarn.beta_slow << "\n";
  } else {
    s << "layers        " << c.n_layers << " (" << c.first_dense_layers << " dense FFN) + " << c.n_mtp_layers << " MTP\n";
    s << "attention     MLA: " << c.n_heads << " heads, q_lora " << c.q_lora_rank << ", kv_lora " << c.kv_lora_rank
      << ", nope/rope/v " << c.qk_nope_head_dim << "/" << c.rope_dim << "/" << c.v_head_dim << "\n";
    if (c.arch == Arch::v32) s << "indexer       DSA " << c.index_n_heads << " heads x " << c.index_head_dim << ", top-" << c.index_topk << " tokens\n";
    s << "RoPE          theta " << c.rope_theta << ", YaRN x" << c.yarn.factor << " from " << c.yarn.original_max_position << "\n";
  }
  s << "MoE           " << c.n_routed_experts << " routed (" << c.experts_per_token << " active, width " << c.moe_inter_dim << ") + "
    << c.n_shared_experts << " shared, " << score_name(c.score_func) << ", scale " << c.route_scale;
  if (c.n_hash_layers) s << ", hash-routed layers 0.." << c.n_hash_layers - 1;
  if (c.swiglu_limit > 0) s << ", SwiGLU clamp " << c.swiglu_limit;
  s << "\n";
  s << "weights       " << (c.fp8_weights ? "FP8 e4m3, " + std::to_string(c.weight_block) + "x" + std::to_string(c.weight_block) + " block scales" : "BF16")
    << (c.expert_dtype.empty() ? "" : ", routed experts " + c.expert_dtype) << "\n";
  if (c.engram.enabled()) {
    const EngramConfig& g = c.engram;
    s << "Engram        layers [";
    for (size_t i = 0; i < g.layer_ids.size(); ++i) s << (i ? " " : "") << g.layer_ids[i];
    s << "], orders 2.." << g.max_ngram << " x " << g.heads_per_ngram << " hash heads, tables from [";
    for (size_t i = 0; i < g.vocab_size.size(); ++i) s << (i ? " " : "") << g.vocab_size[i];
    s << "] rows x " << g.head_dim() << ", conv K=" << g.kernel_size << "\n";
  }
  return s.str();
}

}  // namespace dsv4
