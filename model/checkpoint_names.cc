#include "model/checkpoint_names.h"

#include <boost/json.hpp>
#include <cctype>
#include <string_view>

#include "reference/constants.h"
#include "reference/errors.h"

namespace dsv4 {

namespace json = boost::json;

const std::vector<NameRule>& global_name_map() {
  static const std::vector<NameRule> m = {
      {"embed.weight", "model.embed_tokens.weight"},
      {"head.weight", "lm_head.weight"},
      {"norm.weight", "model.norm.weight"},
      {"hc_head_fn", "model.hc_head.hc_fn"},
      {"hc_head_base", "model.hc_head.hc_base"},
      {"hc_head_scale", "model.hc_head.hc_scale"},
      {"engram.token_map", nullptr},  // docs/engram.md; no transformers spelling exists
  };
  return m;
}

const std::vector<NameRule>& layer_name_map() {
  static const std::vector<NameRule> m = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn.wq_a.weight", "self_attn.q_a_proj.weight"},
      {"attn.q_norm.weight", "self_attn.q_a_norm.weight"},
      {"attn.wq_b.weight", "self_attn.q_b_proj.weight"},
      {"attn.wkv.weight", "self_attn.kv_proj.weight"},
      {"attn.kv_norm.weight", "self_attn.kv_norm.weight"},
      {"attn.wo_a.weight", "self_attn.o_a_proj.weight"},
      {"attn.wo_b.weight", "self_attn.o_b_proj.weight"},
      {"attn.attn_sink", "self_attn.sinks"},
      {"attn.compressor.wkv.weight", "self_attn.compressor.kv_proj.weight"},
      {"attn.compressor.wgate.weight", "self_attn.compressor.gate_proj.weight"},
      {"attn.compressor.ape", "self_attn.compressor.position_bias"},
      {"attn.compressor.norm.weight", "self_attn.compressor.kv_norm.weight"},
      {"attn.indexer.wq_b.weight", "self_attn.compressor.indexer.q_b_proj.weight"},
      {"attn.indexer.weights_proj.weight", "self_attn.compressor.indexer.scorer.weights_proj.weight"},
      {"attn.indexer.compressor.wkv.weight", "self_attn.compressor.indexer.kv_proj.weight"},
      {"attn.indexer.compressor.wgate.weight", "self_attn.compressor.indexer.gate_proj.weight"},
      {"attn.indexer.compressor.ape", "self_attn.compressor.indexer.position_bias"},
      {"attn.indexer.compressor.norm.weight", "self_attn.compressor.indexer.kv_norm.weight"},
      {"hc_attn_fn", "attn_hc.fn"},
      {"hc_attn_base", "attn_hc.base"},
      {"hc_attn_scale", "attn_hc.scale"},
      {"hc_ffn_fn", "ffn_hc.fn"},
      {"hc_ffn_base", "ffn_hc.base"},
      {"hc_ffn_scale", "ffn_hc.scale"},
      {"ffn.gate.weight", "mlp.gate.weight"},
      {"ffn.gate.bias", "mlp.gate.e_score_correction_bias"},
      {"ffn.gate.tid2eid", "mlp.gate.tid2eid"},
      {"ffn.shared_experts.w1.weight", "mlp.shared_experts.gate_proj.weight"},
      {"ffn.shared_experts.w2.weight", "mlp.shared_experts.down_proj.weight"},
      {"ffn.shared_experts.w3.weight", "mlp.shared_experts.up_proj.weight"},
  };
  return m;
}

const std::vector<NameRule>& expert_name_map() {
  static const std::vector<NameRule> m = {
      {"w1.weight", "gate_proj.weight"},
      {"w2.weight", "down_proj.weight"},
      {"w3.weight", "up_proj.weight"},
  };
  return m;
}

const std::vector<std::string>& mtp_only_suffixes() {
  static const std::vector<std::string> m = {"e_proj.weight", "h_proj.weight", "enorm.weight", "hnorm.weight",
                                             "norm.weight",   "hc_head_fn",    "hc_head_base", "hc_head_scale"};
  return m;
}

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// "123.rest" -> (123, "rest"); false if no digits or no dot.
bool split_index(std::string_view s, std::string* index, std::string* rest) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i >= s.size() || s[i] != '.') return false;
  *index = std::string(s.substr(0, i));
  *rest = std::string(s.substr(i + 1));
  return true;
}

