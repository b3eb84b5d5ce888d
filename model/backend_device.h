// The model backend over device memory, written once against an executor: DeviceBackend<Exec>
// holds the weights in the executor's memory, the activations in its buffers and the KV cache
// in its layer states, and runs every op of the Backend interface (model/backend.h) as the
// reference backend (model/backend_ref.cc) does, op for op, in the same order, with the same
// params structs (reference/*.h; the CUDA twins take the same structs with device pointers).
//
//   model/backend_cuda.cc   Exec = CudaExec: device memory, the dsv4::cuda twins on one stream
//                           (make_cuda_backend, the `--backend cuda` of generate / eval / bench)
//   tests/model/host_exec.h Exec = HostExec: host memory and the dsv4::ref ops, so that this
//                           file's composition (pointers, row offsets, strides, the Engram and
//                           MTP flows) is tested bit for bit against the reference backend on
//                           a machine without a GPU
//
// An executor provides (every pointer in its memory; `const float*` weights as uploaded):
//   template <class T> using Array            owning array: data(), size(); move-only
//   Array<T> array<T>(n) / to_array<T>(host, n)    allocation (uninitialised) / upload copy
//   upload(T* dst, const T* host, n), download(const T* src, T* host, n)   synchronous
//   using State; State new_state(shape, KvLayout); static position(s), bytes(s), clone(s)
//   gather_rows(src, src_rows, src_ld, idx, n, cols, dst, dst_ld), spread_rows(src, n, cols,
//     s, dst, accumulate)                       (optimized/rows.cuh)
//   hc_pre, hc_head, hc_post, rmsnorm, quant_fp8                 the ops of the same name
//   using Experts; Experts experts(ExpertTensors&, name) takes one layer's routed and shared
//     expert tensors (releasing the host vectors) in whatever form the executor keeps them
//     (CUDA: FP4 routed / FP8 shared on the device when the floats are exactly representable,
//     optimized/compact_weights.cuh; FP32 otherwise); moe(params, experts) fills the params'
//     expert weights from them and runs the MoE; expert(ExpertParams, experts, e, where) runs
//     routed expert e (or the shared one for e < 0) alone
//   linear(x, w, out, y)                        y = x w^T
//   attention_layer(layer, params, x, y, state) the whole sub-layer, every row of x
//   Engram: using HashMirror; HashMirror mirror(const EngramHash&); engram_hash(params,
//     mirror) on device ids/history; engram_lookup(params); engram_mix(params);
//     prefetch(i, table, rows_host, e) and prefetch_wait(i) for a host-resident table
//     (the rows computed on the host, copied asynchronously; wait makes the compute see them)
//
// Differences from the reference backend:
//   * attention() runs every row of the chunk and gathers the asked rows (the reference runs
//     only those): the asked rows' outputs are the same (each row sees exactly its own causal
//     set either way); the unasked rows cost compute the reference skips.
//   * no attention tracing (trace_next_attention returns false).
//   * the KV cache lives in the executor's state (CUDA: optimized/attention_layer.cuh), in the
//     layouts it supports; clone() works where the executor can copy a state.
//   * Engram tables: in the executor's memory, or left in host memory when the checkpoint was
//     loaded with memory-mapped tables (--engram-tables mmap): then engram_prefetch() hashes on
//     the host and starts the copy of the rows before any layer runs (docs/engram.md).
// After construction the backend owns the only copy of the weights: the host vectors are
// released as they are uploaded (the hash table tid2eid is kept on the host too, for checks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/backend.h"
#include "model/nvtx.h"
#include "model/weights.h"
#include "reference/engram.h"
#include "reference/errors.h"
#include "reference/hc_post.h"
#include "reference/hc_pre.h"
#include "reference/moe.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"

namespace dsv4 {

// One layer's expert tensors as the loader gives them (float, host), handed to an executor's
// experts(): it takes them (the vectors are left empty). E routed experts w1/w3 [E, I, D], w2
// [E, D, I]; the shared expert [I, D] / [D, I] (empty vectors: none); FP8 weight blocks of
// `block` x `block` in the checkpoint.
struct ExpertTensors {
  std::vector<float>&w1, &w3, &w2, &shared_w1, &shared_w3, &shared_w2;
  int64_t experts, inter, dim, block;
};

template <class Exec>
class DeviceBackend final : public Backend {
  template <class T>
  using Array = typename Exec::template Array<T>;
  using State = typename Exec::State;

