// dsv4 op: mHC (Sinkhorn, pre-mix, post-mix, head) and MoE routing / experts (op-contract.md).
#include "cli/op_spec.h"
#include "reference/hc_post.h"
#include "reference/hc_pre.h"
#include "reference/moe.h"
#include "reference/moe_route.h"
#include "reference/sinkhorn.h"

namespace dsv4::cli {

namespace {

OpSpec sinkhorn_op() {
  OpSpec s;
  s.name = "sinkhorn";
  s.summary = "row softmax + eps, column-normalise, then iters-1 rounds of row/column normalisation";
  s.spec_ref = "v4-architecture.md §3.1 step 5";
  s.cuda_kernel = "optimized/sinkhorn.cuh";
  s.inputs = {{"logits", {"R", "n", "n"}}};
  s.outputs = {{"m", {"R", "n", "n"}}};
  s.keys = {{"iters", "20", "rounds (the sequence is the semantics)"}, {"eps", "1e-6", ""}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], n = c.dims["n"];
    auto& m = c.out("m", {R, n, n});
    ref::sinkhorn<T>({c.real("logits").data(), m.data(), R, n, c.keys.integer("iters"), c.keys.real("eps")});
  });
}

OpSpec hc_pre_op() {
  OpSpec s;
  s.name = "hc_pre";
  s.summary = "mHC pre-mix: u = sum_j pre_j X_j, with post weights and the Sinkhorn mixing matrix";
  s.spec_ref = "v4-architecture.md §3.1";
  s.cuda_kernel = "optimized/hc_pre.cuh";
  s.inputs = {{"x", {"T", "n", "D"}},
              {"fn", {"2*n+n*n", "n*D"}},
              {"base", {"2*n+n*n"}},
              {"scale", {"3"}}};
  s.outputs = {{"u", {"T", "D"}}, {"post", {"T", "n"}}, {"comb", {"T", "n", "n"}}};
  s.keys = {{"iters", "20", "Sinkhorn rounds"},
            {"eps", "1e-6", "pre + eps and Sinkhorn eps"},
            {"norm_eps", "1e-6", "eps inside the RMS"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
    HcPreParams<T> p;
    p.x = c.view("x", T_);
    p.fn = c.ptr("fn");
    p.base = c.ptr("base");
    p.scale = c.ptr("scale");
    p.n = n;
    p.iters = c.keys.integer("iters");
    p.eps = c.keys.real("eps");
    p.norm_eps = c.keys.real("norm_eps");
    p.u = c.out_view("u", {T_, D}, T_);
    p.post = c.out_view("post", {T_, n}, T_);
    p.comb = c.out_view("comb", {T_, n, n}, T_);
    ref::hc_pre(p);
  });
}

OpSpec hc_head_op() {
  OpSpec s;
  s.name = "hc_head";
  s.summary = "the final head's mHC reduction: u = sum_j (sigmoid(a mu_j + b_j) + eps) X_j";
  s.spec_ref = "v4-architecture.md §3.1 (final head)";
  s.cuda_kernel = "optimized/hc_pre.cuh";
  s.inputs = {{"x", {"T", "n", "D"}}, {"fn", {"n", "n*D"}}, {"base", {"n"}}, {"scale", {"1"}}};
  s.outputs = {{"u", {"T", "D"}}};
  s.keys = {{"eps", "1e-6", ""}, {"norm_eps", "1e-6", "eps inside the RMS"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
    HcHeadParams<T> p;
    p.x = c.view("x", T_);
    p.fn = c.ptr("fn");
    p.base = c.ptr("base");
    p.scale = c.ptr("scale");
    p.n = n;
    p.eps = c.keys.real("eps");
    p.norm_eps = c.keys.real("norm_eps");
    p.u = c.out_view("u", {T_, D}, T_);
    ref::hc_head(p);
  });
}

OpSpec hc_post_op() {
  OpSpec s;
  s.name = "hc_post";
  s.summary = "mHC post-mix: y_k = post_k f + sum_j comb[j,k] X_j";
  s.spec_ref = "v4-architecture.md §3.1";
  s.cuda_kernel = "optimized/hc_post.cuh";
  s.inputs = {{"x", {"T", "n", "D"}}, {"f", {"T", "D"}}, {"post", {"T", "n"}}, {"comb", {"T", "n", "n"}}};
  s.outputs = {{"y", {"T", "n", "D"}}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
    ref::hc_post<T>({c.view("x", T_), c.view("f", T_), c.view("post", T_), c.view("comb", T_), n,
                     c.out_view("y", {T_, n, D}, T_)});
  });
}

ScoreFunc score_of(const Keys& k) {
  const std::string s = k.choice("score", {"sqrtsoftplus", "sigmoid", "softmax"});
  return s == "sigmoid" ? ScoreFunc::sigmoid : s == "softmax" ? ScoreFunc::softmax : ScoreFunc::sqrt_softplus;
}

