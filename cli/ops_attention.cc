// dsv4 op: the V4 attention components — compressor, indexer, core attention, the query,
// KV and output paths, and the whole attention sub-layer (op-contract.md).
#include <cmath>

#include "cli/op_rope_keys.h"
#include "cli/op_attention_layer.h"
#include "cli/op_spec.h"
#include "reference/attention.h"
#include "reference/attention_layer.h"
#include "reference/compressor.h"
#include "reference/indexer.h"
#include "reference/output_proj.h"
#include "reference/query_path.h"
#include "reference/window_kv.h"

namespace dsv4::cli {

namespace {

std::vector<KeySpec> plus(std::vector<KeySpec> a, const std::vector<KeySpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// int64 indices from a file -> int32, each within [-1, 2^31).
std::vector<int32_t> to_i32(const std::string& op, const std::string& name,
                            const std::vector<int64_t>& v) {
  std::vector<int32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    require(v[i] >= -1 && v[i] <= INT32_MAX, "op '" + op + "': tensor '" + name + "': value " +
                                                 std::to_string(v[i]) + " at flat index " +
                                                 std::to_string(i) + " is outside [-1, 2^31)");
    out[i] = int32_t(v[i]);
  }
  return out;
}

CompressorQuant quant_of(const Keys& k) {
  const std::string q = k.choice("quant", {"none", "fp8", "fp4_hadamard"});
  return q == "fp8" ? CompressorQuant::fp8
         : q == "fp4_hadamard" ? CompressorQuant::fp4_hadamard
                               : CompressorQuant::none;
}

bool overlap_of(const Keys& k) {
  return k.given("overlap") ? k.flag("overlap") : k.integer("ratio") == kCsaRatio;
}

OpSpec compressor_op() {
  OpSpec s;
  s.name = "compressor";
  s.summary = "token-level KV compressor (CSA m=4 overlapping / HCA m=128), prefill from position 0";
  s.spec_ref = "v4-architecture.md §2.3";
  s.cuda_kernel = "optimized/compressor.cuh";
  s.inputs = {{"x", {"T", "D"}},
              {"wkv", {"c*dc", "D"}},
              {"wgate", {"c*dc", "D"}},
              {"ape", {"m", "c*dc"}},
              {"norm", {"dc"}}};
  s.outputs = {{"entries", {"T/m", "dc"}, Elem::real, "normalised, RoPE at each block's first position"},
               {"state_kv", {"c*m", "c*dc"}, Elem::real, "decode state after T tokens"},
               {"state_score", {"c*m", "c*dc"}, Elem::real, "decode state (-inf = empty slot)"}};
  s.keys = plus({{"ratio", "4", "m"},
                 {"overlap", "", "1 when m = 4 (CSA), else 0; c = 2 with overlap"},
                 {"quant", "none", "none | fp8 (main entries) | fp4_hadamard (indexer keys)"},
                 {"path", "prefill", "prefill | decode (token by token through the decode state)"},
                 {"eps", "1e-6", "RMSNorm eps"}},
                rope_keys("v4-compressed"));
  s.bind_keys = [](const Keys& k, Dims& d) {
    const int64_t m = k.integer("ratio");
    require(m > 0, "op 'compressor': key 'ratio': expected a positive integer, found " + std::to_string(m));
    d.bind("m", m);
    d.bind("c", overlap_of(k) ? 2 : 1);
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], m = c.dims["m"], dc = c.dims["dc"], cc = c.dims["c"];
    CompressorParams<T> p;
    p.shape = {c.dims["D"], dc, m, cc == 2};
    p.w = {c.ptr("wkv"), c.ptr("wgate"), c.ptr("ape"), c.ptr("norm")};
    p.rope = rope_from_keys(c.keys, "v4-compressed");
    p.quant = quant_of(c.keys);
    p.eps = c.keys.real("eps");
    View2<T> entries = c.out_view("entries", {T_ / m, dc}, T_ / m);
    CompressorState<T> st;
    if (c.keys.choice("path", {"prefill", "decode"}) == "prefill") {
      ref::compressor_prefill(p, c.view("x", T_), entries, &st);
    } else {
      st = ref::compressor_state_init<T>(p.shape);
      const auto& x = c.real("x");
      int64_t n = 0;
      for (int64_t t = 0; t < T_; ++t)
        if (ref::compressor_decode(p, x.data() + t * p.shape.dim, st, entries.row(n))) ++n;
    }
    c.out("state_kv", {st.rows, st.width}) = st.kv;
    c.out("state_score", {st.rows, st.width}) = st.score;
  });
}

