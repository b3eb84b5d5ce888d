#include "optimized/mla.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarps = kMlaThreads / kWarpSize;
static_assert(kMlaThreads % kWarpSize == 0, "mla: the block must be whole warps");

// Max / sum of v over the block, returned to every thread, in a fixed order (butterfly within
// each warp, then warps 0..kWarps-1). The leading barrier makes `red` reusable by consecutive
// calls.
template <bool kMax>
__device__ float block_reduce(float v, float* red) {
  for (int off = kWarpSize / 2; off > 0; off /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, off);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  __syncthreads();
  if (threadIdx.x % kWarpSize == 0) red[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float t = red[0];
  for (int i = 1; i < kWarps; ++i) t = kMax ? fmaxf(t, red[i]) : t + red[i];
  return t;
}

// Row r of the chunk (blockIdx.x): counts[r, j] = how often j (0 <= j <= pos, j < Tk) appears in
// indices[row0 + r, :].
__global__ void __launch_bounds__(kMlaThreads)
    count_indices(View2<const int32_t> indices, int64_t row0, int64_t pos0, int64_t Tk, int32_t* counts) {
  const int64_t r = blockIdx.x;
  int32_t* cnt = counts + r * Tk;
  for (int64_t j = threadIdx.x; j < Tk; j += kMlaThreads) cnt[j] = 0;
  __syncthreads();  // the zeros are visible to the block before any increment
  const int32_t* idx = indices.row(row0 + r);
  const int64_t pos = pos0 + row0 + r;
  for (int64_t c = threadIdx.x; c < indices.cols; c += kMlaThreads) {
    const int64_t j = idx[c];
    if (j >= 0 && j < Tk && j <= pos) atomicAdd(cnt + j, 1);
  }
}

// Softmax of (row r, head h) = blockIdx.x = r * H + h over S[blockIdx.x, 0:Tk] in place, with
// multiplicities counts[r, j] (sparse) or [j <= pos] (dense); lse[row0 + r, h] when lse.data.
__global__ void __launch_bounds__(kMlaThreads)
    softmax_rows(float* S, int64_t Tk, int64_t H, const int32_t* counts, int64_t row0, int64_t pos0,
                 View2<float> lse) {
  __shared__ float red[kWarps];
  const int64_t g = blockIdx.x, r = g / H, h = g - r * H;
  const int64_t pos = pos0 + row0 + r;
  float* s = S + g * Tk;
  const int32_t* cnt = counts ? counts + r * Tk : nullptr;
  auto mult = [&](int64_t j) -> float { return cnt ? float(cnt[j]) : (j <= pos ? 1.f : 0.f); };

  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < Tk; j += kMlaThreads)
    if (mult(j) > 0.f) mx = fmaxf(mx, s[j]);
  mx = block_reduce<true>(mx, red);
  if (mx == -INFINITY) {  // nothing to attend to
    for (int64_t j = threadIdx.x; j < Tk; j += kMlaThreads) s[j] = 0.f;
    if (lse.data && threadIdx.x == 0) lse.row(row0 + r)[h] = -INFINITY;
    return;
  }
  float den = 0.f;
  for (int64_t j = threadIdx.x; j < Tk; j += kMlaThreads) {
    const float m = mult(j);
    if (m > 0.f) den += m * expf(s[j] - mx);
  }
  den = block_reduce<false>(den, red);
  for (int64_t j = threadIdx.x; j < Tk; j += kMlaThreads) {  // each thread rewrites its own j
    const float m = mult(j);
    s[j] = m > 0.f ? m * expf(s[j] - mx) / den : 0.f;
  }
  if (lse.data && threadIdx.x == 0) lse.row(row0 + r)[h] = mx + logf(den);
}

struct Geometry {
  int64_t T, Tk, dk, dl, H, pos0;
  float scale;
};

