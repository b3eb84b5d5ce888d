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
//
// moe_compact: the same layer with the routed experts stored compact on the device (FP4 e2m1
// with a UE8M0 scale per 32 inputs, the checkpoint's layout; optimized/compact_weights.cuh)
// and, optionally, the shared expert in FP8 e4m3 with 128x128 UE8M0 blocks. Steps 1-7 are
// the same kernels and SGEMM calls in the same order; the only difference is where an
// expert's FP32 weight comes from: right before its SGEMM the matrix is dequantised into the
// workspace's scratch (two [I, D] slots, a workspace made with MoeWeightForm::compact: W1_e
// -> slot 0, W3_e -> slot 1 in the first expert loop, W2_e -> slot 0 in the second; the
// shared expert likewise before the routed ones; stream order makes the reuse safe).
// Dequantisation is exact, so y, chosen and weights are BITWISE equal to cuda::moe on the
// dequantised FP32 weights (the same cuBLAS calls on the same values: cuBLAS is
// deterministic for a fixed problem; the scratch slots are 256-byte aligned, as every matrix
// of a cudaMalloc'd FP32 stack is at the real and the tested shapes, so cuBLAS sees the same
// alignment).
// Extra cost: one dequantisation of the three matrices of each non-empty expert per call
// (plus the shared expert's when FP8): per weight 17/32 B read and 4 B written, then read by
// the SGEMM; 3 more kernel launches per non-empty expert (optimized/compact_weights.cuh has
// the dequantisation's geometry). Memory: the routed weights take 3 E I D 17/32 bytes (FP4
// codes + scales) instead of 12 E I D (FP32), 7.5x less; the workspace adds 8 I D bytes of
// scratch (64 MiB at V4-Flash widths).
// Errors: validate_moe's, then the compact shapes (w1/w3 [E, I, D], w2 [E, D, I], shared
// FP8 [I, D], [D, I] with all three or none present), then the workspace; InputError before
// any device work.
//
// ---- expert: one expert over a set of rows (expert parallelism, the shared expert) ---------
// The CUDA twin of ref::expert (reference/moe.h; same ExpertParams, same semantics), for a
// caller that routed elsewhere (the sharded backend: the rows an expert's rank received, with
// their route weights; or the shared expert with accumulate):
//   x' = act_quant ? FP8 round trip of x (1x128 blocks, UE8M0) : x
//   g = x' W1^T, u = x' W3^T                      [T, I]
//   limit > 0: u <- clamp(u, -limit, limit), g <- min(g, limit)
//   h = SiLU(g) u rw_t    (rw_t = route_weight[t * weight_stride], 1 when route_weight null)
//   act_quant: h <- FP8 round trip of h
//   out = h W2^T                                  [T, D]
//   y = out (accumulate false), y = y + out (accumulate true, the reference's order)
// Shapes: x [T, D], w1/w3 [I, D], w2 [D, I], y [T, D]; x and y strided by their ld;
// route_weight [T] with any weight_stride (0 broadcasts one weight), or nullptr. Every pointer
// is a DEVICE pointer. y may alias x exactly (every read of x precedes the first write of y in
// stream order); it must not overlap a weight or route_weight.
//
// Steps, all on `stream`, no synchronisation:
//   1. act_quant: x -> workspace (cuda::quant_fp8); the SGEMMs then read it with ld D, else x
//      itself with ld x.ld.
//   2. two SGEMMs into the workspace's g, u [T, I] (ld I).
//   3. SwiGLU: moe's kernel (one block of kMoeThreads per row, threads striding the columns),
//      the row's weight read at route_weight[t * weight_stride]; act_quant of h in place.
//   4. one SGEMM: accumulate false straight into y (ld y.ld); accumulate true into the
//      workspace's [T, D] scratch (the quantised x's buffer, free again once the first two
//      SGEMMs have read it), then one add kernel y[t] = y[t] + out[t] (one block per row).
// GEMMs: 3; kernels: 1 SwiGLU (+ 2 quantisations with act_quant, + 1 add when accumulating).
//
// Precision: FP32, moe's arithmetic. The SGEMMs are cublasSgemm in the default math mode
// with moe's operand layout, the SwiGLU is moe's kernel (the same expression: expf, IEEE
// division, the clamps as std::min / std::clamp, NaN kept), quant_fp8 is bitwise the
// reference's and works per (row, 128-block). So y differs from ref::expert<float> only in
// the rounding of the two reductions (over D, then over I).
// Against cuda::moe, BITWISE: expert() over the n rows moe gives expert e (x = those rows of
// moe's input, dense [n, D] in moe's order; route_weight = their route weights; w1/w3/w2 =
// expert e's matrices; y dense [n, D]; accumulate false) writes exactly the rows moe computes
// for them before its combine; expert() of the shared expert (route_weight null, x and y
// laid out as moe's, ld included) writes exactly moe's shared output. Why: the quantisation
// is per (row, 128-block) and the SwiGLU per element, so they do not see which other rows
// share the launch; the SGEMMs are the same cuBLAS calls (op, m, n, k, lda, ldb, ldc, alpha
// 1, beta 0, a default-mode handle, the same GPU) on the same values, and cuBLAS runs one
// deterministic kernel per such problem given equally aligned operands (moe's per-expert row
// blocks start at multiples of D and I floats into cudaMalloc'd scratch: 256-byte aligned
// like a fresh allocation whenever D and I are multiples of 64, as at every real and tested
// shape). This rests on cuBLAS's determinism for a fixed problem (documented per GPU and
// handle configuration), not on a promise across different shapes: the same rows in a
// launch of another row count may round differently. tests/optimized/test_expert.cc checks
// it on a GPU. Reruns are bitwise identical.
//
// Errors: ref::expert's checks and messages on the host before any device work (inter > 0,
// then y's shape), then this twin's: null x, y or weight pointers with T > 0, row strides
// below D, sizes beyond cuBLAS's int, then the workspace (shape and, for expert_compact, form
// compact); dsv4::InputError. A failed launch or cuBLAS call throws dsv4::cuda::CudaError.
//
// expert_compact: the same with the expert's matrices stored compact (routed: matrix `index`
// of FP4 stacks [E, I, D] / [E, D, I]; shared: FP8 [I, D] / [D, I], 128x128 blocks),
// dequantised exactly into the workspace's two [I, D] slots right before their SGEMMs (W1 ->
// slot 0, W3 -> slot 1, W2 -> slot 0; stream order makes the reuse safe), then step 1-4 as
// above: BITWISE equal to expert() on the dequantised FP32 weights (the same SGEMMs on the
// same values; the slots are 256-byte aligned when I D is a multiple of 64, as is a cudaMalloc'd
// FP32 matrix). p.w1, p.w3, p.w2 are ignored. Extra: 3 dequantisation kernels per call
// (optimized/compact_weights.cuh has their geometry). Errors: expert()'s, then the compact
// shapes (FP4: w1/w3 [*, I, D], w2 [*, D, I], one count, index in [0, count), codes and scales
// set; FP8: [I, D], [I, D], [D, I], codes and scales set, block > 0), then the workspace.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "optimized/compact_weights.cuh"
#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "optimized/moe_route.cuh"
#include "reference/moe.h"

