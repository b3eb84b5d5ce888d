// Token-level KV compressor on the GPU: the CUDA twin of ref::compressor_prefill and
// ref::compressor_ingest / compressor_decode (reference/compressor.h; same params struct, same
// semantics). Spec: docs/v4-architecture.md §2.3 (math, state), §2.8 (emission), §2.9 (decode).
//
// x [T, D] holds positions pos .. pos+T-1 (prefill: pos = 0); per token s:
//   a_s = Wkv x_s,  z_s = Wgate x_s + ape[s mod m]          ([c*dc]; c = 2 for CSA, else 1)
// Per channel ch of entry i, one softmax over the pooled logits:
//   HCA (no overlap): C_i[ch] = sum_{s in blk(i)} softmax_s(z_s[ch]) a_s[ch]
//   CSA (overlap):    over the A half [0, dc) of blk(i-1) and the B half [dc, 2dc) of blk(i)
//                     (for i = 0 blk(-1) is absent: logit -inf)
// then C_i <- RMSNorm_norm(C_i); RoPE on its last d_r dims at position i*m; then `quant`:
// none; fp8 (FP8 e4m3 round trip of dims [0, dc - d_r) in blocks of 64, BF16 rounding of the
// RoPE dims); fp4_hadamard (normalised Hadamard of the entry, FP4 round trip in blocks of 32).
// Entry i exists once token m*i + m - 1 has been ingested.
// Real shapes: CSA main D = 4096 (Flash) / 7168 (Pro), dc = 512, m = 4; CSA indexer keys
// dc = 128, fp4_hadamard; HCA m = 128, dc = 512.
//
// Two entry points:
//   compressor_prefill  x at positions 0..T-1 -> entries [floor(T/m), dc]; no state.
//   compressor_ingest   any chunk x [n, D] at the device state's position pos (one token =
//                       decode): emits the E = floor((pos+n)/m) - floor(pos/m) entries of the
//                       blocks that complete inside the chunk (absolute blocks floor(pos/m) ..
//                       floor((pos+n)/m) - 1, RoPE position block*m) and leaves the state the
//                       reference leaves: DeviceCompressorState mirrors CompressorState<float>
//                       (kv / score [c*m, c*dc]; CSA rows 0..m-1 the previous block, rows
//                       m..2m-1 the current one; HCA rows 0..m-1 the current one; unseen rows
//                       kv 0, score -inf; on emission CSA shifts current -> previous, then the
//                       current rows are cleared). A token before the chunk is read from the
//                       state: the current rows for the block in progress at pos, the
//                       previous rows (CSA) for the block before it.
//
// Every pointer (x, the weights wkv [c*dc, D], wgate [c*dc, D], ape [m, c*dc], norm [dc], and
// entries) is a DEVICE pointer; x and entries are strided by their ld. The state lives in device
// memory (download_state copies it to the host).
//
// Precision: FP32. The projections are cuBLAS SGEMMs in the default math mode (FP32 FMA, no
// TF32): prefill over the nb*m tokens that complete a block (the reference also projects the
// trailing partial block, which only feeds its state), ingest over the whole chunk (one token:
// an SGEMM of one column; the reference's GEMM-vs-GEMV rounding). The state's score is the
// reference's z + ape (one FP32 add). The pooling keeps the reference's order: max, then den
// and num summed over the rows in the reference's row order (CSA: blk(i-1)'s A half, then
// blk(i)'s B half) with expf; out = num / den (0 when no row has a finite logit). The tail is
// the GPU twins rmsnorm, rope, quant_fp8, hadamard, quant_fp4 (bitwise twins of the
// reference's quantisers) and a BF16 rounding kernel. The state update copies values (no
// arithmetic besides z + ape). cuBLAS's SGEMM is deterministic for a fixed problem and stream
// on one GPU, so reruns are bitwise identical.
//
// Launch geometry: two SGEMMs (a^T [c*dc, rows] = Wkv^T-as-column-major x^T, same for z);
// pooling grid [entries], kPoolThreads threads, each thread a strided set of channels
// (coalesced reads of one token row per step); the tail ops with their own geometries (one
// block per entry row); ingest's state update: one thread per (row k < m, column) owning state
// rows k and m + k of that column (so it runs in place without races), grid
// [ceil(m*c*dc / kStateThreads)], after the pooling on the same stream.
//
// Errors: the reference's checks with its messages (entries shape, dims positive, rope_dim <=
// head_dim, x columns, the state's shape, the RoPE table) plus this twin's limits (rope_dim <=
// kRopeMaxDim, fp4_hadamard dc a power of two <= kHadamardMaxDim, sizes within cuBLAS's int,
// the workspace's capacity) on the host before any device work (dsv4::InputError); a failed
// launch or cuBLAS call throws dsv4::cuda::CudaError. Asynchronous on `stream` (except
// download_state, and the state's first allocation).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "optimized/device.cuh"
#include "reference/compressor.h"

