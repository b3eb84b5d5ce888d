#include "reference/hadamard.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/errors.h"
#include "reference/stream_store.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace dsv4::ref {

namespace {

// The scalar transform of one row, in place: stages h = 1, 2, 4, ..., d/2, each pairing
// (lo, hi) = (y[i + j], y[i + j + h]) into (lo + hi, lo - hi), then the scale. Every other path
// performs exactly these operations, in this order per element.
template <class T>
void hadamard_row_scalar(T* y, int64_t d, T norm) {
  for (int64_t h = 1; h < d; h *= 2)
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
#pragma omp simd
  for (int64_t c = 0; c < d; ++c) y[c] *= norm;
}

#if defined(__AVX__)

// One row in AVX registers. The stages h < W (the packet width) pair lanes of one packet: a
// permute brings each lane's partner (s), and s + sign v gives lo + hi in the low lanes and
// lo - hi in the high ones (pair_up). The stages h >= W pair whole packets m and m + h/W. 128 floats (the indexer's d_I) are 16
// packets: the whole row stays in registers from load to store, 7 stages and the scale on
// about 300 instructions for 1 KiB of traffic, so the op runs at the memory's rate.
template <class T>
struct Avx;

template <>
struct Avx<float> {
  using P = __m256;
  static constexpr int W = 8;
  static P load(const float* x) { return _mm256_loadu_ps(x); }
  static void store(float* y, P v) { _mm256_storeu_ps(y, v); }
  static void stream(float* y, P v) { _mm256_stream_ps(y, v); }
  static P add(P a, P b) { return _mm256_add_ps(a, b); }
  static P sub(P a, P b) { return _mm256_sub_ps(a, b); }
  static P mul(P a, P b) { return _mm256_mul_ps(a, b); }
  static P set1(float v) { return _mm256_set1_ps(v); }
  static P in_lanes(P v) {  // stages h = 1, 2, 4
    v = pair_up(v, _mm256_permute_ps(v, 0xB1), _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1));  // lanes (1,0,3,2)
    v = pair_up(v, _mm256_permute_ps(v, 0x4E), _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1));  // (2,3,0,1)
    return pair_up(v, _mm256_permute2f128_ps(v, v, 0x01), _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1));
  }
  // s + sign v: lo + hi where sign = +1, lo - hi where sign = -1 (s holds the partner lanes).
  // sign v is exact, so one rounding of the sum: the scalar a + b and a - b (IEEE defines
  // a - b as a + (-b)), signed zeros and all.
  static P pair_up(P v, P s, P sign) {
#if defined(__FMA__)
    return _mm256_fmadd_ps(v, sign, s);
#else
    return _mm256_add_ps(s, _mm256_mul_ps(v, sign));
#endif
  }
};

template <>
struct Avx<double> {
  using P = __m256d;
  static constexpr int W = 4;
  static P load(const double* x) { return _mm256_loadu_pd(x); }
  static void store(double* y, P v) { _mm256_storeu_pd(y, v); }
  static void stream(double* y, P v) { _mm256_stream_pd(y, v); }
  static P add(P a, P b) { return _mm256_add_pd(a, b); }
  static P sub(P a, P b) { return _mm256_sub_pd(a, b); }
  static P mul(P a, P b) { return _mm256_mul_pd(a, b); }
  static P set1(double v) { return _mm256_set1_pd(v); }
  static P in_lanes(P v) {  // stages h = 1, 2
    v = pair_up(v, _mm256_permute_pd(v, 0x5), _mm256_setr_pd(1, -1, 1, -1));  // lanes (1,0,3,2)
    return pair_up(v, _mm256_permute2f128_pd(v, v, 0x01), _mm256_setr_pd(1, 1, -1, -1));
  }
  static P pair_up(P v, P s, P sign) {  // as for float
#if defined(__FMA__)
    return _mm256_fmadd_pd(v, sign, s);
#else
    return _mm256_add_pd(s, _mm256_mul_pd(v, sign));
#endif
  }
};

// Rows of up to this many packets are held in a register array (fully unrolled: 16 AVX
// registers hold a 128-float row); longer rows go through an L1 buffer, same operations.
constexpr int64_t kMaxRegPackets = 16;

