#include "optimized/indexer.cuh"

#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/kv_pack.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

// Number of keys row `row` sees: clamp((pos0 + row + 1) / m, 0, N) (§2.8), the reference's
// expression.
__device__ __forceinline__ int64_t visible_keys(int64_t pos0, int64_t row, int64_t ratio, int64_t n) {
  const int64_t v = (pos0 + row + 1) / ratio;
  return v < 0 ? 0 : (v > n ? n : v);
}

// ---------------------------------------------------------------------------------------
// Scores: a block = kTileKeys keys x one query row; per head tile of kTileHeads heads a
// register-tiled GEMM over dI in chunks of kChunkDims, the ReLU-weighted head sum fused in.

constexpr int kScoreThreads = 256;
constexpr int kTileKeys = 128;
constexpr int kTileHeads = 64;
constexpr int kChunkDims = 32;
constexpr int kThreadKeys = 8;                          // keys tx + kKeyLanes * i
constexpr int kThreadHeads = 4;                         // heads kThreadHeads * ty + c
constexpr int kKeyLanes = kTileKeys / kThreadKeys;      // tx = tid % kKeyLanes
constexpr int kHeadLanes = kTileHeads / kThreadHeads;   // ty = tid / kKeyLanes
// Row stride of the head partials: odd ty rows land 16 banks away from even ones, so the two
// half-warps (ty = 2w, 2w + 1) store without conflicts.
constexpr int kPartLd = kTileKeys + 16;
constexpr int kMaxGridY = 65535;
// At least 2 blocks (16 warps) per SM to hide the shared-memory and global latencies: caps the
// registers at 128 per thread (65536 / 512).
constexpr int kScoreMinBlocks = 2;
static_assert(kKeyLanes * kHeadLanes == kScoreThreads, "indexer: one thread per (key lane, head lane)");
static_assert(kThreadHeads == 4, "indexer: the query chunk is read as one float4 per thread");
static_assert(kTileKeys * kChunkDims % kScoreThreads == 0 && kTileHeads * kChunkDims % kScoreThreads == 0,
              "indexer: tiles are loaded in whole block strides");
static_assert(kTileKeys <= kScoreThreads, "indexer: one thread per key writes the scores");

// Key sources of the scores kernel. stage() writes dims [d0, d0 + kChunkDims) of the keys
// [j0, j0 + kTileKeys) into ks[key - j0][dim - d0] as FP32, 0 for keys past keys_left (the
// visible ones from j0 on) and dims past dims_left (dI - d0); rows() is N.
using KeyChunk = float[kChunkDims + 1];  // a row of the shared key tile (+1: see index_scores)

// FP32 keys k [N, dI] (row stride k.ld floats).
struct F32Keys {
  View2<const float> k;
  __device__ __forceinline__ int64_t rows() const { return k.rows; }
  // Thread tid loads dim d0 + tid % 32 of keys j0 + tid / 32 + 8 i, so a warp reads 32
  // consecutive dims of one key (coalesced).
  __device__ __forceinline__ void stage(KeyChunk* ks, int64_t j0, int64_t d0, int64_t keys_left,
                                        int64_t dims_left, int tid) const {
    constexpr int kRowsPerStride = kScoreThreads / kChunkDims;
    const int lane = tid % kChunkDims, kk0 = tid / kChunkDims;
    const bool dim_ok = lane < dims_left;
    const float* kp = k.row(j0 + kk0) + d0 + lane;
    const int64_t kstep = kRowsPerStride * k.ld;
#pragma unroll
    for (int i = 0; i < kTileKeys / kRowsPerStride; ++i) {
      const int kk = kk0 + kRowsPerStride * i;
      ks[kk][lane] = (dim_ok && kk < keys_left) ? kp[i * kstep] : 0.f;
    }
  }
};

