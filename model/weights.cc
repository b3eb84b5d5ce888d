#include "model/weights.h"

namespace dsv4 {

AttentionLayerWeights<float> LayerTensors::attention() const {
  auto p = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
  AttentionLayerWeights<float> w;
  w.wq_a = p(wq_a);
  w.q_norm = p(q_norm);
  w.wq_b = p(wq_b);
  w.wkv = p(wkv);
  w.kv_norm = p(kv_norm);
  w.wo_a = p(wo_a);
  w.wo_b = p(wo_b);
  w.attn_sink = p(attn_sink);
  w.compressor = {p(compressor.wkv), p(compressor.wgate), p(compressor.ape), p(compressor.norm)};
  w.indexer_compressor = {p(indexer_compressor.wkv), p(indexer_compressor.wgate),
                          p(indexer_compressor.ape), p(indexer_compressor.norm)};
  w.indexer_wq_b = p(indexer_wq_b);
  w.indexer_weights_proj = p(indexer_weights_proj);
  return w;
}

namespace {
int64_t floats(const CompressorTensors& c) {
  return int64_t(c.wkv.size() + c.wgate.size() + c.ape.size() + c.norm.size());
}
int64_t floats(const LayerTensors& l) {
  return int64_t(l.wq_a.size() + l.q_norm.size() + l.wq_b.size() + l.wkv.size() + l.kv_norm.size() +
                 l.wo_a.size() + l.wo_b.size() + l.attn_sink.size() + l.indexer_wq_b.size() +
                 l.indexer_weights_proj.size() + l.attn_norm.size() + l.ffn_norm.size() +
                 l.hc_attn_fn.size() + l.hc_ffn_fn.size() + l.hc_attn_base.size() + l.hc_ffn_base.size() +
                 l.hc_attn_scale.size() + l.hc_ffn_scale.size() + l.gate.size() + l.gate_bias.size() +
                 l.w1.size() + l.w3.size() + l.w2.size() + l.shared_w1.size() + l.shared_w3.size() +
                 l.shared_w2.size()) +
         floats(l.compressor) + floats(l.indexer_compressor);
}
}  // namespace

int64_t ModelWeights::bytes() const {
  int64_t f = int64_t(embed.size() + head.size() + norm.size() + hc_head_fn.size() + hc_head_base.size() +
                      hc_head_scale.size());
  int64_t ints = 0;
  for (const auto& l : layers) {
    f += floats(l);
    ints += int64_t(l.tid2eid.size());
  }
  for (const auto& m : mtp) {
    f += floats(m.block) + int64_t(m.e_proj.size() + m.h_proj.size() + m.enorm.size() + m.hnorm.size() +
                                   m.norm.size() + m.hc_head_fn.size() + m.hc_head_base.size() +
                                   m.hc_head_scale.size());
    ints += int64_t(m.block.tid2eid.size());
  }
  return f * int64_t(sizeof(float)) + ints * int64_t(sizeof(int64_t));
}

}  // namespace dsv4
