// The table of expected tensors (docs/v4-architecture.md §7): which tensors a V4 config
// implies, their logical shapes, roles, init and place in ModelWeights.
#include <cmath>

#include "model/checkpoint.h"
#include "reference/errors.h"

namespace dsv4 {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

using FloatMember = std::vector<float> LayerTensors::*;
using CompMember = CompressorTensors LayerTensors::*;
using CompField = std::vector<float> CompressorTensors::*;
using LayerOf = std::function<LayerTensors&(ModelWeights&)>;

class Table {
 public:
  explicit Table(const ModelConfig& c) : c_(c) {}
  std::vector<TensorSpec> specs;

  // A tensor at the start of its own vector.
  TensorSpec& add(std::string name, std::vector<int64_t> shape, TensorRole role, InitKind init, double std,
                  std::function<std::vector<float>*(ModelWeights&)> dest) {
    TensorSpec s;
    s.name = std::move(name);
    s.shape = std::move(shape);
    s.role = role;
    s.init = init;
    s.init_std = std;
    s.dest = std::move(dest);
    s.dest_numel = s.numel();
    specs.push_back(std::move(s));
    return specs.back();
  }
  // A projection [out, in] with the variance-preserving std 1/sqrt(in).
  TensorSpec& linear(std::string name, int64_t out, int64_t in, TensorRole role,
                     std::function<std::vector<float>*(ModelWeights&)> dest, double gain = 1.0) {
    return add(std::move(name), {out, in}, role, InitKind::normal, gain / std::sqrt(double(in)), std::move(dest));
  }

  static std::function<std::vector<float>*(ModelWeights&)> at(LayerOf lt, FloatMember m) {
    return [lt, m](ModelWeights& w) { return &(lt(w).*m); };
  }
  static std::function<std::vector<float>*(ModelWeights&)> at(LayerOf lt, CompMember cm, CompField f) {
    return [lt, cm, f](ModelWeights& w) { return &((lt(w).*cm).*f); };
  }

  // mHC site weights: fn [M, nD], base [M], scale [3] (§3.1).
  void hc(const std::string& p, const char* site, LayerOf lt, FloatMember fn, FloatMember base, FloatMember scale) {
    const int64_t n = c_.hc_mult, M = (2 + n) * n;
    add(p + "hc_" + site + "_fn", {M, n * c_.dim}, TensorRole::f32, InitKind::normal, 0.1 / std::sqrt(double(n * c_.dim)),
        at(lt, fn));
    add(p + "hc_" + site + "_base", {M}, TensorRole::f32, InitKind::hc_base, 0.0, at(lt, base));
    add(p + "hc_" + site + "_scale", {3}, TensorRole::f32, InitKind::hc_scale, 0.0, at(lt, scale));
  }

  void compressor(const std::string& p, LayerOf lt, CompMember cm, int64_t ratio, int64_t dc, int64_t c) {
    const int64_t D = c_.dim;
    linear(p + "wkv.weight", c * dc, D, TensorRole::bf16_linear, at(lt, cm, &CompressorTensors::wkv));
    linear(p + "wgate.weight", c * dc, D, TensorRole::bf16_linear, at(lt, cm, &CompressorTensors::wgate));
    add(p + "ape", {ratio, c * dc}, TensorRole::f32, InitKind::normal, 0.1, at(lt, cm, &CompressorTensors::ape));
    add(p + "norm.weight", {dc}, TensorRole::norm, InitKind::norm, 0.0, at(lt, cm, &CompressorTensors::norm));
  }

