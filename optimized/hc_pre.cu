#include "optimized/hc_pre.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/sinkhorn_warp.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarps = kHcPreThreads / kWarpSize;
// Per token: the dot products with the (at most) kMaxMix rows of Phi, then the sum of squares.
constexpr int kMaxN = static_cast<int>(kHcPreMaxN);
constexpr int kMaxMix = 2 * kMaxN + kMaxN * kMaxN;
constexpr int kSquares = kMaxMix;  // slot of the sum of squares
constexpr int kSums = kMaxMix + 1;
static_assert(kHcPreThreads % kWarpSize == 0, "hc_pre: the block must be whole warps");
static_assert(kHcPreWideTile <= kWarps, "hc_pre: one warp finishes each token of a tile");
static_assert(kMaxN * kMaxN <= sinkhorn_warp::kMaxN * sinkhorn_warp::kMaxN,
              "hc_pre: comb must fit in a warp");

struct MixArgs {
  View2<const float> x;  // [T, n*D]
  const float* fn;       // [mix, n*D]
  const float* base;     // [mix]
  const float* scale;    // [3] (hc_pre) or [1] (hc_head)
  int n, mix;            // mix = 2n + n^2 (hc_pre) or n (hc_head)
  int64_t D;
  int iters;
  float eps, norm_eps;
  bool head;  // hc_head: no post, no comb
  View2<float> u, post, comb;
};

__device__ float sigmoid(float v) {
  return 1.0f / (1.0f + expf(-v));
}

// Butterfly sum over the warp: every lane ends with the same value (each level adds the same
// two operands, in either order).
__device__ float warp_sum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One block per tile of kTok tokens (the last tile may hold fewer); see hc_pre.cuh.
template <int kTok>
__global__ void __launch_bounds__(kHcPreThreads) hc_mix(MixArgs a) {
  __shared__ float partial[kWarps][kTok * kSums];
  __shared__ float total[kTok * kSums];
  __shared__ float pre[kTok][kMaxN];
  const int64_t t0 = int64_t(blockIdx.x) * kTok;
  const int tokens = static_cast<int>(a.x.rows - t0 < kTok ? a.x.rows - t0 : kTok);
  const int64_t nd = a.x.cols;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;

  // (1) This thread's columns of every sum, in column order.
  float acc[kTok][kSums];
#pragma unroll
  for (int tk = 0; tk < kTok; ++tk)
#pragma unroll
    for (int r = 0; r < kSums; ++r) acc[tk][r] = 0.f;
  for (int64_t c = threadIdx.x; c < nd; c += kHcPreThreads) {
    float xv[kTok];
#pragma unroll
    for (int tk = 0; tk < kTok; ++tk) {
      xv[tk] = tk < tokens ? a.x(t0 + tk, c) : 0.f;
      acc[tk][kSquares] = fmaf(xv[tk], xv[tk], acc[tk][kSquares]);
    }
#pragma unroll
    for (int r = 0; r < kMaxMix; ++r) {
      if (r < a.mix) {
        const float w = a.fn[r * nd + c];
#pragma unroll
        for (int tk = 0; tk < kTok; ++tk) acc[tk][r] = fmaf(w, xv[tk], acc[tk][r]);
      }
    }
  }

  // (2) Block sums: warp butterfly, then the warp sums 0..kWarps-1 in order.
#pragma unroll
  for (int tk = 0; tk < kTok; ++tk)
#pragma unroll
    for (int r = 0; r < kSums; ++r) {
      if (r < a.mix || r == kSquares) {
        const float v = warp_sum(acc[tk][r]);
        if (lane == 0) partial[warp][tk * kSums + r] = v;
      }
    }
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < kTok * kSums; i += kHcPreThreads) {
    const int r = i % kSums;
    if (r < a.mix || r == kSquares) {
      float s = 0.f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) s += partial[w][i];
      total[i] = s;
    }
  }
  __syncthreads();

  // (3) Warp tk finishes token tk: pre into shared memory, post and comb to global memory.
  // The condition is the same for all lanes of a warp, so the Sinkhorn shuffles see all 32.
  if (warp < tokens) {
    const int64_t t = t0 + warp;
    const float* tot = total + warp * kSums;
    const int n = a.n;
    const float rs = 1.0f / sqrtf(tot[kSquares] / float(nd) + a.norm_eps);
    if (lane < n) {
      pre[warp][lane] = sigmoid(fmaf(a.scale[0], tot[lane] * rs, a.base[lane])) + a.eps;
      if (!a.head)
        a.post(t, lane) = 2.0f * sigmoid(fmaf(a.scale[1], tot[n + lane] * rs, a.base[n + lane]));
    }
    if (!a.head) {
      const int nn = n * n;
      const float logit =
          lane < nn ? fmaf(a.scale[2], tot[2 * n + lane] * rs, a.base[2 * n + lane]) : 0.f;
      const float m = sinkhorn_warp::sinkhorn(logit, n, a.iters, a.eps);
      if (lane < nn) a.comb(t, lane) = m;
    }
  }
  __syncthreads();

  // (4) u = sum_j pre_j X_j: fused multiply-adds in stream order, starting from 0.
  for (int tk = 0; tk < tokens; ++tk) {
    const float* xr = a.x.row(t0 + tk);
    float* ur = a.u.row(t0 + tk);
    for (int64_t c = threadIdx.x; c < a.D; c += kHcPreThreads) {
      float s = 0.f;
      for (int j = 0; j < a.n; ++j) s = fmaf(pre[tk][j], xr[j * a.D + c], s);
      ur[c] = s;
    }
  }
}

