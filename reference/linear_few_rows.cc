// Y = X W^T for a few rows of X (a few tokens routed to an expert, a short prefill chunk).
//
// Eigen's GEMM packs the whole [out, in] weight before multiplying: for a handful of rows
// that packing pass (read W, write the packed copy, read it back) moves about three times the
// bytes of the product itself, which is otherwise bound by reading W once. This path reads
// each weight row once from memory with no packing: a register tile of RW weight rows x RX
// rows of X accumulates RW * RX dot products over `in`, one SIMD packet of each at a time,
// then reduces each packet horizontally. `in` is walked in ranges whose X stays in L1; the
// running sums are kept in memory between ranges (the same operations in the same order).
// Each dot product is a sum over lanes of in-order running sums; the tail beyond the last
// whole packet is added after the horizontal sum.
#include "reference/eigen_util.h"
#include "reference/simd.h"

#include <algorithm>
#include <vector>

namespace dsv4::ref {

namespace {

// Accumulators per tile: enough independent FMA chains to hide the FMA latency on two pipes,
// leaving registers (16 on AVX2) for the RW weight packets held across the RX rows and one
// X packet.
constexpr int kTileAccumulators = 12;
// Rows of X one tile covers; more rows are split into groups of at most this many.
constexpr int kMaxTileRows = 6;
// Weight rows per tile for a group of RX rows of X.
constexpr int weight_rows(int RX) { return std::max(1, std::min(8, kTileAccumulators / RX)); }
// Weight rows every group runs over before the next block: a multiple of every weight_rows()
// (8, 6, 4, 3, 2), small enough to stay in L2, so the groups after the first read it from cache
// and W comes from memory once.
constexpr int64_t kWeightBlock = 24;
// The weight rows are prefetched into L2 this many bytes ahead: a tile streams only a few rows
// at a time, and the hardware prefetcher alone left the loads waiting on memory (rows = 6:
// 11 -> 16 GB/s).
constexpr int64_t kPrefetchBytes = 4096;
// Bytes of X (one group's rows) one k-range covers: the range stays in L1 (32 KiB) while the
// tiles of a weight block stream their weights past it (whole rows, 6 x 16 KiB at in = 4096,
// came from L2 at every step). With keep_in_register() the tile runs at ~86 GFLOP/s instead
// of ~74 with W in L3 (rows = 6 and 16; either change alone: no gain); W from memory:
// 16 rows 7.2 -> 7.9 GB/s, 2 and 6 rows unchanged (~22, ~15 GB/s), interleaved runs.
constexpr int64_t kRangeBytes = 16384;

// Forces p into a register: without it GCC folds the load of an X packet into each of its RW
// FMAs (RW loads of the same packet instead of one), and with W in cache the loads, not the
// FMAs, bound the tile.
template <class P>
inline void keep_in_register(P& p) {
#if defined(__AVX__)
  __asm__("" : "+x"(p));
#else
  (void)p;
#endif
}

// RX rows of X interleaved packet by packet, [whole / W][RX][W]: a tile reads them as one
// sequential stream (rows a power-of-two stride apart would share a few L1 sets).
template <class T>
void interleave(const T* x, int64_t ldx, int64_t RX, int64_t whole, T* xi) {
  namespace ei = Eigen::internal;
  constexpr int W = kPacket<T>;
  for (int64_t k = 0; k < whole; k += W)
    for (int64_t j = 0; j < RX; ++j, xi += W) ei::pstore(xi, ei::ploadu<Packet<T>>(x + j * ldx + k));
}

// The running sums of columns [k0, k1) (packet multiples) of the dot products
// y[j * ldy + i] = dot(w row i, x row j), i < RW, j < RX: `acc_io` holds the RW x RX packets
// between k-ranges (unread when k0 = 0). The last range (k1 = whole, `in` rounded down to
// packets) reduces them, adds the tail and writes y. xi: interleave() of x from column k0.
// Not inlined: inlined into the dispatch, GCC kept the accumulators on the stack.
template <class T, int RW, int RX>
[[gnu::noinline]] void tile(const T* xi, const T* x, int64_t ldx, const T* w, int64_t in, int64_t k0, int64_t k1,
                            Packet<T>* acc_io, T* y, int64_t ldy) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  constexpr int64_t ahead = kPrefetchBytes / int64_t(sizeof(T));
  P acc[RW][RX];
  _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i)
    _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j)
      acc[i][j] = k0 == 0 ? ei::pset1<P>(T(0)) : acc_io[i * RX + j];
  for (int64_t k = k0; k < k1; k += W, xi += RX * W) {
    P wp[RW];
    _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i) {
      __builtin_prefetch(w + i * in + k + ahead, 0, 2);
      wp[i] = ei::ploadu<P>(w + i * in + k);
    }
    _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j) {
      P xp = ei::pload<P>(xi + j * W);
      keep_in_register(xp);
      _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i) acc[i][j] = ei::pmadd(wp[i], xp, acc[i][j]);
    }
  }
  if (k1 < in / W * W) {
    _Pragma("GCC unroll 8") for (int i = 0; i < RW; ++i)
      _Pragma("GCC unroll 8") for (int j = 0; j < RX; ++j) acc_io[i * RX + j] = acc[i][j];
    return;
  }
  for (int i = 0; i < RW; ++i)
    for (int j = 0; j < RX; ++j) {
      T s = ei::predux(acc[i][j]);
      for (int64_t k = k1; k < in; ++k) s += w[i * in + k] * x[j * ldx + k];
      y[j * ldy + i] = s;
    }
}

