// DeepSeek-V3.2 DSA indexer (token-level), for the comparison benchmarks.
// Spec: docs/v4-architecture.md §2.10; op-contract.md `dsa_indexer`.
//
// dsa_indexer_query (row r at position pos0 + r):
//   q = Wq_b^I c_q -> [HI, dI]; RoPE half_split on the FIRST d_r dims (V3 YaRN table);
//   Hadamard per head; with `quant`: FP8 round trip in blocks of 128
//   w = Wweights x * HI^-1/2 * dI^-1/2  (the official FP8 path folds q's scale into w; the
//   round trip here keeps it in q, which is the same product)
// dsa_indexer_keys (row j at position pos0 + j):
//   k = LayerNorm(Wk x) (weight and bias); RoPE as above; Hadamard; `quant` as above
// dsa_indexer: the indexer scoring of reference/indexer.h with ratio 1 — key j is token j,
//   visible to position p iff j <= p; top-k (2048 in V3.2) by descending score, ties to the
//   lower j, -1 padding.
// Shapes: cq [T, q_rank], x [T, D], wq_b [HI*dI, q_rank], weights_proj [HI, D],
//   wk [dI, D], k_norm w/b [dI] -> q [T, HI*dI], w [T, HI], k [T, dI].
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/indexer.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct DsaQueryParams {
  View2<const T> cq;                // [T, q_rank]
  View2<const T> x;                 // [T, D]
  const T* wq_b = nullptr;          // [HI*dI, q_rank]
  const T* weights_proj = nullptr;  // [HI, D]
  int64_t heads = kIndexerHeads;
  int64_t head_dim = kIndexerDim;
  int64_t pos0 = 0;
  RopeConfig rope = rope_v32_indexer();
  bool quant = false;
  View2<T> q;  // [T, HI*dI]
  View2<T> w;  // [T, HI]
};

template <class T>
struct DsaKeyParams {
  View2<const T> x;            // [T, D]
  const T* wk = nullptr;       // [dI, D]
  const T* norm_w = nullptr;   // [dI]
  const T* norm_b = nullptr;   // [dI]
  int64_t head_dim = kIndexerDim;
  int64_t pos0 = 0;
  RopeConfig rope = rope_v32_indexer();
  double eps = kNormEps;
  bool quant = false;
  View2<T> k;  // [T, dI]
};

namespace ref {
template <class T>
void dsa_indexer_query(const DsaQueryParams<T>& p);
template <class T>
void dsa_indexer_keys(const DsaKeyParams<T>& p);
// IndexerParams with ratio ignored (always 1); topk is typically kDsaTopk.
template <class T>
void dsa_indexer(const IndexerParams<T>& p);
}  // namespace ref

}  // namespace dsv4