// Packed FP4 keys [N, kFp4KeyBytes] bytes (optimized/kv_pack.cuh; row stride k.ld bytes),
// dI = kIndexerDim: a chunk of kChunkDims = kFp4Block dims is the code bytes
// [d0 / 2, d0 / 2 + 16) of a key (dim 2b low nibble, 2b + 1 high) and its scale byte
// 64 + d0 / 32. Each element decodes as kv_pack.cuh's unpack_fp4_keys decodes it,
// float(e2m1_value(code) * scale_value(scale)) (exact), so the tile holds the bits that
// F32Keys would stage from the dequantised keys.
struct Fp4Keys {
  View2<const uint8_t> k;
  static constexpr int kChunkBytes = kChunkDims / 2;               // 16 code bytes
  static constexpr int kRowsPerStride = kScoreThreads / kChunkBytes;  // 16 keys
  __device__ __forceinline__ int64_t rows() const { return k.rows; }
  // Thread tid decodes code byte b = tid % 16 (dims 2b, 2b + 1) of keys j0 + tid / 16 + 16 i:
  // a warp covers the 16 chunk bytes of two keys kk, kk + 1, and each of its two stores (the
  // low dims, then the high ones) hits banks (kk + 2b) mod 32 and (kk + 1 + 2b) mod 32, all 32
  // distinct (row stride 33 floats).
  __device__ __forceinline__ void stage(KeyChunk* ks, int64_t j0, int64_t d0, int64_t keys_left,
                                        int64_t /*dims_left: kChunkDims, dI = 128 only*/, int tid) const {
    const int b = tid % kChunkBytes, kk0 = tid / kChunkBytes;
    const int64_t code_byte = d0 / 2 + b, scale_byte = kFp4KeyCodeBytes + d0 / kFp4Block;
#pragma unroll
    for (int i = 0; i < kTileKeys / kRowsPerStride; ++i) {
      const int kk = kk0 + kRowsPerStride * i;
      float lo = 0.f, hi = 0.f;
      if (kk < keys_left) {
        const uint8_t* row = k.row(j0 + kk);
        const uint8_t c = row[code_byte];
        const double s = kv_codec::scale_value(row[scale_byte]);
        lo = float(kv_codec::e2m1_value(uint8_t(c & 0xF)) * s);
        hi = float(kv_codec::e2m1_value(uint8_t(c >> 4)) * s);
      }
      ks[kk][2 * b] = lo;
      ks[kk][2 * b + 1] = hi;
    }
  }
};
static_assert(kChunkDims == kFp4Block && kIndexerDim % kChunkDims == 0,
              "indexer: an FP4 key chunk is one scale block");
static_assert(kTileKeys % Fp4Keys::kRowsPerStride == 0, "indexer: FP4 keys are staged in whole strides");

