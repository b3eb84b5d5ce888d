// The whole attention sub-layer of one V4 layer, composed from the ops above.
// Spec: docs/v4-architecture.md §2.1-§2.9 (order of operations: §2.9).
//
//   cq, q  = query_path(x)                                   §2.1
//   kv     = window_kv(x)                                    §2.2
//   ratio 4 (CSA):  keys = indexer compressor(x) (dc = dI, overlap), iq, iw = indexer_query,
//                   idx = indexer(iq, keys, iw, topk)        §2.3, §2.4
//   ratio > 0:      comp = main compressor(x) (dc = d)       §2.3
//   o = attention(q, window ∪ {idx | all visible | none}, sink)   §2.5
//   y = output_proj(o)                                       §2.6
// ratio 0 = window-only, 4 = CSA, 128 = HCA (§1.1). attention_layer_forward takes a chunk of
// T tokens at state.pos (chunked prefill; T = 1 is a decode step, in the order of §2.9);
// prefill (from position 0) and decode are the two common cases. Any chunking gives the
// same result up to GEMM-vs-GEMV rounding. The state keeps its rows in EntryStores
// (reference/entry_store.h): floats here, the BF16 and FP8/FP4 deployment layouts in
// model/kv_cache.h.
//
// Numerics: exact = the unquantised math (what transformers implements);
// official = the quantisation simulation of DeepSeek's inference code: FP8 (1x128) of the
// inputs of wq_a, wq_b, wkv, indexer.wq_b and wo_b; FP8 (blocks of 64) on the non-RoPE dims
// of window and compressed entries; Hadamard + FP4 (blocks of 32) on indexer queries and
// keys. Not simulated: the BF16 storage of activations, probabilities and weights, and
// the float32 RoPE tables (docs/numerics.md).
//
// Shapes: x [T, D] -> y [T, D]; weights as in the checkpoint (§7), dequantised to T.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "reference/compressor.h"
#include "reference/entry_store.h"
#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

enum class Numerics { exact, official };

struct AttentionLayerShape {
  int64_t dim = 0;       // D
  int64_t heads = 0;     // H
  int64_t head_dim = kHeadDim;
  int64_t q_rank = 0;
  int64_t groups = 0;    // o_groups
  int64_t o_rank = 0;    // o_lora_rank
  int64_t window = kWindow;
  int64_t ratio = 0;     // 0, 4 or 128
  int64_t index_heads = kIndexerHeads;
  int64_t index_dim = kIndexerDim;
  int64_t index_topk = 512;
  double eps = kNormEps;
  RopeConfig rope;       // the layer's table: rope_for_ratio(ratio) unless overridden
};

// §2.7: window-only layers use theta 10000 without YaRN, compressed layers the YaRN table.
RopeConfig rope_for_ratio(int64_t ratio);

template <class T>
struct AttentionLayerWeights {
  const T* wq_a = nullptr;       // attn.wq_a.weight       [q_rank, D]
  const T* q_norm = nullptr;     // attn.q_norm.weight     [q_rank]
  const T* wq_b = nullptr;       // attn.wq_b.weight       [H*d, q_rank]
  const T* wkv = nullptr;        // attn.wkv.weight        [d, D]
  const T* kv_norm = nullptr;    // attn.kv_norm.weight    [d]
  const T* wo_a = nullptr;       // attn.wo_a.weight       [g*o_rank, (H/g)*d]
  const T* wo_b = nullptr;       // attn.wo_b.weight       [D, g*o_rank]
  const T* attn_sink = nullptr;  // attn.attn_sink         [H]
  CompressorWeights<T> compressor;          // attn.compressor.*          (ratio > 0)
  CompressorWeights<T> indexer_compressor;  // attn.indexer.compressor.*  (ratio 4)
  const T* indexer_wq_b = nullptr;          // attn.indexer.wq_b.weight [HI*dI, q_rank]
  const T* indexer_weights_proj = nullptr;  // attn.indexer.weights_proj.weight [HI, D]
};

template <class T>
struct AttentionLayerParams {
  AttentionLayerShape shape;
  AttentionLayerWeights<T> w;
  Numerics numerics = Numerics::exact;
};

// Everything a layer keeps between steps (its KV cache).
template <class T>
struct AttentionLayerState {
  int64_t pos = 0;                               // tokens seen
  int64_t window_size = 0;                       // the ring's capacity (the layer's window)
  std::unique_ptr<EntryStore<T>> window;         // ring [min(pos, window), d]: position t in slot t mod window
  std::unique_ptr<EntryStore<T>> comp;           // [N, d] compressed main entries (ratio > 0)
  std::unique_ptr<EntryStore<T>> index_keys;     // [N, dI] indexer keys (CSA)
  CompressorState<T> comp_state, index_state;    // FP32 pooling state

