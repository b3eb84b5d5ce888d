// Device code shared by optimized/quant_fp8.cu and optimized/quant_fp4.cu: the UE8M0 block
// round trip of reference/quant_fp8.h and reference/quant_fp4.h, bit for bit, one warp per
// quantisation block. Device-only (include from .cu files).
//
// Per block of n <= `block` values of one row:
//   amax  = max |x| over the block's non-NaN values, as float bits (integer max: exact and
//           order-free); an infinity makes the whole block NaN (no UE8M0 scale: byte 0xFF)
//   e     = the smallest integer with qmax 2^e >= max(amax, amax_floor)   (exact, in double)
//   y     = rne_grid(clamp(x 2^-e, -qmax, qmax)) 2^e      NaN x: y = x (bits kept)
// Every step is exact except the rounding onto the grid, which is done on the bits as the
// reference's float path does it (reference/quant_grid.h): in the format's normal range an
// integer round-half-even of the float mantissa to the format's mantissa bits; below it, the
// float addition of `magic` (whose ulp is the format's subnormal step) rounds RNE there and
// subtracting it back is exact. Multiplying by 2^-e and 2^e is exact (results stay on the
// float grid, subnormals included: dsv4 builds without -ftz).
//
// Launch: quant_grid::launch<Format>(op, x, y, block, dims, stream) quantises columns [0, dims)
// of every row; kQuantThreads (256 = 8 warps) per CUDA block, warp w of the grid takes block
// w % blocks_per_row of row w / blocks_per_row; lanes stride over the block's columns
// (coalesced), meet in __reduce_max_sync, then each lane writes the columns it read, which is
// what makes y == x safe.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <limits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/view.h"

