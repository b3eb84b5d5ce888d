#include "reference/sinkhorn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void sinkhorn(const SinkhornParams<T>& p) {
  require(p.n > 0, "sinkhorn: n must be positive");
  require(p.iters >= 1, "sinkhorn: key 'iters' must be >= 1, found " + std::to_string(p.iters));
  const int64_t n = p.n;
  const T eps = T(p.eps);
  std::vector<T> sum(n);
  for (int64_t r = 0; r < p.items; ++r) {
    const T* L = p.logits + r * n * n;
    T* M = p.m + r * n * n;
    for (int64_t i = 0; i < n; ++i) {  // row softmax + eps
      T mx = L[i * n];
      for (int64_t j = 1; j < n; ++j) mx = std::max(mx, L[i * n + j]);
      T s = 0;
      for (int64_t j = 0; j < n; ++j) s += (M[i * n + j] = std::exp(L[i * n + j] - mx));
      for (int64_t j = 0; j < n; ++j) M[i * n + j] = M[i * n + j] / s + eps;
    }
    auto col_norm = [&] {
      std::fill(sum.begin(), sum.end(), T(0));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) sum[j] += M[i * n + j];
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) M[i * n + j] /= sum[j] + eps;
    };
    auto row_norm = [&] {
      for (int64_t i = 0; i < n; ++i) {
        T s = 0;
        for (int64_t j = 0; j < n; ++j) s += M[i * n + j];
        for (int64_t j = 0; j < n; ++j) M[i * n + j] /= s + eps;
      }
    };
    col_norm();
    for (int64_t it = 1; it < p.iters; ++it) {
      row_norm();
      col_norm();
    }
  }
}

template void sinkhorn<float>(const SinkhornParams<float>&);
template void sinkhorn<double>(const SinkhornParams<double>&);

}  // namespace dsv4::ref