  // One block: layers.L.* (main) or mtp.i.* (MTP), `layer` = index into compress_ratios.
  void layer(const std::string& p, int64_t layer, bool hash, LayerOf lt) {
    const ModelConfig& c = c_;
    const int64_t D = c.dim, H = c.n_heads, d = c.head_dim, q = c.q_lora_rank, g = c.o_groups, r = c.o_lora_rank;
    const int64_t ratio = c.ratio(layer), E = c.n_routed_experts, I = c.moe_inter_dim;
    using R = TensorRole;
    const std::string a = p + "attn.";
    add(p + "attn_norm.weight", {D}, R::norm, InitKind::norm, 0, at(lt, &LayerTensors::attn_norm));
    add(p + "ffn_norm.weight", {D}, R::norm, InitKind::norm, 0, at(lt, &LayerTensors::ffn_norm));
    linear(a + "wq_a.weight", q, D, R::fp8_linear, at(lt, &LayerTensors::wq_a));
    add(a + "q_norm.weight", {q}, R::norm, InitKind::norm, 0, at(lt, &LayerTensors::q_norm));
    linear(a + "wq_b.weight", H * d, q, R::fp8_linear, at(lt, &LayerTensors::wq_b));
    linear(a + "wkv.weight", d, D, R::fp8_linear, at(lt, &LayerTensors::wkv));
    add(a + "kv_norm.weight", {d}, R::norm, InitKind::norm, 0, at(lt, &LayerTensors::kv_norm));
    linear(a + "wo_a.weight", g * r, (H / g) * d, R::fp8_linear, at(lt, &LayerTensors::wo_a));
    linear(a + "wo_b.weight", D, g * r, R::fp8_linear, at(lt, &LayerTensors::wo_b));
    add(a + "attn_sink", {H}, R::f32, InitKind::normal, 0.5, at(lt, &LayerTensors::attn_sink));
    if (ratio > 0) {
      const int64_t cc = ratio == kCsaRatio ? 2 : 1;  // CSA overlaps two blocks (§2.3)
      compressor(a + "compressor.", lt, &LayerTensors::compressor, ratio, d, cc);
    }
    if (ratio == kCsaRatio) {
      const int64_t HI = c.index_n_heads, dI = c.index_head_dim;
      linear(a + "indexer.wq_b.weight", HI * dI, q, R::fp8_linear, at(lt, &LayerTensors::indexer_wq_b));
      linear(a + "indexer.weights_proj.weight", HI, D, R::bf16_linear, at(lt, &LayerTensors::indexer_weights_proj));
      compressor(a + "indexer.compressor.", lt, &LayerTensors::indexer_compressor, ratio, dI, 2);
    }
    hc(p, "attn", lt, &LayerTensors::hc_attn_fn, &LayerTensors::hc_attn_base, &LayerTensors::hc_attn_scale);
    hc(p, "ffn", lt, &LayerTensors::hc_ffn_fn, &LayerTensors::hc_ffn_base, &LayerTensors::hc_ffn_scale);

    const std::string f = p + "ffn.";
    linear(f + "gate.weight", E, D, R::bf16_linear, at(lt, &LayerTensors::gate));
    if (hash) {
      TensorSpec s;
      s.name = f + "gate.tid2eid";
      s.shape = {c.vocab_size, c.experts_per_token};
      s.role = R::index;
      s.init = InitKind::tid2eid;
      s.dest_int = [lt](ModelWeights& w) { return &lt(w).tid2eid; };
      s.dest_numel = s.numel();
      s.index_bound = c.n_routed_experts;
      s.index_bound_name = "n_routed_experts";
      specs.push_back(std::move(s));
    } else {
      add(f + "gate.bias", {E}, R::f32, InitKind::normal, 0.1, at(lt, &LayerTensors::gate_bias));
    }
    for (int64_t e = 0; e < E; ++e) {
      const std::string x = f + "experts." + std::to_string(e) + ".";
      linear(x + "w1.weight", I, D, R::expert, at(lt, &LayerTensors::w1)).offset = e * I * D;
      linear(x + "w2.weight", D, I, R::expert, at(lt, &LayerTensors::w2)).offset = e * D * I;
      linear(x + "w3.weight", I, D, R::expert, at(lt, &LayerTensors::w3)).offset = e * I * D;
      for (size_t k = specs.size() - 3; k < specs.size(); ++k) specs[k].dest_numel = E * I * D;
    }
    if (c.engram.index_of(layer) >= 0) engram(p + "engram.", c.engram.index_of(layer), lt);
    if (c.n_shared_experts > 0) {
      const int64_t Is = c.moe_inter_dim * c.n_shared_experts;
      linear(f + "shared_experts.w1.weight", Is, D, R::fp8_linear, at(lt, &LayerTensors::shared_w1));
      linear(f + "shared_experts.w2.weight", D, Is, R::fp8_linear, at(lt, &LayerTensors::shared_w2));
      linear(f + "shared_experts.w3.weight", Is, D, R::fp8_linear, at(lt, &LayerTensors::shared_w3));
    }
  }