// Y[RX rows, n <= kWeightBlock weight rows] for one group of RX rows of X: tiles of
// weight_rows(RX) weight rows, the last few weight rows one at a time, over k-ranges of
// X that stay in L1 (every tile of the block runs over one range before the next).
template <class T, int RX>
void group(const T* xi, const T* x, int64_t ldx, const T* w, int64_t n, int64_t in, T* y, int64_t ldy) {
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  constexpr int RW = weight_rows(RX);
  constexpr int64_t range = std::max<int64_t>(W, kRangeBytes / int64_t(RX * sizeof(T)) / W * W);
  const int64_t tiled = n / RW * RW, whole = in / W * W;
  P acc[kWeightBlock * RX];
  for (int64_t k0 = 0;; k0 += range) {
    const int64_t k1 = std::min(k0 + range, whole);
    const T* xr = xi + k0 * RX;
    for (int64_t o = 0; o < tiled; o += RW)
      tile<T, RW, RX>(xr, x, ldx, w + o * in, in, k0, k1, acc + o * RX, y + o, ldy);
    for (int64_t o = tiled; o < n; ++o) tile<T, 1, RX>(xr, x, ldx, w + o * in, in, k0, k1, acc + o * RX, y + o, ldy);
    if (k1 == whole) break;
  }
}

// group() for rx <= kMaxTileRows rows, dispatched to its compile-time size.
template <class T, int RX = kMaxTileRows>
void group_n(int64_t rx, const T* xi, const T* x, int64_t ldx, const T* w, int64_t n, int64_t in, T* y, int64_t ldy) {
  if constexpr (RX > 1)
    if (rx < RX) return group_n<T, RX - 1>(rx, xi, x, ldx, w, n, in, y, ldy);
  group<T, RX>(xi, x, ldx, w, n, in, y, ldy);
}

}  // namespace

template <class T>
void linear_few_rows(View2<const T> x, const T* w, int64_t out, int64_t in, View2<T> y) {
  // Balanced groups of rows: 16 -> 5 + 5 + 6 rather than 6 + 6 + 4.
  const int64_t groups = (x.rows + kMaxTileRows - 1) / kMaxTileRows;
  const int64_t whole = in / kPacket<T> * kPacket<T>;
  std::vector<int64_t> r0(size_t(groups + 1), 0);
  for (int64_t g = 0; g < groups; ++g) r0[size_t(g + 1)] = r0[size_t(g)] + (x.rows - r0[size_t(g)]) / (groups - g);
  Eigen::Matrix<T, Eigen::Dynamic, 1> xi(x.rows * whole);  // Eigen's allocation: packet-aligned
  for (int64_t g = 0; g < groups; ++g)
    interleave(x.row(r0[size_t(g)]), x.ld, r0[size_t(g + 1)] - r0[size_t(g)], whole, xi.data() + r0[size_t(g)] * whole);
  for (int64_t o = 0; o < out; o += kWeightBlock) {
    const int64_t n = std::min(kWeightBlock, out - o);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t a = r0[size_t(g)];
      group_n<T>(r0[size_t(g + 1)] - a, xi.data() + a * whole, x.row(a), x.ld, w + o * in, n, in, y.row(a) + o, y.ld);
    }
  }
}

template void linear_few_rows<float>(View2<const float>, const float*, int64_t, int64_t, View2<float>);
template void linear_few_rows<double>(View2<const double>, const double*, int64_t, int64_t, View2<double>);

}  // namespace dsv4::ref
