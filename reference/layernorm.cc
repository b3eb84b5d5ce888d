#include "reference/layernorm.h"

#include <cmath>

#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void layernorm(const LayerNormParams<T>& p) {
  require(p.x.rows == p.y.rows && p.x.cols == p.y.cols,
          "layernorm: y must have the shape of x " + shape_string({p.x.rows, p.x.cols}) +
              ", found " + shape_string({p.y.rows, p.y.cols}));
  const int64_t d = p.x.cols;
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const T* x = p.x.row(r);
    T* y = p.y.row(r);
    T mu = 0;
    for (int64_t c = 0; c < d; ++c) mu += x[c];
    mu /= T(d);
    T var = 0;
    for (int64_t c = 0; c < d; ++c) var += (x[c] - mu) * (x[c] - mu);
    const T inv = T(1) / std::sqrt(var / T(d) + T(p.eps));
    for (int64_t c = 0; c < d; ++c) {
      y[c] = (x[c] - mu) * inv * (p.w ? p.w[c] : T(1)) + (p.b ? p.b[c] : T(0));
    }
  }
}

template void layernorm<float>(const LayerNormParams<float>&);
template void layernorm<double>(const LayerNormParams<double>&);

}  // namespace dsv4::ref
