// The weights of one V4 model in memory, dequantised to float, under the official tensor
// names of spec §7. Filled by the checkpoint loader (model/checkpoint.h) from any of the
// stored encodings (BF16, F32, FP8 e4m3 with UE8M0 128x128 block scales, FP4 e2m1 packed two
// per byte with one UE8M0 scale per 32 inputs); consumed by a backend.
//
// Shapes (D hidden, H heads, d head_dim, q = q_lora_rank, g = o_groups, r = o_lora_rank,
// c = 2 for CSA else 1, m = ratio, HI/dI indexer heads/dim, E experts, I expert width,
// n = hc_mult, M = 2n + n^2, V vocab):
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "reference/attention_layer.h"

namespace dsv4 {

struct CompressorTensors {
  std::vector<float> wkv;    // [c*dc, D]
  std::vector<float> wgate;  // [c*dc, D]
  std::vector<float> ape;    // [m, c*dc]
  std::vector<float> norm;   // [dc]
};

struct LayerTensors {
  // attention sub-layer (prefix layers.L.attn.)
  std::vector<float> wq_a;      // [q, D]
  std::vector<float> q_norm;    // [q]
  std::vector<float> wq_b;      // [H*d, q]
  std::vector<float> wkv;       // [d, D]
  std::vector<float> kv_norm;   // [d]
  std::vector<float> wo_a;      // [g*r, (H/g)*d]
  std::vector<float> wo_b;      // [D, g*r]
  std::vector<float> attn_sink;  // [H]
  CompressorTensors compressor;          // ratio > 0 (dc = d)
  CompressorTensors indexer_compressor;  // ratio 4 (dc = dI, c = 2)
  std::vector<float> indexer_wq_b;       // [HI*dI, q]
  std::vector<float> indexer_weights_proj;  // [HI, D]
  // norms and mHC
  std::vector<float> attn_norm, ffn_norm;         // [D]
  std::vector<float> hc_attn_fn, hc_ffn_fn;       // [M, n*D]
  std::vector<float> hc_attn_base, hc_ffn_base;   // [M]
  std::vector<float> hc_attn_scale, hc_ffn_scale;  // [3]
  // MoE (prefix layers.L.ffn.)
  std::vector<float> gate;        // [E, D]
  std::vector<float> gate_bias;   // [E] (score-routed layers)
  std::vector<int64_t> tid2eid;   // [V, k] (hash-routed layers)
  std::vector<float> w1, w3;      // [E, I, D] routed experts, stacked
  std::vector<float> w2;          // [E, D, I]
  std::vector<float> shared_w1, shared_w3;  // [I, D]
  std::vector<float> shared_w2;             // [D, I]

  // Views for the reference attention sub-layer.
  AttentionLayerWeights<float> attention() const;
};

struct MtpTensors {
  LayerTensors block;                   // mtp.i.* as a layer (window-only attention)
  std::vector<float> e_proj, h_proj;    // [D, D]
  std::vector<float> enorm, hnorm, norm;  // [D]
  std::vector<float> hc_head_fn;        // [n, n*D]
  std::vector<float> hc_head_base;      // [n]
  std::vector<float> hc_head_scale;     // [1]
};

struct ModelWeights {
  ModelConfig config;
  std::vector<float> embed;          // [V, D]
  std::vector<float> head;           // [V, D]
  std::vector<float> norm;           // [D]
  std::vector<float> hc_head_fn;     // [n, n*D]
  std::vector<float> hc_head_base;   // [n]
  std::vector<float> hc_head_scale;  // [1]
  std::vector<LayerTensors> layers;  // n_layers
  std::vector<MtpTensors> mtp;       // n_mtp_layers

  // Bytes held (every vector above).
  int64_t bytes() const;
};

}  // namespace dsv4
