// MoE router on the GPU: the CUDA twin of ref::moe_route (reference/moe_route.h; same params
// struct, same semantics). Spec: docs/v4-architecture.md §3.2, §9 items 2-3.
//
//   s = Wg x (FP32),  score_e = f(s_e): sqrt(softplus) (V4), sigmoid, or softmax over e
//   score routing: experts = top-k of score_e + bias_e (the bias only selects), listed by
//                  descending score + bias, exact ties to the lower id
//   hash routing:  experts = tid2eid[ids[t], :] in table order (p.tid2eid.data != nullptr);
//                  the bias is ignored
//   weights = score at the chosen experts / their sum * route_scale (softmax: not renormalised)
// Shapes: x [T, D] (row stride x.ld), gate [E, D], bias [E] or nullptr, tid2eid [V, k] + ids [T]
// (int64) or none -> chosen [T, k] int32, weights [T, k] (strided by their ld). Every pointer is
// a DEVICE pointer. Real shapes: V4-Flash D = 4096, E = 256, k = 6, route_scale 1.5; V4-Pro
// D = 7168, E = 384, k = 6, route_scale 2.5; hash layers 0-2 with V = 129280.
//
// Precision: FP32 as ref::moe_route<float>, op for op, with CUDA's expf / log1pf / sqrtf
// (<= 2 ulp; no fast math). The logits are one cuBLAS SGEMM in the default math mode (FP32
// FMA, no TF32), so they differ from the reference's in rounding: ids can differ from the
// reference's only where two values of score + bias are within that rounding. NaN values of
// score + bias (NaN inputs; the reference's order is then undefined) rank as -inf. Reruns are
// bitwise identical: every reduction has a fixed order (softmax sum: per-thread strided sums,
// then a fixed butterfly and warp order) and the selection is a max over a total order.
//
// Launch geometry: the SGEMM logits^T [E, T] = Wg^T-as-column-major x^T into the workspace;
// then grid [T], kRouteThreads threads per block, dynamic shared memory (2E + k) * 4 bytes:
// block t computes the E scores into shared memory (thread i: experts i, i + 256, ...), then
// k rounds of a block arg-max (per-thread scan, warp butterfly on (value, id), warp winners
// combined by thread 0, which marks the winner taken), then thread 0 forms the sum over the
// chosen experts in slot order and writes the k ids and weights.
//
// Errors: the reference's checks and messages on the host before any device work
// (dsv4::InputError): topk in [1, E], output shapes, hash routing's ids and tid2eid's k
// columns; plus this twin's limits (E <= kMoeMaxExperts, D > 0, sizes within int). The
// reference's range checks of ids and tid2eid entries read the tables, which live on the
// device here: call check_hash_routing() on host copies for the reference's errors; the kernel
// itself turns a token whose id or table row is out of range into ids -1 and weights NaN
// (never an out-of-bounds read). A failed launch or cuBLAS call throws dsv4::cuda::CudaError.
// Asynchronous on `stream` (the one-off overload waits for it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "reference/moe_route.h"

namespace dsv4::cuda {

inline constexpr int kRouteThreads = 256;
// Most experts per launch: the block's scores and selection keys (2E floats) and the k chosen
// ids sit in the default 48 KiB of dynamic shared memory. V4-Flash has 256, V4-Pro 384.
inline constexpr int64_t kMoeMaxExperts = 2048;

// The reference's range checks of hash routing, on HOST copies of the tables: every ids[t]
// (t < tokens) in [0, V) and every expert of its tid2eid row in [0, experts); InputError with
// ref::moe_route's messages otherwise.
void check_hash_routing(View2<const int64_t> tid2eid, const int64_t* ids, int64_t tokens,
                        int64_t experts);

// The reference's host-side checks of p (topk, output shapes, hash inputs) with its messages,
// then this twin's limits; throws InputError. Touches no device memory.
void validate_moe_route(const MoeRouteParams<float>& p);

// Scratch of moe_route for up to max_tokens tokens and `experts` experts: the logits
// [max_tokens, E] and a cuBLAS handle (created by the first call that launches work, so a
// workspace of 0 tokens needs no device). One workspace per stream that runs the op.
class MoeRouteWorkspace {
 public:
  MoeRouteWorkspace(int64_t max_tokens, int64_t experts);
  ~MoeRouteWorkspace();
  MoeRouteWorkspace(const MoeRouteWorkspace&) = delete;
  MoeRouteWorkspace& operator=(const MoeRouteWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t experts() const { return experts_; }
  // The workspace's cuBLAS handle (created on first use, default math mode: no TF32), bound to
  // `stream`. Shared with the expert GEMMs of optimized/moe.cuh.
  cublasHandle_t handle(cudaStream_t stream);

 private:
  friend void moe_route(const MoeRouteParams<float>&, MoeRouteWorkspace&, cudaStream_t);
  int64_t max_tokens_, experts_;
  DeviceBuffer<float> logits_;
  cublasHandle_t handle_ = nullptr;
};

// Asynchronous on `stream`; ws must hold x.rows tokens of p.experts experts.
void moe_route(const MoeRouteParams<float>& p, MoeRouteWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs, and waits for `stream`.
void moe_route(const MoeRouteParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
