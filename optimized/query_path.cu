#include "optimized/query_path.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rope.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

void validate(const QueryPathParams<float>& p) {
  const int64_t T = p.x.rows, D = p.x.cols, H = p.heads, d = p.head_dim;
  // The reference's checks, in its order and with its messages.
  require(p.cq.rows == T && p.cq.cols == p.q_rank,
          "query_path: output 'cq': expected shape " + shape_string({T, p.q_rank}));
  require(p.q.rows == T && p.q.cols == H * d && p.q.ld == H * d,
          "query_path: output 'q': expected dense shape " + shape_string({T, H * d}));
  // What its helpers (rope) would reject after the projections.
  require(p.rope.rope_dim <= d, "rope: rope_dim " + std::to_string(p.rope.rope_dim) +
                                    " exceeds head_dim " + std::to_string(d));
  (void)rope_inv_freq(p.rope);  // rope_dim even and positive, theta, YaRN
  // This twin's limits.
  require(D > 0 && p.q_rank > 0 && H > 0 && d > 0,
          "query_path: D (x columns), q_rank, heads and head_dim must be positive, found " +
              std::to_string(D) + ", " + std::to_string(p.q_rank) + ", " + std::to_string(H) +
              ", " + std::to_string(d));
  require(p.wq_a && p.q_norm && p.wq_b, "query_path: wq_a, q_norm and wq_b must be device pointers, found null");
  require(p.rope.rope_dim <= kRopeMaxDim, "query_path: rope_dim at most " + std::to_string(kRopeMaxDim) +
                                              " on the GPU, found " + std::to_string(p.rope.rope_dim));
  require(linear_fits_int(T, p.q_rank, D, p.x.ld, p.cq.ld) &&
              linear_fits_int(T, H * d, p.q_rank, p.q_rank, H * d) && T * H <= INT_MAX,
          "query_path: sizes beyond cuBLAS's int range (T, D, q_rank, H*d, row strides)");
}

}  // namespace

QueryPathWorkspace::QueryPathWorkspace(int64_t max_tokens, int64_t dim, int64_t q_rank)
    : max_tokens_(max_tokens), dim_(dim), q_rank_(q_rank) {
  require(max_tokens >= 0 && dim > 0 && q_rank > 0,
          "QueryPathWorkspace: needs max_tokens >= 0 and positive D and q_rank");
  xq_ = DeviceBuffer<float>(size_t(max_tokens * dim));
  cqq_ = DeviceBuffer<float>(size_t(max_tokens * q_rank));
}

void query_path(const QueryPathParams<float>& p, QueryPathWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.x.rows, D = p.x.cols, H = p.heads, d = p.head_dim, R = p.q_rank;
  require(T <= ws.max_tokens() && D == ws.dim() && R == ws.q_rank(),
          "query_path: the workspace holds " + std::to_string(ws.max_tokens()) + " rows of D " +
              std::to_string(ws.dim()) + ", q_rank " + std::to_string(ws.q_rank()) + "; the call needs " +
              std::to_string(T) + " of D " + std::to_string(D) + ", q_rank " + std::to_string(R));
  const NvtxRange range("query_path");
  if (T == 0) return;

  // c_q = RMSNorm_w(Wq_a x), x FP8-rounded first under act_quant.
  View2<const float> x = p.x;
  if (p.act_quant) {
    const View2<float> xq = view2(ws.xq_.data(), T, D);
    quant_fp8(QuantFp8Params<float>{p.x, xq, kActBlock, 0}, stream);
    x = xq;
  }
  linear("query_path", ws.blas_, x, p.wq_a, R, p.cq, stream);
  rmsnorm(RmsNormParams<float>{p.cq, p.q_norm, p.cq, p.eps}, stream);

  // q = Wq_b c_q, c_q FP8-rounded (a copy: cq is returned unquantised) under act_quant.
  View2<const float> cq = p.cq;
  if (p.act_quant) {
    const View2<float> cqq = view2(ws.cqq_.data(), T, R);
    quant_fp8(QuantFp8Params<float>{p.cq, cqq, kActBlock, 0}, stream);
    cq = cqq;
  }
  linear("query_path", ws.blas_, cq, p.wq_b, H * d, p.q, stream);

  // Per-head unweighted RMS (q as [T*H, d]), then RoPE on the last d_r dims of every head.
  const View2<float> heads{p.q.data, T * H, d, d};
  rmsnorm(RmsNormParams<float>{heads, nullptr, heads, p.eps}, stream);
  rope(RopeParams<float>{p.q, H, d, p.pos0, 1, false, p.rope}, stream);
}

void query_path(const QueryPathParams<float>& p, cudaStream_t stream) {
  validate(p);
  QueryPathWorkspace ws(p.x.rows, p.x.cols, p.q_rank);
  query_path(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
