#include "optimized/engram.cuh"

#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kMixWarps = kMixThreads / kWarpSize;
constexpr int kMixSums = 4;  // sum k^2, sum x^2, sum (k kn)(x qn), sum (v + bv)^2
static_assert(kMixThreads % kWarpSize == 0, "engram_mix: the block must be whole warps");
static_assert(kEngramMixMaxDim * sizeof(float) <= 48 * 1024,
              "engram_mix: the per-column accumulator must fit the default 48 KiB of dynamic "
              "shared memory");

// ---- engram_hash ---------------------------------------------------------------------------

struct HashArgs {
  const int32_t* ids;       // [T]
  const int32_t* history;   // [N-1] or nullptr
  const uint64_t* mult;     // [N]
  const int64_t* primes;    // [slots]
  const int64_t* offsets;   // [slots]
  const int32_t* token_map;  // [vocab] or nullptr (identity)
  int64_t n, max_ngram, heads, vocab, pad_id;
  View2<int64_t> rows;      // [T, slots]
};

// One thread per (token t, slot): order n = slot / Hn + 2; XOR of c_{t-k} * mult[k], k < n.
__global__ void __launch_bounds__(kHashThreads) hash_rows(HashArgs a) {
  const int64_t slots = (a.max_ngram - 1) * a.heads;
  const int64_t idx = int64_t(blockIdx.x) * kHashThreads + threadIdx.x;
  if (idx >= a.n * slots) return;
  const int64_t t = idx / slots, slot = idx - t * slots;
  const int64_t order = slot / a.heads + 2;
  uint64_t mix = 0;
  bool bad = false;
  for (int64_t k = 0; k < order; ++k) {
    const int64_t pos = t - k;
    int64_t c;
    if (pos >= 0) {
      const int32_t id = a.ids[pos];
      bad |= id < 0 || id >= a.vocab;
      c = bad ? 0 : (a.token_map ? a.token_map[id] : id);
    } else {
      const int32_t h = a.history ? a.history[a.max_ngram - 1 + pos] : -1;
      bad |= h >= a.vocab;
      c = h < 0 ? a.pad_id : h;
    }
    mix ^= uint64_t(c) * a.mult[k];
  }
  a.rows(t, slot) = bad ? -1 : a.offsets[slot] + int64_t(mix % uint64_t(a.primes[slot]));
}

// ---- engram_lookup -------------------------------------------------------------------------

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(uint16_t bf16) { return __uint_as_float(uint32_t(bf16) << 16); }

// Block t copies the slots*de values of token t; a row outside [0, table_rows) gives NaN.
template <class Src>
__global__ void __launch_bounds__(kLookupThreads)
    gather_rows(const Src* table, int64_t table_rows, int de, View2<const int64_t> rows,
                View2<float> e) {
  const int64_t t = blockIdx.x;
  const int width = int(rows.cols) * de;
  const int64_t* rt = rows.row(t);
  float* out = e.row(t);
  for (int i = threadIdx.x; i < width; i += kLookupThreads) {
    const int s = i / de, c = i - s * de;
    const int64_t r = rt[s];
    out[i] = (r >= 0 && r < table_rows) ? to_float(table[r * de + c]) : __int_as_float(0x7fc00000);
  }
}

// ---- engram_mix ----------------------------------------------------------------------------

struct MixArgs {
  View2<const float> x;        // [T, S*D]
  const float* v_raw;          // [T, D] dense: e Wv^T
  const float* k_raw;          // [T, S*D] dense: e Wk^T
  EngramMixWeights<float> w;
  View2<const float> history;  // [H, S*D] (H = (K-1)*dil; empty when H == 0)
  float* next_history;         // [H, S*D] dense
  View2<float> y;              // [T, S*D]
  int n, dim, kernel, dilation, hist;
  float norm_eps, inv_sqrt_d;
};

