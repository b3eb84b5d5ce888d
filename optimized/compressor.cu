#include "optimized/compressor.cuh"

#include <cuda_bf16.h>

#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/hadamard.cuh"
#include "optimized/quant_fp4.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rope.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kBf16Threads = 64;

// Where the values and logits of the tokens an ingest call pools or keeps live: token t >= pos0
// is row t - pos0 of the chunk's projections a, z [n, ld] (logit z + ape[t mod m]); an earlier
// token is in the state as it was before the call (kv, score [c*m, ld]; nullptr: a fresh state,
// kv 0 and score -inf): the current rows (from row cur) for the block in progress at pos0, the
// previous rows 0..m-1 (CSA) for the block before it.
struct TokenSource {
  const float* a;
  const float* z;
  const float* ape;  // [m, ld]
  const float* kv;
  const float* score;
  int64_t ld;    // c*dc
  int64_t pos0;  // the chunk's first position
  int64_t m;
  int64_t cur;   // first current row of the state (CSA m, HCA 0)
};

// Row k of block blk (token blk*m + k; blk may be -1: the absent block before block 0), at
// column col: its value and logit.
__device__ __forceinline__ void load_token(const TokenSource& s, int64_t blk, int64_t k, int64_t col, float& val,
                                           float& logit) {
  const int64_t t = blk * s.m + k;
  if (t >= s.pos0) {
    const int64_t r = t - s.pos0;
    val = s.a[r * s.ld + col];
    logit = s.z[r * s.ld + col] + s.ape[k * s.ld + col];
  } else if (s.kv == nullptr) {
    val = 0.f;
    logit = -INFINITY;
  } else {
    const int64_t row = blk == s.pos0 / s.m ? s.cur + k : k;
    val = s.kv[row * s.ld + col];
    logit = s.score[row * s.ld + col];
  }
}

// Entry i (blockIdx.x) of absolute block blk0 + i: per channel ch, the softmax over the pooled
// rows' logits of the rows' values. CSA: rows of blk - 1 at column ch, then rows of blk at
// column dc + ch; HCA: rows of blk at ch.
__global__ void __launch_bounds__(kPoolThreads)
    pool_entries(TokenSource s, int64_t blk0, int64_t dc, bool overlap, View2<float> entries) {
  const int64_t blk = blk0 + blockIdx.x;
  const int64_t half = overlap ? dc : 0;
  float* out = entries.row(blockIdx.x);
  for (int64_t ch = threadIdx.x; ch < dc; ch += kPoolThreads) {
    float v, l;
    float mx = -INFINITY;
    if (overlap)
      for (int64_t k = 0; k < s.m; ++k) {
        load_token(s, blk - 1, k, ch, v, l);
        mx = fmaxf(mx, l);
      }
    for (int64_t k = 0; k < s.m; ++k) {
      load_token(s, blk, k, half + ch, v, l);
      mx = fmaxf(mx, l);
    }
    float den = 0.f, num = 0.f;
    if (mx != -INFINITY) {
      if (overlap)
        for (int64_t k = 0; k < s.m; ++k) {
          load_token(s, blk - 1, k, ch, v, l);
          const float w = expf(l - mx);
          den += w;
          num += w * v;
        }
      for (int64_t k = 0; k < s.m; ++k) {
        load_token(s, blk, k, half + ch, v, l);
        const float w = expf(l - mx);
        den += w;
        num += w * v;
      }
    }
    out[ch] = den > 0.f ? num / den : 0.f;
  }
}