namespace dsv4::cuda::quant_grid {

inline constexpr int kQuantThreads = 256;
inline constexpr int kWarpSize = 32;
inline constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
inline constexpr uint32_t kSignMask = 0x80000000u;
inline constexpr uint32_t kInfBits = 0x7F800000u;
inline constexpr uint32_t kQuietNanBits = 0x7FC00000u;  // std::numeric_limits<float>::quiet_NaN()

// FP8 e4m3fn: qmax 448 = 0x43E00000, smallest normal 2^-6 = 0x3C800000, 3 of 23 mantissa bits
// kept, magic 2^14 (ulp 2^-9, the subnormal step); amax floor 1e-4 (§2.2).
struct E4m3 {
  static constexpr uint32_t kMaxBits = 0x43E00000u;
  static constexpr uint32_t kMinNormalBits = 0x3C800000u;
  static constexpr int kDrop = 20;
  static constexpr float kMagic = 16384.0f;
  static constexpr double kQmax = kFp8Max;
  static constexpr double kAmaxFloor = kFp8AmaxFloor;
};

// FP4 e2m1: qmax 6 = 0x40C00000, smallest normal 1 = 0x3F800000, 1 of 23 mantissa bits kept,
// magic 2^22 (ulp 0.5, the subnormal step); amax floor 6 * 2^-126 (§2.3).
struct E2m1 {
  static constexpr uint32_t kMaxBits = 0x40C00000u;
  static constexpr uint32_t kMinNormalBits = 0x3F800000u;
  static constexpr int kDrop = 22;
  static constexpr float kMagic = 4194304.0f;
  static constexpr double kQmax = kFp4Max;
  static constexpr double kAmaxFloor = kFp4AmaxFloor;
};

// floor(log2 |a|) of a finite, normal, non-zero double, from its bits.
__device__ inline int exponent_of(double a) {
  return int((static_cast<unsigned long long>(__double_as_longlong(a)) >> 52) & 0x7FF) - 1023;
}
// 2^e for e in the normal double range, from its bits.
__device__ inline double pow2(int e) { return __longlong_as_double(static_cast<long long>(e + 1023) << 52); }

// |x| as bits, NaN as 0: non-negative floats order as their bits, so an integer max of these
// is amax with NaN skipped and an infinity kept.
__device__ inline uint32_t abs_bits_no_nan(float x) {
  const uint32_t u = __float_as_uint(x) & kAbsMask;
  return u <= kInfBits ? u : 0u;
}

// The UE8M0 exponent of a block with finite amax: the smallest e with qmax 2^e >= a. The
// mantissas of a and qmax differ by a factor in (1/2, 2), so e is the exponent difference or
// one more, told apart by one exact product.
template <class F>
__device__ inline int scale_exp(float amax) {
  const double a = double(amax) > F::kAmaxFloor ? double(amax) : F::kAmaxFloor;
  int e = exponent_of(a) - exponent_of(F::kQmax);
  if (F::kQmax * pow2(e) < a) ++e;
  return e;
}

// RNE of a non-NaN v onto the format's grid, |v| saturated at qmax, sign kept.
template <class F>
__device__ inline float round_to_grid(float v) {
  const uint32_t sign = __float_as_uint(v) & kSignMask;
  uint32_t ua = __float_as_uint(v) & kAbsMask;
  if (ua > F::kMaxBits) ua = F::kMaxBits;
  uint32_t q;
  if (ua >= F::kMinNormalBits) {
    constexpr uint32_t kDropMask = (1u << F::kDrop) - 1u;
    q = (ua + (kDropMask >> 1) + ((ua >> F::kDrop) & 1u)) & ~kDropMask;
  } else {
    q = __float_as_uint(__fsub_rn(__fadd_rn(__uint_as_float(ua), F::kMagic), F::kMagic));
  }
  return __uint_as_float(q | sign);
}

// One warp per quantisation block; see the header comment.
template <class F>
__global__ void __launch_bounds__(kQuantThreads)
    round_trip_blocks(View2<const float> x, View2<float> y, int64_t block, int64_t dims,
                      int64_t blocks_per_row, int64_t total_blocks) {
  const int64_t w = (int64_t(blockIdx.x) * kQuantThreads + threadIdx.x) / kWarpSize;
  if (w >= total_blocks) return;  // whole warps: w is the same for all 32 lanes
  const int lane = threadIdx.x % kWarpSize;
  const int64_t r = w / blocks_per_row;
  const int64_t b0 = (w - r * blocks_per_row) * block;
  const int64_t n = block < dims - b0 ? block : dims - b0;
  const float* xb = x.row(r) + b0;
  float* yb = y.row(r) + b0;

  uint32_t m = 0;
  for (int64_t i = lane; i < n; i += kWarpSize) m = max(m, abs_bits_no_nan(xb[i]));
  m = __reduce_max_sync(0xFFFFFFFFu, m);

  if (m == kInfBits) {  // no UE8M0 scale: the block decodes to NaN
    for (int64_t i = lane; i < n; i += kWarpSize) yb[i] = __uint_as_float(kQuietNanBits);
    return;
  }
  const int e = scale_exp<F>(__uint_as_float(m));
  const float down = float(pow2(-e)), up = float(pow2(e));
  for (int64_t i = lane; i < n; i += kWarpSize) {
    const float v = xb[i];
    yb[i] = isnan(v) ? v : __fmul_rn(round_to_grid<F>(__fmul_rn(v, down)), up);
  }
}

// Quantises columns [0, dims) of every row of x into y (dims >= 1, shapes already checked).
// `op` names the op in the limit's message.
template <class F>
void launch(const char* op, View2<const float> x, View2<float> y, int64_t block, int64_t dims,
            cudaStream_t stream) {
  if (x.rows == 0) return;
  const int64_t blocks_per_row = (dims + block - 1) / block;
  constexpr int64_t kWarpsPerCta = kQuantThreads / kWarpSize;
  constexpr int64_t kMaxGrid = std::numeric_limits<int32_t>::max();
  require(x.rows <= kMaxGrid / blocks_per_row * kWarpsPerCta,
          std::string(op) + ": tensor 'x': " + std::to_string(x.rows) + " rows of " +
              std::to_string(blocks_per_row) + " blocks exceed one launch (" +
              std::to_string(kMaxGrid) + " CUDA blocks of " + std::to_string(kWarpsPerCta) +
              " warps)");
  const int64_t total = x.rows * blocks_per_row;
  const int64_t grid = (total + kWarpsPerCta - 1) / kWarpsPerCta;
  round_trip_blocks<F><<<static_cast<unsigned>(grid), kQuantThreads, 0, stream>>>(
      x, y, block, dims, blocks_per_row, total);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda::quant_grid
