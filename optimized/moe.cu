#include <climits>
#include <cmath>
#include <string>

#include "optimized/compact_weights.cuh"
#include "optimized/cuda_check.cuh"
#include "optimized/linear.cuh"
#include "optimized/moe.cuh"
#include "optimized/quant_fp8.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;
static_assert(kPermuteThreads % kWarpSize == 0 && kMoeThreads % kWarpSize == 0,
              "moe: blocks must be whole warps");

// Step 2 of the header: one block. chosen [T, k] (ids outside [0, E) are in no group);
// perm [T*k] (only [0, offsets[E]) written), inv [T*k] (-1 for an entry in no group),
// offsets [E + 1].
__global__ void __launch_bounds__(kPermuteThreads)
    permute_by_expert(View2<const int32_t> chosen, int k, int E, int32_t* perm, int32_t* inv,
                      int32_t* offsets) {
  extern __shared__ int cursor[];  // [E]: counts, then each group's next free position
  const int tid = threadIdx.x;
  const int n = int(chosen.rows) * k;  // <= INT_MAX, checked on the host
  for (int e = tid; e < E; e += kPermuteThreads) cursor[e] = 0;
  __syncthreads();
  for (int i = tid; i < n; i += kPermuteThreads) {
    const int e = chosen(i / k, i % k);
    if (e >= 0 && e < E) atomicAdd(&cursor[e], 1);  // integer counts: order-free
  }
  __syncthreads();
  if (tid == 0) {
    int run = 0;
    for (int e = 0; e < E; ++e) {
      const int count = cursor[e];
      offsets[e] = run;
      cursor[e] = run;
      run += count;
    }
    offsets[E] = run;
  }
  __syncthreads();
  if (tid >= kWarpSize) return;  // warp 0 places the entries, in flat order
  const int lane = tid;
  const unsigned below = (1u << lane) - 1u;  // lanes before this one
  for (int base = 0; base < n; base += kWarpSize) {
    const int i = base + lane;
    const int e = i < n ? chosen(i / k, i % k) : -1;
    const bool valid = i < n && e >= 0 && e < E;
    const int group = valid ? e : -1;
    const unsigned same = __match_any_sync(0xffffffffu, group);
    const int rank = __popc(same & below);
    const int pos = valid ? cursor[group] + rank : -1;
    __syncwarp();  // every lane has read its group's cursor before the leader moves it
    if (valid && rank == 0) cursor[group] += __popc(same);
    __syncwarp();
    if (i < n) {
      inv[i] = pos;
      if (valid) perm[pos] = i;
    }
  }
}

// Row r (blockIdx.x) of dst [rows, D] (dense) = src row perm[r] / k.
__global__ void __launch_bounds__(kMoeThreads)
    gather_rows(View2<const float> src, const int32_t* perm, int k, float* dst) {
  const int64_t r = blockIdx.x;
  const int64_t D = src.cols;
  const float* s = src.row(perm[r] / k);
  float* d = dst + r * D;
  for (int64_t c = threadIdx.x; c < D; c += kMoeThreads) d[c] = s[c];
}

// The route weight of row r of a SwiGLU launch. moe: the (token, slot) entry perm[r] of
// weights [T, k], or 1 without perm (the shared expert).
struct PermutedWeight {
  const int32_t* perm;
  int k;
  View2<const float> weights;
  __device__ float operator()(int64_t r) const {
    if (!perm) return 1.f;
    const int f = perm[r];
    return weights(f / k, f % k);
  }
};
// expert: w[r * stride], or 1 without w.
struct StridedWeight {
  const float* w;
  int64_t stride;
  __device__ float operator()(int64_t r) const { return w ? w[r * stride] : 1.f; }
};

// Row r (blockIdx.x) of g, u [rows, I] (dense): g <- SiLU(g') u' w with the clamps of the
// header, in place; w = row_weight(r). One body for moe and expert (the same bits).
template <class RowWeight>
__global__ void __launch_bounds__(kMoeThreads)
    swiglu_rows(float* g, const float* u, int64_t I, RowWeight row_weight, float limit) {
  const int64_t r = blockIdx.x;
  const float rw = row_weight(r);
  float* gr = g + r * I;
  const float* ur = u + r * I;
  for (int64_t i = threadIdx.x; i < I; i += kMoeThreads) {
    float gv = gr[i], uv = ur[i];
    if (limit > 0.f) {  // std::clamp(u, -limit, limit) and std::min(g, limit): NaN stays NaN
      uv = uv < -limit ? -limit : (limit < uv ? limit : uv);
      gv = limit < gv ? limit : gv;
    }
    gr[i] = gv / (1.f + expf(-gv)) * uv * rw;
  }
}

