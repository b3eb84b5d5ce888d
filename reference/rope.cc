#include "reference/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "reference/errors.h"

namespace dsv4 {

RopeConfig rope_v4_compressed() {
  RopeConfig c;
  c.theta = kRopeThetaCompressed;
  c.yarn_factor = kYarnFactorV4;
  c.yarn_orig = kYarnOrigV4;
  return c;
}

RopeConfig rope_v4_swa() { return RopeConfig{}; }

RopeConfig rope_v3() {
  RopeConfig c;
  c.theta = kRopeThetaV3;
  c.yarn_factor = kYarnFactorV3;
  c.yarn_orig = kYarnOrigV3;
  return c;
}

RopeConfig rope_v32_indexer() {
  RopeConfig c = rope_v3();
  c.layout = RopeLayout::half_split;
  c.placement = RopePlacement::first;
  return c;
}

double v3_softmax_scale() {
  const double mscale = 0.1 * std::log(kYarnFactorV3) + 1.0;
  return mscale * mscale / std::sqrt(double(kMlaQkNopeDim + kRopeDim));
}

static double correction_dim(double rotations, const RopeConfig& c) {
  return double(c.rope_dim) * std::log(double(c.yarn_orig) / (rotations * 2 * std::numbers::pi)) /
         (2 * std::log(c.theta));
}

void yarn_correction_range(const RopeConfig& c, int64_t* low, int64_t* high) {
  *low = std::max<int64_t>(int64_t(std::floor(correction_dim(c.beta_fast, c))), 0);
  *high = std::min<int64_t>(int64_t(std::ceil(correction_dim(c.beta_slow, c))), c.rope_dim - 1);
}

std::vector<double> rope_inv_freq(const RopeConfig& c) {
  require(c.rope_dim > 0 && c.rope_dim % 2 == 0,
          "rope: rope_dim must be even and positive, found " + std::to_string(c.rope_dim));
  require(c.theta > 1, "rope: theta must be > 1, found " + std::to_string(c.theta));
  const int64_t half = c.rope_dim / 2;
  std::vector<double> f(half);
  for (int64_t i = 0; i < half; ++i) f[i] = std::pow(c.theta, -2.0 * double(i) / double(c.rope_dim));
  if (c.yarn_factor > 1) {
    require(c.yarn_orig > 0, "rope: yarn_orig must be > 0 with yarn_factor > 1");
    int64_t low, high;
    yarn_correction_range(c, &low, &high);
    const double span = high == low ? 0.001 : double(high - low);
    for (int64_t i = 0; i < half; ++i) {
      const double ramp = std::clamp((double(i) - double(low)) / span, 0.0, 1.0);
      const double s = 1.0 - ramp;
      f[i] = f[i] * s + f[i] / c.yarn_factor * (1.0 - s);
    }
  }
  return f;
}

namespace ref {

namespace {
constexpr int64_t kRopePrefetchHeads = 4;
constexpr int64_t kCacheLine = 64;  // bytes
}  // namespace

template <class T>
void rope(const RopeParams<T>& p) {
  const int64_t hd = p.head_dim ? p.head_dim : (p.heads ? p.x.cols / p.heads : 0);
  require(p.heads > 0 && hd * p.heads == p.x.cols,
          "rope: x has " + std::to_string(p.x.cols) + " columns, expected heads (" +
              std::to_string(p.heads) + ") * head_dim (" + std::to_string(hd) + ")");
  require(p.cfg.rope_dim <= hd, "rope: rope_dim " + std::to_string(p.cfg.rope_dim) +
                                    " exceeds head_dim " + std::to_string(hd));
  const std::vector<double> freq = rope_inv_freq(p.cfg);
  const int64_t half = p.cfg.rope_dim / 2;
  const int64_t start = p.cfg.placement == RopePlacement::last ? hd - p.cfg.rope_dim : 0;
  const bool inter = p.cfg.layout == RopeLayout::interleaved;
  const double sign = p.inverse ? -1.0 : 1.0;
  std::vector<T> cs(half), sn(half);
  for (int64_t r = 0; r < p.x.rows; ++r) {
    const double pos = double(p.pos0 + r * p.pos_step);
    for (int64_t i = 0; i < half; ++i) {  // one sincos per pair: both from one argument reduction
      double sa, ca;
      ::sincos(sign * pos * freq[i], &sa, &ca);
      cs[i] = T(ca * p.cfg.attn_factor);
      sn[i] = T(sa * p.cfg.attn_factor);
    }
    const T* c = cs.data();
    const T* sv = sn.data();
    for (int64_t h = 0; h < p.heads; ++h) {  // one loop per layout, vectorised over the pairs
      T* v = p.x.row(r) + h * hd + start;
      // The rotated dims of one head are a few cache lines every head_dim values: a stride the
      // hardware prefetcher does not follow, so fetch kRopePrefetchHeads heads ahead.
      if (h + kRopePrefetchHeads < p.heads)
        for (int64_t b = 0; b < p.cfg.rope_dim; b += kCacheLine / int64_t(sizeof(T)))
          __builtin_prefetch(v + kRopePrefetchHeads * hd + b, 1, 3);
      if (inter) {
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const T a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * c[i] - b * sv[i];
          v[2 * i + 1] = a * sv[i] + b * c[i];
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const T a = v[i], b = v[i + half];
          v[i] = a * c[i] - b * sv[i];
          v[i + half] = a * sv[i] + b * c[i];
        }
      }
    }
  }
}

template void rope<float>(const RopeParams<float>&);
template void rope<double>(const RopeParams<double>&);

}  // namespace ref
}  // namespace dsv4
