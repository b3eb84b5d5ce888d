#include "model/weights.h"

#include <type_traits>

namespace dsv4 {

template <class T>
AttentionLayerWeights<T> LayerTensorsT<T>::attention() const {
  auto p = [](const std::vector<T>& v) { return v.empty() ? nullptr : v.data(); };
  AttentionLayerWeights<T> w;
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

template <class T>
EngramTableView EngramTensorsT<T>::table_view(int64_t de) const {
  if (mapped.data) return mapped;
  EngramTableView v;
  if constexpr (std::is_same_v<T, float>) {
    v.data = table.data();
    v.dtype = TableDType::f32;
    v.rows = de > 0 ? int64_t(table.size()) / de : 0;
    v.dim = de;
  }
  return v;
}

namespace {

// f(a_field, b_field) for every tensor field of two models outside the layers' own lists.
template <class A, class B, class F>
void for_each_model_tensor(A& a, B& b, F&& f) {
  f(a.embed, b.embed), f(a.head, b.head), f(a.norm, b.norm);
  f(a.hc_head_fn, b.hc_head_fn), f(a.hc_head_base, b.hc_head_base), f(a.hc_head_scale, b.hc_head_scale);
  for (size_t i = 0; i < a.layers.size(); ++i) for_each_tensor(a.layers[i], b.layers[i], f);
  for (size_t i = 0; i < a.mtp.size(); ++i) {
    auto &x = a.mtp[i], &y = b.mtp[i];
    for_each_tensor(x.block, y.block, f);
    f(x.e_proj, y.e_proj), f(x.h_proj, y.h_proj), f(x.enorm, y.enorm), f(x.hnorm, y.hnorm), f(x.norm, y.norm);
    f(x.hc_head_fn, y.hc_head_fn), f(x.hc_head_base, y.hc_head_base), f(x.hc_head_scale, y.hc_head_scale);
  }
}

}  // namespace

template <class T>
int64_t ModelWeightsT<T>::bytes() const {
  int64_t elems = 0, ints = 0;
  for_each_model_tensor(*this, *this, [&](const auto& v, const auto&) { elems += int64_t(v.size()); });
  for (const auto& l : layers) ints += int64_t(l.tid2eid.size());
  for (const auto& m : mtp) ints += int64_t(m.block.tid2eid.size());
  ints += int64_t(engram_token_map.size());
  return elems * int64_t(sizeof(T)) + ints * int64_t(sizeof(int64_t));
}

template <class U, class T>
ModelWeightsT<U> weights_as(const ModelWeightsT<T>& w) {
  ModelWeightsT<U> out;
  out.config = w.config;
  out.layers.resize(w.layers.size());
  out.mtp.resize(w.mtp.size());
  for (size_t i = 0; i < w.layers.size(); ++i) out.layers[i].tid2eid = w.layers[i].tid2eid;
  for (size_t i = 0; i < w.mtp.size(); ++i) out.mtp[i].block.tid2eid = w.mtp[i].block.tid2eid;
  for (size_t i = 0; i < w.layers.size(); ++i) out.layers[i].engram.mapped = w.layers[i].engram.mapped;
  out.engram_token_map = w.engram_token_map;
  out.mapped_files = w.mapped_files;
  for_each_model_tensor(w, out, [](const auto& src, auto& dst) { dst.assign(src.begin(), src.end()); });
  return out;
}

template struct EngramTensorsT<float>;
template struct EngramTensorsT<double>;
template struct LayerTensorsT<float>;
template struct LayerTensorsT<double>;
template struct ModelWeightsT<float>;
template struct ModelWeightsT<double>;
template ModelWeightsT<double> weights_as<double, float>(const ModelWeightsT<float>&);

}  // namespace dsv4
