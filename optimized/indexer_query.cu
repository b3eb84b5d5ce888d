#include "optimized/indexer_query.cuh"

#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/hadamard.cuh"
#include "optimized/quant_fp4.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rope.cuh"
#include "reference/constants.h"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

// w[r, h] *= scale for r < rows, h < cols (row stride ld).
__global__ void __launch_bounds__(kIndexerScaleThreads) scale_rows(View2<float> w, float scale) {
  const int64_t i = int64_t(blockIdx.x) * kIndexerScaleThreads + threadIdx.x;
  if (i >= w.rows * w.cols) return;
  const int64_t r = i / w.cols, c = i % w.cols;
  w(r, c) = w(r, c) * scale;
}

bool power_of_two(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

void validate(const IndexerQueryParams<float>& p) {
  const int64_t T = p.cq.rows, HI = p.heads, dI = p.head_dim;
  // The reference's checks, in its order and with its messages.
  require(p.x.rows == T, "indexer_query: tensor 'x': expected " + std::to_string(T) + " rows, found " +
                             std::to_string(p.x.rows));
  require(p.q.rows == T && p.q.cols == HI * dI, "indexer_query: tensor 'q': expected shape " + shape_string({T, HI * dI}));
  require(p.w.rows == T && p.w.cols == HI, "indexer_query: tensor 'w': expected shape " + shape_string({T, HI}));
  require(p.q.ld == HI * dI, "indexer_query: q must be dense");
  // What its helpers would reject.
  require(p.rope.rope_dim <= dI, "rope: rope_dim " + std::to_string(p.rope.rope_dim) + " exceeds head_dim " +
                                     std::to_string(dI));
  (void)rope_inv_freq(p.rope);
  if (p.quant)
    require(power_of_two(dI), "hadamard: d must be a power of two, found " + std::to_string(dI));
  // This twin's limits.
  require(HI > 0 && dI > 0 && p.cq.cols > 0 && p.x.cols > 0,
          "indexer_query: heads, head_dim, q_rank (cq columns) and D (x columns) must be positive");
  require(p.wq_b && p.weights_proj, "indexer_query: wq_b and weights_proj must be device pointers, found null");
  require(p.rope.rope_dim <= kRopeMaxDim, "indexer_query: rope_dim at most " + std::to_string(kRopeMaxDim) +
                                              " on the GPU, found " + std::to_string(p.rope.rope_dim));
  require(linear_fits_int(T, HI * dI, p.cq.cols, p.cq.ld, HI * dI) && linear_fits_int(T, HI, p.x.cols, p.x.ld, p.w.ld) &&
              T * HI <= INT_MAX / 2,
          "indexer_query: sizes beyond cuBLAS's int range (T, q_rank, D, HI*dI, row strides)");
}

}  // namespace

IndexerQueryWorkspace::IndexerQueryWorkspace(int64_t max_tokens, int64_t q_rank)
    : max_tokens_(max_tokens), q_rank_(q_rank) {
  require(max_tokens >= 0 && q_rank > 0, "IndexerQueryWorkspace: needs max_tokens >= 0 and a positive q_rank");
  cqq_ = DeviceBuffer<float>(size_t(max_tokens * q_rank));
}

void indexer_query(const IndexerQueryParams<float>& p, IndexerQueryWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.cq.rows, R = p.cq.cols, HI = p.heads, dI = p.head_dim;
  require(T <= ws.max_tokens() && R == ws.q_rank(),
          "indexer_query: the workspace holds " + std::to_string(ws.max_tokens()) + " rows of q_rank " +
              std::to_string(ws.q_rank()) + "; the call needs " + std::to_string(T) + " of q_rank " + std::to_string(R));
  const NvtxRange range("indexer_query");
  if (T == 0) return;

  // q = Wq_b c_q (c_q FP8-rounded into the workspace under act_quant), RoPE per head.
  View2<const float> cq = p.cq;
  if (p.act_quant) {
    const View2<float> cqq = view2(ws.cqq_.data(), T, R);
    quant_fp8(QuantFp8Params<float>{p.cq, cqq, kActBlock, 0}, stream);
    cq = cqq;
  }
  linear("indexer_query", ws.blas_, cq, p.wq_b, HI * dI, p.q, stream);
  rope(RopeParams<float>{p.q, HI, dI, p.pos0, 1, false, p.rope}, stream);
  if (p.quant) {  // each head a row: q is dense
    const View2<float> heads{p.q.data, T * HI, dI, dI};
    hadamard(HadamardParams<float>{heads, heads}, stream);
    quant_fp4(QuantFp4Params<float>{heads, heads, kFp4Block}, stream);
  }

  // w = (Wweights x) * dI^-1/2 * HI^-1/2: the scale as the reference forms it (double, then T).
  linear("indexer_query", ws.blas_, p.x, p.weights_proj, HI, p.w, stream);
  const float scale = float(1.0 / std::sqrt(double(dI)) / std::sqrt(double(HI)));
  const int64_t n = T * HI;
  scale_rows<<<unsigned((n + kIndexerScaleThreads - 1) / kIndexerScaleThreads), kIndexerScaleThreads, 0, stream>>>(
      p.w, scale);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void indexer_query(const IndexerQueryParams<float>& p, cudaStream_t stream) {
  validate(p);
  IndexerQueryWorkspace ws(p.cq.rows, p.cq.cols);
  indexer_query(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
