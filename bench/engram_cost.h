// Analytic cost of Engram (docs/engram.md) for `dsv4 kv`, `dsv4 flops` and `dsv4 bench`: what
// one Engram layer computes, reads and keeps per token, and how that compares with the MoE
// layer it would replace at the same parameter budget.
//
// Shapes of one Engram layer (config c, EngramConfig g): D = c.dim, S = c.hc_mult streams,
// N = g.max_ngram, Hn = g.heads_per_ngram, de = g.head_dim(), E = g.width() = (N-1) Hn de,
// K = g.kernel_size; the layer's table has the sum of its (N-1) Hn primes as rows.
//
// Per token, per Engram layer (a multiply-add = 2 FLOPs; the bench/flops.h convention):
//   FLOPs       2 D E (value projection) + 2 S D E (the S key projections)
//               + 2 S D (the gate dots) + 2 K S D (the depthwise convolution);
//               the three RMSNorms, the sigmoid, the SiLU and the residual add are not
//               counted (norms and activations are not, anywhere in bench/flops.h)
//   gathered    (N-1) Hn de = E table values, from (N-1) Hn random rows
//   dense       the parameters every token reads besides the rows:
//               (1 + S) D E (projections) + (1 + S) D (biases) + 3 S D (key, query and
//               convolution norms) + S D K (convolution)
// Per sequence, per Engram layer (the decode state a cache carries): the last N-1 canonical
// ids (int32) and the last (K-1) N rows of Z [S D] (float):
//   state bytes = 4 (N-1) + 4 (K-1) N S D
// Per model: the tables, host-resident and not part of the KV cache, at their stored element
// size (BF16 as dsv4 init writes them: 2 bytes).
//
// Engram vs MoE at one parameter budget P (per token, decode at batch 1, so every value a token
// needs is read for it alone):
//   MoE     P = n_routed D (router) + (n_routed + n_shared) 3 I D; with the config's I, k and
//           n_shared, n_routed = (P - 3 I D n_shared) / (D + 3 I D) (at least k);
//           FLOPs = 2 (n_routed D + (k + n_shared) 3 I D); values read = the same / 2
//   Engram  P = table rows x de + dense; FLOPs as above; values read = E + dense
// Bytes are values x kCompareBytesPerValue (BF16 for both, so that the ratio is one of values;
// the release stores V4's experts in FP4, ~4x fewer bytes for the MoE side).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv4 {

inline constexpr double kEngramIdBytes = 4;       // a canonical id in the decode state (int32)
inline constexpr double kEngramStateValueBytes = 4;  // a Z value in the decode state (float)
inline constexpr double kEngramTableBytes = 2;    // a table value as stored (BF16, dsv4 init)
inline constexpr double kCompareBytesPerValue = 2;  // BF16: both sides of engram_vs_moe

struct EngramLayerCost {
  double flops = 0;         // per token
  double gathered = 0;      // table values per token (E)
  double gathered_rows = 0;  // table rows per token ((N-1) Hn)
  double dense = 0;         // other parameters read per token
  double state_bytes = 0;   // decode state per sequence
};

// The per-layer cost (the same for every Engram layer of c). Throws InputError when Engram
// is off.
EngramLayerCost engram_layer_cost(const ModelConfig& c);

struct EngramModelCost {
  int64_t layers = 0;
  EngramLayerCost layer;
  double table_rows = 0;    // every layer's table rows (their primes) summed
  double table_bytes = 0;   // table_rows x de x kEngramTableBytes
  double state_bytes = 0;   // layers x layer.state_bytes
  double flops = 0;         // layers x layer.flops, per token
};
EngramModelCost engram_model_cost(const ModelConfig& c);

// One side of the comparison at a parameter budget.
struct SparseLayerCost {
  double params = 0;       // parameters of the layer (the budget, as realised)
  double flops = 0;        // per token
  double values_read = 0;  // per token
  double bytes() const { return values_read * kCompareBytesPerValue; }
};
struct EngramVsMoe {
  std::string budget;  // what set the budget ("moe layer", "engram layer")
  double budget_params = 0;
  double moe_experts = 0;   // routed experts the MoE of this budget has (fractional: analytic)
  double engram_table_rows = 0;
  SparseLayerCost moe, engram;
};
// Both sides at the budget of c's own MoE layer and at the budget of c's own Engram layer
// (the first one's primes). Needs a V4 config with Engram enabled.
std::vector<EngramVsMoe> engram_vs_moe(const ModelConfig& c);

// `preset` with Engram at layer 1 and the published defaults (model/config.h EngramConfig;
// what `dsv4 init --preset P --set engram=1` writes): the shapes of the bench cases
// (bench/cases_engram.cc) and of the measured comparison (bench/derive.h EngramVsMoeRow).
ModelConfig preset_with_engram(const std::string& preset);

// The counting convention above, one line (printed beside the numbers).
std::string engram_cost_convention();

}  // namespace dsv4
