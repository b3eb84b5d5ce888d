// V4 attention-core and indexer cases (spec §2.4, §2.5) at the Flash and Pro shapes.
//   attention_{csa,hca,window}_decode   one query row at position L - 1 over the window and
//                                       the compressed entries (CSA: top-k random distinct)
//   attention_{csa,hca,window}_prefill  the last chunk of kPrefillChunk rows of a chunked
//                                       prefill at context L (positions L - 64 .. L - 1)
//   indexer_query_decode                index query projections of one token (official
//                                       numerics: FP8 c_q, Hadamard + FP4 queries)
//   indexer_decode / indexer_prefill    scores over the floor(L/4) compressed keys + top-k,
//                                       one row / kIndexerPrefillChunk rows
#include <algorithm>
#include <memory>
#include <string>

#include "bench/cases.h"
#include "model/config.h"
#include "reference/attention.h"
#include "reference/errors.h"
#include "reference/indexer.h"

namespace dsv4::bench {

namespace {

constexpr const char* kV4Models[] = {"v4-flash", "v4-pro"};

struct AttnShape {
  int64_t H, d, win, ratio, k;  // k: top-k (CSA), 0 otherwise
};

// Owned inputs of one attention call.
struct AttnData {
  std::vector<float> q, kv, comp, sink, o, lse;
  std::vector<int32_t> idx;
  AttentionParams<float> p;
};

// rows [Tq] at positions pos0 .., window rows Tk, N compressed entries, indices [Tq, kcols].
Step attention_setup(const AttnShape& s, int64_t Tq, int64_t L, int64_t N, std::vector<int32_t> idx, int64_t kcols) {
  auto a = std::make_shared<AttnData>();
  const int64_t Tk = Tq + std::min(L - Tq, s.win - 1);
  a->q = rand_uniform(size_t(Tq * s.H * s.d), 40, 0.05f);
  a->kv = rand_uniform(size_t(Tk * s.d), 41, 1.0f);
  a->comp = rand_uniform(size_t(N * s.d), 42, 1.0f);
  a->sink = rand_uniform(size_t(s.H), 43, 1.0f);
  a->o.resize(size_t(Tq * s.H * s.d));
  a->lse.resize(size_t(Tq * s.H));
  a->idx = std::move(idx);
  auto& p = a->p;
  p.q = view2<const float>(a->q.data(), Tq, s.H * s.d);
  p.kv = view2<const float>(a->kv.data(), Tk, s.d);
  p.comp = view2<const float>(a->comp.data(), N, s.d);
  p.sink = a->sink.data();
  if (kcols > 0) p.indices = view2<const int32_t>(a->idx.data(), Tq, kcols);
  p.heads = s.H;
  p.ratio = s.ratio;
  p.window = s.win;
  p.pos0 = L - Tq;
  p.o = view2(a->o.data(), Tq, s.H * s.d);
  p.lse = view2(a->lse.data(), Tq, s.H);
  return [a] { ref::attention(a->p); };
}

// Visible compressed entries of the row at position pos (§2.8).
int64_t visible(int64_t pos, int64_t ratio) { return (pos + 1) / ratio; }

// Selections of the Tq rows of a CSA case at context L: rows with at most k visible entries
// take all of them; otherwise row r takes entries pool[r .. r + k - 1] of a pool of
// k + Tq - 1 distinct entries visible to every row (consecutive queries share most of their
// top-k), so the chunk reads exactly |pool| unique entries. Returns [Tq, kcols] and sets
// *attended (sum over rows) and *unique.
std::vector<int32_t> csa_selection(int64_t k, int64_t Tq, int64_t L, int64_t* kcols, double* attended, double* unique) {
  const int64_t vmin = visible(L - Tq, kCsaRatio), vmax = visible(L - 1, kCsaRatio);
  std::vector<int32_t> idx;
  *attended = 0;
  if (k >= vmax) {
    *kcols = vmax;
    idx.assign(size_t(Tq * vmax), -1);
    for (int64_t r = 0; r < Tq; ++r) {
      const int64_t v = visible(L - Tq + r, kCsaRatio);
      for (int64_t j = 0; j < v; ++j) idx[size_t(r * vmax + j)] = int32_t(j);
      *attended += double(v);
    }
    *unique = double(vmax);
    return idx;
  }
  const int64_t P = k + Tq - 1;
  require(P <= vmin, "bench: CSA selection pool larger than the visible entries");
  const auto pool = distinct_indices(P, vmin, 44);
  *kcols = k;
  idx.resize(size_t(Tq * k));
  for (int64_t r = 0; r < Tq; ++r)
    for (int64_t i = 0; i < k; ++i) idx[size_t(r * k + i)] = pool[size_t(r + i)];
  *attended = double(Tq) * double(k);
  *unique = double(P);
  return idx;
}

void add_attention(std::vector<Case>& out, const std::string& model, const char* kind, int64_t L, int64_t Tq) {
  const ModelConfig c = config_preset(model);
  const std::string k = kind;
  const int64_t ratio = k == "csa" ? kCsaRatio : k == "hca" ? kHcaRatio : 0;
  const AttnShape s{c.n_heads, c.head_dim, c.window, ratio > 0 ? ratio : kCsaRatio, ratio == kCsaRatio ? c.index_topk : 0};
  const int64_t N = ratio > 0 ? L / ratio : 0;
  const int64_t Tk = Tq + std::min(L - Tq, s.win - 1);
  double attended = 0, unique = double(Tk);
  int64_t kcols = 0;
  std::vector<int32_t> idx;
  if (ratio == kCsaRatio) {
    double u = 0;
    idx = csa_selection(s.k, Tq, L, &kcols, &attended, &u);
    unique += u;
  } else if (ratio == kHcaRatio) {
    for (int64_t r = 0; r < Tq; ++r) attended += double(visible(L - Tq + r, ratio));
    unique += double(N);
  }
  for (int64_t r = 0; r < Tq; ++r) attended += double(std::min(L - Tq + r + 1, s.win));
  Case cs;
  cs.op = "attention_" + k + (Tq == 1 ? "_decode" : "_prefill");
  cs.model = model;
  cs.variant = ctx_variant(L);
  cs.context = L;
  cs.flops = 2.0 * double(s.H) * attended * double(2 * s.d);
  cs.bytes = 4.0 * (unique * double(s.d) + 2.0 * double(Tq * s.H * s.d));
  cs.memory = 4.0 * (double(N + Tk) * s.d + 2.0 * double(Tq * s.H * s.d) + double(idx.size())) +
              4.0 * double(s.H) * (double(s.win) + double(ratio == kCsaRatio ? kcols : N)) * 3;  // scores, gathers
  cs.quick = model == "v4-flash" && L == kContexts[0] && (Tq == 1 || k == "csa");
  auto shared_idx = std::make_shared<std::vector<int32_t>>(std::move(idx));
  cs.setup = [s, Tq, L, N, shared_idx, kcols] { return attention_setup(s, Tq, L, N, *shared_idx, kcols); };
  out.push_back(std::move(cs));
}

struct IndexerData {
  std::vector<float> q, k, w;
  std::vector<int32_t> idx;
  IndexerParams<float> p;
};

void add_indexer(std::vector<Case>& out, const std::string& model, int64_t L, int64_t Tq) {
  const ModelConfig c = config_preset(model);
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, k = c.index_topk, N = L / kCsaRatio;
  const double per_key = 2.0 * double(HI) * double(dI) + 2.0 * double(HI);
  double keys = 0;
  for (int64_t r = 0; r < Tq; ++r) keys += double(visible(L - Tq + r, kCsaRatio));
  Case cs;
  cs.op = Tq == 1 ? "indexer_decode" : "indexer_prefill";
  cs.model = model;
  cs.variant = ctx_variant(L);
  cs.context = L;
  cs.flops = keys * per_key;
  cs.bytes = 4.0 * (double(N) * dI + double(Tq) * double(HI * dI + HI + k));
  cs.memory = 4.0 * (double(N) * dI + 3.0 * double(N) * std::min<int64_t>(Tq, 16) + double(Tq) * double(HI * dI + HI + k));
  cs.quick = model == "v4-flash" && L == kContexts[0];
  cs.setup = [=] {
    auto a = std::make_shared<IndexerData>();
    a->q = rand_uniform(size_t(Tq * HI * dI), 30, 1.0f);
    a->k = rand_uniform(size_t(N * dI), 31, 1.0f);
    a->w = rand_uniform(size_t(Tq * HI), 32, 1.0f);
    a->idx.resize(size_t(Tq * k));
    auto& p = a->p;
    p.q = view2<const float>(a->q.data(), Tq, HI * dI);
    p.k = view2<const float>(a->k.data(), N, dI);
    p.w = view2<const float>(a->w.data(), Tq, HI);
    p.heads = HI;
    p.ratio = kCsaRatio;
    p.topk = k;
    p.pos0 = L - Tq;
    p.indices = view2(a->idx.data(), Tq, k);
    return Step([a] { ref::indexer(a->p); });
  };
  out.push_back(std::move(cs));
}

struct IndexQueryData {
  std::vector<float> cq, x, wq_b, wp, q, w;
  IndexerQueryParams<float> p;
};

void add_indexer_query(std::vector<Case>& out, const std::string& model) {
  const ModelConfig c = config_preset(model);
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, qr = c.q_lora_rank, D = c.dim;
  const double elems = double(HI * dI * qr + HI * D);
  Case cs;
  cs.op = "indexer_query_decode";
  cs.model = model;
  cs.variant = "tokens:1";
  cs.flops = 2.0 * elems;
  cs.bytes = 4.0 * (elems + double(qr + D + HI * dI + HI));
  const int64_t copies = cold_copies(cs.bytes);
  cs.memory = double(copies) * cs.bytes;
  cs.quick = model == "v4-flash";
  const RopeConfig rope = c.rope_for_layer(2);
  cs.setup = [=] {
    return round_robin(copies, [&](int64_t i) {
      auto a = std::make_shared<IndexQueryData>();
      const uint64_t seed = 100 + 10 * uint64_t(i);
      a->cq = rand_uniform(size_t(qr), seed, 1.0f);
      a->x = rand_uniform(size_t(D), seed + 1, 1.0f);
      a->wq_b = rand_uniform(size_t(HI * dI * qr), seed + 2, 0.02f);
      a->wp = rand_uniform(size_t(HI * D), seed + 3, 0.02f);
      a->q.resize(size_t(HI * dI));
      a->w.resize(size_t(HI));
      a->p = {view2<const float>(a->cq.data(), 1, qr), view2<const float>(a->x.data(), 1, D), a->wq_b.data(), a->wp.data(),
              HI, dI, 1 << 20, rope, true, true, view2(a->q.data(), 1, HI * dI), view2(a->w.data(), 1, HI)};
      return Step([a] { ref::indexer_query(a->p); });
    });
  };
  out.push_back(std::move(cs));
}

}  // namespace

std::string ctx_variant(int64_t L) { return "ctx:" + std::to_string(L); }

void add_v4_attention_cases(std::vector<Case>& out) {
  for (const char* m : kV4Models) {
    add_indexer_query(out, m);
    for (int64_t L : kContexts) {
      add_indexer(out, m, L, 1);
      for (const char* kind : {"csa", "hca", "window"}) add_attention(out, m, kind, L, 1);
    }
    for (int64_t L : kContexts) {
      add_indexer(out, m, L, kIndexerPrefillChunk);
      for (const char* kind : {"csa", "hca", "window"}) add_attention(out, m, kind, L, kPrefillChunk);
    }
  }
}

}  // namespace dsv4::bench