// Official suffix inside a layer for a rest in either spelling ("" if unknown);
// `tf` is set when the transformers column matched.
std::string layer_rest(const std::string& rest, bool* tf) {
  for (const auto& r : layer_name_map()) {
    if (rest == r.official) return rest;
    if (r.transformers && rest == r.transformers) {
      *tf = true;
      return r.official;
    }
  }
  // save_original_format=True reverses transformers' `.norm.` -> `.kv_norm.` rename
  // everywhere, so attn.kv_norm comes back as attn.norm (official has no attn.norm).
  if (rest == "attn.norm.weight") {
    *tf = true;
    return "attn.kv_norm.weight";
  }
  // Engram (docs/engram.md): official names only; the table of expected tensors decides
  // which exist (an unknown engram.* name is reported as unused).
  if (starts_with(rest, "engram.")) return rest;
  // routed experts, one tensor each: ffn.experts.E.w1.weight / mlp.experts.E.gate_proj.weight
  for (const char* p : {"ffn.experts.", "mlp.experts."}) {
    if (!starts_with(rest, p)) continue;
    std::string e, leaf;
    if (!split_index(std::string_view(rest).substr(std::string_view(p).size()), &e, &leaf)) continue;
    for (const auto& r : expert_name_map()) {
      if (leaf == r.official || leaf == r.transformers) {
        if (leaf != r.official || std::string_view(p) == "mlp.experts.") *tf = true;
        return "ffn.experts." + e + "." + r.official;
      }
    }
  }
  return "";
}

}  // namespace

CanonicalName canonical_name(const std::string& stored) {
  CanonicalName out;
  for (const auto& g : global_name_map()) {
    if (stored == g.official) {
      out.kind = CanonicalName::Kind::tensor;
      out.official = g.official;
      return out;
    }
    if (g.transformers && stored == g.transformers) {
      out.kind = CanonicalName::Kind::tensor;
      out.official = g.official;
      out.transformers = true;
      return out;
    }
  }
  std::string s = stored;
  if (starts_with(s, "model.")) {
    s = s.substr(6);
    out.transformers = true;
    for (const auto& g : global_name_map()) {
      if (s == g.official) {
        out.kind = CanonicalName::Kind::tensor;
        out.official = g.official;
        return out;
      }
    }
  }
  const bool mtp = starts_with(s, "mtp.");
  if (!mtp && !starts_with(s, "layers.")) return out;
  const std::string scope = mtp ? "mtp." : "layers.";
  std::string idx, rest;
  if (!split_index(std::string_view(s).substr(scope.size()), &idx, &rest)) return out;
  const std::string prefix = scope + idx + ".";

  if (mtp) {
    if (starts_with(rest, "embed.") || starts_with(rest, "head.")) {
      out.kind = CanonicalName::Kind::skip;
      out.official = prefix + rest;
      return out;
    }
    for (const auto& m : mtp_only_suffixes()) {
      if (rest == m || (ends_with(m, ".weight") && rest == m.substr(0, m.size() - 7) + ".scale")) {
        out.kind = CanonicalName::Kind::tensor;
        out.official = prefix + rest;
        return out;
      }
    }
  } else if (rest == "mlp.experts.gate_up_proj" || rest == "mlp.experts.down_proj") {
    out.kind = rest == "mlp.experts.down_proj" ? CanonicalName::Kind::packed_down
                                                : CanonicalName::Kind::packed_gate_up;
    out.official = prefix + "ffn.experts";
    out.transformers = true;
    return out;
  }

  bool tf = false;
  std::string off = layer_rest(rest, &tf);
  if (off.empty()) {
    // FP8 companions: X.scale (official) or X.weight_scale_inv (V3 / transformers)
    std::string base;
    if (ends_with(rest, ".weight_scale_inv")) {
      base = rest.substr(0, rest.size() - 17) + ".weight";
      tf = true;
    } else if (ends_with(rest, ".scale")) {
      base = rest.substr(0, rest.size() - 6) + ".weight";
    }
    if (!base.empty()) {
      const std::string w = layer_rest(base, &tf);
      if (!w.empty()) off = w.substr(0, w.size() - 7) + ".scale";
    }
  }
  if (off.empty()) return out;
  out.kind = CanonicalName::Kind::tensor;
  out.official = prefix + off;
  out.transformers = out.transformers || tf;
  return out;
}

std::string transformers_name(const std::string& official) {
  for (const auto& g : global_name_map())
    if (official == g.official) return g.transformers ? g.transformers : "";
  if (!starts_with(official, "layers.")) return "";
  std::string idx, rest;
  if (!split_index(std::string_view(official).substr(7), &idx, &rest)) return "";
  const std::string prefix = "model.layers." + idx + ".";
  for (const auto& r : layer_name_map())
    if (rest == r.official) return r.transformers ? prefix + r.transformers : "";
  if (starts_with(rest, "ffn.experts.")) {
    std::string e, leaf;
    if (split_index(std::string_view(rest).substr(12), &e, &leaf))
      for (const auto& r : expert_name_map())
        if (leaf == r.official) return prefix + "mlp.experts." + e + "." + r.transformers;
  }
  return "";
}

