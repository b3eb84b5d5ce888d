// The Eigen reference backend: host buffers of T (float; double for the fp64 reference), the
// weights as ModelWeightsT<T>, every op from reference/. The only model/ file that calls
// dsv4::ref.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <cstring>
#include <type_traits>

#include <Eigen/Dense>

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

namespace {

template <class T>
class HostBuffer final : public Buffer {
 public:
  HostBuffer(int64_t r, int64_t c) : Buffer(r, c), v(size_t(r * c)) {}
  std::vector<T> v;
  View2<T> view() { return view2(v.data(), rows(), cols()); }
  View2<const T> view() const { return view2<const T>(v.data(), rows(), cols()); }
};

// The rows of a chunk's Engram lookup, e [n, E], and the seconds the lookup took.
template <class T>
struct EngramLookup {
  std::vector<T> e;
  double seconds = 0;
};

// One thread that runs the backend's Engram prefetches in submission order, so a decode step
// does not pay a thread start per lookup. The destructor finishes the queued work and joins.
class PrefetchWorker {
 public:
  PrefetchWorker() = default;
  ~PrefetchWorker() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_one();
    if (t_.joinable()) t_.join();
  }
  PrefetchWorker(const PrefetchWorker&) = delete;
  PrefetchWorker& operator=(const PrefetchWorker&) = delete;

  template <class F>
  auto submit(F&& f) -> std::shared_future<decltype(f())> {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::forward<F>(f));
    auto fut = task->get_future().share();
    {
      std::lock_guard<std::mutex> l(m_);
      if (!t_.joinable()) t_ = std::thread([this] { loop(); });  // started on first use
      q_.push_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return fut;
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [this] { return stop_ || !q_.empty(); });
        if (q_.empty()) return;  // stop_ and nothing left
        job = std::move(q_.front());
        q_.pop_front();
      }
      job();  // a packaged_task: an exception goes to its future
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::thread t_;
};

// Engram state of one layer's cache: the canonical ids of the last N-1 tokens (-1 before the
// sequence) and the last (K-1)*N rows of the convolution input Z [.., s*D]; plus the lookup a
// prefetch started for the next chunk, running on the backend's PrefetchWorker while the earlier
// layers compute.
template <class T>
struct EngramState {
  std::vector<int32_t> ids;
  std::vector<T> conv;  // [(K-1)*N, s*D]
  std::vector<int32_t> prefetched_ids;                 // the chunk the prefetch was for
  std::shared_future<EngramLookup<T>> prefetched;       // its lookup (valid() while pending)
};

template <class T>
class RefLayerCache final : public LayerCache {
 public:
  explicit RefLayerCache(AttentionLayerState<T> s) : state(std::move(s)) {}
  int64_t position() const override { return state.pos; }
  int64_t bytes() const override {
    int64_t b = int64_t(engram.ids.size() * sizeof(int32_t) + engram.conv.size() * sizeof(T));
    for (const auto* s : {state.window.get(), state.comp.get(), state.index_keys.get()})
      if (s) b += s->bytes();
    b += int64_t((state.comp_state.kv.size() + state.comp_state.score.size() + state.index_state.kv.size() +
                  state.index_state.score.size()) * sizeof(T));
    return b;
  }
  std::unique_ptr<LayerCache> clone() const override { return std::make_unique<RefLayerCache>(*this); }
  AttentionLayerState<T> state;
  EngramState<T> engram;  // Engram layers only
};

template <class T>
class ReferenceBackend final : public Backend {
  static constexpr const char* kTag = std::is_same_v<T, float> ? "ref" : "ref-f64";  // NVTX names
  using Host = HostBuffer<T>;
  using Cache = RefLayerCache<T>;
  static Host& host(Buffer& b) { return static_cast<Host&>(b); }
  static const Host& host(const Buffer& b) { return static_cast<const Host&>(b); }