namespace dsv4::cuda {

inline constexpr int kPoolThreads = 256;
inline constexpr int kStateThreads = 256;


// Scratch of compressor_prefill / compressor_ingest for up to max_tokens tokens of one
// compressor shape: a and z [max_tokens, c*dc] and a cuBLAS handle (created by the first call
// that launches work, so a workspace of 0 tokens needs no device). One workspace per stream
// that runs the op (the handle is bound to each call's stream and the buffers are reused by
// the next call).
class CompressorWorkspace {
 public:
  CompressorWorkspace(int64_t max_tokens, const CompressorShape& shape);
  ~CompressorWorkspace();
  CompressorWorkspace(const CompressorWorkspace&) = delete;
  CompressorWorkspace& operator=(const CompressorWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t width() const { return width_; }

  // a = x Wkv^T, z = x Wgate^T for the first `rows` rows of x into the buffers (internal).
  void project(const CompressorParams<float>& p, View2<const float> x, int64_t rows, cudaStream_t stream);
  const float* a() const { return a_.data(); }
  const float* z() const { return z_.data(); }

 private:
  int64_t max_tokens_, width_;
  DeviceBuffer<float> a_, z_;
  cublasHandle_t handle_ = nullptr;
};

// The decode state of one compressor in device memory: the twin of CompressorState<float>
// (pos, kv and score [c*m, c*dc]). A fresh state (pos 0, kv 0, score -inf) holds no device
// memory until its first non-empty ingest, so it can be made without a device.
class DeviceCompressorState {
 public:
  explicit DeviceCompressorState(const CompressorShape& shape);  // fresh
  explicit DeviceCompressorState(const CompressorState<float>& host);  // a copy of a host state
  DeviceCompressorState(const DeviceCompressorState&) = delete;
  DeviceCompressorState& operator=(const DeviceCompressorState&) = delete;

  int64_t pos() const { return pos_; }  // tokens ingested
  int64_t rows() const { return rows_; }  // c*m
  int64_t width() const { return width_; }  // c*dc
  // Device pointers to kv / score [rows, width], row-major; nullptr while fresh (= kv 0,
  // score -inf everywhere).
  const float* kv() const { return kv_.empty() ? nullptr : kv_.data(); }
  const float* score() const { return score_.empty() ? nullptr : score_.data(); }

 private:
  friend int64_t compressor_ingest(const CompressorParams<float>&, View2<const float>, DeviceCompressorState&,
                                   View2<float>, CompressorWorkspace&, cudaStream_t);
  int64_t pos_, rows_, width_;
  DeviceBuffer<float> kv_, score_;
};

// The number of entries an ingest of n tokens at position pos emits (blocks of m that
// complete inside the chunk): floor((pos + n) / m) - floor(pos / m). m > 0, pos, n >= 0.
inline int64_t compressor_entries_emitted(int64_t pos, int64_t n, int64_t m) { return (pos + n) / m - pos / m; }

// x [T, D] (positions 0..T-1) -> entries [floor(T/m), dc]. ws must hold at least
// floor(T/m)*m tokens of width c*dc.
void compressor_prefill(const CompressorParams<float>& p, View2<const float> x, View2<float> entries,
                        CompressorWorkspace& ws, cudaStream_t stream = 0);

// Ingests x [n, D] at positions state.pos() .. state.pos() + n - 1 (ref::compressor_ingest):
// writes the E = compressor_entries_emitted(state.pos(), n, m) completed entries, in block
// order, to entries [E, dc] (exactly E rows; E = 0: any empty view) and advances the state.
// Returns E. ws must hold at least n tokens of width c*dc.
int64_t compressor_ingest(const CompressorParams<float>& p, View2<const float> x, DeviceCompressorState& state,
                          View2<float> entries, CompressorWorkspace& ws, cudaStream_t stream = 0);

// The state as the reference's host struct. Waits for `stream` first (synchronous).
CompressorState<float> download_state(const DeviceCompressorState& state, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
