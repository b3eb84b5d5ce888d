#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/moe_route.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarps = kRouteThreads / kWarpSize;
static_assert(kRouteThreads % kWarpSize == 0, "moe_route: the block must be whole warps");

struct RouteArgs {
  const float* logits;           // [T, E] dense
  const float* bias;             // [E] or nullptr
  View2<const int64_t> tid2eid;  // [V, k] or data == nullptr (score routing)
  const int64_t* ids;            // [T] (hash routing)
  int E, k;
  float route_scale;
  ScoreFunc score;
  View2<int32_t> chosen;  // [T, k]
  View2<float> weights;   // [T, k]
};

// Sum (max when kMax) of v over the block, returned to every thread. Fixed order: butterfly
// within each warp, then every thread combines the warp results 0..kWarps-1 in turn. Ends with
// a barrier, so a second call may reuse the shared slots.
template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float warp_part[kWarps];
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float o = __shfl_xor_sync(0xffffffffu, v, offset);
    v = kMax ? fmaxf(v, o) : v + o;
  }
  if (threadIdx.x % kWarpSize == 0) warp_part[threadIdx.x / kWarpSize] = v;
  __syncthreads();
  float r = warp_part[0];
#pragma unroll
  for (int i = 1; i < kWarps; ++i) r = kMax ? fmaxf(r, warp_part[i]) : r + warp_part[i];
  __syncthreads();
  return r;
}

// The selection order: (v, i) beats (bv, bi) when v is larger, or equal with the lower id. A NaN
// key is "taken" (or "none yet" for bv): it never wins and anything live beats it.
__device__ bool beats(float v, int i, float bv, int bi) {
  return !isnan(v) && (isnan(bv) || v > bv || (v == bv && i < bi));
}

// One block per token (header comment: launch geometry).
__global__ void __launch_bounds__(kRouteThreads) route_tokens(const RouteArgs a) {
  extern __shared__ float smem[];
  float* score = smem;                                   // [E]
  float* key = smem + a.E;                               // [E] score + bias; NaN: taken
  int* picked = reinterpret_cast<int*>(smem + 2 * a.E);  // [k]
  __shared__ float win_v[kWarps];
  __shared__ int win_i[kWarps];
  __shared__ int token_ok;

  const int64_t t = blockIdx.x;
  const float* s = a.logits + t * a.E;
  const int tid = threadIdx.x;

  // Scores, each thread its experts tid, tid + kRouteThreads, ...
  if (a.score == ScoreFunc::softmax) {
    float mx = -INFINITY;
    for (int e = tid; e < a.E; e += kRouteThreads) mx = fmaxf(mx, s[e]);
    mx = block_reduce<true>(mx);
    float part = 0.f;
    for (int e = tid; e < a.E; e += kRouteThreads) {
      const float v = expf(s[e] - mx);
      score[e] = v;
      part += v;
    }
    const float sum = block_reduce<false>(part);
    for (int e = tid; e < a.E; e += kRouteThreads) score[e] /= sum;  // own entries: no race
  } else {
    for (int e = tid; e < a.E; e += kRouteThreads) {
      const float v = s[e];
      if (a.score == ScoreFunc::sigmoid) {
        score[e] = 1.f / (1.f + expf(-v));
      } else {  // softplus(v) = log1p(exp(v)), without overflow, then the square root
        const float sp = v > 0.f ? v + log1pf(expf(-v)) : log1pf(expf(v));
        score[e] = sqrtf(sp);
      }
    }
  }

  const bool hash = a.tid2eid.data != nullptr;
  if (hash) {
    if (tid == 0) {
      const int64_t id = a.ids[t];
      int ok = id >= 0 && id < a.tid2eid.rows;
      for (int c = 0; c < a.k && ok; ++c) {
        const int64_t e = a.tid2eid(id, c);
        ok = e >= 0 && e < a.E;
        picked[c] = ok ? int(e) : -1;
      }
      token_ok = ok;
    }
    __syncthreads();  // picked, token_ok and every score visible to thread 0 below
  } else {
    for (int e = tid; e < a.E; e += kRouteThreads) {
      const float v = score[e] + (a.bias ? a.bias[e] : 0.f);
      key[e] = isnan(v) ? -INFINITY : v;
    }
    if (tid == 0) token_ok = 1;
    __syncthreads();  // keys complete
    const int lane = tid % kWarpSize, warp = tid / kWarpSize;
    for (int c = 0; c < a.k; ++c) {
      float bv = NAN;
      int bi = INT_MAX;
      for (int e = tid; e < a.E; e += kRouteThreads)
        if (beats(key[e], e, bv, bi)) {
          bv = key[e];
          bi = e;
        }
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, offset);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, offset);
        if (beats(ov, oi, bv, bi)) {
          bv = ov;
          bi = oi;
        }
      }
      if (lane == 0) {
        win_v[warp] = bv;
        win_i[warp] = bi;
      }
      __syncthreads();  // warp winners written
      if (tid == 0) {
        for (int w = 1; w < kWarps; ++w)
          if (beats(win_v[w], win_i[w], bv, bi)) {
            bv = win_v[w];
            bi = win_i[w];
          }
        picked[c] = bi;  // k <= E live keys: a winner always exists
        key[bi] = NAN;   // taken
      }
      __syncthreads();  // the taken mark before the next round's scan, win_* free again
    }
  }

  if (tid == 0) {
    int32_t* out_ids = a.chosen.row(t);
    float* out_w = a.weights.row(t);
    if (!token_ok) {
      for (int c = 0; c < a.k; ++c) {
        out_ids[c] = -1;
        out_w[c] = NAN;
      }
      return;
    }
    float sum = 0.f;
    for (int c = 0; c < a.k; ++c) sum += score[picked[c]];
    const bool renorm = a.score != ScoreFunc::softmax;
    for (int c = 0; c < a.k; ++c) {
      const float sc = score[picked[c]];
      out_ids[c] = picked[c];
      out_w[c] = (renorm ? sc / sum : sc) * a.route_scale;
    }
  }
}

}  // namespace

