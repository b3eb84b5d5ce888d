// Expert weights kept compact on the device in the checkpoint's block-scaled formats, and their
// exact dequantisation to FP32 on the fly (for cuda::moe_compact, optimized/moe.cuh).
// Spec: docs/v4-architecture.md §7 (checkpoint encodings), §3.2 (experts).
//
// Formats: the checkpoint's block layouts, byte for byte. A weight W [rows, cols] maps cols
// inputs to rows outputs (y = W x).
//   FP4 (routed experts, expert_dtype "fp4"):
//     codes  [rows, ceil(cols / 2)]  e2m1: element 2j in the low nibble of byte j, 2j + 1 in the
//                                     high nibble (an odd row's padding nibble is 0)
//     scales [rows, ceil(cols / 32)] UE8M0: block b covers inputs [32 b, 32 b + 32)
//     W[r, c] = e2m1(code[r, c]) * 2^(scales[r, c / 32] - 127)
//   FP8 (the shared expert; the other linears of §7):
//     codes  [rows, cols]                          e4m3fn
//     scales [ceil(rows / B), ceil(cols / B)]     UE8M0, B = 128 (config weight_block_size)
//     W[r, c] = e4m3(code[r, c]) * 2^(scales[r / B, c / B] - 127)
//   A stack of `count` FP4 matrices (the routed experts' w1/w3 [E, I, D], w2 [E, D, I]) is the
//   per-expert tensors back to back: matrix i's codes start at byte i rows ceil(cols / 2), its
//   scales at byte i rows ceil(cols / 32).
//   The products are exact in float (a grid value has at most 3 significant bits and the
//   scale is a power of two >= 2^-127; float subnormals reach 2^-149; dsv4 builds without
//   -ftz), so the device decode equals the loader's host decode (model/checkpoint.cc
//   dequantize_fp4 / dequantize_fp8) bit for bit, signed zeros included.
//
// Encoding (host, encode_fp4_exact / encode_fp8_exact): the loader hands every weight over as
// float, so the store is rebuilt from those floats and must give back exactly the same values.
// Per block: amax = max |w|; e = the smallest integer >= -127 with qmax 2^e >= amax (qmax 6 for
// e2m1, 448 for e4m3); code = the grid code of w 2^-e; the block is accepted only when
// decode(code) 2^e == w bit for bit for every element. This never refuses a block that came
// from the format: if w = m 2^s with every m on the grid, then qmax 2^s >= amax gives s >= e,
// and w 2^-e = m 2^(s - e) <= qmax is on the grid because doubling a grid value <= qmax / 2
// gives a grid value (e2m1: .5 1 1.5 2 3 -> 1 2 3 4 6; e4m3: exponent + 1, subnormals step
// into the first binade). A block stored with a larger scale than it needed therefore comes
// back with a smaller scale and larger codes: other bytes, the same values.
//
// Device dequantisation (dequant_fp4, dequant_fp8): one matrix into a dense FP32 [rows, cols].
// FP4, cols % 8 == 0 and out 16-byte aligned (every real shape): one thread per 8 outputs
// (one 4-byte load of codes, one scale byte, two float4 stores); otherwise one thread per code
// byte (2 outputs). FP8: one thread per output. kDequantThreads threads per CUDA block,
// grid-stride loops, grid at most kDequantMaxBlocks. Asynchronous on `stream`.
//
// Errors: dsv4::InputError. Encoding a block that is not exactly representable (values that
// did not come from this format, e.g. a BF16 / FP32 checkpoint, or a non-finite weight) names
// the tensor, the block and the first offending element; nothing is kept, so the caller can
// keep FP32 for that tensor. Dequantising: bad shapes or index, null pointers, checked on the
// host before the launch. A failed launch or copy throws dsv4::cuda::CudaError.
//
// Memory (fp4_weight_bytes, fp8_weight_bytes): V4-Flash routed expert w1 [2048, 4096]:
// 4 456 448 B in FP4 (codes 4 MiB + scales 256 KiB) against 33 554 432 B in FP32 (7.5x);
// the three matrices of one expert 12.75 MiB against 96 MiB.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "optimized/device.cuh"

