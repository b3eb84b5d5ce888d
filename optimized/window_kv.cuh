// Sliding-window KV entry of a V4 attention layer on the GPU: the CUDA twin of ref::window_kv
// (reference/window_kv.h; same params struct, same semantics). Spec: docs/v4-architecture.md
// §2.2, §2.7 (RoPE), §9.4 (act_quant).
//
//   kv = RMSNorm_{kv_norm}(Wkv x)                [T, d]   one vector: key and value of all heads
//   RoPE on kv[d - d_r, d) at position pos0 + r
//   quant: FP8 round trip of kv[0, d - d_r) in blocks of 64 (UE8M0), BF16 rounding (nearest
//          even) of the RoPE dims kv[d - d_r, d)
//   act_quant: FP8 round trip (1x128) of x before Wkv.
//
// Shapes: x [T, D] (row stride x.ld), wkv [d, D], kv_norm [d] -> kv [T, d] (row stride kv.ld).
// Every pointer is a DEVICE pointer. Real shapes: D 4096 (Flash) / 7168 (Pro), d 512, d_r 64.
//
// Precision: FP32. The projection is a cuBLAS SGEMM (optimized/linear.cuh: default math mode,
// no TF32); then the GPU twins rmsnorm, rope, quant_fp8 (bitwise the reference's quantiser) and
// a BF16 rounding kernel (__float2bfloat16_rn: exact RNE, the reference's bf16_round_value).
// Reruns are bitwise identical.
//
// Launch geometry: [act_quant: quant_fp8 of x into the workspace]; SGEMM; rmsnorm grid [T];
// rope grid [T]; [quant: quant_fp8 in place, then the BF16 kernel, grid [T], kBf16TailThreads
// threads striding over the row's RoPE dims].
//
// Errors: the reference's check and message (kv [T, d]) plus what its helpers would reject
// later (rope_dim <= head_dim, the RoPE table), and this twin's limits (positive sizes,
// non-null weights, rope_dim <= kRopeMaxDim, cuBLAS's int range, the workspace's capacity),
// all on the host before any device work (dsv4::InputError); a failed launch or cuBLAS call
// throws dsv4::cuda::CudaError. Asynchronous on `stream`, except the one-off overload.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "reference/window_kv.h"

namespace dsv4::cuda {

inline constexpr int kBf16TailThreads = 64;

// Scratch of window_kv for up to max_tokens rows of width D: the FP8 copy of x (act_quant) and
// the cuBLAS handle. One per stream that runs the op.
class WindowKvWorkspace {
 public:
  WindowKvWorkspace(int64_t max_tokens, int64_t dim);
  WindowKvWorkspace(const WindowKvWorkspace&) = delete;
  WindowKvWorkspace& operator=(const WindowKvWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t dim() const { return dim_; }

 private:
  friend void window_kv(const WindowKvParams<float>&, WindowKvWorkspace&, cudaStream_t);
  int64_t max_tokens_, dim_;
  DeviceBuffer<float> xq_;
  BlasHandle blas_;
};

void window_kv(const WindowKvParams<float>& p, WindowKvWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs and waits for `stream`.
void window_kv(const WindowKvParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