// The kMixSums partial sums of every thread, summed over the block and returned to every
// thread. Fixed order: butterfly within each warp, then the warp sums 0..kMixWarps-1 in turn.
// Ends with a barrier, so the shared slots may be reused by the next call.
__device__ void block_sums(float (&v)[kMixSums]) {
  __shared__ float warp_sums[kMixSums][kMixWarps];
#pragma unroll
  for (int j = 0; j < kMixSums; ++j) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
      v[j] += __shfl_xor_sync(0xffffffffu, v[j], offset);
  }
  if (threadIdx.x % kWarpSize == 0) {
#pragma unroll
    for (int j = 0; j < kMixSums; ++j) warp_sums[j][threadIdx.x / kWarpSize] = v[j];
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kMixSums; ++j) {
    float total = 0.f;
#pragma unroll
    for (int i = 0; i < kMixWarps; ++i) total += warp_sums[j][i];
    v[j] = total;
  }
  __syncthreads();
}

__device__ inline float silu(float v) { return v / (1.0f + expf(-v)); }

// Block (t, s). Thread owns columns c = tid, tid + kMixThreads, ... of the stream's D; acc[c]
// (shared, touched by its owner only) collects sum_i w[s*D + c, i] Z[t - (K-1-i)*dil, s, c].
__global__ void __launch_bounds__(kMixThreads) mix_rows(MixArgs a) {
  extern __shared__ float acc[];
  const int t = blockIdx.x, s = blockIdx.y, D = a.dim, K = a.kernel;
  const int64_t sd = int64_t(gridDim.y) * D;  // S*D
  const int64_t col0 = int64_t(s) * D;        // first column of stream s
  for (int c = threadIdx.x; c < D; c += kMixThreads) acc[c] = 0.f;

  for (int i = 0; i < K; ++i) {
    const int tau = t - (K - 1 - i) * a.dilation;
    if (tau < 0) {  // before the chunk: tau >= -(K-1)*dil = -H, history row H + tau
      const float* hz = a.history.row(a.hist + tau) + col0;
      for (int c = threadIdx.x; c < D; c += kMixThreads)
        acc[c] = fmaf(a.w.conv_w[(col0 + c) * K + i], hz[c], acc[c]);
      continue;
    }
    const float* kr = a.k_raw + int64_t(tau) * sd + col0;
    const float* xr = a.x.row(tau) + col0;
    const float* vr = a.v_raw + int64_t(tau) * D;
    const float* bk = a.w.key_b + col0;
    const float* kn = a.w.key_norm + col0;
    const float* qn = a.w.query_norm + col0;
    float sums[kMixSums] = {0.f, 0.f, 0.f, 0.f};
    for (int c = threadIdx.x; c < D; c += kMixThreads) {
      const float k = kr[c] + bk[c], x = xr[c], v = vr[c] + a.w.value_b[c];
      sums[0] = fmaf(k, k, sums[0]);
      sums[1] = fmaf(x, x, sums[1]);
      sums[2] = fmaf(k * kn[c], x * qn[c], sums[2]);
      sums[3] = fmaf(v, v, sums[3]);
    }
    block_sums(sums);
    const float inv_k = 1.0f / sqrtf(sums[0] / float(D) + a.norm_eps);
    const float inv_q = 1.0f / sqrtf(sums[1] / float(D) + a.norm_eps);
    const float dot = sums[2] * inv_k * inv_q * a.inv_sqrt_d;
    const float mag = sqrtf(fmaxf(fabsf(dot), float(kEngramGateFloor)));
    const float gated = dot > 0.f ? mag : (dot < 0.f ? -mag : 0.f);
    const float g = 1.0f / (1.0f + expf(-gated));
    const float inv_z = 1.0f / sqrtf(g * g * sums[3] / float(D) + float(kEngramConvNormEps));

    const float* cn = a.w.conv_norm + col0;
    const bool last = tau == t;  // i == K-1
    const int hist_row = t - (a.n - a.hist);  // row of the next history that Z(t) becomes
    for (int c = threadIdx.x; c < D; c += kMixThreads) {
      const float V = g * (vr[c] + a.w.value_b[c]);
      const float Z = V * inv_z * cn[c];
      const float sum = fmaf(a.w.conv_w[(col0 + c) * K + i], Z, acc[c]);
      acc[c] = sum;
      if (last) {
        a.y(t, col0 + c) = V + silu(sum);
        if (hist_row >= 0) a.next_history[int64_t(hist_row) * sd + col0 + c] = Z;
      }
    }
  }
}

