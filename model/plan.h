// `dsv4 plan`: per-rank memory of a V4 model sharded over N GPUs with tensor parallel (TP)
// attention and expert parallel (EP) MoE, and the layouts that fit.
//
// Layout (tp, ep) on N ranks: tp | N and ep | N. Attention runs tp-way tensor parallel inside
// each of dp = N / tp replicas (data parallel over sequences); the routed experts are split
// ep-way (each rank holds E / ep experts; N / ep copies of each shard).
// What each rank holds, per tensor of the checkpoint (bytes as stored: FP8/FP4 + scales):
//   split tp-way   embed and head (vocab parallel), wq_b and attn_sink (heads), wo_a (output
//                  groups), wo_b (its input columns), the shared expert (w1/w3 by rows, w2 by
//                  columns)
//   split ep-way   the routed experts (experts.E.*: rank r of an EP group holds E in
//                  [r E/ep, (r+1) E/ep))
//   replicated     wq_a and q_norm (the shared low-rank query), wkv/kv_norm, the compressors
//                  and the indexer (K = V is one MQA head shared by every query head, and the
//                  indexer's top-k must be the same on every TP rank), norms, mHC, the router
// KV cache: a replica serves ceil(B / dp) of the B sequences, and every TP rank of it holds
// their whole cache (one shared K = V head cannot be split by head): ceil(B / dp) x the
// deployment cache of one sequence at the context (kv_bytes_analytic, FP8 layout).
// Activation workspace (an estimate, BF16 activations, FP32 residual streams): one prefill
// chunk of kWorkspaceChunk tokens through one layer:
//   residual streams 2 x C x n x D x 4, query + attention output 2 x C x (H / tp) x d x 2,
//   indexer scores C x min(N_keys, kScoreTile) x 4, MoE 3 x C x k x I x 2 (routed tokens'
//   hidden), logits C_last x V / tp x 4 with C_last = 1.
// Fits: weights + KV + workspace <= (1 - kReserve) x GPU memory (kReserve for the CUDA
// context, NCCL buffers and fragmentation).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace dsv4 {

inline constexpr int64_t kWorkspaceChunk = 4096;  // prefill tokens per chunk
inline constexpr int64_t kScoreTile = 65536;      // indexer keys scored per tile
inline constexpr double kReserve = 0.05;          // share of GPU memory kept free

struct PlanRequest {
  int64_t gpus = 8;
  int64_t gpu_bytes = 0;   // memory per GPU
  int64_t context = 1 << 20;
  int64_t batch = 1;       // sequences served at once
};

struct RankMemory {
  int64_t tp = 1, ep = 1, dp = 1;
  int64_t weights = 0;      // the largest rank's weights (ranks differ by at most rounding)
  int64_t weights_replicated = 0, weights_tp = 0, weights_ep = 0;  // its parts
  int64_t kv = 0;           // KV cache of its replica's sequences
  int64_t sequences = 0;    // ceil(batch / dp)
  int64_t workspace = 0;
  int64_t total() const { return weights + kv + workspace; }
  bool fits = false;
};

// Per-rank memory of one layout; InputError when (tp, ep) is not a valid layout for the
// config on `gpus` ranks (naming the constraint: tp | N, ep | N, heads % tp, o_groups % tp,
// experts % ep).
RankMemory plan_layout(const ModelConfig& c, const PlanRequest& r, int64_t tp, int64_t ep);

// Every valid layout on r.gpus ranks, the suggestion first: among those that fit, the
// smallest tp (least attention communication), then the largest ep; when none fits, the one
// with the smallest per-rank total.
std::vector<RankMemory> plan_layouts(const ModelConfig& c, const PlanRequest& r);

// "141GiB", "141G" (GiB), "80GB" (10^9), "1.5TiB", plain bytes; InputError otherwise.
int64_t parse_bytes(const std::string& s);

}  // namespace dsv4
