// The sharded backend (model/backend_sharded.h): an inner backend (the reference, or the CUDA
// backend) over this rank's slice of the attention weights (H/tp heads, g/tp output groups),
// the expert-parallel MoE written here over reference/moe's ops, and the collectives that join
// the ranks. Activations reach the communication layer through the inner backend's
// download/upload (host transports), or stay in its memory (Backend::device_data: NCCL).
#include "model/backend_sharded.h"

#include <algorithm>
#include <cstring>

#include "reference/errors.h"
#include "reference/moe.h"
#include "reference/moe_route.h"

namespace dsv4 {

namespace {

// Floats per (token, expert) pair sent to the expert's owner: the token's activation [D],
// then the expert index and the routing weight (an index < 2^24 is exact in float).
constexpr int64_t kPairMeta = 2;
constexpr int64_t kMaxFloatIndex = int64_t(1) << 24;

// rows [r0, r1) of a row-major matrix with `cols` columns
std::vector<float> slice_rows(const std::vector<float>& m, int64_t cols, int64_t r0, int64_t r1) {
  return std::vector<float>(m.begin() + r0 * cols, m.begin() + r1 * cols);
}

// columns [c0, c1) of a row-major matrix with `cols` columns
std::vector<float> slice_cols(const std::vector<float>& m, int64_t cols, int64_t c0, int64_t c1) {
  const int64_t rows = int64_t(m.size()) / cols, w = c1 - c0;
  std::vector<float> out(size_t(rows * w));
  for (int64_t i = 0; i < rows; ++i) std::copy_n(m.begin() + i * cols + c0, w, out.begin() + i * w);
  return out;
}

// The router of one layer on this rank (whole). The experts themselves (routed [first, first +
// count), and the shared one) live in the inner backend, which runs them (Backend::expert).
struct MoeShard {
  std::vector<float> gate, gate_bias;  // [E, D], [E]
  std::vector<int64_t> tid2eid;        // [V, k]
};

class Sharded final : public ShardedBackend {
 public:
  Sharded(ModelWeights w, BackendOptions o, comm::Comm& world, ParallelLayout l, const ShardedOptions& so)
      : o_(o), l_(l), on_buffers_(so.on_backend_buffers.value_or(world.transport() == "nccl")), keep_(so.keep) {
    const InnerBackendFactory& inner = so.inner;
    config_ = w.config;
    const auto& c = config_;
    check_layout(c, world.size(), l);
    require(c.n_routed_experts < kMaxFloatIndex,
            "the sharded backend sends expert indices as floats: " +
                std::to_string(c.n_routed_experts) + " experts is too many");
    const int r = world.rank();
    tp_ = world.split(r / l.tp, r % l.tp);  // tp consecutive ranks: one replica's attention
    ep_ = world.split(r / l.ep, r % l.ep);  // ep consecutive ranks: one copy of every expert
    experts_ = c.n_routed_experts / l.ep;
    first_expert_ = int64_t(ep_->rank()) * experts_;
    expert_tokens_.assign(size_t(experts_), 0);

    // Attention: this TP rank's heads and output groups (backend_sharded.h).
    const int64_t H = c.n_heads, g = c.o_groups, d = c.head_dim, ro = c.o_lora_rank;
    const int64_t t = tp_->rank(), h0 = t * H / l.tp, h1 = (t + 1) * H / l.tp, g0 = t * g / l.tp,
                  g1 = (t + 1) * g / l.tp;
    const int64_t E = c.n_routed_experts, I = c.moe_inter_dim, D = c.dim;
    auto shard = [&](LayerTensors& L) {
      L.wq_b = slice_rows(L.wq_b, c.q_lora_rank, h0 * d, h1 * d);
      L.attn_sink = slice_rows(L.attn_sink, 1, h0, h1);
      L.wo_a = slice_rows(L.wo_a, (H / g) * d, g0 * ro, g1 * ro);
      L.wo_b = slice_cols(L.wo_b, g * ro, g0 * ro, g1 * ro);
      MoeShard m;
      m.gate = std::move(L.gate), m.gate_bias = std::move(L.gate_bias),
      m.tid2eid = std::move(L.tid2eid);
      const int64_t e0 = first_expert_, e1 = first_expert_ + experts_;
      require(int64_t(L.w1.size()) == E * I * D && int64_t(L.w2.size()) == E * D * I,
              "sharded backend: the routed expert tensors do not hold " + std::to_string(E) +
                  " experts");
      // The inner backend keeps this rank's experts, numbered from 0, and the shared one; it
      // runs them one at a time (Backend::expert), never its own moe().
      L.w1 = slice_rows(L.w1, I * D, e0, e1), L.w3 = slice_rows(L.w3, I * D, e0, e1);
      L.w2 = slice_rows(L.w2, D * I, e0, e1);
      moe_.push_back(std::move(m));
    };
    for (auto& L : w.layers) shard(L);
    for (auto& m : w.mtp) shard(m.block);
    w.config.n_heads = H / l.tp;
    w.config.o_groups = g / l.tp;
    w.config.n_routed_experts = experts_;  // the inner backend's experts: this rank's slice
    inner_ = inner ? inner(std::move(w), o) : make_reference_backend(std::move(w), o);
    if (on_buffers_) {
      auto probe = inner_->alloc(1, 1);
      require(inner_->device_data(*probe) != nullptr,
              "the sharded backend runs its collectives on the inner backend's buffers (" + world.transport() +
                  "), but backend '" + inner_->name() + "' has no device memory to give them");
    }
  }

