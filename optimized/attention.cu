#include "optimized/attention.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kColsPerStep = 4 * kWarpSize;  // one float4 per lane: 128 dims per step
constexpr int kMaxSteps = int(kAttentionMaxDim / kColsPerStep);
constexpr int kMaxGridY = 65535;
static_assert(kAttentionChunk == kWarpSize,
              "attention: lane e owns the score of entry e of a chunk");
static_assert(kAttentionMaxDim % kColsPerStep == 0,
              "attention: the dim limit must be whole float4-per-lane steps");
static_assert(kAttentionChunk % kAttentionDecodeHeads == 0 &&
                  kAttentionChunk % kAttentionPrefillHeads == 0,
              "attention: the warps of a block stage a chunk's rows evenly");

// Everything the kernel needs, resolved on the host (device pointers inside the views).
// Entries: where the window and compressed rows come from (F32Entries or Fp8Entries below).
template <class Entries>
struct Args {
  Entries ent;
  View2<const float> q;
  const float* sink;
  View2<const int32_t> indices;  // data == nullptr: dense
  View2<float> o, lse;           // lse.data == nullptr: not written
  int heads, d, steps;           // steps = ceil(d / 128) float4 per lane
  int64_t ratio, window, pos0, base, n_comp;
  float scale;
  bool q_vec4;  // d % 4 == 0 and q rows 16-byte aligned: float4 loads of q
  // Split-K only (attention.cuh, "Split-K"): split z of a row covers its slots
  // [z * split_len, (z + 1) * split_len), split_len a multiple of kAttentionChunk; the block
  // writes its partial (m, l) to part_ml[z, r, h] and its unnormalised accumulator to
  // part_o[z, r, h, 0 .. steps * 128) (a row stride of whole 128-float steps: float4 stores).
  int64_t split_len;
  float* part_o;    // [S, T, H, steps * 128]
  float2* part_ml;  // [S, T, H]
};

// Columns [c, c + 4) of a row of d floats, zero past d.
__device__ __forceinline__ float4 load_cols(const float* row, int c, int d, bool vec4) {
  if (c >= d) return make_float4(0.f, 0.f, 0.f, 0.f);
  if (vec4) return *reinterpret_cast<const float4*>(row + c);  // d % 4 == 0: c + 3 < d
  return make_float4(row[c], c + 1 < d ? row[c + 1] : 0.f, c + 2 < d ? row[c + 2] : 0.f,
                     c + 3 < d ? row[c + 3] : 0.f);
}

// ---- Entry sources: Row is a row handle, load4(row, c) its dims [c, c + 4) as floats
// (c a multiple of 4, zero past d). The staged floats are all the rest of the kernel sees.

// FP32 rows [Tk, d] and [N, d].
struct F32Entries {
  using Row = const float*;
  View2<const float> kv, comp;
  int d;
  bool vec4;  // d % 4 == 0 and both row sets 16-byte aligned
  __device__ __forceinline__ Row kv_row(int64_t i) const { return kv.row(i); }
  __device__ __forceinline__ Row comp_row(int64_t j) const { return comp.row(j); }
  __device__ __forceinline__ float4 load4(Row row, int c) const { return load_cols(row, c, d, vec4); }
};

// e4m3fn code -> float (formats.h): 1-4-3, bias 7, subnormal step 2^-9, 0x7F / 0xFF NaN.
__device__ __forceinline__ float e4m3_to_float(unsigned c) {
  const unsigned ex = (c >> 3) & 0xFu, mant = c & 0x7u;
  float v;
  if (ex == 0xFu && mant == 0x7u)
    v = __uint_as_float(0x7fc00000u);
  else if (ex == 0)
    v = float(mant) * 0.001953125f;  // mant * 2^-9, exact
  else
    v = __uint_as_float(((ex + 120u) << 23) | (mant << 20));  // (1 + mant/8) 2^(ex - 7)
  return (c & 0x80u) ? -v : v;
}
// UE8M0 byte b -> 2^(b - 127) as a float (b = 0: the subnormal 2^-127); 0xFF -> NaN.
__device__ __forceinline__ float ue8m0_to_float(unsigned b) {
  return b == 0xFFu ? __uint_as_float(0x7fc00000u)
                    : (b == 0 ? __uint_as_float(0x00400000u) : __uint_as_float(b << 23));
}
__device__ __forceinline__ float bf16_to_float(unsigned h) { return __uint_as_float(h << 16); }

