// The DeepSeek-V4 forward, written once against the Backend interface (model/backend.h).
// Spec: docs/v4-architecture.md §3 (block structure), §2.9 (order within attention).
//
//   h = hc_expand(embed(ids))                                     [n, s*D]
//   per layer l:  u = norm(hc_pre(h)); h = hc_post(h, attention_l(u))
//                 u = norm(hc_pre(h)); h = hc_post(h, moe_l(u, ids))
//   logits = head(norm(hc_head(h)))                               [rows, V], FP32
// A Sequence holds one KV cache per layer; forward() takes the next n tokens (a prefill
// chunk, or one decode token), so prefill in chunks, prefill + decode and one full prefill
// all compute the same thing. Logits are computed only for the rows asked for (a 1M-token
// prefill needs only the last), and so is the last layer's output: its caches advance by
// every token, but its query path, indexer scoring, attention, MoE and the head run only for
// the asked rows (earlier layers run in full: the next layer's caches read every row).
// MTP (§3.2): mtp_forward() runs MTP module i on the final hidden states of the last
// forward() and the tokens that follow them, with its own cache.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/backend.h"

namespace dsv4 {

struct Sequence {
  std::vector<std::unique_ptr<LayerCache>> layers;  // main stack
  std::vector<std::unique_ptr<LayerCache>> mtp;     // MTP modules
  int64_t pos = 0;                                  // tokens seen by the main stack
  std::unique_ptr<Buffer> last_hidden;              // final h [n, s*D] of the last forward,
                                                    // null unless it computed every row
  int64_t cache_bytes() const;
};

struct PrefillStats {
  int64_t tokens = 0;   // prompt tokens processed
  double seconds = 0;   // wall time of the prefill
  double tokens_per_s() const { return seconds > 0 ? double(tokens) / seconds : 0.0; }
};

// One layer's attention sub-layer at one traced row (Model::forward's `trace`).
struct AttentionTrace {
  int64_t layer = 0;
  int64_t row = 0;            // chunk row
  std::vector<float> output;  // the sub-layer output f [D] (before the post-mix)
  bool traced = false;        // `detail` is filled (the backend can trace)
  AttentionRowTrace detail;   // indexer selection and scores, every head's weights
};

struct ForwardOutput {
  std::vector<float> logits;                 // [rows, V] for the requested rows
  std::vector<std::vector<float>> hidden;    // with want_hidden: after each layer, [n, s*D]
  std::vector<AttentionTrace> trace;         // with trace: layer by layer, each logit row (sorted)
};

class Model {
 public:
  explicit Model(std::unique_ptr<Backend> backend);
  const ModelConfig& config() const { return backend_->config(); }
  Backend& backend() { return *backend_; }

  Sequence new_sequence();
  // The next n tokens of `s`. logit_rows: rows of this chunk (0..n-1) whose logits to return
  // (any order, repeats allowed); the last layer computes outputs for these rows only.
  // want_hidden: also return every layer's hidden state, which computes every row in full.
  // The caches and the returned logits do not depend on which other rows are asked for, up
  // to the rounding of the last layer's GEMMs over fewer rows (tests/model/test_sparse_rows.cc).
  // trace: also record every layer's attention at the (distinct) logit rows: the sub-layer
  // output, and where the backend can, the indexer's selection and scores and the weights.
  ForwardOutput forward(Sequence& s, const int32_t* ids, int64_t n, const std::vector<int64_t>& logit_rows,
                        bool want_hidden = false, bool trace = false);
  // The whole prompt in chunks of `chunk` tokens; returns the last position's logits [V].
  // Only the last position is asked for, so the last layer runs its attention and MoE for that
  // one row (every cache still covers every token). stats: where to put the wall time.
  std::vector<float> prefill(Sequence& s, const std::vector<int32_t>& ids, int64_t chunk = 512,
                             PrefillStats* stats = nullptr);
  // One token; its logits [V].
  std::vector<float> decode(Sequence& s, int32_t id);
  // MTP module i over the last forward's n final hidden rows and the n tokens that follow
  // them (next_ids[r] = the token after row r); logits [n, V]. Needs a last forward that
  // computed every row (all rows in logit_rows, or want_hidden).
  std::vector<float> mtp_forward(Sequence& s, int64_t i, const int32_t* next_ids, int64_t n);

 private:
  std::unique_ptr<Backend> backend_;
};

}  // namespace dsv4