  AttentionLayerState() = default;
  AttentionLayerState(AttentionLayerState&&) noexcept = default;
  AttentionLayerState& operator=(AttentionLayerState&&) noexcept = default;
  // Deep copy: the stores are cloned.
  AttentionLayerState(const AttentionLayerState& o)
      : pos(o.pos),
        window_size(o.window_size),
        window(o.window ? o.window->clone() : nullptr),
        comp(o.comp ? o.comp->clone() : nullptr),
        index_keys(o.index_keys ? o.index_keys->clone() : nullptr),
        comp_state(o.comp_state),
        index_state(o.index_state) {}
  AttentionLayerState& operator=(const AttentionLayerState& o) {
    if (this != &o) *this = AttentionLayerState(o);
    return *this;
  }
};

// What attention_layer_forward_rows saw for one traced row (its `trace` argument): the
// indexer's selection and scores (CSA) and every head's softmax weights over what the row
// attended. Weights are recomputed in float64 from the same q and entries as the attention
// op (s_j = q_h . e_j / sqrt(d), w_j = exp(s_j - lse), lse over the sink and every j), so
// 1 - sum_j w_j is the sink's share.
struct AttentionRowTrace {
  int64_t row = 0;                   // chunk row
  int64_t position = 0;              // absolute position
  int64_t heads = 0;
  std::vector<int32_t> selected;     // CSA: the indexer's top-k (entry numbers, -1 pads)
  std::vector<double> index_scores;  // CSA: [N] every indexer key's score, -inf if not visible
  std::vector<int64_t> window;       // positions of the window rows attended, increasing
  std::vector<int64_t> entries;      // compressed entry numbers attended, increasing
  std::vector<double> weights;       // [heads, window.size() + entries.size()]
};
struct AttentionTraceRequest {
  std::vector<int64_t> rows;            // chunk rows to trace (each must be an asked row)
  std::vector<AttentionRowTrace> out;   // appended, in row order
};

namespace ref {

// A fresh state (position 0) whose rows live in stores made by `stores`.
template <class T>
AttentionLayerState<T> attention_layer_state_init(
    const AttentionLayerShape& s, const EntryStoreFactory<T>& stores = float_entry_stores<T>());

// x [T, D] at positions state.pos .. state.pos + T - 1 -> y [T, D]; advances the state.
// Optionally returns the indexer's selection ([T, topk], CSA only).
template <class T>
void attention_layer_forward(const AttentionLayerParams<T>& p, View2<const T> x, View2<T> y,
                             AttentionLayerState<T>& state, std::vector<int32_t>* topk = nullptr);

// forward with the outputs of some rows only: the state advances by all T rows of x exactly
// as attention_layer_forward would advance it (window entries, both compressors, indexer
// keys), while y [rows.size(), D] receives the outputs of the chunk rows `rows` (strictly
// increasing, in [0, T)), each equal to that row of attention_layer_forward's y up to the
// rounding of GEMMs over fewer rows: a row attends to exactly its own visible set (window
// and compressed entries by position, §2.8), whatever later rows of the chunk added to the
// state. The query path, indexer scoring and attention run only for those rows, one run of
// consecutive rows at a time; `rows` = all rows is attention_layer_forward. topk: the
// selections of the asked rows, [rows.size(), topk] (CSA only). trace: records the rows it
// names (AttentionRowTrace); costs one extra indexer scoring and one softmax per traced row.
template <class T>
void attention_layer_forward_rows(const AttentionLayerParams<T>& p, View2<const T> x,
                                  const std::vector<int64_t>& rows, View2<T> y,
                                  AttentionLayerState<T>& state,
                                  std::vector<int32_t>* topk = nullptr,
                                  AttentionTraceRequest* trace = nullptr);

// forward on a fresh float state: x [T, D] at positions 0..T-1. Optionally leaves the state.
template <class T>
void attention_layer_prefill(const AttentionLayerParams<T>& p, View2<const T> x, View2<T> y,
                             AttentionLayerState<T>* state = nullptr,
                             std::vector<int32_t>* topk = nullptr);

// forward of one token: x_t [D] at position state.pos -> y_t [D].
template <class T>
void attention_layer_decode(const AttentionLayerParams<T>& p, const T* x_t, T* y_t,
                            AttentionLayerState<T>& state, std::vector<int32_t>* topk = nullptr);

}  // namespace ref
}  // namespace dsv4