  std::string name() const override {
    return inner_->name() + "-sharded(tp=" + std::to_string(l_.tp) + ",ep=" + std::to_string(l_.ep) + ")";
  }
  const ModelConfig& config() const override { return config_; }
  int64_t first_expert() const override { return first_expert_; }
  const std::vector<int64_t>& expert_tokens() const override { return expert_tokens_; }

  std::unique_ptr<Buffer> alloc(int64_t rows, int64_t cols) override {
    return inner_->alloc(rows, cols);
  }
  void upload(Buffer& b, const float* host) override { inner_->upload(b, host); }
  void download(const Buffer& b, float* host) override { inner_->download(b, host); }
  std::unique_ptr<LayerCache> new_cache(int64_t layer) override { return inner_->new_cache(layer); }
  void embed(const int32_t* ids, int64_t n, Buffer& x) override { inner_->embed(ids, n, x); }
  // Engram is replicated: every rank holds the tables and adds the same output (the residual
  // streams are replicated too), so it needs no communication.
  void engram(int64_t layer, const int32_t* ids, int64_t n, Buffer& h, LayerCache& cache) override {
    inner_->engram(layer, ids, n, h, cache);
  }
  void engram_prefetch(int64_t layer, const int32_t* ids, int64_t n, LayerCache& cache) override {
    inner_->engram_prefetch(layer, ids, n, cache);
  }
  EngramPrefetchStats engram_prefetch_stats() const override { return inner_->engram_prefetch_stats(); }
  void hc_expand(const Buffer& x, Buffer& h) override { inner_->hc_expand(x, h); }
  void hc_pre_norm(int64_t layer, HcSite site, const Buffer& h, Buffer& u, Buffer& post,
                   Buffer& comb) override {
    inner_->hc_pre_norm(layer, site, h, u, post, comb);
  }
  void hc_post(const Buffer& h, const Buffer& f, const Buffer& post, const Buffer& comb,
               Buffer& out) override {
    inner_->hc_post(h, f, post, comb, out);
  }
  void gather_rows(const Buffer& src, const std::vector<int64_t>& rows, Buffer& dst) override {
    inner_->gather_rows(src, rows, dst);
  }
  void head(const Buffer& h, const std::vector<int64_t>& rows, int64_t mtp,
            float* logits) override {
    inner_->head(h, rows, mtp, logits);
  }
  void mtp_input(int64_t mtp, const Buffer& h, const int32_t* next_ids, Buffer& out) override {
    inner_->mtp_input(mtp, h, next_ids, out);
  }

  // Partial attention over this rank's heads, then the sum over the TP group.
  void attention(int64_t layer, const Buffer& u, const std::vector<int64_t>& rows, Buffer& f,
                 LayerCache& cache) override {
    inner_->attention(layer, u, rows, f, cache);
    if (tp_->size() == 1) return;
    if (on_buffers_) {  // in place, in the backend's memory
      tp_->all_reduce_sum(inner_->device_data(f), f.rows() * f.cols());
      return;
    }
    std::vector<float> y(size_t(f.rows() * f.cols()));
    inner_->download(f, y.data());
    tp_->all_reduce_sum(y.data(), int64_t(y.size()));
    inner_->upload(f, y.data());
  }

