#include "optimized/dsa_indexer.cuh"

#include <climits>
#include <cmath>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/hadamard.cuh"
#include "optimized/indexer.cuh"
#include "optimized/layernorm.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rope.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

// The checks of the reference's finish() helper (rope, then dense outputs) and this twin's
// limits on the head geometry, for `op`.
void validate_heads(const std::string& op, View2<float> v, int64_t heads, int64_t dI, const RopeConfig& rope) {
  require(heads > 0 && dI > 0, op + ": heads and head_dim must be positive, found " + std::to_string(heads) +
                                   ", " + std::to_string(dI));
  require(rope.rope_dim <= dI, "rope: rope_dim " + std::to_string(rope.rope_dim) + " exceeds head_dim " +
                                   std::to_string(dI));
  (void)rope_inv_freq(rope);  // rope_dim even and positive, theta, YaRN
  require(v.ld == heads * dI, "dsa_indexer: outputs must be dense");
  require((dI & (dI - 1)) == 0 && dI <= kHadamardMaxDim,
          op + ": head_dim must be a power of two <= " + std::to_string(kHadamardMaxDim) +
              " on the GPU (the Hadamard twin), found " + std::to_string(dI));
  require(rope.rope_dim <= kRopeMaxDim, op + ": rope_dim at most " + std::to_string(kRopeMaxDim) +
                                            " on the GPU, found " + std::to_string(rope.rope_dim));
  require(v.rows <= INT_MAX / heads, op + ": more than " + std::to_string(INT_MAX) + " head rows");
}

// RoPE, Hadamard per head row and the optional FP8 round trip (the reference's finish()).
void finish(View2<float> v, int64_t heads, int64_t dI, int64_t pos0, const RopeConfig& rope, bool quant,
            cudaStream_t stream) {
  cuda::rope(RopeParams<float>{v, heads, dI, pos0, 1, false, rope}, stream);
  const View2<float> rows{v.data, v.rows * heads, dI, dI};
  hadamard(HadamardParams<float>{rows, rows}, stream);
  if (quant) quant_fp8(QuantFp8Params<float>{rows, rows, kActBlock, 0}, stream);
}

void validate(const DsaQueryParams<float>& p) {
  const int64_t T = p.cq.rows, HI = p.heads, dI = p.head_dim;
  // The reference's checks, in its order and with its messages.
  require(p.q.rows == T && p.q.cols == HI * dI,
          "dsa_indexer_query: output 'q': expected shape " + shape_string({T, HI * dI}));
  require(p.w.rows == T && p.w.cols == HI,
          "dsa_indexer_query: output 'w': expected shape " + shape_string({T, HI}));
  validate_heads("dsa_indexer_query", p.q, HI, dI, p.rope);
  require(p.x.rows == T, "dsa_indexer_query: tensor 'x': expected " + std::to_string(T) + " rows (as cq), found " +
                             std::to_string(p.x.rows));
  require(p.cq.cols > 0 && p.x.cols > 0, "dsa_indexer_query: q_rank (cq columns) and D (x columns) must be positive");
  require(p.wq_b && p.weights_proj, "dsa_indexer_query: wq_b and weights_proj must be device pointers, found null");
  require(linear_fits_int(T, HI * dI, p.cq.cols, p.cq.ld, p.q.ld) && linear_fits_int(T, HI, p.x.cols, p.x.ld, p.w.ld),
          "dsa_indexer_query: sizes beyond cuBLAS's int range");
}

void validate(const DsaKeyParams<float>& p) {
  const int64_t T = p.x.rows, dI = p.head_dim;
  require(p.k.rows == T && p.k.cols == dI,
          "dsa_indexer_keys: output 'k': expected shape " + shape_string({T, dI}));
  validate_heads("dsa_indexer_keys", p.k, 1, dI, p.rope);
  require(p.x.cols > 0, "dsa_indexer_keys: D (x columns) must be positive");
  require(p.wk, "dsa_indexer_keys: wk must be a device pointer, found null");
  require(linear_fits_int(T, dI, p.x.cols, p.x.ld, p.k.ld), "dsa_indexer_keys: sizes beyond cuBLAS's int range");
}

}  // namespace

void dsa_indexer_query(const DsaQueryParams<float>& p, DsaIndexerWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.cq.rows, HI = p.heads, dI = p.head_dim;
  const NvtxRange range("dsa_indexer_query");
  if (T == 0) return;
  linear("dsa_indexer_query", ws.blas_, p.cq, p.wq_b, HI * dI, p.q, stream);
  finish(p.q, HI, dI, p.pos0, p.rope, p.quant, stream);
  const float scale = float(1.0 / std::sqrt(double(HI)) / std::sqrt(double(dI)));  // the reference's T(...)
  linear("dsa_indexer_query", ws.blas_, p.x, p.weights_proj, HI, p.w, stream, scale);
}

void dsa_indexer_keys(const DsaKeyParams<float>& p, DsaIndexerWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.x.rows, dI = p.head_dim;
  const NvtxRange range("dsa_indexer_keys");
  if (T == 0) return;
  linear("dsa_indexer_keys", ws.blas_, p.x, p.wk, dI, p.k, stream);
  layernorm(LayerNormParams<float>{p.k, p.norm_w, p.norm_b, p.k, p.eps}, stream);
  finish(p.k, 1, dI, p.pos0, p.rope, p.quant, stream);
}

void dsa_indexer_query(const DsaQueryParams<float>& p, cudaStream_t stream) {
  validate(p);
  DsaIndexerWorkspace ws;
  dsa_indexer_query(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void dsa_indexer_keys(const DsaKeyParams<float>& p, cudaStream_t stream) {
  validate(p);
  DsaIndexerWorkspace ws;
  dsa_indexer_keys(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void dsa_indexer(const IndexerParams<float>& p, cudaStream_t stream) {
  IndexerParams<float> q = p;
  q.ratio = 1;
  const NvtxRange range("dsa_indexer");
  indexer(q, stream);
}

}  // namespace dsv4::cuda
