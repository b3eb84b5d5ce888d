// Token-level KV compressor: CSA (m = 4, overlapping 8-token windows) and HCA (m = 128).
// Spec: docs/v4-architecture.md §2.3 (math, state), §2.8 (emission), §2.9 (decode order).
//
// Per token s (absolute position, from 0):  a_s = Wkv x_s,  z_s = Wgate x_s + ape[s mod m]
// (both [c*dc]; c = 2 with overlap, else 1). Per channel ch of entry i:
//   HCA (no overlap): C_i[ch] = sum_{s in blk(i)} softmax_s(z_s[ch]) a_s[ch]
//   CSA (overlap):    one softmax per channel over 2m logits: the A half [0, dc) of the
//                     m tokens of blk(i-1) and the B half [dc, 2dc) of blk(i):
//                     C_i[ch] = sum_{s in blk(i-1)} w a_s[ch] + sum_{s in blk(i)} w a_s[dc+ch]
//                     (for i = 0 the previous block is absent: logit -inf).
// Then C_i <- RMSNorm_w(C_i); RoPE on C_i[dc - d_r, dc) at position i*m; then the
// quantisation simulation of `quant`:
//   none          nothing
//   fp8           FP8 e4m3 round trip on dims [0, dc - d_r) in blocks of 64 and BF16
//                 rounding of the RoPE dims (main entries; as window_kv's quant)
//   fp4_hadamard  normalised Hadamard of the whole entry, then FP4 round trip in blocks of
//                 32 (indexer keys; the rotation is kept: keys live in the rotated basis)
// Entry i exists once token m*i + m - 1 has been ingested.
//
// One mechanism, any chunking: compressor_ingest takes a chunk of tokens at the state's
// position (projections as one GEMM over the chunk), writes each token into the state and
// emits every entry whose block completes. compressor_prefill (a whole sequence from
// position 0) and compressor_decode (one token) are ingest on a fresh state and on one row;
// they must agree on entries and on the state they leave (bit for bit when the projections
// are exact; to GEMM-vs-GEMV rounding otherwise).
// State (FP32/FP64, [c*m, c*dc] each): for CSA rows 0..m-1 hold the previous block and rows
// m..2m-1 the current one; for HCA rows 0..m-1 hold the current block. Rows of tokens not
// yet seen hold kv = 0 and score = -inf. On emission CSA shifts current -> previous; both
// kinds then clear the current rows (the official code leaves them stale; they are never
// read before being overwritten, and clearing makes prefill and decode states identical).
#pragma once

#include <cstdint>
#include <vector>

#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

enum class CompressorQuant { none, fp8, fp4_hadamard };

struct CompressorShape {
  int64_t dim = 0;        // D: input width
  int64_t head_dim = 0;   // dc: entry width (512 main, 128 indexer)
  int64_t ratio = kCsaRatio;  // m
  bool overlap = true;    // CSA; c = 2
  int64_t coff() const { return overlap ? 2 : 1; }
  int64_t width() const { return coff() * head_dim; }  // c * dc
  int64_t state_rows() const { return coff() * ratio; }  // c * m
};

template <class T>
struct CompressorWeights {
  const T* wkv = nullptr;    // [c*dc, D]
  const T* wgate = nullptr;  // [c*dc, D]
  const T* ape = nullptr;    // [m, c*dc]
  const T* norm = nullptr;   // [dc]
};

template <class T>
struct CompressorParams {
  CompressorShape shape;
  CompressorWeights<T> w;
  RopeConfig rope = rope_v4_compressed();
  CompressorQuant quant = CompressorQuant::none;
  double eps = kNormEps;
};

template <class T>
struct CompressorState {
  int64_t pos = 0;       // tokens ingested
  int64_t rows = 0;      // c*m
  int64_t width = 0;     // c*dc
  std::vector<T> kv;     // [c*m, c*dc]
  std::vector<T> score;  // [c*m, c*dc], -inf where empty
};

namespace ref {

template <class T>
CompressorState<T> compressor_state_init(const CompressorShape& s);

// x [T, D] (positions 0..T-1) -> entries [floor(T/m), dc]. Optionally leaves the decode
// state after T tokens in *state (which may be nullptr).
template <class T>
void compressor_prefill(const CompressorParams<T>& p, View2<const T> x, View2<T> entries,
                        CompressorState<T>* state);

// Ingests x [T, D] at positions state.pos .. state.pos + T - 1 and appends every entry that
// completes to `entries` (rows of dc). Returns how many it appended.
template <class T>
int64_t compressor_ingest(const CompressorParams<T>& p, View2<const T> x, CompressorState<T>& state,
                          std::vector<T>& entries);

// Ingests x_t [D] at position state.pos. When a block completes, writes entry
// floor(t/m) to entry [dc] and returns true.
template <class T>
bool compressor_decode(const CompressorParams<T>& p, const T* x_t, CompressorState<T>& state,
                       T* entry);

// Normalise, rotate and quantise one pooled entry of block `block` in place (shared tail
// of both paths; exposed for tests).
template <class T>
void compressor_finish_entry(const CompressorParams<T>& p, int64_t block, T* entry);

}  // namespace ref
}  // namespace dsv4
