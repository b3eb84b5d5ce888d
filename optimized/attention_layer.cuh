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
// State: DeviceAttentionLayerState keeps the ring (window slots), the compressed entries, the
// indexer keys and both compressors' DeviceCompressorStates (FP32 kv and score, any layout), in
// one of two layouts (DeviceKvLayout):
//   f32  rows as FP32: ring [window, d], entries [N, d], keys [N, dI] (the reference's
//        FloatEntryStore), 4 d and 4 dI bytes a row.
//   fp8  the deployment layout of model/kv_cache.h (KvLayout::fp8; byte layouts in
//        optimized/kv_pack.cuh): ring [window, 584 B] and entries [N, 584 B] (448 e4m3 + 7
//        UE8M0 scales + pad + 64 BF16 RoPE dims), keys [N, 68 B] (64 B packed e2m1 + 4 UE8M0
//        scales); d = 512 and dI = 128 only. Rows are packed by pack_fp8_entries /
//        pack_fp4_keys, byte for byte as the reference's fp8 stores write them: the
//        compressors' fresh rows go through a float scratch of the workspace and are packed
//        into the stores; the chunk's window rows (window_kv's float output) are packed into a
//        584-byte window workspace behind the ring's bytes, and the ring keeps those bytes.
//        Attention is attention_fp8 over the window workspace and the entry store (entries
//        dequantised while staged). The indexer is indexer_fp4 over the key store: it reads
//        the 68-byte keys and dequantises them (exactly) while staging them for the scoring,
//        so no float copy of the keys exists and the key traffic is N x 68 B per scored row;
//        its scores and selection are those of indexer() on the dequantised keys, bit for bit.
//        Semantics: under Numerics::official the rows arriving at the stores are already on
//        their grids (window_kv and the main compressor give FP8 non-RoPE dims and BF16 RoPE
//        dims, the indexer compressor FP4 keys), so packing loses nothing: the fp8 layout gives
//        the f32 layout's results bit for bit, and ref::attention_layer_forward with
//        v4_entry_stores(fp8) stores reads back the same floats. Under Numerics::exact the
//        packing quantises; then the reference attends its chunk's own window rows unquantised
//        (straight from window_kv) and only older rows through its ring store, whereas this
//        layout reads every window row through the 584-byte format (the deployment's
//        cache-first order).
// Bytes (bytes()): stored rows x row bytes as model/kv_cache.h counts them (window_rows()
// entries, comp_rows() entries, index_key_rows() keys) + the compressor states' FP32 buffers.
// The stores grow geometrically; a growth copies the rows on the stream and waits for it
// (rare: log2 of the sequence length times).
//
// Shapes: x [T, D], y [T, D] (row strides x.ld, y.ld); the weights as in AttentionLayerWeights.
// Every pointer is a DEVICE pointer. Real shapes: Flash D 4096, H 64, q_rank 1024, g 8; Pro D
// 7168, H 128, q_rank 1536, g 16; d 512, o_rank 1024, window 128, HI 64, dI 128, topk 512/1024.
//
// Launch geometry: the twins' (see their headers), in the order above on one stream; plus
// cudaMemcpyAsync copies for the ring (at most two contiguous slot ranges in, two out) and,
// in the fp8 layout, kv_pack.cuh's pack kernels (the keys are read packed by indexer_fp4).
//
// Errors: the reference's checks and messages (shape, x columns, y shape, the state matching
// the shape; fp8 layout: the shape's RoPE dims too) plus this twin's limits (non-null
// weights, head_dim <= kAttentionMaxDim, topk <= kIndexerMaxTopk, T <= the workspace's
// max_tokens, the workspace's shape) on the host before any device work (dsv4::InputError);
// the twins validate their own parameters before the state changes (the compressors ingest
// after the query paths ran). A failed launch throws dsv4::cuda::CudaError. Asynchronous on `stream` except a store growth and download_state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

#include "optimized/compressor.cuh"
#include "optimized/device.cuh"
#include "reference/attention_layer.h"

namespace dsv4::cuda {

class AttentionLayerWorkspace;

// How a DeviceAttentionLayerState stores its rows (model/kv_cache.h's layouts f32 and fp8).
//   f32  window and compressed rows [*, d] and indexer keys [*, dI] as FP32 (4 d / 4 dI bytes)
//   fp8  the deployment layout: window and compressed rows as 584-byte FP8 entries, indexer
//        keys as 68-byte FP4 keys (optimized/kv_pack.cuh); d = 512, RoPE dims the last 64,
//        dI = 128 only
enum class DeviceKvLayout { f32, fp8 };

// The KV cache of one attention layer in device memory: the twin of AttentionLayerState<float>
// with float stores (layout f32) or with model/kv_cache.h's fp8 stores (layout fp8). A fresh
// state (position 0) holds no device memory, so it can be made without a device.
class DeviceAttentionLayerState {
 public:
  // InputError for a bad shape, and for the fp8 layout with head_dim != 512, RoPE dims other
  // than the last 64, or (CSA) index_dim != 128.
  explicit DeviceAttentionLayerState(const AttentionLayerShape& shape, DeviceKvLayout layout = DeviceKvLayout::f32);
  DeviceAttentionLayerState(const DeviceAttentionLayerState&) = delete;
  DeviceAttentionLayerState& operator=(const DeviceAttentionLayerState&) = delete;

