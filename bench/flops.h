// Analytic decode FLOPs per token at context L, for V4 (Flash, Pro, any V4 config) and the
// predecessors V3.2 and V3. Spec: docs/v4-architecture.md §5.
//
// Counting convention (printed beside every number): a multiply-add is 2 FLOPs; one new
// token attends a context of L tokens (itself included); the main stack only (MTP and the
// embedding lookup excluded, the output head included); norms, RoPE, softmax, top-k and
// activation functions are not counted, except the compressor's pooling (below).
//   linear      2 x the active parameters of every matrix a token passes through: attention
//               projections, mHC mixes, MoE gate + the k routed experts + the shared expert
//               (V3: dense FFN in its first layers), the head
//   attention   scores and P.V over the attended entries (§5):
//               V4 window-only 2H min(L,128) 2d; CSA 2H (min(L,128) + min(k, L/4)) 2d; HCA
//               2H (min(L,128) + L/128) 2d (d = 512, scores and P.V over the same K = V);
//               V3 2H L (dl + dr + dl); V3.2 2H min(L, 2048) (dl + dr + dl)
//   indexer     V4 CSA: floor(L/4) keys x (2 HI dI + 2 HI) + the index query projections
//               (wq_b, weights_proj); V3.2: L keys x the same + its projections (wq_b, wk,
//               weights_proj)
//   compressor  V4: the compressor projections (wkv, wgate; main and indexer) + pooling, 4
//               FLOPs per pooled value (exp, multiply, two adds) amortised over the block
//   engram      configs with Engram (docs/engram.md): every Engram layer's projections, gate
//               dots and convolution (bench/engram_cost.h); 0 when Engram is off, as in every
//               released config. Not part of `linear` (active_parameters excludes Engram).
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace dsv4 {

struct DecodeFlops {
  double linear = 0, attention = 0, indexer = 0, compressor = 0, engram = 0;
  double total() const { return linear + attention + indexer + compressor + engram; }
};

DecodeFlops decode_flops(const ModelConfig& c, int64_t L);

// Active parameters of the main stack (embedding excluded, head included).
double active_parameters(const ModelConfig& c);

// The counting convention above, one line.
std::string flops_convention();

}  // namespace dsv4
