// Core V4 attention: one softmax over the sliding window and the compressed entries, with
// a per-head sink. Spec: docs/v4-architecture.md §2.5 (math), §2.8 (visibility).
//
// Query row r has position p = pos0 + r. Window row j of kv has position
// base + j, base = pos0 + T - Tk. The index set of row r:
//   window:     kv rows with position in [p - window + 1, p]
//   compressed: indices == none -> every visible entry j (HCA, dense);
//               indices given   -> indices[r, :], skipping -1 and entries not visible
//               (a duplicated index counts twice, as in the official kernels);
//   visible:    ratio*j + ratio - 1 <= p.
// For every head h (K = V shared by all heads):
//   s_j = scale * q[r, h, :] . e_j
//   lse = ln(exp(sink[h]) + sum_j exp(s_j))
//   o[r, h, :] = sum_j exp(s_j - lse) e_j                   (the sink has a zero value)
// Shapes: q [T, H*d], kv [Tk, d] (Tk >= T), comp [N, d] (N may be 0), sink [H],
// indices [T, k] int32 or empty -> o [T, H*d] (before inverse RoPE), lse [T, H] optional.
// Overwrites o and lse. Window-only layers pass N = 0 and no indices. Decode is T = 1
// with pos0 = t and kv = the last min(t + 1, window) window entries.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct AttentionParams {
  View2<const T> q;                  // [T, H*d]
  View2<const T> kv;                 // [Tk, d]
  View2<const T> comp;               // [N, d]
  const T* sink = nullptr;           // [H]
  View2<const int32_t> indices;      // [T, k], or data == nullptr for dense
  int64_t heads = 0;
  int64_t ratio = kCsaRatio;
  int64_t window = kWindow;
  double scale = 0;                  // 0: 1/sqrt(d)
  int64_t pos0 = 0;
  View2<T> o;                        // [T, H*d]
  View2<T> lse;                      // [T, H], optional
};

namespace ref {
template <class T>
void attention(const AttentionParams<T>& p);
}  // namespace ref

}  // namespace dsv4
