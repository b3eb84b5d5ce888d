// The MoE layer on the GPU: the CUDA twin of ref::moe (reference/moe.h; same params struct,
// same semantics). Spec: docs/v4-architecture.md §3.2, §9 items 1-4.
//
//   experts, weights = moe_route(x)                              (optimized/moe_route.cuh)
//   expert_e(x; w):  g = W1_e x, u = W3_e x;  limit > 0: u <- clamp(u, -limit, limit),
//                    g <- min(g, limit);  h = SiLU(g) u w;  out = W2_e h
//   y_t = sum over the token's slots, in ascending expert id (ties: slot order), of
//         expert_{experts[t,c]}(x_t; weights[t,c]), then + shared(x_t; 1) when present
// act_quant (official numerics, §9.4): FP8 round trip (1x128 blocks, UE8M0) of x before W1/W3
// and of h before W2, routed and shared (the router's gate reads x unquantised).
// Shapes: x [T, D], w1/w3 [E, I, D], w2 [E, D, I], shared_w1/w3 [I, D] and shared_w2 [D, I] or
// nullptr, y [T, D]; route outputs chosen [T, k] int32 and weights [T, k] are written too. Every
// pointer is a DEVICE pointer (weights already dequantised to FP32 by the loader); x, y and the
// route outputs are strided by their ld. y must not overlap x, a weight or a route output. Real
// shapes: V4-Flash D = 4096, E = 256, k = 6, I = 2048; V4-Pro D = 7168, E = 384, k = 6, I = 3072.
//
// Steps, all on `stream`:
//   1. moe_route (SGEMM + one block per token).
//   2. permute: one block: per-expert counts (shared-memory integer atomics), an exclusive scan
//      (offsets [E + 1]), then one warp walks the T*k (token, slot) entries in flat order
//      t*k + c, 32 at a time (__match_any_sync ranks equal experts), and writes perm[pos] = t*k
//      + c and inv[t*k + c] = pos: the entries grouped by expert, in flat order inside a group
//      (the reference's order), deterministically.
//   3. the offsets are copied to the host and the stream is SYNCHRONISED (the per-expert GEMM
//      sizes are host arguments of cuBLAS): one wait per call.
//   4. act_quant: x -> workspace (cuda::quant_fp8, the bitwise twin of the reference's).
//   5. shared expert (if any): two SGEMMs [T, I], SwiGLU (weight 1), act_quant of h, one SGEMM
//      straight into y.
//   6. routed: gather the rows x[t] into perm order; per non-empty expert e two SGEMMs (W1_e,
//      W3_e) on its rows [offsets[e], offsets[e+1]); one SwiGLU launch over all rows (each row's
//      route weight read through perm); act_quant of h; per non-empty expert one SGEMM (W2_e)
//      whose output overwrites the gathered rows.
//   7. combine: block t sorts its k positions inv[t*k + c] ascending (= ascending expert id,
//      then slot) and sums the k outputs in that order from 0, then adds y (the shared output)
//      when there is a shared expert: the reference's order of additions.
// A token whose hash route is out of range (moe_route's ids -1) is in no group and gets a NaN
// row of y.
//
// Precision: FP32. The GEMMs are cuBLAS SGEMMs in the default math mode (FP32 FMA, no TF32),
// so y differs from ref::moe<float> in the rounding of the products (each expert row is a
// reduction over D, then over I); SwiGLU is the reference's expression (expf, IEEE division,
// the clamps as std::min / std::clamp, NaN kept); the combine adds in the reference's order.
// cuBLAS is deterministic for a fixed problem, stream and GPU, and every kernel has a fixed
// order, so reruns are bitwise identical.
//
// Launch geometry: gather, SwiGLU: one block of kMoeThreads per row (threads stride over the
// columns); permute: one block of kPermuteThreads, E ints of dynamic shared memory; combine:
// one block of kMoeThreads per token, k ints of dynamic shared memory. GEMMs: 2 + (2 + 1) per
// non-empty expert, plus 3 for the shared expert.
//
// Errors: ref::moe's checks and messages on the host before any device work (moe_route's,
// then y's shape, then inter > 0 when an expert runs), plus the router's limits and sizes
// within cuBLAS's int (T*k rows, D, I, strides); dsv4::InputError. A failed launch or cuBLAS
// call throws dsv4::cuda::CudaError.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/moe_route.cuh"
#include "reference/moe.h"

namespace dsv4::cuda {

inline constexpr int kMoeThreads = 256;
inline constexpr int kPermuteThreads = 1024;

// Scratch of moe for up to max_tokens tokens of one layer shape (D, E, k, I): the router's
// workspace (logits, cuBLAS handle), the quantised x [T, D], the gathered rows / expert outputs
// [T*k, D], g and u [T*k, I] (h overwrites g), perm / inv [T*k], offsets [E + 1] (device and
// host; a workspace of 0 tokens allocates nothing and needs no device). About 4 (k (D + 2 I) +
// D + E) bytes per token: 295 KB per token for V4-Flash. One
// workspace per stream that runs the op.
class MoeWorkspace {
 public:
  MoeWorkspace(int64_t max_tokens, int64_t dim, int64_t experts, int64_t topk, int64_t inter);
  MoeWorkspace(const MoeWorkspace&) = delete;
  MoeWorkspace& operator=(const MoeWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t dim() const { return dim_; }
  int64_t experts() const { return experts_; }
  int64_t topk() const { return topk_; }
  int64_t inter() const { return inter_; }

 private:
  friend void moe(const MoeParams<float>&, MoeWorkspace&, cudaStream_t);
  int64_t max_tokens_, dim_, experts_, topk_, inter_;
  MoeRouteWorkspace route_;
  DeviceBuffer<float> xq_, rows_, g_, u_;
  DeviceBuffer<int32_t> perm_, inv_, offsets_;
  std::vector<int32_t> host_offsets_;
};

// The reference's host-side checks of p (router, y, inter) and this twin's limits; throws
// InputError. Touches no device memory.
void validate_moe(const MoeParams<float>& p);

// Synchronises `stream` once (step 3 above); the rest is asynchronous on it. ws must fit p.
void moe(const MoeParams<float>& p, MoeWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs, and waits for `stream`.
void moe(const MoeParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
