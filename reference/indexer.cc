#include "reference/indexer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <type_traits>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/simd.h"

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

// Scoring, s_j = sum_h w_h ReLU(q_h . k_j), is a GEMM [keys, dI] x [dI, HI] whose output is
// reduced on the fly: a register tile of kTileKeys keys x kTilePackets SIMD packets of heads
// accumulates the dot products over dI straight from the row-major keys (no packing, no
// [HI, keys] intermediate), then ReLU, the head weights and a horizontal sum fold it into
// the keys' scores. Each dot product is one running sum over dI in order; the heads are
// summed per tile (a tree inside the packet), then tile after tile. Heads beyond the last
// whole tile take a plain loop. Keys are prefetched kPrefetchRows rows ahead: the decode
// scan over 2^18 keys at 1M context is compute-bound only if the next keys are on their way
// (Eigen's GEMM, which packs every key chunk first, reached ~65 % of the SGEMM rate here; this
// ~85 %).
constexpr int kTileKeys = 3;
constexpr int kTilePackets = 4;
constexpr int64_t kPrefetchRows = 24;
// Rows of a block share each chunk of keys while it is in cache (prefill).
constexpr int64_t kKeyChunk = 512;
constexpr int64_t kRowBlock = 16;

// s[i] += sum over heads [0, kTilePackets * W) of w_h ReLU(q_h . k_i), i < MR; qt is the
// transposed queries [dI, ldq] offset to the tile's first head, w likewise.
template <class T, int MR>
inline void score_tile(const T* qt, int64_t ldq, const T* w, int64_t dI, const T* k, int64_t ldk, T* s) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>, NP = kTilePackets;
  const P zero = ei::pset1<P>(T(0));
  P acc[MR][NP];
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i)
    _Pragma("GCC unroll 8") for (int p = 0; p < NP; ++p) acc[i][p] = zero;
  for (int64_t c = 0; c < dI; ++c, qt += ldq) {
    P b[NP];
    _Pragma("GCC unroll 8") for (int p = 0; p < NP; ++p) b[p] = ei::ploadu<P>(qt + p * W);
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
      const P a = ei::pset1<P>(k[i * ldk + c]);
      _Pragma("GCC unroll 8") for (int p = 0; p < NP; ++p) acc[i][p] = ei::pmadd(a, b[p], acc[i][p]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
    P t = zero;
    _Pragma("GCC unroll 8") for (int p = 0; p < NP; ++p)
      t = ei::pmadd(ei::pmax(acc[i][p], zero), ei::ploadu<P>(w + p * W), t);
    s[i] += ei::predux(t);
  }
}

// s[j] = sum_h w_h ReLU(q_h . k_j) for the n keys at k (row stride ldk); qt [dI, HI] is the
// row's queries transposed, w [HI].
template <class T>
void score_keys(const T* qt, const T* w, int64_t HI, int64_t dI, const T* k, int64_t ldk, int64_t n, T* s) {
  constexpr int64_t G = kTilePackets * kPacket<T>;
  const int64_t tiled = HI / G * G;
  std::fill(s, s + n, T(0));
  int64_t j = 0;
  for (; j + kTileKeys <= n; j += kTileKeys) {
    if (j + kPrefetchRows + kTileKeys <= n)
      for (int64_t b = 0; b < kTileKeys * ldk; b += 64 / int64_t(sizeof(T)))
        __builtin_prefetch(k + (j + kPrefetchRows) * ldk + b, 0, 3);
    for (int64_t h0 = 0; h0 < tiled; h0 += G) score_tile<T, kTileKeys>(qt + h0, HI, w + h0, dI, k + j * ldk, ldk, s + j);
  }
  for (; j < n; ++j)
    for (int64_t h0 = 0; h0 < tiled; h0 += G) score_tile<T, 1>(qt + h0, HI, w + h0, dI, k + j * ldk, ldk, s + j);
  for (int64_t h = tiled; h < HI; ++h)  // heads beyond the last tile
    for (j = 0; j < n; ++j) {
      T dot = 0;
      for (int64_t c = 0; c < dI; ++c) dot += qt[c * HI + h] * k[j * ldk + c];
      s[j] += w[h] * std::max(dot, T(0));
    }
}

