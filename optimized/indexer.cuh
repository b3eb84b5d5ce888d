// Lightning-indexer scores and top-k on the GPU: the CUDA twin of the `indexer` op of
// reference/indexer.h (same params struct, same semantics). Spec: docs/v4-architecture.md
// §2.4 (indexer), §2.8 (visibility), §2.9 (decode).
//
// Query row r sits at position p = pos0 + r and sees the compressed keys j < vis(r),
//   vis(r) = clamp((p + 1) / m, 0, N)            (m j + m - 1 <= p: completed blocks only)
//   scores[r, j]  = sum_h w[r, h] * ReLU(q[r, h, :] . k[j, :])   for j < vis(r), else -inf
//   indices[r, :] = the min(topk, vis(r)) visible j of highest score, by descending score,
//                   ties to the lower j, then -1 up to topk.
// Shapes: q [T, HI*dI], k [N, dI], w [T, HI], scores [T, N] (optional: data == nullptr means
// not written; the op then scores into a stream-ordered scratch of at most kIndexerScratchFloats
// floats, a block of rows at a time), indices [T, topk]. Every pointer is a DEVICE pointer,
// rows strided by their view's ld. Real shapes: HI = 64, dI = 128, N <= 2^18 (1M tokens / 4),
// topk 512 (Flash) / 1024 (Pro); decode is T = 1.
//
// Precision: FP32 in, FP32 FMA accumulation, FP32 scores. Each dot product q_h . k_j is one
// running FMA sum over dI in index order (the reference's order too); per key the heads are
// summed in a fixed order (4 heads per thread by FMA, then the 16 thread partials of a 64-head
// tile in order, then tile after tile). A key's score does not depend on where it sits in a
// tile, so duplicated keys score bitwise equal. The selection is exact on the FP32 scores:
// indices are exactly the reference rule applied to this op's own scores. Reruns are bitwise
// identical (no float atomics; the integer histogram counts are order-independent).
//
// Launch geometry:
//   scores  grid [ceil(N / 128), rows], 256 threads: a block scores 128 keys for one query
//           row against all heads, a register-tiled GEMM [128 keys, dI] x [dI, 64 heads] per
//           head tile, thread tile 8 keys x 4 heads, dI staged through shared memory 32
//           columns at a time (keys [128][33], padded against bank conflicts; queries
//           [32][64] read as float4), then ReLU, the head weights and the head sum fused in
//           the epilogue. Key tiles past vis(r) only write -inf.
//   top-k   grid [rows], 1024 threads, one block per row: scores map to order-preserving
//           uint32 keys (-0 as +0); a radix select (3 passes of 11, 11, 10 bits, shared-memory
//           histograms) finds the k-th largest key u* and how many of the ties at u* are
//           taken; an ordered gather (each warp an index range: ballot counts, the lower
//           warps' counts as offsets, then ranked writes in index order) puts the keys > u*
//           and the first ties (lowest j) into shared memory as 64-bit (u << 32 | ~j); a
//           bitonic sort in shared memory orders them descending, i.e. by descending score,
//           ties to the lower j.
//   cuBLAS SGEMM + a reduction kernel was not chosen: it would write and re-read a
//   [N, HI] intermediate per row (64 MiB at N = 2^18), twice the key traffic of the fused
//   kernel, for a scan that is FP32-FMA bound anyway.
//
// Errors: shapes and keys are checked on the host before any device work, with the
// reference's messages (dsv4::InputError), plus the GPU limit topk <= kIndexerMaxTopk; a failed
// launch or allocation throws dsv4::cuda::CudaError. Everything is asynchronous on `stream`.
//
// FP4 keys (indexer_fp4): the same op scoring the keys in the deployment cache layout
// (model/kv_cache.h, fp8; optimized/kv_pack.cuh), dI = kIndexerDim = 128 only, one
// kFp4KeyBytes = 68-byte row per key:
//   bytes [0, 64)   e2m1 codes, two per byte: dim 2k in the low nibble, 2k + 1 in the high
//   bytes [64, 68)  UE8M0 scales, one per 32-dim block: dim i = code * 2^(byte[64 + i/32] - 127)
// Each element is dequantised in the scores kernel's staging step (one 32-dim chunk is one
// scale block: 16 code bytes + its scale byte per key), exactly as unpack_fp4_keys decodes it,
// straight into the shared-memory key tile; the rest of the kernel (and the top-k) is the FP32
// one, so scores and indices have the bits of indexer() run on the dequantised keys. Key
// traffic per scored row is N x 68 B instead of N x 512 B (plus no [N, dI] float copy).
// Rows are byte-strided (keys.ld bytes, any alignment). Errors: the checks above with the
// prefix "indexer_fp4", plus head_dim != 128, keys.cols != 68, keys.ld < 68 (InputError).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/indexer.h"

namespace dsv4::cuda {

// Largest topk: the selected keys are sorted in shared memory (4096 x 8 bytes).
inline constexpr int64_t kIndexerMaxTopk = 4096;
// Largest scratch for the scores when the caller passes none (rows x N floats, 256 MiB).
inline constexpr int64_t kIndexerScratchFloats = int64_t(1) << 26;

void indexer(const IndexerParams<float>& p, cudaStream_t stream = 0);

// IndexerParams<float> with the keys as packed FP4 rows (see "FP4 keys" above).
struct IndexerFp4Params {
  View2<const float> q;        // [T, HI*dI] prepared queries
  View2<const uint8_t> keys;   // [N, kFp4KeyBytes] packed keys, row stride in bytes
  View2<const float> w;        // [T, HI] scaled head weights
  int64_t heads = kIndexerHeads;
  int64_t head_dim = kIndexerDim;  // dI: kIndexerDim only
  int64_t ratio = kCsaRatio;
  int64_t topk = 512;
  int64_t pos0 = 0;
  View2<float> scores;         // [T, N] out, optional (data == nullptr: not written)
  View2<int32_t> indices;      // [T, topk] out
};

void indexer_fp4(const IndexerFp4Params& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
