#include "reference/hadamard.h"

#include <cmath>
#include <vector>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/simd.h"

namespace dsv4::ref {

namespace {

// W packets, a W x W tile. (GCC warns that the SIMD type's alignment attribute is not part of
// the template argument; Eigen's own PacketBlock uses are in a system header, so silent.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
template <class T>
using Tile = Eigen::internal::PacketBlock<Packet<T>, kPacket<T>>;
#pragma GCC diagnostic pop

// Butterfly stages h = s, 2s, ..., (n/2)s on n packets in registers, v[m] holding the element
// at offset m*s: each stage pairs v[m] with v[m + h/s] (the scalar loop's lo + hi, lo - hi).
template <class T, int n>
inline void butterflies(Packet<T>* v) {
  namespace ei = Eigen::internal;
  _Pragma("GCC unroll 8") for (int g = 1; g < n; g *= 2)
    _Pragma("GCC unroll 8") for (int m = 0; m < n; ++m)
      if ((m & g) == 0) {
        const Packet<T> a = v[m], b = v[m + g];
        v[m] = ei::padd(a, b);
        v[m + g] = ei::psub(a, b);
      }
}

// Stages fused per pass over the [d, W] buffer: 3 stages (8 packets) keep the 16 AVX2
// registers busy without spilling.
constexpr int kFusedStages = 3;

// W rows at once (W = the SIMD width): each W x W tile is transposed so that a packet holds one
// column of the W rows and every butterfly stage runs on whole packets. The stages h < W run
// in registers on each tile as it is transposed in; the later ones in passes of kFusedStages
// stages over the [d, W] buffer (loading and storing each packet once per pass, not once per
// stage); the tiles are then scaled and transposed back. Per element the operations are the
// scalar loop's, in its order (each stage reads the previous stage's values): bit for bit the
// same.
template <class T>
void hadamard_rows_simd(const T* const* x, T* const* y, int64_t d, T norm, std::vector<T>& buf) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  buf.resize(size_t(d * W));
  T* t = buf.data();  // [d, W]: column c of the W rows
  Tile<T> blk;
  for (int64_t c0 = 0; c0 < d; c0 += W) {
    for (int i = 0; i < W; ++i) blk.packet[i] = ei::ploadu<P>(x[i] + c0);
    ei::ptranspose(blk);
    butterflies<T, W>(blk.packet);
    for (int i = 0; i < W; ++i) ei::pstoreu(t + (c0 + i) * W, blk.packet[i]);
  }
  int64_t h = W;
  auto pass = [&]<int n>() {  // stages h .. (n/2)h
    P v[n];
    for (int64_t i = 0; i < d; i += n * h)
      for (int64_t j = i; j < i + h; ++j) {
        _Pragma("GCC unroll 8") for (int m = 0; m < n; ++m) v[m] = ei::ploadu<P>(t + (j + m * h) * W);
        butterflies<T, n>(v);
        _Pragma("GCC unroll 8") for (int m = 0; m < n; ++m) ei::pstoreu(t + (j + m * h) * W, v[m]);
      }
    h *= n;
  };
  while (h < d) {
    if (h * (1 << kFusedStages) <= d)
      pass.template operator()<1 << kFusedStages>();
    else if (h * 4 <= d)
      pass.template operator()<4>();
    else
      pass.template operator()<2>();
  }
  const P n = ei::pset1<P>(norm);
  for (int64_t c0 = 0; c0 < d; c0 += W) {
    for (int i = 0; i < W; ++i) blk.packet[i] = ei::pmul(ei::ploadu<P>(t + (c0 + i) * W), n);
    ei::ptranspose(blk);
    for (int i = 0; i < W; ++i) ei::pstoreu(y[i] + c0, blk.packet[i]);
  }
}

}  // namespace

template <class T>
void hadamard(const HadamardParams<T>& p) {
  const int64_t d = p.x.cols;
  require(d > 0 && (d & (d - 1)) == 0,
          "hadamard: tensor 'x': last dim must be a power of two, found " + std::to_string(d));
  require(p.y.rows == p.x.rows && p.y.cols == d, "hadamard: y must have the shape of x");
  const T norm = T(1) / std::sqrt(T(d));
  constexpr int64_t W = kPacket<T>;
  constexpr int64_t kLineElems = 64 / int64_t(sizeof(T)), kPrefetchRows = 2 * W;
  int64_t r = 0;
  if (W > 1 && d % W == 0) {
    std::vector<T> buf;
    const T* xs[W];
    T* ys[W];
    for (; r + W <= p.x.rows; r += W) {
      for (int64_t i = 0; i < W; ++i) {
        xs[i] = p.x.row(r + i);
        ys[i] = p.y.row(r + i);
      }
      // The tile reads its W rows column block by column block (a stride of d apart), which the
      // hardware prefetcher did not follow: the rows kPrefetchRows ahead are prefetched by hand.
      // Only x: also prefetching y for writing was slower (131072 rows of 128 floats, from
      // memory: 210-228 ns per row with it, 192-203 without, three alternating runs each).
      if (r + kPrefetchRows + W <= p.x.rows)
        for (int64_t i = 0; i < W; ++i)
          for (int64_t c = 0; c < d; c += kLineElems) {
            __builtin_prefetch(p.x.row(r + kPrefetchRows + i) + c, 0, 3);
          }
      hadamard_rows_simd<T>(xs, ys, d, norm, buf);
    }
  }
  for (; r < p.x.rows; ++r) {  // the remaining rows, one at a time
    T* y = p.y.row(r);
    const T* x = p.x.row(r);
    if (y != x)
      for (int64_t c = 0; c < d; ++c) y[c] = x[c];
    // In-place butterflies: O(d log d). The pairs of one stage are independent (vectorised).
    for (int64_t h = 1; h < d; h *= 2) {
      for (int64_t i = 0; i < d; i += 2 * h) {
        T* lo = y + i;
        T* hi = y + i + h;
#pragma omp simd
        for (int64_t j = 0; j < h; ++j) {
          const T a = lo[j], b = hi[j];
          lo[j] = a + b;
          hi[j] = a - b;
        }
      }
    }
#pragma omp simd
    for (int64_t c = 0; c < d; ++c) y[c] *= norm;
  }
}

template void hadamard<float>(const HadamardParams<float>&);
template void hadamard<double>(const HadamardParams<double>&);

}  // namespace dsv4::ref