// The 584-byte FP8 cache entry (attention.cuh): dims [0, 448) e4m3 codes scaled by the UE8M0
// byte of their 64-block, dims [448, 512) BF16. Rows 8-byte aligned (checked on the host):
// 4 codes are one aligned 32-bit load, 4 BF16 values one aligned 64-bit load. A float4 never
// straddles the two parts (448 % 4 == 0) nor two scale blocks (64 % 4 == 0). The products
// code * 2^k round once, as the reference's double product cast to float does.
struct Fp8Entries {
  using Row = const uint8_t*;
  View2<const uint8_t> kv, comp;
  __device__ __forceinline__ Row kv_row(int64_t i) const { return kv.row(i); }
  __device__ __forceinline__ Row comp_row(int64_t j) const { return comp.row(j); }
  __device__ __forceinline__ float4 load4(Row row, int c) const {
    if (c < kNopeDim) {
      const unsigned codes = *reinterpret_cast<const uint32_t*>(row + c);
      const float s = ue8m0_to_float(row[kNopeDim + c / kFp8KvBlock]);
      return make_float4(e4m3_to_float(codes & 0xFFu) * s, e4m3_to_float((codes >> 8) & 0xFFu) * s,
                         e4m3_to_float((codes >> 16) & 0xFFu) * s, e4m3_to_float(codes >> 24) * s);
    }
    const uint2 h = *reinterpret_cast<const uint2*>(row + kFp8EntryRopeOffset + 2 * (c - kNopeDim));
    return make_float4(bf16_to_float(h.x & 0xFFFFu), bf16_to_float(h.x >> 16),
                       bf16_to_float(h.y & 0xFFFFu), bf16_to_float(h.y >> 16));
  }
};

// Butterfly reductions over a warp: every lane ends with the same bits (a + b == b + a).
__device__ __forceinline__ float warp_max(float v) {
  for (int off = kWarpSize / 2; off > 0; off /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarpSize / 2; off > 0; off /= 2) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}

// One halving step of transpose_sum: slots [0, 2 kOff) -> [0, kOff). A lane whose bit kOff
// is set keeps the upper half: it gives its partner (lane ^ kOff) slots [0, kOff) and adds
// the partner's copy of slots [kOff, 2 kOff). Bits are selected with masks (not `upper ?
// v[i] : v[i + kOff]`, which nvcc turns into an address select and v into local memory).
template <int kOff>
__device__ __forceinline__ void transpose_step(float (&v)[kAttentionChunk], int lane) {
  const unsigned upper = (lane & kOff) ? ~0u : 0u;
#pragma unroll
  for (int i = 0; i < kOff; ++i) {
    const unsigned lo = __float_as_uint(v[i]), hi = __float_as_uint(v[i + kOff]);
    const float give = __uint_as_float((lo & upper) | (hi & ~upper));
    const float keep = __uint_as_float((hi & upper) | (lo & ~upper));
    v[i] = keep + __shfl_xor_sync(kFullMask, give, kOff);
  }
}