  class Buf final : public Buffer {
   public:
    Buf(int64_t r, int64_t c, Array<float> a) : Buffer(r, c), mem(std::move(a)) {}
    float* data() { return mem.data(); }
    const float* data() const { return mem.data(); }
    View2<float> view() { return view2(data(), rows(), cols()); }
    View2<const float> view() const { return view2<const float>(data(), rows(), cols()); }
    Array<float> mem;
  };
  static Buf& buf(Buffer& b) { return static_cast<Buf&>(b); }
  static const Buf& buf(const Buffer& b) { return static_cast<const Buf&>(b); }

  class Cache final : public LayerCache {
   public:
    explicit Cache(State s) : state(std::move(s)) {}
    int64_t position() const override { return Exec::position(state); }
    int64_t bytes() const override {
      return Exec::bytes(state) + int64_t(engram_ids.size() * sizeof(int32_t) + engram_conv.size() * sizeof(float));
    }
    std::unique_ptr<LayerCache> clone() const override {
      auto c = std::make_unique<Cache>(Exec::clone(state));
      c->engram_ids = engram_ids;
      c->engram_conv = Exec::copy(engram_conv);
      return c;
    }
    State state;
    std::vector<int32_t> engram_ids;  // Engram: canonical ids of the last N-1 tokens (-1: none)
    Array<float> engram_conv;         // Engram: convolution history [(K-1)*N, S*D]
  };

  // One layer's weights as executor pointers (nullptr where the layer has no such tensor).
  struct Layer {
    AttentionLayerWeights<float> attn;
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    const float *hc_fn[2] = {}, *hc_base[2] = {}, *hc_scale[2] = {};  // [HcSite]
    const float *gate = nullptr, *gate_bias = nullptr;
    typename Exec::Experts experts;  // routed and shared expert weights, as the executor keeps them
    const int64_t* tid2eid = nullptr;  // [V, k] (hash-routed layers)
    const float *e_value_w = nullptr, *e_value_b = nullptr, *e_key_w = nullptr, *e_key_b = nullptr;
    const float *e_key_norm = nullptr, *e_query_norm = nullptr, *e_conv_w = nullptr, *e_conv_norm = nullptr;
  };
  struct Mtp {
    Layer block;
    const float *e_proj = nullptr, *h_proj = nullptr, *enorm = nullptr, *hnorm = nullptr, *norm = nullptr;
    const float *hc_head_fn = nullptr, *hc_head_base = nullptr, *hc_head_scale = nullptr;
  };
  // One Engram layer (config order): its hash on the host and in the executor, its table
  // (executor memory, or host memory for the prefetch path) and the rows the last prefetch
  // started for (cache, position, ids).
  struct EngramLayer {
    EngramHash hash;
    typename Exec::HashMirror mirror;
    EngramTableView table;
    bool host_resident = false;
    Array<float> e;  // [capacity, E]: the lookups of the current chunk
    int64_t capacity = 0;
    const LayerCache* prefetched_cache = nullptr;
    int64_t prefetched_pos = -1;
    std::vector<int32_t> prefetched_ids;
  };

