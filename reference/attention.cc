#include "reference/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/online_softmax.h"

namespace dsv4::ref {

template <class T>
void attention(const AttentionParams<T>& p) {
  const int64_t T_ = p.q.rows, Tk = p.kv.rows, N = p.comp.rows, d = p.kv.cols, H = p.heads;
  require(H > 0 && p.q.cols == H * d,
          "attention: tensor 'q': expected shape " + shape_string({T_, H, d}) + " (" +
              std::to_string(H * d) + " columns), found " + std::to_string(p.q.cols) +
              " columns");
  require(Tk >= T_, "attention: tensor 'kv': needs at least one row per query (" +
                        std::to_string(T_) + "), found " + std::to_string(Tk));
  require(N == 0 || p.comp.cols == d, "attention: tensor 'comp': expected shape " +
                                          shape_string({N, d}) + ", found " +
                                          shape_string({p.comp.rows, p.comp.cols}));
  require(p.o.rows == T_ && p.o.cols == H * d, "attention: output 'o' has the wrong shape");
  require(!p.lse.data || (p.lse.rows == T_ && p.lse.cols == H),
          "attention: output 'lse' has the wrong shape");
  require(p.window > 0 && p.ratio > 0, "attention: window and ratio must be positive");
  require(p.pos0 + T_ - Tk >= 0, "attention: kv would start before position 0");
  const bool sparse = p.indices.data != nullptr;
  if (sparse) {
    require(p.indices.rows == T_, "attention: tensor 'indices': expected " +
                                      std::to_string(T_) + " rows, found " +
                                      std::to_string(p.indices.rows));
    for (int64_t r = 0; r < T_; ++r)
      for (int64_t c = 0; c < p.indices.cols; ++c) {
        const int32_t j = p.indices(r, c);
        require(j >= -1 && j < N, "attention: tensor 'indices': value " + std::to_string(j) +
                                      " at [" + std::to_string(r) + ", " + std::to_string(c) +
                                      "] is outside [-1, " + std::to_string(N) + ")");
      }
  }
  const T scale = T(p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(d)));
  const int64_t base = p.pos0 + T_ - Tk;
  auto KV = as_eigen(p.kv);
  auto C = as_eigen(p.comp);
  Mat<T> gathered;
  std::vector<int64_t> sel;
  OnlineSoftmax<T> sm;

  for (int64_t r = 0; r < T_; ++r) {
    const int64_t pos = p.pos0 + r;
    // Window: contiguous rows [w0, w1] of kv.
    const int64_t w1 = pos - base;
    const int64_t w0 = std::max<int64_t>(0, pos - p.window + 1 - base);
    const int64_t nw = w1 - w0 + 1;
    // Compressed: contiguous [0, nvis) when dense, gathered rows when sparse.
    const int64_t nvis = std::clamp<int64_t>((pos + 1) / p.ratio, 0, N);
    sel.clear();
    if (sparse) {
      for (int64_t c = 0; c < p.indices.cols; ++c) {
        const int32_t j = p.indices(r, c);
        if (j >= 0 && j < nvis) sel.push_back(j);
      }
      gathered.resize(int64_t(sel.size()), d);
      for (size_t i = 0; i < sel.size(); ++i) gathered.row(int64_t(i)) = C.row(sel[i]);
    }
    const int64_t nc = sparse ? int64_t(sel.size()) : nvis;
    auto Q = as_eigen(p.q.row(r), H, d);
    // One softmax over the window entries, then the compressed ones (K = V).
    sm.reset(H, d);
    sm.add(Q, KV.middleRows(w0, nw), KV.middleRows(w0, nw), scale);
    if (nc > 0) {
      if (sparse)
        sm.add(Q, gathered, gathered, scale);
      else
        sm.add(Q, C.topRows(nc), C.topRows(nc), scale);
    }
    auto Orow = as_eigen(p.o.row(r), H, d);
    for (int64_t h = 0; h < H; ++h) {  // the sink joins the denominator with a zero value
      const T den = sm.l(h) + std::exp(p.sink[h] - sm.m(h));
      Orow.row(h) = sm.O.row(h) / den;
      if (p.lse.data) p.lse(r, h) = sm.m(h) + std::log(den);
    }
  }
}

template void attention<float>(const AttentionParams<float>&);
template void attention<double>(const AttentionParams<double>&);

}  // namespace dsv4::ref
