#include "model/model.h"

#include <algorithm>
#include <chrono>

#include "reference/errors.h"

namespace dsv4 {

int64_t Sequence::cache_bytes() const {
  int64_t b = 0;
  for (const auto& l : layers) b += l->bytes();
  for (const auto& l : mtp) b += l->bytes();
  return b;
}

Model::Model(std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {
  require(backend_ != nullptr, "Model: no backend");
}

Sequence Model::new_sequence() {
  const auto& c = config();
  Sequence s;
  for (int64_t l = 0; l < c.n_layers; ++l) s.layers.push_back(backend_->new_cache(l));
  for (int64_t i = 0; i < c.n_mtp_layers; ++i) s.mtp.push_back(backend_->new_cache(c.n_layers + i));
  return s;
}

namespace {

// One block (§3.1): attention and MoE sub-layers, each inside an mHC pre/post mix, over
// h [n, s*D]. `rows` (strictly increasing, in [0, n)): the rows whose output is wanted. With
// every row, h stays [n, s*D]. With fewer (only in the last layer: nothing after it reads
// the others), the attention sub-layer still advances the cache by all n tokens, but it and
// everything after it (post-mix, MoE) run on the asked rows only, and h becomes
// [rows.size(), s*D], row i holding chunk row rows[i].
// traced (a subset of rows, or null): record the attention at those rows into `trace`.
void block(Backend& b, int64_t layer, LayerCache& cache, const int32_t* ids, const std::vector<int64_t>& rows,
           std::unique_ptr<Buffer>& h, const std::vector<int64_t>* traced = nullptr,
           std::vector<AttentionTrace>* trace = nullptr) {
  const auto& c = b.config();
  const int64_t n = h->rows(), k = int64_t(rows.size()), D = c.dim, s = c.hc_mult;
  if (c.engram.index_of(layer) >= 0) b.engram(layer, ids, n, *h, cache);  // X <- X + Engram(X, ids)
  auto u = b.alloc(n, D), post = b.alloc(n, s), comb = b.alloc(n, s * s);
  b.hc_pre_norm(layer, HcSite::attn, *h, *u, *post, *comb);  // every row: u feeds the cache
  auto f = b.alloc(k, D);
  std::vector<AttentionRowTrace> detail;
  const bool detailed = traced && b.trace_next_attention(*traced, &detail);
  b.attention(layer, *u, rows, *f, cache);
  if (traced) {  // f row i holds chunk row rows[i]
    std::vector<int64_t> at;
    for (int64_t r : *traced) at.push_back(std::lower_bound(rows.begin(), rows.end(), r) - rows.begin());
    auto fr = b.alloc(int64_t(at.size()), D);
    b.gather_rows(*f, at, *fr);
    std::vector<float> host(size_t(fr->rows() * D));
    b.download(*fr, host.data());
    for (size_t i = 0; i < at.size(); ++i) {
      AttentionTrace t;
      t.layer = layer;
      t.row = (*traced)[i];
      t.output.assign(host.begin() + int64_t(i) * D, host.begin() + int64_t(i + 1) * D);
      if (detailed) {
        require(i < detail.size() && detail[i].row == t.row, "forward: the backend's trace is missing a row");
        t.traced = true;
        t.detail = std::move(detail[i]);
      }
      trace->push_back(std::move(t));
    }
  }
  std::vector<int32_t> kept_ids;
  if (k < n) {  // from here on only the asked rows: residual streams, mix coefficients, tokens
    auto hk = b.alloc(k, s * D), pk = b.alloc(k, s), ck = b.alloc(k, s * s);
    b.gather_rows(*h, rows, *hk);
    b.gather_rows(*post, rows, *pk);
    b.gather_rows(*comb, rows, *ck);
    h = std::move(hk), post = std::move(pk), comb = std::move(ck);
    u = b.alloc(k, D);
    for (int64_t r : rows) kept_ids.push_back(ids[r]);  // hash routing reads the tokens
    ids = kept_ids.data();
    if (k == 0) return;
  }
  auto h2 = b.alloc(k, s * D);
  b.hc_post(*h, *f, *post, *comb, *h2);
  b.hc_pre_norm(layer, HcSite::ffn, *h2, *u, *post, *comb);
  b.moe(layer, *u, ids, *f);
  b.hc_post(*h2, *f, *post, *comb, *h);
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = i;
  return r;
}

}  // namespace

ForwardOutput Model::forward(Sequence& s, const int32_t* ids, int64_t n, const std::vector<int64_t>& logit_rows,
                             bool want_hidden, bool trace) {
  const auto& c = config();
  require(int64_t(s.layers.size()) == c.n_layers, "forward: the sequence was made for another model");
  require(n > 0, "forward: no tokens");
  for (int64_t r : logit_rows)
    require(r >= 0 && r < n, "forward: logit row " + std::to_string(r) + " is outside [0, " + std::to_string(n) + ")");
  // The rows the last layer computes: the distinct logit rows in order, or every row.
  std::vector<int64_t> kept = logit_rows;
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  const std::vector<int64_t> every = all_rows(n);
  const std::vector<int64_t> traced = kept;  // the distinct logit rows
  if (want_hidden) kept = every;
  Backend& b = *backend_;
  ForwardOutput out;
  auto x = b.alloc(n, c.dim);
  auto h = b.alloc(n, c.hc_mult * c.dim);
  for (int64_t l : c.engram.layer_ids) b.engram_prefetch(l, ids, n, *s.layers[size_t(l)]);
  b.embed(ids, n, *x);
  b.hc_expand(*x, *h);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    block(b, l, *s.layers[size_t(l)], ids, l + 1 == c.n_layers ? kept : every, h, trace ? &traced : nullptr,
          &out.trace);
    if (want_hidden) {
      out.hidden.emplace_back(size_t(h->rows() * h->cols()));
      b.download(*h, out.hidden.back().data());
    }
  }
  // h holds the final states of the rows `kept`; the head reads logit row r at its place there.
  if (!logit_rows.empty()) {
    std::vector<int64_t> at;
    for (int64_t r : logit_rows) at.push_back(std::lower_bound(kept.begin(), kept.end(), r) - kept.begin());
    out.logits.resize(logit_rows.size() * size_t(c.vocab_size));
    b.head(*h, at, -1, out.logits.data());
  }
  s.pos += n;
  s.last_hidden = int64_t(kept.size()) == n ? std::move(h) : nullptr;
  return out;
}

std::vector<float> Model::prefill(Sequence& s, const std::vector<int32_t>& ids, int64_t chunk, PrefillStats* stats) {
  require(!ids.empty(), "prefill: empty prompt");
  require(chunk > 0, "prefill: chunk must be positive");
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  for (size_t i = 0; i < ids.size(); i += size_t(chunk)) {
    const int64_t n = std::min<int64_t>(chunk, int64_t(ids.size() - i));
    const bool last = i + size_t(n) == ids.size();
    auto o = forward(s, ids.data() + i, n, last ? std::vector<int64_t>{n - 1} : std::vector<int64_t>{});
    if (last) logits = std::move(o.logits);
  }
  if (stats) {
    stats->tokens = int64_t(ids.size());
    stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return logits;
}

std::vector<float> Model::decode(Sequence& s, int32_t id) { return forward(s, &id, 1, {0}).logits; }

std::vector<float> Model::mtp_forward(Sequence& s, int64_t i, const int32_t* next_ids, int64_t n) {
  const auto& c = config();
  require(i >= 0 && i < int64_t(s.mtp.size()), "mtp_forward: no MTP module " + std::to_string(i));
  require(s.last_hidden && s.last_hidden->rows() == n,
          "mtp_forward: needs the " + std::to_string(n) +
              " final hidden rows of the last forward (a forward computes them all only when every row is in "
              "logit_rows or want_hidden is set)");
  Backend& b = *backend_;
  auto h = b.alloc(n, c.hc_mult * c.dim);
  b.mtp_input(i, *s.last_hidden, next_ids, *h);
  block(b, c.n_layers + i, *s.mtp[size_t(i)], next_ids, all_rows(n), h);
  std::vector<float> logits(size_t(n * c.vocab_size));
  b.head(*h, all_rows(n), i, logits.data());
  return logits;
}

}  // namespace dsv4