// ---- transformers' config.json ------------------------------------------------------------

std::string normalize_config_json(const std::string& text, const std::string& origin) {
  json::value root;
  try {
    root = json::parse(text);
  } catch (const std::exception& e) {
    throw InputError("config '" + origin + "': not valid JSON: " + e.what());
  }
  if (!root.is_object()) throw InputError("config '" + origin + "': not a JSON object");
  json::object& o = root.as_object();
  if (o.contains("compress_ratios") || !o.contains("layer_types")) return text;
  auto bad = [&](const std::string& field, const std::string& what) {
    return InputError("config '" + origin + "': field '" + field + "': " + what);
  };
  auto as_int = [&](const json::value& v, const std::string& field) -> int64_t {
    if (v.is_int64()) return v.as_int64();
    if (v.is_uint64()) return int64_t(v.as_uint64());
    throw bad(field, "expected an integer, found " + json::serialize(v));
  };

  // layer_types + compress_rates -> compress_ratios (MTP layers: window-only, §1.1)
  const json::value& lt = o.at("layer_types");
  if (!lt.is_array()) throw bad("layer_types", "expected an array of strings");
  json::object rates = {{"compressed_sparse_attention", kCsaRatio}, {"heavily_compressed_attention", kHcaRatio}};
  if (const auto* cr = o.if_contains("compress_rates")) {
    if (!cr->is_object()) throw bad("compress_rates", "expected an object");
    for (const auto& kv : cr->as_object()) rates[kv.key()] = kv.value();
  }
  json::array ratios;
  for (const auto& t : lt.as_array()) {
    if (!t.is_string()) throw bad("layer_types", "expected an array of strings");
    const std::string_view k = t.as_string();
    if (k == "sliding_attention") {
      ratios.push_back(0);
    } else if (const auto* r = rates.if_contains(k)) {
      ratios.push_back(as_int(*r, "compress_rates." + std::string(k)));
    } else {
      throw bad("layer_types", "unknown layer type '" + std::string(k) + "'");
    }
  }
  int64_t mtp = 0;
  if (const auto* n = o.if_contains("num_nextn_predict_layers")) mtp = as_int(*n, "num_nextn_predict_layers");
  for (int64_t i = 0; i < mtp; ++i) ratios.push_back(0);
  o["compress_ratios"] = std::move(ratios);

  // mlp_layer_types: a leading run of "hash_moe" -> num_hash_layers
  if (const auto* mt = o.if_contains("mlp_layer_types"); mt && !o.contains("num_hash_layers")) {
    if (!mt->is_array()) throw bad("mlp_layer_types", "expected an array of strings");
    int64_t hash = 0;
    bool after = false;
    for (const auto& t : mt->as_array()) {
      if (!t.is_string()) throw bad("mlp_layer_types", "expected an array of strings");
      const bool h = t.as_string() == "hash_moe";
      if (h && after) throw bad("mlp_layer_types", "hash_moe layers must come first (§9.2)");
      if (h) ++hash;
      if (!h && t.as_string() != "moe")
        throw bad("mlp_layer_types", "unknown MLP type '" + std::string(t.as_string()) + "'");
      after = after || !h;
    }
    o["num_hash_layers"] = hash;
  }

  // rope_parameters {main: {rope_theta}, compress: {rope_theta, rope_type yarn, ...}}
  if (const auto* rp = o.if_contains("rope_parameters"); rp && rp->is_object()) {
    const json::object& p = rp->as_object();
    if (const auto* m = p.if_contains("main"); m && m->is_object()) {
      if (const auto* th = m->as_object().if_contains("rope_theta"); th && !o.contains("rope_theta"))
        o["rope_theta"] = *th;
    }
    if (const auto* c = p.if_contains("compress"); c && c->is_object()) {
      const json::object& cp = c->as_object();
      if (const auto* th = cp.if_contains("rope_theta"); th && !o.contains("compress_rope_theta"))
        o["compress_rope_theta"] = *th;
      const auto* type = cp.if_contains("rope_type");
      if (type && type->is_string() && type->as_string() == "yarn" && !o.contains("rope_scaling")) {
        json::object rs{{"type", "yarn"}};
        for (const char* k : {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow"})
          if (const auto* v = cp.if_contains(k)) rs[k] = *v;
        if (const auto* af = cp.if_contains("attention_factor"); af && af->is_number() && af->to_number<double>() != 1.0)
          throw bad("rope_parameters.compress.attention_factor", "V4 has no YaRN mscale (§1.1); found " + json::serialize(*af));
        o["rope_scaling"] = std::move(rs);
      }
    }
  }
  return json::serialize(root);
}

}  // namespace dsv4