void check_hash_routing(View2<const int64_t> tid2eid, const int64_t* ids, int64_t tokens,
                        int64_t experts) {
  const int64_t k = tid2eid.cols;
  for (int64_t t = 0; t < tokens; ++t) {
    require(ids[t] >= 0 && ids[t] < tid2eid.rows,
            "moe_route: tensor 'ids': id " + std::to_string(ids[t]) + " at [" + std::to_string(t) +
                "] is outside [0, " + std::to_string(tid2eid.rows) + ")");
    for (int64_t c = 0; c < k; ++c) {
      const int64_t e = tid2eid(ids[t], c);
      require(e >= 0 && e < experts, "moe_route: tensor 'tid2eid': expert " + std::to_string(e) +
                                         " in row " + std::to_string(ids[t]) + " is outside [0, " +
                                         std::to_string(experts) + ")");
    }
  }
}

void validate_moe_route(const MoeRouteParams<float>& p) {
  const int64_t T = p.x.rows, E = p.experts, k = p.topk;
  // ref::moe_route's checks, in its order and with its messages.
  require(E > 0 && k > 0 && k <= E, "moe_route: key 'topk' (" + std::to_string(k) +
                                        ") must be in [1, experts = " + std::to_string(E) + "]");
  require(p.chosen.rows == T && p.chosen.cols == k,
          "moe_route: output 'experts' has the wrong shape");
  require(p.weights.rows == T && p.weights.cols == k,
          "moe_route: output 'weights' has the wrong shape");
  if (p.tid2eid.data != nullptr) {
    require(p.ids != nullptr, "moe_route: hash routing needs tensor 'ids'");
    require(p.tid2eid.cols == k, "moe_route: tensor 'tid2eid': expected " + std::to_string(k) +
                                     " columns (topk), found " + std::to_string(p.tid2eid.cols));
  }
  // This twin's limits.
  require(E <= kMoeMaxExperts, "moe_route: at most " + std::to_string(kMoeMaxExperts) +
                                   " experts on the GPU, found " + std::to_string(E));
  require(T == 0 || p.x.cols > 0, "moe_route: tensor 'x' needs at least one column on the GPU");
  require(
      T <= INT_MAX && p.x.cols <= INT_MAX && (T == 0 || (p.x.ld >= p.x.cols && p.x.ld <= INT_MAX)),
      "moe_route: sizes beyond cuBLAS's int range (tokens, D, x row stride)");
}

MoeRouteWorkspace::MoeRouteWorkspace(int64_t max_tokens, int64_t experts)
    : max_tokens_(max_tokens), experts_(experts) {
  require(max_tokens >= 0 && experts > 0,
          "MoeRouteWorkspace: needs max_tokens >= 0 and a positive number of experts");
  logits_ = DeviceBuffer<float>(size_t(max_tokens * experts));
}

MoeRouteWorkspace::~MoeRouteWorkspace() {
  if (handle_) (void)cublasDestroy(handle_);  // a destructor must not throw
}

cublasHandle_t MoeRouteWorkspace::handle(cudaStream_t stream) {
  if (!handle_) {
    DSV4_CUBLAS_CHECK(cublasCreate(&handle_));
    // The default math mode: FP32 FMA for SGEMM (TF32 only with CUBLAS_TF32_TENSOR_OP_MATH).
    DSV4_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  }
  DSV4_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  return handle_;
}

void moe_route(const MoeRouteParams<float>& p, MoeRouteWorkspace& ws, cudaStream_t stream) {
  validate_moe_route(p);
  const int64_t T = p.x.rows, E = p.experts, D = p.x.cols, k = p.topk;
  require(T <= ws.max_tokens() && E == ws.experts(),
          "moe_route: the workspace holds " + std::to_string(ws.max_tokens()) + " tokens of " +
              std::to_string(ws.experts()) + " experts; the call needs " + std::to_string(T) +
              " of " + std::to_string(E));
  const NvtxRange range("moe_route");
  if (T == 0) return;

  // Column-major view of the row-major product: logits^T [E, T] = (Wg [E, D] row-major, i.e.
  // column-major [D, E])^T x^T [D, T].
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSgemm(ws.handle(stream), CUBLAS_OP_T, CUBLAS_OP_N, int(E), int(T), int(D),
                                &one, p.gate, int(D), p.x.data, int(p.x.ld), &zero,
                                ws.logits_.data(), int(E)));

  const RouteArgs a{ws.logits_.data(),    p.bias,  p.tid2eid, p.ids,    int(E), int(k),
                    float(p.route_scale), p.score, p.chosen,  p.weights};
  const size_t smem = size_t(2 * E) * sizeof(float) + size_t(k) * sizeof(int);
  route_tokens<<<static_cast<unsigned>(T), kRouteThreads, smem, stream>>>(a);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void moe_route(const MoeRouteParams<float>& p, cudaStream_t stream) {
  validate_moe_route(p);  // before any device work
  if (p.x.rows == 0) return;
  MoeRouteWorkspace ws(p.x.rows, p.experts);
  moe_route(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
