// Tensor names of V4 checkpoints: the official flat names (docs/v4-architecture.md §7) and
// the names Hugging Face transformers uses for the same tensors, in one explicit table.
//
// Source of the transformers names: transformers 5.24.0,
// models/deepseek_v4/modeling_deepseek_v4.py (module attribute names) and
// conversion_mapping.py ("deepseek_v4": the official -> transformers renames it applies when
// loading DeepSeek's checkpoint), checked by saving a tiny model with save_pretrained
// (tests/oracle/gen_transformers_checkpoint.py). A transformers state dict prefixes the
// decoder with `model.`; the head is `lm_head.weight`.
//
// save_pretrained writes one of two spellings:
//   save_original_format=False  transformers' own names (the table's right column), routed
//                               experts packed: mlp.experts.gate_up_proj [E, 2I, D] (rows
//                               0..I-1 = w1, I..2I-1 = w3) and mlp.experts.down_proj [E, D, I]
//   save_original_format=True   (the default) its reversal of the conversion mapping: the
//                               official names behind a `model.` prefix, experts unpacked,
//                               except `model.embed_tokens.weight`, `model.hc_head.hc_*`,
//                               `model.norm.weight` and `attn.norm.weight` for attn.kv_norm
//                               (its `.norm.` -> `.kv_norm.` rename reverses everywhere).
// Both are accepted, as are FP8 companions spelled `weight_scale_inv` (V3 / transformers).
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

struct NameRule {
  const char* official;
  const char* transformers;  // nullptr: transformers has no such tensor
};

// Whole names: official (no prefix) -> transformers state-dict name.
const std::vector<NameRule>& global_name_map();
// Within one layer: official suffix of `layers.L.` -> transformers suffix of `model.layers.L.`.
const std::vector<NameRule>& layer_name_map();
// Within one routed expert: official `ffn.experts.E.<w>` -> older per-expert transformers
// naming `mlp.experts.E.<proj>` (the packed tensors are described above).
const std::vector<NameRule>& expert_name_map();
// Suffixes only the MTP modules have (`mtp.i.`); transformers has no MTP module.
const std::vector<std::string>& mtp_only_suffixes();

struct CanonicalName {
  enum class Kind {
    unknown,         // not a V4 tensor name we know
    tensor,          // `official` is the official name
    skip,            // mtp.*.embed / mtp.*.head copies: the main ones are used (§9.6)
    packed_gate_up,  // `official` = "layers.L.ffn.experts" of a packed [E, 2I, D] tensor
    packed_down,     // `official` = "layers.L.ffn.experts" of a packed [E, D, I] tensor
  };
  Kind kind = Kind::unknown;
  std::string official;
  bool transformers = false;  // spelled with a transformers name (or prefix)
};

// Maps a stored name (either spelling) to its official name.
CanonicalName canonical_name(const std::string& stored);

// The transformers state-dict name of an official name ("" when transformers has none,
// e.g. MTP tensors; routed experts map to the older per-expert naming).
std::string transformers_name(const std::string& official);

// config.json as written by transformers (layer_types + compress_rates, mlp_layer_types,
// rope_parameters {main, compress}) rewritten into the spelling config_from_json reads
// (compress_ratios incl. MTP entries, num_hash_layers, rope_scaling, compress_rope_theta).
// Text that already has compress_ratios is returned unchanged. InputError names `origin`.
std::string normalize_config_json(const std::string& text, const std::string& origin);

}  // namespace dsv4
