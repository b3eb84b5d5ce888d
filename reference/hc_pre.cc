#include "reference/hc_pre.h"

#include <cmath>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/sinkhorn.h"

namespace dsv4::ref {

namespace {

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// mu = rs * Phi v for every token: [T, rows].
template <class T>
Mat<T> mixes(View2<const T> x, const T* fn, int64_t rows, double norm_eps) {
  Mat<T> mu = linear(x, fn, rows, x.cols);
  for (int64_t t = 0; t < x.rows; ++t) {
    const T ms = as_eigen(x.row(t), 1, x.cols).squaredNorm() / T(x.cols);
    mu.row(t) *= T(1) / std::sqrt(ms + T(norm_eps));
  }
  return mu;
}

// u = sum_j pre_j X_j
template <class T>
void reduce_streams(const T* x, const T* pre, int64_t n, int64_t D, T* u) {
  auto U = as_eigen(u, 1, D);
  const auto X = as_eigen(x, n, D);
  U.setZero();
  for (int64_t j = 0; j < n; ++j) U += pre[j] * X.row(j);  // vectorised, in j order
}

}  // namespace

template <class T>
void hc_pre(const HcPreParams<T>& p) {
  const int64_t n = p.n, T_ = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_pre: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n, mix = 2 * n + n * n;
  require(p.u.rows == T_ && p.u.cols == D, "hc_pre: output 'u' has the wrong shape");
  require(p.post.rows == T_ && p.post.cols == n, "hc_pre: output 'post' has the wrong shape");
  require(p.comb.rows == T_ && p.comb.cols == n * n, "hc_pre: output 'comb' has the wrong shape");
  Mat<T> mu = mixes(p.x, p.fn, mix, p.norm_eps);
  std::vector<T> pre(n), logits(n * n);
  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t j = 0; j < n; ++j) {
      pre[j] = sigmoid(p.scale[0] * mu(t, j) + p.base[j]) + T(p.eps);
      p.post(t, j) = T(2) * sigmoid(p.scale[1] * mu(t, n + j) + p.base[n + j]);
    }
    for (int64_t k = 0; k < n * n; ++k)
      logits[k] = p.scale[2] * mu(t, 2 * n + k) + p.base[2 * n + k];
    sinkhorn<T>({logits.data(), p.comb.row(t), 1, n, p.iters, p.eps});
    reduce_streams(p.x.row(t), pre.data(), n, D, p.u.row(t));
  }
}

template <class T>
void hc_head(const HcHeadParams<T>& p) {
  const int64_t n = p.n, T_ = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_head: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.u.rows == T_ && p.u.cols == D, "hc_head: output 'u' has the wrong shape");
  Mat<T> mu = mixes(p.x, p.fn, n, p.norm_eps);
  std::vector<T> pre(n);
  for (int64_t t = 0; t < T_; ++t) {
    for (int64_t j = 0; j < n; ++j) pre[j] = sigmoid(p.scale[0] * mu(t, j) + p.base[j]) + T(p.eps);
    reduce_streams(p.x.row(t), pre.data(), n, D, p.u.row(t));
  }
}

template void hc_pre<float>(const HcPreParams<float>&);
template void hc_pre<double>(const HcPreParams<double>&);
template void hc_head<float>(const HcHeadParams<float>&);
template void hc_head<double>(const HcHeadParams<double>&);

}  // namespace dsv4::ref
