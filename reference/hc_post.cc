#include "reference/hc_post.h"

#include "reference/eigen_util.h"
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
  // One vectorised pass per output stream: y_k = post_k f, then + comb[j, k] X_j in j order.
  for (int64_t t = 0; t < T_; ++t) {
    const auto X = as_eigen(p.x.row(t), n, D);
    const auto f = as_eigen(p.f.row(t), 1, D);
    auto Y = as_eigen(p.y.row(t), n, D);
    for (int64_t k = 0; k < n; ++k) {
      Y.row(k) = p.post(t, k) * f;
      for (int64_t j = 0; j < n; ++j) Y.row(k) += p.comb(t, j * n + k) * X.row(j);
    }
  }
}

template void hc_post<float>(const HcPostParams<float>&);
template void hc_post<double>(const HcPostParams<double>&);

}  // namespace dsv4::ref
