#include "reference/hc_pre.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/simd.h"
#include "reference/sinkhorn.h"

namespace dsv4::ref {

namespace {

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// ---- mixes: mu[t, i] = rs_t * (Phi_i . x_t) ---------------------------------------------
//
// A skinny product: many rows of X (tokens, n*D = 16384 wide), few rows of Phi (2n + n^2 = 24).
// Eigen's GEMM first packs all of X (a full extra write + read of X); this kernel reads each
// X element once from memory instead. The columns are cut into blocks of kBlockBytes; per
// block, Phi's slice is copied once into a contiguous buffer (Phi's rows, and X's rows, lie a
// power-of-two stride apart and would share a few L1 sets), and then every group of kTileRows
// X rows is interleaved packet by packet into a small buffer (its squares summed on the way)
// and multiplied by the Phi slice in register tiles of kTileRows X rows x kTilePhi Phi rows.
// Each dot product keeps one SIMD packet of in-order running sums per lane across all
// blocks (stored between blocks), reduced horizontally at the end; the columns beyond the
// last whole packet are added after that reduction.

// X rows per register tile; Phi rows per tile: 4 x 3 = 12 accumulators, plus the 3 Phi
// packets held across the 4 rows and one X packet: the 16 AVX2 registers.
constexpr int kTileRows = 4;
constexpr int kTilePhi = 3;
// Column block: the Phi slice (24 rows: 12 KiB in float) and the interleaved X group stay in
// the 32 KiB L1 while every group of X rows passes over them.
constexpr int64_t kBlockBytes = 512;
// Software prefetch of X this many row groups ahead, one cache line at a time.
constexpr int64_t kPrefetchGroups = 2;
constexpr int64_t kLineBytes = 64;

// acc[j][i] += x_j . phi_i over one column block of `len` (a multiple of the packet) for
// RX X rows (xi: interleaved [len / W][RX][W]) and RW Phi rows (pi: [len / W][RW][W]).
// acc: the running-sum packets of the RX rows, row j at acc + j * ld_acc, Phi row i at + i.
template <class T, int RW, int RX>
[[gnu::noinline]] void mix_tile(const T* xi, const T* pi, int64_t len, T* acc, int64_t ld_acc) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  P a[RW][RX];
  _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j) a[i][j] = ei::pload<P>(acc + (j * ld_acc + i) * W);
  for (int64_t k = 0; k < len; k += W, xi += RX * W, pi += RW * W) {
    P w[RW];
    _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i) w[i] = ei::pload<P>(pi + i * W);
    _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j) {
      const P xp = ei::pload<P>(xi + j * W);
      _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i) a[i][j] = ei::pmadd(w[i], xp, a[i][j]);
    }
  }
  _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j) ei::pstore(acc + (j * ld_acc + i) * W, a[i][j]);
}

// All Phi rows of the packed slice for one group of RX X rows: tiles of kTilePhi, the rest one
// Phi row at a time. pk: the slice packed per tile ([tile][len / W][RW][W], then single rows).
template <class T, int RX>
void mix_group(const T* xi, const T* pk, int64_t rows, int64_t len, T* acc, int64_t ld_acc) {
  const int64_t tiled = rows / kTilePhi * kTilePhi;
  for (int64_t o = 0; o < tiled; o += kTilePhi) mix_tile<T, kTilePhi, RX>(xi, pk + o * len, len, acc + o * kPacket<T>, ld_acc);
  for (int64_t o = tiled; o < rows; ++o) mix_tile<T, 1, RX>(xi, pk + o * len, len, acc + o * kPacket<T>, ld_acc);
}

template <class T, int RX = kTileRows>
void mix_group_n(int64_t rx, const T* xi, const T* pk, int64_t rows, int64_t len, T* acc, int64_t ld_acc) {
  if constexpr (RX > 1)
    if (rx < RX) return mix_group_n<T, RX - 1>(rx, xi, pk, rows, len, acc, ld_acc);
  mix_group<T, RX>(xi, pk, rows, len, acc, ld_acc);
}

