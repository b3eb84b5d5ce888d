#include "reference/quant_fp4.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "reference/errors.h"
#include "reference/quant_grid.h"
#include "reference/formats.h"

namespace dsv4::ref {

namespace {

// FP4 e2m1 for the fast paths (reference/quant_grid.h): qmax 6 = 0x40C00000, smallest
// normal 1 = 0x3F800000, 1 of 23 mantissa bits kept, magic 2^22 (ulp 0.5 = the subnormal step).
inline bool float_block(const float* x, float* y, int64_t n, int e_floor) {
  return quant_detail::fast_block<0x40C00000u, 0x3F800000u, 22>(x, y, n, kFp4AmaxFloor, kFp4Max, 4194304.0f, e_floor);
}

template <class T>
int block_exp(const T* x, int64_t n) {
  double amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(x[i])));
  return fmt::ue8m0_scale_exp(amax, kFp4AmaxFloor, kFp4Max);
}
template <class T>
uint8_t code_of(T v, int e) {
  return fmt::e2m1_encode(std::clamp(std::ldexp(double(v), -e), -kFp4Max, kFp4Max));
}
}  // namespace

template <class T>
uint8_t fp4_encode_block(const T* x, int64_t n, uint8_t* packed) {
  require(n % 2 == 0, "fp4_encode_block: block length must be even, found " + std::to_string(n));
  const int e = block_exp(x, n);
  for (int64_t k = 0; k < n / 2; ++k) {
    packed[k] = uint8_t(code_of(x[2 * k], e) | (code_of(x[2 * k + 1], e) << 4));
  }
  return fmt::ue8m0_encode_exp(e);
}

template <class T>
void fp4_decode_block(const uint8_t* packed, int64_t n, uint8_t scale, T* y) {
  const double s = fmt::ue8m0_decode(scale);
  for (int64_t k = 0; k < n / 2; ++k) {
    y[2 * k] = T(double(fmt::e2m1_decode(packed[k] & 0xF)) * s);
    y[2 * k + 1] = T(double(fmt::e2m1_decode(packed[k] >> 4)) * s);
  }
}

template <class T>
void quant_fp4(const QuantFp4Params<T>& p) {
  require(p.block > 0, "quant_fp4: key 'block' must be positive, found " + std::to_string(p.block));
  require(p.y.rows == p.x.rows && p.y.cols == p.x.cols, "quant_fp4: y must have the shape of x");
  const int64_t d = p.x.cols;
  const int e_floor = fmt::ue8m0_scale_exp(kFp4AmaxFloor, kFp4AmaxFloor, kFp4Max);  // the scale of the amax floor
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const T* x = p.x.row(r);
    T* y = p.y.row(r);
    for (int64_t b = 0; b < d; b += p.block) {
      const int64_t n = std::min(p.block, d - b);
      if constexpr (std::is_same_v<T, float>) {
        if (float_block(x + b, y + b, n, e_floor)) continue;
      }
      const int e = block_exp(x + b, n);
      if (e == fmt::kUe8m0NanExp) {  // no UE8M0 scale: the block decodes to NaN
        std::fill(y + b, y + b + n, std::numeric_limits<T>::quiet_NaN());
        continue;
      }
      const double down = fmt::pow2(-e), up = fmt::pow2(e);
      for (int64_t i = 0; i < n; ++i)
        y[b + i] = T(fmt::e2m1_round(std::clamp(double(x[b + i]) * down, -kFp4Max, kFp4Max)) * up);
    }
  }
}

template void quant_fp4<float>(const QuantFp4Params<float>&);
template void quant_fp4<double>(const QuantFp4Params<double>&);
template uint8_t fp4_encode_block<float>(const float*, int64_t, uint8_t*);
template uint8_t fp4_encode_block<double>(const double*, int64_t, uint8_t*);
template void fp4_decode_block<float>(const uint8_t*, int64_t, uint8_t, float*);
template void fp4_decode_block<double>(const uint8_t*, int64_t, uint8_t, double*);

}  // namespace dsv4::ref
