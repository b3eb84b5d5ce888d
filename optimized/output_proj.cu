#include "optimized/output_proj.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rope.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

void validate(const OutputProjParams<float>& p) {
  const int64_t T = p.o.rows, H = p.heads, d = p.head_dim, g = p.groups, r = p.o_rank;
  // The reference's checks, in its order and with its messages.
  require(H > 0 && p.o.cols == H * d, "output_proj: tensor 'o': expected " +
                                          std::to_string(H * d) + " columns, found " +
                                          std::to_string(p.o.cols));
  require(g > 0 && H % g == 0, "output_proj: key 'groups' (" + std::to_string(g) +
                                   ") must divide the head count " + std::to_string(H));
  require(p.rope.rope_dim <= d, "rope: rope_dim " + std::to_string(p.rope.rope_dim) +
                                    " exceeds head_dim " + std::to_string(d));
  (void)rope_inv_freq(p.rope);  // rope_dim even and positive, theta, YaRN
  require(p.y.rows == T, "output_proj: output 'y' has the wrong row count");
  // This twin's limits.
  require(d > 0 && r > 0 && p.y.cols > 0,
          "output_proj: head_dim, o_rank and D (y columns) must be positive, found " +
              std::to_string(d) + ", " + std::to_string(r) + ", " + std::to_string(p.y.cols));
  require(p.wo_a && p.wo_b, "output_proj: wo_a and wo_b must be device pointers, found null");
  require(p.rope.rope_dim <= kRopeMaxDim, "output_proj: rope_dim at most " + std::to_string(kRopeMaxDim) +
                                              " on the GPU, found " + std::to_string(p.rope.rope_dim));
  const int64_t gw = (H / g) * d;
  require(linear_fits_int(T, r, gw, H * d, g * r) && linear_fits_int(T, p.y.cols, g * r, g * r, p.y.ld) &&
              g <= INT_MAX,
          "output_proj: sizes beyond cuBLAS's int range (T, H*d, g*o_rank, D, row strides)");
}

}  // namespace

OutputProjWorkspace::OutputProjWorkspace(int64_t max_tokens, int64_t o_width, int64_t u_width)
    : max_tokens_(max_tokens), o_width_(o_width), u_width_(u_width) {
  require(max_tokens >= 0 && o_width > 0 && u_width > 0,
          "OutputProjWorkspace: needs max_tokens >= 0 and positive widths H*d and g*o_rank");
  o_ = DeviceBuffer<float>(size_t(max_tokens * o_width));
  u_ = DeviceBuffer<float>(size_t(max_tokens * u_width));
}

void output_proj(const OutputProjParams<float>& p, OutputProjWorkspace& ws, cudaStream_t stream) {
  validate(p);
  const int64_t T = p.o.rows, H = p.heads, d = p.head_dim, g = p.groups, r = p.o_rank;
  const int64_t Hd = H * d, gr = g * r, gw = (H / g) * d;
  require(T <= ws.max_tokens() && Hd == ws.o_width() && gr == ws.u_width(),
          "output_proj: the workspace holds " + std::to_string(ws.max_tokens()) + " rows of H*d " +
              std::to_string(ws.o_width()) + ", g*o_rank " + std::to_string(ws.u_width()) +
              "; the call needs " + std::to_string(T) + " of H*d " + std::to_string(Hd) +
              ", g*o_rank " + std::to_string(gr));
  const NvtxRange range("output_proj");
  if (T == 0) return;

  // Inverse RoPE on a dense copy of o (o is an input).
  const View2<float> o = view2(ws.o_.data(), T, Hd);
  DSV4_CUDA_CHECK(cudaMemcpy2DAsync(o.data, size_t(Hd) * sizeof(float), p.o.data,
                                    size_t(p.o.ld) * sizeof(float), size_t(Hd) * sizeof(float),
                                    size_t(T), cudaMemcpyDeviceToDevice, stream));
  rope(RopeParams<float>{o, H, d, p.pos0, 1, true, p.rope}, stream);

  // u[:, k*r, (k+1)*r) = o[:, k*gw, (k+1)*gw) Wo_a^(k)^T, all groups in one batched SGEMM.
  const View2<float> u = view2(ws.u_.data(), T, gr);
  linear_grouped("output_proj", ws.blas_, o, p.wo_a, g, r, gw, u, stream);
  if (p.act_quant) quant_fp8(QuantFp8Params<float>{u, u, kActBlock, 0}, stream);
  linear("output_proj", ws.blas_, u, p.wo_b, p.y.cols, p.y, stream);
}

void output_proj(const OutputProjParams<float>& p, cudaStream_t stream) {
  validate(p);
  OutputProjWorkspace ws(p.o.rows, p.heads * p.head_dim, p.groups * p.o_rank);
  output_proj(p, ws, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace dsv4::cuda