// x row -> y row for np packets, in v: inlined with a constant np into a register array for the
// register rows, or with a buffer of np packets for the longer ones.
template <class T, bool kStream>
[[gnu::always_inline]] inline void hadamard_row_avx(const T* x, T* y, int64_t np, typename Avx<T>::P* v, T norm) {
  using A = Avx<T>;
  constexpr int W = A::W;
  _Pragma("GCC unroll 16") for (int64_t m = 0; m < np; ++m) v[m] = A::in_lanes(A::load(x + m * W));
  _Pragma("GCC unroll 8") for (int64_t g = 1; g < np; g *= 2)  // stage h = g W: packets m, m + g
    _Pragma("GCC unroll 16") for (int64_t m = 0; m < np; ++m)
      if ((m & g) == 0) {
        const typename A::P a = v[m], b = v[m + g];
        v[m] = A::add(a, b);
        v[m + g] = A::sub(a, b);
      }
  const typename A::P n = A::set1(norm);
  _Pragma("GCC unroll 16") for (int64_t m = 0; m < np; ++m) {
    if constexpr (kStream)
      A::stream(y + m * W, A::mul(v[m], n));
    else
      A::store(y + m * W, A::mul(v[m], n));
  }
}

template <class T, bool kStream, int kNp>
void rows_fixed(const HadamardParams<T>& p, T norm) {
  typename Avx<T>::P v[kNp];
  for (int64_t r = 0; r < p.x.rows; ++r)
    hadamard_row_avx<T, kStream>(p.x.row(r), p.y.row(r), kNp, v, norm);
}

template <class T, bool kStream>
void rows_avx(const HadamardParams<T>& p, int64_t np, T norm) {
  switch (np) {
    case 1: return rows_fixed<T, kStream, 1>(p, norm);
    case 2: return rows_fixed<T, kStream, 2>(p, norm);
    case 4: return rows_fixed<T, kStream, 4>(p, norm);
    case 8: return rows_fixed<T, kStream, 8>(p, norm);
    case 16: return rows_fixed<T, kStream, 16>(p, norm);
    default: break;
  }
  // A buffer of np packets, packet-aligned (the SIMD types may alias the scalars they hold).
  using P = typename Avx<T>::P;
  std::vector<T> buf(size_t((np + 1) * Avx<T>::W));
  const uintptr_t at = reinterpret_cast<uintptr_t>(buf.data());
  P* v = reinterpret_cast<P*>((at + sizeof(P) - 1) / sizeof(P) * sizeof(P));
  for (int64_t r = 0; r < p.x.rows; ++r) hadamard_row_avx<T, kStream>(p.x.row(r), p.y.row(r), np, v, norm);
}

// Whether every row of y starts on a packet boundary (the streaming store's alignment).
template <class T>
bool rows_aligned(const View2<T>& y) {
  constexpr uintptr_t kAlign = sizeof(typename Avx<T>::P);
  return reinterpret_cast<uintptr_t>(y.data) % kAlign == 0 && (uintptr_t(y.ld) * sizeof(T)) % kAlign == 0;
}

#endif  // __AVX__

}  // namespace

template <class T>
void hadamard(const HadamardParams<T>& p) {
  const int64_t d = p.x.cols;
  require(d > 0 && (d & (d - 1)) == 0,
          "hadamard: tensor 'x': last dim must be a power of two, found " + std::to_string(d));
  require(p.y.rows == p.x.rows && p.y.cols == d, "hadamard: y must have the shape of x");
  const T norm = T(1) / std::sqrt(T(d));
#if defined(__AVX__)
  constexpr int64_t W = Avx<T>::W;
  if (d >= W && p.x.rows > 0) {
    // Large outputs apart from the input are written with streaming stores (stream_store.h).
    const int64_t bytes = ((p.x.rows - 1) * p.x.ld + d) * int64_t(sizeof(T));
    const int64_t ybytes = ((p.y.rows - 1) * p.y.ld + d) * int64_t(sizeof(T));
    if (rows_aligned(p.y) && use_streaming_stores(p.x.data, bytes, p.y.data, ybytes)) {
      rows_avx<T, true>(p, d / W, norm);
      streaming_fence();
    } else {
      rows_avx<T, false>(p, d / W, norm);
    }
    return;
  }
#endif
  for (int64_t r = 0; r < p.x.rows; ++r) {
    T* y = p.y.row(r);
    const T* x = p.x.row(r);
    if (y != x)
      for (int64_t c = 0; c < d; ++c) y[c] = x[c];
    hadamard_row_scalar(y, d, norm);
  }
}

template void hadamard<float>(const HadamardParams<float>&);
template void hadamard<double>(const HadamardParams<double>&);

}  // namespace dsv4::ref
