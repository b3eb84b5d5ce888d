// Query path of a V4 attention layer on the GPU: the CUDA twin of ref::query_path
// (reference/query_path.h; same params struct, same semantics). Spec: docs/v4-architecture.md
// §2.1, §2.7 (RoPE), §9.4 (act_quant).
//
//   c_q = RMSNorm_{q_norm}(Wq_a x)                     [T, q_rank]   (output cq)
//   q   = Wq_b c_q -> [T, H, d]
//   q_h <- q_h / sqrt(mean(q_h^2) + eps)               per head, unweighted
//   RoPE on q_h[d - d_r, d) at position pos0 + r       (the layer's table)
// act_quant: FP8 round trip (1x128 blocks, UE8M0) of x before Wq_a and of c_q before Wq_b
// (cq itself is written unquantised, as the reference writes it).
//
// Shapes: x [T, D] (row stride x.ld), wq_a [q_rank, D], q_norm [q_rank], wq_b [H*d, q_rank]
// -> cq [T, q_rank] (row stride cq.ld), q [T, H*d] dense (q.ld == H*d, as the reference
// requires). Every pointer is a DEVICE pointer. Real shapes: Flash D 4096, q_rank 1024, H 64;
// Pro D 7168, q_rank 1536, H 128; d 512, d_r 64.
//
// Precision: FP32. The two projections are cuBLAS SGEMMs (optimized/linear.cuh: default math
// mode, no TF32); the rest is the GPU twins in the reference's order: rmsnorm (q_norm), the
// FP8 round trip (quant_fp8, bitwise the reference's quantiser), rmsnorm over q viewed as
// [T*H, d] without weight, rope. Reruns are bitwise identical (fixed GEMM algorithm per shape,
// fixed-order reductions).
//
// Launch geometry: SGEMM x -> cq; rmsnorm grid [T]; [act_quant: quant_fp8 of cq into the
// workspace]; SGEMM -> q; rmsnorm grid [T*H]; rope grid [T] (see those twins' headers).
//
// Errors: the reference's checks and messages (cq [T, q_rank], q dense [T, H*d]) plus the
// ones its helpers would raise later (rope_dim <= head_dim, the RoPE table), and this twin's
// limits (positive sizes, non-null weights, rope_dim <= kRopeMaxDim, cuBLAS's int range, the
// workspace's capacity), all on the host before any device work (dsv4::InputError); a failed
// launch or cuBLAS call throws dsv4::cuda::CudaError. Asynchronous on `stream`, except the
// one-off overload, which waits.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "reference/query_path.h"

namespace dsv4::cuda {

// Scratch of query_path for up to max_tokens rows of width D and rank q_rank: the FP8 copies of
// x [max_tokens, D] and c_q [max_tokens, q_rank] (act_quant), and the cuBLAS handle. One per
// stream that runs the op.
class QueryPathWorkspace {
 public:
  QueryPathWorkspace(int64_t max_tokens, int64_t dim, int64_t q_rank);
  QueryPathWorkspace(const QueryPathWorkspace&) = delete;
  QueryPathWorkspace& operator=(const QueryPathWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t dim() const { return dim_; }
  int64_t q_rank() const { return q_rank_; }

 private:
  friend void query_path(const QueryPathParams<float>&, QueryPathWorkspace&, cudaStream_t);
  int64_t max_tokens_, dim_, q_rank_;
  DeviceBuffer<float> xq_, cqq_;
  BlasHandle blas_;
};

void query_path(const QueryPathParams<float>& p, QueryPathWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs and waits for `stream`.
void query_path(const QueryPathParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