// v[e] per lane -> returns, on lane e, the sum over the 32 lanes of v[e]: five halving steps,
// 16 + 8 + 4 + 2 + 1 = 31 shuffles instead of 32 x 5. After the step of kOff, a lane's slot i
// holds entry i + (the lane's bits >= kOff), so slot 0 ends with entry `lane`. Fixed order;
// v is clobbered.
__device__ __forceinline__ float transpose_sum(float (&v)[kAttentionChunk]) {
  static_assert(kAttentionChunk == 32, "transpose_sum: five steps for 32 lanes");
  const int lane = threadIdx.x % kWarpSize;
  transpose_step<16>(v, lane);
  transpose_step<8>(v, lane);
  transpose_step<4>(v, lane);
  transpose_step<2>(v, lane);
  transpose_step<1>(v, lane);
  return v[0];
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float t) {
  t = fmaf(a.x, b.x, t);
  t = fmaf(a.y, b.y, t);
  t = fmaf(a.z, b.z, t);
  return fmaf(a.w, b.w, t);
}
__device__ __forceinline__ void axpy4(float a, float4 x, float4& y) {
  y.x = fmaf(a, x.x, y.x);
  y.y = fmaf(a, x.y, y.y);
  y.z = fmaf(a, x.z, y.z);
  y.w = fmaf(a, x.w, y.w);
}

// The epilogue of a (row r, head h) given the final running max m, sum l and accumulator acc
// (lane l holding dims 128 i + 4 l .. + 3): the sink joins the denominator once, with a zero
// value, den = l + exp(sink - m); o[r, h, :] = acc / den, lse[r, h] = m + ln den (when asked).
// m is finite: the window is never empty. Shared by attention_rows and attention_combine, so
// both write their results the same way.
__device__ __forceinline__ void write_output(View2<float> o, View2<float> lse, int64_t r, int h,
                                             int d, int steps, const float4 (&acc)[kMaxSteps],
                                             float m, float l, float sink) {
  const int lane = threadIdx.x % kWarpSize;
  const float den = l + expf(sink - m);
  float* out = o.row(r) + int64_t(h) * d;
#pragma unroll
  for (int st = 0; st < kMaxSteps; ++st) {
    if (st >= steps) continue;
    const int c = st * kColsPerStep + 4 * lane;
    if (c < d) out[c] = acc[st].x / den;
    if (c + 1 < d) out[c + 1] = acc[st].y / den;
    if (c + 2 < d) out[c + 2] = acc[st].z / den;
    if (c + 3 < d) out[c + 3] = acc[st].w / den;
  }
  if (lse.data && lane == 0) lse(r, h) = m + logf(den);
}