std::string dims(int64_t r, int64_t c) { return shape_string({r, c}); }

// The reference's shape checks of engram_mix (same messages), plus the GPU's limits.
void check_mix(const EngramMixParams<float>& p) {
  const int64_t n = p.x.rows, S = p.streams, E = p.e.cols;
  require(S > 0 && p.x.cols % S == 0, "engram_mix: x has " + std::to_string(p.x.cols) +
                                          " columns, not a multiple of " + std::to_string(S) +
                                          " streams");
  const int64_t D = p.x.cols / S, K = p.kernel, H = (K - 1) * p.dilation;
  require(K >= 1 && p.dilation >= 1, "engram_mix: kernel and dilation must be positive");
  require(p.e.rows == n,
          "engram_mix: e must have " + std::to_string(n) + " rows, found " + std::to_string(p.e.rows));
  require(p.y.rows == n && p.y.cols == S * D, "engram_mix: y must be " + dims(n, S * D) +
                                                  ", found " + dims(p.y.rows, p.y.cols));
  require(H == 0 || (p.history.rows == H && p.history.cols == S * D),
          "engram_mix: history must be " + dims(H, S * D) + ", found " +
              dims(p.history.rows, p.history.cols));
  const auto& w = p.w;
  require(w.value_w && w.value_b && w.key_w && w.key_b && w.key_norm && w.query_norm && w.conv_w &&
              w.conv_norm,
          "engram_mix: a weight is missing");
  // GPU limits.
  require(D <= kEngramMixMaxDim, "engram_mix: tensor 'x': stream width D must be at most " +
                                     std::to_string(kEngramMixMaxDim) +
                                     " on the GPU (one accumulator row in shared memory), found " +
                                     std::to_string(D));
  require(n <= INT_MAX && S <= 65535, "engram_mix: tensor 'x': at most " + std::to_string(INT_MAX) +
                                          " tokens and 65535 streams per launch, found " +
                                          std::to_string(n) + " and " + std::to_string(S));
  require(S * D <= INT_MAX && E <= INT_MAX && p.e.ld <= INT_MAX && H <= INT_MAX,
          "engram_mix: GEMM dimensions must fit an int (cuBLAS), found S*D " +
              std::to_string(S * D) + ", E " + std::to_string(E) + ", e.ld " + std::to_string(p.e.ld));
  require(E >= 1, "engram_mix: e must have at least one column");
  require(n == 0 || (p.x.data && p.e.data && p.y.data), "engram_mix: x, e or y has no data");
  require(H == 0 || p.history.data, "engram_mix: history has no data");
  require(p.y.data != p.x.data, "engram_mix: y must not alias x");
}

}  // namespace

// ---- DeviceEngramHash ----------------------------------------------------------------------

DeviceEngramHash::DeviceEngramHash(const EngramHash& h)
    : max_ngram_(h.max_ngram),
      heads_(h.heads),
      vocab_(h.vocab),
      pad_id_(h.pad_id),
      table_rows_(h.table_rows),
      host_multipliers_(h.multipliers),
      host_primes_(h.primes),
      has_map_(h.token_map != nullptr) {
  require(h.max_ngram >= 2 && h.heads > 0, "engram_hash: the layout needs N >= 2 and Hn > 0");
  require(int64_t(h.multipliers.size()) == h.max_ngram && int64_t(h.primes.size()) == h.slots() &&
              int64_t(h.offsets.size()) == h.slots(),
          "engram_hash: the layout's multipliers, primes and offsets disagree with N and Hn");
  multipliers_ = DeviceBuffer<uint64_t>(h.multipliers);
  primes_ = DeviceBuffer<int64_t>(h.primes);
  offsets_ = DeviceBuffer<int64_t>(h.offsets);
  if (h.token_map) {
    token_map_ = DeviceBuffer<int32_t>(size_t(h.vocab));
    token_map_.upload(h.token_map, size_t(h.vocab));
  }
}