  // Engram tensors of one layer (docs/engram.md), `index` = its place in engram.layer_ids.
  void engram(const std::string& p, int64_t index, LayerOf lt) {
    const ModelConfig& c = c_;
    const EngramConfig& g = c.engram;
    const int64_t D = c.dim, S = c.hc_mult, E = g.width(), de = g.head_dim();
    using R = TensorRole;
    using M = std::vector<float> EngramTensors::*;
    auto at_e = [lt](M m) {
      return [lt, m](ModelWeights& w) { return &(lt(w).engram.*m); };
    };
    const std::vector<int64_t> primes =
        engram_primes(int64_t(g.layer_ids.size()), g.vocab_size, g.heads_per_ngram)[size_t(index)];
    int64_t rows = 0;
    for (int64_t pr : primes) rows += pr;
    TensorSpec& table = add(p + "table.weight", {rows, de}, R::bf16_linear, InitKind::normal, 1.0, at_e(&EngramTensors::table));
    table.dest_mapped = [lt](ModelWeights& w) { return &lt(w).engram.mapped; };
    linear(p + "value_proj.weight", D, E, R::bf16_linear, at_e(&EngramTensors::value_w));
    add(p + "value_proj.bias", {D}, R::f32, InitKind::normal, 0.1, at_e(&EngramTensors::value_b));
    for (int64_t s = 0; s < S; ++s) {
      const std::string k = std::to_string(s);
      auto slice = [&](TensorSpec& t) {
        t.offset = s * t.numel();
        t.dest_numel = S * t.numel();
      };
      slice(linear(p + "key_proj." + k + ".weight", D, E, R::bf16_linear, at_e(&EngramTensors::key_w)));
      slice(add(p + "key_proj." + k + ".bias", {D}, R::f32, InitKind::normal, 0.1, at_e(&EngramTensors::key_b)));
      slice(add(p + "key_norm." + k + ".weight", {D}, R::norm, InitKind::norm, 0, at_e(&EngramTensors::key_norm)));
      slice(add(p + "query_norm." + k + ".weight", {D}, R::norm, InitKind::norm, 0, at_e(&EngramTensors::query_norm)));
      slice(add(p + "conv_norm." + k + ".weight", {D}, R::norm, InitKind::norm, 0, at_e(&EngramTensors::conv_norm)));
    }
    linear(p + "conv.weight", S * D, g.kernel_size, R::bf16_linear, at_e(&EngramTensors::conv_w));
  }

 private:
  const ModelConfig& c_;
};

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c, bool with_mtp) {
  require(c.arch == Arch::v4, "checkpoint: config '" + c.name + "' is " + arch_name(c.arch) +
                                  "; only deepseek_v4 checkpoints are supported");
  Table t(c);
  using R = TensorRole;
  const int64_t D = c.dim, n = c.hc_mult, V = c.vocab_size;
  t.add("embed.weight", {V, D}, R::bf16_linear, InitKind::normal, 1.0, [](ModelWeights& w) { return &w.embed; });
  t.linear("head.weight", V, D, R::bf16_linear, [](ModelWeights& w) { return &w.head; });
  t.add("norm.weight", {D}, R::norm, InitKind::norm, 0, [](ModelWeights& w) { return &w.norm; });
  t.add("hc_head_fn", {n, n * D}, R::f32, InitKind::normal, 0.1 / std::sqrt(double(n * D)),
        [](ModelWeights& w) { return &w.hc_head_fn; });
  t.add("hc_head_base", {n}, R::f32, InitKind::hc_head_base, 0, [](ModelWeights& w) { return &w.hc_head_base; });
  t.add("hc_head_scale", {1}, R::f32, InitKind::hc_scale, 0, [](ModelWeights& w) { return &w.hc_head_scale; });
  if (c.engram.enabled()) {
    TensorSpec s;
    s.name = "engram.token_map";
    s.shape = {V};
    s.role = R::index;
    s.init = InitKind::token_map;
    s.dest_int = [](ModelWeights& w) { return &w.engram_token_map; };
    s.dest_numel = V;
    s.index_bound = V;
    s.index_bound_name = "vocab_size";
    t.specs.push_back(std::move(s));
  }

  for (int64_t l = 0; l < c.n_layers; ++l) {
    const size_t i = size_t(l);
    t.layer("layers." + std::to_string(l) + ".", l, c.hash_routed(l),
            [i](ModelWeights& w) -> LayerTensors& { return w.layers[i]; });
  }
  if (!with_mtp) return std::move(t.specs);
  for (int64_t m = 0; m < c.n_mtp_layers; ++m) {
    const size_t i = size_t(m);
    const std::string p = "mtp." + std::to_string(m) + ".";
    // §9.6: never hash-routed; e = enorm(embed), X = hnorm(X); e_proj(e) + h_proj(X), so each
    // projection gets half the variance.
    t.linear(p + "e_proj.weight", D, D, R::fp8_linear, [i](ModelWeights& w) { return &w.mtp[i].e_proj; }, std::sqrt(0.5));
    t.linear(p + "h_proj.weight", D, D, R::fp8_linear, [i](ModelWeights& w) { return &w.mtp[i].h_proj; }, std::sqrt(0.5));
    t.add(p + "enorm.weight", {D}, R::norm, InitKind::norm, 0, [i](ModelWeights& w) { return &w.mtp[i].enorm; });
    t.add(p + "hnorm.weight", {D}, R::norm, InitKind::norm, 0, [i](ModelWeights& w) { return &w.mtp[i].hnorm; });
    t.layer(p, c.n_layers + m, false, [i](ModelWeights& w) -> LayerTensors& { return w.mtp[i].block; });
    t.add(p + "norm.weight", {D}, R::norm, InitKind::norm, 0, [i](ModelWeights& w) { return &w.mtp[i].norm; });
    t.add(p + "hc_head_fn", {n, n * D}, R::f32, InitKind::normal, 0.1 / std::sqrt(double(n * D)),
          [i](ModelWeights& w) { return &w.mtp[i].hc_head_fn; });
    t.add(p + "hc_head_base", {n}, R::f32, InitKind::hc_head_base, 0, [i](ModelWeights& w) { return &w.mtp[i].hc_head_base; });
    t.add(p + "hc_head_scale", {1}, R::f32, InitKind::hc_scale, 0, [i](ModelWeights& w) { return &w.mtp[i].hc_head_scale; });
  }
  return std::move(t.specs);
}