// One block per (query row blockIdx.x, head tile blockIdx.y), one warp per head; see the
// header for the geometry. Dynamic shared memory: kAttentionChunk rows of steps * 32 float4.
// kSplit: the block covers split blockIdx.z of the row's slots and writes the partial
// (m, l, acc) to the workspace instead of o and lse (attention_combine finishes the row).
template <int kHeads, bool kSplit, class Entries>
__global__ void __launch_bounds__(kHeads * kWarpSize) attention_rows(const Args<Entries> a) {
  extern __shared__ float4 s_rows[];
  __shared__ int s_valid[kAttentionChunk];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int row4 = a.steps * kWarpSize;  // float4 per staged row
  const int64_t r = blockIdx.x;
  const int h = int(blockIdx.y) * kHeads + warp;
  const bool active = h < a.heads;  // the last tile may be partial; its idle warps still stage

  // The row's entry list (see the header): nw window slots, then the compressed slots.
  const int64_t pos = a.pos0 + r;
  const int64_t w1 = pos - a.base;
  const int64_t w_first = pos - a.window + 1 - a.base;
  const int64_t w0 = w_first > 0 ? w_first : 0;
  const int64_t nw = w1 - w0 + 1;
  const int64_t completed = (pos + 1) / a.ratio;  // pos >= 0, so completed >= 0
  const int64_t nvis = completed < a.n_comp ? completed : a.n_comp;
  const bool sparse = a.indices.data != nullptr;
  const int64_t n_slots = nw + (sparse ? a.indices.cols : nvis);
  // This block's slots [s_begin, s_end): the whole list, or split blockIdx.z of it (empty when
  // the split starts past the row's last slot). s_begin is a multiple of kAttentionChunk, so
  // the chunks are those of the single-pass kernel.
  const int64_t s_begin = kSplit ? int64_t(blockIdx.z) * a.split_len : 0;
  const int64_t s_end = kSplit ? (s_begin + a.split_len < n_slots ? s_begin + a.split_len : n_slots)
                               : n_slots;

  float4 q[kMaxSteps], acc[kMaxSteps];
#pragma unroll
  for (int st = 0; st < kMaxSteps; ++st) {
    q[st] = acc[st] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (active && st < a.steps)
      q[st] = load_cols(a.q.row(r) + int64_t(h) * a.d, st * kColsPerStep + 4 * lane, a.d, a.q_vec4);
  }
  float m = -INFINITY, l = 0.f;

  for (int64_t c0 = s_begin; c0 < s_end; c0 += kAttentionChunk) {
    // 1. Stage slots c0 .. c0 + 31: warp w gathers rows w, w + kHeads, ...
    for (int e = warp; e < kAttentionChunk; e += kHeads) {
      const int64_t slot = c0 + e;
      typename Entries::Row src = nullptr;
      if (slot < nw) {  // s_end >= nw or s_end is a multiple of the chunk: slot < s_end
        src = a.ent.kv_row(w0 + slot);
      } else if (slot < s_end) {  // past s_end: masked (only a row's last chunk is partial)
        const int64_t j = sparse ? int64_t(a.indices(r, slot - nw)) : slot - nw;
        if (j >= 0 && j < nvis) src = a.ent.comp_row(j);
      }
      for (int s = lane; s < row4; s += kWarpSize)
        s_rows[e * row4 + s] = src ? a.ent.load4(src, 4 * s) : make_float4(0.f, 0.f, 0.f, 0.f);
      if (lane == 0) s_valid[e] = src != nullptr;
    }
    __syncthreads();

    // 2. Scores, online-softmax update and P.V of this warp's head over the 32 rows.
    if (active) {
      float v[kAttentionChunk];
#pragma unroll
      for (int e = 0; e < kAttentionChunk; ++e) {
        float t = 0.f;
#pragma unroll
        for (int st = 0; st < kMaxSteps; ++st)
          if (st < a.steps) t = dot4(q[st], s_rows[e * row4 + st * kWarpSize + lane], t);
        v[e] = t;
      }
      const float dot = transpose_sum(v);
      const float s = s_valid[lane] ? __fmul_rn(dot, a.scale) : -INFINITY;  // never fused
      const float m_new = fmaxf(m, warp_max(s));
      if (m_new != -INFINITY) {  // warp-uniform: some entry so far was attended
        const float alpha = expf(m - m_new);  // 0 while m is still -inf
        const float pr = expf(s - m_new);     // 0 for a masked slot
        l = fmaf(l, alpha, warp_sum(pr));  // explicit: no contraction choice left to nvcc
        const int64_t left = s_end - c0;
        const int n_here = left < kAttentionChunk ? int(left) : kAttentionChunk;
#pragma unroll
        for (int st = 0; st < kMaxSteps; ++st) {
          acc[st].x *= alpha;
          acc[st].y *= alpha;
          acc[st].z *= alpha;
          acc[st].w *= alpha;
        }
        for (int e = 0; e < n_here; ++e) {
          const float pe = __shfl_sync(kFullMask, pr, e);
#pragma unroll
          for (int st = 0; st < kMaxSteps; ++st)
            if (st < a.steps) axpy4(pe, s_rows[e * row4 + st * kWarpSize + lane], acc[st]);
        }
        m = m_new;
      }
    }
    __syncthreads();  // every warp is done with the rows before the next chunk replaces them
  }
  if (!active) return;

  if constexpr (kSplit) {
    // The partial of this split: m (-inf when nothing here was attended), l, and the
    // unnormalised sum_e exp(s_e - m) e_e; float4 stores over whole steps (zeros past d).
    const int64_t part = (int64_t(blockIdx.z) * gridDim.x + r) * a.heads + h;
    float4* out = reinterpret_cast<float4*>(a.part_o + part * row4 * 4);
#pragma unroll
    for (int st = 0; st < kMaxSteps; ++st)
      if (st < a.steps) out[st * kWarpSize + lane] = acc[st];
    if (lane == 0) a.part_ml[part] = make_float2(m, l);
    return;
  }

  write_output(a.o, a.lse, r, h, a.d, a.steps, acc, m, l, a.sink[h]);
}

