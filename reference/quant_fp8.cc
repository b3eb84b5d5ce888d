#include "reference/quant_fp8.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "reference/errors.h"
#include "reference/quant_grid.h"
#include "reference/formats.h"

namespace dsv4::ref {

namespace {

// FP8 e4m3 for the fast paths (reference/quant_grid.h): qmax 448 = 0x43E00000, smallest
// normal 2^-6 = 0x3C800000, 3 of 23 mantissa bits kept, magic 2^14 (ulp 2^-9 = the subnormal step).
inline bool float_block(const float* x, float* y, int64_t n, int e_floor) {
  return quant_detail::fast_block<0x43E00000u, 0x3C800000u, 20>(x, y, n, kFp8AmaxFloor, kFp8Max, 16384.0f, e_floor);
}

}  // namespace

template <class T>
uint8_t fp8_encode_block(const T* x, int64_t n, uint8_t* codes) {
  double amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(x[i])));
  const int e = fmt::ue8m0_scale_exp(amax, kFp8AmaxFloor, kFp8Max);
  for (int64_t i = 0; i < n; ++i) {
    const double q = std::clamp(std::ldexp(double(x[i]), -e), -kFp8Max, kFp8Max);
    codes[i] = fmt::e4m3_encode(q);
  }
  return fmt::ue8m0_encode_exp(e);
}

template <class T>
void fp8_decode_block(const uint8_t* codes, int64_t n, uint8_t scale, T* y) {
  const double s = fmt::ue8m0_decode(scale);
  for (int64_t i = 0; i < n; ++i) y[i] = T(double(fmt::e4m3_decode(codes[i])) * s);
}

template <class T>
void quant_fp8(const QuantFp8Params<T>& p) {
  const int64_t dims = p.dims ? p.dims : p.x.cols;
  require(p.block > 0, "quant_fp8: key 'block' must be positive, found " + std::to_string(p.block));
  require(dims > 0 && dims <= p.x.cols, "quant_fp8: key 'dims' must be in [0, " +
                                            std::to_string(p.x.cols) + "], found " +
                                            std::to_string(p.dims));
  require(p.y.rows == p.x.rows && p.y.cols == p.x.cols, "quant_fp8: y must have the shape of x");
  const int e_floor = fmt::ue8m0_scale_exp(kFp8AmaxFloor, kFp8AmaxFloor, kFp8Max);  // the scale of the amax floor
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const T* x = p.x.row(r);
    T* y = p.y.row(r);
    for (int64_t b = 0; b < dims; b += p.block) {
      const int64_t n = std::min(p.block, dims - b);
      if constexpr (std::is_same_v<T, float>) {
        if (float_block(x + b, y + b, n, e_floor)) continue;
      }
      double amax = 0;
      for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(x[b + i])));
      const int e = fmt::ue8m0_scale_exp(amax, kFp8AmaxFloor, kFp8Max);
      if (e == fmt::kUe8m0NanExp) {  // no UE8M0 scale: the block decodes to NaN
        std::fill(y + b, y + b + n, std::numeric_limits<T>::quiet_NaN());
        continue;
      }
      const double down = fmt::pow2(-e), up = fmt::pow2(e);
      for (int64_t i = 0; i < n; ++i)
        y[b + i] = T(fmt::e4m3_round(std::clamp(double(x[b + i]) * down, -kFp8Max, kFp8Max)) * up);
    }
    if (y != x)
      for (int64_t c = dims; c < p.x.cols; ++c) y[c] = x[c];
  }
}

template void quant_fp8<float>(const QuantFp8Params<float>&);
template void quant_fp8<double>(const QuantFp8Params<double>&);
template uint8_t fp8_encode_block<float>(const float*, int64_t, uint8_t*);
template uint8_t fp8_encode_block<double>(const double*, int64_t, uint8_t*);
template void fp8_decode_block<float>(const uint8_t*, int64_t, uint8_t, float*);
template void fp8_decode_block<double>(const uint8_t*, int64_t, uint8_t, double*);

}  // namespace dsv4::ref
