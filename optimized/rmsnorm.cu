#include "optimized/rmsnorm.cuh"

#include <climits>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarps = kRmsNormThreads / kWarpSize;
static_assert(kRmsNormThreads % kWarpSize == 0, "rmsnorm: the block must be whole warps");

// Sum of v over the block, returned to every thread. Fixed order: butterfly within each warp,
// then every thread adds the warp sums 0..kWarps-1 in turn.
__device__ float block_sum(float v) {
  __shared__ float warp_sums[kWarps];
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % kWarpSize == 0) warp_sums[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) total += warp_sums[i];
  return total;
}

__global__ void __launch_bounds__(kRmsNormThreads)
    rmsnorm_rows(View2<const float> x, const float* w, View2<float> y, float eps) {
  const int64_t d = x.cols;
  const float* xr = x.row(blockIdx.x);
  float* yr = y.row(blockIdx.x);

  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += kRmsNormThreads) {
    const float v = xr[c];
    ss = fmaf(v, v, ss);
  }
  // block_sum's barrier orders every read of x above before any write of y below.
  ss = block_sum(ss);
  const float inv = 1.0f / sqrtf(ss / float(d) + eps);

  if (w) {
    for (int64_t c = threadIdx.x; c < d; c += kRmsNormThreads) yr[c] = xr[c] * inv * w[c];
  } else {
    for (int64_t c = threadIdx.x; c < d; c += kRmsNormThreads) yr[c] = xr[c] * inv;
  }
}

}  // namespace

void rmsnorm(const RmsNormParams<float>& p, cudaStream_t stream) {
  require(p.x.rows == p.y.rows && p.x.cols == p.y.cols,
          "rmsnorm: y must have the shape of x " + shape_string({p.x.rows, p.x.cols}) +
              ", found " + shape_string({p.y.rows, p.y.cols}));
  require(p.x.rows <= INT_MAX,
          "rmsnorm: tensor 'x': at most " + std::to_string(INT_MAX) +
              " rows per launch (one block per row), found " + std::to_string(p.x.rows));
  if (p.x.rows == 0 || p.x.cols == 0) return;
  const NvtxRange range("rmsnorm");
  rmsnorm_rows<<<static_cast<unsigned>(p.x.rows), kRmsNormThreads, 0, stream>>>(
      p.x, p.w, p.y, static_cast<float>(p.eps));
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
