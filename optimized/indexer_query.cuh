// The lightning indexer's query path on the GPU: the CUDA twin of ref::indexer_query
// (reference/indexer.h; same params struct, same semantics). Spec: docs/v4-architecture.md
// §2.4, §2.7 (RoPE), §9.4 (act_quant).
//
//   q^I = Wq_b^I c_q -> [T, HI, dI]          (c_q FP8 round trip in 1x128 blocks first under act_quant)
//   RoPE on the last d_r dims of every head at position pos0 + r (the layer's table)
//   quant: each head's normalised Walsh-Hadamard transform, then the FP4 round trip (blocks of 32)
//   w = (Wweights x) * dI^-1/2 * HI^-1/2      [T, HI]   (weights_proj unquantised, §9.4)
//
// Shapes: cq [T, q_rank] (row stride cq.ld), x [T, D] (row stride x.ld), wq_b [HI*dI, q_rank],
// weights_proj [HI, D] -> q [T, HI*dI] DENSE (the reference requires it), w [T, HI] (row stride
// w.ld). Every pointer is a DEVICE pointer. Real shapes: HI 64, dI 128, d_r 64; Flash q_rank
// 1024, D 4096; Pro q_rank 1536, D 7168.
//
// Precision: FP32. The projections are cuBLAS SGEMMs (optimized/linear.cuh, no TF32); the rest
// are the GPU twins in the reference's order (quant_fp8, rope, hadamard, quant_fp4), and one
// elementwise kernel for the head-weight scale, which multiplies like the reference (the SGEMM's
// value times the float scale, rounded once). Reruns are bitwise identical.
//
// Launch geometry: [act_quant: quant_fp8 of cq into the workspace]; SGEMM -> q; rope grid [T];
// [quant: hadamard and quant_fp4 over q viewed as [T*HI, dI]]; SGEMM -> w; scale grid
// ceil(T*HI / 256) x 256 threads.
//
// Errors: the reference's checks and messages (x rows, q and w shapes, q dense), what its
// helpers would reject (rope_dim <= dI, the RoPE table; dI a power of two under quant), this
// twin's limits (non-null weights, positive sizes, cuBLAS's int range, the workspace), all on the
// host before any device work (dsv4::InputError); failures on the device throw
// dsv4::cuda::CudaError. Asynchronous on `stream`, except the one-off overload, which waits.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "reference/indexer.h"

namespace dsv4::cuda {

inline constexpr int kIndexerScaleThreads = 256;

// Scratch of one stream's indexer queries: the FP8-rounded c_q (act_quant) and a cuBLAS handle.
class IndexerQueryWorkspace {
 public:
  IndexerQueryWorkspace(int64_t max_tokens, int64_t q_rank);
  IndexerQueryWorkspace(const IndexerQueryWorkspace&) = delete;
  IndexerQueryWorkspace& operator=(const IndexerQueryWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t q_rank() const { return q_rank_; }

 private:
  friend void indexer_query(const IndexerQueryParams<float>&, IndexerQueryWorkspace&, cudaStream_t);
  int64_t max_tokens_, q_rank_;
  DeviceBuffer<float> cqq_;
  BlasHandle blas_;
};

void indexer_query(const IndexerQueryParams<float>& p, IndexerQueryWorkspace& ws, cudaStream_t stream = 0);
// One-off: makes its own workspace and waits for the device.
void indexer_query(const IndexerQueryParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
