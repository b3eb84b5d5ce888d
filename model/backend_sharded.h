// The sharded backend: one rank's part of a tensor- and expert-parallel V4, over the
// communication layer (comm/comm.h). The model code (model/model.h) is unchanged: it calls
// the Backend interface on every rank, and every rank ends each sub-layer with the same
// activations as an unsharded run (up to the rounding of the split reductions).
//
// Layout (model/plan.h): N ranks, tp | N, ep | N. Tensor-parallel groups are tp consecutive
// ranks (tp rank = rank % tp), expert-parallel groups ep consecutive ranks (ep rank =
// rank % ep). A rank holds:
//   attention   heads [t H/tp, (t+1) H/tp) of wq_b and attn_sink, output groups
//               [t g/tp, (t+1) g/tp) of wo_a and the matching input columns of wo_b (t = tp
//               rank); wq_a/q_norm, the window KV, the compressors and the indexer replicated.
//               It runs the reference attention sub-layer with H/tp heads and g/tp groups and
//               gets the partial y = wo_b[:, its columns] z[its columns]; one all_reduce_sum
//               over the TP group gives y. Exact up to rounding when every wo_b input block
//               of kActBlock (FP8 activation quantisation) lies in one rank's columns, i.e.
//               o_rank % 128 == 0 (v4-tiny, V4-Flash, V4-Pro).
//   MoE         routed experts [e E/ep, (e+1) E/ep) (e = ep rank); router, hash table and the
//               shared expert replicated. Each rank routes its share of the tokens (rows
//               [t n/tp, (t+1) n/tp) of the n its TP group holds), sends every (token, expert)
//               pair to the expert's owner with all_to_all_v over the EP group (uneven counts),
//               the owner runs its experts on what it received (in the inner backend, which
//               holds this rank's slice: Backend::expert) and sends the weighted outputs
//               back the same way; the rank adds them in expert order (ref::moe's order) and
//               the shared expert for its rows, and one all_reduce_sum over the TP group
//               assembles all n rows. The shared expert is replicated rather than split tp-way
//               (plan.h counts it split): split, its FP8 block of 128 intermediate values
//               straddles ranks when moe_inter / tp < 128 (v4-tiny: 128 / 2).
//   embed, head replicated (plan.h counts them vocab-split; at these sizes it does not matter).
// Every layout runs the same tokens on every rank (data-parallel replicas repeat the work).
// Weights: the whole checkpoint is loaded on every rank and sliced here (fine for the tiny
// preset and any model that fits one host).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <vector>

#include "comm/comm.h"
#include "model/backend.h"

namespace dsv4 {

struct ParallelLayout {
  int tp = 1;  // tensor-parallel attention ranks
  int ep = 1;  // expert-parallel MoE ranks
};

// InputError naming the constraint unless (tp, ep) is a layout of `world` ranks for `c`:
// tp, ep >= 1; tp | world, ep | world; tp | heads, tp | o_groups, ep | routed experts.
void check_layout(const ModelConfig& c, int world, ParallelLayout l);

class ShardedBackend : public Backend {
 public:
  // Experts [first, first + count) live on this rank.
  virtual int64_t first_expert() const = 0;
  // (token, expert) pairs this rank's experts computed, per local expert, since construction
  // (every layer, MTP included).
  virtual const std::vector<int64_t>& expert_tokens() const = 0;
};

// Makes the backend that runs this rank's slice of the weights (everything but the routed
// experts, which the sharded backend runs itself): the reference backend when empty, or e.g.
// the CUDA backend (model/backend_factory.h). Activations cross to the communication layer
// through its download/upload.
using InnerBackendFactory = std::function<std::unique_ptr<Backend>(ModelWeights, BackendOptions)>;

struct ShardedOptions {
  InnerBackendFactory inner;  // empty: the reference backend
  // Run the collectives on the inner backend's buffers (Backend::device_data) rather than on
  // host copies: what a device transport needs (NCCL takes device pointers). Unset: exactly
  // when the world's transport is "nccl". The attention all-reduce then runs in place on f;
  // the MoE's host-side dispatch / combine stage their vectors through inner buffers.
  std::optional<bool> on_backend_buffers;
  std::shared_ptr<comm::Comm> keep;  // a communicator the backend keeps alive (the world it split)
};

// This rank's shard of `weights` under layout `l` over `world` (which must outlive the
// backend; its TP and EP groups are split from it here: a collective call).
std::unique_ptr<ShardedBackend> make_sharded_backend(ModelWeights weights, BackendOptions options,
                                                     comm::Comm& world, ParallelLayout l,
                                                     const ShardedOptions& sharded = {});

}  // namespace dsv4