  // Expert-parallel MoE (backend_sharded.h): route this rank's rows, dispatch, run the owned
  // experts, combine, add the shared expert, sum over the TP group.
  void moe(int64_t layer, const Buffer& u, const int32_t* ids, Buffer& f) override {
    const auto& c = config_;
    const MoeShard& m = moe_.at(size_t(layer));
    const int64_t n = u.rows(), D = c.dim, k = c.experts_per_token, E = c.n_routed_experts;
    const int64_t tp = tp_->size(), t = tp_->rank(), a = n * t / tp, b = n * (t + 1) / tp,
                  rows = b - a;
    std::vector<float> x(size_t(n * D)), y(size_t(n * D), 0.f);
    inner_->download(u, x.data());
    const float* xs = x.data() + a * D;  // this rank's rows [a, b)

    // 1. Route rows [a, b); list the (row, slot) pairs of each expert, rows ascending.
    std::vector<int32_t> chosen(size_t(rows * k));
    std::vector<float> weights(size_t(rows * k));
    if (rows > 0) {
      const bool hash = layer < c.n_layers && c.hash_routed(layer);
      std::vector<int64_t> ids64(ids + a, ids + b);
      MoeRouteParams<float> p;
      p.x = view2<const float>(xs, rows, D);
      p.gate = m.gate.data();
      p.bias = hash || m.gate_bias.empty() ? nullptr : m.gate_bias.data();
      if (hash) {
        p.tid2eid = {m.tid2eid.data(), c.vocab_size, k, k};
        p.ids = ids64.data();
      }
      p.experts = E;
      p.topk = k;
      p.route_scale = c.route_scale;
      p.score = c.score_func;
      p.chosen = view2(chosen.data(), rows, k);
      p.weights = view2(weights.data(), rows, k);
      ref::moe_route(p);
    }
    std::vector<std::vector<int64_t>> pairs(
        static_cast<size_t>(E));  // expert -> indices row * k + slot
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t s = 0; s < k; ++s) pairs[size_t(chosen[size_t(i * k + s)])].push_back(i * k + s);

    // 2. Dispatch: pairs in expert order, hence grouped by owner (owners hold contiguous
    // expert ranges), each as [x row, expert, weight].
    const int64_t entry = D + kPairMeta;
    std::vector<float> send;
    std::vector<int64_t> send_counts(size_t(ep_->size()), 0);
    std::vector<int64_t> sent_rows;  // the row of each pair, in send order
    for (int64_t e = 0; e < E; ++e)
      for (int64_t pk : pairs[size_t(e)]) {
        const int64_t i = pk / k;
        send.insert(send.end(), xs + i * D, xs + (i + 1) * D);
        send.push_back(float(e));
        send.push_back(weights[size_t(pk)]);
        send_counts[size_t(e / experts_)] += entry;
        sent_rows.push_back(i);
      }
    std::vector<float> recv;
    const std::vector<int64_t> recv_counts = exchange(*ep_, send, send_counts, recv);

    // 3. The owner runs each of its experts once over every pair it received for it, in the
    // inner backend (Backend::expert: the reference's ref::expert, or on the device).
    const int64_t got = int64_t(recv.size()) / entry;
    std::vector<std::vector<int64_t>> mine(
        static_cast<size_t>(experts_));  // local expert -> received pair indices
    for (int64_t j = 0; j < got; ++j) {
      const int64_t e = int64_t(recv[size_t(j * entry + D)]) - first_expert_;
      require(e >= 0 && e < experts_, "sharded MoE: received a token for expert " +
                                          std::to_string(e + first_expert_) +
                                          ", which this rank does not hold");
      mine[size_t(e)].push_back(j);
    }
    std::vector<float> reply(size_t(got * D));
    std::vector<float> xe, ye, we;
    for (int64_t e = 0; e < experts_; ++e) {
      const auto& list = mine[size_t(e)];
      if (list.empty()) continue;
      const int64_t cnt = int64_t(list.size());
      xe.resize(size_t(cnt * D)), ye.resize(size_t(cnt * D)), we.resize(size_t(cnt));
      for (int64_t i = 0; i < cnt; ++i) {
        std::copy_n(recv.begin() + list[size_t(i)] * entry, D, xe.begin() + i * D);
        we[size_t(i)] = recv[size_t(list[size_t(i)] * entry + D + 1)];
      }
      auto xb = inner_->alloc(cnt, D), yb = inner_->alloc(cnt, D);
      inner_->upload(*xb, xe.data());
      inner_->expert(layer, e, *xb, we.data(), *yb);
      inner_->download(*yb, ye.data());
      for (int64_t i = 0; i < cnt; ++i)
        std::copy_n(ye.begin() + i * D, D, reply.begin() + list[size_t(i)] * D);
      expert_tokens_[size_t(e)] += cnt;
    }

