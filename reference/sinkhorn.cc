#include "reference/sinkhorn.h"

#include <algorithm>
#include <cmath>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/simd.h"

namespace dsv4::ref {

// Items are normalised kPacket<T> at a time, one item per SIMD lane: the buffer holds entry
// (i, j) of every lane's matrix as one packet (m[(i n + j) W + lane]). Per lane this is the
// scalar sequence exactly (the same additions from 0 in the same order, IEEE division), so the
// result is that of one item at a time; the 20 x 2 rounds of n^2 divisions per item go W at
// a time: 256 items (n = 4, 20 rounds, float) 0.26-0.28 -> 0.04 ms, which was 4 % of the
// 256-token mhc_prefill case.
// The row softmax (n^2 exp per item) stays scalar, per lane. Lanes past the last item copy
// its softmax and are not stored.
template <class T>
void sinkhorn(const SinkhornParams<T>& p) {
  require(p.n > 0, "sinkhorn: n must be positive");
  require(p.iters >= 1, "sinkhorn: key 'iters' must be >= 1, found " + std::to_string(p.iters));
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  const int64_t n = p.n, nn = n * n;
  const T eps = T(p.eps);
  const P peps = ei::pset1<P>(eps);
  Vec<T> buf(nn * W), sum(n * W);  // Eigen's allocation: packet-aligned
  T* const m = buf.data();
  for (int64_t r0 = 0; r0 < p.items; r0 += W) {
    const int64_t lanes = std::min<int64_t>(W, p.items - r0);
    for (int64_t l = 0; l < lanes; ++l) {  // row softmax + eps of lane l's item
      const T* L = p.logits + (r0 + l) * nn;
      for (int64_t i = 0; i < n; ++i) {
        T mx = L[i * n];
        for (int64_t j = 1; j < n; ++j) mx = std::max(mx, L[i * n + j]);
        T s = 0;
        for (int64_t j = 0; j < n; ++j) s += (m[(i * n + j) * W + l] = std::exp(L[i * n + j] - mx));
        for (int64_t j = 0; j < n; ++j) m[(i * n + j) * W + l] = m[(i * n + j) * W + l] / s + eps;
      }
    }
    for (int64_t l = lanes; l < W; ++l)
      for (int64_t k = 0; k < nn; ++k) m[k * W + l] = m[k * W + lanes - 1];
    auto at = [&](int64_t i, int64_t j) { return m + (i * n + j) * W; };
    auto col_norm = [&] {
      for (int64_t j = 0; j < n; ++j) ei::pstore(sum.data() + j * W, ei::pset1<P>(T(0)));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          ei::pstore(sum.data() + j * W, ei::padd(ei::pload<P>(sum.data() + j * W), ei::pload<P>(at(i, j))));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          ei::pstore(at(i, j), ei::pdiv(ei::pload<P>(at(i, j)), ei::padd(ei::pload<P>(sum.data() + j * W), peps)));
    };
    auto row_norm = [&] {
      for (int64_t i = 0; i < n; ++i) {
        P s = ei::pset1<P>(T(0));
        for (int64_t j = 0; j < n; ++j) s = ei::padd(s, ei::pload<P>(at(i, j)));
        const P d = ei::padd(s, peps);
        for (int64_t j = 0; j < n; ++j) ei::pstore(at(i, j), ei::pdiv(ei::pload<P>(at(i, j)), d));
      }
    };
    col_norm();
    for (int64_t it = 1; it < p.iters; ++it) {
      row_norm();
      col_norm();
    }
    for (int64_t l = 0; l < lanes; ++l) {
      T* M = p.m + (r0 + l) * nn;
      for (int64_t k = 0; k < nn; ++k) M[k] = m[k * W + l];
    }
  }
}

template void sinkhorn<float>(const SinkhornParams<float>&);
template void sinkhorn<double>(const SinkhornParams<double>&);

}  // namespace dsv4::ref