 public:
  ReferenceBackend(ModelWeightsT<T> w, BackendOptions o) : w_(std::move(w)), o_(o) {
    const auto& g = w_.config.engram;
    if (!g.enabled()) return;
    const int64_t V = w_.config.vocab_size;
    require(int64_t(w_.engram_token_map.size()) == V, "Engram: the weights have no token map of " + std::to_string(V) + " entries");
    token_map_.assign(w_.engram_token_map.begin(), w_.engram_token_map.end());
    const auto primes = engram_primes(int64_t(g.layer_ids.size()), g.vocab_size, g.heads_per_ngram);
    for (size_t i = 0; i < g.layer_ids.size(); ++i) {
      const int64_t l = g.layer_ids[i];
      hashes_.push_back(engram_layer_hash(primes[i], engram_multipliers(g.seed, l, g.max_ngram, V), g.max_ngram,
                                          g.heads_per_ngram, token_map_.data(), V, g.pad_id));
      const EngramTableView t = w_.layers.at(size_t(l)).engram.table_view(g.head_dim());
      require(t.data != nullptr || !std::is_same_v<T, float>, "Engram: layer " + std::to_string(l) + " has no table");
      require(t.data == nullptr || t.rows == hashes_.back().table_rows,
              "Engram: layer " + std::to_string(l) + ": the table has " + std::to_string(t.rows) + " rows, the hash needs " +
                  std::to_string(hashes_.back().table_rows));
    }
  }
  std::string name() const override { return std::is_same_v<T, float> ? "ref" : "ref-f64"; }
  const ModelConfig& config() const override { return w_.config; }

  std::unique_ptr<Buffer> alloc(int64_t rows, int64_t cols) override {
    return std::make_unique<Host>(rows, cols);
  }
  void upload(Buffer& b, const float* h) override { std::copy_n(h, host(b).v.size(), host(b).v.begin()); }
  void download(const Buffer& b, float* h) override {
    std::transform(host(b).v.begin(), host(b).v.end(), h, [](T v) { return float(v); });
  }

  std::unique_ptr<LayerCache> new_cache(int64_t layer) override {
    const auto& c = w_.config;
    auto cache = std::make_unique<Cache>(ref::attention_layer_state_init<T>(
        c.attention_shape(layer), v4_entry_stores<T>(o_.kv_layout, c.rope_dim)));
    if (c.engram.index_of(layer) >= 0) {
      cache->engram.ids.assign(size_t(c.engram.max_ngram - 1), -1);
      cache->engram.conv.assign(size_t(c.engram.history_rows() * c.hc_mult * c.dim), T(0));
    }
    return cache;
  }

  void engram_prefetch(int64_t layer, const int32_t* ids, int64_t n, LayerCache& cache) override {
    const ModelRange nvtx_range(kTag, "engram_prefetch", layer);
    auto& st = static_cast<Cache&>(cache).engram;
    st.prefetched_ids.assign(ids, ids + n);
    // The lookup reads only the weights, the hashes and these copies: it runs beside the
    // layers before this one (the model calls engram() for this layer with the same ids).
    st.prefetched = worker_.submit([this, layer, chunk = st.prefetched_ids, history = st.ids] {
      const auto t0 = std::chrono::steady_clock::now();
      EngramLookup<T> r;
      r.e = engram_lookup_rows(layer, chunk.data(), int64_t(chunk.size()), history);
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return r;
    });
  }

  EngramPrefetchStats engram_prefetch_stats() const override { return prefetch_stats_; }

