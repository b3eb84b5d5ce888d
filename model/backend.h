// The backend interface: every op the model needs, on activations the backend owns.
// The model (model/model.h) is written once against this interface; a backend holds the
// weights in whatever form it wants (the reference: float host arrays; CUDA: device memory)
// and runs the math. Nothing in model.cc knows which backend it talks to.
//
// Activations are [rows, cols] float buffers made by alloc(); the host sees them only
// through upload/download. Layer l of ops that take one is 0..n_layers-1 for the main stack
// and n_layers + i for MTP layer i. Shapes: n tokens, D hidden, s = hc_mult streams.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "reference/errors.h"

namespace dsv4 {

class Buffer {
 public:
  Buffer(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}
  virtual ~Buffer() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

 private:
  int64_t rows_, cols_;
};

// Per-sequence, per-layer attention state (the KV cache of one layer), backend-owned.
class LayerCache {
 public:
  virtual ~LayerCache() = default;
  virtual int64_t position() const = 0;  // tokens seen
  virtual int64_t bytes() const = 0;     // bytes held
  virtual std::unique_ptr<LayerCache> clone() const = 0;
};

enum class HcSite { attn, ffn };

// What the Engram prefetches of a backend did (Backend::engram_prefetch_stats): lookups run
// ahead of their layer, the seconds they took, and the seconds the layers then waited for
// them. hidden_fraction() = the share of the lookup time hidden behind earlier layers, 0 when
// the layers waited as long as the lookups took or longer (a wait can exceed the lookup when
// the lookup started late: its thread found no free core).
struct EngramPrefetchStats {
  int64_t lookups = 0;        // prefetched lookups consumed by engram()
  double lookup_seconds = 0;  // their wall time, where they ran
  double wait_seconds = 0;    // time engram() blocked waiting for them
  double hidden_fraction() const {
    return lookup_seconds > 0 && wait_seconds < lookup_seconds ? 1.0 - wait_seconds / lookup_seconds : 0.0;
  }
};

struct BackendOptions {
  Numerics numerics = Numerics::official;
  KvLayout kv_layout = KvLayout::f32;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;

  virtual std::unique_ptr<Buffer> alloc(int64_t rows, int64_t cols) = 0;
  virtual void upload(Buffer& b, const float* host) = 0;
  virtual void download(const Buffer& b, float* host) = 0;

  virtual std::unique_ptr<LayerCache> new_cache(int64_t layer) = 0;