Encoding release_encoding(const ModelConfig& c, TensorRole role) {
  switch (role) {
    case TensorRole::norm:
    case TensorRole::bf16_linear: return Encoding::bf16;
    case TensorRole::f32: return Encoding::f32;
    case TensorRole::index: return Encoding::i64;
    case TensorRole::fp8_linear: return c.fp8_weights ? Encoding::fp8 : Encoding::bf16;
    case TensorRole::expert:
      if (c.expert_dtype == "fp4") return Encoding::fp4;
      if (c.expert_dtype == "fp8") return Encoding::fp8;
      if (c.expert_dtype == "bf16") return Encoding::bf16;
      return c.fp8_weights ? Encoding::fp8 : Encoding::bf16;
  }
  return Encoding::bf16;
}

StoredShape stored_shape(const ModelConfig& c, const TensorSpec& s, Encoding e) {
  StoredShape out;
  out.shape = s.shape;
  const int64_t n = s.numel();
  auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  switch (e) {
    case Encoding::bf16: out.dtype = "BF16"; out.bytes = 2 * n; break;
    case Encoding::f32: out.dtype = "F32"; out.bytes = 4 * n; break;
    case Encoding::i64: out.dtype = "I64"; out.bytes = 8 * n; break;
    case Encoding::fp8: {
      require(s.shape.size() == 2, "checkpoint: FP8 tensor '" + s.name + "' must be 2-D");
      const int64_t B = c.weight_block;
      out.dtype = "F8_E4M3";
      out.scale_dtype = "F8_E8M0";
      out.scale_shape = {cdiv(s.shape[0], B), cdiv(s.shape[1], B)};
      out.bytes = n + out.scale_shape[0] * out.scale_shape[1];
      break;
    }
    case Encoding::fp4: {
      require(s.shape.size() == 2, "checkpoint: FP4 tensor '" + s.name + "' must be 2-D");
      out.dtype = "I8";
      out.shape = {s.shape[0], cdiv(s.shape[1], 2)};
      out.scale_dtype = "F8_E8M0";
      out.scale_shape = {s.shape[0], cdiv(s.shape[1], kFp4ScaleBlock)};
      out.bytes = out.shape[0] * out.shape[1] + out.scale_shape[0] * out.scale_shape[1];
      break;
    }
  }
  return out;
}

CheckpointSize checkpoint_size(const ModelConfig& c, bool with_mtp) {
  CheckpointSize z;
  for (const auto& s : expected_tensors(c, with_mtp)) {
    ++z.tensors;
    z.parameters += s.numel();
    z.stored_bytes += stored_shape(c, s, release_encoding(c, s.role)).bytes;
    z.float_bytes += s.numel() * int64_t(s.role == TensorRole::index ? sizeof(int64_t) : sizeof(float));
  }
  return z;
}

}  // namespace dsv4
