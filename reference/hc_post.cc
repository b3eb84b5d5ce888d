#include "reference/hc_post.h"

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/simd.h"

#include <atomic>
#include <cstdint>
#ifdef __AVX__
#include <immintrin.h>
#endif

namespace dsv4::ref {

namespace {

// Outputs of at least this many bytes are written with non-temporal stores: they bypass the
// caches, so the output lines are not first read from memory (write-allocate), which is a
// third of hc_post's traffic at prefill sizes (read x and f, write y). Smaller outputs stay
// cached for the op that reads them next.
constexpr double kStreamOutputBytes = 8.0 * 1024 * 1024;

// A non-temporal store of one packet to packet-aligned y (a plain store without AVX).
#ifdef __AVX__
inline void store_nt(float* y, __m256 v) { _mm256_stream_ps(y, v); }
inline void store_nt(double* y, __m256d v) { _mm256_stream_pd(y, v); }
#else
template <class T, class P>
void store_nt(T* y, const P& v) {
  Eigen::internal::pstore(y, v);
}
#endif

// y[c] = post * f[c] + comb[0] x[c] + comb[n] x[D + c] + ... (comb column k, stride n), c < D.
template <class T>
void post_stream(const T* x, const T* f, T post, const T* comb, int64_t n, int64_t D, T* y, bool stream) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  auto scalar = [&](int64_t c) {
    T v = post * f[c];
    for (int64_t j = 0; j < n; ++j) v = v + comb[j * n] * x[j * D + c];
    y[c] = v;
  };
  // Scalar until y is packet-aligned (aligned stores), then whole packets, then the tail.
  int64_t c = 0;
  while (c < D && reinterpret_cast<uintptr_t>(y + c) % sizeof(P) != 0) scalar(c++);
  const P pp = ei::pset1<P>(post);
  for (; c + W <= D; c += W) {
    P v = ei::pmul(pp, ei::ploadu<P>(f + c));
    for (int64_t j = 0; j < n; ++j) v = ei::padd(v, ei::pmul(ei::pset1<P>(comb[j * n]), ei::ploadu<P>(x + j * D + c)));
    if (stream)
      store_nt(y + c, v);
    else
      ei::pstore(y + c, v);
  }
  for (; c < D; ++c) scalar(c);
}

}  // namespace

template <class T>
void hc_post(const HcPostParams<T>& p) {
  const int64_t n = p.n, T_ = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_post: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.f.rows == T_ && p.f.cols == D, "hc_post: tensor 'f': expected shape " +
                                               shape_string({T_, D}) + ", found " +
                                               shape_string({p.f.rows, p.f.cols}));
  require(p.post.rows == T_ && p.post.cols == n, "hc_post: tensor 'post' has the wrong shape");
  require(p.comb.rows == T_ && p.comb.cols == n * n, "hc_post: tensor 'comb' has the wrong shape");
  require(p.y.rows == T_ && p.y.cols == n * D, "hc_post: output 'y' has the wrong shape");
  require(p.y.data != p.x.data, "hc_post: y must not alias x");
  // One pass per output stream and packet: y_k = post_k f, then + comb[j, k] X_j in j order
  // (a multiply, then one multiply and one add per stream: no fused multiply-add, the same
  // rounding as Eigen's y = post f; y += c X_j passes this replaced).
  const bool stream = double(T_) * double(n * D) * double(sizeof(T)) >= kStreamOutputBytes;
  for (int64_t t = 0; t < T_; ++t)
    for (int64_t k = 0; k < n; ++k)
      post_stream(p.x.row(t), p.f.row(t), p.post(t, k), &p.comb(t, 0) + k, n, D, p.y.row(t) + k * D, stream);
  if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // order the non-temporal stores
}

template void hc_post<float>(const HcPostParams<float>&);
template void hc_post<double>(const HcPostParams<double>&);

}  // namespace dsv4::ref
