// Core V4 attention on the GPU: the CUDA twin of reference/attention.h (same params struct,
// same index sets, same semantics). Spec: docs/v4-architecture.md §2.5 (math), §2.8
// (visibility); one op serves CSA (indexed), HCA (dense) and window-only (N = 0) layers.
//
// Query row r has position p = pos0 + r; window row j of kv has position base + j with
// base = pos0 + T - Tk. The entries of row r, in this order:
//   window:     kv rows [w0, w1], w1 = p - base, w0 = max(0, p - window + 1 - base);
//   compressed: dense (indices.data == nullptr, HCA): comp rows [0, nvis);
//               indexed (CSA): comp rows indices[r, 0..k), skipping -1 and j >= nvis
//               (a duplicated index counts twice);  nvis = clamp((p + 1) / ratio, 0, N).
// For every head h (K = V: one entry vector is both key and value, shared by all heads):
//   s_j = scale * q[r, h, :] . e_j            (scale = p.scale, or 1/sqrt(d) when 0)
//   lse[r, h] = ln(exp(sink[h]) + sum_j exp(s_j))     (sink = -inf: no sink)
//   o[r, h, :] = sum_j exp(s_j - lse[r, h]) e_j        (the sink has a zero value)
// Shapes: q [T, H*d], kv [Tk, d] (Tk >= T), comp [N, d] (N may be 0), sink [H],
// indices [T, k] int32 or data == nullptr -> o [T, H*d], lse [T, H] (optional: data ==
// nullptr). Every pointer is a DEVICE pointer; rows are strided by their view's ld. Overwrites
// o and lse; they must not overlap the inputs. At the real shapes d = kHeadDim = 512,
// H = 64 (Flash) / 128 (Pro), k = 512 / 1024 (indexer top-k), window 128.
//
// Precision: FP32 in, FP32 dot products, FP32 online softmax (running max m, running sum l,
// rescale by exp(m_old - m_new) per chunk of entries), FP32 out; expf/logf (no fast math).
// The reduction orders are fixed by the code, not by the launch: every head is computed by
// one warp over the same chunks of kAttentionChunk entries, so reruns, and the two tiles
// below, give bitwise identical results (split-K, below: reruns too, and its own bound).
//
// Launch geometry: grid [T, ceil(H / heads_per_block)], one block per (query row, head tile),
// one warp per head. Per chunk of kAttentionChunk = 32 consecutive entries of the row's list
// (window rows first, then the compressed slots; a slot whose index is -1, not visible, or
// past the end is masked: a zero row with score -inf), the block
//   1. stages the 32 entry rows in shared memory (each warp gathers 32 / heads_per_block of
//      them, float4-coalesced when d % 4 == 0 and the rows are 16-byte aligned), barrier;
//   2. each warp, holding its head's q row and its output accumulator in registers (lane l
//      owns dims 128 i + 4 l .. + 3), forms its 32 per-lane partial dot products, reduces
//      them with one transpose-butterfly (31 shuffles; lane e ends with the score of entry
//      e), updates m and l with a warp max and a warp sum, and accumulates sum_e p_e e_e
//      from shared memory; barrier before the next chunk overwrites the rows.
// So each gathered entry is read from global memory once per block and shared by all heads
// of its tile. Two tiles of the same kernel:
//   decode  (kAttentionDecodeHeads = 4 heads, 128 threads): few rows (T = 1..few) -> more
//           blocks per row, so a single decode row still spreads over H / 4 SMs;
//   prefill (kAttentionPrefillHeads = 16 heads, 512 threads): many rows -> 4x fewer entry
//           reads per row.
// attention() takes prefill when it yields at least two waves of blocks (T * ceil(H / 16) >=
// 2 * multiprocessors), decode otherwise. Shared memory: 32 rows x d rounded up to 128
// floats (64 KiB at d = 512; the kernel opts in above the 48 KiB default).
//
// Split-K (flash-decoding), for launches with few blocks: at decode (T = 1) the decode tile
// gives ceil(H / 4) = 16 (Flash) or 32 (Pro) blocks, each streaming all of its row's entries
// (8320 slots for HCA at 1M tokens) while most of the 132 SMs of an H200 idle. With S splits
// the slot list of every row, bounded by n_max = min(window, Tk) + (k or N), is cut into S
// contiguous splits of split_len = ceil(ceil(n_max / 32) / S) * 32 slots (split z: slots
// [z split_len, (z + 1) split_len) of the row's list, clipped to its length, possibly empty):
//   split   grid [T, ceil(H / 4), S], the decode tile: the kernel above over the split's
//           slots only (the same chunks of 32, split_len being whole chunks), ending with the
//           split's partial per head, m_z (-inf when it attended nothing), l_z and the
//           unnormalised acc_z = sum_e exp(s_e - m_z) e_e, in a workspace;
//   combine grid [T, ceil(H / 4)], a warp per head (lane l owns dims 128 i + 4 l .. + 3): in
//           split order z = 0 .. S - 1, M = max_z m_z, alpha_z = exp(m_z - M) (a split with
//           m_z = -inf is skipped), l = sum_z alpha_z l_z, acc = sum_z alpha_z acc_z, then the
//           single-pass epilogue: den = l + exp(sink - M) (the sink once, with zero value),
//           o = acc / den, lse = M + ln den. M is finite: split 0 holds the first window row.
// Workspace: a stream-ordered allocation (cudaMallocAsync / cudaFreeAsync on `stream`, the
// device's default memory pool) of S T H (ceil(d / 128) 128 + 2) floats, at most
// kAttentionSplitScratchFloats (InputError above: fewer splits or rows); 2.2 MB for Flash
// decode at 1M (S = 17). Automatic choice (attention_auto_splits below; the decode tile only,
// the prefill tile never splits): with B = T ceil(H / 4) blocks below kAttentionSplitWaves =
// 2 blocks per multiprocessor, S = ceil(2 SMs / B), at most ceil(n_max / 32) /
// kAttentionMinSplitChunks (a split streams >= 2 chunks) and kAttentionMaxSplits, then
// trimmed so that no split of a row with n_max slots is empty; S <= 1 keeps the single pass.
// On an H200 (132 SMs) at T = 1: HCA 1M S = 17 (Flash) / 9 (Pro), CSA top-k S = 10 / 9,
// window-only S = 2. attention_with_split forces S (tests, benchmarks): 1 is the single-pass
// kernel, S >= 2 splits even when trailing splits are empty.
// Split-K precision: each split runs the single-pass recurrence over its own slots; the combine
// adds one rescale alpha_z = exp(m_z - M) per partial (a relative error of a few u = 2^-24,
// like each exp(m_old - m_new) rescale of the single pass) and S - 1 FP32 additions of terms
// |alpha_z acc_z[i]| <= omag (omag = max_i sum_j w_j |e_j[i]| with the final weights w), so
// at most ~(S + 3) u omag more. Split-K thus obeys the single pass's FP32 bound with n + S
// terms in place of n (tests/support/naive.h attend_tol_o / attend_tol_lse, which
// tests/optimized/test_attention.cc applies so), and the two differ by at most the sum of
// their errors. A CPU port of both (float, the kernels' operation order; HCA 1M, CSA top-k,
// masked splits, no sink, S = 2 .. 256) measured |split - single| <= 8.5 u omag for o and
// <= 2.3 u max(1, |lse|) for lse; against fp64, split-K 5.4 u omag, the single pass 7.6.
// S = 1 through the combine would be bit-exact (alpha = 1, split 0 taken by a product).
// Deterministic: fixed splits and a fixed merge order, no atomics; reruns are bitwise
// identical, the same S gives the same bits for attention() and attention_fp8() on the same
// rows, but split-K and single-pass results differ in the last bits.
//
// FP8 entries (attention_fp8): the same op reading the window and compressed entries in the
// deployment cache layout (model/kv_cache.h, fp8; docs/v4-architecture.md §2.2 step 3, §4),
// d = kHeadDim = 512, one 584-byte row per entry:
//   bytes [0, 448)    e4m3fn codes of dims 0..447 (reference/formats.h)
//   bytes [448, 455)  UE8M0 scales, one per 64-dim block: dim i = code * 2^(byte[448 + i/64] - 127)
//   byte  455         padding
//   bytes [456, 584)  dims 448..511 (the RoPE dims) in BF16, little-endian
// dequantised in the staging step (1. above) straight into the shared-memory rows; the rest
// of the kernel is the FP32 one, so the result has the bits of attention() run on the
// dequantised FP32 rows (dequantisation is exact: a code times a power of two, rounded once).
// Row strides are in bytes; rows must be 8-byte aligned (584 = 8 * 73).
//
// Errors: shapes are checked on the host before any launch, with the reference's messages
// (dsv4::InputError), plus the GPU limits (d <= kAttentionMaxDim, T < 2^31, a sink pointer,
// a forced split count in [0, kAttentionMaxSplits] and its partials within
// kAttentionSplitScratchFloats).
// The index VALUES live in device memory and are not checked on the host (the reference
// rejects values outside [-1, N)); the kernel treats any value outside [0, nvis) like -1 and
// never reads outside comp. A failed launch or split-K workspace allocation throws
// dsv4::cuda::CudaError. The launches are asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "reference/attention.h"
#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4::cuda {

