#include "reference/hadamard.h"

#include <cmath>
#include <vector>

#include "reference/eigen_util.h"
#include "reference/errors.h"

namespace dsv4::ref {

namespace {

template <class T>
using Packet = typename Eigen::internal::packet_traits<T>::type;
template <class T>
constexpr int kPacket = Eigen::internal::unpacket_traits<Packet<T>>::size;
// W packets, a W x W tile. (GCC warns that the SIMD type's alignment attribute is not part of
// the template argument; Eigen's own PacketBlock uses are in a system header, so silent.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
template <class T>
using Tile = Eigen::internal::PacketBlock<Packet<T>, kPacket<T>>;
#pragma GCC diagnostic pop

// W rows at once (W = the SIMD width): each W x W tile is transposed so that a packet holds one
// column of the W rows, every butterfly stage runs on whole packets (the stages within a
// packet of one row, h < W, would need cross-lane shuffles), and the tiles are transposed
// back. Per element the operations are the scalar loop's, in its order: bit for bit the same.
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
    for (int i = 0; i < W; ++i) ei::pstoreu(t + (c0 + i) * W, blk.packet[i]);
  }
  for (int64_t h = 1; h < d; h *= 2)
    for (int64_t i = 0; i < d; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const P a = ei::ploadu<P>(t + j * W), b = ei::ploadu<P>(t + (j + h) * W);
        ei::pstoreu(t + j * W, ei::padd(a, b));
        ei::pstoreu(t + (j + h) * W, ei::psub(a, b));
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