// Split-K combine: one block per (query row blockIdx.x, head tile blockIdx.y), one warp per
// head, lane l owning dims 128 i + 4 l .. + 3 as in attention_rows. Merges the S partials of
// its (row, head) in split order z = 0, 1, ..., S - 1:
//   M = max_z m_z;  alpha_z = exp(m_z - M) (0 for a split that attended nothing, m_z = -inf);
//   l = sum_z alpha_z l_z,  acc = sum_z alpha_z acc_z   (split 0 by a product, then FMAs),
// then the single-pass epilogue: den = l + exp(sink - M), o = acc / den, lse = M + ln den.
// M is finite: split 0 starts with the row's first window row, which is always attended. With
// S = 1 every step is exact (alpha = 1), so the result has the single-pass kernel's bits.
struct CombineArgs {
  const float* part_o;    // [S, T, H, steps * 128]
  const float2* part_ml;  // [S, T, H]
  const float* sink;
  View2<float> o, lse;
  int heads, d, steps, splits;
};

template <int kHeads>
__global__ void __launch_bounds__(kHeads * kWarpSize) attention_combine(const CombineArgs c) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t r = blockIdx.x, rows = gridDim.x;
  const int h = int(blockIdx.y) * kHeads + warp;
  if (h >= c.heads) return;  // no barrier below: idle warps of a partial tile leave
  const int64_t row4 = int64_t(c.steps) * kWarpSize;
  auto part = [&](int z) { return (int64_t(z) * rows + r) * c.heads + h; };

  float m = -INFINITY;
  for (int z = 0; z < c.splits; ++z) m = fmaxf(m, c.part_ml[part(z)].x);
  float l = 0.f;
  float4 acc[kMaxSteps];
#pragma unroll
  for (int st = 0; st < kMaxSteps; ++st) acc[st] = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int z = 0; z < c.splits; ++z) {
    const float2 ml = c.part_ml[part(z)];
    if (ml.x == -INFINITY) continue;  // warp-uniform: the split attended nothing (l = acc = 0)
    const float alpha = expf(ml.x - m);
    const float4* src = reinterpret_cast<const float4*>(c.part_o) + part(z) * row4;
    if (z == 0) {  // a product, not an FMA into +0: S = 1 keeps the sign of a -0 too
      l = ml.y * alpha;
#pragma unroll
      for (int st = 0; st < kMaxSteps; ++st) {
        if (st >= c.steps) continue;
        const float4 v = src[st * kWarpSize + lane];
        acc[st] = make_float4(v.x * alpha, v.y * alpha, v.z * alpha, v.w * alpha);
      }
    } else {
      l = fmaf(ml.y, alpha, l);
#pragma unroll
      for (int st = 0; st < kMaxSteps; ++st)
        if (st < c.steps) axpy4(alpha, src[st * kWarpSize + lane], acc[st]);
    }
  }
  write_output(c.o, c.lse, r, h, c.d, c.steps, acc, m, l, c.sink[h]);
}

