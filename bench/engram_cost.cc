#include "bench/engram_cost.h"

#include <algorithm>

#include "reference/engram.h"
#include "reference/errors.h"

namespace dsv4 {

namespace {

void require_engram(const ModelConfig& c) {
  if (!c.engram.enabled())
    throw InputError("Engram is off in " + c.name + " (no engram.layer_ids; with a preset: --set engram=L1,L2)");
}

// Parameters of one MoE layer of c with n routed experts (router + routed + shared).
double moe_params(const ModelConfig& c, double n) {
  const double D = double(c.dim), expert = 3.0 * double(c.moe_inter_dim) * D;
  return n * D + (n + double(c.n_shared_experts)) * expert;
}

SparseLayerCost moe_side(const ModelConfig& c, double n) {
  const double D = double(c.dim), expert = 3.0 * double(c.moe_inter_dim) * D;
  SparseLayerCost s;
  s.params = moe_params(c, n);
  s.values_read = n * D + double(c.experts_per_token + c.n_shared_experts) * expert;
  s.flops = 2.0 * s.values_read;
  return s;
}

SparseLayerCost engram_side(const EngramLayerCost& l, double table_rows, double de) {
  SparseLayerCost s;
  s.params = table_rows * de + l.dense;
  s.values_read = l.gathered + l.dense;
  s.flops = l.flops;
  return s;
}

}  // namespace

EngramLayerCost engram_layer_cost(const ModelConfig& c) {
  require_engram(c);
  const EngramConfig& g = c.engram;
  const double D = double(c.dim), S = double(c.hc_mult), E = double(g.width()), K = double(g.kernel_size),
               N = double(g.max_ngram);
  EngramLayerCost l;
  l.flops = 2.0 * D * E + 2.0 * S * D * E + 2.0 * S * D + 2.0 * K * S * D;
  l.gathered_rows = double(g.slots());
  l.gathered = l.gathered_rows * double(g.head_dim());
  l.dense = (1.0 + S) * D * E + (1.0 + S) * D + 3.0 * S * D + S * D * K;
  l.state_bytes = kEngramIdBytes * (N - 1.0) + kEngramStateValueBytes * (K - 1.0) * N * S * D;
  return l;
}

EngramModelCost engram_model_cost(const ModelConfig& c) {
  EngramModelCost m;
  m.layer = engram_layer_cost(c);
  const EngramConfig& g = c.engram;
  m.layers = int64_t(g.layer_ids.size());
  for (const auto& primes : engram_primes(m.layers, g.vocab_size, g.heads_per_ngram))
    for (int64_t p : primes) m.table_rows += double(p);
  m.table_bytes = m.table_rows * double(g.head_dim()) * kEngramTableBytes;
  m.state_bytes = double(m.layers) * m.layer.state_bytes;
  m.flops = double(m.layers) * m.layer.flops;
  return m;
}

std::vector<EngramVsMoe> engram_vs_moe(const ModelConfig& c) {
  require_engram(c);
  if (c.arch != Arch::v4 || c.n_routed_experts <= 0 || c.moe_inter_dim <= 0)
    throw InputError("engram_vs_moe: " + c.name + " has no V4 MoE layer to compare with");
  const EngramLayerCost l = engram_layer_cost(c);
  const double de = double(c.engram.head_dim()), D = double(c.dim), expert = 3.0 * double(c.moe_inter_dim) * D;
  const std::vector<int64_t> primes = engram_primes(1, c.engram.vocab_size, c.engram.heads_per_ngram).front();
  double own_rows = 0;
  for (int64_t p : primes) own_rows += double(p);

  std::vector<EngramVsMoe> out;
  auto at_budget = [&](const std::string& what, double P) {
    EngramVsMoe r;
    r.budget = what;
    r.budget_params = P;
    // MoE: solve P = n D + (n + n_shared) 3 I D for n; never fewer experts than a token uses.
    r.moe_experts = std::max(double(c.experts_per_token), (P - double(c.n_shared_experts) * expert) / (D + expert));
    r.moe = moe_side(c, r.moe_experts);
    r.engram_table_rows = std::max(0.0, (P - l.dense) / de);
    r.engram = engram_side(l, r.engram_table_rows, de);
    out.push_back(r);
  };
  at_budget("moe layer", moe_params(c, double(c.n_routed_experts)));
  at_budget("engram layer", own_rows * de + l.dense);
  return out;
}

ModelConfig preset_with_engram(const std::string& preset) {
  ModelConfig c = config_preset(preset);
  config_set_engram(c, "engram=1");
  config_validate(c);
  return c;
}

std::string engram_cost_convention() {
  return "per token per Engram layer; multiply-add = 2; FLOPs = 2 D E (value) + 2 S D E (keys) + 2 S D (gate dots) + "
         "2 K S D (convolution), norms and activations not counted; reads = (N-1) Hn rows of de values + the dense "
         "parameters; decode state = (N-1) int32 ids + (K-1) N S D floats per sequence; tables are host-resident "
         "(BF16 as stored), not KV";
}

}  // namespace dsv4
