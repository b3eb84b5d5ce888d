// The weights of one V4 model in memory, dequantised to float, under the official tensor
// names of spec §7. Filled by the checkpoint loader (model/checkpoint.h) from any of the
// stored encodings (BF16, F32, FP8 e4m3 with UE8M0 128x128 block scales, FP4 e2m1 packed two
// per byte with one UE8M0 scale per 32 inputs); consumed by a backend.
//
// The structs are templates over the element type: `float` is what the loader fills and
// every backend reads (ModelWeights etc.); `double` copies (weights_as<double>) feed the
// float64 reference backend (model/backend.h, make_f64_backend). for_each_tensor() lists
// every float field once, so copying, counting and converting never miss one.
//
// Shapes (D hidden, H heads, d head_dim, q = q_lora_rank, g = o_groups, r = o_lora_rank,
// c = 2 for CSA else 1, m = ratio, HI/dI indexer heads/dim, E experts, I expert width,
// n = hc_mult, M = 2n + n^2, V vocab):
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "reference/attention_layer.h"
#include "reference/engram.h"

namespace dsv4 {

template <class T>
struct CompressorTensorsT {
  std::vector<T> wkv;    // [c*dc, D]
  std::vector<T> wgate;  // [c*dc, D]
  std::vector<T> ape;    // [m, c*dc]
  std::vector<T> norm;   // [dc]
};

// Engram at one layer (docs/engram.md; prefix layers.L.engram.), S = hc_mult, E the lookup
// width, de the table row width, K the convolution kernel. Empty at layers without Engram.
template <class T>
struct EngramTensorsT {
  std::vector<T> table;       // [rows, de] in memory; empty when `mapped` is set
  EngramTableView mapped;     // the table as stored in a memory-mapped shard (data null if not)
  std::vector<T> value_w;     // [D, E]
  std::vector<T> value_b;     // [D]
  std::vector<T> key_w;       // [S, D, E]
  std::vector<T> key_b;       // [S, D]
  std::vector<T> key_norm;    // [S, D]
  std::vector<T> query_norm;  // [S, D]
  std::vector<T> conv_w;      // [S*D, K]
  std::vector<T> conv_norm;   // [S, D]

  bool present() const { return !value_w.empty(); }
  // The table wherever it lives (in memory: F32 view of `table`; only for T = float).
  EngramTableView table_view(int64_t de) const;
};

template <class T>
struct LayerTensorsT {
  // attention sub-layer (prefix layers.L.attn.)
  std::vector<T> wq_a;      // [q, D]
  std::vector<T> q_norm;    // [q]
  std::vector<T> wq_b;      // [H*d, q]
  std::vector<T> wkv;       // [d, D]
  std::vector<T> kv_norm;   // [d]
  std::vector<T> wo_a;      // [g*r, (H/g)*d]
  std::vector<T> wo_b;      // [D, g*r]
  std::vector<T> attn_sink;  // [H]
  CompressorTensorsT<T> compressor;          // ratio > 0 (dc = d)
  CompressorTensorsT<T> indexer_compressor;  // ratio 4 (dc = dI, c = 2)
  std::vector<T> indexer_wq_b;       // [HI*dI, q]
  std::vector<T> indexer_weights_proj;  // [HI, D]
  // norms and mHC
  std::vector<T> attn_norm, ffn_norm;         // [D]
  std::vector<T> hc_attn_fn, hc_ffn_fn;       // [M, n*D]
  std::vector<T> hc_attn_base, hc_ffn_base;   // [M]
  std::vector<T> hc_attn_scale, hc_ffn_scale;  // [3]
  // MoE (prefix layers.L.ffn.)
  std::vector<T> gate;        // [E, D]
  std::vector<T> gate_bias;   // [E] (score-routed layers)
  std::vector<int64_t> tid2eid;   // [V, k] (hash-routed layers)
  std::vector<T> w1, w3;      // [E, I, D] routed experts, stacked
  std::vector<T> w2;          // [E, D, I]
  std::vector<T> shared_w1, shared_w3;  // [I, D]
  std::vector<T> shared_w2;             // [D, I]
  EngramTensorsT<T> engram;             // layers listed in config.engram.layer_ids

