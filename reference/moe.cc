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
  Mat<T> out = linear(cview_of(g), p.w2, D, I);
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
  // Expert by expert: the tokens routed to an expert are gathered and run through it as one
  // GEMM (a weight is read once per expert, not once per token), then added to their rows.
  // Each token's contributions arrive in expert order rather than slot order: the same sum,
  // rounded in another order.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> routed(size_t(r.experts));  // (token, slot)
  for (int64_t t = 0; t < T_; ++t)
    for (int64_t c = 0; c < k; ++c) routed[size_t(r.chosen(t, c))].push_back({t, c});
  Mat<T> xe, ye;
  std::vector<T> we;
  for (int64_t e = 0; e < r.experts; ++e) {
    const auto& list = routed[size_t(e)];
    if (list.empty()) continue;
    const int64_t n = int64_t(list.size());
    xe.resize(n, D);
    ye.resize(n, D);
    we.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
      xe.row(i) = as_eigen(r.x.row(list[size_t(i)].first), 1, D);
      we[size_t(i)] = r.weights(list[size_t(i)].first, list[size_t(i)].second);
    }
    expert<T>({cview_of(xe), p.w1 + e * I * D, p.w3 + e * I * D, p.w2 + e * D * I, I, we.data(), 1, p.swiglu_limit,
               false, p.act_quant, view_of(ye)});
    for (int64_t i = 0; i < n; ++i) as_eigen(p.y.row(list[size_t(i)].first), 1, D) += ye.row(i);
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