// The state after an ingest of tokens pos0 .. pos_end - 1 that emitted `emitted` entries,
// written over the state before it (kv, score [c*m, ld]; may be the arrays s reads: each
// thread owns the element (k, col) of the current rows and, CSA, of the previous rows, and
// reads both before writing). With blk = floor(pos_end / m) the block in progress after the
// call and fill = pos_end - blk*m its tokens seen:
//   current row k < fill:   token blk*m + k (from the chunk, or the old current row)
//   current row k >= fill:  cleared (kv 0, score -inf) if anything was emitted, else unchanged
//   previous row k (CSA):   token (blk-1)*m + k if anything was emitted (the block emitted
//                           last: the chunk, or the old current row), else unchanged
__global__ void __launch_bounds__(kStateThreads)
    update_state(TokenSource s, int64_t pos_end, int64_t emitted, bool overlap, float* kv, float* score) {
  const int64_t e = int64_t(blockIdx.x) * kStateThreads + threadIdx.x;
  if (e >= s.m * s.ld) return;
  const int64_t k = e / s.ld, col = e % s.ld;
  const int64_t blk = pos_end / s.m, fill = pos_end - blk * s.m;
  const int64_t cur_at = (s.cur + k) * s.ld + col, prev_at = k * s.ld + col;
  // The old values (a fresh state: kv 0, score -inf).
  const float old_cur_kv = s.kv ? s.kv[cur_at] : 0.f, old_cur_score = s.score ? s.score[cur_at] : -INFINITY;
  float cur_kv = old_cur_kv, cur_score = old_cur_score;
  if (k < fill)
    load_token(s, blk, k, col, cur_kv, cur_score);
  else if (emitted > 0) {
    cur_kv = 0.f;
    cur_score = -INFINITY;
  }
  if (overlap) {
    float prev_kv = s.kv ? s.kv[prev_at] : 0.f, prev_score = s.score ? s.score[prev_at] : -INFINITY;
    if (emitted > 0) load_token(s, blk - 1, k, col, prev_kv, prev_score);
    kv[prev_at] = prev_kv;
    score[prev_at] = prev_score;
  }
  kv[cur_at] = cur_kv;
  score[cur_at] = cur_score;
}

// Rounds columns [from, cols) of every row to BF16 (round to nearest even), in place: the
// RoPE dims of an fp8 entry (ref::round_bf16_tail). Grid [rows].
__global__ void __launch_bounds__(kBf16Threads) round_bf16_tail(View2<float> v, int64_t from) {
  float* r = v.row(blockIdx.x);
  for (int64_t c = from + threadIdx.x; c < v.cols; c += kBf16Threads)
    r[c] = __bfloat162float(__float2bfloat16_rn(r[c]));
}

// ref::compressor_ingest's checks with its messages (check_shape, then x's columns), then the
// RoPE table's own checks and this twin's limits.
void validate_params(const CompressorParams<float>& p, View2<const float> x) {
  const CompressorShape& s = p.shape;
  require(s.dim > 0 && s.head_dim > 0 && s.ratio > 0,
          "compressor: dim, head_dim and ratio must be positive");
  require(p.rope.rope_dim <= s.head_dim, "compressor: rope_dim " + std::to_string(p.rope.rope_dim) +
                                             " exceeds head_dim " + std::to_string(s.head_dim));
  require(x.cols == s.dim, "compressor: tensor 'x': expected " + std::to_string(s.dim) +
                               " columns, found " + std::to_string(x.cols));
  (void)rope_inv_freq(p.rope);  // the RoPE table's own checks (rope_dim, theta, YaRN)
  require(p.rope.rope_dim <= kRopeMaxDim, "compressor: rope_dim at most " + std::to_string(kRopeMaxDim) +
                                              " on the GPU, found " + std::to_string(p.rope.rope_dim));
  if (p.quant == CompressorQuant::fp4_hadamard)
    require((s.head_dim & (s.head_dim - 1)) == 0 && s.head_dim <= kHadamardMaxDim,
            "compressor: quant fp4_hadamard needs head_dim a power of two <= " +
                std::to_string(kHadamardMaxDim) + " on the GPU, found " + std::to_string(s.head_dim));
}

// The workspace holds `rows` tokens of the shape's width, and the sizes fit cuBLAS's int.
void validate_workspace(const CompressorShape& s, View2<const float> x, int64_t rows, const CompressorWorkspace& ws) {
  require(s.dim <= INT_MAX && s.width() <= INT_MAX && x.ld <= INT_MAX && rows <= INT_MAX,
          "compressor: sizes beyond cuBLAS's int range (D, c*dc, x row stride, tokens)");
  require(rows <= ws.max_tokens() && s.width() == ws.width(),
          "compressor: the workspace holds " + std::to_string(ws.max_tokens()) + " tokens of width " +
              std::to_string(ws.width()) + "; the call needs " + std::to_string(rows) + " of width " +
              std::to_string(s.width()));
}