  // x [n, D] = embed[ids]
  virtual void embed(const int32_t* ids, int64_t n, Buffer& x) = 0;
  // h [n, s*D]: every stream a copy of x [n, D]
  virtual void hc_expand(const Buffer& x, Buffer& h) = 0;
  // u [n, D], post [n, s], comb [n, s*s] from h (§3.1 pre-mix), then u <- RMSNorm(u) with the
  // site's norm weight (attn_norm / ffn_norm)
  virtual void hc_pre_norm(int64_t layer, HcSite site, const Buffer& h, Buffer& u, Buffer& post,
                           Buffer& comb) = 0;
  // h_out [n, s*D] = post-mix of h with the sub-layer output f [n, D]
  virtual void hc_post(const Buffer& h, const Buffer& f, const Buffer& post, const Buffer& comb,
                       Buffer& h_out) = 0;
  // The attention sub-layer of `layer` over u [n, D], the n tokens following the cache's
  // position. The cache advances by all n tokens (window entries, compressor and indexer
  // state), but f [rows.size(), D] holds the outputs of the chunk rows `rows` only (strictly
  // increasing, in [0, n)): the query path, indexer scoring and attention run for those rows
  // alone, each seeing exactly its own causal set (what it would see in a call for every
  // row). rows = 0..n-1 is the full sub-layer; rows = {} only updates the cache.
  virtual void attention(int64_t layer, const Buffer& u, const std::vector<int64_t>& rows, Buffer& f,
                         LayerCache& cache) = 0;
  // Asks the next attention() call to record the chunk rows `rows` (each one of its asked
  // rows) into `out` (reference/attention_layer.h: the indexer's selection and scores, every
  // head's weights). false: this backend cannot trace (the call records nothing).
  virtual bool trace_next_attention(const std::vector<int64_t>& rows, std::vector<AttentionRowTrace>* out) {
    (void)rows, (void)out;
    return false;
  }
  // Engram (docs/engram.md) at a layer listed in config().engram.layer_ids: h [n, s*D] +=
  // the Engram output for the n tokens `ids` that follow the cache's position (before the
  // layer's attention pre-mix). The layer's cache carries the canonical-id and convolution
  // history. Backends without Engram throw InputError.
  virtual void engram(int64_t layer, const int32_t* ids, int64_t n, Buffer& h, LayerCache& cache) {
    (void)layer, (void)ids, (void)n, (void)h, (void)cache;
    throw InputError("backend '" + name() + "' does not run Engram layers");
  }
  // Called for every Engram layer as soon as a forward's ids are known, before any layer
  // runs: the addresses depend on the ids alone, so a backend may start gathering the table
  // rows (the reference starts the lookup on a thread of its own; CUDA copies the rows from host
  // memory on a side stream). The next engram() call of that layer with the same ids uses them. Optional.
  virtual void engram_prefetch(int64_t layer, const int32_t* ids, int64_t n, LayerCache& cache) {
    (void)layer, (void)ids, (void)n, (void)cache;
  }
  // Totals since construction (zeros: the backend does not prefetch or does not measure).
  virtual EngramPrefetchStats engram_prefetch_stats() const { return {}; }
  // The elements of b in device memory, for collectives that take device pointers (NCCL,
  // model/backend_sharded.h); nullptr when the backend keeps its buffers on the host.
  virtual float* device_data(Buffer& b) {
    (void)b;
    return nullptr;
  }
  // dst [rows.size(), cols] = the rows `rows` of src [n, cols]
  virtual void gather_rows(const Buffer& src, const std::vector<int64_t>& rows, Buffer& dst) = 0;
  // f [n, D] = MoE of `layer` (routing needs the token ids for hash layers)
  virtual void moe(int64_t layer, const Buffer& u, const int32_t* ids, Buffer& f) = 0;
  // The expert-parallel owner's work (model/backend_sharded.h): for every row i of x [m, D],
  // y[i] = weights[i] * expert_e(x[i]) with routed expert e of `layer` in this backend's own
  // numbering (its slice of the experts), or for e < 0 y[i] += shared_expert(x[i]) (weights
  // unused). Host `weights` [m]; numerics as moe() (FP8 activations with official numerics).
  // Backends without single experts throw InputError.
  virtual void expert(int64_t layer, int64_t e, const Buffer& x, const float* weights, Buffer& y) {
    (void)layer, (void)e, (void)x, (void)weights, (void)y;
    throw InputError("backend '" + name() + "' does not run single experts");
  }
  // logits [rows.size(), V] for the chosen rows of h [n, s*D]: hc_head -> norm -> head.
  // mtp < 0: the main head; mtp = i: MTP module i's hc_head and norm (shared head).
  virtual void head(const Buffer& h, const std::vector<int64_t>& rows, int64_t mtp, float* logits) = 0;
  // MTP input: h_out [n, s*D] = e_proj(enorm(embed(next_ids))) + h_proj(hnorm(h)) per stream.
  virtual void mtp_input(int64_t mtp, const Buffer& h, const int32_t* next_ids, Buffer& h_out) = 0;
};

// The Eigen reference backend (model/backend_ref.cc): takes the weights by value.
std::unique_ptr<Backend> make_reference_backend(ModelWeights weights, BackendOptions options);
// The same reference ops instantiated in float64: weights converted to double, exact numerics
// (no quantisation simulation), float64 caches; buffers convert at upload/download. The
// "fp64 reference" the degradation suite measures the deployment path against.
std::unique_ptr<Backend> make_f64_backend(const ModelWeights& weights);
// The CUDA backend (model/backend_cuda.cc, model/backend_device.h): the weights, activations and
// KV cache in device memory, every op a dsv4::cuda twin. InputError with cuda_backend_problem()
// when it cannot run here.
std::unique_ptr<Backend> make_cuda_backend(ModelWeights weights, BackendOptions options);
// Why the CUDA backend cannot run on this machine ("built without CUDA", "no CUDA device: ..."),
// or "" when it can.
std::string cuda_backend_problem();
// Binds the calling thread to CUDA device `rank` mod the number of devices (one rank per GPU
// on a node) and returns that device; InputError with cuda_backend_problem() when there is none.
int cuda_bind_rank(int rank);

}  // namespace dsv4
