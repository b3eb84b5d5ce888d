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

// Rows of queries scored per GEMM: bounds the [rows*HI, N] scratch to ~32 MiB.
constexpr int64_t kScratchElems = int64_t(8) << 20;

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
  const int64_t rows_per = std::max<int64_t>(1, kScratchElems / std::max<int64_t>(1, HI * N));
  auto K = as_eigen(p.k);
  std::vector<T> s(N);
  std::vector<int32_t> order(N);
  for (int64_t r0 = 0; r0 < T_; r0 += rows_per) {
    const int64_t nr = std::min(rows_per, T_ - r0);
    // [nr*HI, dI] x [dI, N]: every head of every row against every key.
    ConstMapMat<T> Q(p.q.row(r0), nr * HI, dI, Eigen::OuterStride<>(dI));
    Mat<T> dots;
    if (p.q.ld == HI * dI) {
      dots.noalias() = Q * K.transpose();
    } else {  // strided rows: gather first
      Mat<T> Qc(nr * HI, dI);
      for (int64_t r = 0; r < nr; ++r)
        Qc.middleRows(r * HI, HI) = as_eigen(p.q.row(r0 + r), HI, dI);
      dots.noalias() = Qc * K.transpose();
    }
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = r0 + r, pos = p.pos0 + row;
      const int64_t vis = std::clamp<int64_t>((pos + 1) / ratio, 0, N);
      // scores = w^T ReLU(dots)
      auto D = dots.middleRows(r * HI, HI);
      Eigen::Map<RowVec<T>> srow(s.data(), N);
      srow.head(vis) = as_eigen(p.w.row(row), 1, HI) * D.leftCols(vis).cwiseMax(T(0));
      srow.tail(N - vis).setConstant(ninf);
      if (p.scores.data) std::copy(s.begin(), s.end(), p.scores.row(row));
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
