#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "optimized/compact_weights.cuh"
#include "optimized/cuda_check.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4::cuda {

namespace {

constexpr int kMinScaleExp = -kUe8m0Bias;  // UE8M0 byte 0: 2^-127, the smallest scale
constexpr uint8_t kE2m1SignBit = 0x8;
constexpr int kNibbleBits = 4;
constexpr int kNibblesPerWord = 8;  // the vectorised FP4 path: 8 codes in one 4-byte load
static_assert(kFp4WeightBlock % kNibblesPerWord == 0,
              "dequant_fp4: an 8-code unit must not straddle two scale blocks");

int64_t cdiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Float bits, for bitwise comparisons (signed zeros and NaN payloads count).
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// The block scale exponent: the smallest e >= -127 with qmax 2^e >= amax (amax finite).
int block_scale_exp(double amax, double qmax) {
  return fmt::ue8m0_scale_exp(amax, std::ldexp(qmax, kMinScaleExp), qmax);
}

// The encoders' candidate codes (any code is checked by decoding it afterwards, so these
// only need to find the right code when one exists; they run per weight, hence bit tests).
constexpr uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kE4m3MaxBits = 0x43E00000u;        // 448
constexpr uint32_t kE4m3MinNormalBits = 0x3C800000u;  // 2^-6
constexpr int kE4m3SubnormalSteps = 512;              // 2^9: subnormal code = |q| 2^9
constexpr int kE4m3MantBits = 3;

// The e2m1 code whose value is q (sign bit 3), or -1 when q is not on the grid: 0; 0.5 (code
// 1); 1 .. 6 with one mantissa bit, float exponent field E in [127, 129] -> code
// (E - 126) << 1 | mantissa bit.
int e2m1_code_of(float q) {
  uint32_t u;
  std::memcpy(&u, &q, sizeof u);
  const int sign = (u & kSignBit) ? kE2m1SignBit : 0;
  const uint32_t a = u & kAbsMask;
  constexpr uint32_t kHalfBits = 0x3F000000u, kBelowTopMantBit = (1u << 22) - 1;
  constexpr uint32_t kMinExpField = 127, kMaxExpField = 129;  // 1 .. 6
  if (a == 0) return sign;
  if (a == kHalfBits) return sign | 1;
  const uint32_t ef = a >> 23;
  if ((a & kBelowTopMantBit) || ef < kMinExpField || ef > kMaxExpField) return -1;
  return sign | int(((ef - 126) << 1) | ((a >> 22) & 1u));
}

// The e4m3fn code whose value is q, or -1 when there is none: normal |q| in [2^-6, 448] with
// at most 3 mantissa bits (exponent field = float exponent - 120), subnormal |q| = k 2^-9.
int e4m3_code_of(float q) {
  uint32_t u;
  std::memcpy(&u, &q, sizeof u);
  const int sign = (u & kSignBit) ? 0x80 : 0;
  const uint32_t a = u & kAbsMask;
  if (a > kE4m3MaxBits) return -1;
  if (a >= kE4m3MinNormalBits) {
    constexpr uint32_t kDropped = (1u << (23 - kE4m3MantBits)) - 1;  // float mantissa below 3 bits
    if (a & kDropped) return -1;
    const int ex = int(a >> 23) - 120, mant = int((a >> 20) & 7u);
    return sign | (ex << kE4m3MantBits) | mant;
  }
  const float k = std::fabs(q) * float(kE4m3SubnormalSteps);  // exact
  if (k != std::floor(k)) return -1;
  return sign | int(k);
}

// Decode tables, as the loader's (model/checkpoint.cc: fmt::e4m3_decode / e2m1_decode).
struct DecodeTables {
  float e4m3[256], e2m1[16];
  DecodeTables() {
    for (int c = 0; c < 256; ++c) e4m3[c] = fmt::e4m3_decode(uint8_t(c));
    for (int c = 0; c < 16; ++c) e2m1[c] = fmt::e2m1_decode(uint8_t(c));
  }
};
const DecodeTables& tables() {
  static const DecodeTables t;
  return t;
}

std::string range(int64_t a, int64_t b) {
  std::string s = "[";  // appended: GCC 12's -Wrestrict misfires on "[" + std::string
  s += std::to_string(a) + ", " + std::to_string(b);
  return s + ")";
}

[[noreturn]] void refuse(const std::string& name, const std::string& block, int64_t r, int64_t c,
                         float v, const std::string& why) {
  throw InputError(name + ": " + block + " is not exactly representable: element [" +
                   std::to_string(r) + ", " + std::to_string(c) + "] = " + num(v) + " " + why +
                   " (the weights did not come from this format; keep the tensor in FP32)");
}

// ---- device decode ----------------------------------------------------------------------

constexpr uint32_t kQuietNanBits = 0x7FC00000u;
constexpr uint32_t kUe8m0NanByte = 0xFFu;
constexpr uint32_t kFloatMantBits = 23;
constexpr uint32_t kScaleMinBits = 0x00400000u;           // 2^-127, a float subnormal (byte 0)
constexpr uint32_t kE4m3SubnormalStepBits = 0x3B000000u;  // 2^-9
constexpr uint32_t kE4m3ExpShift = 120;  // float exponent field = e4m3 exponent field + 127 - 7

// 2^(b - 127) as a float; byte 0xFF is NaN (as fmt::ue8m0_decode).
__device__ inline float ue8m0_value(uint32_t b) {
  if (b == kUe8m0NanByte) return __uint_as_float(kQuietNanBits);
  return b == 0 ? __uint_as_float(kScaleMinBits) : __uint_as_float(b << kFloatMantBits);
}

// e2m1 nibble c (sign bit 3, exponent bits 2:1, mantissa bit 0) as a float: magnitude codes
// 2..7 are (1 + m / 2) 2^(E - 1) for exponent field E, 1 is the subnormal 0.5, 0 is zero.
__device__ inline float e2m1_value(uint32_t c) {
  const uint32_t mag = c & 7u;
  const float m =
      (mag & 6u) ? __uint_as_float((((mag >> 1) + 126u) << kFloatMantBits) | ((mag & 1u) << 22))
                 : 0.5f * float(mag & 1u);
  return (c & 8u) ? -m : m;
}

// e4m3fn byte c (sign bit 7, exponent bits 6:3 with bias 7, mantissa bits 2:0) as a float;
// 0x7F / 0xFF are NaN, exponent field 0 the subnormals mant 2^-9.
__device__ inline float e4m3_value(uint32_t c) {
  const uint32_t ex = (c >> 3) & 0xFu, mant = c & 7u;
  if (ex == 0xFu && mant == 7u) return __uint_as_float(kQuietNanBits);
  const float m = ex == 0
                      ? float(mant) * __uint_as_float(kE4m3SubnormalStepBits)
                      : __uint_as_float(((ex + kE4m3ExpShift) << kFloatMantBits) | (mant << 20));
  return (c & 0x80u) ? -m : m;
}

// FP4, cols % 8 == 0: unit i = 8 outputs (row i / upr, columns 8 (i % upr) ..), one 4-byte
// code word (element j in bits 4j..4j+3: byte k holds 2k low, 2k + 1 high), one scale.
__global__ void __launch_bounds__(kDequantThreads)
    dequant_fp4_vec8(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t cols,
                     float* out) {
  const int64_t upr = cols / kNibblesPerWord, bpr = cols / 2,
                spr = (cols + kFp4WeightBlock - 1) / kFp4WeightBlock;
  const int64_t total = rows * upr;
  for (int64_t i = int64_t(blockIdx.x) * kDequantThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kDequantThreads) {
    const int64_t r = i / upr, u = i % upr;
    const uint32_t word = *reinterpret_cast<const uint32_t*>(codes + r * bpr + u * 4);
    const float s = ue8m0_value(scales[r * spr + u * kNibblesPerWord / kFp4WeightBlock]);
    float v[kNibblesPerWord];
#pragma unroll
    for (int j = 0; j < kNibblesPerWord; ++j)
      v[j] = e2m1_value((word >> (kNibbleBits * j)) & 0xFu) * s;
    float4* o = reinterpret_cast<float4*>(out + r * cols + u * kNibblesPerWord);
    o[0] = make_float4(v[0], v[1], v[2], v[3]);
    o[1] = make_float4(v[4], v[5], v[6], v[7]);
  }
}

// FP4, any shape: unit i = code byte i (row i / bpr, byte i % bpr): columns 2k and 2k + 1
// (the latter only when it exists).
__global__ void __launch_bounds__(kDequantThreads)
    dequant_fp4_bytes(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t cols,
                      float* out) {
  const int64_t bpr = (cols + 1) / 2, spr = (cols + kFp4WeightBlock - 1) / kFp4WeightBlock;
  const int64_t total = rows * bpr;
  for (int64_t i = int64_t(blockIdx.x) * kDequantThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kDequantThreads) {
    const int64_t r = i / bpr, c0 = 2 * (i % bpr);
    const uint32_t byte = codes[i];
    const float s = ue8m0_value(scales[r * spr + c0 / kFp4WeightBlock]);
    float* o = out + r * cols + c0;
    o[0] = e2m1_value(byte & 0xFu) * s;
    if (c0 + 1 < cols) o[1] = e2m1_value(byte >> kNibbleBits) * s;
  }
}

// FP8: output i = (row i / cols, column i % cols), scale of block (r / B, c / B).
__global__ void __launch_bounds__(kDequantThreads)
    dequant_fp8_elems(const uint8_t* codes, const uint8_t* scales, int64_t rows, int64_t cols,
                      int64_t block, float* out) {
  const int64_t scols = (cols + block - 1) / block, total = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * kDequantThreads + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * kDequantThreads) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = e4m3_value(codes[i]) * ue8m0_value(scales[(r / block) * scols + c / block]);
  }
}