namespace dsv4::cuda {

inline constexpr int kMoeThreads = 256;
inline constexpr int kPermuteThreads = 1024;

// The expert weights a MoeWorkspace serves: FP32 (cuda::moe) or compact (cuda::moe_compact,
// which needs the dequantisation scratch; such a workspace serves cuda::moe too).
enum class MoeWeightForm { fp32, compact };
inline constexpr int64_t kMoeDequantSlots = 2;  // [I, D] FP32 matrices of scratch (W1, W3 / W2)

// moe_compact's expert weights (device views). The routed experts in FP4; the shared expert
// in FP8 when shared_w1.codes is set (then MoeParams' shared_* are ignored), else MoeParams'
// FP32 shared_* (nullptr: no shared expert).
struct MoeCompactWeights {
  Fp4WeightStack w1, w3;  // count E, [I, D] each
  Fp4WeightStack w2;      // count E, [D, I] each
  Fp8Weight shared_w1, shared_w3;  // [I, D] or absent (codes nullptr)
  Fp8Weight shared_w2;             // [D, I] or absent
};

// Scratch of moe for up to max_tokens tokens of one layer shape (D, E, k, I): the router's
// workspace (logits, cuBLAS handle), the quantised x [T, D], the gathered rows / expert outputs
// [T*k, D], g and u [T*k, I] (h overwrites g), perm / inv [T*k], offsets [E + 1] (device and
// host; a workspace of 0 tokens allocates nothing and needs no device). About 4 (k (D + 2 I) +
// D + E) bytes per token: 295 KB per token for V4-Flash. One
// workspace per stream that runs the op.
class MoeWorkspace {
 public:
  // form compact adds the dequantisation scratch: kMoeDequantSlots I D floats (when
  // max_tokens > 0).
  MoeWorkspace(int64_t max_tokens, int64_t dim, int64_t experts, int64_t topk, int64_t inter,
               MoeWeightForm form = MoeWeightForm::fp32);
  MoeWorkspace(const MoeWorkspace&) = delete;
  MoeWorkspace& operator=(const MoeWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t dim() const { return dim_; }
  int64_t experts() const { return experts_; }
  int64_t topk() const { return topk_; }
  int64_t inter() const { return inter_; }
  MoeWeightForm form() const { return form_; }
  // Device bytes of the workspace (the router's excluded), the scratch included.
  size_t bytes() const;

 private:
  friend struct MoeRun;  // moe.cu: the body shared by moe and moe_compact
  int64_t max_tokens_, dim_, experts_, topk_, inter_;
  MoeWeightForm form_;
  MoeRouteWorkspace route_;
  DeviceBuffer<float> xq_, rows_, g_, u_, dequant_;
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

// validate_moe(p), then the compact weights' shapes against p (E, I, D); throws InputError.
// Touches no device memory.
void validate_moe_compact(const MoeParams<float>& p, const MoeCompactWeights& w);

// cuda::moe with the expert weights of w (p.w1, p.w3, p.w2 are ignored; see the header).
// ws must fit p and have form compact. Synchronises `stream` once, as moe.
void moe_compact(const MoeParams<float>& p, const MoeCompactWeights& w, MoeWorkspace& ws,
                 cudaStream_t stream = 0);

// Device bytes of the compact expert weights of one layer (routed FP4 + shared FP8 if present),
// and of the same weights in FP32, for the memory accounting.
size_t moe_compact_bytes(const MoeCompactWeights& w);
size_t moe_fp32_expert_bytes(int64_t experts, int64_t inter, int64_t dim, bool shared);

// ---- expert (see the header) --------------------------------------------------------------

// Scratch of expert / expert_compact for up to max_tokens rows of one expert shape (D, I): the
// quantised x (also the output scratch when accumulating) [T, D], g and u [T, I] (h overwrites
// g), a cuBLAS handle (created by the first call that launches work), and with form compact
// the dequantisation scratch, kMoeDequantSlots [I, D] FP32 matrices. Allocated at construction;
// a workspace of 0 tokens allocates nothing and needs no device. 4 (D + 2 I) bytes per row:
// 32 KiB per row at V4-Flash widths, plus 64 MiB of scratch in form compact. One workspace per
// stream that runs the op (calls queued on one stream may share it: stream order).
class ExpertWorkspace {
 public:
  ExpertWorkspace(int64_t max_tokens, int64_t dim, int64_t inter,
                  MoeWeightForm form = MoeWeightForm::fp32);
  ExpertWorkspace(const ExpertWorkspace&) = delete;
  ExpertWorkspace& operator=(const ExpertWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t dim() const { return dim_; }
  int64_t inter() const { return inter_; }
  MoeWeightForm form() const { return form_; }
  // Device bytes of the workspace, the dequantisation scratch included.
  size_t bytes() const;

 private:
  friend struct ExpertRun;  // moe.cu: the body shared by expert and expert_compact
  int64_t max_tokens_, dim_, inter_;
  MoeWeightForm form_;
  DeviceBuffer<float> xq_, g_, u_, dequant_;
  BlasHandle blas_;
};

// ref::expert's host-side checks of p (inter, then y's shape) and this twin's limits (with
// rows: x, y, w1, w3, w2 set, row strides >= D, cuBLAS's int range); throws InputError.
// Touches no device memory.
void validate_expert(const ExpertParams<float>& p);

// y (+)= W2 SwiGLU(W1 x, W3 x) route_weight on the device (see the header). Asynchronous on
// `stream` (no synchronisation). ws must fit p (T <= max_tokens, its D and I).
void expert(const ExpertParams<float>& p, ExpertWorkspace& ws, cudaStream_t stream = 0);

// expert() with routed expert `index` of FP4 stacks w1, w3 [E, I, D] and w2 [E, D, I]
// (p.w1, p.w3, p.w2 ignored). ws must fit p and have form compact.
void expert_compact(const ExpertParams<float>& p, const Fp4WeightStack& w1,
                    const Fp4WeightStack& w3, const Fp4WeightStack& w2, int64_t index,
                    ExpertWorkspace& ws, cudaStream_t stream = 0);
// expert() with FP8 matrices w1, w3 [I, D] and w2 [D, I] (the shared expert; p.w1, p.w3, p.w2
// ignored). ws must fit p and have form compact.
void expert_compact(const ExpertParams<float>& p, const Fp8Weight& w1, const Fp8Weight& w3,
                    const Fp8Weight& w2, ExpertWorkspace& ws, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