OpSpec indexer_query_op() {
  OpSpec s;
  s.name = "indexer_query";
  s.summary = "lightning-indexer queries and head weights from c_q and x (RoPE, Hadamard+FP4 with quant=1)";
  s.spec_ref = "v4-architecture.md §2.4";
  s.cuda_kernel = "optimized/indexer_query.cuh";
  s.inputs = {{"cq", {"T", "q_rank"}},
              {"x", {"T", "D"}},
              {"weights_proj", {"HI", "D"}},
              {"wq_b", {"HI*dI", "q_rank"}}};
  s.outputs = {{"q", {"T", "HI", "dI"}}, {"w", {"T", "HI"}, Elem::real, "scaled by dI^-1/2 HI^-1/2"}};
  s.keys = plus({{"head_dim", "128", "dI"},
                 {"pos0", "0", "position of row 0"},
                 {"quant", "0", "1: Hadamard + FP4 round trip of q (official numerics)"},
                 {"act_quant", "0", "1: FP8 round trip of cq before wq_b"}},
                rope_keys("v4-compressed"));
  s.bind_keys = [](const Keys& k, Dims& d) { d.bind("dI", k.integer("head_dim")); };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], HI = c.dims["HI"], dI = c.dims["dI"];
    IndexerQueryParams<T> p;
    p.cq = c.view("cq", T_);
    p.x = c.view("x", T_);
    p.wq_b = c.ptr("wq_b");
    p.weights_proj = c.ptr("weights_proj");
    p.heads = HI;
    p.head_dim = dI;
    p.pos0 = c.keys.integer("pos0");
    p.rope = rope_from_keys(c.keys, "v4-compressed");
    p.quant = c.keys.flag("quant");
    p.act_quant = c.keys.flag("act_quant");
    p.q = c.out_view("q", {T_, HI, dI}, T_);
    p.w = c.out_view("w", {T_, HI}, T_);
    ref::indexer_query(p);
  });
}

OpSpec indexer_op() {
  OpSpec s;
  s.name = "indexer";
  s.summary = "scores sum_h w_h ReLU(q_h.k_j) over visible compressed keys, and top-k";
  s.spec_ref = "v4-architecture.md §2.4, §2.8";
  s.cuda_kernel = "optimized/indexer.cuh";
  s.inputs = {{"q", {"T", "HI", "dI"}, Elem::real, false, false, "prepared: RoPE and Hadamard done"},
              {"k", {"N", "dI"}, Elem::real, false, false, "compressed indexer keys"},
              {"w", {"T", "HI"}, Elem::real, false, false, "already scaled"}};
  s.outputs = {{"scores", {"T", "N"}, Elem::real, "-inf where not visible"},
               {"indices", {"T", "topk"}, Elem::integer, "descending score, ties to the lower index, -1 padding"}};
  s.keys = {{"ratio", "4", "m: entry j is visible to position p iff m*j + m - 1 <= p"},
            {"topk", "512", "k"},
            {"pos0", "0", "position of row 0"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], N = c.dims["N"], topk = c.keys.integer("topk");
    require(topk > 0, "op 'indexer': key 'topk': expected a positive integer, found " + std::to_string(topk));
    IndexerParams<T> p;
    p.q = c.view("q", T_);
    p.k = c.view("k", N);
    p.w = c.view("w", T_);
    p.heads = c.dims["HI"];
    p.ratio = c.keys.integer("ratio");
    p.topk = topk;
    p.pos0 = c.keys.integer("pos0");
    p.scores = c.out_view("scores", {T_, N}, T_);
    auto& idx = c.out_i32("indices", {T_, topk});
    p.indices = {idx.data(), T_, topk, topk};
    ref::indexer(p);
  });
}

