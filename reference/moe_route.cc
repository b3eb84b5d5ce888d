#include "reference/moe_route.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "reference/eigen_util.h"
#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void moe_route(const MoeRouteParams<T>& p) {
  const int64_t T_ = p.x.rows, E = p.experts, k = p.topk;
  const bool hash = p.tid2eid.data != nullptr;
  require(E > 0 && k > 0 && k <= E, "moe_route: key 'topk' (" + std::to_string(k) +
                                        ") must be in [1, experts = " + std::to_string(E) + "]");
  require(p.chosen.rows == T_ && p.chosen.cols == k, "moe_route: output 'experts' has the wrong shape");
  require(p.weights.rows == T_ && p.weights.cols == k, "moe_route: output 'weights' has the wrong shape");
  if (hash) {
    require(p.ids != nullptr, "moe_route: hash routing needs tensor 'ids'");
    require(p.tid2eid.cols == k, "moe_route: tensor 'tid2eid': expected " + std::to_string(k) +
                                     " columns (topk), found " + std::to_string(p.tid2eid.cols));
    for (int64_t t = 0; t < T_; ++t) {
      require(p.ids[t] >= 0 && p.ids[t] < p.tid2eid.rows,
              "moe_route: tensor 'ids': id " + std::to_string(p.ids[t]) + " at [" +
                  std::to_string(t) + "] is outside [0, " + std::to_string(p.tid2eid.rows) + ")");
      for (int64_t c = 0; c < k; ++c) {
        const int64_t e = p.tid2eid(p.ids[t], c);
        require(e >= 0 && e < E, "moe_route: tensor 'tid2eid': expert " + std::to_string(e) +
                                     " in row " + std::to_string(p.ids[t]) + " is outside [0, " +
                                     std::to_string(E) + ")");
      }
    }
  }
  Mat<T> s = linear(p.x, p.gate, E, p.x.cols);
  std::vector<T> score(E), sel(E);
  std::vector<int32_t> order(E);
  for (int64_t t = 0; t < T_; ++t) {
    if (p.score == ScoreFunc::softmax) {
      const T mx = s.row(t).maxCoeff();
      T sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += (score[e] = std::exp(s(t, e) - mx));
      for (int64_t e = 0; e < E; ++e) score[e] /= sum;
    } else {
      for (int64_t e = 0; e < E; ++e) {
        const T v = s(t, e);
        // softplus(v) = log1p(exp(v)), computed without overflow
        const T sp = v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
        score[e] = p.score == ScoreFunc::sigmoid ? T(1) / (T(1) + std::exp(-v)) : std::sqrt(sp);
      }
    }
    int32_t* out = p.chosen.row(t);
    if (hash) {
      for (int64_t c = 0; c < k; ++c) out[c] = int32_t(p.tid2eid(p.ids[t], c));
    } else {
      for (int64_t e = 0; e < E; ++e) sel[e] = score[e] + (p.bias ? p.bias[e] : T(0));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
        return sel[a] > sel[b] || (sel[a] == sel[b] && a < b);
      });
      std::copy_n(order.begin(), k, out);
    }
    T sum = 0;
    for (int64_t c = 0; c < k; ++c) sum += score[out[c]];
    const bool renorm = p.score != ScoreFunc::softmax;
    for (int64_t c = 0; c < k; ++c)
      p.weights(t, c) = (renorm ? score[out[c]] / sum : score[out[c]]) * T(p.route_scale);
  }
}

template void moe_route<float>(const MoeRouteParams<float>&);
template void moe_route<double>(const MoeRouteParams<double>&);

}  // namespace dsv4::ref