  void engram(int64_t layer, const int32_t* ids, int64_t n, Buffer& h, LayerCache& cache) override {
    const ModelRange nvtx_range(kTag, "engram", layer);
    const auto& c = w_.config;
    const EngramConfig& g = c.engram;
    const int64_t i = g.index_of(layer), S = c.hc_mult, D = c.dim, E = g.width();
    require(i >= 0, "engram: layer " + std::to_string(layer) + " has no Engram");
    auto& st = static_cast<Cache&>(cache).engram;
    const bool ready = st.prefetched.valid() && st.prefetched_ids.size() == size_t(n) &&
                       std::equal(ids, ids + n, st.prefetched_ids.begin());
    std::vector<T> e;
    if (ready) {
      const auto t0 = std::chrono::steady_clock::now();
      const EngramLookup<T>& r = st.prefetched.get();  // rethrows the lookup's exception
      prefetch_stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      prefetch_stats_.lookup_seconds += r.seconds;
      ++prefetch_stats_.lookups;
      e = r.e;
    } else {
      e = engram_lookup_rows(layer, ids, n, st.ids);
    }
    st.prefetched_ids.clear();
    st.prefetched = {};
    const auto& t = w_.layers.at(size_t(layer)).engram;
    EngramMixParams<T> p;
    p.x = host(h).view();
    p.e = view2<const T>(e.data(), n, E);
    p.w = {t.value_w.data(), t.value_b.data(), t.key_w.data(), t.key_b.data(),
           t.key_norm.data(), t.query_norm.data(), t.conv_w.data(), t.conv_norm.data()};
    p.streams = S;
    p.kernel = g.kernel_size;
    p.dilation = g.max_ngram;
    p.norm_eps = c.norm_eps;
    p.history = view2(st.conv.data(), g.history_rows(), S * D);
    Host y(n, S * D);
    p.y = y.view();
    ref::engram_mix(p);
    for (size_t k = 0; k < y.v.size(); ++k) host(h).v[k] += y.v[k];
    st.ids = engram_advance_history(hashes_[size_t(i)], st.ids, ids, n);
  }

  void embed(const int32_t* ids, int64_t n, Buffer& x) override {
    const ModelRange nvtx_range(kTag, "embed");
    const int64_t D = w_.config.dim, V = w_.config.vocab_size;
    for (int64_t t = 0; t < n; ++t) {
      require(ids[t] >= 0 && ids[t] < V, "token id " + std::to_string(ids[t]) + " at position " +
                                             std::to_string(t) + " is outside the vocabulary [0, " +
                                             std::to_string(V) + ")");
      std::copy_n(w_.embed.data() + int64_t(ids[t]) * D, D, host(x).v.data() + t * D);
    }
  }

  void hc_expand(const Buffer& x, Buffer& h) override {
    const ModelRange nvtx_range(kTag, "hc_expand");
    const int64_t D = x.cols(), s = h.cols() / D;
    for (int64_t t = 0; t < x.rows(); ++t)
      for (int64_t k = 0; k < s; ++k)
        std::copy_n(host(x).v.data() + t * D, D, host(h).v.data() + (t * s + k) * D);
  }

  void hc_pre_norm(int64_t layer, HcSite site, const Buffer& h, Buffer& u, Buffer& post, Buffer& comb) override {
    const ModelRange nvtx_range(kTag, "hc_pre_norm", layer);
    const auto& L = tensors(layer);
    const auto& c = w_.config;
    const bool a = site == HcSite::attn;
    HcPreParams<T> p;
    p.x = host(h).view();
    p.fn = (a ? L.hc_attn_fn : L.hc_ffn_fn).data();
    p.base = (a ? L.hc_attn_base : L.hc_ffn_base).data();
    p.scale = (a ? L.hc_attn_scale : L.hc_ffn_scale).data();
    p.n = c.hc_mult;
    p.iters = c.hc_sinkhorn_iters;
    p.eps = c.hc_eps;
    p.norm_eps = c.norm_eps;
    p.u = host(u).view();
    p.post = host(post).view();
    p.comb = host(comb).view();
    ref::hc_pre(p);
    ref::rmsnorm<T>({host(u).view(), (a ? L.attn_norm : L.ffn_norm).data(), host(u).view(), c.norm_eps});
  }

  void hc_post(const Buffer& h, const Buffer& f, const Buffer& post, const Buffer& comb, Buffer& out) override {
    const ModelRange nvtx_range(kTag, "hc_post");
    ref::hc_post<T>({host(h).view(), host(f).view(), host(post).view(), host(comb).view(),
                         w_.config.hc_mult, host(out).view()});
  }

