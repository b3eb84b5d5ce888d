// The `attention_layer` op's parameters from its keys and bound letters (cli/ops_attention.cc),
// shared by the reference run and the CUDA runner (cli/ops_cuda.cc) so both read the keys, infer
// the output groups and refuse bad input the same way.
#pragma once

#include <string>

#include "cli/op_spec.h"
#include "reference/attention_layer.h"

namespace dsv4::cli {

// The sub-layer's shape (groups from the key or from wo_a's width, o_rank, window, ratio, the
// indexer, eps, the RoPE table of the ratio) and numerics; InputError naming the key or tensor.
AttentionLayerShape attention_layer_shape(const Keys& k, const Dims& d);
Numerics attention_layer_numerics(const Keys& k);

// Every weight of the op's contract by its tensor name, from `get(name)` (a host or device
// pointer; null for an absent optional tensor).
template <class T, class Get>
AttentionLayerWeights<T> attention_layer_weights(Get&& get) {
  AttentionLayerWeights<T> w;
  w.wq_a = get("attn.wq_a.weight");
  w.q_norm = get("attn.q_norm.weight");
  w.wq_b = get("attn.wq_b.weight");
  w.wkv = get("attn.wkv.weight");
  w.kv_norm = get("attn.kv_norm.weight");
  w.wo_a = get("attn.wo_a.weight");
  w.wo_b = get("attn.wo_b.weight");
  w.attn_sink = get("attn.attn_sink");
  w.compressor = {get("attn.compressor.wkv.weight"), get("attn.compressor.wgate.weight"), get("attn.compressor.ape"),
                  get("attn.compressor.norm.weight")};
  w.indexer_compressor = {get("attn.indexer.compressor.wkv.weight"), get("attn.indexer.compressor.wgate.weight"),
                          get("attn.indexer.compressor.ape"), get("attn.indexer.compressor.norm.weight")};
  w.indexer_wq_b = get("attn.indexer.wq_b.weight");
  w.indexer_weights_proj = get("attn.indexer.weights_proj.weight");
  return w;
}

}  // namespace dsv4::cli
