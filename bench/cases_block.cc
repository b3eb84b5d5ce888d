// mHC, MoE and elementwise cases (spec §3.1, §3.2, §2.2-§2.4) at the Flash and Pro shapes.
//   mhc_{decode,prefill}   hc_pre (mixes, Sinkhorn, stream reduction) + hc_post of one
//                          sub-layer, 1 / kProjectionTokens tokens
//   moe_decode             one token: router + top-6 routed experts + the shared expert,
//                          official numerics. experts:16 allocates 16 experts of the real
//                          width (the router chooses among them); experts:256 / 384 (all of
//                          them, in float) is listed and skipped for its memory.
//   moe_prefill            kMoePrefillTokens tokens, hash-routed (the first layers' routing)
//                          through a table that spreads them over all 16 experts, so the
//                          experts read are known: 16 + the shared one
//   rmsnorm, rope          rows of the hidden size / of the query heads (compressed table)
//   hadamard, quant_fp4    indexer rows [R, 128]; quant_fp8: KV entries [R, 512], dims 448
// Inputs of ~64 MiB or more, so the elementwise cases stream from memory.
#include <cmath>
#include <memory>
#include <string>

#include "bench/cases.h"
#include "model/config.h"
#include "reference/hadamard.h"
#include "reference/hc_post.h"
#include "reference/hc_pre.h"
#include "reference/moe.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"
#include "reference/rope.h"

