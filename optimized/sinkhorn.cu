#include "optimized/sinkhorn.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/sinkhorn_warp.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kItemsPerBlock = kSinkhornThreads / sinkhorn_warp::kWarpSize;
static_assert(kSinkhornThreads % sinkhorn_warp::kWarpSize == 0,
              "sinkhorn: the block must be whole warps");
static_assert(kSinkhornMaxN == sinkhorn_warp::kMaxN, "sinkhorn: the limit is the warp helper's");

// Warp w of the grid normalises item w. A whole warp leaves together (the item index is the
// same for its 32 lanes), so every shuffle inside sinkhorn_warp::sinkhorn has all lanes.
__global__ void __launch_bounds__(kSinkhornThreads)
    sinkhorn_items(const float* logits, float* m, int64_t items, int n, int iters, float eps) {
  const int64_t item =
      int64_t(blockIdx.x) * kItemsPerBlock + threadIdx.x / sinkhorn_warp::kWarpSize;
  if (item >= items) return;
  const int lane = static_cast<int>(threadIdx.x) % sinkhorn_warp::kWarpSize;
  const int nn = n * n;
  const float l = lane < nn ? logits[item * nn + lane] : 0.f;
  const float v = sinkhorn_warp::sinkhorn(l, n, iters, eps);
  if (lane < nn) m[item * nn + lane] = v;
}

}  // namespace

void sinkhorn(const SinkhornParams<float>& p, cudaStream_t stream) {
  require(p.n > 0, "sinkhorn: n must be positive");
  require(p.iters >= 1, "sinkhorn: key 'iters' must be >= 1, found " + std::to_string(p.iters));
  require(p.n <= kSinkhornMaxN,
          "sinkhorn: n = " + std::to_string(p.n) + " exceeds the GPU kernel's limit of " +
              std::to_string(kSinkhornMaxN) + " (n*n entries in the lanes of one warp)");
  require(p.iters <= INT_MAX, "sinkhorn: key 'iters' must be <= " + std::to_string(INT_MAX) +
                                  ", found " + std::to_string(p.iters));
  require(p.items >= 0, "sinkhorn: items must be >= 0, found " + std::to_string(p.items));
  const int64_t blocks = (p.items + kItemsPerBlock - 1) / kItemsPerBlock;
  require(blocks <= INT_MAX, "sinkhorn: at most " +
                                 std::to_string(int64_t(INT_MAX) * kItemsPerBlock) +
                                 " items per launch, found " + std::to_string(p.items));
  if (p.items == 0) return;
  const NvtxRange range("sinkhorn");
  sinkhorn_items<<<static_cast<unsigned>(blocks), kSinkhornThreads, 0, stream>>>(
      p.logits, p.m, p.items, static_cast<int>(p.n), static_cast<int>(p.iters),
      static_cast<float>(p.eps));
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