  void attention(int64_t layer, const Buffer& u, const std::vector<int64_t>& rows, Buffer& f,
                 LayerCache& cache) override {
    const ModelRange nvtx_range(kTag, "attention", layer);
    AttentionLayerParams<T> p;
    p.shape = w_.config.attention_shape(layer);
    p.w = tensors(layer).attention();
    p.numerics = o_.numerics;
    AttentionTraceRequest* trace = trace_out_ ? &trace_ : nullptr;
    ref::attention_layer_forward_rows(p, host(u).view(), rows, host(f).view(), static_cast<Cache&>(cache).state,
                                      nullptr, trace);
    if (trace_out_) {
      for (auto& r : trace_.out) trace_out_->push_back(std::move(r));
      trace_ = {};
      trace_out_ = nullptr;
    }
  }

  bool trace_next_attention(const std::vector<int64_t>& rows, std::vector<AttentionRowTrace>* out) override {
    trace_ = {};
    trace_.rows = rows;
    trace_out_ = out;
    return true;
  }

  void gather_rows(const Buffer& src, const std::vector<int64_t>& rows, Buffer& dst) override {
    const ModelRange nvtx_range(kTag, "gather_rows");
    const int64_t c = src.cols();
    require(dst.cols() == c && dst.rows() == int64_t(rows.size()), "gather_rows: the output has the wrong shape");
    for (size_t i = 0; i < rows.size(); ++i) {
      require(rows[i] >= 0 && rows[i] < src.rows(),
              "gather_rows: row " + std::to_string(rows[i]) + " is outside [0, " + std::to_string(src.rows()) + ")");
      std::copy_n(host(src).v.data() + rows[i] * c, c, host(dst).v.data() + int64_t(i) * c);
    }
  }

  void moe(int64_t layer, const Buffer& u, const int32_t* ids, Buffer& f) override {
    const ModelRange nvtx_range(kTag, "moe", layer);
    const auto& c = w_.config;
    const auto& L = tensors(layer);
    const int64_t n = u.rows(), k = c.experts_per_token;
    const bool hash = layer < c.n_layers && c.hash_routed(layer);
    std::vector<int64_t> ids64(ids, ids + n);
    std::vector<int32_t> chosen(size_t(n * k));
    std::vector<T> weights(size_t(n * k));
    MoeParams<T> p;
    p.route.x = host(u).view();
    p.route.gate = L.gate.data();
    p.route.bias = hash || L.gate_bias.empty() ? nullptr : L.gate_bias.data();
    if (hash) {
      p.route.tid2eid = {L.tid2eid.data(), c.vocab_size, k, k};
      p.route.ids = ids64.data();
    }
    p.route.experts = c.n_routed_experts;
    p.route.topk = k;
    p.route.route_scale = c.route_scale;
    p.route.score = c.score_func;
    p.route.chosen = view2(chosen.data(), n, k);
    p.route.weights = view2(weights.data(), n, k);
    p.w1 = L.w1.data();
    p.w3 = L.w3.data();
    p.w2 = L.w2.data();
    if (c.n_shared_experts) {
      p.shared_w1 = L.shared_w1.data();
      p.shared_w3 = L.shared_w3.data();
      p.shared_w2 = L.shared_w2.data();
    }
    p.inter = c.moe_inter_dim;
    p.swiglu_limit = c.swiglu_limit;
    p.act_quant = o_.numerics == Numerics::official;
    p.y = host(f).view();
    ref::moe(p);
  }