// Row t (blockIdx.x) of y [T, D] (strided) <- y[t] + out[t] (out dense [T, D]): expert's
// accumulate, ref::expert's `y += out` (one FP32 add per element).
__global__ void __launch_bounds__(kMoeThreads) add_rows(const float* out, View2<float> y) {
  const int64_t t = blockIdx.x;
  const int64_t D = y.cols;
  float* yr = y.row(t);
  const float* o = out + t * D;
  for (int64_t d = threadIdx.x; d < D; d += kMoeThreads) yr[d] = yr[d] + o[d];
}

// Token t (blockIdx.x): y[t] = sum of out rows inv[t*k + c], ascending, from 0, then + y[t]
// (the shared expert's output) when add_y; a NaN row when an entry is in no group.
__global__ void __launch_bounds__(kMoeThreads)
    combine_rows(const float* out, const int32_t* inv, int k, bool add_y, View2<float> y) {
  extern __shared__ int order[];  // [k]
  __shared__ int routed;
  const int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    int ok = 1;
    for (int c = 0; c < k; ++c) {  // insertion sort of the k positions
      const int p = inv[t * k + c];
      ok &= p >= 0;
      int j = c;
      for (; j > 0 && order[j - 1] > p; --j) order[j] = order[j - 1];
      order[j] = p;
    }
    routed = ok;
  }
  __syncthreads();
  const int64_t D = y.cols;
  float* yr = y.row(t);
  for (int64_t d = threadIdx.x; d < D; d += kMoeThreads) {
    if (!routed) {
      yr[d] = NAN;
      continue;
    }
    float acc = 0.f;
    for (int j = 0; j < k; ++j) acc += out[int64_t(order[j]) * D + d];
    if (add_y) acc += yr[d];
    yr[d] = acc;
  }
}

// One SGEMM of the row-major product C [rows, out] = A [rows, in] W[out, in]^T, in the
// column-major view C^T [out, rows] = (W as column-major [in, out])^T A^T.
void linear(cublasHandle_t h, const float* W, int64_t out, int64_t in, const float* A, int64_t lda,
            int64_t rows, float* C, int64_t ldc) {
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(rows), int(in), &one, W,
                                int(in), A, int(lda), &zero, C, int(ldc)));
}

// SwiGLU over `rows` rows of g, u [rows, I] into g (row r weighted by row_weight(r)), then
// act_quant's round trip of h (per row and 128-block).
template <class RowWeight>
void swiglu(float* g, const float* u, int64_t rows, int64_t I, RowWeight row_weight, double limit,
            bool act_quant, cudaStream_t stream) {
  swiglu_rows<<<static_cast<unsigned>(rows), kMoeThreads, 0, stream>>>(g, u, I, row_weight,
                                                                       float(limit));
  DSV4_CUDA_CHECK(cudaGetLastError());
  if (act_quant) {
    const View2<float> h = view2(g, rows, I);
    quant_fp8(QuantFp8Params<float>{h, h, kActBlock, 0}, stream);
  }
}

// The three matrices of an expert: W1, W3 [I, D], W2 [D, I].
enum class Which { w1, w3, w2 };

// Where the SGEMMs read an expert's FP32 weights. cuda::moe: straight from the FP32 stacks.
struct Fp32Weights {
  const MoeParams<float>& p;
  bool has_shared() const { return p.shared_w1 != nullptr; }
  const float* routed(Which m, int64_t e) const {
    const int64_t n = p.inter * p.route.x.cols;  // I D elements per matrix
    return (m == Which::w1 ? p.w1 : m == Which::w3 ? p.w3 : p.w2) + e * n;
  }
  const float* shared(Which m) const {
    return m == Which::w1 ? p.shared_w1 : m == Which::w3 ? p.shared_w3 : p.shared_w2;
  }
};