// Shape-independent checks shared by hc_pre and hc_head, then the launch.
void launch(const char* op, MixArgs& a, cudaStream_t stream) {
  const int64_t T = a.x.rows;
  const bool wide = T >= kHcPreWideMinTokens;
  const int64_t tile = wide ? kHcPreWideTile : 1;
  const int64_t blocks = (T + tile - 1) / tile;
  require(blocks <= INT_MAX, std::string(op) + ": tensor 'x': at most " +
                                 std::to_string(int64_t(INT_MAX) * tile) +
                                 " tokens per launch, found " + std::to_string(T));
  if (T == 0) return;
  const NvtxRange range(op);
  if (wide)
    hc_mix<kHcPreWideTile><<<static_cast<unsigned>(blocks), kHcPreThreads, 0, stream>>>(a);
  else
    hc_mix<1><<<static_cast<unsigned>(blocks), kHcPreThreads, 0, stream>>>(a);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

// fn may be null only when it is empty (x has width 0).
void require_weights(const char* op, const View2<const float>& x, const float* fn,
                     const float* base, const float* scale) {
  const std::string o(op);
  require(fn != nullptr || x.cols == 0, o + ": tensor 'fn' is missing (null pointer)");
  require(base != nullptr, o + ": tensor 'base' is missing (null pointer)");
  require(scale != nullptr, o + ": tensor 'scale' is missing (null pointer)");
}

void require_n_limit(const char* op, int64_t n) {
  require(n <= kHcPreMaxN, std::string(op) + ": n = " + std::to_string(n) +
                               " exceeds the GPU kernel's limit of " + std::to_string(kHcPreMaxN) +
                               " streams");
}

}  // namespace

void hc_pre(const HcPreParams<float>& p, cudaStream_t stream) {
  const int64_t n = p.n, T = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_pre: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.u.rows == T && p.u.cols == D, "hc_pre: output 'u' has the wrong shape");
  require(p.post.rows == T && p.post.cols == n, "hc_pre: output 'post' has the wrong shape");
  require(p.comb.rows == T && p.comb.cols == n * n, "hc_pre: output 'comb' has the wrong shape");
  require_n_limit("hc_pre", n);
  if (T > 0)  // the reference's Sinkhorn runs (and checks iters) once per token
    require(p.iters >= 1, "sinkhorn: key 'iters' must be >= 1, found " + std::to_string(p.iters));
  require(p.iters <= INT_MAX, "hc_pre: key 'iters' must be <= " + std::to_string(INT_MAX) +
                                  ", found " + std::to_string(p.iters));
  require_weights("hc_pre", p.x, p.fn, p.base, p.scale);
  MixArgs a{p.x,
            p.fn,
            p.base,
            p.scale,
            static_cast<int>(n),
            static_cast<int>(2 * n + n * n),
            D,
            static_cast<int>(p.iters),
            static_cast<float>(p.eps),
            static_cast<float>(p.norm_eps),
            false,
            p.u,
            p.post,
            p.comb};
  launch("hc_pre", a, stream);
}

void hc_head(const HcHeadParams<float>& p, cudaStream_t stream) {
  const int64_t n = p.n, T = p.x.rows;
  require(n > 0 && p.x.cols % n == 0, "hc_head: tensor 'x': width " + std::to_string(p.x.cols) +
                                          " is not a multiple of n = " + std::to_string(n));
  const int64_t D = p.x.cols / n;
  require(p.u.rows == T && p.u.cols == D, "hc_head: output 'u' has the wrong shape");
  require_n_limit("hc_head", n);
  require_weights("hc_head", p.x, p.fn, p.base, p.scale);
  MixArgs a{p.x,
            p.fn,
            p.base,
            p.scale,
            static_cast<int>(n),
            static_cast<int>(n),
            D,
            1,
            static_cast<float>(p.eps),
            static_cast<float>(p.norm_eps),
            true,
            p.u,
            View2<float>{},
            View2<float>{}};
  launch("hc_head", a, stream);
}

}  // namespace dsv4::cuda
