// V4 projection, compressor and whole-layer cases (spec §2.1-§2.3, §2.6, §2.9) at the
// Flash and Pro shapes, official numerics (the FP8/FP4 simulation the layer runs).
//   query_path_{decode,prefill}    c_q, q of one token / kProjectionTokens tokens
//   window_kv_{decode,prefill}     the window entry
//   output_proj_{decode,prefill}   inverse RoPE, grouped wo_a, wo_b
//   compressor_decode              one token into a compressor (an entry every m tokens):
//                                  csa (main, c = 2, dc = 512), csa_indexer (dc = 128), hca
//   compressor_prefill             kCompressorTokens tokens from position 0
//   layer_{csa,hca}_decode         a whole attention sub-layer's decode step at context L on a
//                                  fabricated cache (bench/setup.h synthetic_layer_state)
// Decode cases whose weights fit in the last-level cache step several copies round-robin
// (bench/setup.h cold_copies) so the weights come from memory as in a real decode step.
#include <algorithm>
#include <memory>
#include <string>

#include "bench/cases.h"
#include "model/config.h"
#include "reference/attention_layer.h"
#include "reference/compressor.h"
#include "reference/output_proj.h"
#include "reference/query_path.h"
#include "reference/window_kv.h"

namespace dsv4::bench {

namespace {

constexpr const char* kV4Models[] = {"v4-flash", "v4-pro"};
constexpr double kPoolFlops = 4.0;  // per pooled value, as bench/flops.h

int64_t layer_of_ratio(const ModelConfig& c, int64_t ratio) {
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (c.ratio(l) == ratio) return l;
  return -1;
}

// A projection case: `elems` matrix elements, `act` activation values in and out per token.
Case projection_case(const std::string& op, const std::string& model, int64_t T, double elems, double act,
                     std::function<Step(int64_t copy, int64_t T)> make) {
  Case cs;
  cs.op = op + (T == 1 ? "_decode" : "_prefill");
  cs.model = model;
  cs.variant = "tokens:" + std::to_string(T);
  cs.flops = 2.0 * elems * double(T);
  cs.bytes = 4.0 * (elems + act * double(T));
  const int64_t copies = T == 1 ? cold_copies(cs.bytes) : 1;
  cs.memory = double(copies) * cs.bytes + 4.0 * act * double(T);
  cs.quick = model == "v4-flash" && T == 1;
  cs.setup = [=] { return round_robin(copies, [&](int64_t i) { return make(i, T); }); };
  return cs;
}

struct QueryData {
  std::vector<float> x, wq_a, qn, wq_b, cq, q;
  QueryPathParams<float> p;
};
struct KvData {
  std::vector<float> x, wkv, norm, kv;
  WindowKvParams<float> p;
};
struct OutData {
  std::vector<float> o, wo_a, wo_b, y;
  OutputProjParams<float> p;
};

void add_projections(std::vector<Case>& out, const std::string& model, int64_t T) {
  const ModelConfig c = config_preset(model);
  const AttentionLayerShape s = c.attention_shape(layer_of_ratio(c, kCsaRatio));
  const int64_t D = s.dim, H = s.heads, d = s.head_dim, qr = s.q_rank, g = s.groups, r = s.o_rank;
  out.push_back(projection_case("query_path", model, T, double(qr * D + H * d * qr), double(D + qr + H * d), [=](int64_t i, int64_t T) {
    auto a = std::make_shared<QueryData>();
    const uint64_t seed = 200 + 10 * uint64_t(i);
    a->x = rand_uniform(size_t(T * D), seed, 1.0f);
    a->wq_a = rand_uniform(size_t(qr * D), seed + 1, 0.02f);
    a->qn = rand_uniform(size_t(qr), seed + 2, 1.0f);
    a->wq_b = rand_uniform(size_t(H * d * qr), seed + 3, 0.02f);
    a->cq.resize(size_t(T * qr));
    a->q.resize(size_t(T * H * d));
    a->p = {view2<const float>(a->x.data(), T, D), a->wq_a.data(), a->qn.data(), a->wq_b.data(), qr, H, d, 1 << 20, s.rope,
            s.eps, true, view2(a->cq.data(), T, qr), view2(a->q.data(), T, H * d)};
    return Step([a] { ref::query_path(a->p); });
  }));
  out.push_back(projection_case("window_kv", model, T, double(d * D), double(D + d), [=](int64_t i, int64_t T) {
    auto a = std::make_shared<KvData>();
    const uint64_t seed = 300 + 10 * uint64_t(i);
    a->x = rand_uniform(size_t(T * D), seed, 1.0f);
    a->wkv = rand_uniform(size_t(d * D), seed + 1, 0.02f);
    a->norm = rand_uniform(size_t(d), seed + 2, 1.0f);
    a->kv.resize(size_t(T * d));
    a->p = {view2<const float>(a->x.data(), T, D), a->wkv.data(), a->norm.data(), d, 1 << 20, s.rope, s.eps, true, true,
            view2(a->kv.data(), T, d)};
    return Step([a] { ref::window_kv(a->p); });
  }));
  const double oelems = double(g * r * (H / g) * d + D * g * r);
  out.push_back(projection_case("output_proj", model, T, oelems, double(H * d + D), [=](int64_t i, int64_t T) {
    auto a = std::make_shared<OutData>();
    const uint64_t seed = 400 + 10 * uint64_t(i);
    a->o = rand_uniform(size_t(T * H * d), seed, 1.0f);
    a->wo_a = rand_uniform(size_t(g * r * (H / g) * d), seed + 1, 0.02f);
    a->wo_b = rand_uniform(size_t(D * g * r), seed + 2, 0.02f);
    a->y.resize(size_t(T * D));
    a->p = {view2<const float>(a->o.data(), T, H * d), a->wo_a.data(), a->wo_b.data(), H, d, g, r, 1 << 20, s.rope, true,
            view2(a->y.data(), T, D)};
    return Step([a] { ref::output_proj(a->p); });
  }));
}

struct CompData {
  std::vector<float> x, wkv, wg, ape, norm, entries;
  CompressorParams<float> p;
  CompressorState<float> st;
};

// kind: csa (main), csa_indexer, hca. T = 1: decode; else a prefill of T tokens.
void add_compressor(std::vector<Case>& out, const std::string& model, const std::string& kind, int64_t T) {
  const ModelConfig c = config_preset(model);
  const bool csa = kind != "hca", index = kind == "csa_indexer";
  const CompressorShape sh{c.dim, index ? c.index_head_dim : c.head_dim, csa ? kCsaRatio : kHcaRatio, csa};
  const CompressorQuant quant = index ? CompressorQuant::fp4_hadamard : CompressorQuant::fp8;
  const RopeConfig rope = c.rope_for_layer(layer_of_ratio(c, sh.ratio));
  const double elems = 2.0 * double(sh.width()) * double(sh.dim);
  Case cs;
  cs.op = T == 1 ? "compressor_decode" : "compressor_prefill";
  cs.model = model;
  cs.variant = T == 1 ? kind : kind + ",tokens:" + std::to_string(T);
  cs.flops = double(T) * (2.0 * elems + kPoolFlops * double(sh.width()));
  cs.bytes = 4.0 * (elems + double(T * sh.dim) + double(T / sh.ratio * sh.head_dim));
  const int64_t copies = T == 1 ? cold_copies(cs.bytes) : 1;
  const double state = 8.0 * double(sh.state_rows() * sh.width());
  cs.memory = double(copies) * (cs.bytes + state) + 8.0 * double(T) * double(sh.width());
  cs.quick = model == "v4-flash" && T == 1 && kind == "csa";
  cs.setup = [=] {
    return round_robin(copies, [&](int64_t i) {
      auto a = std::make_shared<CompData>();
      const uint64_t seed = 500 + 10 * uint64_t(i);
      a->x = rand_uniform(size_t(T * sh.dim), seed, 1.0f);
      a->wkv = rand_uniform(size_t(sh.width() * sh.dim), seed + 1, 0.02f);
      a->wg = rand_uniform(size_t(sh.width() * sh.dim), seed + 2, 0.02f);
      a->ape = rand_uniform(size_t(sh.ratio * sh.width()), seed + 3, 0.1f);
      a->norm = rand_uniform(size_t(sh.head_dim), seed + 4, 1.0f);
      a->entries.resize(size_t(std::max<int64_t>(1, T / sh.ratio) * sh.head_dim));
      a->p = {sh, {a->wkv.data(), a->wg.data(), a->ape.data(), a->norm.data()}, rope, quant, c.norm_eps};
      a->st = ref::compressor_state_init<float>(sh);
      if (T == 1) return Step([a] { ref::compressor_decode<float>(a->p, a->x.data(), a->st, a->entries.data()); });
      return Step([a, T] {
        const View2<float> e = view2(a->entries.data(), T / a->p.shape.ratio, a->p.shape.head_dim);
        ref::compressor_prefill<float>(a->p, view2<const float>(a->x.data(), T, a->p.shape.dim), e, nullptr);
      });
    });
  };
  out.push_back(std::move(cs));
}

struct LayerData {
  LayerWeightData w;
  AttentionLayerParams<float> p;
  AttentionLayerState<float> st;
  std::vector<float> x, y;
};

void add_layer(std::vector<Case>& out, const std::string& model, int64_t ratio, int64_t L) {
  const ModelConfig c = config_preset(model);
  const AttentionLayerShape s = c.attention_shape(layer_of_ratio(c, ratio));
  const bool csa = ratio == kCsaRatio;
  const int64_t N = L / ratio, cc = csa ? 2 : 1;
  const double attended = double(std::min(L, s.window)) + double(csa ? std::min(s.index_topk, N) : N);
  const double elems = layer_weight_bytes(s) / 4;
  const double per_key = 2.0 * double(s.index_heads) * double(s.index_dim) + 2.0 * double(s.index_heads);
  Case cs;
  cs.op = csa ? "layer_csa_decode" : "layer_hca_decode";
  cs.model = model;
  cs.variant = ctx_variant(L);
  cs.context = L;
  cs.flops = 2.0 * elems + (csa ? double(N) * per_key : 0.0) + 2.0 * double(s.heads) * attended * double(2 * s.head_dim) +
             kPoolFlops * double(cc * s.head_dim + (csa ? 2 * s.index_dim : 0));
  cs.bytes = 4.0 * (elems + (csa ? double(N) * s.index_dim : 0.0) + attended * double(s.head_dim));
  // Stores double their capacity on the first append after the fabricated fill.
  cs.memory = 4.0 * elems + 8.0 * double(N) * double(s.head_dim + (csa ? s.index_dim : 0)) + 4.0 * double(s.window * s.head_dim);
  cs.quick = model == "v4-flash" && L == kContexts[0];
  cs.target = false;
  cs.setup = [=] {
    auto a = std::make_shared<LayerData>();
    a->w = random_layer_weights(s, 50, Fill::uniform);
    a->p.shape = s;
    a->p.w = a->w.weights();
    a->p.numerics = Numerics::official;
    a->st = synthetic_layer_state(s, L, 11, Fill::uniform);
    a->x = rand_uniform(size_t(s.dim), 68, 1.0f);
    a->y.resize(size_t(s.dim));
    // Warm-up past the first compressed entry (the stores' one reallocation).
    for (int64_t t = 0; t < (csa ? kCsaRatio : 1); ++t) ref::attention_layer_decode(a->p, a->x.data(), a->y.data(), a->st);
    return Step([a] { ref::attention_layer_decode(a->p, a->x.data(), a->y.data(), a->st); });
  };
  out.push_back(std::move(cs));
}

}  // namespace

void add_v4_layer_cases(std::vector<Case>& out) {
  for (const char* m : kV4Models) {
    for (int64_t T : {int64_t(1), kProjectionTokens}) add_projections(out, m, T);
    for (const char* kind : {"csa", "csa_indexer", "hca"}) {
      add_compressor(out, m, kind, 1);
      add_compressor(out, m, kind, kCompressorTokens);
    }
    for (int64_t L : kContexts) {
      add_layer(out, m, kCsaRatio, L);
      add_layer(out, m, kHcaRatio, L);
    }
  }
}

}  // namespace dsv4::bench