// scores row (rows are blockIdx.y, query row = row0 + blockIdx.y): the keys
// [blockIdx.x * kTileKeys, +kTileKeys) of that row, -inf past the visible ones. Keys: F32Keys
// or Fp4Keys (only the staging differs; the arithmetic is one code path), dI = key width.
template <class Keys>
__global__ void __launch_bounds__(kScoreThreads, kScoreMinBlocks)
    index_scores(View2<const float> q, Keys keys, int64_t dI, View2<const float> w, int64_t heads,
                 int64_t ratio, int64_t pos0, int64_t row0, View2<float> scores) {
  __shared__ float ks[kTileKeys][kChunkDims + 1];  // +1: the column reads ks[key][d] hit 16 banks
  __shared__ __align__(16) float qs[kChunkDims][kTileHeads];
  __shared__ float part[kHeadLanes][kPartLd];

  const int64_t row = row0 + blockIdx.y;
  const int64_t n = keys.rows();
  const int64_t vis = visible_keys(pos0, row, ratio, n);
  const int64_t j0 = int64_t(blockIdx.x) * kTileKeys;
  const int tid = threadIdx.x;
  float* out = scores.row(blockIdx.y);
  const float ninf = -INFINITY;

  if (j0 >= vis) {  // the whole tile is invisible (uniform across the block)
    for (int t = tid; t < kTileKeys; t += kScoreThreads)
      if (j0 + t < n) out[j0 + t] = ninf;
    return;
  }

  const int tx = tid % kKeyLanes, ty = tid / kKeyLanes;
  const int64_t keys_left = vis - j0;  // > 0: visible keys from j0 on
  const float* qr = q.row(row);
  const float* wr = w.row(row);
  float total = 0.f;  // score of key j0 + tid (tid < kTileKeys)

  for (int64_t h0 = 0; h0 < heads; h0 += kTileHeads) {
    float acc[kThreadKeys][kThreadHeads];
#pragma unroll
    for (int i = 0; i < kThreadKeys; ++i)
#pragma unroll
      for (int c = 0; c < kThreadHeads; ++c) acc[i][c] = 0.f;

    for (int64_t d0 = 0; d0 < dI; d0 += kChunkDims) {
      // Keys as FP32 into ks; zero past vis / dI.
      const int64_t dims_left = dI - d0;
      keys.stage(ks, j0, d0, keys_left, dims_left, tid);
      // Queries: thread tid loads head h0 + tid % 64 at dims d0 + tid / 64 + 4 i; consecutive
      // threads store consecutive heads of one dim (conflict-free).
      {
        constexpr int kDimsPerStride = kScoreThreads / kTileHeads;
        const int hh = tid % kTileHeads, dd0 = tid / kTileHeads;
        const bool head_ok = h0 + hh < heads;
        const float* qp = qr + (h0 + hh) * dI + d0 + dd0;
#pragma unroll
        for (int i = 0; i < kChunkDims / kDimsPerStride; ++i) {
          const int dd = dd0 + kDimsPerStride * i;
          qs[dd][hh] = (head_ok && dd < dims_left) ? qp[kDimsPerStride * i] : 0.f;
        }
      }
      __syncthreads();

      // One FMA step per dim, in dim order: acc[i][c] += k[key_i, d] * q[head_c, d]. The
      // bound is uniform; only a last partial chunk of dI stops early.
#pragma unroll 8
      for (int dd = 0; dd < kChunkDims; ++dd) {
        if (dd >= dims_left) break;
        float a[kThreadKeys];
#pragma unroll
        for (int i = 0; i < kThreadKeys; ++i) a[i] = ks[tx + kKeyLanes * i][dd];
        const float4 b = *reinterpret_cast<const float4*>(&qs[dd][kThreadHeads * ty]);
#pragma unroll
        for (int i = 0; i < kThreadKeys; ++i) {
          acc[i][0] = fmaf(a[i], b.x, acc[i][0]);
          acc[i][1] = fmaf(a[i], b.y, acc[i][1]);
          acc[i][2] = fmaf(a[i], b.z, acc[i][2]);
          acc[i][3] = fmaf(a[i], b.w, acc[i][3]);
        }
      }
      __syncthreads();  // ks / qs are overwritten by the next chunk
    }

    // Epilogue: this thread's heads, w_h ReLU(dot) summed by FMA in head order.
    float wv[kThreadHeads];
    bool real[kThreadHeads];
#pragma unroll
    for (int c = 0; c < kThreadHeads; ++c) {
      const int64_t h = h0 + kThreadHeads * ty + c;
      real[c] = h < heads;
      wv[c] = real[c] ? wr[h] : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kThreadKeys; ++i) {
      float s = 0.f;
#pragma unroll
      for (int c = 0; c < kThreadHeads; ++c)
        if (real[c]) s = fmaf(wv[c], fmaxf(acc[i][c], 0.f), s);
      part[ty][tx + kKeyLanes * i] = s;
    }
    __syncthreads();
    if (tid < kTileKeys) {  // the head lanes' partials, in lane order
      float t = 0.f;
#pragma unroll
      for (int g = 0; g < kHeadLanes; ++g) t += part[g][tid];
      total += t;
    }
    __syncthreads();  // part is overwritten by the next head tile
  }

  if (tid < kTileKeys) {
    const int64_t j = j0 + tid;
    if (j < n) out[j] = j < vis ? total : ninf;
  }
}

// ---------------------------------------------------------------------------------------
// Top-k: one block per row. Radix select of the k-th largest order key, an ordered gather of
// the selected keys, a bitonic sort in shared memory.

constexpr int kSelectThreads = 1024;
constexpr int kRadixBits = 11;
constexpr int kBins = 1 << kRadixBits;
// Digits of the 32-bit order key, most significant first: bits [21, 32), [10, 21), [0, 10).
constexpr int kPasses = 3;
__device__ __forceinline__ int pass_shift(int pass) { return pass == 0 ? 21 : (pass == 1 ? 10 : 0); }
__device__ __forceinline__ int pass_bits(int pass) { return pass < 2 ? kRadixBits : 10; }
static_assert(kBins == 2 * kSelectThreads, "indexer: each thread scans two histogram bins");
constexpr int kWarpSize = 32;
constexpr int kSelectWarps = kSelectThreads / kWarpSize;
constexpr unsigned kFullMask = 0xffffffffu;

