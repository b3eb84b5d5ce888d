// The engram_mix oracle of tests/optimized/test_engram.cc: random inputs, a double-precision
// oracle written from docs/engram.md step 4 with a per-element bound on the error of any FP32
// implementation, the comparison against that bound, the CPU twin's call, and an FP32
// emulation of the device algorithm of cuda::engram_mix. Nothing here calls a dsv4::cuda
// function; the oracle calls no dsv4::ref function.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "reference/constants.h"
#include "reference/engram.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4::test {

// Random inputs of one engram_mix call (never zeros), float, row-major dense.
struct MixCase {
  int64_t n, S, D, E, K, dil;
  uint64_t seed;
  int64_t H() const { return (K - 1) * dil; }
};

struct MixInputs {
  std::vector<float> x, e, history;  // [T, S*D], [T, E], [H, S*D]
  std::vector<float> value_w, value_b, key_w, key_b, key_norm, query_norm, conv_w, conv_norm;
  EngramMixWeights<float> weights() const {
    return {value_w.data(), value_b.data(), key_w.data(), key_b.data(),
            key_norm.data(), query_norm.data(), conv_w.data(), conv_norm.data()};
  }
};

// Projections scaled by 1/sqrt(E) so that v and k are O(1); norm weights in [0.5, 1.5]; conv
// weights in [-0.5, 0.5]; a random (mid-sequence) history.
inline MixInputs make_mix(const MixCase& k) {
  MixInputs in;
  const int64_t SD = k.S * k.D;
  const double proj = 1.0 / std::sqrt(double(k.E));
  uint64_t s = k.seed;
  in.x = test::normal<float>(size_t(k.n * SD), s++);
  in.e = test::normal<float>(size_t(k.n * k.E), s++);
  in.history = test::normal<float>(size_t(k.H() * SD), s++);
  in.value_w = test::normal<float>(size_t(k.D * k.E), s++, proj);
  in.value_b = test::uniform<float>(size_t(k.D), s++, -0.1, 0.1);
  in.key_w = test::normal<float>(size_t(SD * k.E), s++, proj);
  in.key_b = test::uniform<float>(size_t(SD), s++, -0.1, 0.1);
  in.key_norm = test::uniform<float>(size_t(SD), s++, 0.5, 1.5);
  in.query_norm = test::uniform<float>(size_t(SD), s++, 0.5, 1.5);
  in.conv_w = test::uniform<float>(size_t(SD * k.K), s++, -0.5, 0.5);
  in.conv_norm = test::uniform<float>(size_t(SD), s++, 0.5, 1.5);
  return in;
}

// The oracle of docs/engram.md step 4 in double from the float inputs, with a per-element
// bound on the error of an FP32 implementation (the derivation, stage by stage; rt(k, m) =
// test::reduction_tol<float>(k, m) bounds a length-k FP32 reduction whose sum of |terms| is m):
//   v, k projections: per element |err| <= rt(E, sum_j |W_cj e_j|).
//   norms of k and q: relative rt(D, 1) each (a sum of squares: terms all positive).
//   a = <k, q>/sqrt(D): |da| <= [sum_c |dk_c| |q_c| + (3 rt(D, 1) + rms(dk)/rms(k))
//     sum_c |k_c q_c|] / sqrt(D), dk_c the key's element error times its norm factor (the
//     last term: the key's error moving its norm).
//   a' = sign(a) sqrt(max(|a|, 1e-6)): |da'| <= min(2 sqrt(max(da, 1e-6)),
//     da / (2 sqrt(max(|a| - da, 1e-6)))) (the square root is 1/2-Hoelder; the jump at 0 is
//     at most 2e-3 = 2 sqrt(1e-6)).
//   g = sigmoid(a'): |dg| <= g (1 - g) |da'| + 4u g.
//   V_c = g vb_c: |dV_c| <= |dg| |vb_c| + g |dvb_c| + 2u |V_c|.
//   Z = RMSNorm(V) is invariant to g (up to the 1e-5 eps): |dZ_c| <= (rms(dvb) / rms(vb) +
//     2 rt(D, 1)) (|Z_c| + max_c' |Z_c'|) (the second term: the norm spreads the error of the
//     row's sum of squares over every element).
//   acc = sum_i w_i Z_i: |dacc| <= sum_i |w_i| |dZ_i| + rt(K, sum_i |w_i Z_i|); SiLU' <= 1.1.
//   y = V + C: |dy| <= |dV| + 1.1 |dacc| + 4u |C| + u |y|.
// Two FP32 implementations each within the bound of the exact value are within twice it.
struct MixOracle {
  std::vector<double> y, tol;               // [T, S*D]
  std::vector<double> history, history_tol;  // [H, S*D]: the carried Z rows and their bound
};