namespace dsv4::bench {

namespace {

constexpr const char* kV4Models[] = {"v4-flash", "v4-pro"};

struct MhcData {
  std::vector<float> x, fn, base, scale, u, post, comb, y;
  HcPreParams<float> pre;
  HcPostParams<float> post_p;
};

void add_mhc(std::vector<Case>& out, const std::string& model, int64_t T) {
  const ModelConfig c = config_preset(model);
  const int64_t n = c.hc_mult, D = c.dim, mix = 2 * n + n * n, iters = c.hc_sinkhorn_iters;
  Case cs;
  cs.op = T == 1 ? "mhc_decode" : "mhc_prefill";
  cs.model = model;
  cs.variant = "tokens:" + std::to_string(T);
  // mixes 2 mix nD; reduction 2 nD; post-mix (1 + 2n) per output value, nD outputs
  cs.flops = double(T) * (2.0 * mix * n * D + 2.0 * n * D + (1.0 + 2.0 * n) * n * D);
  cs.bytes = 4.0 * (double(mix * n * D) + double(T) * double(2 * n * D + 2 * D));
  const int64_t copies = T == 1 ? cold_copies(cs.bytes) : 1;
  cs.memory = double(copies) * cs.bytes;
  cs.quick = model == "v4-flash" && T == 1;
  cs.setup = [=] {
    return round_robin(copies, [&](int64_t i) {
      auto a = std::make_shared<MhcData>();
      const uint64_t seed = 700 + 10 * uint64_t(i);
      a->x = rand_uniform(size_t(T * n * D), seed, 1.0f);
      a->fn = rand_uniform(size_t(mix * n * D), seed + 1, 0.01f);
      a->base = rand_uniform(size_t(mix), seed + 2, 0.5f);
      a->scale = rand_uniform(3, seed + 3, 0.5f);
      a->u.resize(size_t(T * D));
      a->post.resize(size_t(T * n));
      a->comb.resize(size_t(T * n * n));
      a->y.resize(size_t(T * n * D));
      a->pre = {view2<const float>(a->x.data(), T, n * D), a->fn.data(), a->base.data(), a->scale.data(), n, iters,
                c.hc_eps, c.norm_eps, view2(a->u.data(), T, D), view2(a->post.data(), T, n), view2(a->comb.data(), T, n * n)};
      a->post_p = {a->pre.x, view2<const float>(a->u.data(), T, D), view2<const float>(a->post.data(), T, n),
                   view2<const float>(a->comb.data(), T, n * n), n, view2(a->y.data(), T, n * D)};
      return Step([a] {
        ref::hc_pre(a->pre);
        ref::hc_post(a->post_p);
      });
    });
  };
  out.push_back(std::move(cs));
}

struct MoeData {
  std::vector<float> x, gate, bias, w1, w3, w2, s1, s3, s2, wts, y;
  std::vector<int32_t> chosen;
  std::vector<int64_t> tid2eid, ids;
  MoeParams<float> p;
};

// E experts allocated; T tokens (T > 1: hash-routed over all E).
void add_moe(std::vector<Case>& out, const std::string& model, int64_t E, int64_t T) {
  const ModelConfig c = config_preset(model);
  const int64_t D = c.dim, I = c.moe_inter_dim, k = c.experts_per_token, ns = c.n_shared_experts;
  const double expert = 3.0 * double(I) * double(D);
  const int64_t touched = T == 1 ? k : std::min(E, T * k);
  Case cs;
  cs.op = T == 1 ? "moe_decode" : "moe_prefill";
  cs.model = model;
  cs.variant = "experts:" + std::to_string(E) + (T == 1 ? "" : ",tokens:" + std::to_string(T));
  cs.flops = 2.0 * double(T) * double(E * D) + 2.0 * double(T) * double(k + ns) * expert;
  cs.bytes = 4.0 * (double(E * D) + double(touched + ns) * expert + 2.0 * double(T * D));
  cs.memory = 4.0 * (double(E * D) + double(E + ns) * expert + 2.0 * double(T * D));
  cs.quick = model == "v4-flash" && T == 1 && E == kMoeBenchExperts;
  cs.setup = [=] {
    auto a = std::make_shared<MoeData>();
    a->x = rand_uniform(size_t(T * D), 80, 1.0f);
    a->gate = rand_uniform(size_t(E * D), 81, 0.02f);
    a->bias = rand_uniform(size_t(E), 82, 0.01f);
    a->w1 = rand_uniform(size_t(double(E) * I * D), 83, 0.02f);
    a->w3 = rand_uniform(size_t(double(E) * I * D), 84, 0.02f);
    a->w2 = rand_uniform(size_t(double(E) * D * I), 85, 0.02f);
    a->s1 = rand_uniform(size_t(I * D), 86, 0.02f);
    a->s3 = rand_uniform(size_t(I * D), 87, 0.02f);
    a->s2 = rand_uniform(size_t(D * I), 88, 0.02f);
    a->chosen.resize(size_t(T * k));
    a->wts.resize(size_t(T * k));
    a->y.resize(size_t(T * D));
    auto& r = a->p.route;
    r.x = view2<const float>(a->x.data(), T, D);
    r.gate = a->gate.data();
    r.bias = a->bias.data();
    if (T > 1) {  // token t -> experts (t k + j) mod E
      for (int64_t t = 0; t < T; ++t) {
        a->ids.push_back(t);
        for (int64_t j = 0; j < k; ++j) a->tid2eid.push_back((t * k + j) % E);
      }
      r.tid2eid = view2<const int64_t>(a->tid2eid.data(), T, k);
      r.ids = a->ids.data();
    }
    r.experts = E;
    r.topk = k;
    r.route_scale = c.route_scale;
    r.score = c.score_func;
    r.chosen = view2(a->chosen.data(), T, k);
    r.weights = view2(a->wts.data(), T, k);
    a->p.w1 = a->w1.data();
    a->p.w3 = a->w3.data();
    a->p.w2 = a->w2.data();
    a->p.shared_w1 = a->s1.data();
    a->p.shared_w3 = a->s3.data();
    a->p.shared_w2 = a->s2.data();
    a->p.inter = I;
    a->p.swiglu_limit = c.swiglu_limit;
    a->p.act_quant = true;
    a->p.y = view2(a->y.data(), T, D);
    return Step([a] { ref::moe(a->p); });
  };
  out.push_back(std::move(cs));
}

// An elementwise case over `in` input values written to as many outputs.
Case elementwise(const std::string& op, const std::string& model, int64_t rows, double in_values, double flops,
                 std::function<Step()> setup) {
  Case cs;
  cs.op = op;
  cs.model = model;
  cs.variant = "rows:" + std::to_string(rows);
  cs.flops = flops;
  cs.bytes = 8.0 * in_values;
  cs.memory = 8.0 * in_values;
  cs.setup = std::move(setup);
  return cs;
}

struct Buffers {
  std::vector<float> x, y, w;
};

void add_elementwise(std::vector<Case>& out) {
  for (const char* m : kV4Models) {
    const ModelConfig c = config_preset(m);
    const int64_t R = 4096, D = c.dim, H = c.n_heads, d = c.head_dim, dr = c.rope_dim, Rq = 1024;
    Case rms = elementwise("rmsnorm", m, R, double(R * D), 4.0 * double(R * D), [=] {
      auto b = std::make_shared<Buffers>();
      b->x = rand_uniform(size_t(R * D), 1, 1.0f);
      b->w = rand_uniform(size_t(D), 2, 1.0f);
      b->y.resize(b->x.size());
      return Step([b, R, D] { ref::rmsnorm<float>({view2<const float>(b->x.data(), R, D), b->w.data(), view2(b->y.data(), R, D)}); });
    });
    rms.quick = std::string(m) == "v4-flash";
    out.push_back(std::move(rms));
    const RopeConfig table = c.rope_for_layer(2);
    // 4 multiplies + 2 adds per rotated pair; only the rotated dims are read and written.
    out.push_back(elementwise("rope", m, Rq, double(Rq * H * dr), 3.0 * double(Rq * H * dr), [=] {
      auto b = std::make_shared<Buffers>();
      b->x = rand_uniform(size_t(Rq * H * d), 3, 1.0f);
      return Step([b, Rq, H, d, table] { ref::rope<float>({view2(b->x.data(), Rq, H * d), H, d, 1 << 20, 1, false, table}); });
    }));
  }
  const int64_t dI = kIndexerDim, Ri = 131072, Rk = 32768, dk = kHeadDim;
  // log2(128) = 7 butterfly adds + 1 scale per value
  out.push_back(elementwise("hadamard", "v4", Ri, double(Ri * dI), double(Ri * dI) * 8.0, [=] {
    auto b = std::make_shared<Buffers>();
    b->x = rand_uniform(size_t(Ri * dI), 4, 1.0f);
    b->y.resize(b->x.size());
    return Step([b, Ri, dI] { ref::hadamard<float>({view2<const float>(b->x.data(), Ri, dI), view2(b->y.data(), Ri, dI)}); });
  }));
  Case q8 = elementwise("quant_fp8", "v4", Rk, double(Rk * dk), 0, [=] {
    auto b = std::make_shared<Buffers>();
    b->x = rand_uniform(size_t(Rk * dk), 5, 1.0f);
    b->y.resize(b->x.size());
    return Step([b, Rk, dk] {
      ref::quant_fp8<float>({view2<const float>(b->x.data(), Rk, dk), view2(b->y.data(), Rk, dk), kFp8KvBlock, kNopeDim});
    });
  });
  q8.quick = true;
  out.push_back(std::move(q8));
  out.push_back(elementwise("quant_fp4", "v4", Ri, double(Ri * dI), 0, [=] {
    auto b = std::make_shared<Buffers>();
    b->x = rand_uniform(size_t(Ri * dI), 6, 1.0f);
    b->y.resize(b->x.size());
    return Step([b, Ri, dI] { ref::quant_fp4<float>({view2<const float>(b->x.data(), Ri, dI), view2(b->y.data(), Ri, dI), kFp4Block}); });
  }));
}

}  // namespace

void add_v4_block_cases(std::vector<Case>& out) {
  for (const char* m : kV4Models) {
    add_mhc(out, m, 1);
    add_mhc(out, m, kProjectionTokens);
    const int64_t all = config_preset(m).n_routed_experts;
    add_moe(out, m, kMoeBenchExperts, 1);
    add_moe(out, m, all, 1);
    add_moe(out, m, kMoeBenchExperts, kMoePrefillTokens);
  }
  add_elementwise(out);
}

}  // namespace dsv4::bench