// Order-preserving map float -> uint32 (a > b as floats iff key(a) > key(b), for non-NaN);
// -0 maps to +0's key, as -0 == +0 in the reference's comparisons.
__device__ __forceinline__ uint32_t order_key(float f) {
  uint32_t b = __float_as_uint(f);
  if (b == 0x80000000u) b = 0u;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// 64-bit sort key: larger = earlier in the output (higher score, then lower index).
__device__ __forceinline__ uint64_t rank_key(uint32_t u, int64_t j) {
  return (uint64_t(u) << 32) | uint64_t(~uint32_t(j));
}

using BlockScan = cub::BlockScan<int, kSelectThreads>;

__global__ void __launch_bounds__(kSelectThreads)
    index_topk(View2<const float> scores, int64_t ratio, int64_t pos0, int64_t row0, int64_t n,
               int64_t topk, View2<int32_t> indices) {
  __shared__ int hist[kBins];
  __shared__ uint64_t cand[kIndexerMaxTopk];
  __shared__ BlockScan::TempStorage scan;
  __shared__ int s_digit, s_krem;
  __shared__ int warp_gt[kSelectWarps], warp_eq[kSelectWarps];

  const int tid = threadIdx.x;
  const int64_t row = row0 + blockIdx.x;
  const float* s = scores.row(blockIdx.x);
  int32_t* out = indices.row(blockIdx.x);
  const int64_t vis = visible_keys(pos0, row, ratio, n);
  const int k = int(topk < vis ? topk : vis);  // <= kIndexerMaxTopk

  if (k == vis) {  // every visible key is selected
    for (int j = tid; j < k; j += kSelectThreads) cand[j] = rank_key(order_key(s[j]), j);
  } else {
    // Radix select: after the passes, u* = prefix and krem = how many keys equal to u* are
    // taken (>= 1); the keys above u* number k - krem.
    uint32_t prefix = 0, mask = 0;
    int krem = k;
    for (int pass = 0; pass < kPasses; ++pass) {
      const int shift = pass_shift(pass);
      const uint32_t digit_mask = (1u << pass_bits(pass)) - 1u;
      for (int b = tid; b < kBins; b += kSelectThreads) hist[b] = 0;
      __syncthreads();
      for (int64_t j = tid; j < vis; j += kSelectThreads) {
        const uint32_t u = order_key(s[j]);
        if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & digit_mask], 1);
      }
      __syncthreads();
      // Thread t owns bins hi = kBins-1-2t and lo = hi-1; `above` counts the keys in higher bins.
      const int hi = kBins - 1 - 2 * tid, lo = hi - 1;
      const int c_hi = hist[hi], c_lo = hist[lo];
      int above = 0;
      BlockScan(scan).ExclusiveSum(c_hi + c_lo, above);
      if (above < krem && above + c_hi >= krem) {
        s_digit = hi;
        s_krem = krem - above;
      } else if (above + c_hi < krem && above + c_hi + c_lo >= krem) {
        s_digit = lo;
        s_krem = krem - above - c_hi;
      }
      __syncthreads();  // exactly one thread wrote s_digit / s_krem
      prefix |= uint32_t(s_digit) << shift;
      mask |= digit_mask << shift;
      krem = s_krem;
      __syncthreads();  // s_digit / s_krem / scan reused by the next pass
    }

    // Ordered gather: keys above u* at [0, k - krem), then the first krem keys equal to u*
    // (lowest indices, the reference's tie rule) at [k - krem, k). Warp w owns the index range
    // [w * span, (w + 1) * span), read 32 consecutive keys at a time: pass A counts its keys
    // above / equal to u* (ballots), the counts of the lower warps give its first ranks, pass B
    // writes them in index order (rank = offset + the lanes below in the ballot).
    const uint32_t ustar = prefix;
    const int n_gt = k - krem;
    const int lane = tid % kWarpSize, warp = tid / kWarpSize;
    const int64_t span = (vis + kSelectWarps - 1) / kSelectWarps;
    const int64_t w0 = warp * span, w1 = w0 + span < vis ? w0 + span : vis;
    int cnt_gt = 0, cnt_eq = 0;
    for (int64_t base = w0; base < w1; base += kWarpSize) {  // warp-uniform bounds
      const int64_t j = base + lane;
      const uint32_t u = j < w1 ? order_key(s[j]) : 0u;
      cnt_gt += __popc(__ballot_sync(kFullMask, j < w1 && u > ustar));
      cnt_eq += __popc(__ballot_sync(kFullMask, j < w1 && u == ustar));
    }
    if (lane == 0) {
      warp_gt[warp] = cnt_gt;
      warp_eq[warp] = cnt_eq;
    }
    __syncthreads();
    int gt_rank = 0, eq_rank = 0;  // ranks of this warp's first keys above / equal to u*
    for (int v = 0; v < warp; ++v) {
      gt_rank += warp_gt[v];
      eq_rank += warp_eq[v];
    }
    const int gt_end = gt_rank + cnt_gt;
    const unsigned below = (1u << lane) - 1u;  // the lanes before this one
    for (int64_t base = w0; base < w1; base += kWarpSize) {
      if (gt_rank == gt_end && eq_rank >= krem) break;  // warp-uniform: nothing left to write
      const int64_t j = base + lane;
      const uint32_t u = j < w1 ? order_key(s[j]) : 0u;
      const bool gt = j < w1 && u > ustar, eq = j < w1 && u == ustar;
      const unsigned b_gt = __ballot_sync(kFullMask, gt), b_eq = __ballot_sync(kFullMask, eq);
      if (gt) cand[gt_rank + __popc(b_gt & below)] = rank_key(u, j);
      if (eq) {
        const int r = eq_rank + __popc(b_eq & below);
        if (r < krem) cand[n_gt + r] = rank_key(u, j);
      }
      gt_rank += __popc(b_gt);
      eq_rank += __popc(b_eq);
    }
  }

  // Bitonic sort of cand[0, p) descending, p = the power of two >= k, padded with 0 (below
  // every real key: ~j >= 2^31).
  int p = 1;
  while (p < k) p *= 2;
  for (int i = k + tid; i < p; i += kSelectThreads) cand[i] = 0;
  __syncthreads();
  for (int size = 2; size <= p; size *= 2) {
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = tid; i < p / 2; i += kSelectThreads) {
        const int a = ((i & ~(stride - 1)) << 1) | (i & (stride - 1)), b = a + stride;
        const bool descending = (a & size) == 0;  // the last merge (size == p) is all descending
        const uint64_t x = cand[a], y = cand[b];
        if (descending ? x < y : x > y) {
          cand[a] = y;
          cand[b] = x;
        }
      }
      __syncthreads();
    }
  }

  for (int64_t i = tid; i < topk; i += kSelectThreads)
    out[i] = i < k ? int32_t(~uint32_t(cand[i] & 0xffffffffu)) : -1;
}

