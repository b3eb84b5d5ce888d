// The one CUDA error path of dsv4::cuda (engineering.md §2 rule 5).
//
//   DSV4_CUDA_CHECK(expr)    expr returns cudaError_t; anything but cudaSuccess throws.
//   DSV4_CUBLAS_CHECK(expr)  expr returns cublasStatus_t; anything but SUCCESS throws.
//
// Both throw dsv4::cuda::CudaError (a std::runtime_error) whose message reads
//   "<file>:<line>: <expression> failed: <error name>: <error string>".
// After a kernel launch, check the launch itself with DSV4_CUDA_CHECK(cudaGetLastError()).
// Bad *input* (shapes, sizes) is reported with dsv4::InputError (reference/errors.h) before
// any device work starts; CudaError is for failures of the runtime, driver or library.
//
// This header is plain C++ (no device code) so host-only translation units may include it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace dsv4::cuda {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* expr, const char* file,
                                          int line) {
  throw CudaError(std::string(file) + ":" + std::to_string(line) + ": " + expr + " failed: " +
                  cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* expr,
                                            const char* file, int line) {
  throw CudaError(std::string(file) + ":" + std::to_string(line) + ": " + expr +
                  " failed: cuBLAS status " + std::to_string(static_cast<int>(status)) + ": " +
                  cublasGetStatusString(status));
}

}  // namespace dsv4::cuda

#define DSV4_CUDA_CHECK(expr)                                                 \
  do {                                                                        \
    const cudaError_t dsv4_cuda_err_ = (expr);                                \
    if (dsv4_cuda_err_ != cudaSuccess)                                        \
      ::dsv4::cuda::throw_cuda_error(dsv4_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define DSV4_CUBLAS_CHECK(expr)                                                      \
  do {                                                                               \
    const cublasStatus_t dsv4_cublas_status_ = (expr);                               \
    if (dsv4_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                \
      ::dsv4::cuda::throw_cublas_error(dsv4_cublas_status_, #expr, __FILE__, __LINE__); \
  } while (0)