namespace dsv4::cuda {

inline constexpr int64_t kFp4WeightBlock = 32;   // §7: inputs per UE8M0 scale of an FP4 weight
inline constexpr int64_t kFp8WeightBlock = 128;  // §7: FP8 weight blocks (weight_block_size)
inline constexpr int kUe8m0Bias = 127;           // UE8M0 byte b -> 2^(b - 127)
inline constexpr int kDequantThreads = 256;
inline constexpr int64_t kDequantMaxBlocks = 8192;  // grid cap; the loops stride over the rest

// ---- host encodings ---------------------------------------------------------------------

// One FP4 matrix in the checkpoint layout (host bytes).
struct Fp4HostMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;   // [rows, ceil(cols / 2)]
  std::vector<uint8_t> scales;  // [rows, ceil(cols / 32)]
};
// One FP8 matrix in the checkpoint layout (host bytes).
struct Fp8HostMatrix {
  int64_t rows = 0, cols = 0, block = kFp8WeightBlock;
  std::vector<uint8_t> codes;   // [rows, cols]
  std::vector<uint8_t> scales;  // [ceil(rows / block), ceil(cols / block)]
};

// w [rows, cols] (host, dense) -> the FP4 encoding that decodes to exactly w. Throws InputError
// ("<name>: FP4 block (row r, inputs [a, b)) ...") when a block is not exactly representable.
Fp4HostMatrix encode_fp4_exact(const float* w, int64_t rows, int64_t cols, const std::string& name);
// w [rows, cols] (host, dense) -> the FP8 encoding with block x block scales that decodes to
// exactly w. Throws InputError naming the tensor and the block likewise.
Fp8HostMatrix encode_fp8_exact(const float* w, int64_t rows, int64_t cols, int64_t block,
                               const std::string& name);

// Device bytes of one matrix (codes + scales).
size_t fp4_weight_bytes(int64_t rows, int64_t cols);
size_t fp8_weight_bytes(int64_t rows, int64_t cols, int64_t block = kFp8WeightBlock);

// ---- device views -----------------------------------------------------------------------

// `count` FP4 matrices [rows, cols] back to back in device memory.
struct Fp4WeightStack {
  const uint8_t* codes = nullptr;   // [count, rows, ceil(cols / 2)]
  const uint8_t* scales = nullptr;  // [count, rows, ceil(cols / 32)]
  int64_t count = 0, rows = 0, cols = 0;
};
// One FP8 matrix [rows, cols] in device memory; codes == nullptr means "absent".
struct Fp8Weight {
  const uint8_t* codes = nullptr;   // [rows, cols]
  const uint8_t* scales = nullptr;  // [ceil(rows / block), ceil(cols / block)]
  int64_t rows = 0, cols = 0, block = kFp8WeightBlock;
};

// out [rows, cols] (device, dense) = matrix `index` of w, dequantised exactly.
void dequant_fp4(const Fp4WeightStack& w, int64_t index, float* out, cudaStream_t stream = 0);
// out [rows, cols] (device, dense) = w dequantised exactly.
void dequant_fp8(const Fp8Weight& w, float* out, cudaStream_t stream = 0);

// ---- owning device stores ---------------------------------------------------------------

// Owns a device FP4 stack built from host floats: w holds `count` matrices [rows, cols] back to
// back (routed experts: w1/w3 [E, I, D], w2 [E, D, I]); matrix i is named
// name_prefix + i + name_suffix in errors (e.g. "layers.3.ffn.experts." 17 ".w1.weight").
// Each matrix is encoded and uploaded in turn (host scratch of one matrix); a refused block
// throws InputError and frees what was uploaded.
class DeviceFp4Stack {
 public:
  DeviceFp4Stack() = default;
  DeviceFp4Stack(const float* w, int64_t count, int64_t rows, int64_t cols,
                 const std::string& name_prefix, const std::string& name_suffix);
  Fp4WeightStack view() const { return {codes_.data(), scales_.data(), count_, rows_, cols_}; }
  size_t bytes() const { return codes_.bytes() + scales_.bytes(); }

 private:
  DeviceBuffer<uint8_t> codes_, scales_;
  int64_t count_ = 0, rows_ = 0, cols_ = 0;
};

// Owns one device FP8 matrix built from host floats w [rows, cols]; errors name `name`.
class DeviceFp8Weight {
 public:
  DeviceFp8Weight() = default;
  DeviceFp8Weight(const float* w, int64_t rows, int64_t cols, int64_t block,
                  const std::string& name);
  Fp8Weight view() const { return {codes_.data(), scales_.data(), rows_, cols_, block_}; }
  size_t bytes() const { return codes_.bytes() + scales_.bytes(); }

 private:
  DeviceBuffer<uint8_t> codes_, scales_;
  int64_t rows_ = 0, cols_ = 0, block_ = kFp8WeightBlock;
};

}  // namespace dsv4::cuda