unsigned grid_for(int64_t units) {
  return unsigned(std::min<int64_t>(cdiv(units, kDequantThreads), kDequantMaxBlocks));
}

bool aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

}  // namespace

// ---- host encodings ---------------------------------------------------------------------

size_t fp4_weight_bytes(int64_t rows, int64_t cols) {
  return size_t(rows * cdiv(cols, 2) + rows * cdiv(cols, kFp4WeightBlock));
}

size_t fp8_weight_bytes(int64_t rows, int64_t cols, int64_t block) {
  return size_t(rows * cols + cdiv(rows, block) * cdiv(cols, block));
}

Fp4HostMatrix encode_fp4_exact(const float* w, int64_t rows, int64_t cols,
                               const std::string& name) {
  require(rows >= 0 && cols >= 0, name + ": FP4 encoding needs rows, cols >= 0, found [" +
                                      std::to_string(rows) + ", " + std::to_string(cols) + "]");
  require(w || rows * cols == 0, name + ": FP4 encoding of a null weight");
  const int64_t bpr = cdiv(cols, 2), spr = cdiv(cols, kFp4WeightBlock);
  Fp4HostMatrix m{rows, cols, std::vector<uint8_t>(size_t(rows * bpr), 0),
                  std::vector<uint8_t>(size_t(rows * spr), 0)};
  for (int64_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    for (int64_t b = 0; b < spr; ++b) {
      const int64_t c0 = b * kFp4WeightBlock, c1 = std::min(cols, c0 + kFp4WeightBlock);
      auto block = [&] {
        return "FP4 block (row " + std::to_string(r) + ", inputs " + range(c0, c1) + ")";
      };
      double amax = 0;
      for (int64_t c = c0; c < c1; ++c) {
        if (!std::isfinite(wr[c])) refuse(name, block(), r, c, wr[c], "is not finite");
        amax = std::max(amax, double(std::fabs(wr[c])));
      }
      const int e = block_scale_exp(amax, kFp4Max);  // finite float amax: e <= 127
      const float scale = float(std::ldexp(1.0, e)), inv = float(std::ldexp(1.0, -e));  // exact
      m.scales[size_t(r * spr + b)] = fmt::ue8m0_encode_exp(e);
      for (int64_t c = c0; c < c1; ++c) {
        const int code = e2m1_code_of(wr[c] * inv);  // exact product when w = m 2^e
        if (code < 0 || bits(tables().e2m1[code] * scale) != bits(wr[c]))
          refuse(name, block(), r, c, wr[c],
                 "is not an e2m1 value times the block scale 2^" + std::to_string(e) +
                     " (block max |w| = " + num(amax) + ")");
        m.codes[size_t(r * bpr + c / 2)] |= uint8_t(code << (kNibbleBits * (c % 2)));
      }
    }
  }
  return m;
}