  void expert(int64_t layer, int64_t e, const Buffer& x, const float* weights, Buffer& y) override {
    const ModelRange nvtx_range(kTag, e < 0 ? "shared_expert" : "expert", layer);
    const auto& c = w_.config;
    const auto& L = tensors(layer);
    const int64_t I = c.moe_inter_dim, D = c.dim, m = x.rows();
    const bool shared = e < 0;
    require(x.cols() == D && y.rows() == m && y.cols() == D, "expert: x and y must be [m, D] of the same m");
    const int64_t count = I * D > 0 ? int64_t(L.w1.size()) / (I * D) : 0;
    require(shared ? !L.shared_w1.empty() : e < count,
            shared ? std::string("expert: layer " + std::to_string(layer) + " has no shared expert")
                   : "expert: expert " + std::to_string(e) + " is outside this backend's " + std::to_string(count));
    std::vector<T> wt;
    if (!shared) wt.assign(weights, weights + m);
    ExpertParams<T> p;
    p.x = host(x).view();
    p.w1 = shared ? L.shared_w1.data() : L.w1.data() + e * I * D;
    p.w3 = shared ? L.shared_w3.data() : L.w3.data() + e * I * D;
    p.w2 = shared ? L.shared_w2.data() : L.w2.data() + e * D * I;
    p.inter = I;
    p.route_weight = shared ? nullptr : wt.data();
    p.swiglu_limit = c.swiglu_limit;
    p.accumulate = shared;
    p.act_quant = o_.numerics == Numerics::official;
    p.y = host(y).view();
    ref::expert<T>(p);
  }

  void head(const Buffer& h, const std::vector<int64_t>& rows, int64_t mtp, float* logits) override {
    const ModelRange nvtx_range(kTag, "head");
    const auto& c = w_.config;
    const int64_t D = c.dim, s = c.hc_mult, n = int64_t(rows.size());
    std::vector<T> x(size_t(n * s * D)), u(size_t(n * D));
    for (int64_t i = 0; i < n; ++i) {
      require(rows[size_t(i)] >= 0 && rows[size_t(i)] < h.rows(), "head: row " + std::to_string(rows[size_t(i)]) +
                                                                       " is outside the chunk");
      std::copy_n(host(h).v.data() + rows[size_t(i)] * s * D, s * D, x.data() + i * s * D);
    }
    const bool main = mtp < 0;
    const MtpTensorsT<T>* m = main ? nullptr : &w_.mtp.at(size_t(mtp));
    HcHeadParams<T> p;
    p.x = view2<const T>(x.data(), n, s * D);
    p.fn = (main ? w_.hc_head_fn : m->hc_head_fn).data();
    p.base = (main ? w_.hc_head_base : m->hc_head_base).data();
    p.scale = (main ? w_.hc_head_scale : m->hc_head_scale).data();
    p.n = s;
    p.eps = c.hc_eps;
    p.norm_eps = c.norm_eps;
    p.u = view2(u.data(), n, D);
    ref::hc_head(p);
    ref::rmsnorm<T>({p.u, (main ? w_.norm : m->norm).data(), p.u, c.norm_eps});
    // logits = u head^T in FP32 (§9.5: no softcap); the fp64 backend computes in double
    const int64_t V = c.vocab_size;
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> U(u.data(), n, D), W(w_.head.data(), V, D);
    if constexpr (std::is_same_v<T, float>) {
      Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Y(logits, n, V);
      Y.noalias() = U * W.transpose();
    } else {
      const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> Y = U * W.transpose();
      std::transform(Y.data(), Y.data() + Y.size(), logits, [](T v) { return float(v); });
    }
  }

  void mtp_input(int64_t mtp, const Buffer& h, const int32_t* next_ids, Buffer& out) override {
    const ModelRange nvtx_range(kTag, "mtp_input", mtp);
    const auto& c = w_.config;
    const auto& m = w_.mtp.at(size_t(mtp));
    const int64_t n = h.rows(), D = c.dim, s = c.hc_mult;
    const bool q = o_.numerics == Numerics::official;
    Host e(n, D), ep(n, D), hs(n * s, D), hp(n * s, D);
    embed(next_ids, n, e);
    ref::rmsnorm<T>({e.view(), m.enorm.data(), e.view(), c.norm_eps});
    std::copy(host(h).v.begin(), host(h).v.end(), hs.v.begin());  // [n*s, D]: one stream a row
    ref::rmsnorm<T>({hs.view(), m.hnorm.data(), hs.view(), c.norm_eps});
    if (q) {  // e_proj and h_proj are FP8 linears (§9.4)
      ref::quant_fp8<T>({e.view(), e.view(), kActBlock, 0});
      ref::quant_fp8<T>({hs.view(), hs.view(), kActBlock, 0});
    }
    dense(e.view(), m.e_proj, ep.view());
    dense(hs.view(), m.h_proj, hp.view());
    for (int64_t t = 0; t < n; ++t)
      for (int64_t k = 0; k < s; ++k)
        for (int64_t i = 0; i < D; ++i)
          host(out).v[size_t((t * s + k) * D + i)] = ep.v[size_t(t * D + i)] + hp.v[size_t((t * s + k) * D + i)];
  }