// Frees a stream-ordered allocation on scope exit (also when a launch check throws).
struct AsyncScratch {
  float* ptr = nullptr;
  cudaStream_t stream = nullptr;
  AsyncScratch(size_t n, cudaStream_t s) : stream(s) {
    if (n) DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr), n * sizeof(float), s));
  }
  ~AsyncScratch() {
    if (ptr) (void)cudaFreeAsync(ptr, stream);  // a destructor must not throw
  }
  AsyncScratch(const AsyncScratch&) = delete;
  AsyncScratch& operator=(const AsyncScratch&) = delete;
};

// The shapes both entry points share, as IndexerParams has them; keys [N, dI] (FP4: N packed
// rows of dI = 128).
struct Shapes {
  View2<const float> q, w;
  int64_t n, dI, heads, ratio, topk;
  View2<float> scores;
  View2<int32_t> indices;
};

// The reference's checks, in its order and with its messages, then the GPU's own limits.
// `who` prefixes the messages ("indexer" for the FP32 op: the reference's own text).
// `key_check` runs after the q check (the FP4 op's key-row checks; none for FP32 keys).
template <class KeyCheck>
void validate(const Shapes& p, const std::string& who, KeyCheck key_check) {
  require(p.ratio > 0, who + ": key 'ratio' must be positive");
  const int64_t T_ = p.q.rows, N = p.n, dI = p.dI, HI = p.heads;
  require(HI > 0 && p.q.cols == HI * dI,
          who + ": tensor 'q': expected " + std::to_string(HI) + " heads of dI = " + std::to_string(dI) + " (" +
              std::to_string(HI * dI) + " columns), found " + std::to_string(p.q.cols) + " columns");
  key_check();
  require(p.w.rows == T_ && p.w.cols == HI, who + ": tensor 'w': expected shape " + shape_string({T_, HI}) +
                                                ", found " + shape_string({p.w.rows, p.w.cols}));
  require(p.topk > 0, who + ": key 'topk' must be positive");
  require(p.indices.rows == T_ && p.indices.cols == p.topk,
          who + ": output 'indices': expected shape " + shape_string({T_, p.topk}));
  if (p.scores.data)
    require(p.scores.rows == T_ && p.scores.cols == N,
            who + ": output 'scores': expected shape " + shape_string({T_, N}));
  require(p.topk <= kIndexerMaxTopk, who + ": key 'topk': at most " + std::to_string(kIndexerMaxTopk) +
                                         " on the GPU (the selection is sorted in shared memory), found " +
                                         std::to_string(p.topk));
  require(N <= INT_MAX, who + ": tensor 'k': at most " + std::to_string(INT_MAX) + " keys (int32 indices), found " +
                            std::to_string(N));
  require(T_ <= INT_MAX, who + ": tensor 'q': at most " + std::to_string(INT_MAX) +
                             " rows per launch (one block per row), found " + std::to_string(T_));
}