// cuda::moe_compact: each matrix dequantised (exactly) into the scratch right before its
// SGEMM, on the same stream: W1 and W2 into slot 0, W3 into slot 1. The shared expert is FP8
// when the compact weights have it, else MoeParams' FP32 one.
struct CompactWeights {
  const MoeParams<float>& p;
  const MoeCompactWeights& w;
  float* scratch;  // [kMoeDequantSlots, I * D]
  cudaStream_t stream;
  float* slot(Which m) const {
    return scratch + (m == Which::w3 ? p.inter * p.route.x.cols : int64_t(0));
  }
  bool fp8_shared() const { return w.shared_w1.codes != nullptr; }
  bool has_shared() const { return fp8_shared() || p.shared_w1 != nullptr; }
  const float* routed(Which m, int64_t e) const {
    float* dst = slot(m);
    dequant_fp4(m == Which::w1 ? w.w1 : m == Which::w3 ? w.w3 : w.w2, e, dst, stream);
    return dst;
  }
  const float* shared(Which m) const {
    if (!fp8_shared()) return Fp32Weights{p}.shared(m);
    float* dst = slot(m);
    dequant_fp8(m == Which::w1 ? w.shared_w1 : m == Which::w3 ? w.shared_w3 : w.shared_w2, dst,
                stream);
    return dst;
  }
};

std::string stack_shape(const Fp4WeightStack& s) {
  std::string out = "[";  // appended, not "[" + to_string(..): GCC 12's -Wrestrict misfires
  out += std::to_string(s.count) + ", " + std::to_string(s.rows) + ", " + std::to_string(s.cols);
  return out + "]";
}

// op: the caller's name in the messages; dims: the expected shape's names, "[E, I, D]" or
// "[E, D, I]".
void check_stack(const char* op, const Fp4WeightStack& s, const char* name, const char* dims,
                 int64_t E, int64_t rows, int64_t cols) {
  require(s.count == E && s.rows == rows && s.cols == cols,
          std::string(op) + ": FP4 " + name + " is a stack " + stack_shape(s) + "; expected " +
              dims + " = [" + std::to_string(E) + ", " + std::to_string(rows) + ", " +
              std::to_string(cols) + "]");
  require((s.codes && s.scales) || E * rows * cols == 0,
          std::string(op) + ": FP4 " + name + " has null codes or scales");
}

void check_fp8(const char* op, const Fp8Weight& s, const char* name, int64_t rows, int64_t cols) {
  require(s.rows == rows && s.cols == cols && s.block > 0 && s.scales,
          std::string(op) + ": FP8 " + name + " is [" + std::to_string(s.rows) + ", " +
              std::to_string(s.cols) + "] with block " + std::to_string(s.block) +
              (s.scales ? "" : " and null scales") + "; expected [" + std::to_string(rows) +
              ", " + std::to_string(cols) + "], block > 0");
}

}  // namespace

// The body of moe and moe_compact (steps 1-7 of the header), over a source of expert weights.
struct MoeRun {
  template <class Weights>
  static void run(const MoeParams<float>& p, MoeWorkspace& ws, cudaStream_t stream,
                  const Weights& weights);
  static float* dequant_scratch(MoeWorkspace& ws) { return ws.dequant_.data(); }
};

void validate_moe(const MoeParams<float>& p) {
  const auto& r = p.route;
  const int64_t T = r.x.rows, D = r.x.cols, I = p.inter, k = r.topk;
  validate_moe_route(r);  // ref::moe starts with moe_route
  require(p.y.rows == T && p.y.cols == D, "moe: output 'y' has the wrong shape");
  if (T > 0 || p.shared_w1)  // ref::expert runs (and checks inter) only then
    require(I > 0, "expert: inter must be positive");
  // This twin's limits.
  require(T * k <= INT_MAX && I <= INT_MAX && (T == 0 || (p.y.ld >= D && p.y.ld <= INT_MAX)),
          "moe: sizes beyond cuBLAS's int range (tokens * topk, inter, y row stride)");
}

