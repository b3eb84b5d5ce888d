// The GPU's ceilings, measured in the same run as the CUDA cases they judge (CUDA builds
// only; shared/docs/targets.md "Ceilings", the device METHOD: a large device-to-device copy
// counting bytes read + written, and a large matrix product through the vendor library).
//
//   copy    cudaMemcpyAsync of one kCopyMiB device buffer into another: bytes per step =
//           2 x the buffer (read + write). 1 GiB is ~17x the 60 MB L2 of an H200, so the
//           copy streams from HBM (~0.5 ms a step at the 4.3 TB/s measured there).
//   cublas  cublasGemmEx C = A B, n x n x n, A, B and C in BF16, FP32 accumulation
//           (CUBLAS_COMPUTE_32F), column-major, no transposes, n = kCublasN = 8192 (the size
//           the workplace's 770-800 TFLOP/s H200 reading used): 2 n^3 FLOPs per step (1.1
//           TFLOP, ~1.4 ms). A and B are random (never zeros: a BF16 product ran 13 % faster
//           on zeros on an H200 here); the copy's source is a non-zero byte pattern.
// Each step enqueues its work on the given stream and returns at once (time it with
// bench/cuda_device.h's DeviceTimer). Device memory: 2 GiB (copy), 384 MiB (cublas).
// Failures of the runtime or cuBLAS throw dsv4::cuda::CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>

namespace dsv4::bench {

inline constexpr int64_t kCopyMiB = 1024;
inline constexpr int64_t kCublasN = 8192;

class CopyCeiling {
 public:
  explicit CopyCeiling(int64_t mib = kCopyMiB);
  ~CopyCeiling();
  void step(cudaStream_t stream);
  double bytes() const;  // read + written per step

 private:
  struct Data;
  std::unique_ptr<Data> d_;
};

class CublasCeiling {
 public:
  explicit CublasCeiling(int64_t n = kCublasN);
  ~CublasCeiling();
  void step(cudaStream_t stream);
  double flops() const { return 2.0 * double(n_) * double(n_) * double(n_); }

 private:
  struct Data;
  int64_t n_;
  std::unique_ptr<Data> d_;
};

}  // namespace dsv4::bench