Geometry validate(const MlaParams<float>& p) {
  const int64_t T = p.q.rows, Tk = p.kv.rows, dk = p.kv.cols, dl = p.latent_dim, H = p.heads;
  // The reference's checks, in its order and with its messages.
  require(dl > 0 && dl <= dk, "mla: latent_dim " + std::to_string(dl) + " must be in [1, " + std::to_string(dk) + "]");
  require(H > 0 && p.q.cols == H * dk, "mla: tensor 'q': expected shape " + shape_string({T, H, dk}) + " (" +
                                           std::to_string(H * dk) + " columns), found " +
                                           std::to_string(p.q.cols) + " columns");
  const int64_t pos0 = p.pos0 < 0 ? Tk - T : p.pos0;
  require(pos0 >= 0 && pos0 + T <= Tk, "mla: key 'pos0' (" + std::to_string(pos0) + ") + T (" + std::to_string(T) +
                                           ") must not exceed the kv rows (" + std::to_string(Tk) + ")");
  require(p.o.rows == T && p.o.cols == H * dl, "mla: output 'o' has the wrong shape");
  if (p.indices.data)
    require(p.indices.rows == T, "mla: tensor 'indices': expected " + std::to_string(T) + " rows");
  // This twin's limits.
  if (p.lse.data)
    require(p.lse.rows == T && p.lse.cols == H, "mla: output 'lse': expected shape " + shape_string({T, H}));
  require(Tk <= INT_MAX && dk <= INT_MAX && H <= INT_MAX && T <= INT_MAX && p.kv.ld <= INT_MAX &&
              H * Tk <= INT_MAX,
          "mla: sizes beyond cuBLAS's int range (Tk, dk, H, T, kv row stride, H*Tk)");
  const float scale = float(p.scale > 0 ? p.scale : 1.0 / std::sqrt(double(dk)));  // the reference's T(...)
  return {T, Tk, dk, dl, H, pos0, scale};
}

}  // namespace

MlaWorkspace::MlaWorkspace(int64_t capacity) : capacity_(capacity) {
  require(capacity >= 0, "MlaWorkspace: capacity must be >= 0");
  scores_ = DeviceBuffer<float>(size_t(capacity));
  counts_ = DeviceBuffer<int32_t>(size_t(capacity));  // n Tk <= n H Tk <= capacity
}

void mla(const MlaParams<float>& p, MlaWorkspace& ws, cudaStream_t stream) {
  const Geometry g = validate(p);
  const int64_t HTk = g.H * g.Tk;
  require(HTk <= ws.capacity() || g.T == 0,
          "mla: the workspace holds " + std::to_string(ws.capacity()) + " scores; one query row needs H * Tk = " +
              std::to_string(HTk));
  const NvtxRange range("mla");
  if (g.T == 0) return;
  // Rows per chunk: the scores fit the workspace, the softmax grid (chunk * H blocks) an int.
  const int64_t chunk = std::min<int64_t>({g.T, ws.capacity() / HTk, INT_MAX / g.H});
  const bool sparse = p.indices.data != nullptr;
  const float one = 1.0f, zero = 0.0f;
  cublasHandle_t h = ws.blas_.on(stream);
  for (int64_t r0 = 0; r0 < g.T; r0 += chunk) {
    const int64_t n = std::min(chunk, g.T - r0);
    float* S = ws.scores_.data();
    if (sparse) {
      count_indices<<<static_cast<unsigned>(n), kMlaThreads, 0, stream>>>(p.indices, r0, g.pos0, g.Tk,
                                                                          ws.counts_.data());
      DSV4_CUDA_CHECK(cudaGetLastError());
    }
    // S_r [H, Tk] = scale Q_r [H, dk] kv^T: column-major S_r^T [Tk, H] = kv [dk, Tk]^T Q_r^T [dk, H].
    DSV4_CUBLAS_CHECK(cublasSgemmStridedBatched(
        h, CUBLAS_OP_T, CUBLAS_OP_N, int(g.Tk), int(g.H), int(g.dk), &g.scale, p.kv.data, int(p.kv.ld), 0LL,
        p.q.data + r0 * p.q.ld, int(g.dk), static_cast<long long>(p.q.ld), &zero, S, int(g.Tk),
        static_cast<long long>(HTk), int(n)));
    softmax_rows<<<static_cast<unsigned>(n * g.H), kMlaThreads, 0, stream>>>(
        S, g.Tk, g.H, sparse ? ws.counts_.data() : nullptr, r0, g.pos0, p.lse);
    DSV4_CUDA_CHECK(cudaGetLastError());
    // o_r [H, dl] = P_r [H, Tk] kv[:, 0:dl]: column-major o_r^T [dl, H] = kv^T[0:dl] [dl, Tk] P_r^T [Tk, H].
    DSV4_CUBLAS_CHECK(cublasSgemmStridedBatched(
        h, CUBLAS_OP_N, CUBLAS_OP_N, int(g.dl), int(g.H), int(g.Tk), &one, p.kv.data, int(p.kv.ld), 0LL, S,
        int(g.Tk), static_cast<long long>(HTk), &zero, p.o.data + r0 * p.o.ld, int(g.dl),
        static_cast<long long>(p.o.ld), int(n)));
  }
}

void mla(const MlaParams<float>& p, cudaStream_t stream) {
  const Geometry g = validate(p);
  MlaWorkspace ws(std::min(g.T * g.H * g.Tk, std::max(kMlaScoreFloats, g.H * g.Tk)));
  mla(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