OpSpec attention_op() {
  OpSpec s;
  s.name = "attention";
  s.summary = "one softmax over the window and the compressed entries (all visible, or the indexed ones) with a sink";
  s.spec_ref = "v4-architecture.md §2.5, §2.8";
  s.cuda_kernel = "optimized/attention.cuh";
  s.inputs = {{"q", {"T", "H", "d"}},
              {"kv", {"Tk", "d"}, Elem::real, false, false, "window entries of positions pos0+T-Tk .. pos0+T-1"},
              {"comp", {"N", "d"}, Elem::real, true, false, "compressed entries (absent: none)"},
              {"sink", {"H"}, Elem::real, false, true, "per-head sink logit (-inf: no sink)"},
              {"indices", {"T", "k"}, Elem::integer, true, false, "selected entries (absent: every visible one)"}};
  s.outputs = {{"o", {"T", "H", "d"}, Elem::real, "before the inverse RoPE"},
               {"lse", {"T", "H"}, Elem::real, "ln(exp(sink) + sum exp(scores))"}};
  s.keys = {{"ratio", "4", "compression ratio of comp (visibility)"},
            {"window", "128", "sliding window"},
            {"scale", "", "score scale (default 1/sqrt(d))"},
            {"pos0", "0", "position of query row 0"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], H = c.dims["H"], d = c.dims["d"], Tk = c.dims["Tk"];
    const int64_t N = c.has("comp") ? c.dims["N"] : 0;
    std::vector<int32_t> idx;
    AttentionParams<T> p;
    p.q = c.view("q", T_);
    p.kv = c.view("kv", Tk);
    p.comp = N ? c.view("comp", N) : View2<const T>{nullptr, 0, d, d};
    p.sink = c.ptr("sink");
    if (c.has("indices")) {
      idx = to_i32("attention", "indices", c.integer("indices"));
      const int64_t k = c.dims["k"];
      p.indices = {idx.data(), T_, k, k};
    }
    p.heads = H;
    p.ratio = c.keys.integer("ratio");
    p.window = c.keys.integer("window");
    p.scale = c.keys.has("scale") ? c.keys.real("scale") : 0.0;
    p.pos0 = c.keys.integer("pos0");
    p.o = c.out_view("o", {T_, H, d}, T_);
    p.lse = c.out_view("lse", {T_, H}, T_);
    ref::attention(p);
  });
}

OpSpec query_path_op() {
  OpSpec s;
  s.name = "query_path";
  s.cuda_kernel = "optimized/query_path.cuh";
  s.summary = "c_q = RMSNorm_w(wq_a x); q = wq_b c_q per head, unweighted RMS, RoPE";
  s.spec_ref = "v4-architecture.md §2.1";
  s.inputs = {{"x", {"T", "D"}},
              {"wq_a", {"q_rank", "D"}},
              {"q_norm", {"q_rank"}},
              {"wq_b", {"H*d", "q_rank"}}};
  s.outputs = {{"cq", {"T", "q_rank"}}, {"q", {"T", "H", "d"}}};
  s.keys = plus({{"heads", "", "H (required)"},
                 {"head_dim", "512", "d"},
                 {"pos0", "0", "position of row 0"},
                 {"eps", "1e-6", "RMSNorm eps"},
                 {"act_quant", "0", "1: FP8 round trip of the inputs of wq_a and wq_b"}},
                rope_keys("v4-swa"));
  s.bind_keys = [](const Keys& k, Dims& d) {
    d.bind("H", k.integer("heads"));
    d.bind("d", k.integer("head_dim"));
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], H = c.dims["H"], d = c.dims["d"], qr = c.dims["q_rank"];
    QueryPathParams<T> p;
    p.x = c.view("x", T_);
    p.wq_a = c.ptr("wq_a");
    p.q_norm = c.ptr("q_norm");
    p.wq_b = c.ptr("wq_b");
    p.q_rank = qr;
    p.heads = H;
    p.head_dim = d;
    p.pos0 = c.keys.integer("pos0");
    p.rope = rope_from_keys(c.keys, "v4-swa");
    p.eps = c.keys.real("eps");
    p.act_quant = c.keys.flag("act_quant");
    p.cq = c.out_view("cq", {T_, qr}, T_);
    p.q = c.out_view("q", {T_, H, d}, T_);
    ref::query_path(p);
  });
}

