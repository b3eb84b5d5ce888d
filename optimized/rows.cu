#include "optimized/rows.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

__global__ void __launch_bounds__(kRowsThreads)
    gather_rows_kernel(const float* src, int64_t src_rows, int64_t src_ld, const int32_t* idx, int64_t cols,
                       float* dst, int64_t dst_ld) {
  const int64_t i = blockIdx.x;
  const int64_t r = idx[i];
  float* d = dst + i * dst_ld;
  if (r < 0 || r >= src_rows) {  // the caller checks; never read outside src
    for (int64_t c = threadIdx.x; c < cols; c += kRowsThreads) d[c] = 0.f;
    return;
  }
  const float* s = src + r * src_ld;
  for (int64_t c = threadIdx.x; c < cols; c += kRowsThreads) d[c] = s[c];
}

__global__ void __launch_bounds__(kRowsThreads)
    spread_rows_kernel(const float* src, int64_t cols, int64_t s, float* dst, bool accumulate) {
  const int64_t o = blockIdx.x;  // output row i*s + k
  const float* x = src + (o / s) * cols;
  float* y = dst + o * cols;
  if (accumulate) {
    for (int64_t c = threadIdx.x; c < cols; c += kRowsThreads) y[c] = y[c] + x[c];
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += kRowsThreads) y[c] = x[c];
  }
}

void check_grid(const char* op, int64_t blocks) {
  require(blocks >= 0 && blocks <= INT_MAX,
          std::string(op) + ": at most " + std::to_string(INT_MAX) + " rows per launch, found " + std::to_string(blocks));
}

}  // namespace

void gather_rows(const float* src, int64_t src_rows, int64_t src_ld, const int32_t* idx, int64_t n, int64_t cols,
                 float* dst, int64_t dst_ld, cudaStream_t stream) {
  check_grid("gather_rows", n);
  require(cols >= 0 && src_ld >= cols && dst_ld >= cols, "gather_rows: row strides must cover the columns");
  if (n == 0 || cols == 0) return;
  const NvtxRange range("gather_rows");
  gather_rows_kernel<<<unsigned(n), kRowsThreads, 0, stream>>>(src, src_rows, src_ld, idx, cols, dst, dst_ld);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void spread_rows(const float* src, int64_t n, int64_t cols, int64_t s, float* dst, bool accumulate,
                 cudaStream_t stream) {
  require(s >= 1, "spread_rows: s must be positive, found " + std::to_string(s));
  require(n <= INT_MAX / s, "spread_rows: n * s overflows a grid");
  check_grid("spread_rows", n * s);
  if (n == 0 || cols == 0) return;
  const NvtxRange range("spread_rows");
  spread_rows_kernel<<<unsigned(n * s), kRowsThreads, 0, stream>>>(src, cols, s, dst, accumulate);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