Fp8HostMatrix encode_fp8_exact(const float* w, int64_t rows, int64_t cols, int64_t block,
                               const std::string& name) {
  require(rows >= 0 && cols >= 0 && block > 0,
          name + ": FP8 encoding needs rows, cols >= 0 and block > 0, found [" +
              std::to_string(rows) + ", " + std::to_string(cols) + "] block " +
              std::to_string(block));
  require(w || rows * cols == 0, name + ": FP8 encoding of a null weight");
  const int64_t srows = cdiv(rows, block), scols = cdiv(cols, block);
  Fp8HostMatrix m{rows, cols, block, std::vector<uint8_t>(size_t(rows * cols), 0),
                  std::vector<uint8_t>(size_t(srows * scols), 0)};
  for (int64_t bi = 0; bi < srows; ++bi) {
    for (int64_t bj = 0; bj < scols; ++bj) {
      const int64_t r0 = bi * block, r1 = std::min(rows, r0 + block);
      const int64_t c0 = bj * block, c1 = std::min(cols, c0 + block);
      auto where = [&] {
        return "FP8 block [" + std::to_string(bi) + ", " + std::to_string(bj) + "] (rows " +
               range(r0, r1) + ", inputs " + range(c0, c1) + ")";
      };
      double amax = 0;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const float v = w[r * cols + c];
          if (!std::isfinite(v)) refuse(name, where(), r, c, v, "is not finite");
          amax = std::max(amax, double(std::fabs(v)));
        }
      const int e = block_scale_exp(amax, kFp8Max);
      const float scale = float(std::ldexp(1.0, e)), inv = float(std::ldexp(1.0, -e));  // exact
      m.scales[size_t(bi * scols + bj)] = fmt::ue8m0_encode_exp(e);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const float v = w[r * cols + c];
          const int code = e4m3_code_of(v * inv);  // exact product when w = m 2^e
          if (code < 0 || bits(tables().e4m3[code] * scale) != bits(v))
            refuse(name, where(), r, c, v,
                   "is not an e4m3 value times the block scale 2^" + std::to_string(e) +
                       " (block max |w| = " + num(amax) + ")");
          m.codes[size_t(r * cols + c)] = uint8_t(code);
        }
    }
  }
  return m;
}

