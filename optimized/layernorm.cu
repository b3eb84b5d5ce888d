#include "optimized/layernorm.cuh"

#include <climits>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarps = kLayerNormThreads / kWarpSize;
static_assert(kLayerNormThreads % kWarpSize == 0, "layernorm: the block must be whole warps");

// Sum of v over the block, returned to every thread. Fixed order: butterfly within each warp,
// then every thread adds the warp sums 0..kWarps-1 in turn. The closing barrier lets the next
// call reuse `slots` (no thread still reads them).
__device__ float block_sum(float v, float* slots) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % kWarpSize == 0) slots[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < kWarps; ++i) total += slots[i];
  __syncthreads();
  return total;
}

__global__ void __launch_bounds__(kLayerNormThreads)
    layernorm_rows(View2<const float> x, const float* w, const float* b, View2<float> y, float eps) {
  __shared__ float slots[kWarps];
  const int64_t d = x.cols;
  const float* xr = x.row(blockIdx.x);
  float* yr = y.row(blockIdx.x);

  float s = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += kLayerNormThreads) s += xr[c];
  const float mu = block_sum(s, slots) / float(d);

  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < d; c += kLayerNormThreads) {
    const float dev = xr[c] - mu;
    ss = fmaf(dev, dev, ss);
  }
  // block_sum's barriers order every read of x above before any write of y below.
  const float inv = 1.0f / sqrtf(block_sum(ss, slots) / float(d) + eps);

  for (int64_t c = threadIdx.x; c < d; c += kLayerNormThreads) {
    yr[c] = (xr[c] - mu) * inv * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
  }
}

}  // namespace

void layernorm(const LayerNormParams<float>& p, cudaStream_t stream) {
  require(p.x.rows == p.y.rows && p.x.cols == p.y.cols,
          "layernorm: y must have the shape of x " + shape_string({p.x.rows, p.x.cols}) +
              ", found " + shape_string({p.y.rows, p.y.cols}));
  require(p.x.rows <= INT_MAX,
          "layernorm: tensor 'x': at most " + std::to_string(INT_MAX) +
              " rows per launch (one block per row), found " + std::to_string(p.x.rows));
  if (p.x.rows == 0 || p.x.cols == 0) return;
  const NvtxRange range("layernorm");
  layernorm_rows<<<static_cast<unsigned>(p.x.rows), kLayerNormThreads, 0, stream>>>(
      p.x, p.w, p.b, p.y, static_cast<float>(p.eps));
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
