// The whole attention sub-layer of one V4 layer on the GPU: the CUDA twin of
// ref::attention_layer_forward (reference/attention_layer.h; same params struct, same
// semantics), with the layer's KV cache in device memory. Spec: docs/v4-architecture.md
// §2.1-§2.9 (order of operations: §2.9).
//
// A chunk x [T, D] at positions t0 = state.pos() .. t0 + T - 1 (prefill: t0 = 0; decode: T = 1):
//   kv      = window_kv(x, pos0 t0)                          [T, d]      §2.2
//   cq, q   = query_path(x, pos0 t0)                         [T, q_rank], [T, H*d]   §2.1
//   CSA:    iq, iw = indexer_query(cq, x)                    §2.4
//   CSA:    keys  += compressor_ingest(indexer compressor, x) (dc = dI, overlap)   §2.3
//   ratio>0: comp += compressor_ingest(main compressor, x)    (dc = d)              §2.3
//   CSA:    idx   = indexer(iq, keys, iw, pos0 t0, topk)     [T, topk]
//   o       = attention(q, window rows [first, t0 + T), comp, sink, idx | dense | none)  §2.5
//             first = max(0, t0 - (window - 1)): the ring's last positions, then the chunk's kv
//   y       = output_proj(o)                                 [T, D]      §2.6
//   the ring keeps the last `window` positions (position t in slot t mod window); pos += T.
// Entries completed inside the chunk are in the cache before anyone attends; each row sees
// exactly its visible set (attention and indexer mask by position, §2.8), as in the reference.
// The reference renumbers the CSA selection onto the rows it reads; this twin passes the
// indexer's entry numbers straight to attention over the whole compressed store: the same
// entries in the same order.
//
// Numerics: the params' Numerics maps onto the twins' flags exactly as the reference maps it
// (official: act_quant of wq_a, wq_b, wkv, indexer.wq_b and wo_b inputs; FP8 window and
// compressed entries; Hadamard + FP4 indexer queries and keys). Every op is the CUDA twin, so
// each step has that twin's precision (FP32, cuBLAS SGEMMs without TF32, fixed-order
// reductions): reruns are bitwise identical.
//
// State: DeviceAttentionLayerState keeps the ring [window, d], the compressed entries [N, d],
// the indexer keys [N, dI] as FP32 rows (the reference's FloatEntryStore; the BF16 / FP8 / FP4
// deployment layouts of model/kv_cache.h are not implemented here) and both compressors'
// DeviceCompressorStates. The stores grow geometrically; a growth copies the rows on the
// stream and waits for it (rare: log2 of the sequence length times).
//
// Shapes: x [T, D], y [T, D] (row strides x.ld, y.ld); the weights as in AttentionLayerWeights.
// Every pointer is a DEVICE pointer. Real shapes: Flash D 4096, H 64, q_rank 1024, g 8; Pro D
// 7168, H 128, q_rank 1536, g 16; d 512, o_rank 1024, window 128, HI 64, dI 128, topk 512/1024.
//
// Launch geometry: the twins' (see their headers), in the order above on one stream; plus
// cudaMemcpy2DAsync copies for the ring (at most two contiguous slot ranges in, two out).
//
// Errors: the reference's checks and messages (shape, x columns, y shape, the state matching
// the shape) plus this twin's limits (non-null weights, head_dim <= kAttentionMaxDim, topk <=
// kIndexerMaxTopk, T <= the workspace's max_tokens, the workspace's shape) on the host before
// any device work (dsv4::InputError); the twins validate their own parameters before the state
// changes (the compressors ingest after the query paths ran). A failed launch throws
// dsv4::cuda::CudaError. Asynchronous on `stream` except a store growth and download_state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "optimized/compressor.cuh"
#include "optimized/device.cuh"
#include "reference/attention_layer.h"