 private:
  // e [n, E]: the Engram table rows of the n tokens `ids` after the canonical ids `history`.
  std::vector<T> engram_lookup_rows(int64_t layer, const int32_t* ids, int64_t n, const std::vector<int32_t>& history) const {
    const EngramConfig& g = w_.config.engram;
    const EngramHash& hash = hashes_.at(size_t(g.index_of(layer)));
    std::vector<int64_t> rows(size_t(n * hash.slots()));
    ref::engram_hash({&hash, ids, n, history.data(), view2(rows.data(), n, hash.slots())});
    const auto& t = w_.layers.at(size_t(layer)).engram;
    EngramTableView table = t.table_view(g.head_dim());
    if (!table.data) {  // the fp64 backend's in-memory table (double): gather its rows directly
      std::vector<T> e(size_t(n * g.width()));
      const int64_t de = g.head_dim();
      for (int64_t r = 0; r < n; ++r)
        for (int64_t s = 0; s < hash.slots(); ++s)
          std::copy_n(t.table.data() + rows[size_t(r * hash.slots() + s)] * de, de, e.data() + (r * hash.slots() + s) * de);
      return e;
    }
    std::vector<T> e(size_t(n * g.width()));
    ref::engram_lookup<T>({table, view2<const int64_t>(rows.data(), n, hash.slots()), view2(e.data(), n, g.width())});
    return e;
  }

  const LayerTensorsT<T>& tensors(int64_t layer) const {
    if (layer < w_.config.n_layers) return w_.layers.at(size_t(layer));
    return w_.mtp.at(size_t(layer - w_.config.n_layers)).block;
  }
  static void dense(View2<const T> x, const std::vector<T>& w, View2<T> y) {
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> X(x.data, x.rows, x.cols), W(w.data(), y.cols, x.cols);
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Y(y.data, y.rows, y.cols);
    Y.noalias() = X * W.transpose();
  }

  ModelWeightsT<T> w_;
  BackendOptions o_;
  std::vector<int32_t> token_map_;  // Engram canonical ids (int32 for the hash)
  std::vector<EngramHash> hashes_;  // per Engram layer, in config order
  EngramPrefetchStats prefetch_stats_;                   // engram_prefetch totals
  AttentionTraceRequest trace_;                          // the next attention() call's request
  std::vector<AttentionRowTrace>* trace_out_ = nullptr;  // where it goes (null: no trace)
  PrefetchWorker worker_;  // last: destroyed (its queue finished) before the members it reads
};

}  // namespace

std::unique_ptr<Backend> make_reference_backend(ModelWeights weights, BackendOptions options) {
  require(weights.config.arch == Arch::v4, "the reference backend runs V4 models; '" + weights.config.name + "' is " +
                                               arch_name(weights.config.arch));
  return std::make_unique<ReferenceBackend<float>>(std::move(weights), options);
}

std::unique_ptr<Backend> make_f64_backend(const ModelWeights& weights) {
  require(weights.config.arch == Arch::v4, "the reference backend runs V4 models; '" + weights.config.name + "' is " +
                                               arch_name(weights.config.arch));
  return std::make_unique<ReferenceBackend<double>>(weights_as<double>(weights),
                                                    BackendOptions{Numerics::exact, KvLayout::f32});
}

}  // namespace dsv4
