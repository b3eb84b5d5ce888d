// Lightning indexer of CSA layers: index queries, scores over compressed keys, top-k.
// Spec: docs/v4-architecture.md §2.4, §2.8 (visibility), §2.9 (decode order).
//
// indexer_query (per token t, position pos0 + r):
//   q^I = Wq_b^I c_q -> [HI, dI]; RoPE on the last d_r dims at t (the layer's table);
//   with `quant`: normalised Hadamard of each head, then FP4 round trip (blocks of 32);
//   w = Wweights x * dI^-1/2 * HI^-1/2                                      [HI]
//   (`act_quant`: FP8 round trip of c_q in blocks of 128 before Wq_b, as the official
//   FP8 linear does; weights_proj is BF16 and unquantised, §9.4.)
//
// indexer (scores and selection), query row r at position p = pos0 + r:
//   visible j: m*j + m - 1 <= p and j < N   (only completed blocks, §2.8)
//   scores[r, j] = sum_h w[r, h] * ReLU(q[r, h, :] . k[j, :])   visible j, else -inf
//   indices[r, :] = the min(topk, #visible) visible j of highest score, sorted by
//   descending score, ties to the lower j, then padded with -1.
// Shapes: q [T, HI*dI], k [N, dI], w [T, HI] -> scores [T, N] (optional), indices [T, topk].
// The V3.2 token-level indexer is the same scoring with ratio 1: reference/dsa_indexer.h.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct IndexerQueryParams {
  View2<const T> cq;               // [T, q_rank]  compressed query (§2.1 step 1)
  View2<const T> x;                // [T, D]       sub-layer input
  const T* wq_b = nullptr;         // [HI*dI, q_rank]
  const T* weights_proj = nullptr;  // [HI, D]
  int64_t heads = kIndexerHeads;
  int64_t head_dim = kIndexerDim;
  int64_t pos0 = 0;
  RopeConfig rope = rope_v4_compressed();
  bool quant = false;      // Hadamard + FP4 round trip of q (the official simulation)
  bool act_quant = false;  // FP8 round trip of c_q before wq_b
  View2<T> q;              // [T, HI*dI] out
  View2<T> w;              // [T, HI] out, scaled
};

template <class T>
struct IndexerParams {
  View2<const T> q;  // [T, HI*dI] prepared queries
  View2<const T> k;  // [N, dI] compressed indexer keys
  View2<const T> w;  // [T, HI] scaled head weights
  int64_t heads = kIndexerHeads;
  int64_t ratio = kCsaRatio;
  int64_t topk = 512;
  int64_t pos0 = 0;
  View2<T> scores;           // [T, N] out, optional (data == nullptr: not written)
  View2<int32_t> indices;    // [T, topk] out
};

namespace ref {
template <class T>
void indexer_query(const IndexerQueryParams<T>& p);
template <class T>
void indexer(const IndexerParams<T>& p);
}  // namespace ref

}  // namespace dsv4