// The reference's compressor_finish_entry over entries [E, dc] of blocks blk0 .. blk0 + E - 1
// (entry i at position (blk0 + i) * m): RMSNorm, RoPE, the quantisation simulation.
void finish_entries(const CompressorParams<float>& p, View2<float> entries, int64_t blk0, cudaStream_t stream) {
  const int64_t m = p.shape.ratio, dc = p.shape.head_dim;
  rmsnorm(RmsNormParams<float>{entries, p.w.norm, entries, p.eps}, stream);
  rope(RopeParams<float>{entries, 1, dc, blk0 * m, m, false, p.rope}, stream);
  switch (p.quant) {
    case CompressorQuant::none:
      break;
    case CompressorQuant::fp8:  // FP8 non-RoPE dims, BF16 RoPE dims
      quant_fp8(QuantFp8Params<float>{entries, entries, kFp8KvBlock, dc - p.rope.rope_dim}, stream);
      round_bf16_tail<<<static_cast<unsigned>(entries.rows), kBf16Threads, 0, stream>>>(entries,
                                                                                          dc - p.rope.rope_dim);
      DSV4_CUDA_CHECK(cudaGetLastError());
      break;
    case CompressorQuant::fp4_hadamard:
      hadamard(HadamardParams<float>{entries, entries}, stream);
      quant_fp4(QuantFp4Params<float>{entries, entries, kFp4Block}, stream);
      break;
  }
}

}  // namespace

CompressorWorkspace::CompressorWorkspace(int64_t max_tokens, const CompressorShape& shape)
    : max_tokens_(max_tokens), width_(shape.width()) {
  require(max_tokens >= 0 && width_ > 0,
          "CompressorWorkspace: needs max_tokens >= 0 and a positive entry width c*dc");
  a_ = DeviceBuffer<float>(size_t(max_tokens * width_));
  z_ = DeviceBuffer<float>(size_t(max_tokens * width_));
}

CompressorWorkspace::~CompressorWorkspace() {
  if (handle_) (void)cublasDestroy(handle_);  // a destructor must not throw
}

void CompressorWorkspace::project(const CompressorParams<float>& p, View2<const float> x, int64_t rows,
                                  cudaStream_t stream) {
  const int64_t W = width_, D = p.shape.dim;
  if (!handle_) {  // created on first use: a workspace of 0 tokens needs no device
    DSV4_CUBLAS_CHECK(cublasCreate(&handle_));
    // The default math mode: FP32 FMA for SGEMM (TF32 only with CUBLAS_TF32_TENSOR_OP_MATH).
    DSV4_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  }
  // Column-major view of the row-major products: a^T [W, rows] = (Wkv [W, D] row-major, i.e.
  // column-major [D, W])^T x^T [D, rows]; same for z with Wgate.
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  DSV4_CUBLAS_CHECK(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(W), int(rows), int(D), &one, p.w.wkv,
                                int(D), x.data, int(x.ld), &zero, a_.data(), int(W)));
  DSV4_CUBLAS_CHECK(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(W), int(rows), int(D), &one, p.w.wgate,
                                int(D), x.data, int(x.ld), &zero, z_.data(), int(W)));
}

DeviceCompressorState::DeviceCompressorState(const CompressorShape& shape)
    : pos_(0), rows_(shape.state_rows()), width_(shape.width()) {
  require(rows_ > 0 && width_ > 0, "DeviceCompressorState: needs a positive ratio and entry width");
}

DeviceCompressorState::DeviceCompressorState(const CompressorState<float>& host)
    : pos_(host.pos), rows_(host.rows), width_(host.width) {
  require(host.pos >= 0 && host.rows > 0 && host.width > 0 &&
              host.kv.size() == size_t(host.rows * host.width) && host.score.size() == host.kv.size(),
          "DeviceCompressorState: the host state has pos " + std::to_string(host.pos) + ", shape " +
              shape_string({host.rows, host.width}) + " and " + std::to_string(host.kv.size()) + " / " +
              std::to_string(host.score.size()) + " kv / score values");
  kv_ = DeviceBuffer<float>(host.kv);
  score_ = DeviceBuffer<float>(host.score);
}

