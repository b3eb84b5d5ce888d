#include "bench/flops.h"

#include <algorithm>

#include "bench/engram_cost.h"

namespace dsv4 {

namespace {

constexpr double kPoolFlops = 4.0;  // per pooled value: exp, multiply, two adds

double mla_attention_params(const ModelConfig& c) {
  const double D = double(c.dim), H = double(c.n_heads), q = double(c.q_lora_rank);
  const double kv = double(c.kv_lora_rank), nope = double(c.qk_nope_head_dim), r = double(c.rope_dim),
               v = double(c.v_head_dim);
  return q * D + H * (nope + r) * q + (kv + r) * D + H * (nope + v) * kv + D * H * v;
}

double v4_attention_params(const ModelConfig& c) {
  const double D = double(c.dim), H = double(c.n_heads), d = double(c.head_dim), q = double(c.q_lora_rank);
  const double g = double(c.o_groups), r = double(c.o_lora_rank);
  return q * D + H * d * q + d * D + g * r * (H / g) * d + D * g * r;
}

double moe_active_params(const ModelConfig& c, int64_t layer) {
  const double D = double(c.dim);
  if (layer < c.first_dense_layers) return 3.0 * double(c.dense_inter_dim) * D;
  return double(c.n_routed_experts) * D +
         double(c.experts_per_token + c.n_shared_experts) * 3.0 * double(c.moe_inter_dim) * D;
}

double v4_compressor_params(const ModelConfig& c, int64_t m) {
  if (m == 0) return 0;
  const double D = double(c.dim);
  const double cc = m == kCsaRatio ? 2 : 1;
  double p = 2.0 * cc * double(c.head_dim) * D;                        // main wkv, wgate
  if (m == kCsaRatio) p += 2.0 * 2.0 * double(c.index_head_dim) * D;  // indexer's compressor
  return p;
}

double v4_index_query_params(const ModelConfig& c, int64_t m) {
  if (m != kCsaRatio) return 0;
  return double(c.index_n_heads) * double(c.index_head_dim) * double(c.q_lora_rank) +
         double(c.index_n_heads) * double(c.dim);
}

double index_key_flops(const ModelConfig& c) {  // one key: sum_h w_h ReLU(q_h . k)
  return 2.0 * double(c.index_n_heads) * double(c.index_head_dim) + 2.0 * double(c.index_n_heads);
}

}  // namespace

double active_parameters(const ModelConfig& c) {
  const double D = double(c.dim), n = double(c.hc_mult);
  double p = double(c.vocab_size) * D;  // head
  if (c.arch == Arch::v4) p += n * (n * D);  // hc_head
  for (int64_t l = 0; l < c.n_layers; ++l) {
    p += moe_active_params(c, l);
    if (c.arch == Arch::v4) {
      const int64_t m = c.ratio(l);
      p += v4_attention_params(c) + v4_compressor_params(c, m) + v4_index_query_params(c, m);
      p += 2.0 * (2 * n + n * n) * n * D;  // hc_attn_fn, hc_ffn_fn
    } else {
      p += mla_attention_params(c);
      if (c.arch == Arch::v32)
        p += double(c.index_n_heads) * double(c.index_head_dim) * double(c.q_lora_rank) +
             double(c.index_head_dim) * D + double(c.index_n_heads) * D;
    }
  }
  return p;
}

DecodeFlops decode_flops(const ModelConfig& c, int64_t L) {
  DecodeFlops f;
  const double H = double(c.n_heads);
  f.linear = 2.0 * active_parameters(c);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    if (c.arch != Arch::v4) {
      const double per_key = 2.0 * H * double(2 * c.kv_lora_rank + c.rope_dim);
      if (c.arch == Arch::v3) {
        f.attention += per_key * double(L);
      } else {
        f.attention += per_key * double(std::min<int64_t>(L, c.index_topk));
        const double proj = double(c.index_n_heads) * double(c.index_head_dim) * double(c.q_lora_rank) +
                            double(c.index_head_dim) * double(c.dim) + double(c.index_n_heads) * double(c.dim);
        f.indexer += double(L) * index_key_flops(c) + 2.0 * proj;
        f.linear -= 2.0 * proj;
      }
      continue;
    }
    const int64_t m = c.ratio(l);
    const double win = double(std::min<int64_t>(L, c.window));
    const double per_entry = 2.0 * H * 2.0 * double(c.head_dim);  // scores + P.V, K = V
    double entries = win;
    if (m == kCsaRatio) entries += double(std::min<int64_t>(c.index_topk, L / m));
    else if (m > 0) entries += double(L / m);
    f.attention += per_entry * entries;
    if (m == kCsaRatio) {
      f.indexer += double(L / m) * index_key_flops(c) + 2.0 * v4_index_query_params(c, m);
      f.linear -= 2.0 * v4_index_query_params(c, m);
    }
    if (m > 0) {
      const double proj = 2.0 * v4_compressor_params(c, m);
      const double cc = m == kCsaRatio ? 2 : 1;
      double pool = kPoolFlops * cc * double(m) * double(c.head_dim) / double(m);  // per token
      if (m == kCsaRatio) pool += kPoolFlops * 2.0 * double(c.index_head_dim);
      f.compressor += proj + pool;
      f.linear -= proj;
    }
  }
  if (c.engram.enabled()) f.engram = double(c.engram.layer_ids.size()) * engram_layer_cost(c).flops;
  return f;
}

std::string flops_convention() {
  return "decode FLOPs per token at context L; multiply-add = 2; main stack (MTP and embedding lookup "
         "excluded, head included); linear = 2 x active matrix parameters (attention projections, mHC, "
         "MoE gate + k routed + shared experts, head); attention = scores + P.V over attended entries; "
         "indexer = key scoring + index query projections; compressor = its projections + pooling; "
         "engram (when enabled) = its projections, gate dots and convolution; "
         "norms, RoPE, softmax and top-k not counted";
}

}  // namespace dsv4
