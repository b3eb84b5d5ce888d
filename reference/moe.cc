#include "reference/moe.h"

#include <algorithm>
#include <cmath>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/quant_fp8.h"

namespace dsv4::ref {

template <class T>
void expert(const ExpertParams<T>& p) {
  const int64_t T_ = p.x.rows, D = p.x.cols, I = p.inter;
  require(I > 0, "expert: inter must be positive");
  require(p.y.rows == T_ && p.y.cols == D, "expert: output 'y' has the wrong shape");
  Mat<T> xq;
  View2<const T> x = p.x;
  if (p.act_quant) {
    xq = as_eigen(p.x);
    quant_fp8<T>({cview_of(xq), view_of(xq), kActBlock, 0});
    x = cview_of(xq);
  }
  Mat<T> g = linear(x, p.w1, I, D);
  Mat<T> u = linear(x, p.w3, I, D);
  const T lim = T(p.swiglu_limit);
  for (int64_t t = 0; t < T_; ++t) {
    const T rw = p.route_weight ? p.route_weight[t * p.weight_stride] : T(1);
    for (int64_t i = 0; i < I; ++i) {
      T gv = g(t, i), uv = u(t, i);
      if (lim > 0) {
        uv = std::clamp(uv, -lim, lim);
        gv = std::min(gv, lim);
      }
      g(t, i) = gv / (T(1) + std::exp(-gv)) * uv * rw;
    }
  }
  if (p.act_quant) quant_fp8<T>({cview_of(g), view_of(g), kActBlock, 0});
  Mat<T> out = g * as_eigen(p.w2, D, I).transpose();
  if (p.accumulate)
    as_eigen(p.y) += out;
  else
    as_eigen(p.y) = out;
}

template <class T>
void moe(const MoeParams<T>& p) {
  const auto& r = p.route;
  const int64_t T_ = r.x.rows, D = r.x.cols, I = p.inter, k = r.topk;
  moe_route(r);
  require(p.y.rows == T_ && p.y.cols == D, "moe: output 'y' has the wrong shape");
  as_eigen(p.y).setZero();
  // Token by token and slot by slot: exact per-token math, the order the official
  // code accumulates in does not matter at this precision.
  for (int64_t t = 0; t < T_; ++t) {
    View2<const T> xt = r.x.slice_rows(t, 1);
    View2<T> yt = p.y.slice_rows(t, 1);
    for (int64_t c = 0; c < k; ++c) {
      const int64_t e = r.chosen(t, c);
      expert<T>({xt, p.w1 + e * I * D, p.w3 + e * I * D, p.w2 + e * D * I, I, &r.weights(t, c), 1,
                 p.swiglu_limit, true, p.act_quant, yt});
    }
  }
  if (p.shared_w1)
    expert<T>({r.x, p.shared_w1, p.shared_w3, p.shared_w2, I, nullptr, 1, p.swiglu_limit, true,
               p.act_quant, p.y});
}

template void expert<float>(const ExpertParams<float>&);
template void expert<double>(const ExpertParams<double>&);
template void moe<float>(const MoeParams<float>&);
template void moe<double>(const MoeParams<double>&);

}  // namespace dsv4::ref
