// dsv4 op: normalisation, RoPE, Hadamard and the quantisers (op-contract.md).
#include "cli/op_rope_keys.h"
#include "cli/op_spec.h"
#include "reference/hadamard.h"
#include "reference/layernorm.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"
#include "reference/rope.h"

namespace dsv4::cli {

namespace {

OpSpec rmsnorm_op() {
  OpSpec s;
  s.name = "rmsnorm";
  s.summary = "y = x / sqrt(mean(x^2) + eps) * w (w optional: unweighted)";
  s.spec_ref = "v4-architecture.md §2.1, §2.2, §3.1";
  s.cuda_kernel = "optimized/rmsnorm.cuh";
  s.inputs = {{"x", {"R", "d"}}, {"w", {"d"}, Elem::real, true}};
  s.outputs = {{"y", {"R", "d"}}};
  s.keys = {{"eps", "1e-6", "added to the mean square"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], d = c.dims["d"];
    ref::rmsnorm<T>({c.view("x", R), c.ptr("w"), c.out_view("y", {R, d}, R), c.keys.real("eps")});
  });
}

OpSpec layernorm_op() {
  OpSpec s;
  s.name = "layernorm";
  s.summary = "y = (x - mean) / sqrt(var + eps) * w + b (the V3.2 indexer key norm)";
  s.spec_ref = "v4-architecture.md §2.10";
  s.cuda_kernel = "optimized/layernorm.cuh";
  s.inputs = {{"x", {"R", "d"}}, {"w", {"d"}, Elem::real, true}, {"b", {"d"}, Elem::real, true}};
  s.outputs = {{"y", {"R", "d"}}};
  s.keys = {{"eps", "1e-6", "added to the variance"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], d = c.dims["d"];
    ref::layernorm<T>({c.view("x", R), c.ptr("w"), c.ptr("b"), c.out_view("y", {R, d}, R),
                  c.keys.real("eps")});
  });
}

OpSpec rope_op() {
  OpSpec s;
  s.name = "rope";
  s.summary = "rotary embedding on the last rope_dim dims of each head; row r at position pos0+r";
  s.spec_ref = "v4-architecture.md §2.7";
  s.cuda_kernel = "optimized/rope.cuh";
  s.inputs = {{"x", {"R", "h?", "d"}, Elem::real, false, false, "[R, d] or [R, h, d]"}};
  s.outputs = {{"y", {"R", "h?", "d"}, Elem::real, "same shape as x"}};
  s.keys = rope_keys("v4-swa");
  s.keys.push_back({"inverse", "0", "1: rotate by -position (the output path's inverse RoPE)"});
  s.keys.push_back({"pos0", "0", "position of row 0"});
  s.keys.push_back({"pos_step", "1", "position step between rows (m for compressed entries)"});
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], h = c.dims["h"], d = c.dims["d"];
    auto& y = c.out("y", c.shape("x"));
    y = c.real("x");
    RopeParams<T> p{view2(y.data(), R, h * d), h, d, c.keys.integer("pos0"),
                    c.keys.integer("pos_step"), c.keys.flag("inverse"),
                    rope_from_keys(c.keys, "v4-swa")};
    ref::rope(p);
  });
}

OpSpec hadamard_op() {
  OpSpec s;
  s.name = "hadamard";
  s.summary = "y = x H / sqrt(d), the normalised Walsh-Hadamard transform (d a power of two)";
  s.spec_ref = "v4-architecture.md §2.3, §2.4";
  s.cuda_kernel = "optimized/hadamard.cuh";
  s.inputs = {{"x", {"R", "d"}}};
  s.outputs = {{"y", {"R", "d"}}};
  s.check = [](const Keys&, const Dims& d, const auto&) {
    const int64_t n = d["d"];
    require(n > 0 && (n & (n - 1)) == 0,
            "op 'hadamard': tensor 'x': last dimension must be a power of two, found " + std::to_string(n));
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], d = c.dims["d"];
    ref::hadamard<T>({c.view("x", R), c.out_view("y", {R, d}, R)});
  });
}

OpSpec quant_fp8_op() {
  OpSpec s;
  s.name = "quant_fp8";
  s.summary = "y = dequant(quant(x)): FP8 e4m3, UE8M0 scale 2^ceil(log2(max(amax,1e-4)/448)) per block, RNE";
  s.spec_ref = "v4-architecture.md §2.2, §7, §9.4";
  s.cuda_kernel = "optimized/quant_fp8.cuh";
  s.inputs = {{"x", {"R", "d"}}};
  s.outputs = {{"y", {"R", "d"}}};
  s.keys = {{"block", "64", "block length along the row"},
            {"dims", "0", "quantise columns [0, dims) (0 = all; 448 for the V4 KV layout)"}};
  s.check = [](const Keys& k, const Dims& dm, const auto&) {  // both backends
    const int64_t d = dm["d"], dims = k.integer("dims");
    require(dims >= 0 && dims <= d, "op 'quant_fp8': key 'dims': expected 0.." + std::to_string(d) +
                                        ", found " + std::to_string(dims));
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], d = c.dims["d"];
    ref::quant_fp8<T>({c.view("x", R), c.out_view("y", {R, d}, R), c.keys.integer("block"),
                       c.keys.integer("dims")});
  });
}

OpSpec quant_fp4_op() {
  OpSpec s;
  s.name = "quant_fp4";
  s.summary = "y = dequant(quant(x)): FP4 e2m1, UE8M0 scale 2^ceil(log2(max(amax,6*2^-126)/6)) per block, RNE";
  s.spec_ref = "v4-architecture.md §2.3, §7";
  s.cuda_kernel = "optimized/quant_fp4.cuh";
  s.inputs = {{"x", {"R", "d"}}};
  s.outputs = {{"y", {"R", "d"}}};
  s.keys = {{"block", "32", "block length along the row"}};
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], d = c.dims["d"];
    ref::quant_fp4<T>({c.view("x", R), c.out_view("y", {R, d}, R), c.keys.integer("block")});
  });
}

}  // namespace

std::vector<OpSpec> basic_ops() {
  return {rmsnorm_op(), layernorm_op(), rope_op(), hadamard_op(), quant_fp8_op(), quant_fp4_op()};
}

}  // namespace dsv4::cli
