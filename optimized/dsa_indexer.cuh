// DeepSeek-V3.2 DSA indexer (token-level) on the GPU: the CUDA twin of reference/dsa_indexer.h
// (same params structs, same semantics), for the comparison benchmarks. Spec:
// docs/v4-architecture.md §2.10.
//
// dsa_indexer_query (row r at position pos0 + r):
//   q = Wq_b^I c_q -> [HI, dI]; RoPE half_split on the FIRST d_r dims (V3 YaRN table);
//   normalised Hadamard per head; quant: FP8 round trip (UE8M0) in blocks of 128 per head row
//   w = (Wweights x) HI^-1/2 dI^-1/2
// dsa_indexer_keys (row j at position pos0 + j):
//   k = LayerNorm_{w,b}(Wk x); RoPE, Hadamard and quant as above
// dsa_indexer: the scores and top-k of optimized/indexer.cuh with ratio 1 (key j is token j,
//   visible to position p iff j <= p); the params' ratio is ignored, as the reference does.
//
// Shapes: cq [T, q_rank], x [T, D], wq_b [HI*dI, q_rank], weights_proj [HI, D], wk [dI, D],
// norm_w / norm_b [dI] -> q [T, HI*dI] dense, w [T, HI], k [T, dI] dense (the reference
// requires dense q and k). Every pointer is a DEVICE pointer. V3.2: HI 64, dI 128, d_r 64,
// q_rank 1536, D 7168, topk 2048.
//
// Precision: FP32. Projections: cuBLAS SGEMM (optimized/linear.cuh; w's scale as the GEMM's
// alpha: one FP32 multiply of each finished dot product, as the reference's product then
// scaling, up to that multiply's rounding order); then the GPU twins rope, hadamard (dI a
// power of two <= kHadamardMaxDim), layernorm, quant_fp8 (bitwise the reference's quantiser)
// in the reference's order. The scoring is cuda::indexer (see its header). Reruns are bitwise
// identical.
//
// Launch geometry: one or two SGEMMs, then each twin's own grid (one block per row).
//
// Errors: the reference's checks and messages (output shapes, dense outputs) plus what its
// helpers would reject later (rope_dim <= dI, the RoPE table), and this twin's limits
// (positive sizes, non-null weights, dI a power of two <= kHadamardMaxDim, rope_dim <=
// kRopeMaxDim, cuBLAS's int range), on the host before any device work (dsv4::InputError); a
// failed launch or cuBLAS call throws dsv4::cuda::CudaError. Asynchronous on `stream`, except
// the one-off overloads of the projections, which wait.
#pragma once

#include <cuda_runtime_api.h>

#include "optimized/linear.cuh"
#include "reference/dsa_indexer.h"

namespace dsv4::cuda {

// The cuBLAS handle of the projections (no scratch: every output is written in place). One
// per stream that runs them.
class DsaIndexerWorkspace {
 public:
  DsaIndexerWorkspace() = default;

 private:
  friend void dsa_indexer_query(const DsaQueryParams<float>&, DsaIndexerWorkspace&, cudaStream_t);
  friend void dsa_indexer_keys(const DsaKeyParams<float>&, DsaIndexerWorkspace&, cudaStream_t);
  BlasHandle blas_;
};

void dsa_indexer_query(const DsaQueryParams<float>& p, DsaIndexerWorkspace& ws, cudaStream_t stream = 0);
void dsa_indexer_keys(const DsaKeyParams<float>& p, DsaIndexerWorkspace& ws, cudaStream_t stream = 0);
// One-off calls: check p, make a workspace, run and wait for `stream`.
void dsa_indexer_query(const DsaQueryParams<float>& p, cudaStream_t stream = 0);
void dsa_indexer_keys(const DsaKeyParams<float>& p, cudaStream_t stream = 0);

// Scores and top-k with ratio 1 (p.ratio ignored). Asynchronous on `stream`.
void dsa_indexer(const IndexerParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