// The order of select_topk as one unsigned integer, for floats: the score's bits mapped so
// that a larger score gives a smaller integer (-0 folded into +0 first, as the comparison
// treats them equal), the index in the low 32 bits (ties to the lower index). Sorting these
// keys gives the order of `better` below without an indirect comparison (1024 keys: the sort
// was about a fifth of indexer_prefill/v4-pro/ctx:4096, where every key is selected).
inline uint64_t descending_key(float score, int32_t index) {
  uint32_t b;
  const float v = score + 0.0f;  // -0 + 0 = +0
  std::memcpy(&b, &v, sizeof b);
  const uint32_t ascending = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // monotone in v
  return (uint64_t(~ascending) << 32) | uint32_t(index);
}

// indices[0, k) = the k visible keys of highest score, by descending score, ties to the lower
// index (the strict total order `better`): the k-th value found in O(n), then only the
// selected keys sorted.
template <class T>
void select_topk(const T* s, int64_t vis, int64_t k, std::vector<T>& vals, std::vector<int32_t>& sel,
                 std::vector<uint64_t>& keys, int32_t* out) {
  sel.clear();
  if (k > 0) {
    vals.assign(s, s + vis);
    std::nth_element(vals.begin(), vals.begin() + (k - 1), vals.end(), std::greater<T>());
    const T kth = vals[size_t(k - 1)];
    for (int64_t j = 0; j < vis; ++j)
      if (s[j] > kth) sel.push_back(int32_t(j));
    for (int64_t j = 0; j < vis && int64_t(sel.size()) < k; ++j)
      if (s[j] == kth) sel.push_back(int32_t(j));
    if constexpr (std::is_same_v<T, float>) {
      keys.resize(sel.size());
      for (size_t i = 0; i < sel.size(); ++i) keys[i] = descending_key(s[sel[i]], sel[i]);
      std::sort(keys.begin(), keys.end());
      for (size_t i = 0; i < sel.size(); ++i) sel[i] = int32_t(uint32_t(keys[i]));
    } else {
      auto better = [&](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
      std::sort(sel.begin(), sel.end(), better);
    }
  }
  std::copy(sel.begin(), sel.end(), out);
}

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
  auto visible = [&](int64_t row) { return std::clamp<int64_t>((p.pos0 + row + 1) / ratio, 0, N); };
  Mat<T> S, QT;  // scores [nr, N]; transposed queries [nr * dI, HI]
  std::vector<T> vals;
  std::vector<int32_t> sel;
  std::vector<uint64_t> keys;
  for (int64_t r0 = 0; r0 < T_; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, T_ - r0);
    QT.resize(nr * dI, HI);
    for (int64_t r = 0; r < nr; ++r) QT.middleRows(r * dI, dI) = as_eigen(p.q.row(r0 + r), HI, dI).transpose();
    S.resize(nr, N);
    for (int64_t j0 = 0; j0 < visible(r0 + nr - 1); j0 += kKeyChunk)
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t c = std::min(kKeyChunk, visible(r0 + r) - j0);
        if (c > 0)
          score_keys(QT.row(r * dI).data(), p.w.row(r0 + r), HI, dI, p.k.row(j0), p.k.ld, c, S.row(r).data() + j0);
      }
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t row = r0 + r, vis = visible(row);
      T* s = S.row(r).data();
      std::fill(s + vis, s + N, ninf);
      if (p.scores.data) std::copy_n(s, N, p.scores.row(row));
      const int64_t k = std::min<int64_t>(p.topk, vis);
      int32_t* out = p.indices.row(row);
      select_topk(s, vis, k, vals, sel, keys, out);
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
