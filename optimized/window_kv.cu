#include "optimized/window_kv.cuh"

#include <cuda_bf16.h>

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rope.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

// Rounds columns [from, cols) of row blockIdx.x to BF16 (nearest even), in place
// (ref::round_bf16_tail). Each thread rounds its own columns.
__global__ void __launch_bounds__(kBf16TailThreads) round_bf16_tail(View2<float> v, int64_t from) {
  float* r = v.row(blockIdx.x);
  for (int64_t c = from + threadIdx.x; c < v.cols; c += kBf16TailThreads)
    r[c] = __bfloat162float(__float2bfloat16_rn(r[c]));
}

void validate(const WindowKvParams<float>& p) {
  const int64_t T = p.x.rows, D = p.x.cols, d = p.head_dim;
  // The reference's check, with its message.
  require(p.kv.rows == T && p.kv.cols == d,
          "window_kv: output 'kv': expected shape " + shape_string({T, d}));
  // What its helpers (rope) would reject after the projection.
  require(p.rope.rope_dim <= d, "rope: rope_dim " + std::to_string(p.rope.rope_dim) +
                                    " exceeds head_dim " + std::to_string(d));
  (void)rope_inv_freq(p.rope);  // rope_dim even and positive, theta, YaRN
  // This twin's limits.
  require(D > 0 && d > 0, "window_kv: D (x columns) and head_dim must be positive, found " +
                              std::to_string(D) + ", " + std::to_string(d));
  require(p.wkv && p.kv_norm, "window_kv: wkv and kv_norm must be device pointers, found null");
  require(p.rope.rope_dim <= kRopeMaxDim, "window_kv: rope_dim at most " + std::to_string(kRopeMaxDim) +
                                              " on the GPU, found " + std::to_string(p.rope.rope_dim));
  require(linear_fits_int(T, d, D, p.x.ld, p.kv.ld),
          "window_kv: sizes beyond cuBLAS's int range (T, D, d, row strides)");
}

}  // namespace

WindowKvWorkspace::WindowKvWorkspace(int64_t max_tokens, int64_t dim) : max_tokens_(max_tokens), dim_(dim) {
  require(max_tokens >= 0 && dim > 0, "WindowKvWorkspace: needs max_tokens >= 0 and a positive D");
  xq_ = DeviceBuffer<float>(size_t(max_tokens * dim));
}

void window_kv(const WindowKvParams<float>& p, WindowKvWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.x.rows, D = p.x.cols, d = p.head_dim, dr = p.rope.rope_dim;
  require(T <= ws.max_tokens() && D == ws.dim(),
          "window_kv: the workspace holds " + std::to_string(ws.max_tokens()) + " rows of D " +
              std::to_string(ws.dim()) + "; the call needs " + std::to_string(T) + " of D " +
              std::to_string(D));
  const NvtxRange range("window_kv");
  if (T == 0) return;

  View2<const float> x = p.x;
  if (p.act_quant) {
    const View2<float> xq = view2(ws.xq_.data(), T, D);
    quant_fp8(QuantFp8Params<float>{p.x, xq, kActBlock, 0}, stream);
    x = xq;
  }
  linear("window_kv", ws.blas_, x, p.wkv, d, p.kv, stream);
  rmsnorm(RmsNormParams<float>{p.kv, p.kv_norm, p.kv, p.eps}, stream);
  rope(RopeParams<float>{p.kv, 1, d, p.pos0, 1, false, p.rope}, stream);
  if (p.quant) {  // FP8 on the non-RoPE dims, BF16 on the RoPE dims (§2.2 step 3)
    quant_fp8(QuantFp8Params<float>{p.kv, p.kv, kFp8KvBlock, d - dr}, stream);
    round_bf16_tail<<<static_cast<unsigned>(T), kBf16TailThreads, 0, stream>>>(p.kv, d - dr);
    DSV4_CUDA_CHECK(cudaGetLastError());
  }
}

void window_kv(const WindowKvParams<float>& p, cudaStream_t stream) {
  validate(p);
  WindowKvWorkspace ws(p.x.rows, p.x.cols);
  window_kv(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
