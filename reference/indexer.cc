#include "reference/indexer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"

namespace dsv4::ref {

template <class T>
void indexer_query(const IndexerQueryParams<T>& p) {
  const int64_t T_ = p.cq.rows, HI = p.heads, dI = p.head_dim;
  require(p.x.rows == T_, "indexer_query: tensor 'x': expected " + std::to_string(T_) +
                              " rows, found " + std::to_string(p.x.rows));
  require(p.q.rows == T_ && p.q.cols == HI * dI,
          "indexer_query: tensor 'q': expected shape " + shape_string({T_, HI * dI}));
  require(p.w.rows == T_ && p.w.cols == HI,
          "indexer_query: tensor 'w': expected shape " + shape_string({T_, HI}));
  Mat<T> cq = as_eigen(p.cq);
  if (p.act_quant) quant_fp8<T>({cview_of(cq), view_of(cq), kActBlock, 0});
  as_eigen(p.q) = linear(cview_of(cq), p.wq_b, HI * dI, p.cq.cols);
  rope<T>({p.q, HI, dI, p.pos0, 1, false, p.rope});
  if (p.quant) {
    View2<T> heads{p.q.data, T_ * HI, dI, dI};  // each head a row (q is dense)
    require(p.q.ld == HI * dI, "indexer_query: q must be dense");
    hadamard<T>({heads, heads});
    quant_fp4<T>({heads, heads, kFp4Block});
  }
  const T scale = T(1.0 / std::sqrt(double(dI)) / std::sqrt(double(HI)));
  as_eigen(p.w) = linear(p.x, p.weights_proj, HI, p.x.cols) * scale;
}

namespace {

// Blocking: a GEMM scores kRowBlock query rows (all their heads) against kKeyChunk keys at
// a time, so the [rows*HI, keys] dot products stay in cache and only the [rows, N] scores
// touch memory. Decode (one row over 2^18 keys at 1M context) streams the keys once.
constexpr int64_t kKeyChunk = 1024;
constexpr int64_t kRowBlock = 16;

template <class T>
void score_and_select(const IndexerParams<T>& p, int64_t ratio) {
  const int64_t T_ = p.q.rows, N = p.k.rows, dI = p.k.cols, HI = p.heads;
  require(HI > 0 && p.q.cols == HI * dI,
          "indexer: tensor 'q': expected " + std::to_string(HI) + " heads of dI = " +
              std::to_string(dI) + " (" + std::to_string(HI * dI) + " columns), found " +
              std::to_string(p.q.cols) + " columns");
  require(p.w.rows == T_ && p.w.cols == HI, "indexer: tensor 'w': expected shape " +
                                                shape_string({T_, HI}) + ", found " +
                                                shape_string({p.w.rows, p.w.cols}));
  require(p.topk > 0, "indexer: key 'topk' must be positive");
  require(p.indices.rows == T_ && p.indices.cols == p.topk,
          "indexer: output 'indices': expected shape " + shape_string({T_, p.topk}));
  if (p.scores.data)
    require(p.scores.rows == T_ && p.scores.cols == N,
            "indexer: output 'scores': expected shape " + shape_string({T_, N}));
  const T ninf = -std::numeric_limits<T>::infinity();
  auto K = as_eigen(p.k);
  auto visible = [&](int64_t row) { return std::clamp<int64_t>((p.pos0 + row + 1) / ratio, 0, N); };
  Mat<T> S, Q, D;  // scores [nr, N], queries [nr*HI, dI], dots [nr*HI, chunk]
  std::vector<int32_t> order(N);
  for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, T_ - r0);
    const int64_t vis_max = visible(r0 + nr - 1);  // rows are in position order
    Q.resize(nr * HI, dI);
    for (int64_t r = 0; r < nr; ++r) Q.middleRows(r * HI, HI) = as_eigen(p.q.row(r0 + r), HI, dI);
    S.resize(nr, N);
    for (int64_t j0 = 0; j0 < vis_max; j0 += kKeyChunk) {
      const int64_t c = std::min(kKeyChunk, vis_max - j0);
      D.noalias() = Q * K.middleRows(j0, c).transpose();
      D = D.cwiseMax(T(0));  // ReLU
      for (int64_t r = 0; r < nr; ++r)  // scores = w^T ReLU(q . k)
        S.row(r).segment(j0, c).noalias() = as_eigen(p.w.row(r0 + r), 1, HI) * D.middleRows(r * HI, HI);
    }
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = r0 + r, vis = visible(row);
      T* s = S.row(r).data();
      std::fill(s + vis, s + N, ninf);
      if (p.scores.data) std::copy_n(s, N, p.scores.row(row));
      const int64_t k = std::min<int64_t>(p.topk, vis);
      std::iota(order.begin(), order.begin() + vis, 0);
      auto better = [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
      std::partial_sort(order.begin(), order.begin() + k, order.begin() + vis, better);
      int32_t* out = p.indices.row(row);
      std::copy_n(order.begin(), k, out);
      std::fill(out + k, out + p.topk, -1);
    }
  }
}

}  // namespace

template <class T>
void indexer(const IndexerParams<T>& p) {
  require(p.ratio > 0, "indexer: key 'ratio' must be positive");
  score_and_select(p, p.ratio);
}

template void indexer_query<float>(const IndexerQueryParams<float>&);
template void indexer_query<double>(const IndexerQueryParams<double>&);
template void indexer<float>(const IndexerParams<float>&);
template void indexer<double>(const IndexerParams<double>&);

}  // namespace dsv4::ref
