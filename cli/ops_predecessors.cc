// dsv4 op: the predecessors' attention for the comparison benchmarks — V3 MLA (dense),
// V3.2 MLA over DSA-selected tokens, and the V3.2 token-level DSA indexer (op-contract.md).
#include "cli/op_spec.h"
#include "reference/dsa_indexer.h"
#include "reference/mla.h"

namespace dsv4::cli {

namespace {

std::vector<int32_t> indices_i32(const std::string& op, const std::vector<int64_t>& v) {
  std::vector<int32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    require(v[i] >= -1 && v[i] <= INT32_MAX, "op '" + op + "': tensor 'indices': value " +
                                                 std::to_string(v[i]) + " at flat index " +
                                                 std::to_string(i) + " is outside [-1, 2^31)");
    out[i] = int32_t(v[i]);
  }
  return out;
}

int64_t pos0_of(const Keys& k, int64_t Tk, int64_t T) {
  return k.given("pos0") ? k.integer("pos0") : Tk - T;
}

OpSpec mla_op() {
  OpSpec s;
  s.name = "mla";
  s.cuda_kernel = "optimized/mla.cuh";
  s.summary = "absorbed MLA: softmax(scale q.kv) over visible rows (or the indexed ones), values = latent dims";
  s.spec_ref = "v4-architecture.md §1.2, §2.10";
  s.inputs = {{"q", {"T", "H", "dk"}, Elem::real, false, false, "absorbed queries [latent ; rope]"},
              {"kv", {"Tk", "dk"}, Elem::real, false, false, "latent + rope cache, row j = position j"},
              {"indices", {"T", "k"}, Elem::integer, true, false, "V3.2: selected rows (-1 = none)"}};
  s.outputs = {{"o", {"T", "H", "dk-rope_dim"}}, {"lse", {"T", "H"}}};
  s.keys = {{"pos0", "", "position of query row 0 (default Tk - T)"},
            {"rope_dim", "64", "dr: the trailing rope dims (values are the first dk - dr)"},
            {"scale", "", "default 1/sqrt(dk); V3 uses 1/sqrt(192)*mscale^2"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], H = c.dims["H"], dk = c.dims["dk"], Tk = c.dims["Tk"];
    const int64_t dl = dk - c.keys.integer("rope_dim");
    require(dl > 0, "op 'mla': key 'rope_dim' must be smaller than dk = " + std::to_string(dk));
    std::vector<int32_t> idx;
    MlaParams<T> p;
    p.q = c.view("q", T_);
    p.kv = c.view("kv", Tk);
    if (c.has("indices")) {
      idx = indices_i32("mla", c.integer("indices"));
      p.indices = {idx.data(), T_, c.dims["k"], c.dims["k"]};
    }
    p.heads = H;
    p.latent_dim = dl;
    p.scale = c.keys.has("scale") ? c.keys.real("scale") : 0.0;
    p.pos0 = pos0_of(c.keys, Tk, T_);
    p.o = c.out_view("o", {T_, H, dl}, T_);
    p.lse = c.out_view("lse", {T_, H}, T_);
    ref::mla(p);
  });
}

OpSpec dsa_indexer_op() {
  OpSpec s;
  s.name = "dsa_indexer";
  s.cuda_kernel = "optimized/dsa_indexer.cuh";
  s.summary = "V3.2 token-level indexer: sum_h w_h ReLU(q_h.k_s) over past tokens, top-k";
  s.spec_ref = "v4-architecture.md §2.10";
  s.inputs = {{"q", {"T", "HI", "dI"}}, {"k", {"Tk", "dI"}}, {"w", {"T", "HI"}}};
  s.outputs = {{"scores", {"T", "Tk"}, Elem::real, "-inf for future keys"},
               {"indices", {"T", "topk"}, Elem::integer, "descending score, ties to the lower index, -1 padding"}};
  s.keys = {{"topk", "2048", "k"}, {"pos0", "", "position of query row 0 (default Tk - T)"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], Tk = c.dims["Tk"], topk = c.keys.integer("topk");
    require(topk > 0, "op 'dsa_indexer': key 'topk': expected a positive integer");
    IndexerParams<T> p;
    p.q = c.view("q", T_);
    p.k = c.view("k", Tk);
    p.w = c.view("w", T_);
    p.heads = c.dims["HI"];
    p.topk = topk;
    p.pos0 = pos0_of(c.keys, Tk, T_);
    p.scores = c.out_view("scores", {T_, Tk}, T_);
    auto& idx = c.out_i32("indices", {T_, topk});
    p.indices = {idx.data(), T_, topk, topk};
    ref::dsa_indexer(p);
  });
}

}  // namespace

std::vector<OpSpec> predecessor_ops() { return {mla_op(), dsa_indexer_op()}; }

}  // namespace dsv4::cli
