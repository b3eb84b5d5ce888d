// The KV cache in its storage layouts, with byte-exact accounting. Spec:
// docs/v4-architecture.md §4.
//
// Layouts (per row):
//   f32    the reference's floats (4 B per value)
//   bf16   every value BF16: V4 entry 1024 B, V4 indexer key 256 B, V3 MLA row 1152 B,
//          V3.2 indexer key 256 B
//   fp8    the deployment layout:
//            V4 entry (window and compressed, d = 512): 448 e4m3 + 7 UE8M0 scales (one per 64)
//              + 1 pad byte + 64 BF16 RoPE dims = 584 B
//            V4 indexer key (dI = 128): 64 B of packed e2m1 (low nibble first) + 4 UE8M0
//              scales (one per 32) = 68 B
//            V3 / V3.2 MLA row: 512 e4m3 + 4 F32 scales (one per 128) + 64 BF16 = 656 B
//            V3.2 indexer key: 128 e4m3 + 1 F32 scale = 132 B
// Rows already on the FP8 / FP4 grid (Numerics::official) are stored without loss, so a
// cache in the fp8 layout reproduces the quantisation-simulating reference; other rows are
// quantised on the way in.
//
// Accounting: window rows min(L, 128) per layer, compressed rows floor(L/m), indexer keys
// floor(L/4) for CSA layers, and the FP32 compressor states (2 x [c*m, c*dc] floats per
// compressor) shown separately, as in §4.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "reference/attention_layer.h"
#include "reference/entry_store.h"

namespace dsv4 {

enum class KvLayout { f32, bf16, fp8 };
KvLayout kv_layout_from_name(const std::string& s);  // "f32" | "bf16" | "fp8"
std::string kv_layout_name(KvLayout l);

// Bytes of one stored row.
int64_t v4_entry_bytes(KvLayout l, int64_t head_dim, int64_t rope_dim);   // window / compressed
int64_t v4_index_key_bytes(KvLayout l, int64_t index_dim);
int64_t mla_row_bytes(KvLayout l, int64_t latent_dim, int64_t rope_dim);  // V3 / V3.2
int64_t dsa_key_bytes(KvLayout l, int64_t index_dim);                      // V3.2

// Stores for the V4 attention layer state in a layout.
template <class T>
EntryStoreFactory<T> v4_entry_stores(KvLayout l, int64_t rope_dim);

// Bytes of a cache for one sequence of L tokens, by part.
struct KvBytes {
  int64_t window = 0;      // window rings, every layer
  int64_t compressed = 0;  // CSA + HCA main entries (V3/V3.2: the MLA rows)
  int64_t index_keys = 0;  // CSA indexer keys (V3.2: its token keys)
  int64_t state = 0;       // FP32 compressor states
  int64_t csa = 0, hca = 0, window_only = 0;  // compressed + keys by layer kind (no window, no state)
  int64_t total() const { return window + compressed + index_keys + state; }
  int64_t paper() const { return window + compressed + index_keys; }  // §4's claim ignores S
};

// The formula of §4 for the main layers (MTP excluded, as in the paper's accounting).
KvBytes kv_bytes_analytic(const ModelConfig& c, int64_t L, KvLayout layout);

// A real cache: one state per main layer of a V4 model, in a layout.
class KvCache {
 public:
  KvCache(const ModelConfig& c, KvLayout layout);
  const ModelConfig& config() const { return config_; }
  KvLayout layout() const { return layout_; }
  AttentionLayerState<float>& layer(int64_t l) { return layers_[size_t(l)]; }
  int64_t positions() const;
  // Fills every layer as if L tokens had been processed, with random entries (for
  // measuring memory without running the model).
  void fill_synthetic(int64_t L, uint64_t seed);
  KvBytes bytes() const;  // measured: what the stores hold

 private:
  ModelConfig config_;
  KvLayout layout_;
  std::vector<AttentionLayerState<float>> layers_;
};

// V3 / V3.2 caches: per layer one MLA row (and for V3.2 one indexer key) per token.
class MlaCache {
 public:
  MlaCache(const ModelConfig& c, KvLayout layout);
  void fill_synthetic(int64_t L, uint64_t seed);
  KvBytes bytes() const;

 private:
  ModelConfig config_;
  KvLayout layout_;
  std::vector<std::unique_ptr<EntryStore<float>>> rows_, keys_;
};

}  // namespace dsv4