bool aligned(const void* ptr, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// The reference's checks and messages (reference/attention.cc), except the index values, then
// the GPU limits. attention_fp8 passes a proxy whose kv / comp carry the entry shapes in dims.
void validate(const AttentionParams<float>& p) {
  const int64_t T_ = p.q.rows, Tk = p.kv.rows, N = p.comp.rows, d = p.kv.cols, H = p.heads;
  require(H > 0 && p.q.cols == H * d,
          "attention: tensor 'q': expected shape " + shape_string({T_, H, d}) + " (" +
              std::to_string(H * d) + " columns), found " + std::to_string(p.q.cols) +
              " columns");
  require(Tk >= T_, "attention: tensor 'kv': needs at least one row per query (" +
                        std::to_string(T_) + "), found " + std::to_string(Tk));
  require(N == 0 || p.comp.cols == d, "attention: tensor 'comp': expected shape " +
                                          shape_string({N, d}) + ", found " +
                                          shape_string({p.comp.rows, p.comp.cols}));
  require(p.o.rows == T_ && p.o.cols == H * d, "attention: output 'o' has the wrong shape");
  require(!p.lse.data || (p.lse.rows == T_ && p.lse.cols == H),
          "attention: output 'lse' has the wrong shape");
  require(p.window > 0 && p.ratio > 0, "attention: window and ratio must be positive");
  require(p.pos0 + T_ - Tk >= 0, "attention: kv would start before position 0");
  if (p.indices.data)
    require(p.indices.rows == T_, "attention: tensor 'indices': expected " +
                                      std::to_string(T_) + " rows, found " +
                                      std::to_string(p.indices.rows));
  require(d > 0 && d <= kAttentionMaxDim,
          "attention: tensor 'kv': head dim must be in [1, " + std::to_string(kAttentionMaxDim) +
              "] on the GPU (one q row per warp in registers), found " + std::to_string(d));
  require(T_ <= INT_MAX, "attention: tensor 'q': at most " + std::to_string(INT_MAX) +
                             " rows per launch (one block row per query), found " +
                             std::to_string(T_));
  require((H + kAttentionDecodeHeads - 1) / kAttentionDecodeHeads <= kMaxGridY,
          "attention: at most " + std::to_string(int64_t(kMaxGridY) * kAttentionDecodeHeads) +
              " heads per launch, found " + std::to_string(H));
  require(p.sink != nullptr, "attention: tensor 'sink' is missing (pass -inf for no sink)");
}

// The launch arguments that do not depend on where the entries come from.
template <class Entries>
Args<Entries> make_args(const AttentionParams<float>& p, const Entries& ent) {
  const int64_t d = p.kv.cols;
  Args<Entries> a;
  a.ent = ent;
  a.q = p.q;
  a.sink = p.sink;
  a.indices = p.indices;
  a.o = p.o;
  a.lse = p.lse;
  a.heads = static_cast<int>(p.heads);
  a.d = static_cast<int>(d);
  a.steps = static_cast<int>((d + kColsPerStep - 1) / kColsPerStep);
  a.ratio = p.ratio;
  a.window = p.window;
  a.pos0 = p.pos0;
  a.base = p.pos0 + p.q.rows - p.kv.rows;
  a.n_comp = p.comp.rows;
  a.scale = static_cast<float>(p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(d)));  // as ref
  a.q_vec4 = d % 4 == 0 && aligned(p.q.data, 16) && p.q.ld % 4 == 0;
  a.split_len = 0;  // single pass; launch_split sets the split fields
  a.part_o = nullptr;
  a.part_ml = nullptr;
  return a;
}

template <int kHeads, bool kSplit, class Entries>
void launch(const Args<Entries>& a, int64_t T, int64_t splits, cudaStream_t stream) {
  const size_t smem = size_t(kAttentionChunk) * size_t(a.steps) * kColsPerStep * sizeof(float);
  DSV4_CUDA_CHECK(cudaFuncSetAttribute(attention_rows<kHeads, kSplit, Entries>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>((a.heads + kHeads - 1) / kHeads),
                  static_cast<unsigned>(splits));
  attention_rows<kHeads, kSplit, Entries><<<grid, kHeads * kWarpSize, smem, stream>>>(a);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

// Frees a stream-ordered allocation on scope exit (also when a launch check throws): the
// split-K partials live from the split launch to the combine launch on the same stream.
struct SplitScratch {
  float* ptr = nullptr;
  cudaStream_t stream = nullptr;
  SplitScratch(size_t floats, cudaStream_t s) : stream(s) {
    DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr), floats * sizeof(float), s));
  }
  ~SplitScratch() {
    if (ptr) (void)cudaFreeAsync(ptr, stream);  // a destructor must not throw
  }
  SplitScratch(const SplitScratch&) = delete;
  SplitScratch& operator=(const SplitScratch&) = delete;
};