// ---- device dequantisation --------------------------------------------------------------

void dequant_fp4(const Fp4WeightStack& w, int64_t index, float* out, cudaStream_t stream) {
  require(w.count >= 0 && w.rows >= 0 && w.cols >= 0,
          "dequant_fp4: negative stack shape [" + std::to_string(w.count) + ", " +
              std::to_string(w.rows) + ", " + std::to_string(w.cols) + "]");
  require(index >= 0 && index < w.count, "dequant_fp4: matrix " + std::to_string(index) +
                                             " is outside the stack of " + std::to_string(w.count));
  if (w.rows * w.cols == 0) return;
  require(w.codes && w.scales && out, "dequant_fp4: null codes, scales or output");
  const int64_t bpr = cdiv(w.cols, 2), spr = cdiv(w.cols, kFp4WeightBlock);
  const uint8_t* codes = w.codes + index * w.rows * bpr;
  const uint8_t* scales = w.scales + index * w.rows * spr;
  constexpr size_t kWordBytes = 4, kFloat4Bytes = 16;
  if (w.cols % kNibblesPerWord == 0 && aligned(codes, kWordBytes) && aligned(out, kFloat4Bytes)) {
    const int64_t units = w.rows * (w.cols / kNibblesPerWord);
    dequant_fp4_vec8<<<grid_for(units), kDequantThreads, 0, stream>>>(codes, scales, w.rows, w.cols,
                                                                      out);
  } else {
    dequant_fp4_bytes<<<grid_for(w.rows * bpr), kDequantThreads, 0, stream>>>(codes, scales, w.rows,
                                                                              w.cols, out);
  }
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void dequant_fp8(const Fp8Weight& w, float* out, cudaStream_t stream) {
  require(w.rows >= 0 && w.cols >= 0 && w.block > 0,
          "dequant_fp8: bad shape [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
              "] or block " + std::to_string(w.block));
  if (w.rows * w.cols == 0) return;
  require(w.codes && w.scales && out, "dequant_fp8: null codes, scales or output");
  dequant_fp8_elems<<<grid_for(w.rows * w.cols), kDequantThreads, 0, stream>>>(
      w.codes, w.scales, w.rows, w.cols, w.block, out);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

// ---- owning stores ----------------------------------------------------------------------

DeviceFp4Stack::DeviceFp4Stack(const float* w, int64_t count, int64_t rows, int64_t cols,
                               const std::string& name_prefix, const std::string& name_suffix)
    : count_(count), rows_(rows), cols_(cols) {
  require(count >= 0 && rows >= 0 && cols >= 0,
          name_prefix + "*" + name_suffix + ": negative FP4 stack shape");
  require(w || count * rows * cols == 0, name_prefix + "*" + name_suffix + ": null weights");
  const size_t code_bytes = size_t(rows * cdiv(cols, 2)),
               scale_bytes = size_t(rows * cdiv(cols, kFp4WeightBlock));
  codes_ = DeviceBuffer<uint8_t>(size_t(count) * code_bytes);
  scales_ = DeviceBuffer<uint8_t>(size_t(count) * scale_bytes);
  for (int64_t i = 0; i < count; ++i) {
    const Fp4HostMatrix m = encode_fp4_exact(w + i * rows * cols, rows, cols,
                                             name_prefix + std::to_string(i) + name_suffix);
    codes_.upload(m.codes.data(), code_bytes, size_t(i) * code_bytes);
    scales_.upload(m.scales.data(), scale_bytes, size_t(i) * scale_bytes);
  }
}

DeviceFp8Weight::DeviceFp8Weight(const float* w, int64_t rows, int64_t cols, int64_t block,
                                 const std::string& name)
    : rows_(rows), cols_(cols), block_(block) {
  const Fp8HostMatrix m = encode_fp8_exact(w, rows, cols, block, name);
  codes_ = DeviceBuffer<uint8_t>(m.codes);
  scales_ = DeviceBuffer<uint8_t>(m.scales);
}

}  // namespace dsv4::cuda