OpSpec window_kv_op() {
  OpSpec s;
  s.name = "window_kv";
  s.cuda_kernel = "optimized/window_kv.cuh";
  s.summary = "kv = RMSNorm_w(wkv x), RoPE; quant=1: FP8 on dims [0, d - rope_dim) in blocks of 64";
  s.spec_ref = "v4-architecture.md §2.2";
  s.inputs = {{"x", {"T", "D"}}, {"wkv", {"d", "D"}}, {"kv_norm", {"d"}}};
  s.outputs = {{"kv", {"T", "d"}}};
  s.keys = plus({{"pos0", "0", "position of row 0"},
                 {"eps", "1e-6", "RMSNorm eps"},
                 {"quant", "0", "1: FP8 round trip of the non-RoPE dims"},
                 {"act_quant", "0", "1: FP8 round trip of x before wkv"}},
                rope_keys("v4-swa"));
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], d = c.dims["d"];
    WindowKvParams<T> p;
    p.x = c.view("x", T_);
    p.wkv = c.ptr("wkv");
    p.kv_norm = c.ptr("kv_norm");
    p.head_dim = d;
    p.pos0 = c.keys.integer("pos0");
    p.rope = rope_from_keys(c.keys, "v4-swa");
    p.eps = c.keys.real("eps");
    p.quant = c.keys.flag("quant");
    p.act_quant = c.keys.flag("act_quant");
    p.kv = c.out_view("kv", {T_, d}, T_);
    ref::window_kv(p);
  });
}

// groups from the key, or from wo_a's width: (H/g)*d = Hgd.
int64_t groups_of(const std::string& op, const Keys& k, int64_t H, int64_t d, int64_t Hgd) {
  if (k.given("groups")) {
    const int64_t g = k.integer("groups");
    require(g > 0 && H % g == 0 && (H / g) * d == Hgd,
            "op '" + op + "': key 'groups' = " + std::to_string(g) + " does not match wo_a's " +
                std::to_string(Hgd) + " columns with H = " + std::to_string(H) + ", d = " + std::to_string(d));
    return g;
  }
  require(Hgd > 0 && (H * d) % Hgd == 0 && Hgd % d == 0,
          "op '" + op + "': tensor 'wo_a': " + std::to_string(Hgd) + " columns is not (H/g)*d for any g (H = " +
              std::to_string(H) + ", d = " + std::to_string(d) + ")");
  return H * d / Hgd;
}

