// Multi-head latent attention in the absorbed form: the attention core of DeepSeek-V3
// (dense causal) and V3.2 (over the tokens the DSA indexer selects). Spec:
// docs/v4-architecture.md §1.2, §2.10; op-contract.md `mla`.
//
// Keys are the cached [latent c_j (dl) ; rotated k_pe_j (dr)] rows; values are the latent
// part only. Queries are already absorbed: q = [W_uk^T q_nope (dl) ; rotated q_pe (dr)].
// Query row r has position p = pos0 + r (pos0 defaults to Tk - T); kv row j has position j.
//   visible j: j <= p; dense: every visible j; with indices: indices[r, :] skipping -1 and
//   future rows (duplicates count twice)
//   s_j = scale * q[r, h, :] . kv[j, :]           (dl + dr dims)
//   o[r, h, :] = sum_j softmax_j(s_j) kv[j, 0:dl]  (no sink)
// V3 uses scale = 1/sqrt(192) * mscale^2 (v3_softmax_scale()); the default is
// 1/sqrt(dl + dr). The caller maps o back through W_uv and wo.
// Shapes: q [T, H*(dl+dr)], kv [Tk, dl+dr], indices [T, k] or empty -> o [T, H*dl],
// lse [T, H] optional.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct MlaParams {
  View2<const T> q;              // [T, H*(dl+dr)]
  View2<const T> kv;             // [Tk, dl+dr]
  View2<const int32_t> indices;  // [T, k] or data == nullptr (dense)
  int64_t heads = 0;
  int64_t latent_dim = kMlaLatentDim;  // dl
  double scale = 0;                    // 0: 1/sqrt(dl + dr)
  int64_t pos0 = -1;                   // -1: Tk - T (the queries are the last T cached rows)
  View2<T> o;    // [T, H*dl]
  View2<T> lse;  // [T, H], optional
};

namespace ref {
template <class T>
void mla(const MlaParams<T>& p);
}  // namespace ref

}  // namespace dsv4
