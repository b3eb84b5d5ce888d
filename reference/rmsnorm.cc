#include "reference/rmsnorm.h"

#include <cmath>

#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void rmsnorm(const RmsNormParams<T>& p) {
  require(p.x.rows == p.y.rows && p.x.cols == p.y.cols,
          "rmsnorm: y must have the shape of x " + shape_string({p.x.rows, p.x.cols}) +
              ", found " + shape_string({p.y.rows, p.y.cols}));
  const int64_t d = p.x.cols;
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const T* x = p.x.row(r);
    T* y = p.y.row(r);
    T ss = 0;  // vectorised: the sum of squares in SIMD lanes, then across them
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < d; ++c) ss += x[c] * x[c];
    const T inv = T(1) / std::sqrt(ss / T(d) + T(p.eps));
    if (p.w) {
      const T* w = p.w;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) y[c] = x[c] * inv * w[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) y[c] = x[c] * inv;
    }
  }
}

template void rmsnorm<float>(const RmsNormParams<float>&);
template void rmsnorm<double>(const RmsNormParams<double>&);

}  // namespace dsv4::ref