OpSpec output_proj_op() {
  OpSpec s;
  s.name = "output_proj";
  s.cuda_kernel = "optimized/output_proj.cuh";
  s.summary = "inverse RoPE, block-diagonal grouped wo_a, then wo_b";
  s.spec_ref = "v4-architecture.md §2.6";
  s.inputs = {{"o", {"T", "H", "d"}}, {"wo_a", {"GR", "Hgd"}}, {"wo_b", {"D", "GR"}}};
  s.outputs = {{"y", {"T", "D"}}};
  s.keys = plus({{"groups", "", "g (default: inferred from wo_a)"},
                 {"pos0", "0", "position of row 0"},
                 {"act_quant", "0", "1: FP8 round trip of the input of wo_b"}},
                rope_keys("v4-swa"));
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], H = c.dims["H"], d = c.dims["d"], GR = c.dims["GR"];
    const int64_t g = groups_of("output_proj", c.keys, H, d, c.dims["Hgd"]);
    require(GR % g == 0, "op 'output_proj': tensor 'wo_a': " + std::to_string(GR) +
                             " rows is not a multiple of groups = " + std::to_string(g));
    OutputProjParams<T> p;
    p.o = c.view("o", T_);
    p.wo_a = c.ptr("wo_a");
    p.wo_b = c.ptr("wo_b");
    p.heads = H;
    p.head_dim = d;
    p.groups = g;
    p.o_rank = GR / g;
    p.pos0 = c.keys.integer("pos0");
    p.rope = rope_from_keys(c.keys, "v4-swa");
    p.act_quant = c.keys.flag("act_quant");
    p.y = c.out_view("y", {T_, c.dims["D"]}, T_);
    ref::output_proj(p);
  });
}

const char* kCompressorNames[] = {"wkv.weight", "wgate.weight", "ape", "norm.weight"};

OpSpec attention_layer_op() {
  OpSpec s;
  s.name = "attention_layer";
  s.cuda_kernel = "optimized/attention_layer.cuh";
  s.summary = "the whole attention sub-layer of one V4 layer, prefill from position 0";
  s.spec_ref = "v4-architecture.md §2.1-§2.9";
  const bool opt = true;
  s.inputs = {
      {"x", {"T", "D"}, Elem::real, false, false, "sub-layer input (after attn_norm)"},
      {"attn.attn_sink", {"H"}, Elem::real, false, true, ""},
      {"attn.wq_a.weight", {"q_rank", "D"}},
      {"attn.q_norm.weight", {"q_rank"}},
      {"attn.wq_b.weight", {"H*d", "q_rank"}},
      {"attn.wkv.weight", {"d", "D"}},
      {"attn.kv_norm.weight", {"d"}},
      {"attn.wo_a.weight", {"GR", "Hgd"}},
      {"attn.wo_b.weight", {"D", "GR"}},
      {"attn.compressor.wkv.weight", {"c*d", "D"}, Elem::real, opt, false, "ratio > 0"},
      {"attn.compressor.wgate.weight", {"c*d", "D"}, Elem::real, opt, false, "ratio > 0"},
      {"attn.compressor.ape", {"m", "c*d"}, Elem::real, opt, false, "ratio > 0"},
      {"attn.compressor.norm.weight", {"d"}, Elem::real, opt, false, "ratio > 0"},
      {"attn.indexer.weights_proj.weight", {"HI", "D"}, Elem::real, opt, false, "ratio 4"},
      {"attn.indexer.wq_b.weight", {"HI*dI", "q_rank"}, Elem::real, opt, false, "ratio 4"},
      {"attn.indexer.compressor.wkv.weight", {"2*dI", "D"}, Elem::real, opt, false, "ratio 4"},
      {"attn.indexer.compressor.wgate.weight", {"2*dI", "D"}, Elem::real, opt, false, "ratio 4"},
      {"attn.indexer.compressor.ape", {"m", "2*dI"}, Elem::real, opt, false, "ratio 4"},
      {"attn.indexer.compressor.norm.weight", {"dI"}, Elem::real, opt, false, "ratio 4"},
  };
  s.outputs = {{"y", {"T", "D"}},
               {"topk", {"T", "topk"}, Elem::integer, "CSA only: the indexer's selection"}};
  s.keys = plus({{"ratio", "0", "0 = window only, 4 = CSA, 128 = HCA"},
                 {"heads", "", "H (default: from attn.attn_sink)"},
                 {"groups", "", "o_groups (default: inferred from wo_a)"},
                 {"head_dim", "512", "d"},
                 {"index_head_dim", "128", "dI"},
                 {"topk", "512", "indexer top-k"},
                 {"window", "128", "sliding window"},
                 {"eps", "1e-6", "RMSNorm eps"},
                 {"numerics", "exact", "exact | official (FP8/FP4 quantisation simulation)"}},
                rope_keys("v4-swa for ratio 0, v4-compressed otherwise"));
  s.bind_keys = [](const Keys& k, Dims& d) {
    const int64_t r = k.integer("ratio");
    require(r >= 0, "op 'attention_layer': key 'ratio': expected >= 0, found " + std::to_string(r));
    d.bind("m", r > 0 ? r : 1);
    d.bind("c", r == kCsaRatio ? 2 : 1);
    d.bind("d", k.integer("head_dim"));
    d.bind("dI", k.integer("index_head_dim"));
  };
  s.check = [](const Keys& k, const Dims& d, const std::map<std::string, bool>& present) {
    const int64_t r = k.integer("ratio");
    auto need = [&](const std::string& prefix, bool on, const std::string& why) {
      for (const char* n : kCompressorNames) {
        const std::string name = prefix + n;
        require(!on || present.at(name),
                "op 'attention_layer': tensor '" + name + "' is required " + why);
      }
    };
    need("attn.compressor.", r > 0, "for ratio " + std::to_string(r));
    need("attn.indexer.compressor.", r == kCsaRatio, "for ratio 4 (CSA)");
    for (const char* n : {"attn.indexer.weights_proj.weight", "attn.indexer.wq_b.weight"})
      require(r != kCsaRatio || present.at(n),
              std::string("op 'attention_layer': tensor '") + n + "' is required for ratio 4 (CSA)");
    if (k.given("heads"))
      require(k.integer("heads") == d["H"], "op 'attention_layer': key 'heads' = " + k.str("heads") +
                                                " but attn.attn_sink has " + std::to_string(d["H"]));
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], ratio = c.keys.integer("ratio");
    AttentionLayerParams<T> p;
    p.shape = attention_layer_shape(c.keys, c.dims);
    p.numerics = attention_layer_numerics(c.keys);
    p.w = attention_layer_weights<T>([&](const std::string& n) { return c.ptr(n); });
    const AttentionLayerShape& s = p.shape;
    std::vector<int32_t> topk;
    ref::attention_layer_prefill<T>(p, c.view("x", T_), c.out_view("y", {T_, s.dim}, T_), nullptr,
                                 ratio == kCsaRatio ? &topk : nullptr);
    if (ratio == kCsaRatio) c.out_i32("topk", {T_, s.index_topk}) = topk;
  });
}

}  // namespace

