#include "optimized/hc_post.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kMaxN = static_cast<int>(kHcPostMaxN);
constexpr unsigned kMaxGridY = 65535;

__global__ void __launch_bounds__(kHcPostThreads)
    hc_post_columns(View2<const float> x, View2<const float> f, View2<const float> post,
                    View2<const float> comb, int n, int64_t D, View2<float> y) {
  const int64_t t = blockIdx.x;
  const int64_t c = int64_t(blockIdx.y) * kHcPostThreads + threadIdx.x;
  if (c >= D) return;
  const float* xr = x.row(t);
  const float* cr = comb.row(t);
  float xv[kMaxN];
#pragma unroll
  for (int j = 0; j < kMaxN; ++j) xv[j] = j < n ? xr[j * D + c] : 0.f;
  const float fc = f(t, c);
  float* yr = y.row(t);
  for (int k = 0; k < n; ++k) {
    float v = post(t, k) * fc;
#pragma unroll
    for (int j = 0; j < kMaxN; ++j)
      if (j < n) v = fmaf(cr[j * n + k], xv[j], v);
    yr[k * D + c] = v;
  }
}

}  // namespace

void hc_post(const HcPostParams<float>& p, cudaStream_t stream) {
  const int64_t n = p.n, T = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_post: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.f.rows == T && p.f.cols == D, "hc_post: tensor 'f': expected shape " +
                                              shape_string({T, D}) + ", found " +
                                              shape_string({p.f.rows, p.f.cols}));
  require(p.post.rows == T && p.post.cols == n, "hc_post: tensor 'post' has the wrong shape");
  require(p.comb.rows == T && p.comb.cols == n * n, "hc_post: tensor 'comb' has the wrong shape");
  require(p.y.rows == T && p.y.cols == n * D, "hc_post: output 'y' has the wrong shape");
  require(p.y.data != p.x.data, "hc_post: y must not alias x");
  require(n <= kHcPostMaxN, "hc_post: n = " + std::to_string(n) +
                                " exceeds the GPU kernel's limit of " +
                                std::to_string(kHcPostMaxN) + " streams");
  require(T <= INT_MAX, "hc_post: tensor 'x': at most " + std::to_string(INT_MAX) +
                            " tokens per launch (one grid row each), found " + std::to_string(T));
  const int64_t col_blocks = (D + kHcPostThreads - 1) / kHcPostThreads;
  require(col_blocks <= kMaxGridY, "hc_post: tensor 'x': stream width D = " + std::to_string(D) +
                                       " exceeds the GPU kernel's limit of " +
                                       std::to_string(int64_t(kMaxGridY) * kHcPostThreads));
  if (T == 0 || D == 0) return;
  const NvtxRange range("hc_post");
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(col_blocks));
  hc_post_columns<<<grid, kHcPostThreads, 0, stream>>>(p.x, p.f, p.post, p.comb,
                                                       static_cast<int>(n), D, p.y);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
