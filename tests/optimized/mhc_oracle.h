// The mHC oracles of tests/optimized/test_{sinkhorn,hc_pre,hc_post}.cc: double-precision loops
// written from docs/v4-architecture.md §3.1 (no dsv4::ref call), random inputs at the scales of
// the model, and the derived tolerances shared by the three tests.
//
//   sinkhorn: M <- row_softmax(L) + eps; M <- M / (colsum + eps); then iters - 1 rounds of
//             M <- M / (rowsum + eps), M <- M / (colsum + eps).
//   hc_pre:   v = vec(X) stream-major, rs = 1/sqrt(mean(v^2) + norm_eps), mu = rs (Phi v);
//             pre_j = sigmoid(a0 mu_j + b_j) + eps, post_j = 2 sigmoid(a1 mu_{n+j} + b_{n+j}),
//             comb = sinkhorn(a2 mu_{2n+..} + b_{2n+..}), u = sum_j pre_j X_j.
//   hc_head:  pre only (Phi [n, nD], scale [1]), u = sum_j pre_j X_j.
//   hc_post:  y_k = post_k f + sum_j comb[j, k] X_j.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4::test::mhc {

// sinkhorn of `items` row-major n x n logit blocks.
inline std::vector<double> sinkhorn(const std::vector<double>& L, int64_t items, int64_t n,
                                    int64_t iters, double eps) {
  std::vector<double> out(L.size());
  for (int64_t r = 0; r < items; ++r) {
    double* M = &out[size_t(r * n * n)];
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> p = naive::softmax(&L[size_t(r * n * n + i * n)], n);
      for (int64_t k = 0; k < n; ++k) M[i * n + k] = p[size_t(k)] + eps;
    }
    // Normalise lines: rows (stride 1 within a line, n between lines) or columns.
    auto normalise = [&](bool rows) {
      for (int64_t a = 0; a < n; ++a) {
        double s = 0;
        for (int64_t b = 0; b < n; ++b) s += rows ? M[a * n + b] : M[b * n + a];
        for (int64_t b = 0; b < n; ++b) (rows ? M[a * n + b] : M[b * n + a]) /= s + eps;
      }
    };
    normalise(false);
    for (int64_t it = 1; it < iters; ++it) {
      normalise(true);
      normalise(false);
    }
  }
  return out;
}

// Sinkhorn's FP32 error: 2*iters normalisations, each a division by an (n+1)-term sum of
// entries <= 1 (the entries' relative errors add up along the sequence).
inline double sinkhorn_tol(int64_t n, int64_t iters) {
  return reduction_tol<float>(double(2 * iters * (n + 1)), 1.0);
}

// Inputs of one hc_pre / hc_head call, float, dense row-major, at the model's scales:
// x ~ N(0, 2^2); Phi ~ N(0, 1/nD) so mu ~ N(0, 1) (the sigmoids and Sinkhorn in their
// sensitive range); base ~ N(0, 0.5^2); scale fixed. Never zeros.
struct PreInputs {
  int64_t T, n, D;
  bool head;
  std::vector<float> x, fn, base, scale;
  int64_t mix() const { return head ? n : 2 * n + n * n; }
};

inline PreInputs pre_inputs(int64_t T, int64_t n, int64_t D, bool head, uint64_t seed) {
  PreInputs in{T, n, D, head, {}, {}, {}, {}};
  const int64_t nd = n * D;
  in.x = normal<float>(size_t(T * nd), seed, 2.0);
  in.fn = normal<float>(size_t(in.mix() * nd), seed + 1, 1.0 / std::sqrt(double(nd)));
  in.base = normal<float>(size_t(in.mix()), seed + 2, 0.5);
  in.scale = head ? std::vector<float>{0.9f} : std::vector<float>{0.8f, 1.3f, 2.0f};
  return in;
}

// The oracle's outputs and the magnitudes the tolerances need.
struct PreOut {
  std::vector<double> u, post, comb;
  double mu_mag = 0;  // max over tokens and rows of rs * sum_c |Phi_rc v_c|
  double x_sum = 0;   // max over tokens and columns of sum_j |X_j[c]|
};