MoeWorkspace::MoeWorkspace(int64_t max_tokens, int64_t dim, int64_t experts, int64_t topk,
                           int64_t inter, MoeWeightForm form)
    : max_tokens_(max_tokens),
      dim_(dim),
      experts_(experts),
      topk_(topk),
      inter_(inter),
      form_(form),
      route_(max_tokens, experts) {
  require(dim > 0 && topk > 0 && inter > 0, "MoeWorkspace: needs positive D, topk and inter");
  const size_t rows = size_t(max_tokens * topk);
  xq_ = DeviceBuffer<float>(size_t(max_tokens * dim));
  rows_ = DeviceBuffer<float>(rows * size_t(dim));
  g_ = DeviceBuffer<float>(rows * size_t(inter));
  u_ = DeviceBuffer<float>(rows * size_t(inter));
  perm_ = DeviceBuffer<int32_t>(rows);
  inv_ = DeviceBuffer<int32_t>(rows);
  if (max_tokens > 0) offsets_ = DeviceBuffer<int32_t>(size_t(experts + 1));  // 0 tokens: no device
  host_offsets_.assign(size_t(experts + 1), 0);
  if (form == MoeWeightForm::compact && max_tokens > 0)
    dequant_ = DeviceBuffer<float>(size_t(kMoeDequantSlots * inter * dim));
}

size_t MoeWorkspace::bytes() const {
  return xq_.bytes() + rows_.bytes() + g_.bytes() + u_.bytes() + dequant_.bytes() +
         perm_.bytes() + inv_.bytes() + offsets_.bytes();
}

