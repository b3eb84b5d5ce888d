// The predecessors at the same contexts (spec §1.2, §2.10), and the ceilings.
//   dsa_indexer_query_decode   V3.2 index query, head weights and the new token's key
//                              (Hadamard + FP8, official numerics)
//   dsa_indexer_decode         V3.2 token-level indexer: L keys scored, top-2048
//   mla_sparse_decode          V3.2 sparse MLA over the top-2048 of an L-token latent cache
//   mla_dense_decode           V3 dense MLA over all L tokens
//   ceiling_sgemm, ceiling_read  bench/ceilings.h
// V3/V3.2 serve 128K tokens; 1M is run anyway, as the spec's §5 table does, to compare at the
// V4 contexts.
#include <algorithm>
#include <memory>
#include <string>

#include "bench/cases.h"
#include "bench/ceilings.h"
#include "model/config.h"
#include "reference/dsa_indexer.h"
#include "reference/mla.h"

namespace dsv4::bench {

namespace {

struct DsaQueryData {
  std::vector<float> cq, x, wq_b, wp, wk, nw, nb, q, w, k;
  DsaQueryParams<float> qp;
  DsaKeyParams<float> kp;
};

void add_dsa_query(std::vector<Case>& out) {
  const ModelConfig c = config_preset("v3.2");
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, qr = c.q_lora_rank, D = c.dim;
  const double elems = double(HI * dI * qr + dI * D + HI * D);
  Case cs;
  cs.op = "dsa_indexer_query_decode";
  cs.model = "v3.2";
  cs.variant = "tokens:1";
  cs.flops = 2.0 * elems;
  cs.bytes = 4.0 * (elems + double(qr + D + HI * dI + HI + dI));
  const int64_t copies = cold_copies(cs.bytes);
  cs.memory = double(copies) * cs.bytes;
  cs.quick = true;
  const RopeConfig rope = rope_v32_indexer();
  cs.setup = [=] {
    return round_robin(copies, [&](int64_t i) {
      auto a = std::make_shared<DsaQueryData>();
      const uint64_t seed = 900 + 10 * uint64_t(i);
      a->cq = rand_uniform(size_t(qr), seed, 1.0f);
      a->x = rand_uniform(size_t(D), seed + 1, 1.0f);
      a->wq_b = rand_uniform(size_t(HI * dI * qr), seed + 2, 0.02f);
      a->wp = rand_uniform(size_t(HI * D), seed + 3, 0.02f);
      a->wk = rand_uniform(size_t(dI * D), seed + 4, 0.02f);
      a->nw = rand_uniform(size_t(dI), seed + 5, 1.0f);
      a->nb = rand_uniform(size_t(dI), seed + 6, 0.1f);
      a->q.resize(size_t(HI * dI));
      a->w.resize(size_t(HI));
      a->k.resize(size_t(dI));
      const auto x = view2<const float>(a->x.data(), 1, D);
      a->qp = {view2<const float>(a->cq.data(), 1, qr), x, a->wq_b.data(), a->wp.data(), HI, dI, 1 << 16, rope, true,
               view2(a->q.data(), 1, HI * dI), view2(a->w.data(), 1, HI)};
      a->kp = {x, a->wk.data(), a->nw.data(), a->nb.data(), dI, 1 << 16, rope, c.norm_eps, true, view2(a->k.data(), 1, dI)};
      return Step([a] {
        ref::dsa_indexer_query(a->qp);
        ref::dsa_indexer_keys(a->kp);
      });
    });
  };
  out.push_back(std::move(cs));
}

struct DsaData {
  std::vector<float> q, k, w;
  std::vector<int32_t> idx;
  IndexerParams<float> p;
};

void add_dsa_indexer(std::vector<Case>& out, int64_t L) {
  const ModelConfig c = config_preset("v3.2");
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, k = c.index_topk;
  Case cs;
  cs.op = "dsa_indexer_decode";
  cs.model = "v3.2";
  cs.variant = ctx_variant(L);
  cs.context = L;
  cs.flops = double(L) * (2.0 * double(HI * dI) + 2.0 * double(HI));
  cs.bytes = 4.0 * (double(L) * dI + double(HI * dI + HI + k));
  cs.memory = 4.0 * (double(L) * dI + 3.0 * double(L) + double(HI * dI + HI + k));
  cs.quick = L == kContexts[0];
  cs.setup = [=] {
    auto a = std::make_shared<DsaData>();
    a->q = rand_uniform(size_t(HI * dI), 33, 1.0f);
    a->k = rand_uniform(size_t(L * dI), 34, 1.0f);
    a->w = rand_uniform(size_t(HI), 35, 1.0f);
    a->idx.resize(size_t(k));
    auto& p = a->p;
    p.q = view2<const float>(a->q.data(), 1, HI * dI);
    p.k = view2<const float>(a->k.data(), L, dI);
    p.w = view2<const float>(a->w.data(), 1, HI);
    p.heads = HI;
    p.ratio = 1;
    p.topk = k;
    p.pos0 = L - 1;
    p.indices = view2(a->idx.data(), 1, k);
    return Step([a] { ref::dsa_indexer(a->p); });
  };
  out.push_back(std::move(cs));
}

struct MlaData {
  std::vector<float> q, kv, o, lse;
  std::vector<int32_t> idx;
  MlaParams<float> p;
};

void add_mla(std::vector<Case>& out, const std::string& model, int64_t L) {
  const ModelConfig c = config_preset(model);
  const bool sparse = c.arch == Arch::v32;
  const int64_t H = c.n_heads, dl = c.kv_lora_rank, dk = dl + c.rope_dim;
  const int64_t n = sparse ? std::min(L, c.index_topk) : L;
  Case cs;
  cs.op = sparse ? "mla_sparse_decode" : "mla_dense_decode";
  cs.model = model;
  cs.variant = ctx_variant(L);
  cs.context = L;
  cs.flops = 2.0 * double(H) * double(n) * double(dk + dl);
  cs.bytes = 4.0 * (double(n) * dk + double(H * (dk + dl)));
  cs.memory = 4.0 * (double(L) * dk + double(H) * double(n) * 2 + double(n) * dk + double(H * (dk + dl)));
  cs.quick = L == kContexts[0];
  cs.setup = [=] {
    auto a = std::make_shared<MlaData>();
    a->q = rand_uniform(size_t(H * dk), 90, 0.05f);
    a->kv = rand_uniform(size_t(L * dk), 91, 1.0f);
    a->o.resize(size_t(H * dl));
    a->lse.resize(size_t(H));
    auto& p = a->p;
    p.q = view2<const float>(a->q.data(), 1, H * dk);
    p.kv = view2<const float>(a->kv.data(), L, dk);
    if (sparse) {
      a->idx = distinct_indices(n, L, 92);
      p.indices = view2<const int32_t>(a->idx.data(), 1, n);
    }
    p.heads = H;
    p.latent_dim = dl;
    p.scale = v3_softmax_scale();
    p.pos0 = L - 1;
    p.o = view2(a->o.data(), 1, H * dl);
    p.lse = view2(a->lse.data(), 1, H);
    return Step([a] { ref::mla(a->p); });
  };
  out.push_back(std::move(cs));
}

}  // namespace

void add_predecessor_cases(std::vector<Case>& out) {
  add_dsa_query(out);
  for (int64_t L : kContexts) {
    add_dsa_indexer(out, L);
    add_mla(out, "v3.2", L);
    add_mla(out, "v3", L);
  }
}

void add_ceiling_cases(std::vector<Case>& out) {
  Case g;
  g.op = "ceiling_sgemm";
  g.model = "cpu";
  g.variant = "n:" + std::to_string(kSgemmN);
  g.flops = 2.0 * double(kSgemmN) * double(kSgemmN) * double(kSgemmN);
  g.memory = 12.0 * double(kSgemmN) * double(kSgemmN);
  g.quick = true;
  g.target = false;
  g.setup = [] {
    auto c = std::make_shared<SgemmCeiling>();
    return Step([c] { c->step(); });
  };
  out.push_back(std::move(g));
  Case r;
  r.op = "ceiling_read";
  r.model = "cpu";
  r.variant = "mib:" + std::to_string(kReadMiB);
  r.bytes = double(kReadMiB) * 1024 * 1024;
  r.memory = r.bytes;
  r.quick = true;
  r.target = false;
  r.setup = [] {
    auto c = std::make_shared<ReadCeiling>();
    return Step([c] { c->step(); });
  };
  out.push_back(std::move(r));
}

}  // namespace dsv4::bench