inline MixOracle mix_oracle(const MixCase& k, const MixInputs& in) {
  const int64_t n = k.n, S = k.S, D = k.D, E = k.E, K = k.K, H = k.H(), SD = S * D;
  const double u = test::unit_roundoff<float>(), nrm = test::reduction_tol<float>(double(D), 1.0);
  auto rt = [](int64_t len, double mag) { return test::reduction_tol<float>(double(len), mag); };
  // z timeline (history then chunk) and its per-element error bound.
  std::vector<double> z(size_t((H + n) * SD)), dz(size_t((H + n) * SD), 0.0);
  for (size_t i = 0; i < in.history.size(); ++i) z[i] = in.history[i];
  std::vector<double> V(size_t(n * SD)), dV(size_t(n * SD));
  for (int64_t t = 0; t < n; ++t) {
    const float* e = &in.e[size_t(t * E)];
    std::vector<double> vb(static_cast<size_t>(D)), dvb(static_cast<size_t>(D));
    for (int64_t c = 0; c < D; ++c) {
      double acc = 0, mag = 0;
      for (int64_t j = 0; j < E; ++j) {
        acc += double(in.value_w[size_t(c * E + j)]) * e[j];
        mag += std::fabs(double(in.value_w[size_t(c * E + j)]) * e[j]);
      }
      vb[size_t(c)] = acc + in.value_b[size_t(c)];
      dvb[size_t(c)] = rt(E, mag) + u * std::fabs(vb[size_t(c)]);
    }
    const double rms_vb = test::rms_of(vb.data(), D), rms_dvb = test::rms_of(dvb.data(), D);
    for (int64_t s = 0; s < S; ++s) {
      std::vector<double> kk(static_cast<size_t>(D)), dk(static_cast<size_t>(D)), q(static_cast<size_t>(D));
      for (int64_t c = 0; c < D; ++c) {
        const int64_t row = s * D + c;
        double acc = 0, mag = 0;
        for (int64_t j = 0; j < E; ++j) {
          acc += double(in.key_w[size_t(row * E + j)]) * e[j];
          mag += std::fabs(double(in.key_w[size_t(row * E + j)]) * e[j]);
        }
        kk[size_t(c)] = acc + in.key_b[size_t(row)];
        dk[size_t(c)] = rt(E, mag) + u * std::fabs(kk[size_t(c)]);
        q[size_t(c)] = in.x[size_t(t * SD + row)];
      }
      const double inv_k = 1.0 / std::sqrt(std::pow(test::rms_of(kk.data(), D), 2) + kNormEps);
      const double inv_q = 1.0 / std::sqrt(std::pow(test::rms_of(q.data(), D), 2) + kNormEps);
      double dot = 0, sum_abs = 0, sum_dk = 0;
      for (int64_t c = 0; c < D; ++c) {
        const double kn = kk[size_t(c)] * inv_k * in.key_norm[size_t(s * D + c)];
        const double qn = q[size_t(c)] * inv_q * in.query_norm[size_t(s * D + c)];
        dot += kn * qn;
        sum_abs += std::fabs(kn * qn);
        sum_dk += dk[size_t(c)] * inv_k * in.key_norm[size_t(s * D + c)] * std::fabs(qn);
      }
      const double sq = std::sqrt(double(D));
      // The key's error also moves its norm: relative rms(dk) / rms(k) on every term.
      const double key_rel = test::rms_of(dk.data(), D) / test::rms_of(kk.data(), D);
      const double a = dot / sq, da = (sum_dk + (3 * nrm + key_rel) * sum_abs) / sq;
      const double mag = std::sqrt(std::max(std::fabs(a), kEngramGateFloor));
      const double a2 = a > 0 ? mag : (a < 0 ? -mag : 0.0);
      const double g = 1.0 / (1.0 + std::exp(-a2));
      const double da2 = std::min(2 * std::sqrt(std::max(da, kEngramGateFloor)),
                                  da / (2 * std::sqrt(std::max(std::fabs(a) - da, kEngramGateFloor))));
      const double dg = g * (1 - g) * da2 + 4 * u * g;
      double ss = 0;
      for (int64_t c = 0; c < D; ++c) {
        const size_t i = size_t(t * SD + s * D + c);
        V[i] = g * vb[size_t(c)];
        dV[i] = dg * std::fabs(vb[size_t(c)]) + g * dvb[size_t(c)] + 2 * u * std::fabs(V[i]);
        ss += V[i] * V[i];
      }
      const double inv_z = 1.0 / std::sqrt(ss / double(D) + kEngramConvNormEps);
      double zmax = 0;
      for (int64_t c = 0; c < D; ++c) {
        const size_t zi = size_t((H + t) * SD + s * D + c);
        z[zi] = V[size_t(t * SD + s * D + c)] * inv_z * in.conv_norm[size_t(s * D + c)];
        zmax = std::max(zmax, std::fabs(z[zi]));
      }
      const double rel_z = rms_dvb / rms_vb + 2 * nrm;
      for (int64_t c = 0; c < D; ++c) {
        const size_t zi = size_t((H + t) * SD + s * D + c);
        dz[zi] = rel_z * (std::fabs(z[zi]) + zmax);
      }
    }
  }
  MixOracle o;
  o.y.resize(size_t(n * SD));
  o.tol.resize(size_t(n * SD));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t ch = 0; ch < SD; ++ch) {
      double acc = 0, dacc = 0, mag = 0;
      for (int64_t i = 0; i < K; ++i) {
        const size_t zi = size_t((H + t - (K - 1 - i) * k.dil) * SD + ch);
        const double w = in.conv_w[size_t(ch * K + i)];
        acc += w * z[zi];
        dacc += std::fabs(w) * dz[zi];
        mag += std::fabs(w * z[zi]);
      }
      dacc += rt(K, mag);
      const double c = acc / (1.0 + std::exp(-acc));
      const size_t i = size_t(t * SD + ch);
      o.y[i] = V[i] + c;
      o.tol[i] = dV[i] + 1.1 * dacc + 4 * u * std::fabs(c) + u * std::fabs(o.y[i]);
    }
  o.history.assign(z.end() - int64_t(H * SD), z.end());
  o.history_tol.assign(dz.end() - int64_t(H * SD), dz.end());
  return o;
}