inline PreOut hc_pre(const PreInputs& in, int64_t iters, double eps, double norm_eps) {
  const int64_t n = in.n, D = in.D, nd = n * D, mix = in.mix();
  PreOut o;
  o.u.assign(size_t(in.T * D), 0.0);
  o.post.assign(size_t(in.T * n), 0.0);
  o.comb.assign(size_t(in.T * n * n), 0.0);
  for (int64_t t = 0; t < in.T; ++t) {
    const float* v = &in.x[size_t(t * nd)];
    double ss = 0;
    for (int64_t c = 0; c < nd; ++c) ss += double(v[c]) * double(v[c]);
    const double rs = 1.0 / std::sqrt(ss / double(nd) + norm_eps);
    std::vector<double> mu(static_cast<size_t>(mix), 0.0);
    for (int64_t r = 0; r < mix; ++r) {
      double dot = 0, mag = 0;
      for (int64_t c = 0; c < nd; ++c) {
        const double term = double(in.fn[size_t(r * nd + c)]) * double(v[c]);
        dot += term;
        mag += std::fabs(term);
      }
      mu[size_t(r)] = rs * dot;
      o.mu_mag = std::max(o.mu_mag, rs * mag);
    }
    std::vector<double> pre(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j)
      pre[size_t(j)] = naive::sigmoid(in.scale[0] * mu[size_t(j)] + in.base[size_t(j)]) + eps;
    if (!in.head) {
      for (int64_t j = 0; j < n; ++j)
        o.post[size_t(t * n + j)] =
            2.0 * naive::sigmoid(in.scale[1] * mu[size_t(n + j)] + in.base[size_t(n + j)]);
      std::vector<double> logits(static_cast<size_t>(n * n));
      for (int64_t e = 0; e < n * n; ++e)
        logits[size_t(e)] = in.scale[2] * mu[size_t(2 * n + e)] + in.base[size_t(2 * n + e)];
      const std::vector<double> m = sinkhorn(logits, 1, n, iters, eps);
      std::copy(m.begin(), m.end(), o.comb.begin() + t * n * n);
    }
    for (int64_t c = 0; c < D; ++c) {
      double s = 0, xs = 0;
      for (int64_t j = 0; j < n; ++j) {
        s += pre[size_t(j)] * double(v[j * D + c]);
        xs += std::fabs(double(v[j * D + c]));
      }
      o.u[size_t(t * D + c)] = s;
      o.x_sum = std::max(o.x_sum, xs);
    }
  }
  return o;
}

// Tolerances of hc_pre / hc_head against the oracle, from the CPU twin's measured error (the
// largest |ref::hc_pre<float> - oracle| over the tensor): at most kTwoImpls times that, plus a
// rounding floor for the steps after mu, which a lucky reference may happen to round exactly.
// mu itself is a length-nD dot product: the twin's blocked order (a 1/256 share per thread,
// then a tree) errs less than the reference's long packet-wise runs, so twice the reference's
// error covers it; the bound any order obeys, 2 * reduction_tol<float>(nD, rs sum|Phi v|), is
// about 10^4 times the measured errors at the real shapes and would hide real bugs.
inline constexpr double kTwoImpls = 2.0;
// Rounded steps after mu: alpha mu + b, exp, 1 + e, the division, + eps.
inline constexpr double kFinishOps = 5.0;

struct PreTol {
  double u = 0, post = 0, comb = 0;
};

inline double max_abs_err(const std::vector<float>& a, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) e = std::max(e, std::fabs(double(a[i]) - want[i]));
  return e;
}

// ref_* : the CPU twin's outputs (post and comb unused for hc_head).
inline PreTol pre_tol(const PreInputs& in, const PreOut& o, int64_t iters,
                      const std::vector<float>& ref_u, const std::vector<float>& ref_post,
                      const std::vector<float>& ref_comb) {
  PreTol t;
  // u: pre's own rounding (relative, pre <= 1 + eps) times sum_j |X_j|, and the n-term sum.
  t.u = kTwoImpls * max_abs_err(ref_u, o.u) +
        reduction_tol<float>(double(in.n) + kFinishOps, o.x_sum);
  if (!in.head) {
    t.post = kTwoImpls * max_abs_err(ref_post, o.post) + reduction_tol<float>(kFinishOps, 2.0);
    t.comb = kTwoImpls * max_abs_err(ref_comb, o.comb) + sinkhorn_tol(in.n, iters);
  }
  return t;
}

// hc_post: y and, per element, |post_k f| + sum_j |comb_jk X_j| (the magnitude of its sum).
inline std::vector<double> hc_post(const std::vector<float>& x, const std::vector<float>& f,
                                   const std::vector<float>& post, const std::vector<float>& comb,
                                   int64_t T, int64_t n, int64_t D, std::vector<double>* mag) {
  std::vector<double> y(size_t(T * n * D));
  mag->assign(y.size(), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < n; ++k)
      for (int64_t c = 0; c < D; ++c) {
        double s = double(post[size_t(t * n + k)]) * double(f[size_t(t * D + c)]);
        double m = std::fabs(s);
        for (int64_t j = 0; j < n; ++j) {
          const double term = double(comb[size_t(t * n * n + j * n + k)]) *
                              double(x[size_t(t * n * D + j * D + c)]);
          s += term;
          m += std::fabs(term);
        }
        y[size_t(t * n * D + k * D + c)] = s;
        (*mag)[size_t(t * n * D + k * D + c)] = m;
      }
  return y;
}

}  // namespace dsv4::test::mhc