// mu [T, rows] = rs * (X Phi^T) with rs_t = 1 / sqrt(mean_k x[t,k]^2 + norm_eps).
// x [T, cols] (any row stride), fn = Phi [rows, cols] dense. Up to kFewRowsMax tokens go
// through linear() instead (reference/eigen_util.h).
template <class T>
Mat<T> mixes(View2<const T> x, const T* fn, int64_t rows, double norm_eps) {
  if (x.rows <= kFewRowsMax) {
    // Few tokens (decode): packing Phi would move more bytes than the product reads; linear()
    // streams Phi once (GEMV, or the few-rows tiles), then each row is scaled by its rs.
    Mat<T> mu = linear(x, fn, rows, x.cols);
    for (int64_t t = 0; t < x.rows; ++t) {
      const T ms = as_eigen(x.row(t), 1, x.cols).squaredNorm() / T(x.cols);
      mu.row(t) *= T(1) / std::sqrt(ms + T(norm_eps));
    }
    return mu;
  }
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  constexpr int64_t block = std::max<int64_t>(W, kBlockBytes / int64_t(sizeof(T)) / W * W);
  const int64_t Tn = x.rows, cols = x.cols, whole = cols / W * W;
  // Running-sum packets per token: rows dot products, then the sum of squares.
  const int64_t ld_acc = rows + 1;
  Vec<T> acc = Vec<T>::Zero(Tn * ld_acc * W);
  Vec<T> pk(rows * block), xi(kTileRows * block);  // Eigen's allocation: packet-aligned
  for (int64_t k0 = 0; k0 < whole; k0 += block) {
    const int64_t len = std::min(block, whole - k0);
    // Pack the Phi slice: tiles of kTilePhi rows interleaved packet by packet, then the rest.
    const int64_t tiled = rows / kTilePhi * kTilePhi;
    T* dst = pk.data();
    for (int64_t o = 0; o < rows; o += (o < tiled ? kTilePhi : 1)) {
      const int64_t rw = o < tiled ? kTilePhi : 1;
      for (int64_t k = 0; k < len; k += W)
        for (int64_t i = 0; i < rw; ++i, dst += W) ei::pstore(dst, ei::ploadu<P>(fn + (o + i) * cols + k0 + k));
    }
    for (int64_t t0 = 0; t0 < Tn; t0 += kTileRows) {
      const int64_t rx = std::min<int64_t>(kTileRows, Tn - t0);
      // Interleave the group's X slice and add its squares to each row's sum of squares.
      for (int64_t j = 0; j < rx; ++j) {
        const T* xr = x.row(t0 + j) + k0;
        // X comes from memory in short runs a row stride apart, which the hardware
        // prefetcher does not follow: fetch the slice kPrefetchGroups groups ahead.
        if (t0 + j + kPrefetchGroups * kTileRows < Tn)
          for (int64_t k = 0; k < len; k += kLineBytes / int64_t(sizeof(T)))
            __builtin_prefetch(x.row(t0 + j + kPrefetchGroups * kTileRows) + k0 + k, 0, 3);
        P sq = ei::pload<P>(acc.data() + ((t0 + j) * ld_acc + rows) * W);
        for (int64_t k = 0; k < len; k += W) {
          const P v = ei::ploadu<P>(xr + k);
          sq = ei::pmadd(v, v, sq);
          ei::pstore(xi.data() + k * rx + j * W, v);
        }
        ei::pstore(acc.data() + ((t0 + j) * ld_acc + rows) * W, sq);
      }
      mix_group_n<T>(rx, xi.data(), pk.data(), rows, len, acc.data() + t0 * ld_acc * W, ld_acc);
    }
  }
  Mat<T> mu(Tn, rows);
  for (int64_t t = 0; t < Tn; ++t) {
    const T* xr = x.row(t);
    T ss = ei::predux(ei::pload<P>(acc.data() + (t * ld_acc + rows) * W));
    for (int64_t k = whole; k < cols; ++k) ss += xr[k] * xr[k];
    const T rs = T(1) / std::sqrt(ss / T(cols) + T(norm_eps));
    for (int64_t i = 0; i < rows; ++i) {
      T s = ei::predux(ei::pload<P>(acc.data() + (t * ld_acc + i) * W));
      for (int64_t k = whole; k < cols; ++k) s += fn[i * cols + k] * xr[k];
      mu(t, i) = s * rs;
    }
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