 public:
  DeviceBackend(std::string name, Exec exec, ModelWeights w, BackendOptions o)
      : name_(std::move(name)), ex_(std::move(exec)), c_(w.config), o_(o) {
    require(c_.arch == Arch::v4, "the " + name_ + " backend runs V4 models; '" + c_.name + "' is " + arch_name(c_.arch));
    embed_ = put(w.embed), head_ = put(w.head), norm_ = put(w.norm);
    hc_head_fn_ = put(w.hc_head_fn), hc_head_base_ = put(w.hc_head_base), hc_head_scale_ = put(w.hc_head_scale);
    for (size_t l = 0; l < w.layers.size(); ++l) layers_.push_back(put_layer(w.layers[l], "layers." + std::to_string(l)));
    for (size_t i = 0; i < w.mtp.size(); ++i) {
      auto& m = w.mtp[i];
      Mtp t;
      t.block = put_layer(m.block, "mtp." + std::to_string(i));
      t.e_proj = put(m.e_proj), t.h_proj = put(m.h_proj), t.enorm = put(m.enorm), t.hnorm = put(m.hnorm);
      t.norm = put(m.norm), t.hc_head_fn = put(m.hc_head_fn), t.hc_head_base = put(m.hc_head_base);
      t.hc_head_scale = put(m.hc_head_scale);
      mtp_.push_back(std::move(t));
    }
    set_up_engram(w);
    // Every float tensor must have been taken: a field added to the weights and not to this
    // backend fails here rather than running without it.
    auto check_taken = [&](LayerTensors& L, const std::string& where) {
      for_each_tensor(L, L, [&](std::vector<float>& a, std::vector<float>&) {
        require(a.empty(), "the " + name_ + " backend left a tensor of " + where + " unused");
      });
    };
    for (size_t l = 0; l < w.layers.size(); ++l) check_taken(w.layers[l], "layer " + std::to_string(l));
    for (size_t i = 0; i < w.mtp.size(); ++i) check_taken(w.mtp[i].block, "MTP module " + std::to_string(i));
  }

  // A prefetch may still be writing an Engram layer's e (a forward that threw between
  // engram_prefetch and engram): wait for it before e is freed (members go before ex_ does).
  ~DeviceBackend() override {
    for (size_t i = 0; i < engram_.size(); ++i) {
      if (!engram_[i].host_resident) continue;
      try {
        ex_.prefetch_drain(i);
      } catch (...) {  // a destructor must not throw
      }
    }
  }

  std::string name() const override { return name_; }
  const ModelConfig& config() const override { return c_; }

  std::unique_ptr<Buffer> alloc(int64_t rows, int64_t cols) override {
    require(rows >= 0 && cols >= 0, "alloc: negative shape");
    return std::make_unique<Buf>(rows, cols, ex_.template array<float>(size_t(rows * cols)));
  }
  // The executor's memory (CUDA: device memory, for NCCL; HostExec: host memory standing in).
  float* device_data(Buffer& b) override { return buf(b).data(); }
  void upload(Buffer& b, const float* h) override { ex_.upload(buf(b).data(), h, size_t(b.rows() * b.cols())); }
  void download(const Buffer& b, float* h) override { ex_.download(buf(b).data(), h, size_t(b.rows() * b.cols())); }

  std::unique_ptr<LayerCache> new_cache(int64_t layer) override {
    require(layer >= 0 && layer < c_.n_layers + c_.n_mtp_layers,
            "new_cache: layer " + std::to_string(layer) + " is outside the model");
    auto cache = std::make_unique<Cache>(ex_.new_state(c_.attention_shape(layer), o_.kv_layout));
    if (c_.engram.index_of(layer) >= 0) {
      cache->engram_ids.assign(size_t(c_.engram.max_ngram - 1), -1);
      const size_t n = size_t(c_.engram.history_rows() * c_.hc_mult * c_.dim);
      const std::vector<float> zeros(n, 0.f);
      cache->engram_conv = ex_.template to_array<float>(zeros.data(), n);
    }
    return cache;
  }