template <class Weights>
void MoeRun::run(const MoeParams<float>& p, MoeWorkspace& ws, cudaStream_t stream,
                 const Weights& weights) {
  validate_moe(p);
  const auto& r = p.route;
  const int64_t T = r.x.rows, D = r.x.cols, E = r.experts, k = r.topk, I = p.inter;
  require(T <= ws.max_tokens() && D == ws.dim() && E == ws.experts() && k == ws.topk() &&
              I == ws.inter(),
          "moe: the workspace holds " + std::to_string(ws.max_tokens()) +
              " tokens of (D, E, topk, I) = (" + std::to_string(ws.dim()) + ", " +
              std::to_string(ws.experts()) + ", " + std::to_string(ws.topk()) + ", " +
              std::to_string(ws.inter()) + "); the call needs " + std::to_string(T) + " of (" +
              std::to_string(D) + ", " + std::to_string(E) + ", " + std::to_string(k) + ", " +
              std::to_string(I) + ")");
  const NvtxRange range("moe");
  if (T == 0) return;

  // 1-3: route, group the entries by expert, bring the group sizes to the host.
  moe_route(r, ws.route_, stream);
  permute_by_expert<<<1, kPermuteThreads, size_t(E) * sizeof(int), stream>>>(
      r.chosen, int(k), int(E), ws.perm_.data(), ws.inv_.data(), ws.offsets_.data());
  DSV4_CUDA_CHECK(cudaGetLastError());
  DSV4_CUDA_CHECK(cudaMemcpyAsync(ws.host_offsets_.data(), ws.offsets_.data(),
                                  size_t(E + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<int32_t>& off = ws.host_offsets_;
  const int64_t routed_rows = off[size_t(E)];

  // 4: the experts' input.
  View2<const float> xin = r.x;
  if (p.act_quant) {
    const View2<float> xq = view2(ws.xq_.data(), T, D);
    quant_fp8(QuantFp8Params<float>{r.x, xq, kActBlock, 0}, stream);
    xin = xq;
  }
  cublasHandle_t h = ws.route_.handle(stream);
  float* g = ws.g_.data();
  float* u = ws.u_.data();

  // 5: the shared expert, straight into y (the combine adds the routed sum before it).
  const bool shared = weights.has_shared();
  if (shared) {
    linear(h, weights.shared(Which::w1), I, D, xin.data, xin.ld, T, g, I);
    linear(h, weights.shared(Which::w3), I, D, xin.data, xin.ld, T, u, I);
    swiglu(g, u, T, I, PermutedWeight{nullptr, int(k), r.weights}, p.swiglu_limit, p.act_quant,
           stream);
    linear(h, weights.shared(Which::w2), D, I, g, I, T, p.y.data, p.y.ld);
  }

  // 6: the routed experts on their gathered rows (the outputs overwrite the rows).
  float* rows = ws.rows_.data();
  if (routed_rows > 0) {
    gather_rows<<<static_cast<unsigned>(routed_rows), kMoeThreads, 0, stream>>>(
        xin, ws.perm_.data(), int(k), rows);
    DSV4_CUDA_CHECK(cudaGetLastError());
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = off[size_t(e + 1)] - off[size_t(e)], r0 = off[size_t(e)];
      if (n == 0) continue;
      linear(h, weights.routed(Which::w1, e), I, D, rows + r0 * D, D, n, g + r0 * I, I);
      linear(h, weights.routed(Which::w3, e), I, D, rows + r0 * D, D, n, u + r0 * I, I);
    }
    swiglu(g, u, routed_rows, I, PermutedWeight{ws.perm_.data(), int(k), r.weights},
           p.swiglu_limit, p.act_quant, stream);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = off[size_t(e + 1)] - off[size_t(e)], r0 = off[size_t(e)];
      if (n == 0) continue;
      linear(h, weights.routed(Which::w2, e), D, I, g + r0 * I, I, n, rows + r0 * D, D);
    }
  }

  // 7: the combine, in the reference's order of additions.
  combine_rows<<<static_cast<unsigned>(T), kMoeThreads, size_t(k) * sizeof(int), stream>>>(
      rows, ws.inv_.data(), int(k), shared, p.y);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void moe(const MoeParams<float>& p, MoeWorkspace& ws, cudaStream_t stream) {
  MoeRun::run(p, ws, stream, Fp32Weights{p});
}

void moe(const MoeParams<float>& p, cudaStream_t stream) {
  validate_moe(p);  // before any device work
  const auto& r = p.route;
  if (r.x.rows == 0) return;  // nothing to do (and inter may be 0, which no workspace takes)
  MoeWorkspace ws(r.x.rows, r.x.cols, r.experts, r.topk, p.inter);
  moe(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void validate_moe_compact(const MoeParams<float>& p, const MoeCompactWeights& w) {
  validate_moe(p);
  const int64_t E = p.route.experts, I = p.inter, D = p.route.x.cols;
  check_stack("moe_compact", w.w1, "w1", "[E, I, D]", E, I, D);
  check_stack("moe_compact", w.w3, "w3", "[E, I, D]", E, I, D);
  check_stack("moe_compact", w.w2, "w2", "[E, D, I]", E, D, I);
  const int present = (w.shared_w1.codes != nullptr) + (w.shared_w3.codes != nullptr) +
                      (w.shared_w2.codes != nullptr);
  require(present == 0 || present == 3,
          "moe_compact: the FP8 shared expert needs all of shared_w1, shared_w3 and shared_w2 (" +
              std::to_string(present) + " of 3 given)");
  if (present) {
    check_fp8("moe_compact", w.shared_w1, "shared_w1", I, D);
    check_fp8("moe_compact", w.shared_w3, "shared_w3", I, D);
    check_fp8("moe_compact", w.shared_w2, "shared_w2", D, I);
  }
}

void moe_compact(const MoeParams<float>& p, const MoeCompactWeights& w, MoeWorkspace& ws,
                 cudaStream_t stream) {
  validate_moe_compact(p, w);
  require(ws.form() == MoeWeightForm::compact,
          "moe_compact: the workspace was made for FP32 weights (MoeWeightForm::fp32); it has no "
          "dequantisation scratch");
  // run() checks the workspace's shape, so the scratch [2, I, D] fits.
  MoeRun::run(p, ws, stream, CompactWeights{p, w, MoeRun::dequant_scratch(ws), stream});
}

size_t moe_compact_bytes(const MoeCompactWeights& w) {
  size_t b = 0;
  for (const Fp4WeightStack* s : {&w.w1, &w.w3, &w.w2})
    b += size_t(s->count) * fp4_weight_bytes(s->rows, s->cols);
  for (const Fp8Weight* s : {&w.shared_w1, &w.shared_w3, &w.shared_w2})
    if (s->codes) b += fp8_weight_bytes(s->rows, s->cols, s->block);
  return b;
}

size_t moe_fp32_expert_bytes(int64_t experts, int64_t inter, int64_t dim, bool shared) {
  constexpr int64_t kMatrices = 3;  // W1, W3, W2
  return size_t(kMatrices * (experts + (shared ? 1 : 0)) * inter * dim) * sizeof(float);
}

// ---- expert ---------------------------------------------------------------------------------

namespace {

// Where expert's SGEMMs read the expert's FP32 matrices. expert: p's own.
struct ExpertFp32 {
  const ExpertParams<float>& p;
  const float* matrix(Which m) const {
    return m == Which::w1 ? p.w1 : m == Which::w3 ? p.w3 : p.w2;
  }
};

// expert_compact: each matrix dequantised (exactly) into the scratch right before its SGEMM,
// on the same stream: W1 and W2 into slot 0, W3 into slot 1 (moe_compact's use of the slots).
float* dequant_slot(float* scratch, Which m, int64_t slot_elems) {
  return scratch + (m == Which::w3 ? slot_elems : int64_t(0));
}

struct ExpertFp4 {
  const Fp4WeightStack &w1, &w3, &w2;
  int64_t index;
  float* scratch;  // [kMoeDequantSlots, I * D]
  int64_t slot_elems;
  cudaStream_t stream;
  const float* matrix(Which m) const {
    float* dst = dequant_slot(scratch, m, slot_elems);
    dequant_fp4(m == Which::w1 ? w1 : m == Which::w3 ? w3 : w2, index, dst, stream);
    return dst;
  }
};

struct ExpertFp8 {
  const Fp8Weight &w1, &w3, &w2;
  float* scratch;  // [kMoeDequantSlots, I * D]
  int64_t slot_elems;
  cudaStream_t stream;
  const float* matrix(Which m) const {
    float* dst = dequant_slot(scratch, m, slot_elems);
    dequant_fp8(m == Which::w1 ? w1 : m == Which::w3 ? w3 : w2, dst, stream);
    return dst;
  }
};

// ref::expert's checks and messages, then this twin's limits on x and y (not the weights,
// which expert and the two expert_compact overloads take from different places).
void validate_expert_rows(const ExpertParams<float>& p) {
  const int64_t T = p.x.rows, D = p.x.cols, I = p.inter;
  require(I > 0, "expert: inter must be positive");
  require(p.y.rows == T && p.y.cols == D, "expert: output 'y' has the wrong shape");
  if (T == 0) return;  // no device work: nothing else is read
  require(p.x.data != nullptr && p.y.data != nullptr, "expert: x or y is null");
  require(p.x.ld >= D && p.y.ld >= D,
          "expert: row strides below D = " + std::to_string(D) + " (x ld " +
              std::to_string(p.x.ld) + ", y ld " + std::to_string(p.y.ld) + ")");
  require(linear_fits_int(T, I, D, p.x.ld, I) && linear_fits_int(T, D, I, I, p.y.ld),
          "expert: sizes beyond cuBLAS's int range (rows, D, I, row strides)");
}

}  // namespace

// The body of expert and expert_compact (steps 1-4 of the header), over a source of the
// expert's FP32 matrices.
struct ExpertRun {
  // The workspace against p (shape; form compact when `compact`); `op` names the caller.
  static void check_workspace(const char* op, const ExpertParams<float>& p,
                              const ExpertWorkspace& ws, bool compact);
  template <class Weights>
  static void run(const ExpertParams<float>& p, ExpertWorkspace& ws, cudaStream_t stream,
                  const Weights& weights);
  static float* dequant_scratch(ExpertWorkspace& ws) { return ws.dequant_.data(); }
};

ExpertWorkspace::ExpertWorkspace(int64_t max_tokens, int64_t dim, int64_t inter,
                                 MoeWeightForm form)
    : max_tokens_(max_tokens), dim_(dim), inter_(inter), form_(form) {
  require(max_tokens >= 0 && dim > 0 && inter > 0,
          "ExpertWorkspace: needs max_tokens >= 0 and positive D and inter");
  xq_ = DeviceBuffer<float>(size_t(max_tokens * dim));  // 0 tokens: nothing allocated
  g_ = DeviceBuffer<float>(size_t(max_tokens * inter));
  u_ = DeviceBuffer<float>(size_t(max_tokens * inter));
  if (form == MoeWeightForm::compact && max_tokens > 0)
    dequant_ = DeviceBuffer<float>(size_t(kMoeDequantSlots * inter * dim));
}

size_t ExpertWorkspace::bytes() const {
  return xq_.bytes() + g_.bytes() + u_.bytes() + dequant_.bytes();
}

void validate_expert(const ExpertParams<float>& p) {
  validate_expert_rows(p);
  if (p.x.rows > 0)
    require(p.w1 != nullptr && p.w3 != nullptr && p.w2 != nullptr,
            "expert: w1, w3 or w2 is null");
}

void ExpertRun::check_workspace(const char* op, const ExpertParams<float>& p,
                                const ExpertWorkspace& ws, bool compact) {
  const int64_t T = p.x.rows, D = p.x.cols, I = p.inter;
  require(T <= ws.max_tokens() && D == ws.dim() && I == ws.inter(),
          std::string(op) + ": the workspace holds " + std::to_string(ws.max_tokens()) +
              " rows of (D, I) = (" + std::to_string(ws.dim()) + ", " +
              std::to_string(ws.inter()) + "); the call needs " + std::to_string(T) + " of (" +
              std::to_string(D) + ", " + std::to_string(I) + ")");
  if (compact)
    require(ws.form() == MoeWeightForm::compact,
            std::string(op) +
                ": the workspace was made for FP32 weights (MoeWeightForm::fp32); it has no "
                "dequantisation scratch");
}

template <class Weights>
void ExpertRun::run(const ExpertParams<float>& p, ExpertWorkspace& ws, cudaStream_t stream,
                    const Weights& weights) {
  const int64_t T = p.x.rows, D = p.x.cols, I = p.inter;
  const NvtxRange range("expert");
  if (T == 0) return;

  // 1: the input, quantised into the workspace under act_quant.
  View2<const float> xin = p.x;
  if (p.act_quant) {
    const View2<float> xq = view2(ws.xq_.data(), T, D);
    quant_fp8(QuantFp8Params<float>{p.x, xq, kActBlock, 0}, stream);
    xin = xq;
  }
  // 2-3: g, u, then h in g.
  cublasHandle_t h = ws.blas_.on(stream);
  float* g = ws.g_.data();
  float* u = ws.u_.data();
  linear(h, weights.matrix(Which::w1), I, D, xin.data, xin.ld, T, g, I);
  linear(h, weights.matrix(Which::w3), I, D, xin.data, xin.ld, T, u, I);
  swiglu(g, u, T, I, StridedWeight{p.route_weight, p.weight_stride}, p.swiglu_limit, p.act_quant,
         stream);
  // 4: out = h W2^T, into y or (accumulate) the scratch then added to y.
  if (!p.accumulate) {
    linear(h, weights.matrix(Which::w2), D, I, g, I, T, p.y.data, p.y.ld);
    return;
  }
  float* out = ws.xq_.data();  // [T, D]: the first two SGEMMs have read xq (stream order)
  linear(h, weights.matrix(Which::w2), D, I, g, I, T, out, D);
  add_rows<<<static_cast<unsigned>(T), kMoeThreads, 0, stream>>>(out, p.y);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void expert(const ExpertParams<float>& p, ExpertWorkspace& ws, cudaStream_t stream) {
  validate_expert(p);
  ExpertRun::check_workspace("expert", p, ws, false);
  ExpertRun::run(p, ws, stream, ExpertFp32{p});
}

void expert_compact(const ExpertParams<float>& p, const Fp4WeightStack& w1,
                    const Fp4WeightStack& w3, const Fp4WeightStack& w2, int64_t index,
                    ExpertWorkspace& ws, cudaStream_t stream) {
  constexpr const char* kOp = "expert_compact";
  validate_expert_rows(p);
  const int64_t E = w1.count, I = p.inter, D = p.x.cols;
  check_stack(kOp, w1, "w1", "[E, I, D]", E, I, D);
  check_stack(kOp, w3, "w3", "[E, I, D]", E, I, D);
  check_stack(kOp, w2, "w2", "[E, D, I]", E, D, I);
  require(index >= 0 && index < E, std::string(kOp) + ": expert index " + std::to_string(index) +
                                       " outside the stacks' [0, " + std::to_string(E) + ")");
  ExpertRun::check_workspace(kOp, p, ws, true);
  ExpertRun::run(p, ws, stream,
                 ExpertFp4{w1, w3, w2, index, ExpertRun::dequant_scratch(ws), I * D, stream});
}

void expert_compact(const ExpertParams<float>& p, const Fp8Weight& w1, const Fp8Weight& w3,
                    const Fp8Weight& w2, ExpertWorkspace& ws, cudaStream_t stream) {
  constexpr const char* kOp = "expert_compact";
  validate_expert_rows(p);
  const int64_t I = p.inter, D = p.x.cols;
  check_fp8(kOp, w1, "w1", I, D);
  check_fp8(kOp, w3, "w3", I, D);
  check_fp8(kOp, w2, "w2", D, I);
  require(w1.codes && w3.codes && w2.codes, std::string(kOp) + ": an FP8 matrix has null codes");
  ExpertRun::check_workspace(kOp, p, ws, true);
  ExpertRun::run(p, ws, stream,
                 ExpertFp8{w1, w3, w2, ExpertRun::dequant_scratch(ws), I * D, stream});
}

}  // namespace dsv4::cuda