    // 4. Combine: the outputs come back in the order the pairs were sent (expert order, as
    // ref::moe adds them), then the shared expert on rows [a, b).
    std::vector<int64_t> reply_counts(recv_counts.size());
    for (size_t q = 0; q < recv_counts.size(); ++q) reply_counts[q] = recv_counts[q] / entry * D;
    std::vector<float> back;
    exchange(*ep_, reply, reply_counts, back);
    require(back.size() == sent_rows.size() * size_t(D),
            "sharded MoE: the combine returned " + std::to_string(back.size()) + " values for " +
                std::to_string(sent_rows.size()) + " pairs");
    float* ys = y.data() + a * D;
    for (size_t j = 0; j < sent_rows.size(); ++j)
      for (int64_t i = 0; i < D; ++i) ys[sent_rows[j] * D + i] += back[j * size_t(D) + size_t(i)];
    if (rows > 0 && c.n_shared_experts > 0) {  // ys += shared expert of rows [a, b)
      auto xb = inner_->alloc(rows, D), yb = inner_->alloc(rows, D);
      inner_->upload(*xb, xs);
      inner_->upload(*yb, ys);
      inner_->expert(layer, -1, *xb, nullptr, *yb);
      inner_->download(*yb, ys);
    }
    if (tp > 1) reduce(*tp_, y);  // rows outside [a, b) are 0 here
    inner_->upload(f, y.data());
  }

 private:
  // comm::all_to_all_v over host vectors, or with on_buffers_ through buffers of the inner
  // backend (upload, the collective on their device memory, download).
  std::vector<int64_t> exchange(comm::Comm& c, const std::vector<float>& send, const std::vector<int64_t>& counts,
                                std::vector<float>& recv) {
    if (!on_buffers_) return comm::all_to_all_v(c, send, counts, recv);
    check_counts(c, counts, int64_t(send.size()), "all_to_all_v send_counts");
    const std::vector<int64_t> got = c.exchange_counts(counts);
    int64_t total = 0;
    for (int64_t n : got) total += n;
    recv.assign(size_t(total), 0.f);
    auto sb = inner_->alloc(1, int64_t(send.size())), rb = inner_->alloc(1, total);
    inner_->upload(*sb, send.data());
    c.all_to_all_v(inner_->device_data(*sb), counts, inner_->device_data(*rb), got);
    inner_->download(*rb, recv.data());
    return got;
  }
  // v <- the sum of v over the ranks of c (host, or through a buffer of the inner backend).
  void reduce(comm::Comm& c, std::vector<float>& v) {
    if (!on_buffers_) return c.all_reduce_sum(v.data(), int64_t(v.size()));
    auto b = inner_->alloc(1, int64_t(v.size()));
    inner_->upload(*b, v.data());
    c.all_reduce_sum(inner_->device_data(*b), int64_t(v.size()));
    inner_->download(*b, v.data());
  }

  ModelConfig config_;  // the whole model's (the inner backend's has H/tp heads, g/tp groups)
  BackendOptions o_;
  ParallelLayout l_;
  bool on_buffers_;                   // collectives on the inner backend's memory (NCCL)
  std::shared_ptr<comm::Comm> keep_;  // the communicator the groups came from: outlives them
  std::unique_ptr<comm::Comm> tp_, ep_;
  int64_t experts_ = 0, first_expert_ = 0;
  std::vector<int64_t> expert_tokens_;
  std::vector<MoeShard> moe_;  // main layers, then MTP blocks (the Backend layer index)
  std::unique_ptr<Backend> inner_;
};

}  // namespace

void check_layout(const ModelConfig& c, int world, ParallelLayout l) {
  auto bad = [&](const std::string& why) {
    throw InputError("layout --tp " + std::to_string(l.tp) + " --ep " + std::to_string(l.ep) +
                     " on " + std::to_string(world) + " rank(s): " + why);
  };
  require(c.arch == Arch::v4,
          "the sharded backend runs V4 models; '" + c.name + "' is " + arch_name(c.arch));
  if (l.tp < 1 || l.ep < 1) bad("--tp and --ep must be >= 1");
  if (world % l.tp) bad("--tp must divide the number of ranks");
  if (world % l.ep) bad("--ep must divide the number of ranks");
  if (c.n_heads % l.tp) bad("--tp must divide the " + std::to_string(c.n_heads) + " query heads");
  if (c.o_groups % l.tp)
    bad("--tp must divide the " + std::to_string(c.o_groups) + " output groups");
  if (c.n_routed_experts % l.ep)
    bad("--ep must divide the " + std::to_string(c.n_routed_experts) + " routed experts");
}

std::unique_ptr<ShardedBackend> make_sharded_backend(ModelWeights weights, BackendOptions options,
                                                     comm::Comm& world, ParallelLayout l,
                                                     const ShardedOptions& sharded) {
  return std::make_unique<Sharded>(std::move(weights), options, world, l, sharded);
}

}  // namespace dsv4