  void embed(const int32_t* ids, int64_t n, Buffer& x) override {
    const ModelRange nvtx_range(name_.c_str(), "embed");
    const int64_t D = c_.dim, V = c_.vocab_size;
    for (int64_t t = 0; t < n; ++t)
      require(ids[t] >= 0 && ids[t] < V, "token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                                             " is outside the vocabulary [0, " + std::to_string(V) + ")");
    require(x.rows() == n && x.cols() == D, "embed: the output has the wrong shape");
    const Array<int32_t> idx = ex_.template to_array<int32_t>(ids, size_t(n));
    ex_.gather_rows(embed_, V, D, idx.data(), n, D, buf(x).data(), D);
  }

  void hc_expand(const Buffer& x, Buffer& h) override {
    const ModelRange nvtx_range(name_.c_str(), "hc_expand");
    const int64_t D = x.cols(), s = h.cols() / D;
    ex_.spread_rows(buf(x).data(), x.rows(), D, s, buf(h).data(), false);
  }

  void hc_pre_norm(int64_t layer, HcSite site, const Buffer& h, Buffer& u, Buffer& post, Buffer& comb) override {
    const ModelRange nvtx_range(name_.c_str(), "hc_pre_norm", layer);
    const Layer& L = tensors(layer);
    const int k = site == HcSite::attn ? 0 : 1;
    HcPreParams<float> p;
    p.x = buf(h).view();
    p.fn = L.hc_fn[k];
    p.base = L.hc_base[k];
    p.scale = L.hc_scale[k];
    p.n = c_.hc_mult;
    p.iters = c_.hc_sinkhorn_iters;
    p.eps = c_.hc_eps;
    p.norm_eps = c_.norm_eps;
    p.u = buf(u).view();
    p.post = buf(post).view();
    p.comb = buf(comb).view();
    ex_.hc_pre(p);
    ex_.rmsnorm({buf(u).view(), k == 0 ? L.attn_norm : L.ffn_norm, buf(u).view(), c_.norm_eps});
  }

  void hc_post(const Buffer& h, const Buffer& f, const Buffer& post, const Buffer& comb, Buffer& out) override {
    const ModelRange nvtx_range(name_.c_str(), "hc_post");
    ex_.hc_post({buf(h).view(), buf(f).view(), buf(post).view(), buf(comb).view(), c_.hc_mult, buf(out).view()});
  }

  void attention(int64_t layer, const Buffer& u, const std::vector<int64_t>& rows, Buffer& f,
                 LayerCache& cache) override {
    const ModelRange nvtx_range(name_.c_str(), "attention", layer);
    const int64_t n = u.rows(), D = c_.dim;
    for (size_t i = 0; i < rows.size(); ++i)
      require(rows[i] >= 0 && rows[i] < n && (i == 0 || rows[i] > rows[i - 1]),
              "attention: the rows must be strictly increasing in [0, " + std::to_string(n) + ")");
    require(f.rows() == int64_t(rows.size()) && f.cols() == D, "attention: the output has the wrong shape");
    AttentionLayerParams<float> p;
    p.shape = c_.attention_shape(layer);
    p.w = tensors(layer).attn;
    p.numerics = o_.numerics;
    State& st = static_cast<Cache&>(cache).state;
    if (int64_t(rows.size()) == n) {  // every row: straight into f
      ex_.attention_layer(layer, p, buf(u).view(), buf(f).view(), st);
      return;
    }
    Array<float> y = ex_.template array<float>(size_t(n * D));
    ex_.attention_layer(layer, p, buf(u).view(), view2(y.data(), n, D), st);
    gather(y.data(), n, D, rows, buf(f).data());
  }

  void gather_rows(const Buffer& src, const std::vector<int64_t>& rows, Buffer& dst) override {
    const ModelRange nvtx_range(name_.c_str(), "gather_rows");
    const int64_t c = src.cols();
    require(dst.cols() == c && dst.rows() == int64_t(rows.size()), "gather_rows: the output has the wrong shape");
    for (int64_t r : rows)
      require(r >= 0 && r < src.rows(),
              "gather_rows: row " + std::to_string(r) + " is outside [0, " + std::to_string(src.rows()) + ")");
    gather(buf(src).data(), src.rows(), c, rows, buf(dst).data());
  }

  void moe(int64_t layer, const Buffer& u, const int32_t* ids, Buffer& f) override {
    const ModelRange nvtx_range(name_.c_str(), "moe", layer);
    const Layer& L = tensors(layer);
    const int64_t n = u.rows(), k = c_.experts_per_token, V = c_.vocab_size;
    const bool hash = layer < c_.n_layers && c_.hash_routed(layer);
    Array<int64_t> ids_dev;
    MoeParams<float> p;
    p.route.x = buf(u).view();
    p.route.gate = L.gate;
    p.route.bias = hash ? nullptr : L.gate_bias;
    if (hash) {
      for (int64_t t = 0; t < n; ++t)
        require(ids[t] >= 0 && ids[t] < V, "moe: token id " + std::to_string(ids[t]) + " is outside the vocabulary");
      const std::vector<int64_t> ids64(ids, ids + n);
      ids_dev = ex_.template to_array<int64_t>(ids64.data(), size_t(n));
      p.route.tid2eid = {L.tid2eid, V, k, k};
      p.route.ids = ids_dev.data();
    }
    p.route.experts = c_.n_routed_experts;
    p.route.topk = k;
    p.route.route_scale = c_.route_scale;
    p.route.score = c_.score_func;
    Array<int32_t> chosen = ex_.template array<int32_t>(size_t(n * k));
    Array<float> weights = ex_.template array<float>(size_t(n * k));
    p.route.chosen = view2(chosen.data(), n, k);
    p.route.weights = view2(weights.data(), n, k);
    p.inter = c_.moe_inter_dim;
    p.swiglu_limit = c_.swiglu_limit;
    p.act_quant = o_.numerics == Numerics::official;
    p.y = buf(f).view();
    ex_.moe(p, L.experts);  // the executor sets p.w1 .. p.shared_w2 (or their compact forms)
  }

  void expert(int64_t layer, int64_t e, const Buffer& x, const float* weights, Buffer& y) override {
    const ModelRange nvtx_range(name_.c_str(), e < 0 ? "shared_expert" : "expert", layer);
    const Layer& L = tensors(layer);
    const int64_t m = x.rows(), D = c_.dim;
    require(x.cols() == D && y.rows() == m && y.cols() == D, "expert: x and y must be [m, D] of the same m");
    const bool shared = e < 0;
    Array<float> w;
    if (!shared) w = ex_.template to_array<float>(weights, size_t(m));
    ExpertParams<float> p;
    p.x = buf(x).view();
    p.inter = c_.moe_inter_dim;
    p.route_weight = shared ? nullptr : w.data();
    p.swiglu_limit = c_.swiglu_limit;
    p.accumulate = shared;
    p.act_quant = o_.numerics == Numerics::official;
    p.y = buf(y).view();
    ex_.expert(p, L.experts, e, "layer " + std::to_string(layer));  // the executor sets the weights
  }

  void head(const Buffer& h, const std::vector<int64_t>& rows, int64_t mtp, float* logits) override {
    const ModelRange nvtx_range(name_.c_str(), "head");
    const int64_t D = c_.dim, s = c_.hc_mult, n = int64_t(rows.size()), V = c_.vocab_size;
    for (int64_t r : rows) require(r >= 0 && r < h.rows(), "head: row " + std::to_string(r) + " is outside the chunk");
    require(mtp < int64_t(mtp_.size()), "head: MTP module " + std::to_string(mtp) + " does not exist");
    if (n == 0) return;
    Array<float> x = ex_.template array<float>(size_t(n * s * D)), u = ex_.template array<float>(size_t(n * D));
    gather(buf(h).data(), h.rows(), s * D, rows, x.data());
    const bool main = mtp < 0;
    const Mtp* m = main ? nullptr : &mtp_[size_t(mtp)];
    HcHeadParams<float> p;
    p.x = view2<const float>(x.data(), n, s * D);
    p.fn = main ? hc_head_fn_ : m->hc_head_fn;
    p.base = main ? hc_head_base_ : m->hc_head_base;
    p.scale = main ? hc_head_scale_ : m->hc_head_scale;
    p.n = s;
    p.eps = c_.hc_eps;
    p.norm_eps = c_.norm_eps;
    p.u = view2(u.data(), n, D);
    ex_.hc_head(p);
    ex_.rmsnorm({p.u, main ? norm_ : m->norm, p.u, c_.norm_eps});
    Array<float> y = ex_.template array<float>(size_t(n * V));  // logits = u head^T in FP32 (§9.5)
    ex_.linear(p.u, head_, V, view2(y.data(), n, V));
    ex_.download(y.data(), logits, size_t(n * V));
  }

  void mtp_input(int64_t mtp, const Buffer& h, const int32_t* next_ids, Buffer& out) override {
    const ModelRange nvtx_range(name_.c_str(), "mtp_input", mtp);
    require(mtp >= 0 && mtp < int64_t(mtp_.size()), "mtp_input: MTP module " + std::to_string(mtp) + " does not exist");
    const Mtp& m = mtp_[size_t(mtp)];
    const int64_t n = h.rows(), D = c_.dim, s = c_.hc_mult;
    Buf e(n, D, ex_.template array<float>(size_t(n * D)));
    Array<float> hs = ex_.template array<float>(size_t(n * s * D)), ep = ex_.template array<float>(size_t(n * D));
    embed(next_ids, n, e);
    ex_.rmsnorm({e.view(), m.enorm, e.view(), c_.norm_eps});
    const View2<float> hv = view2(hs.data(), n * s, D);  // one stream a row
    ex_.rmsnorm({view2<const float>(buf(h).data(), n * s, D), m.hnorm, hv, c_.norm_eps});
    if (o_.numerics == Numerics::official) {  // e_proj and h_proj are FP8 linears (§9.4)
      ex_.quant_fp8({e.view(), e.view(), kActBlock, 0});
      ex_.quant_fp8({hv, hv, kActBlock, 0});
    }
    ex_.linear(e.view(), m.e_proj, D, view2(ep.data(), n, D));
    ex_.linear(hv, m.h_proj, D, view2(buf(out).data(), n * s, D));
    ex_.spread_rows(ep.data(), n, D, s, buf(out).data(), true);  // out[t, k] = h_proj[t, k] + e_proj[t]
  }

  void engram_prefetch(int64_t layer, const int32_t* ids, int64_t n, LayerCache& cache) override {
    const ModelRange nvtx_range(name_.c_str(), "engram_prefetch", layer);
    const int64_t i = c_.engram.index_of(layer);
    if (i < 0) return;
    EngramLayer& g = engram_[size_t(i)];
    if (!g.host_resident) return;  // tables in executor memory: engram() looks up directly
    check_ids(ids, n);
    const auto& cc = static_cast<const Cache&>(cache);
    reserve(g, n);
    const std::vector<int64_t> rows = host_rows(g, ids, n, cc.engram_ids);
    ex_.prefetch(i, g.table, view2<const int64_t>(rows.data(), n, g.hash.slots()), view2(g.e.data(), n, c_.engram.width()));
    g.prefetched_cache = &cache;
    g.prefetched_pos = cache.position();
    g.prefetched_ids.assign(ids, ids + n);
  }

  void engram(int64_t layer, const int32_t* ids, int64_t n, Buffer& h, LayerCache& cache) override {
    const ModelRange nvtx_range(name_.c_str(), "engram", layer);
    const EngramConfig& ec = c_.engram;
    const int64_t i = ec.index_of(layer), S = c_.hc_mult, D = c_.dim, E = ec.width();
    require(i >= 0, "engram: layer " + std::to_string(layer) + " has no Engram");
    check_ids(ids, n);
    EngramLayer& g = engram_[size_t(i)];
    auto& cc = static_cast<Cache&>(cache);
    reserve(g, n);
    const View2<float> e = view2(g.e.data(), n, E);
    if (g.host_resident) {
      const bool ready = g.prefetched_cache == &cache && g.prefetched_pos == cache.position() &&
                         g.prefetched_ids.size() == size_t(n) && std::equal(ids, ids + n, g.prefetched_ids.begin());
      if (!ready) {
        const std::vector<int64_t> rows = host_rows(g, ids, n, cc.engram_ids);
        ex_.prefetch(i, g.table, view2<const int64_t>(rows.data(), n, g.hash.slots()), e);
      }
      ex_.prefetch_wait(i);
    } else {
      const Array<int32_t> ids_dev = ex_.template to_array<int32_t>(ids, size_t(n));
      const Array<int32_t> hist = ex_.template to_array<int32_t>(cc.engram_ids.data(), cc.engram_ids.size());
      Array<int64_t> rows = ex_.template array<int64_t>(size_t(n * g.hash.slots()));
      ex_.engram_hash({&g.hash, ids_dev.data(), n, hist.data(), view2(rows.data(), n, g.hash.slots())}, g.mirror);
      ex_.engram_lookup({g.table, view2<const int64_t>(rows.data(), n, g.hash.slots()), e});
    }
    g.prefetched_cache = nullptr;
    g.prefetched_ids.clear();
    const Layer& L = layers_.at(size_t(layer));
    EngramMixParams<float> p;
    p.x = buf(h).view();
    p.e = e;
    p.w = {L.e_value_w, L.e_value_b, L.e_key_w, L.e_key_b, L.e_key_norm, L.e_query_norm, L.e_conv_w, L.e_conv_norm};
    p.streams = S;
    p.kernel = ec.kernel_size;
    p.dilation = ec.max_ngram;
    p.norm_eps = c_.norm_eps;
    p.history = view2(cc.engram_conv.data(), ec.history_rows(), S * D);
    Array<float> y = ex_.template array<float>(size_t(n * S * D));
    p.y = view2(y.data(), n, S * D);
    ex_.engram_mix(p);
    // h [n, S*D] += y [n, S*D]: a spread with s = 1, one launch row per token (not per element:
    // the CUDA twin gives each row a block striding its columns).
    ex_.spread_rows(y.data(), n, S * D, 1, buf(h).data(), true);
    if (g.host_resident) ex_.prefetch_release(i);
    cc.engram_ids = engram_advance_history(g.hash, cc.engram_ids, ids, n);
  }

 private:
  const float* put(std::vector<float>& v) {
    if (v.empty()) return nullptr;
    weights_.push_back(ex_.template to_array<float>(v.data(), v.size()));
    std::vector<float>().swap(v);
    return weights_.back().data();
  }

  // `name`: the layer's checkpoint prefix (layers.L / mtp.i), for the executor's messages.
  Layer put_layer(LayerTensors& t, const std::string& name) {
    Layer L;
    auto comp = [&](CompressorTensors& c) {
      CompressorWeights<float> w;
      w.wkv = put(c.wkv), w.wgate = put(c.wgate), w.ape = put(c.ape), w.norm = put(c.norm);
      return w;
    };
    L.attn.wq_a = put(t.wq_a), L.attn.q_norm = put(t.q_norm), L.attn.wq_b = put(t.wq_b), L.attn.wkv = put(t.wkv);
    L.attn.kv_norm = put(t.kv_norm), L.attn.wo_a = put(t.wo_a), L.attn.wo_b = put(t.wo_b);
    L.attn.attn_sink = put(t.attn_sink);
    L.attn.compressor = comp(t.compressor);
    L.attn.indexer_compressor = comp(t.indexer_compressor);
    L.attn.indexer_wq_b = put(t.indexer_wq_b), L.attn.indexer_weights_proj = put(t.indexer_weights_proj);
    L.attn_norm = put(t.attn_norm), L.ffn_norm = put(t.ffn_norm);
    L.hc_fn[0] = put(t.hc_attn_fn), L.hc_fn[1] = put(t.hc_ffn_fn);
    L.hc_base[0] = put(t.hc_attn_base), L.hc_base[1] = put(t.hc_ffn_base);
    L.hc_scale[0] = put(t.hc_attn_scale), L.hc_scale[1] = put(t.hc_ffn_scale);
    L.gate = put(t.gate), L.gate_bias = put(t.gate_bias);
    ExpertTensors x{t.w1, t.w3, t.w2, t.shared_w1, t.shared_w3, t.shared_w2,
                    c_.n_routed_experts, c_.moe_inter_dim, c_.dim, c_.weight_block};
    L.experts = ex_.experts(x, name + ".ffn.");
    if (!t.tid2eid.empty()) {
      for (int64_t e : t.tid2eid)
        require(e >= 0 && e < c_.n_routed_experts, "tid2eid: expert " + std::to_string(e) + " is outside [0, " +
                                                        std::to_string(c_.n_routed_experts) + ")");
      tid2eid_.push_back(ex_.template to_array<int64_t>(t.tid2eid.data(), t.tid2eid.size()));
      L.tid2eid = tid2eid_.back().data();
    }
    auto& e = t.engram;
    L.e_value_w = put(e.value_w), L.e_value_b = put(e.value_b), L.e_key_w = put(e.key_w), L.e_key_b = put(e.key_b);
    L.e_key_norm = put(e.key_norm), L.e_query_norm = put(e.query_norm), L.e_conv_w = put(e.conv_w);
    L.e_conv_norm = put(e.conv_norm);
    return L;
  }

  // Engram: hashes, tables (uploaded, or kept in host memory when memory-mapped), token map.
  void set_up_engram(ModelWeights& w) {
    const EngramConfig& g = c_.engram;
    if (!g.enabled()) return;
    const int64_t V = c_.vocab_size;
    require(int64_t(w.engram_token_map.size()) == V,
            "Engram: the weights have no token map of " + std::to_string(V) + " entries");
    token_map_.assign(w.engram_token_map.begin(), w.engram_token_map.end());
    mapped_files_ = w.mapped_files;  // host-resident tables point into these
    const auto primes = engram_primes(int64_t(g.layer_ids.size()), g.vocab_size, g.heads_per_ngram);
    for (size_t i = 0; i < g.layer_ids.size(); ++i) {
      const int64_t l = g.layer_ids[i];
      EngramLayer e;
      e.hash = engram_layer_hash(primes[i], engram_multipliers(g.seed, l, g.max_ngram, V), g.max_ngram,
                                 g.heads_per_ngram, token_map_.data(), V, g.pad_id);
      EngramTensors& t = w.layers.at(size_t(l)).engram;
      const EngramTableView host = t.table_view(g.head_dim());
      require(host.data != nullptr, "Engram: layer " + std::to_string(l) + " has no table");
      require(host.rows == e.hash.table_rows, "Engram: layer " + std::to_string(l) + ": the table has " +
                                                  std::to_string(host.rows) + " rows, the hash needs " +
                                                  std::to_string(e.hash.table_rows));
      e.mirror = ex_.mirror(e.hash);
      if (t.mapped.data) {  // memory-mapped: stays in host memory, rows prefetched per forward
        e.table = host;
        e.host_resident = true;
      } else {
        e.table = host;
        e.table.data = put(t.table);
      }
      engram_.push_back(std::move(e));
    }
  }

  void check_ids(const int32_t* ids, int64_t n) const {
    for (int64_t t = 0; t < n; ++t)
      require(ids[t] >= 0 && ids[t] < c_.vocab_size,
              "engram: token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) + " is outside the vocabulary");
  }
  void reserve(EngramLayer& g, int64_t n) {
    if (n <= g.capacity) return;
    if (g.host_resident) ex_.prefetch_drain(size_t(&g - engram_.data()));  // the copy may still write the old e
    g.e = ex_.template array<float>(size_t(n * c_.engram.width()));
    g.capacity = n;
  }
  std::vector<int64_t> host_rows(const EngramLayer& g, const int32_t* ids, int64_t n, const std::vector<int32_t>& history) const {
    std::vector<int64_t> rows(size_t(n * g.hash.slots()));
    ref::engram_hash({&g.hash, ids, n, history.data(), view2(rows.data(), n, g.hash.slots())});
    return rows;
  }

  // dst [rows.size(), cols] = src rows `rows` (checked by the callers)
  void gather(const float* src, int64_t src_rows, int64_t cols, const std::vector<int64_t>& rows, float* dst) {
    if (rows.empty()) return;
    std::vector<int32_t> r32(rows.begin(), rows.end());
    const Array<int32_t> idx = ex_.template to_array<int32_t>(r32.data(), r32.size());
    ex_.gather_rows(src, src_rows, cols, idx.data(), int64_t(rows.size()), cols, dst, cols);
  }

  const Layer& tensors(int64_t layer) const {
    require(layer >= 0 && layer < c_.n_layers + int64_t(mtp_.size()), "layer " + std::to_string(layer) + " is outside the model");
    if (layer < c_.n_layers) return layers_[size_t(layer)];
    return mtp_[size_t(layer - c_.n_layers)].block;
  }

  std::string name_;
  Exec ex_;
  ModelConfig c_;
  BackendOptions o_;
  std::vector<Array<float>> weights_;     // every uploaded tensor
  std::vector<Array<int64_t>> tid2eid_;  // hash-routing tables
  const float *embed_ = nullptr, *head_ = nullptr, *norm_ = nullptr;
  const float *hc_head_fn_ = nullptr, *hc_head_base_ = nullptr, *hc_head_scale_ = nullptr;
  std::vector<Layer> layers_;
  std::vector<Mtp> mtp_;
  std::vector<int32_t> token_map_;  // Engram canonical ids (the hashes point into it)
  std::shared_ptr<const void> mapped_files_;
  std::vector<EngramLayer> engram_;
};

}  // namespace dsv4