namespace dsv4::cuda {

class AttentionLayerWorkspace;

// The KV cache of one attention layer in device memory: the twin of AttentionLayerState<float>
// with float stores. A fresh state (position 0) holds no device memory, so it can be made
// without a device.
class DeviceAttentionLayerState {
 public:
  explicit DeviceAttentionLayerState(const AttentionLayerShape& shape);
  DeviceAttentionLayerState(const DeviceAttentionLayerState&) = delete;
  DeviceAttentionLayerState& operator=(const DeviceAttentionLayerState&) = delete;

  int64_t pos() const { return pos_; }                 // tokens seen
  int64_t window_size() const { return window_; }      // the ring's capacity
  int64_t head_dim() const { return d_; }
  int64_t index_dim() const { return dI_; }
  int64_t ratio() const { return ratio_; }
  int64_t window_rows() const { return pos_ < window_ ? pos_ : window_; }  // min(pos, window)
  int64_t comp_rows() const { return comp_rows_; }     // N (ratio > 0)
  int64_t index_key_rows() const { return key_rows_; }  // N (CSA)
  // Device pointers, row-major and dense; nullptr while empty.
  const float* window() const { return ring_.empty() ? nullptr : ring_.data(); }  // [window, d]
  const float* comp() const { return comp_.empty() ? nullptr : comp_.data(); }     // [N, d]
  const float* index_keys() const { return keys_.empty() ? nullptr : keys_.data(); }  // [N, dI]
  const DeviceCompressorState* comp_state() const { return comp_state_.get(); }    // ratio > 0
  const DeviceCompressorState* index_state() const { return index_state_.get(); }  // CSA

 private:
  friend void attention_layer_forward(const AttentionLayerParams<float>&, View2<const float>, View2<float>,
                                      DeviceAttentionLayerState&, AttentionLayerWorkspace&,
                                      cudaStream_t);
  int64_t pos_ = 0, window_, d_, dI_, ratio_;
  int64_t comp_rows_ = 0, comp_cap_ = 0, key_rows_ = 0, key_cap_ = 0;
  DeviceBuffer<float> ring_, comp_, keys_;
  std::unique_ptr<DeviceCompressorState> comp_state_, index_state_;
};

// Scratch of attention_layer_forward for chunks of up to max_tokens rows of one layer shape:
// the twins' workspaces and the intermediates (window rows [window - 1 + max_tokens, d], cq,
// q, indexer queries / weights / selection, o). Nothing is allocated until the first forward
// that launches work (so it can be made without a device). One per stream that runs the op.
class AttentionLayerWorkspace {
 public:
  AttentionLayerWorkspace(int64_t max_tokens, const AttentionLayerShape& shape);
  ~AttentionLayerWorkspace();
  AttentionLayerWorkspace(const AttentionLayerWorkspace&) = delete;
  AttentionLayerWorkspace& operator=(const AttentionLayerWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  const AttentionLayerShape& shape() const { return shape_; }
  // CSA: the indexer's selection for the rows of the last forward, [T, topk] int32 in device
  // memory (entry numbers by descending score, -1 pads: ref::attention_layer_forward's `topk`),
  // valid until the next forward; an empty view otherwise.
  View2<const int32_t> selection() const;

 private:
  friend void attention_layer_forward(const AttentionLayerParams<float>&, View2<const float>, View2<float>,
                                      DeviceAttentionLayerState&, AttentionLayerWorkspace&, cudaStream_t);
  struct Buffers;
  Buffers& buffers();  // allocated on first use
  int64_t max_tokens_;
  AttentionLayerShape shape_;
  std::unique_ptr<Buffers> buf_;
  int64_t selected_rows_ = 0;  // rows of selection()
};

// x [T, D] at positions state.pos() .. state.pos() + T - 1 -> y [T, D]; advances the state
// (ref::attention_layer_forward<float> with float stores). T <= ws.max_tokens().
void attention_layer_forward(const AttentionLayerParams<float>& p, View2<const float> x, View2<float> y,
                             DeviceAttentionLayerState& state, AttentionLayerWorkspace& ws,
                             cudaStream_t stream = 0);

// The state as the reference's host struct (float stores; the compressor states downloaded).
// Waits for `stream` first (synchronous).
AttentionLayerState<float> download_state(const DeviceAttentionLayerState& state, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
