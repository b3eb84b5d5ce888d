#include "reference/hc_post.h"

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/simd.h"

#include <atomic>
#include <cmath>
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
    for (int64_t j = 0; j < n; ++j) v = madd(comb[j * n], x[j * D + c], v);
    y[c] = v;
  };
  // Scalar until y is packet-aligned (aligned stores), then whole packets, then the tail.
  int64_t c = 0;
  while (c < D && reinterpret_cast<uintptr_t>(y + c) % sizeof(P) != 0) scalar(c++);
  const P pp = ei::pset1<P>(post);
  for (; c + W <= D; c += W) {
    P v = ei::pmul(pp, ei::ploadu<P>(f + c));
    for (int64_t j = 0; j < n; ++j) v = ei::pmadd(ei::pset1<P>(comb[j * n]), ei::ploadu<P>(x + j * D + c), v);
    if (stream)
      store_nt(y + c, v);
    else
      ei::pstore(y + c, v);
  }
  for (; c < D; ++c) scalar(c);
}

// y_k[c] = post_k f[c] + comb[0 N + k] x[c] + comb[1 N + k] x[D + c] + ..., for all N output
// streams k of one token in one pass over the columns c < D (D a multiple of the packet):
// per column packet, f and the N input streams are loaded once and the N outputs stored
// side by side, non-temporally (N = n known at compile time keeps the N input packets in
// registers). Per element the operations of post_stream, in its order. 256-token hc_post
// after hc_pre (thread CPU time, 3 alternating runs): Flash 1.8-2.1 -> 1.6 ms, Pro 3.5-3.7
// -> 2.9-3.0 ms. With cached stores this pass was ~45 % slower than post_stream's (1 to 32
// tokens, Flash and Pro), so hc_post takes it only for outputs it streams.
template <class T, int N>
void post_token(const T* x, const T* f, const T* post, const T* comb, int64_t D, T* y) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  auto scalar = [&](int64_t c) {
    for (int k = 0; k < N; ++k) {
      T v = post[k] * f[c];
      for (int j = 0; j < N; ++j) v = madd(comb[j * N + k], x[j * D + c], v);
      y[k * D + c] = v;
    }
  };
  // Scalar until y is packet-aligned (then so is every y_k, D being a multiple of the
  // packet), then whole packets, then the tail.
  int64_t c = 0;
  while (c < D && reinterpret_cast<uintptr_t>(y + c) % sizeof(P) != 0) scalar(c++);
  for (; c + W <= D; c += W) {
    P xs[N];
    for (int j = 0; j < N; ++j) xs[j] = ei::ploadu<P>(x + j * D + c);
    const P fv = ei::ploadu<P>(f + c);
    for (int k = 0; k < N; ++k) {
      P v = ei::pmul(ei::pset1<P>(post[k]), fv);
      for (int j = 0; j < N; ++j) v = ei::pmadd(ei::pset1<P>(comb[j * N + k]), xs[j], v);
      store_nt(y + k * D + c, v);
    }
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
  // Per element: y_k = post_k f, then y_k = madd(comb[j, k], X_j, y_k) in j order (one fused
  // multiply-add per stream where the build has FMA: the bits of the former passes, whose
  // multiply and add GCC contracted the same way). n = kHcMult streams and whole packets per
  // stream and non-temporal stores: all output streams of a token in one pass; otherwise one
  // pass per output stream.
  const bool stream = double(T_) * double(n * D) * double(sizeof(T)) >= kStreamOutputBytes;
  const bool fused = stream && n == kHcMult && D % kPacket<T> == 0;
  for (int64_t t = 0; t < T_; ++t) {
    if (fused) {
      post_token<T, kHcMult>(p.x.row(t), p.f.row(t), &p.post(t, 0), &p.comb(t, 0), D, p.y.row(t));
      continue;
    }
    for (int64_t k = 0; k < n; ++k)
      post_stream(p.x.row(t), p.f.row(t), p.post(t, k), &p.comb(t, 0) + k, n, D, p.y.row(t) + k * D, stream);
  }
  if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // order the non-temporal stores
}

template void hc_post<float>(const HcPostParams<float>&);
template void hc_post<double>(const HcPostParams<double>&);

}  // namespace dsv4::ref