  DeviceKvLayout layout() const { return layout_; }
  int64_t pos() const { return pos_; }                 // tokens seen
  int64_t window_size() const { return window_; }      // the ring's capacity
  int64_t head_dim() const { return d_; }
  int64_t index_dim() const { return dI_; }
  int64_t ratio() const { return ratio_; }
  int64_t window_rows() const { return pos_ < window_ ? pos_ : window_; }  // min(pos, window)
  int64_t comp_rows() const { return comp_rows_; }     // N (ratio > 0)
  int64_t index_key_rows() const { return key_rows_; }  // N (CSA)
  // Bytes of one stored row: window / compressed entry (f32: 4 d, fp8: 584) and indexer key
  // (f32: 4 dI, fp8: 68); model/kv_cache.h's v4_entry_bytes / v4_index_key_bytes.
  int64_t entry_bytes() const;
  int64_t key_bytes() const;
  // Bytes held, counted as model/kv_cache.h's KvCache::bytes counts them: stored rows x row
  // bytes (window_rows() + comp_rows() entries, index_key_rows() keys; capacity slack not
  // counted) plus both compressor states' FP32 kv and score buffers once allocated (a fresh
  // state holds none: 0).
  int64_t bytes() const;
  // Device pointers, row-major and dense; nullptr while empty or in the other layout.
  // f32 layout:
  const float* window() const { return ring_.empty() ? nullptr : ring_.data(); }  // [window, d]
  const float* comp() const { return comp_.empty() ? nullptr : comp_.data(); }     // [N, d]
  const float* index_keys() const { return keys_.empty() ? nullptr : keys_.data(); }  // [N, dI]
  // fp8 layout (the raw rows, kv_pack.cuh): slot s of the ring at s * 584, entry j at j * 584,
  // key j at j * 68.
  const uint8_t* window_fp8() const { return ring8_.empty() ? nullptr : ring8_.data(); }   // [window, 584]
  const uint8_t* comp_fp8() const { return comp8_.empty() ? nullptr : comp8_.data(); }      // [N, 584]
  const uint8_t* index_keys_fp4() const { return keys8_.empty() ? nullptr : keys8_.data(); }  // [N, 68]
  const DeviceCompressorState* comp_state() const { return comp_state_.get(); }    // ratio > 0
  const DeviceCompressorState* index_state() const { return index_state_.get(); }  // CSA

 private:
  friend void attention_layer_forward(const AttentionLayerParams<float>&, View2<const float>, View2<float>,
                                      DeviceAttentionLayerState&, AttentionLayerWorkspace&,
                                      cudaStream_t);
  DeviceKvLayout layout_;
  int64_t pos_ = 0, window_, d_, dI_, ratio_;
  int64_t comp_rows_ = 0, comp_cap_ = 0, key_rows_ = 0, key_cap_ = 0;
  DeviceBuffer<float> ring_, comp_, keys_;       // f32 layout
  DeviceBuffer<uint8_t> ring8_, comp8_, keys8_;  // fp8 layout
  std::unique_ptr<DeviceCompressorState> comp_state_, index_state_;
};

// Scratch of attention_layer_forward for chunks of up to max_tokens rows of one layer shape:
// the twins' workspaces and the intermediates (window rows [window - 1 + max_tokens, d], cq,
// q, indexer queries / weights / selection, o; for fp8-layout states also the packed window
// rows [window - 1 + max_tokens, 584 B] and the compressors' fresh rows [max_tokens / ratio + 1,
// d]). Nothing is allocated until
// the first forward that launches work (so it can be made without a device). One per stream
// that runs the op; it serves states of either layout.
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
// fp8 layout: the rows dequantised on the host (kv_pack.cuh's codec), i.e. exactly the floats
// that model/kv_cache.h's fp8 stores read() back for the same bytes (the raw bytes:
// window_fp8() / comp_fp8() / index_keys_fp4()). Waits for `stream` first (synchronous).
AttentionLayerState<float> download_state(const DeviceAttentionLayerState& state, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