// |actual - expected| <= scale * tol elementwise (NaN fails); reports the worst element.
inline ::testing::AssertionResult within(const std::vector<float>& actual, const std::vector<double>& expected,
                                  const std::vector<double>& tol, double scale) {
  if (actual.size() != expected.size()) return ::testing::AssertionFailure() << "size mismatch";
  size_t worst = 0;
  double worst_ratio = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double d = std::fabs(double(actual[i]) - expected[i]);
    if (!(d <= scale * tol[i]))
      return ::testing::AssertionFailure() << "element " << i << ": actual " << actual[i] << ", expected "
                                           << expected[i] << ", |diff| " << d << " > " << scale * tol[i];
    if (d / (scale * tol[i]) > worst_ratio) worst_ratio = d / (scale * tol[i]), worst = i;
  }
  return ::testing::AssertionSuccess() << "worst element " << worst << " at " << worst_ratio << " of its bound";
}

template <class T>
struct RefMixResult {
  std::vector<T> y, history;
};

template <class T>
RefMixResult<T> ref_mix(const MixCase& k, const MixInputs& in) {
  const int64_t SD = k.S * k.D;
  auto cast = [](const std::vector<float>& v) { return std::vector<T>(v.begin(), v.end()); };
  const std::vector<T> x = cast(in.x), e = cast(in.e), vw = cast(in.value_w), vb = cast(in.value_b),
                       kw = cast(in.key_w), kb = cast(in.key_b), kn = cast(in.key_norm),
                       qn = cast(in.query_norm), cw = cast(in.conv_w), cn = cast(in.conv_norm);
  RefMixResult<T> r{std::vector<T>(size_t(k.n * SD), T(NAN)), cast(in.history)};
  EngramMixParams<T> p;
  p.x = view2<const T>(x.data(), k.n, SD);
  p.e = view2<const T>(e.data(), k.n, k.E);
  p.w = {vw.data(), vb.data(), kw.data(), kb.data(), kn.data(), qn.data(), cw.data(), cn.data()};
  p.streams = k.S;
  p.kernel = k.K;
  p.dilation = k.dil;
  p.norm_eps = kNormEps;
  p.history = view2(r.history.data(), k.H(), SD);
  p.y = view2(r.y.data(), k.n, SD);
  ref::engram_mix(p);
  return r;
}