bool DeviceEngramHash::matches(const EngramHash& h) const {
  return max_ngram_ == h.max_ngram && heads_ == h.heads && vocab_ == h.vocab &&
         pad_id_ == h.pad_id && table_rows_ == h.table_rows &&
         host_multipliers_ == h.multipliers && host_primes_ == h.primes &&
         has_map_ == (h.token_map != nullptr) && !multipliers_.empty();
}

// ---- ops -----------------------------------------------------------------------------------

void engram_hash(const EngramHashParams& p, const DeviceEngramHash& dh, cudaStream_t stream) {
  const NvtxRange range("engram_hash");
  require(p.hash != nullptr, "engram_hash: no hash layout");
  const EngramHash& h = *p.hash;
  const int64_t slots = h.slots();
  require(p.rows.rows == p.n && p.rows.cols == slots, "engram_hash: rows must be " +
                                                          dims(p.n, slots) + ", found " +
                                                          dims(p.rows.rows, p.rows.cols));
  require(p.n == 0 || (p.ids && p.rows.data), "engram_hash: ids or rows has no data");
  require(dh.matches(h), "engram_hash: the device hash was not built from this layout "
                         "(DeviceEngramHash(hash) of the same layer)");
  const int64_t threads = p.n * slots;
  const int64_t blocks = (threads + kHashThreads - 1) / kHashThreads;
  require(blocks <= INT_MAX, "engram_hash: tensor 'rows': too many elements for one launch (" +
                                 std::to_string(threads) + ")");
  if (threads == 0) return;
  HashArgs a{p.ids,     p.history, dh.multipliers(), dh.primes(), dh.offsets(), dh.token_map(),
             p.n,       h.max_ngram, h.heads,        h.vocab,     h.pad_id,     p.rows};
  hash_rows<<<unsigned(blocks), kHashThreads, 0, stream>>>(a);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void engram_lookup(const EngramLookupParams<float>& p, cudaStream_t stream) {
  const NvtxRange range("engram_lookup");
  const EngramTableView& tb = p.table;
  require(tb.data != nullptr, "engram_lookup: no table");
  const int64_t slots = p.rows.cols, de = tb.dim;
  require(p.e.rows == p.rows.rows && p.e.cols == slots * de,
          "engram_lookup: e must be " + dims(p.rows.rows, slots * de) + ", found " +
              dims(p.e.rows, p.e.cols));
  require(p.rows.rows <= INT_MAX && slots * de <= INT_MAX,
          "engram_lookup: tensor 'e': at most " + std::to_string(INT_MAX) +
              " tokens and columns per launch (one block per token), found " +
              dims(p.rows.rows, slots * de));
  if (p.rows.rows == 0 || slots * de == 0) return;
  require(p.rows.data && p.e.data, "engram_lookup: rows or e has no data");
  const unsigned grid = unsigned(p.rows.rows);
  if (tb.dtype == TableDType::f32)
    gather_rows<<<grid, kLookupThreads, 0, stream>>>(static_cast<const float*>(tb.data), tb.rows,
                                                     int(de), p.rows, p.e);
  else
    gather_rows<<<grid, kLookupThreads, 0, stream>>>(static_cast<const uint16_t*>(tb.data), tb.rows,
                                                     int(de), p.rows, p.e);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

EngramMixWorkspace::EngramMixWorkspace(int64_t max_tokens, int64_t streams, int64_t dim,
                                       int64_t history_rows)
    : max_tokens_(max_tokens), streams_(streams), dim_(dim), history_rows_(history_rows) {
  require(max_tokens >= 0 && streams > 0 && dim > 0 && history_rows >= 0,
          "EngramMixWorkspace: needs tokens >= 0, streams > 0, D > 0, history rows >= 0");
  v_raw_ = DeviceBuffer<float>(size_t(max_tokens * dim));
  k_raw_ = DeviceBuffer<float>(size_t(max_tokens * streams * dim));
  next_history_ = DeviceBuffer<float>(size_t(history_rows * streams * dim));
  DSV4_CUBLAS_CHECK(cublasCreate(&handle_));
  // The default math mode: FP32 FMA for SGEMM (TF32 tensor cores only with
  // CUBLAS_TF32_TENSOR_OP_MATH, which we do not set).
  DSV4_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
}

EngramMixWorkspace::~EngramMixWorkspace() {
  if (handle_) (void)cublasDestroy(handle_);  // a destructor must not throw
}

void engram_mix(const EngramMixParams<float>& p, EngramMixWorkspace& ws, cudaStream_t stream) {
  const NvtxRange range("engram_mix");
  check_mix(p);
  const int64_t n = p.x.rows, S = p.streams, D = p.x.cols / S, E = p.e.cols;
  const int64_t H = (p.kernel - 1) * p.dilation, SD = S * D;
  require(n <= ws.max_tokens() && S == ws.streams() && D == ws.dim() && H == ws.history_rows(),
          "engram_mix: the workspace holds " + std::to_string(ws.max_tokens()) + " tokens of " +
              dims(ws.streams(), ws.dim()) + " streams x D with " +
              std::to_string(ws.history_rows()) + " history rows; the call needs " +
              std::to_string(n) + " tokens of " + dims(S, D) + " with " + std::to_string(H));
  if (n == 0) return;

  // Old history rows that stay history (T < H): rows [T, H) become next rows [0, H - T).
  if (H > n)
    DSV4_CUDA_CHECK(cudaMemcpy2DAsync(ws.next_history_.data(), size_t(SD) * sizeof(float),
                                      p.history.row(n), size_t(p.history.ld) * sizeof(float),
                                      size_t(SD) * sizeof(float), size_t(H - n),
                                      cudaMemcpyDeviceToDevice, stream));

  // Column-major view of the row-major products: v_raw^T [D, T] = Wv [E, D]^T e^T [E, T].
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(ws.handle_, stream));
  DSV4_CUBLAS_CHECK(cublasSgemm(ws.handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(D), int(n), int(E), &one,
                                p.w.value_w, int(E), p.e.data, int(p.e.ld), &zero,
                                ws.v_raw_.data(), int(D)));
  DSV4_CUBLAS_CHECK(cublasSgemm(ws.handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(SD), int(n), int(E), &one,
                                p.w.key_w, int(E), p.e.data, int(p.e.ld), &zero,
                                ws.k_raw_.data(), int(SD)));

  MixArgs a{p.x,
            ws.v_raw_.data(),
            ws.k_raw_.data(),
            p.w,
            p.history,
            ws.next_history_.data(),
            p.y,
            int(n),
            int(D),
            int(p.kernel),
            int(p.dilation),
            int(H),
            float(p.norm_eps),
            1.0f / std::sqrt(float(D))};  // the reference's T(1) / sqrt(T(D))
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(S));
  mix_rows<<<grid, kMixThreads, size_t(D) * sizeof(float), stream>>>(a);
  DSV4_CUDA_CHECK(cudaGetLastError());

  if (H > 0)
    DSV4_CUDA_CHECK(cudaMemcpy2DAsync(p.history.data, size_t(p.history.ld) * sizeof(float),
                                      ws.next_history_.data(), size_t(SD) * sizeof(float),
                                      size_t(SD) * sizeof(float), size_t(H),
                                      cudaMemcpyDeviceToDevice, stream));
}

void engram_mix(const EngramMixParams<float>& p, cudaStream_t stream) {
  check_mix(p);  // before any device work
  const int64_t S = p.streams, D = p.x.cols / S;
  EngramMixWorkspace ws(p.x.rows, S, D, (p.kernel - 1) * p.dilation);
  engram_mix(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