AttentionLayerShape attention_layer_shape(const Keys& k, const Dims& d) {
  const int64_t H = d["H"], hd = d["d"], GR = d["GR"], ratio = k.integer("ratio");
  const int64_t g = groups_of("attention_layer", k, H, hd, d["Hgd"]);
  require(GR % g == 0, "op 'attention_layer': tensor 'attn.wo_a.weight': rows not a multiple of groups");
  AttentionLayerShape s;
  s.dim = d["D"];
  s.heads = H;
  s.head_dim = hd;
  s.q_rank = d["q_rank"];
  s.groups = g;
  s.o_rank = GR / g;
  s.window = k.integer("window");
  s.ratio = ratio;
  s.index_dim = d["dI"];
  s.index_heads = ratio == kCsaRatio ? d["HI"] : kIndexerHeads;
  s.index_topk = k.integer("topk");
  s.eps = k.real("eps");
  s.rope = rope_from_keys(k, ratio > 0 ? "v4-compressed" : "v4-swa");
  require(s.index_topk > 0, "op 'attention_layer': key 'topk' must be positive");
  return s;
}

Numerics attention_layer_numerics(const Keys& k) {
  return k.choice("numerics", {"exact", "official"}) == "official" ? Numerics::official : Numerics::exact;
}

std::vector<OpSpec> attention_ops() {
  return {compressor_op(), indexer_query_op(), indexer_op(),     attention_op(),
          query_path_op(), window_kv_op(),     output_proj_op(), attention_layer_op()};
}

}  // namespace dsv4::cli