inline constexpr int64_t kAttentionMaxDim = 512;  // head dim limit: 4 float4 per lane
inline constexpr int kAttentionChunk = 32;        // entries staged per step (= warp size)
inline constexpr int kAttentionDecodeHeads = 4;   // heads (warps) per block, decode tile
inline constexpr int kAttentionPrefillHeads = 16;  // heads (warps) per block, prefill tile

// The FP8 cache entry (see above): 448 e4m3 codes, 7 UE8M0 scales + 1 pad byte, 64 BF16.
inline constexpr int64_t kFp8EntryScaleBytes = 8;
inline constexpr int64_t kFp8EntryRopeOffset = kNopeDim + kFp8EntryScaleBytes;  // 456
inline constexpr int64_t kFp8EntryBytes = kFp8EntryRopeOffset + 2 * kRopeDim;   // 584
static_assert(kFp8EntryBytes == 584 && kNopeDim % kFp8KvBlock == 0 &&
                  kNopeDim / kFp8KvBlock < kFp8EntryScaleBytes,
              "attention: the FP8 entry layout of model/kv_cache.h");

// Split-K (see above).
inline constexpr int64_t kAttentionAutoSplit = 0;        // attention_with_split: choose S
inline constexpr int64_t kAttentionMaxSplits = 256;      // forced or automatic S
inline constexpr int64_t kAttentionSplitWaves = 2;       // automatic: blocks per multiprocessor
inline constexpr int64_t kAttentionMinSplitChunks = 2;   // automatic: chunks per split, at least
inline constexpr int64_t kAttentionSplitScratchFloats = int64_t(1) << 26;  // 256 MiB of partials

