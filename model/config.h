// A typed, validated model configuration for DeepSeek-V4 (Flash, Pro, small presets) and
// its predecessors V3.2 and V3. Spec: docs/v4-architecture.md §1 (shapes), §9 (field names).
//
// Read from either spelling of config.json — Hugging Face (`hidden_size`,
// `num_hidden_layers`, `rope_scaling: {...}`) or DeepSeek's inference config (`dim`,
// `n_layers`, `rope_factor`, ...) — or taken from a built-in preset. Every missing or
// inconsistent field is an InputError naming the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/attention_layer.h"
#include "reference/moe_route.h"
#include "reference/rope.h"

namespace dsv4 {

enum class Arch { v4, v32, v3 };

struct YarnScaling {
  double factor = 1.0;            // <= 1: no YaRN
  int64_t original_max_position = 0;
  double beta_fast = kYarnBetaFast;
  double beta_slow = kYarnBetaSlow;
  double mscale = 1.0;            // V3: the softmax scale gets (0.1 mscale ln(factor) + 1)^2
  double mscale_all_dim = 1.0;
};

// Engram conditional memory (docs/engram.md). Off when layer_ids is empty (every released
// V4 config).
struct EngramConfig {
  std::vector<int64_t> layer_ids;   // main-stack layers that run Engram, increasing
  std::vector<int64_t> vocab_size;  // base table size per order 2..N (N-1 entries)
  int64_t max_ngram = 3;            // N
  int64_t embed_per_ngram = 512;    // split over the heads: de = embed_per_ngram / heads
  int64_t heads_per_ngram = 8;      // Hn
  int64_t kernel_size = 4;          // K of the short convolution (dilation N)
  int64_t pad_id = 2;               // raw token id before the first token
  uint64_t seed = 0;

  bool enabled() const { return !layer_ids.empty(); }
  // Position of `layer` in layer_ids, or -1 when the layer has no Engram.
  int64_t index_of(int64_t layer) const;
  int64_t head_dim() const { return embed_per_ngram / heads_per_ngram; }          // de
  int64_t width() const { return (max_ngram - 1) * embed_per_ngram; }            // E
  int64_t slots() const { return (max_ngram - 1) * heads_per_ngram; }            // tables per layer
  int64_t history_rows() const { return (kernel_size - 1) * max_ngram; }          // Z rows carried
};

struct ModelConfig {
  std::string name;  // preset name or the file it came from
  Arch arch = Arch::v4;

  // ---- sizes (§1) ----
  int64_t vocab_size = 0;
  int64_t dim = 0;            // hidden size D
  int64_t n_layers = 0;       // main layers (MTP not counted)
  int64_t n_mtp_layers = 0;   // num_nextn_predict_layers
  int64_t n_heads = 0;        // query heads H
  int64_t head_dim = 0;       // V4: q, k and v head dim (512)
  int64_t rope_dim = kRopeDim;  // qk_rope_head_dim
  int64_t q_lora_rank = 0;
  int64_t max_position = 0;
  double norm_eps = kNormEps;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;

  // ---- V4 attention (§2) ----
  int64_t o_groups = 0;
  int64_t o_lora_rank = 0;
  int64_t window = kWindow;
  std::vector<int64_t> compress_ratios;  // n_layers + n_mtp_layers entries: 0, 4 or 128
  double compress_rope_theta = kRopeThetaCompressed;

  // ---- V3 / V3.2 attention (MLA) ----
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t v_head_dim = 0;

  // ---- indexer: V4 CSA layers (compressed keys) and V3.2 (token keys) ----
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;

  // ---- mHC (§3.1) ----
  int64_t hc_mult = 1;  // 1: plain residual (V3, V3.2)
  int64_t hc_sinkhorn_iters = kSinkhornIters;
  double hc_eps = kHcEps;

  // ---- MoE (§3.2) ----
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t experts_per_token = 0;
  int64_t moe_inter_dim = 0;
  int64_t n_hash_layers = 0;
  int64_t first_dense_layers = 0;  // V3: first_k_dense_replace
  int64_t dense_inter_dim = 0;     // V3: intermediate_size
  int64_t n_group = 1, topk_group = 1;  // V3 group-limited routing
  double route_scale = 1.0;
  ScoreFunc score_func = ScoreFunc::sqrt_softplus;
  double swiglu_limit = 0.0;  // <= 0: no clamp

  // ---- RoPE (§2.7): window-only layers use rope_theta without YaRN; compressed layers
  // compress_rope_theta with YaRN. V3/V3.2: rope_theta with YaRN everywhere. ----
  double rope_theta = kRopeThetaSwa;
  YarnScaling yarn;

  // ---- quantisation of the checkpoint (§7) ----
  bool fp8_weights = false;        // quantization_config.quant_method == fp8
  std::string expert_dtype = "";   // "fp4", "fp8" or "" (= as the other weights)
  int64_t weight_block = 128;      // FP8 block scales: 128 x 128

  // ---- Engram (docs/engram.md) ----
  EngramConfig engram;

  // ---- derived ----
  int64_t ratio(int64_t layer) const;  // compress ratio of a layer (MTP: n_layers + i)
  bool hash_routed(int64_t layer) const { return layer < n_hash_layers; }
  int64_t total_layers() const { return n_layers + n_mtp_layers; }
  RopeConfig rope_for_layer(int64_t layer) const;
  AttentionLayerShape attention_shape(int64_t layer) const;  // V4 only
  // Counts of main-stack layers by kind (MTP excluded): window-only, CSA, HCA.
  int64_t count_layers(int64_t ratio) const;
};

// Built-in presets: v4-flash, v4-pro, v3.2, v3 (the real shapes) and v4-tiny (same structure,
// small: window-only, CSA and HCA layers, hash- and score-routed MoE, one MTP layer).
std::vector<std::string> config_preset_names();
ModelConfig config_preset(const std::string& name);  // InputError for an unknown name

// Parses a config.json text (either spelling); `origin` names the file in errors.
ModelConfig config_from_json(const std::string& text, const std::string& origin);
ModelConfig config_from_file(const std::string& path);
// A preset name or a path to config.json (or to a directory holding one).
ModelConfig config_load(const std::string& preset_or_path);

// One `dsv4 init --preset P --set KEY=VALUE` override of the Engram block (docs/engram.md):
// engram=L1,L2,... (the layers; "none" turns it off), engram.vocab_size=a,b,...,
// engram.max_ngram_size, engram.n_embed_per_ngram, engram.n_head_per_ngram,
// engram.kernel_size, engram.pad_id, engram.seed. Tables default to 5 x vocab_size rows per
// order (the published default). Throws InputError naming the key; validate afterwards.
void config_set_engram(ModelConfig& c, const std::string& key_eq_value);

// Checks every field and every cross-field rule; throws InputError naming the field.
void config_validate(const ModelConfig& c);

// Hugging Face spelling (what `dsv4 init` writes); parse(serialize(c)) == c.
std::string config_to_json(const ModelConfig& c);
// A human-readable summary (dsv4 config show).
std::string config_describe(const ModelConfig& c);

std::string arch_name(Arch a);

}  // namespace dsv4
