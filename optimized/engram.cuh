// Engram conditional memory on the GPU: the CUDA twins of reference/engram.h (same params
// structs, same semantics). Spec: docs/engram.md ("The module at layer l", steps 2-4). The
// host-resident tables and their prefetch stream live in optimized/engram_prefetch.cuh.
//
// engram_hash   rows[t, (n-2)*Hn + j] = offset_{n,j} + mix_n(t) mod prime_{n,j},
//               mix_n(t) = XOR_{k<n} c_{t-k} * mult[k]   (uint64, the reference's arithmetic,
//               so the rows are bitwise those of ref::engram_hash)
//   c_t = token_map[ids[t]] for t >= 0; history[N-1+t] for t < 0 (a negative entry: the pad).
//   Shapes: ids [T] int32, history [N-1] int32 or nullptr (all pad), rows [T, (N-1)*Hn] int64
//   (row stride rows.ld). ids, history and rows are DEVICE pointers; the hash constants
//   (multipliers, primes, offsets, token_map) come from a DeviceEngramHash built once from the
//   host EngramHash that p.hash points to (p.hash is used for the shape checks only).
//   Geometry: one thread per (token, slot), kHashThreads per block; each thread forms the
//   n-gram mix of its slot's order (n <= 8 multiplies) and one 64-bit modulo.
//
// engram_lookup e[t, s*de + c] = float(table[rows[t, s], c])           e [T, slots*de] FP32
//   The table (F32 or BF16 bits, [table rows, de], dense) is in DEVICE memory or in PINNED,
//   MAPPED host memory (PinnedHostTable::device_view()), read by the kernel over the
//   interconnect. rows [T, slots] int64 on the device. BF16 -> FP32 is exact, so e is bitwise
//   ref::engram_lookup<float>.
//   Geometry: one block of kLookupThreads per token; thread i copies elements i, i + 256, ...
//   of the token's slots*de outputs (consecutive threads read consecutive elements of a row).
//
// engram_mix    Y = V + SiLU(conv(Z)) of docs/engram.md step 4, per stream s < S:
//   v = e Wv^T + bv,  k_s = RMSNorm(e Wk_s^T + bk_s; key_norm_s),  q_s = RMSNorm(x_s; query_norm_s)
//   a = <k_s, q_s> / sqrt(D),  g = sigmoid(sign(a) sqrt(max(|a|, 1e-6))),  V_s = g v
//   Z_s = RMSNorm(V_s; conv_norm_s, eps 1e-5),  C = SiLU(sum_i w[., i] Z_{t-(K-1-i)*dil})
//   Shapes: x [T, S*D], e [T, E], weights as EngramMixWeights, history [(K-1)*dil, S*D]
//   (in/out, oldest first), y [T, S*D]: all DEVICE pointers. Overwrites y and history; y must
//   not overlap x, e, history or a weight.
//   Steps, all on `stream`: (1) two cuBLAS SGEMMs (FP32 in, FP32 accumulate, no TF32):
//   v_raw = e Wv^T [T, D] and k_raw = e [Wk_0; ...; Wk_{S-1}]^T [T, S*D] (Wk is [S*D, E]
//   row-major), into the workspace; (2) one kernel, grid [T, S], kMixThreads per block: block
//   (t, s) forms Z of its K taps t - (K-1-i)*dil in turn (a tap before the chunk reads the
//   history row; a tap inside it is recomputed from k_raw, x and v_raw: one block reduction of
//   four sums sum k^2, sum x^2, sum (k kn)(x qn), sum (v+bv)^2 gives both norms, the gate and
//   the conv norm, since sum V^2 = g^2 sum (v+bv)^2), accumulates w * Z per column in shared
//   memory, and at the last tap (t itself) writes y = V + SiLU(acc); the blocks of the last
//   (K-1)*dil tokens also write their Z into the workspace's next history; (3) the next
//   history is copied over `history` (when T < (K-1)*dil its first rows are the old history's
//   last rows, copied into the workspace before the kernel).
//   Recomputing a tap's Z in every block that needs it (K times in all) replaces a grid-wide
//   barrier between the gate and the convolution; every Z is computed by the same code with
//   the same reduction order, so all blocks agree bitwise.
//
// Precision: FP32 throughout (expf, sqrtf; no fast math). Reduction orders are fixed by the
// code and the launch geometry (the GEMMs by cuBLAS for a given shape, stream and device), so
// reruns are bitwise identical; a different T may pick a different GEMM kernel, so chunked and
// whole-sequence results agree within rounding, not bitwise.
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError), plus the GPU limits (D <= kEngramMixMaxDim, int-sized GEMM dimensions,
// T < 2^31). Token ids, history ids and rows live in device memory and are not checked on the
// host (the reference rejects them): engram_hash writes -1 for every slot whose n-gram reads an
// id outside [0, vocab) (or a history id >= vocab), and engram_lookup writes NaN for a row
// outside the table, so bad input shows up as NaN, never as an out-of-bounds read. A failed
// launch or cuBLAS call throws dsv4::cuda::CudaError. Every launch is asynchronous on `stream`.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "optimized/device.cuh"
#include "reference/engram.h"

namespace dsv4::cuda {

inline constexpr int kHashThreads = 256;
inline constexpr int kLookupThreads = 256;
inline constexpr int kMixThreads = 256;
// Largest D of engram_mix: the block's per-column accumulator (D floats) sits in the default
// 48 KiB of dynamic shared memory. V4-Flash has D = 4096, V4-Pro D = 7168.
inline constexpr int64_t kEngramMixMaxDim = 12288;

// The device copy of one layer's EngramHash: multipliers [N], primes and offsets
// [(N-1)*Hn], token_map [vocab] (empty: identity, as in the reference), and the scalars.
// Built once per layer (synchronous uploads); default-constructed it is empty and matches no
// layout.
class DeviceEngramHash {
 public:
  DeviceEngramHash() = default;
  explicit DeviceEngramHash(const EngramHash& h);

  // Whether this mirror was built from a layout equal to h (N, Hn, vocab, pad, table size,
  // primes and multipliers; the token map by pointer presence).
  bool matches(const EngramHash& h) const;

  int64_t max_ngram() const { return max_ngram_; }
  int64_t heads() const { return heads_; }
  int64_t slots() const { return (max_ngram_ - 1) * heads_; }
  int64_t vocab() const { return vocab_; }
  int64_t pad_id() const { return pad_id_; }
  const uint64_t* multipliers() const { return multipliers_.data(); }
  const int64_t* primes() const { return primes_.data(); }
  const int64_t* offsets() const { return offsets_.data(); }
  const int32_t* token_map() const { return token_map_.empty() ? nullptr : token_map_.data(); }

 private:
  int64_t max_ngram_ = 0, heads_ = 0, vocab_ = 0, pad_id_ = 0, table_rows_ = 0;
  std::vector<uint64_t> host_multipliers_;
  std::vector<int64_t> host_primes_;
  bool has_map_ = false;
  DeviceBuffer<uint64_t> multipliers_;
  DeviceBuffer<int64_t> primes_, offsets_;
  DeviceBuffer<int32_t> token_map_;
};

// p.hash: the host layout (shape checks); p.ids, p.history, p.rows: DEVICE pointers.
void engram_hash(const EngramHashParams& p, const DeviceEngramHash& dh, cudaStream_t stream = 0);

// p.table.data: device memory or mapped pinned host memory; p.rows, p.e: DEVICE pointers.
void engram_lookup(const EngramLookupParams<float>& p, cudaStream_t stream = 0);

// Scratch of engram_mix for up to max_tokens tokens of a layer with S streams of width D and
// (K-1)*dil history rows: v_raw [T, D], k_raw [T, S*D], the next history [(K-1)*dil, S*D], and
// a cuBLAS handle. One workspace per stream that runs engram_mix (the handle is bound to the
// stream of each call, and the buffers are reused by the next call).
class EngramMixWorkspace {
 public:
  EngramMixWorkspace(int64_t max_tokens, int64_t streams, int64_t dim, int64_t history_rows);
  ~EngramMixWorkspace();
  EngramMixWorkspace(const EngramMixWorkspace&) = delete;
  EngramMixWorkspace& operator=(const EngramMixWorkspace&) = delete;

  int64_t max_tokens() const { return max_tokens_; }
  int64_t streams() const { return streams_; }
  int64_t dim() const { return dim_; }
  int64_t history_rows() const { return history_rows_; }

 private:
  friend void engram_mix(const EngramMixParams<float>&, EngramMixWorkspace&, cudaStream_t);
  int64_t max_tokens_, streams_, dim_, history_rows_;
  DeviceBuffer<float> v_raw_, k_raw_, next_history_;
  cublasHandle_t handle_ = nullptr;
};

// Asynchronous on `stream`; ws must fit p (tokens, S, D, history rows).
void engram_mix(const EngramMixParams<float>& p, EngramMixWorkspace& ws, cudaStream_t stream = 0);
// One-off call: checks p, makes a workspace for it, runs, and waits for `stream` (the
// workspace is freed on return). For tests and tools; the model keeps a workspace.
void engram_mix(const EngramMixParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