int multiprocessors() {
  int device = 0, sms = 0;
  DSV4_CUDA_CHECK(cudaGetDevice(&device));
  DSV4_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Most slots of any row (header: window rows + compressed slots): the split lengths are
// cut from this bound, the same for every row of the launch.
int64_t max_slots(const AttentionParams<float>& p) {
  return std::min(p.window, p.kv.rows) + (p.indices.data ? p.indices.cols : p.comp.rows);
}

// Split-K (header): S split launches of split_len = ceil(chunks / S) chunks of slots each
// into the stream-ordered partials [S, T, H, steps * 128] + [S, T, H] (m, l), then the combine.
template <class Entries>
void launch_split(Args<Entries> a, int64_t T, int64_t slots, int64_t splits, cudaStream_t stream) {
  const int64_t chunks = (slots + kAttentionChunk - 1) / kAttentionChunk;
  a.split_len = (chunks + splits - 1) / splits * kAttentionChunk;
  const int64_t parts = splits * T * a.heads, row_floats = int64_t(a.steps) * kColsPerStep;
  const int64_t floats = parts * row_floats + 2 * parts;  // o partials, then (m, l) pairs
  require(floats <= kAttentionSplitScratchFloats,
          "attention: " + std::to_string(splits) + " splits of " + std::to_string(T) +
              " rows x " + std::to_string(a.heads) + " heads need " + std::to_string(floats) +
              " floats of partials, above the limit of " +
              std::to_string(kAttentionSplitScratchFloats) + " (fewer splits or rows)");
  SplitScratch scratch(size_t(floats), stream);
  a.part_o = scratch.ptr;
  // parts * row_floats is a multiple of 128 floats: the pairs start 8-byte aligned.
  a.part_ml = reinterpret_cast<float2*>(scratch.ptr + parts * row_floats);
  launch<kAttentionDecodeHeads, true>(a, T, splits, stream);

  CombineArgs c;
  c.part_o = a.part_o;
  c.part_ml = a.part_ml;
  c.sink = a.sink;
  c.o = a.o;
  c.lse = a.lse;
  c.heads = a.heads;
  c.d = a.d;
  c.steps = a.steps;
  c.splits = static_cast<int>(splits);
  const dim3 grid(static_cast<unsigned>(T),
                  static_cast<unsigned>((a.heads + kAttentionDecodeHeads - 1) / kAttentionDecodeHeads));
  attention_combine<kAttentionDecodeHeads><<<grid, kAttentionDecodeHeads * kWarpSize, 0, stream>>>(c);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

// Resolves the automatic tile (header: prefill when it fills two waves) and the automatic
// split count (header: decode tile under two waves), then launches. splits: 0 automatic,
// 1 the single-pass kernel with `tile`, >= 2 split-K (decode tile).
template <class Entries>
void run(const Args<Entries>& a, int64_t T, AttentionTile tile, int64_t splits, int64_t slots,
         cudaStream_t stream) {
  if (T == 0) return;
  if (splits > 1) {  // forced split-K: no device query (its checks come before device work)
    launch_split(a, T, slots, splits, stream);
    return;
  }
  if (tile == AttentionTile::automatic || splits == kAttentionAutoSplit) {
    const int sms = multiprocessors();
    const int64_t wide_blocks =
        T * ((a.heads + kAttentionPrefillHeads - 1) / kAttentionPrefillHeads);
    if (tile == AttentionTile::automatic)
      tile = wide_blocks >= 2 * int64_t(sms) ? AttentionTile::prefill : AttentionTile::decode;
    if (splits == kAttentionAutoSplit)
      splits = tile == AttentionTile::prefill ? 1 : attention_auto_splits(T, a.heads, slots, sms);
  }
  if (splits > 1)
    launch_split(a, T, slots, splits, stream);
  else if (tile == AttentionTile::prefill)
    launch<kAttentionPrefillHeads, false>(a, T, 1, stream);
  else
    launch<kAttentionDecodeHeads, false>(a, T, 1, stream);
}

void validate_splits(int64_t splits) {
  require(splits >= 0 && splits <= kAttentionMaxSplits,
          "attention: splits must be in [0, " + std::to_string(kAttentionMaxSplits) +
              "] (0: automatic), found " + std::to_string(splits));
}

void run_f32(const AttentionParams<float>& p, AttentionTile tile, int64_t splits,
             cudaStream_t stream) {
  const NvtxRange range("attention");
  validate(p);
  validate_splits(splits);
  if (p.q.rows == 0) return;
  F32Entries ent;
  ent.kv = p.kv;
  ent.comp = p.comp;
  ent.d = static_cast<int>(p.kv.cols);
  ent.vec4 = ent.d % 4 == 0 && aligned(p.kv.data, 16) && p.kv.ld % 4 == 0 &&
             (p.comp.rows == 0 || (aligned(p.comp.data, 16) && p.comp.ld % 4 == 0));
  run(make_args(p, ent), p.q.rows, tile, splits, max_slots(p), stream);
}

}  // namespace

void attention_with_tile(const AttentionParams<float>& p, AttentionTile tile,
                         cudaStream_t stream) {
  run_f32(p, tile, 1, stream);
}

void attention_with_split(const AttentionParams<float>& p, int64_t splits, cudaStream_t stream) {
  run_f32(p, AttentionTile::automatic, splits, stream);
}

void attention(const AttentionParams<float>& p, cudaStream_t stream) {
  run_f32(p, AttentionTile::automatic, kAttentionAutoSplit, stream);
}

void attention_fp8_with_split(const AttentionFp8Params& p, int64_t splits, cudaStream_t stream) {
  const NvtxRange range("attention_fp8");
  const std::string entry = std::to_string(kFp8EntryBytes) + "-byte FP8 entries";
  require(p.kv.cols == kFp8EntryBytes, "attention_fp8: tensor 'kv': expected rows of " + entry +
                                           ", found " + std::to_string(p.kv.cols) + " bytes");
  require(p.comp.rows == 0 || p.comp.cols == kFp8EntryBytes,
          "attention_fp8: tensor 'comp': expected rows of " + entry + ", found " +
              std::to_string(p.comp.cols) + " bytes");
  require((p.kv.rows == 0 || (aligned(p.kv.data, 8) && p.kv.ld % 8 == 0)) &&
              (p.comp.rows == 0 || (aligned(p.comp.data, 8) && p.comp.ld % 8 == 0)),
          "attention_fp8: tensors 'kv' and 'comp': rows must start on 8-byte boundaries");
  // The shape checks of the f32 op, on a proxy whose entries have d = kHeadDim dims.
  AttentionParams<float> shape;
  shape.q = p.q;
  shape.kv = {nullptr, p.kv.rows, kHeadDim, kHeadDim};
  shape.comp = {nullptr, p.comp.rows, kHeadDim, kHeadDim};
  shape.sink = p.sink;
  shape.indices = p.indices;
  shape.heads = p.heads;
  shape.ratio = p.ratio;
  shape.window = p.window;
  shape.scale = p.scale;
  shape.pos0 = p.pos0;
  shape.o = p.o;
  shape.lse = p.lse;
  validate(shape);
  validate_splits(splits);
  if (p.q.rows == 0) return;
  Fp8Entries ent;
  ent.kv = p.kv;
  ent.comp = p.comp;
  run(make_args(shape, ent), p.q.rows, AttentionTile::automatic, splits, max_slots(shape), stream);
}

void attention_fp8(const AttentionFp8Params& p, cudaStream_t stream) {
  attention_fp8_with_split(p, kAttentionAutoSplit, stream);
}

}  // namespace dsv4::cuda