  // Views for the reference attention sub-layer.
  AttentionLayerWeights<T> attention() const;
};

template <class T>
struct MtpTensorsT {
  LayerTensorsT<T> block;                  // mtp.i.* as a layer (window-only attention)
  std::vector<T> e_proj, h_proj;    // [D, D]
  std::vector<T> enorm, hnorm, norm;  // [D]
  std::vector<T> hc_head_fn;        // [n, n*D]
  std::vector<T> hc_head_base;      // [n]
  std::vector<T> hc_head_scale;     // [1]
};

template <class T>
struct ModelWeightsT {
  ModelConfig config;
  std::vector<T> embed;          // [V, D]
  std::vector<T> head;           // [V, D]
  std::vector<T> norm;           // [D]
  std::vector<T> hc_head_fn;     // [n, n*D]
  std::vector<T> hc_head_base;   // [n]
  std::vector<T> hc_head_scale;  // [1]
  std::vector<LayerTensorsT<T>> layers;  // n_layers
  std::vector<MtpTensorsT<T>> mtp;      // n_mtp_layers
  std::vector<int64_t> engram_token_map;  // [V] raw id -> canonical id (Engram configs only)
  // Keeps memory-mapped shards alive while an Engram table points into them.
  std::shared_ptr<const void> mapped_files;

  // Bytes held (every vector above; memory-mapped tables not counted).
  int64_t bytes() const;
};

using CompressorTensors = CompressorTensorsT<float>;
using EngramTensors = EngramTensorsT<float>;
using LayerTensors = LayerTensorsT<float>;
using MtpTensors = MtpTensorsT<float>;
using ModelWeights = ModelWeightsT<float>;

// f(a_field, b_field) for every tensor field of two layers (element types may differ), in
// declaration order; tid2eid (integers) is not a tensor field.
template <class A, class B, class F>
void for_each_tensor(A& a, B& b, F&& f) {
  auto comp = [&](auto& x, auto& y) { f(x.wkv, y.wkv), f(x.wgate, y.wgate), f(x.ape, y.ape), f(x.norm, y.norm); };
  f(a.wq_a, b.wq_a), f(a.q_norm, b.q_norm), f(a.wq_b, b.wq_b), f(a.wkv, b.wkv), f(a.kv_norm, b.kv_norm);
  f(a.wo_a, b.wo_a), f(a.wo_b, b.wo_b), f(a.attn_sink, b.attn_sink);
  comp(a.compressor, b.compressor);
  comp(a.indexer_compressor, b.indexer_compressor);
  f(a.indexer_wq_b, b.indexer_wq_b), f(a.indexer_weights_proj, b.indexer_weights_proj);
  f(a.attn_norm, b.attn_norm), f(a.ffn_norm, b.ffn_norm), f(a.hc_attn_fn, b.hc_attn_fn), f(a.hc_ffn_fn, b.hc_ffn_fn);
  f(a.hc_attn_base, b.hc_attn_base), f(a.hc_ffn_base, b.hc_ffn_base), f(a.hc_attn_scale, b.hc_attn_scale);
  f(a.hc_ffn_scale, b.hc_ffn_scale), f(a.gate, b.gate), f(a.gate_bias, b.gate_bias);
  f(a.w1, b.w1), f(a.w3, b.w3), f(a.w2, b.w2), f(a.shared_w1, b.shared_w1), f(a.shared_w3, b.shared_w3);
  f(a.shared_w2, b.shared_w2);
  auto& ea = a.engram;
  auto& eb = b.engram;
  f(ea.table, eb.table), f(ea.value_w, eb.value_w), f(ea.value_b, eb.value_b), f(ea.key_w, eb.key_w);
  f(ea.key_b, eb.key_b), f(ea.key_norm, eb.key_norm), f(ea.query_norm, eb.query_norm), f(ea.conv_w, eb.conv_w);
  f(ea.conv_norm, eb.conv_norm);
}

// The same weights with elements of type U (tid2eid copied as is).
template <class U, class T>
ModelWeightsT<U> weights_as(const ModelWeightsT<T>& w);

}  // namespace dsv4
