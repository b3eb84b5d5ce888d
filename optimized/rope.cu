#include "optimized/rope.cuh"

#include <algorithm>
#include <climits>
#include <vector>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int kWarpSize = 32;

// The reference's frequency table, by value.
struct RopeTable {
  double freq[kRopeMaxDim / 2];
};

// Where the rotated pairs sit in a row, and the row's position.
struct RopeGeometry {
  int64_t heads, head_dim;
  int64_t start;  // first rotated column of a head
  int64_t half;   // pairs per head: rope_dim / 2
  int64_t pos0, pos_step;
  double sign;    // -1: inverse rotation
  double attn_factor;
  bool interleaved;
};

__global__ void __launch_bounds__(kRopeMaxThreads)
    rope_rows(View2<float> x, RopeGeometry g, const __grid_constant__ RopeTable table) {
  extern __shared__ float trig[];  // [cos_0 .. cos_{half-1}, sin_0 .. sin_{half-1}]
  float* cs = trig;
  float* sn = trig + g.half;
  const int64_t r = blockIdx.x;
  const double pos = double(g.pos0 + r * g.pos_step);
  for (int64_t i = threadIdx.x; i < g.half; i += blockDim.x) {
    double s, c;
    sincos(g.sign * pos * table.freq[i], &s, &c);
    cs[i] = float(c * g.attn_factor);
    sn[i] = float(s * g.attn_factor);
  }
  __syncthreads();

  float* row = x.row(r);
  const int64_t pairs = g.heads * g.half;
  for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
    const int64_t h = k / g.half, i = k - h * g.half;
    float* v = row + h * g.head_dim + g.start;
    float* p0 = g.interleaved ? v + 2 * i : v + i;
    float* p1 = g.interleaved ? v + 2 * i + 1 : v + i + g.half;
    const float a = *p0, b = *p1;
    *p0 = a * cs[i] - b * sn[i];
    *p1 = a * sn[i] + b * cs[i];
  }
}

}  // namespace

void rope(const RopeParams<float>& p, cudaStream_t stream) {
  // The reference's checks, in its order and with its messages.
  const int64_t hd = p.head_dim ? p.head_dim : (p.heads ? p.x.cols / p.heads : 0);
  require(p.heads > 0 && hd * p.heads == p.x.cols,
          "rope: x has " + std::to_string(p.x.cols) + " columns, expected heads (" +
              std::to_string(p.heads) + ") * head_dim (" + std::to_string(hd) + ")");
  require(p.cfg.rope_dim <= hd, "rope: rope_dim " + std::to_string(p.cfg.rope_dim) +
                                    " exceeds head_dim " + std::to_string(hd));
  const std::vector<double> freq = rope_inv_freq(p.cfg);  // rope_dim, theta, yarn_orig checks
  // This twin's limits.
  require(p.cfg.rope_dim <= kRopeMaxDim, "rope: rope_dim " + std::to_string(p.cfg.rope_dim) +
                                             " exceeds the CUDA kernel's limit " +
                                             std::to_string(kRopeMaxDim));
  require(p.x.rows <= INT_MAX, "rope: tensor 'x': at most " + std::to_string(INT_MAX) +
                                   " rows per launch (one block per row), found " +
                                   std::to_string(p.x.rows));
  if (p.x.rows == 0) return;

  RopeTable table{};
  std::copy(freq.begin(), freq.end(), table.freq);
  RopeGeometry g{};
  g.heads = p.heads;
  g.head_dim = hd;
  g.half = p.cfg.rope_dim / 2;
  g.start = p.cfg.placement == RopePlacement::last ? hd - p.cfg.rope_dim : 0;
  g.pos0 = p.pos0;
  g.pos_step = p.pos_step;
  g.sign = p.inverse ? -1.0 : 1.0;
  g.attn_factor = p.cfg.attn_factor;
  g.interleaved = p.cfg.layout == RopeLayout::interleaved;

  const int64_t pairs = g.heads * g.half;
  const int64_t warps = (std::max(pairs, g.half) + kWarpSize - 1) / kWarpSize;
  const int threads = static_cast<int>(std::min<int64_t>(warps * kWarpSize, kRopeMaxThreads));
  const size_t shared = size_t(2 * g.half) * sizeof(float);

  const NvtxRange range("rope");
  rope_rows<<<static_cast<unsigned>(p.x.rows), threads, shared, stream>>>(p.x, g, table);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
