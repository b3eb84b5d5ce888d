#include "reference/mla.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/online_softmax.h"

namespace dsv4::ref {

template <class T>
void mla(const MlaParams<T>& p) {
  const int64_t T_ = p.q.rows, Tk = p.kv.rows, dk = p.kv.cols, dl = p.latent_dim, H = p.heads;
  require(dl > 0 && dl <= dk, "mla: latent_dim " + std::to_string(dl) + " must be in [1, " +
                                  std::to_string(dk) + "]");
  require(H > 0 && p.q.cols == H * dk, "mla: tensor 'q': expected shape " +
                                           shape_string({T_, H, dk}) + " (" +
                                           std::to_string(H * dk) + " columns), found " +
                                           std::to_string(p.q.cols) + " columns");
  const int64_t pos0 = p.pos0 < 0 ? Tk - T_ : p.pos0;
  require(pos0 >= 0 && pos0 + T_ <= Tk,
          "mla: key 'pos0' (" + std::to_string(pos0) + ") + T (" + std::to_string(T_) +
              ") must not exceed the kv rows (" + std::to_string(Tk) + ")");
  require(p.o.rows == T_ && p.o.cols == H * dl, "mla: output 'o' has the wrong shape");
  const bool sparse = p.indices.data != nullptr;
  if (sparse) {
    require(p.indices.rows == T_, "mla: tensor 'indices': expected " + std::to_string(T_) + " rows");
    for (int64_t r = 0; r < T_; ++r)
      for (int64_t c = 0; c < p.indices.cols; ++c) {
        const int32_t j = p.indices(r, c);
        require(j >= -1 && j < Tk, "mla: tensor 'indices': value " + std::to_string(j) + " at [" +
                                       std::to_string(r) + ", " + std::to_string(c) +
                                       "] is outside [-1, " + std::to_string(Tk) + ")");
      }
  }
  const T scale = T(p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(dk)));
  auto KV = as_eigen(p.kv);
  Mat<T> G;
  OnlineSoftmax<T> sm;
  for (int64_t r = 0; r < T_; ++r) {
    const int64_t pos = pos0 + r;
    auto Q = as_eigen(p.q.row(r), H, dk);
    int64_t n;
    sm.reset(H, dl);
    if (sparse) {
      G.resize(p.indices.cols, dk);
      n = 0;
      for (int64_t c = 0; c < p.indices.cols; ++c) {
        const int32_t j = p.indices(r, c);
        if (j >= 0 && j <= pos) G.row(n++) = KV.row(j);
      }
      if (n > 0) sm.add(Q, G.topRows(n), G.topRows(n).leftCols(dl), scale);
    } else {
      n = pos + 1;
      sm.add(Q, KV.topRows(n), KV.topRows(n).leftCols(dl), scale);
    }
    auto O = as_eigen(p.o.row(r), H, dl);
    if (n == 0) {  // every index -1 or in the future: nothing to attend to
      O.setZero();
      if (p.lse.data)
        for (int64_t h = 0; h < H; ++h) p.lse(r, h) = -std::numeric_limits<T>::infinity();
      continue;
    }
    for (int64_t h = 0; h < H; ++h) {
      O.row(h) = sm.O.row(h) / sm.l(h);
      if (p.lse.data) p.lse(r, h) = sm.m(h) + std::log(sm.l(h));
    }
  }
}

template void mla<float>(const MlaParams<float>&);
template void mla<double>(const MlaParams<double>&);

}  // namespace dsv4::ref
