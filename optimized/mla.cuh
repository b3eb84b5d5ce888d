// Multi-head latent attention (absorbed form) on the GPU: the CUDA twin of ref::mla
// (reference/mla.h; same params struct, same semantics): the attention core of DeepSeek-V3
// (dense causal) and V3.2 (over the DSA indexer's selection), for the comparison benchmarks.
// Spec: docs/v4-architecture.md §1.2, §2.10.
//
// Query row r at position p = pos0 + r (pos0 -1: Tk - T); kv row j at position j.
//   entries: dense, every j <= p; with indices, indices[r, :] skipping -1, out-of-range and
//            future rows, a duplicated j counting twice
//   s_j = scale q[r, h, :] . kv[j, :]  (dk = dl + dr dims; scale 0: 1/sqrt(dk))
//   o[r, h, :] = sum_j softmax_j(s_j) kv[j, 0:dl];  lse[r, h] = ln sum_j exp(s_j)
//   no entry: o = 0, lse = -inf.
// Shapes: q [T, H*dk], kv [Tk, dk], indices [T, k] (int32) or data == nullptr, o [T, H*dl],
// lse [T, H] or data == nullptr; every pointer a DEVICE pointer, rows strided by their ld.
// V3 / V3.2: H 128, dk 576, dl 512, decode T = 1; V3.2 k = 2048.
//
// Precision: FP32. Scores: a cuBLAS strided-batched SGEMM per chunk of rows (one batch per
// query row: [H, dk] x kv^T, scale as its alpha), for every kv row (the invisible ones are
// masked, not skipped); softmax per (row, head) over the Tk scores with entry multiplicities
// m_j (1 / 0 dense; the count of j in the row's indices, sparse): max, then
// den = sum_j m_j expf(s_j - max), P_j = m_j expf(s_j - max) / den, in a fixed order (block
// reductions: per-thread strided sums, warp butterflies, warps in order); lse = max + logf(den);
// then o = P kv[:, 0:dl] as a second strided-batched SGEMM. The reference's online softmax
// rounds differently (tolerances, not bits). Integer multiplicities by atomicAdd are
// order-free: reruns are bitwise identical.
//
// Launch geometry, per chunk of n rows (n H Tk <= the workspace's score capacity): [sparse:
// counts grid [n], kMlaThreads threads: zero the row's Tk counts, barrier, one atomicAdd per
// valid index]; SGEMM -> S [n*H, Tk]; softmax grid [n*H], kMlaThreads threads, P over S in
// place; SGEMM -> o. Memory per chunk: n H Tk floats (+ n Tk counts), for decode H Tk.
//
// Errors: the reference's checks and messages (latent_dim in [1, dk], q columns, pos0 + T <=
// Tk, o shape, indices rows) on the host before any device work (dsv4::InputError), plus this
// twin's limits (lse [T, H] when given, H Tk within the workspace's capacity, cuBLAS's int
// range). The indices' VALUES live on the device and are not checked (the reference rejects
// values outside [-1, Tk); here they are skipped like -1): callers holding them on the host
// check them first (cli/ops_cuda.cc does). A failed launch or cuBLAS call throws
// dsv4::cuda::CudaError. Asynchronous on `stream`, except the one-off overload.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "optimized/linear.cuh"
#include "reference/mla.h"

namespace dsv4::cuda {

inline constexpr int kMlaThreads = 256;
// Default score capacity of a one-off call's workspace: 2^26 floats (256 MiB).
inline constexpr int64_t kMlaScoreFloats = int64_t(1) << 26;

// Scratch of mla: scores [capacity floats] and sparse counts [capacity / H ints] (enough for
// the rows of any chunk), the cuBLAS handle. One per stream that runs the op.
class MlaWorkspace {
 public:
  // capacity: floats of scores per chunk; a call needs H * Tk <= capacity.
  explicit MlaWorkspace(int64_t capacity);
  MlaWorkspace(const MlaWorkspace&) = delete;
  MlaWorkspace& operator=(const MlaWorkspace&) = delete;
  int64_t capacity() const { return capacity_; }

 private:
  friend void mla(const MlaParams<float>&, MlaWorkspace&, cudaStream_t);
  int64_t capacity_;
  DeviceBuffer<float> scores_;
  DeviceBuffer<int32_t> counts_;
  BlasHandle blas_;
};

void mla(const MlaParams<float>& p, MlaWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace of min(T H Tk, kMlaScoreFloats) floats, runs and
// waits for `stream`.
void mla(const MlaParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