// Scores (a block of rows at a time into the scratch when p.scores has no data) and top-k.
template <class Keys>
void run(const Shapes& p, Keys keys, int64_t pos0, cudaStream_t stream) {
  const int64_t T_ = p.q.rows, N = p.n;
  if (T_ == 0) return;

  // Without a scores output, score a block of rows at a time into the scratch.
  const int64_t rows_per_pass =
      p.scores.data ? T_ : std::clamp<int64_t>(kIndexerScratchFloats / std::max<int64_t>(N, 1), 1, T_);
  AsyncScratch scratch(p.scores.data ? 0 : size_t(rows_per_pass * N), stream);
  const unsigned key_tiles = static_cast<unsigned>((N + kTileKeys - 1) / kTileKeys);

  for (int64_t r0 = 0; r0 < T_; r0 += rows_per_pass) {
    const int64_t nr = std::min(rows_per_pass, T_ - r0);
    const View2<float> s = p.scores.data ? p.scores.slice_rows(r0, nr) : View2<float>{scratch.ptr, nr, N, N};
    if (key_tiles > 0)
      for (int64_t y0 = 0; y0 < nr; y0 += kMaxGridY) {
        const int64_t ny = std::min<int64_t>(kMaxGridY, nr - y0);
        index_scores<Keys><<<dim3(key_tiles, static_cast<unsigned>(ny)), kScoreThreads, 0, stream>>>(
            p.q, keys, p.dI, p.w, p.heads, p.ratio, pos0, r0 + y0, s.slice_rows(y0, ny));
        DSV4_CUDA_CHECK(cudaGetLastError());
      }
    index_topk<<<static_cast<unsigned>(nr), kSelectThreads, 0, stream>>>(
        s, p.ratio, pos0, r0, N, p.topk, p.indices.slice_rows(r0, nr));
    DSV4_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void indexer(const IndexerParams<float>& p, cudaStream_t stream) {
  const Shapes sh{p.q, p.w, p.k.rows, p.k.cols, p.heads, p.ratio, p.topk, p.scores, p.indices};
  validate(sh, "indexer", [] {});
  const NvtxRange range("indexer");
  run(sh, F32Keys{p.k}, p.pos0, stream);
}

void indexer_fp4(const IndexerFp4Params& p, cudaStream_t stream) {
  const Shapes sh{p.q, p.w, p.keys.rows, p.head_dim, p.heads, p.ratio, p.topk, p.scores, p.indices};
  const std::string who = "indexer_fp4";
  require(p.head_dim == kIndexerDim, who + ": key 'head_dim': FP4 keys (" + std::to_string(kFp4KeyBytes) +
                                         "-byte rows) hold dI = " + std::to_string(kIndexerDim) +
                                         " only, found " + std::to_string(p.head_dim));
  validate(sh, who, [&] {
    require(p.keys.cols == kFp4KeyBytes, who + ": tensor 'keys': expected " + std::to_string(kFp4KeyBytes) +
                                             " bytes a row (64 code bytes + 4 scales), found " +
                                             std::to_string(p.keys.cols));
    require(p.keys.rows == 0 || p.keys.ld >= kFp4KeyBytes,
            who + ": tensor 'keys': row stride " + std::to_string(p.keys.ld) + " bytes below the row's " +
                std::to_string(kFp4KeyBytes));
  });
  const NvtxRange range("indexer_fp4");
  run(sh, Fp4Keys{p.keys}, p.pos0, stream);
}

}  // namespace dsv4::cuda