CompressorState<float> download_state(const DeviceCompressorState& state, cudaStream_t stream) {
  CompressorState<float> h;
  h.pos = state.pos();
  h.rows = state.rows();
  h.width = state.width();
  const size_t n = size_t(h.rows * h.width);
  h.kv.assign(n, 0.f);
  h.score.assign(n, -INFINITY);
  if (state.kv() != nullptr) {  // else fresh: kv 0, score -inf
    DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
    DSV4_CUDA_CHECK(cudaMemcpy(h.kv.data(), state.kv(), n * sizeof(float), cudaMemcpyDeviceToHost));
    DSV4_CUDA_CHECK(cudaMemcpy(h.score.data(), state.score(), n * sizeof(float), cudaMemcpyDeviceToHost));
  }
  return h;
}

void compressor_prefill(const CompressorParams<float>& p, View2<const float> x, View2<float> entries,
                        CompressorWorkspace& ws, cudaStream_t stream) {
  const CompressorShape& s = p.shape;
  // ref::compressor_prefill's check, then ref::compressor_ingest's, in their order.
  const int64_t nb = s.ratio > 0 ? x.rows / s.ratio : 0;
  require(entries.rows == nb && entries.cols == s.head_dim,
          "compressor: tensor 'entries': expected shape " + shape_string({nb, s.head_dim}) + ", found " +
              shape_string({entries.rows, entries.cols}));
  validate_params(p, x);
  const int64_t m = s.ratio, rows = nb * m;
  validate_workspace(s, x, rows, ws);
  const NvtxRange range("compressor");
  if (nb == 0) return;
  ws.project(p, x, rows, stream);
  // From position 0 on a fresh state: every pooled token is in the chunk (block -1: absent).
  const TokenSource src{ws.a(), ws.z(), p.w.ape, nullptr, nullptr, s.width(), 0, m, s.overlap ? m : 0};
  pool_entries<<<static_cast<unsigned>(nb), kPoolThreads, 0, stream>>>(src, 0, s.head_dim, s.overlap, entries);
  DSV4_CUDA_CHECK(cudaGetLastError());
  finish_entries(p, entries, 0, stream);
}

int64_t compressor_ingest(const CompressorParams<float>& p, View2<const float> x, DeviceCompressorState& st,
                          View2<float> entries, CompressorWorkspace& ws, cudaStream_t stream) {
  const CompressorShape& s = p.shape;
  validate_params(p, x);
  require(st.rows_ == s.state_rows() && st.width_ == s.width(),
          "compressor: decode state has shape " + shape_string({st.rows_, st.width_}) + ", expected " +
              shape_string({s.state_rows(), s.width()}));
  const int64_t m = s.ratio, n = x.rows, W = s.width();
  const int64_t E = compressor_entries_emitted(st.pos_, n, m);
  require(entries.rows == E && (E == 0 || entries.cols == s.head_dim),
          "compressor: tensor 'entries': expected shape " + shape_string({E, s.head_dim}) + " (tokens " +
              std::to_string(st.pos_) + " .. " + std::to_string(st.pos_ + n - 1) + "), found " +
              shape_string({entries.rows, entries.cols}));
  validate_workspace(s, x, n, ws);
  require(int64_t(m * W) / kStateThreads < INT_MAX && E <= INT_MAX,
          "compressor: the state (" + std::to_string(m * W) + " values per half) or the entries beyond the grid");
  const NvtxRange range("compressor");
  if (n == 0) return 0;
  ws.project(p, x, n, stream);
  const bool fresh = st.kv_.empty();
  const TokenSource src{ws.a(), ws.z(), p.w.ape, st.kv(), st.score(), W, st.pos_, m, s.overlap ? m : 0};
  if (E > 0) {
    pool_entries<<<static_cast<unsigned>(E), kPoolThreads, 0, stream>>>(src, st.pos_ / m, s.head_dim, s.overlap,
                                                                          entries);
    DSV4_CUDA_CHECK(cudaGetLastError());
    finish_entries(p, entries, st.pos_ / m, stream);
  }
  if (fresh) {  // first use: every element is written by update_state (src reads it as fresh)
    st.kv_ = DeviceBuffer<float>(size_t(st.rows_ * W));
    st.score_ = DeviceBuffer<float>(size_t(st.rows_ * W));
  }
  const int64_t total = m * W;
  update_state<<<static_cast<unsigned>((total + kStateThreads - 1) / kStateThreads), kStateThreads, 0, stream>>>(
      src, st.pos_ + n, E, s.overlap, st.kv_.data(), st.score_.data());
  DSV4_CUDA_CHECK(cudaGetLastError());
  st.pos_ += n;
  return E;
}

}  // namespace dsv4::cuda