// FP32 emulation of the device algorithm of cuda::engram_mix (optimized/engram.cu), step for
// step: the two projections without bias (plain FP32 loops standing in for the SGEMMs), then
// for every (t, s) the K taps in order (a history row, or Z recomputed from the four sums
// sum k^2, sum x^2, sum (k kn)(x qn), sum (v+bv)^2), y at the last tap, the next history. The
// sums run serially here (a tree on the device): another FP32 rounding order, same algorithm.
// It pins down the kernel's index math and algebra on every machine, GPU or not.
inline RefMixResult<float> emulate_device_mix(const MixCase& k, const MixInputs& in) {
  const int64_t n = k.n, S = k.S, D = k.D, E = k.E, K = k.K, H = k.H(), SD = S * D;
  std::vector<float> v_raw(size_t(n * D)), k_raw(size_t(n * SD));
  for (int64_t t = 0; t < n; ++t) {
    const float* e = &in.e[size_t(t * E)];
    for (int64_t c = 0; c < D; ++c) {
      float acc = 0;
      for (int64_t j = 0; j < E; ++j) acc = std::fma(in.value_w[size_t(c * E + j)], e[j], acc);
      v_raw[size_t(t * D + c)] = acc;
    }
    for (int64_t r = 0; r < SD; ++r) {
      float acc = 0;
      for (int64_t j = 0; j < E; ++j) acc = std::fma(in.key_w[size_t(r * E + j)], e[j], acc);
      k_raw[size_t(t * SD + r)] = acc;
    }
  }
  RefMixResult<float> out{nan_vec<float>(size_t(n * SD)),
                          nan_vec<float>(size_t(H * SD))};
  for (int64_t r = 0; r < H - n; ++r)
    for (int64_t ch = 0; ch < SD; ++ch) out.history[size_t(r * SD + ch)] = in.history[size_t((r + n) * SD + ch)];
  const float inv_sqrt_d = 1.0f / std::sqrt(float(D));
  std::vector<float> acc(static_cast<size_t>(D));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t col0 = s * D;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t i = 0; i < K; ++i) {
        const int64_t tau = t - (K - 1 - i) * k.dil;
        auto w = [&](int64_t c) { return in.conv_w[size_t((col0 + c) * K + i)]; };
        if (tau < 0) {
          for (int64_t c = 0; c < D; ++c)
            acc[size_t(c)] = std::fma(w(c), in.history[size_t((H + tau) * SD + col0 + c)], acc[size_t(c)]);
          continue;
        }
        float sums[4] = {0, 0, 0, 0};
        for (int64_t c = 0; c < D; ++c) {
          const float kk = k_raw[size_t(tau * SD + col0 + c)] + in.key_b[size_t(col0 + c)];
          const float x = in.x[size_t(tau * SD + col0 + c)];
          const float v = v_raw[size_t(tau * D + c)] + in.value_b[size_t(c)];
          sums[0] = std::fma(kk, kk, sums[0]);
          sums[1] = std::fma(x, x, sums[1]);
          sums[2] = std::fma(kk * in.key_norm[size_t(col0 + c)], x * in.query_norm[size_t(col0 + c)], sums[2]);
          sums[3] = std::fma(v, v, sums[3]);
        }
        const float eps = float(kNormEps);
        const float inv_k = 1.0f / std::sqrt(sums[0] / float(D) + eps);
        const float inv_q = 1.0f / std::sqrt(sums[1] / float(D) + eps);
        const float dot = sums[2] * inv_k * inv_q * inv_sqrt_d;
        const float mag = std::sqrt(std::max(std::fabs(dot), float(kEngramGateFloor)));
        const float gated = dot > 0 ? mag : (dot < 0 ? -mag : 0.0f);
        const float g = 1.0f / (1.0f + std::exp(-gated));
        const float inv_z = 1.0f / std::sqrt(g * g * sums[3] / float(D) + float(kEngramConvNormEps));
        const int64_t hist_row = t - (n - H);
        for (int64_t c = 0; c < D; ++c) {
          const float V = g * (v_raw[size_t(tau * D + c)] + in.value_b[size_t(c)]);
          const float Z = V * inv_z * in.conv_norm[size_t(col0 + c)];
          acc[size_t(c)] = std::fma(w(c), Z, acc[size_t(c)]);
          if (tau == t) {
            out.y[size_t(t * SD + col0 + c)] = V + acc[size_t(c)] / (1.0f + std::exp(-acc[size_t(c)]));
            if (hist_row >= 0) out.history[size_t(hist_row * SD + col0 + c)] = Z;
          }
        }
      }
    }
  return out;
}

}  // namespace dsv4::test
