// Online softmax (flash-attention style), shared by the V4 attention and MLA references:
// the softmax-weighted sum of value rows, fed kOnlineSoftmaxBlock rows at a time.
//
//   per head h, over blocks B of rows:  P = scale * q_h K_B^T
//     m' = max(m, max P),  a = exp(m - m'),  l = a l + sum exp(P - m'),  O = a O + exp(P - m') V_B
//   after every row is fed: O / l = softmax(scale q K^T) V,  m + ln(l) = the log-sum-exp.
//
// A block stays in cache between the score GEMM and the P.V GEMM, so the rows are read from
// memory once (a 1M-context HCA row reads 8K entries, 16 MiB; dense MLA decode at 32K+ reads
// the latent cache once instead of twice) and the [H, L] scores are never held.
// Shapes: q [H, dk], keys [n, dk], vals [n, dv]; O [H, dv], m, l [H]. Internal to reference/.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "reference/eigen_util.h"

namespace dsv4::ref {

inline constexpr int64_t kOnlineSoftmaxBlock = 256;

template <class T>
struct OnlineSoftmax {
  Mat<T> O, P;  // [H, dv], [H, kOnlineSoftmaxBlock]
  Vec<T> m, l;  // running maximum and sum of exponentials per head
  void reset(int64_t H, int64_t dv) {
    O.setZero(H, dv);
    m.setConstant(H, -std::numeric_limits<T>::infinity());
    l.setZero(H);
  }
  template <class Q, class K, class V>
  void add(const Q& q, const K& keys, const V& vals, T scale) {
    const int64_t H = q.rows();
    for (int64_t j0 = 0; j0 < keys.rows(); j0 += kOnlineSoftmaxBlock) {
      const int64_t n = std::min(kOnlineSoftmaxBlock, keys.rows() - j0);
      P.resize(H, n);
      P.noalias() = q * keys.middleRows(j0, n).transpose();
      P *= scale;
      for (int64_t h = 0; h < H; ++h) {
        const T mx = std::max(m(h), P.row(h).maxCoeff());
        P.row(h) = (P.row(h).array() - mx).exp();
        const T a = std::exp(m(h) - mx);  // 0 for the first block (m = -inf)
        l(h) = l(h) * a + P.row(h).sum();
        if (a != T(1)) O.row(h) *= a;
        m(h) = mx;
      }
      O.noalias() += P * vals.middleRows(j0, n);
    }
  }
};

}  // namespace dsv4::ref
