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
// X element once from memory instead. The tokens go kTileRows at a time (a group) through all
// the columns, so that the caller can use the group's X rows (the reduction
// u = sum_j pre_j X_j) while they are still in L2 instead of reading X from memory again.
// The columns are cut into blocks of kBlockBytes. Phi is packed once per call, block by block
// (Phi's rows, and X's rows, lie a power-of-two stride apart and would share a few L1 sets),
// so that each block's slice is one contiguous run. Per block, the group's X rows are
// interleaved packet by packet into a small buffer (their squares summed on the way) and
// multiplied by the Phi slice in register tiles of kTileRows X rows x kTilePhi Phi rows. Each
// dot product keeps one SIMD packet of in-order running sums per lane across all blocks
// (stored between blocks), reduced horizontally at the end; the columns beyond the last whole
// packet are added after that reduction. A token's mu thus does not depend on which tokens
// share its group.
//
// Measured at 256 tokens (hc_pre alone, thread CPU time, 3+ alternating runs): the former
// order (every block over all tokens, then the reduction reading X again) took 5.2-5.8 ms
// (Flash) and 10.4-11.4 ms (Pro); groups of 4 tokens 3.3-3.5 and 5.9-6.6 ms. Groups of 8 and
// 16 tokens were 0.3-1.4 ms slower than 4, and the former kernel's software prefetch of X
// made groups of 4 0.2-0.4 ms slower (Flash): the group's 4 rows are 4 sequential streams.

// X rows per register tile (and tokens per group); Phi rows per tile: 4 x 3 = 12
// accumulators, plus the 3 Phi packets held across the 4 rows and one X packet: the 16 AVX2
// registers.
constexpr int kTileRows = 4;
constexpr int kTilePhi = 3;
// Column block: the Phi slice (24 rows: 12 KiB in float) and the interleaved X group stay in
// the 32 KiB L1 while the group's tiles pass over them.
constexpr int64_t kBlockBytes = 512;

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

// The column block of the kernel for T: kBlockBytes in whole packets.
template <class T>
constexpr int64_t mix_block() {
  return std::max<int64_t>(kPacket<T>, kBlockBytes / int64_t(sizeof(T)) / kPacket<T> * kPacket<T>);
}

// Phi [rows, cols] packed for mix_group: block after block of the first `whole` columns (a
// multiple of the packet), each block [rows * len] as mix_group reads it.
template <class T>
Vec<T> pack_phi(const T* fn, int64_t rows, int64_t cols, int64_t whole) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  constexpr int64_t block = mix_block<T>();
  const int64_t tiled = rows / kTilePhi * kTilePhi;
  Vec<T> pk(rows * whole);  // Eigen's allocation: packet-aligned
  T* dst = pk.data();
  for (int64_t k0 = 0; k0 < whole; k0 += block) {
    const int64_t len = std::min(block, whole - k0);
    for (int64_t o = 0; o < rows; o += (o < tiled ? kTilePhi : 1)) {
      const int64_t rw = o < tiled ? kTilePhi : 1;
      for (int64_t k = 0; k < len; k += W)
        for (int64_t i = 0; i < rw; ++i, dst += W) ei::pstore(dst, ei::ploadu<P>(fn + (o + i) * cols + k0 + k));
    }
  }
  return pk;
}

// mu [g, rows] (row-major, at mu) = rs * (X Phi^T) for the g <= kTileRows rows of x, with
// rs_t = 1 / sqrt(mean_k x[t,k]^2 + norm_eps). x [g, cols] (any row stride), fn = Phi
// [rows, cols] dense, pk = pack_phi(fn). acc, xi: packet-aligned scratch of
// kTileRows (rows + 1) kPacket<T> and kTileRows mix_block<T>() values.
template <class T>
void mixes_group(View2<const T> x, const T* fn, const T* pk, int64_t rows, double norm_eps, T* acc, T* xi, T* mu) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  constexpr int64_t block = mix_block<T>();
  const int64_t g = x.rows, cols = x.cols, whole = cols / W * W;
  // Running-sum packets per token: rows dot products, then the sum of squares.
  const int64_t ld_acc = rows + 1;
  std::fill_n(acc, g * ld_acc * W, T(0));
  for (int64_t k0 = 0; k0 < whole; k0 += block) {
    const int64_t len = std::min(block, whole - k0);
    // Interleave the group's X slice and add its squares to each row's sum of squares.
    for (int64_t j = 0; j < g; ++j) {
      const T* xr = x.row(j) + k0;
      P sq = ei::pload<P>(acc + (j * ld_acc + rows) * W);
      for (int64_t k = 0; k < len; k += W) {
        const P v = ei::ploadu<P>(xr + k);
        sq = ei::pmadd(v, v, sq);
        ei::pstore(xi + k * g + j * W, v);
      }
      ei::pstore(acc + (j * ld_acc + rows) * W, sq);
    }
    mix_group_n<T>(g, xi, pk + k0 * rows, rows, len, acc, ld_acc);
  }
  for (int64_t t = 0; t < g; ++t) {
    const T* xr = x.row(t);
    T ss = ei::predux(ei::pload<P>(acc + (t * ld_acc + rows) * W));
    for (int64_t k = whole; k < cols; ++k) ss = madd(xr[k], xr[k], ss);
    const T rs = T(1) / std::sqrt(ss / T(cols) + T(norm_eps));
    for (int64_t i = 0; i < rows; ++i) {
      T s = ei::predux(ei::pload<P>(acc + (t * ld_acc + i) * W));
      for (int64_t k = whole; k < cols; ++k) s = madd(fn[i * cols + k], xr[k], s);
      mu[t * rows + i] = s * rs;
    }
  }
}