template <class T>
MoeRouteParams<T> route_params(OpContext<T>& c, const std::string& op, std::vector<int64_t>& tid) {
  const int64_t T_ = c.dims["T"], E = c.dims["E"], k = c.keys.integer("topk");
  MoeRouteParams<T> p;
  p.x = c.view("x", T_);
  p.gate = c.ptr("gate");
  p.bias = c.ptr("bias");
  if (c.has("tid2eid")) {
    require(c.has("ids"), "op '" + op + "': tensor 'ids' [T] is required with 'tid2eid'");
    const auto& sh = c.shape("tid2eid");
    require(sh[1] == k, "op '" + op + "': tensor 'tid2eid': expected shape [V, topk] = [" +
                            std::to_string(sh[0]) + ", " + std::to_string(k) + "], found " +
                            shape_string(sh));
    tid = c.integer("tid2eid");
    p.tid2eid = {tid.data(), sh[0], sh[1], sh[1]};
    p.ids = c.integer("ids").data();
  }
  p.experts = E;
  p.topk = k;
  p.route_scale = c.keys.real("route_scale");
  p.score = score_of(c.keys);
  return p;
}

std::vector<TensorSpec> route_inputs() {
  return {{"x", {"T", "D"}},
          {"gate", {"E", "D"}},
          {"bias", {"E"}, Elem::real, true, false, "selection bias (score routing)"},
          {"tid2eid", {"V", "K"}, Elem::integer, true, false, "hash routing table (I64)"},
          {"ids", {"T"}, Elem::integer, true, false, "token ids (hash routing)"}};
}

std::vector<KeySpec> route_keys() {
  return {{"topk", "6", "experts per token"},
          {"route_scale", "1.5", "multiplies the normalised weights"},
          {"score", "sqrtsoftplus", "sqrtsoftplus | sigmoid | softmax"}};
}

OpSpec moe_route_op() {
  OpSpec s;
  s.name = "moe_route";
  s.summary = "router: sqrt(softplus) scores, top-k of score+bias (or tid2eid[ids]), normalised weights";
  s.spec_ref = "v4-architecture.md §3.2";
  s.cuda_kernel = "optimized/moe_route.cuh";
  s.inputs = route_inputs();
  s.outputs = {{"experts", {"T", "topk"}, Elem::integer, "descending score+bias, ties to the lower id"},
               {"weights", {"T", "topk"}}};
  s.keys = route_keys();
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    std::vector<int64_t> tid;
    MoeRouteParams<T> p = route_params(c, "moe_route", tid);
    const int64_t T_ = c.dims["T"], k = p.topk;
    auto& e = c.out_i32("experts", {T_, k});
    p.chosen = {e.data(), T_, k, k};
    p.weights = c.out_view("weights", {T_, k}, T_);
    ref::moe_route(p);
  });
}

OpSpec moe_op() {
  OpSpec s;
  s.name = "moe";
  s.summary = "routed SwiGLU experts (clamped) weighted by the router, plus the shared expert";
  s.spec_ref = "v4-architecture.md §3.2";
  s.cuda_kernel = "optimized/moe.cuh";
  s.inputs = route_inputs();
  s.inputs.push_back({"w1", {"E", "I", "D"}});
  s.inputs.push_back({"w3", {"E", "I", "D"}});
  s.inputs.push_back({"w2", {"E", "D", "I"}});
  s.inputs.push_back({"shared_w1", {"I", "D"}, Elem::real, true});
  s.inputs.push_back({"shared_w3", {"I", "D"}, Elem::real, true});
  s.inputs.push_back({"shared_w2", {"D", "I"}, Elem::real, true});
  s.outputs = {{"y", {"T", "D"}}, {"experts", {"T", "topk"}, Elem::integer}, {"weights", {"T", "topk"}}};
  s.keys = route_keys();
  s.keys.push_back({"swiglu_limit", "10", "clamp of the SwiGLU inputs (<= 0: off)"});
  s.check = [](const Keys&, const Dims&, const std::map<std::string, bool>& present) {
    const bool a = present.at("shared_w1"), b = present.at("shared_w3"), c = present.at("shared_w2");
    require(a == b && b == c, "op 'moe': tensors 'shared_w1', 'shared_w3', 'shared_w2' must be given together");
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    std::vector<int64_t> tid;
    MoeParams<T> p;
    p.route = route_params(c, "moe", tid);
    const int64_t T_ = c.dims["T"], k = p.route.topk, D = c.dims["D"];
    auto& e = c.out_i32("experts", {T_, k});
    p.route.chosen = {e.data(), T_, k, k};
    p.route.weights = c.out_view("weights", {T_, k}, T_);
    p.w1 = c.ptr("w1");
    p.w3 = c.ptr("w3");
    p.w2 = c.ptr("w2");
    p.shared_w1 = c.ptr("shared_w1");
    p.shared_w3 = c.ptr("shared_w3");
    p.shared_w2 = c.ptr("shared_w2");
    p.inter = c.dims["I"];
    p.swiglu_limit = c.keys.real("swiglu_limit");
    p.y = c.out_view("y", {T_, D}, T_);
    ref::moe(p);
  });
}

}  // namespace

std::vector<OpSpec> mhc_moe_ops() {
  return {sinkhorn_op(), hc_pre_op(), hc_post_op(), hc_head_op(), moe_route_op(), moe_op()};
}

}  // namespace dsv4::cli
