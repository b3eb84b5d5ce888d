#include "optimized/hadamard.cuh"

#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kMaxThreads = 256;
static_assert(kHadamardMaxDim * sizeof(float) <= 48 * 1024,
              "hadamard: one row must fit the default 48 KiB of dynamic shared memory");

__global__ void __launch_bounds__(kMaxThreads)
    hadamard_rows(View2<const float> x, View2<float> y, float norm) {
  extern __shared__ float s[];
  const int d = static_cast<int>(x.cols);
  const float* xr = x.row(blockIdx.x);
  for (int c = threadIdx.x; c < d; c += blockDim.x) s[c] = xr[c];
  __syncthreads();

  // Stage h pairs element i with i + h, where i has bit h clear: pair p -> i inserts a zero
  // bit at position log2(h) into p.
  const int pairs = d / 2;
  for (int h = 1; h < d; h *= 2) {
    for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
      const int i = ((p & ~(h - 1)) << 1) | (p & (h - 1));
      const float a = s[i], b = s[i + h];
      s[i] = a + b;
      s[i + h] = a - b;
    }
    __syncthreads();
  }

  float* yr = y.row(blockIdx.x);
  for (int c = threadIdx.x; c < d; c += blockDim.x) yr[c] = s[c] * norm;
}

}  // namespace

void hadamard(const HadamardParams<float>& p, cudaStream_t stream) {
  const int64_t d = p.x.cols;
  require(d > 0 && (d & (d - 1)) == 0,
          "hadamard: tensor 'x': last dim must be a power of two, found " + std::to_string(d));
  require(p.y.rows == p.x.rows && p.y.cols == d, "hadamard: y must have the shape of x");
  require(d <= kHadamardMaxDim, "hadamard: tensor 'x': last dim must be at most " +
                                    std::to_string(kHadamardMaxDim) +
                                    " on the GPU (one row in shared memory), found " +
                                    std::to_string(d));
  require(p.x.rows <= INT_MAX,
          "hadamard: tensor 'x': at most " + std::to_string(INT_MAX) +
              " rows per launch (one block per row), found " + std::to_string(p.x.rows));
  if (p.x.rows == 0) return;
  const int threads = static_cast<int>(d / 2 < 1 ? 1 : (d / 2 < kMaxThreads ? d / 2 : kMaxThreads));
  const float norm = 1.0f / std::sqrt(static_cast<float>(d));  // the reference's T(1)/sqrt(T(d))
  const NvtxRange range("hadamard");
  hadamard_rows<<<static_cast<unsigned>(p.x.rows), threads, d * sizeof(float), stream>>>(
      p.x, p.y, norm);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