// Calls on_group(t0, g, mu) for consecutive token groups [t0, t0 + g) of x [T, cols], with
// mu [g, rows] (row-major) = rs * (X Phi^T) of those tokens (rs as in mixes_group), while the
// group's X rows are still in cache. Up to kFewRowsMax tokens are one group through linear()
// instead (reference/eigen_util.h).
template <class T, class F>
void mixes_by_group(View2<const T> x, const T* fn, int64_t rows, double norm_eps, F&& on_group) {
  if (x.rows <= kFewRowsMax) {
    // Few tokens (decode): packing Phi would move more bytes than the product reads; linear()
    // streams Phi once (GEMV, or the few-rows tiles), then each row is scaled by its rs.
    Mat<T> mu = linear(x, fn, rows, x.cols);
    for (int64_t t = 0; t < x.rows; ++t) {
      const T ms = as_eigen(x.row(t), 1, x.cols).squaredNorm() / T(x.cols);
      mu.row(t) *= T(1) / std::sqrt(ms + T(norm_eps));
    }
    on_group(int64_t(0), x.rows, static_cast<const T*>(mu.data()));
    return;
  }
  const int64_t Tn = x.rows, whole = x.cols / kPacket<T> * kPacket<T>;
  const Vec<T> pk = pack_phi(fn, rows, x.cols, whole);
  Vec<T> acc(kTileRows * (rows + 1) * kPacket<T>), xi(kTileRows * mix_block<T>());  // packet-aligned
  Vec<T> mu(kTileRows * rows);
  for (int64_t t0 = 0; t0 < Tn; t0 += kTileRows) {
    const int64_t g = std::min<int64_t>(kTileRows, Tn - t0);
    mixes_group(x.slice_rows(t0, g), fn, pk.data(), rows, norm_eps, acc.data(), xi.data(), mu.data());
    on_group(t0, g, static_cast<const T*>(mu.data()));
  }
}

// u[c] = sum_j pre_j X_j[c] (x: the n streams [n, D] of one token), c < D: one pass, each
// value summed from 0 in j order by one madd per stream (the bits of Eigen's u = 0;
// u += pre_j X_j passes this replaced, whose multiply and add GCC contracted the same way).
// After each token group of mixes, 256-token Flash: those passes ~1.0 ms, this one ~0.55 ms
// (perf samples).
template <class T>
void reduce_streams(const T* x, const T* pre, int64_t n, int64_t D, T* u) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  int64_t c = 0;
  for (; c + W <= D; c += W) {
    P v = ei::pset1<P>(T(0));
    for (int64_t j = 0; j < n; ++j) v = ei::pmadd(ei::pset1<P>(pre[j]), ei::ploadu<P>(x + j * D + c), v);
    ei::pstoreu(u + c, v);
  }
  for (; c < D; ++c) {
    T v = 0;
    for (int64_t j = 0; j < n; ++j) v = madd(pre[j], x[j * D + c], v);
    u[c] = v;
  }
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
  // The comb logits of all tokens, normalised by one sinkhorn call at the end (SIMD lanes
  // across tokens).
  std::vector<T> pre(n), logits(size_t(T_ * n * n));
  mixes_by_group(p.x, p.fn, mix, p.norm_eps, [&](int64_t t0, int64_t g, const T* mu) {
    for (int64_t t = 0; t < g; ++t) {
      const T* m = mu + t * mix;
      for (int64_t j = 0; j < n; ++j) {
        pre[j] = sigmoid(madd(p.scale[0], m[j], p.base[j])) + T(p.eps);
        p.post(t0 + t, j) = T(2) * sigmoid(madd(p.scale[1], m[n + j], p.base[n + j]));
      }
      for (int64_t k = 0; k < n * n; ++k)
        logits[(t0 + t) * n * n + k] = madd(p.scale[2], m[2 * n + k], p.base[2 * n + k]);
      reduce_streams(p.x.row(t0 + t), pre.data(), n, D, p.u.row(t0 + t));
    }
  });
  sinkhorn<T>({logits.data(), logits.data(), T_, n, p.iters, p.eps});  // in place
  for (int64_t t = 0; t < T_; ++t) std::copy_n(logits.data() + t * n * n, n * n, p.comb.row(t));
}

template <class T>
void hc_head(const HcHeadParams<T>& p) {
  const int64_t n = p.n, T_ = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_head: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.u.rows == T_ && p.u.cols == D, "hc_head: output 'u' has the wrong shape");
  std::vector<T> pre(n);
  mixes_by_group(p.x, p.fn, n, p.norm_eps, [&](int64_t t0, int64_t g, const T* mu) {
    for (int64_t t = 0; t < g; ++t) {
      for (int64_t j = 0; j < n; ++j) pre[j] = sigmoid(madd(p.scale[0], mu[t * n + j], p.base[j])) + T(p.eps);
      reduce_streams(p.x.row(t0 + t), pre.data(), n, D, p.u.row(t0 + t));
    }
  });
}

template void hc_pre<float>(const HcPreParams<float>&);
template void hc_pre<double>(const HcPreParams<double>&);
template void hc_head<float>(const HcHeadParams<float>&);
template void hc_head<double>(const HcHeadParams<double>&);

}  // namespace dsv4::ref