// The S that attention() picks (1: the single-pass kernel) for `rows` query rows of `heads`
// heads whose slot lists hold at most max_slots = min(window, Tk) + (k or N) slots, on a
// device of `multiprocessors` SMs, when the decode tile is used (attention() never splits the
// prefill tile). Host only; the rule of the header.
inline int64_t attention_auto_splits(int64_t rows, int64_t heads, int64_t max_slots,
                                     int64_t multiprocessors) {
  const int64_t blocks = rows * ((heads + kAttentionDecodeHeads - 1) / kAttentionDecodeHeads);
  const int64_t target = kAttentionSplitWaves * multiprocessors;
  if (blocks <= 0 || blocks >= target) return 1;
  const int64_t chunks = (max_slots + kAttentionChunk - 1) / kAttentionChunk;
  const int64_t want = (target + blocks - 1) / blocks;  // splits that fill the target
  const int64_t cap = std::min(chunks / kAttentionMinSplitChunks, kAttentionMaxSplits);
  const int64_t s = std::min(want, cap);
  if (s <= 1) return 1;
  const int64_t per = (chunks + s - 1) / s;  // chunks per split
  return (chunks + per - 1) / per;           // no split empty by construction
}

// The tile of the launch geometry above; automatic is what attention() picks.
enum class AttentionTile { automatic, decode, prefill };

// The automatic tile and, with the decode tile, the automatic split count.
void attention(const AttentionParams<float>& p, cudaStream_t stream = 0);

// The single-pass kernel with the tile forced (automatic: the tile rule above), never split:
// tests and benchmarks compare the two tiles (the same bits) and the split path against it.
void attention_with_tile(const AttentionParams<float>& p, AttentionTile tile,
                         cudaStream_t stream = 0);

// attention() with S forced: splits = kAttentionAutoSplit (0) is attention(); 1 the single-pass
// kernel with the automatic tile; 2 .. kAttentionMaxSplits split-K (decode tile). InputError
// for another value or when the partials would pass kAttentionSplitScratchFloats.
void attention_with_split(const AttentionParams<float>& p, int64_t splits,
                          cudaStream_t stream = 0);

// AttentionParams<float> with the entries in the FP8 cache layout: kv [Tk, 584] and comp
// [N, 584] bytes (strides ld in bytes); q [T, H*512]; everything else as there.
struct AttentionFp8Params {
  View2<const float> q;              // [T, H*512]
  View2<const uint8_t> kv;           // [Tk, kFp8EntryBytes]
  View2<const uint8_t> comp;         // [N, kFp8EntryBytes]
  const float* sink = nullptr;       // [H]
  View2<const int32_t> indices;      // [T, k], or data == nullptr for dense
  int64_t heads = 0;
  int64_t ratio = kCsaRatio;
  int64_t window = kWindow;
  double scale = 0;                  // 0: 1/sqrt(512)
  int64_t pos0 = 0;
  View2<float> o;                    // [T, H*512]
  View2<float> lse;                  // [T, H], optional
};

// The automatic tile and split count, as attention() (the same S for the same shapes, so
// the FP8 op keeps the bits of attention() on the dequantised rows).
void attention_fp8(const AttentionFp8Params& p, cudaStream_t stream = 0);

// attention_fp8() with S forced, as attention_with_split.
void attention_fp8_with_split(const AttentionFp8Params& p, int64_t splits,
                              cudaStream_t stream = 0);

}  // namespace dsv4::cuda
