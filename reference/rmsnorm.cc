#include "reference/rmsnorm.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "reference/errors.h"
#include "reference/stream_store.h"

namespace dsv4::ref {

namespace {

// The output loop with streaming stores: y[c] = x[c] * inv (* w[c]), the same products in the
// same order as the plain loop, so the same bits. Plain stores up to y's first 32-byte boundary
// and after its last.
void scale_row_streaming(const float* x, const float* w, float inv, float* y, int64_t d) {
  int64_t c = 0;
  for (; c < d && reinterpret_cast<uintptr_t>(y + c) % 32 != 0; ++c) y[c] = w ? x[c] * inv * w[c] : x[c] * inv;
#if defined(__AVX__)
  const __m256 s = _mm256_set1_ps(inv);
  for (; c + 8 <= d; c += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + c), s);
    if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + c));
    _mm256_stream_ps(y + c, v);
  }
#endif
  for (; c < d; ++c) y[c] = w ? x[c] * inv * w[c] : x[c] * inv;
}

}  // namespace

template <class T>
void rmsnorm(const RmsNormParams<T>& p) {
  require(p.x.rows == p.y.rows && p.x.cols == p.y.cols,
          "rmsnorm: y must have the shape of x " + shape_string({p.x.rows, p.x.cols}) +
              ", found " + shape_string({p.y.rows, p.y.cols}));
  const int64_t d = p.x.cols;
  bool streaming = false;  // floats only: y large and apart from x (reference/stream_store.h)
  if constexpr (std::is_same_v<T, float>)
    if (p.x.rows > 0 && d > 0)
      streaming = use_streaming_stores(p.x.data, ((p.x.rows - 1) * p.x.ld + d) * int64_t(sizeof(T)), p.y.data,
                                       ((p.y.rows - 1) * p.y.ld + d) * int64_t(sizeof(T)));
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const T* x = p.x.row(r);
    T* y = p.y.row(r);
    T ss = 0;  // vectorised: the sum of squares in SIMD lanes, then across them
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < d; ++c) ss += x[c] * x[c];
    const T inv = T(1) / std::sqrt(ss / T(d) + T(p.eps));
    if constexpr (std::is_same_v<T, float>) {
      if (streaming) {
        scale_row_streaming(x, p.w, inv, y, d);
        continue;
      }
    }
    if (p.w) {
      const T* w = p.w;
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) y[c] = x[c] * inv * w[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < d; ++c) y[c] = x[c] * inv;
    }
  }
  if (streaming) streaming_fence();
}

template void rmsnorm<float>(const RmsNormParams<float>&);
template void rmsnorm<double>(const RmsNormParams<double>&);

}  // namespace dsv4::ref
