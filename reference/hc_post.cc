#include "reference/hc_post.h"

#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void hc_post(const HcPostParams<T>& p) {
  const int64_t n = p.n, T_ = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_post: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.f.rows == T_ && p.f.cols == D, "hc_post: tensor 'f': expected shape " +
                                               shape_string({T_, D}) + ", found " +
                                               shape_string({p.f.rows, p.f.cols}));
  require(p.post.rows == T_ && p.post.cols == n, "hc_post: tensor 'post' has the wrong shape");
  require(p.comb.rows == T_ && p.comb.cols == n * n, "hc_post: tensor 'comb' has the wrong shape");
  require(p.y.rows == T_ && p.y.cols == n * D, "hc_post: output 'y' has the wrong shape");
  require(p.y.data != p.x.data, "hc_post: y must not alias x");
  for (int64_t t = 0; t < T_; ++t) {
    const T* x = p.x.row(t);
    const T* f = p.f.row(t);
    for (int64_t k = 0; k < n; ++k) {
      T* y = p.y.row(t) + k * D;
      const T pk = p.post(t, k);
      for (int64_t c = 0; c < D; ++c) y[c] = pk * f[c];
      for (int64_t j = 0; j < n; ++j) {
        const T cjk = p.comb(t, j * n + k);
        for (int64_t c = 0; c < D; ++c) y[c] += cjk * x[j * D + c];
      }
    }
  }
}

template void hc_post<float>(const HcPostParams<float>&);
template void hc_post<double>(const HcPostParams<double>&);

}  // namespace dsv4::ref
