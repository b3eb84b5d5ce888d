// Naive double-precision oracles shared by the tests: ONE copy of each piece of the spec
// (docs/v4-architecture.md) that two or more test files recompute. Plain loops, written from
// the spec and the format definitions; nothing here calls a dsv4::ref function or includes a
// reference/ header, so an oracle can never inherit a bug of the op it checks. Each function
// names the spec section it implements. Statistics that only feed a tolerance derivation
// (sum of |terms| and the like) are returned beside the value where callers need them.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <numeric>
#include <utility>
#include <vector>

#include "tests/support/tolerance.h"

namespace dsv4::test::naive {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// ---------------------------------------------------------------------------------------
// Elementary maps.

// §2.1-§2.4 (every projection): y = W x for one row, W [out, in] row-major; *abs_mag (when
// non-null) receives max_i sum_j |W_ij x_j|, the magnitude of the largest reduction.
inline std::vector<double> linear(const double* W, int64_t out, int64_t in, const double* x,
                                  double* abs_mag = nullptr) {
  std::vector<double> y(static_cast<size_t>(out));
  double mmax = 0;
  for (int64_t i = 0; i < out; ++i) {
    double acc = 0, m = 0;
    for (int64_t j = 0; j < in; ++j) {
      acc += W[i * in + j] * x[j];
      m += std::fabs(W[i * in + j] * x[j]);
    }
    y[size_t(i)] = acc;
    mmax = std::max(mmax, m);
  }
  if (abs_mag) *abs_mag = mmax;
  return y;
}

// §3.1 / §3.2: the logistic function.
inline double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// §2.3 (pooling), §3.1 (Sinkhorn rows), §3.2 (softmax router): y = exp(x - max) / sum.
inline std::vector<double> softmax(const double* x, int64_t n) {
  double mx = -kInf;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = std::exp(x[i] - mx) / sum;
  return y;
}

// §2.1, §2.3, §3.1 RMSNorm in place: v <- v / sqrt(mean(v^2) + eps) * (w or 1). Returns the
// divisor sqrt(mean(v^2) + eps).
inline double rmsnorm(double* v, int64_t n, const double* w, double eps = 1e-6) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += v[i] * v[i];
  const double rms = std::sqrt(ss / double(n) + eps);
  const double inv = 1.0 / rms;
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] * inv * (w ? w[i] : 1.0);
  return rms;
}

// §2.10 LayerNorm in place (V3.2 indexer keys): v <- (v - mean) / sqrt(var + eps) * w + b
// (var the biased variance). Returns the mean and the divisor sqrt(var + eps).
struct LayerNormStats {
  double mean = 0, sd = 0;
};
inline LayerNormStats layernorm(double* v, int64_t n, const double* w, const double* b,
                                double eps = 1e-6) {
  LayerNormStats s;
  for (int64_t i = 0; i < n; ++i) s.mean += v[i];
  s.mean /= double(n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (v[i] - s.mean) * (v[i] - s.mean);
  s.sd = std::sqrt(var / double(n) + eps);
  const double inv = 1.0 / s.sd;
  for (int64_t i = 0; i < n; ++i) v[i] = (v[i] - s.mean) * inv * w[i] + b[i];
  return s;
}

// ---------------------------------------------------------------------------------------
// RoPE (§2.7; §1.2 and §2.10 for V3 / V3.2).

inline constexpr int64_t kRopeDim = 64;  // rotated dims of every head, in every table

// §1.2 / §2.7 YaRN correction range: low = floor(64 ln(orig / (beta_fast 2 pi)) / (2 ln theta)),
// high = ceil(64 ln(orig / (beta_slow 2 pi)) / (2 ln theta)), clamped to [0, 63].
inline void yarn_range(double theta, double orig, double beta_fast, double beta_slow,
                       int64_t* low, int64_t* high) {
  auto dim = [&](double beta) {
    return double(kRopeDim) * std::log(orig / (beta * 2 * std::numbers::pi)) /
           (2 * std::log(theta));
  };
  *low = std::max<int64_t>(0, int64_t(std::floor(dim(beta_fast))));
  *high = std::min<int64_t>(kRopeDim - 1, int64_t(std::ceil(dim(beta_slow))));
}

// §2.7 frequency table: f_i = theta^(-2i/64), i = 0..31; with YaRN (factor > 1) over the
// correction range [low, high]: s_i = 1 - clamp((i - low) / (high - low), 0, 1),
// f_i <- f_i s_i + (f_i / factor)(1 - s_i). No magnitude factor.
inline std::vector<double> rope_freqs(double theta, double factor = 1.0, int64_t low = 0,
                                      int64_t high = 0) {
  std::vector<double> f(kRopeDim / 2);
  for (int64_t i = 0; i < kRopeDim / 2; ++i) {
    double fi = std::pow(theta, -2.0 * double(i) / double(kRopeDim));
    if (factor > 1) {
      const double s = 1.0 - std::clamp(double(i - low) / double(high - low), 0.0, 1.0);
      fi = fi * s + fi / factor * (1.0 - s);
    }
    f[size_t(i)] = fi;
  }
  return f;
}

// §2.7 compressed layers (CSA / HCA, and the indexer): theta 160000, YaRN factor 16 over the
// correction range [15, 25] that the spec states.
inline const std::vector<double>& v4_compressed_freqs() {
  static const std::vector<double> f = rope_freqs(160000.0, 16.0, 15, 25);
  return f;
}

// §2.7 window-only layers: theta 10000, no YaRN.
inline const std::vector<double>& v4_window_freqs() {
  static const std::vector<double> f = rope_freqs(10000.0);
  return f;
}

// §1.2 / §2.10 V3 table (V3.2 indexer): theta 1e4, YaRN factor 40 from 4096, beta 32 / 1.
inline const std::vector<double>& v3_freqs() {
  static const std::vector<double> f = [] {
    int64_t low = 0, high = 0;
    yarn_range(10000.0, 4096.0, 32.0, 1.0, &low, &high);
    return rope_freqs(10000.0, 40.0, low, high);
  }();
  return f;
}

// §2.7 interleaved layout: pairs (2i, 2i+1) of v[0, 64) rotated by the angle sign * pos * f_i
// (sign -1: the inverse of §2.6). V4 rotates the LAST 64 dims of a head: pass v + hd - 64.
inline void rope_interleaved(double* v, double pos, const std::vector<double>& f,
                             double sign = 1.0) {
  for (int64_t i = 0; i < kRopeDim / 2; ++i) {
    const double a = sign * pos * f[size_t(i)];
    const double x0 = v[2 * i], x1 = v[2 * i + 1];
    v[2 * i] = x0 * std::cos(a) - x1 * std::sin(a);
    v[2 * i + 1] = x0 * std::sin(a) + x1 * std::cos(a);
  }
}

// §2.10 half_split layout (V3.2 indexer, on the FIRST 64 dims): pairs (i, i + 32) of v[0, 64)
// rotated by sign * pos * f_i.
inline void rope_half_split(double* v, double pos, const std::vector<double>& f,
                            double sign = 1.0) {
  constexpr int64_t h = kRopeDim / 2;
  for (int64_t i = 0; i < h; ++i) {
    const double a = sign * pos * f[size_t(i)];
    const double x0 = v[i], x1 = v[i + h];
    v[i] = x0 * std::cos(a) - x1 * std::sin(a);
    v[i + h] = x0 * std::sin(a) + x1 * std::cos(a);
  }
}

// ---------------------------------------------------------------------------------------
// Hadamard (§2.3 fp4 path, §2.4 indexer, §2.10).

// Normalised Walsh-Hadamard transform of v[0, n) in place, Sylvester order:
// y_j = sum_i (-1)^popcount(i & j) x_i / sqrt(n). O(n^2), independent of any butterfly.
inline void hadamard(double* v, int64_t n) {
  std::vector<double> y(static_cast<size_t>(n), 0.0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < n; ++i)
      y[size_t(j)] += (std::popcount(uint64_t(i & j)) & 1) ? -v[i] : v[i];
  const double s = 1.0 / std::sqrt(double(n));
  for (int64_t j = 0; j < n; ++j) v[j] = y[size_t(j)] * s;
}

// sum_i |v_i| / sqrt(n): the sum of |terms| of every output of the transform of v[0, n)
// (the magnitude its tolerance derivations use).
inline double hadamard_magnitude(const double* v, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(v[i]);
  return s / std::sqrt(double(n));
}

// ---------------------------------------------------------------------------------------
// FP8 / FP4 block quantisation simulation (§2.2 step 3, §2.3, §2.4, §9.4; op-contract
// quant_fp8 / quant_fp4) and the BF16 rounding of the RoPE dims of cached entries (§2.2
// step 3). The scalar grids are written here from the format definitions.

// Rounds x to a binary float grid with `mant` mantissa bits whose smallest normal exponent is
// emin (below it the subnormal step 2^(emin - mant)), to nearest, ties to even, saturating
// at vmax.
inline double round_minifloat(double x, int mant, int emin, double vmax) {
  const double a = std::fabs(x);
  if (a == 0 || std::isnan(a)) return x;
  const int ex = std::max(std::ilogb(a), emin);
  const double step = std::ldexp(1.0, ex - mant);
  const double q = std::min(std::nearbyint(a / step) * step, vmax);
  return std::copysign(q, x);
}

enum class Fmt { fp8, fp4 };
// e4m3fn: 3 mantissa bits, smallest normal 2^-6, max 448. e2m1: grid {0, .5, 1, 1.5, 2, 3, 4, 6}.
inline double fmt_max(Fmt f) { return f == Fmt::fp8 ? 448.0 : 6.0; }
// The amax floor of the block scale: 1e-4 (FP8), 6 * 2^-126 (FP4).
inline double fmt_floor(Fmt f) { return f == Fmt::fp8 ? 1e-4 : 6.0 * std::ldexp(1.0, -126); }
// Rounds a value already divided by its block scale.
inline double fmt_round(Fmt f, double v) {
  return f == Fmt::fp8 ? round_minifloat(v, 3, -6, 448.0) : round_minifloat(v, 1, 0, 6.0);
}

// UE8M0 scale exponent: the smallest integer e with qmax 2^e >= max(amax, floor) (the
// comparisons are exact: qmax 2^e is representable).
inline int scale_exp(Fmt f, double amax) {
  const double a = std::max(amax, fmt_floor(f));
  int e = int(std::ceil(std::log2(a / fmt_max(f))));
  while (std::ldexp(fmt_max(f), e) < a) ++e;
  while (std::ldexp(fmt_max(f), e - 1) >= a) --e;
  return e;
}

inline double block_amax(const double* v, int64_t n) {
  double a = 0;
  for (int64_t i = 0; i < n; ++i) a = std::max(a, std::fabs(v[i]));
  return a;
}

// Round trip of v[0, n) in blocks of `block` columns (a trailing partial block on its own
// amax): v <- round(v / 2^e) 2^e per block.
inline void quant_blocks(Fmt f, double* v, int64_t n, int64_t block) {
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const int64_t len = std::min(block, n - b0);
    const double s = std::ldexp(1.0, scale_exp(f, block_amax(v + b0, len)));
    for (int64_t i = 0; i < len; ++i) v[b0 + i] = fmt_round(f, v[b0 + i] / s) * s;
  }
}

// Tight check of one quantised element computed in a precision that errs by <= delta before
// the rounding: `got` must be the round trip of some value in [pre - delta, pre + delta]
// under some scale between those of amax - delta and amax + delta (rounding is monotone, so
// for a fixed scale the candidates form [q(pre - delta), q(pre + delta)]). Where that leaves
// a single candidate, `got` must equal the oracle's own rounding `out` exactly.
inline bool quant_consistent(Fmt f, double got, double pre, double amax, double delta,
                             double out) {
  const int elo = scale_exp(f, std::max(amax - delta, 0.0));
  const int ehi = scale_exp(f, amax + delta);
  bool single = true, inside = false;
  double first = 0;
  for (int e = elo; e <= ehi; ++e) {
    const double s = std::ldexp(1.0, e);
    const double lo = fmt_round(f, (pre - delta) / s) * s;
    const double hi = fmt_round(f, (pre + delta) / s) * s;
    if (lo != hi || (e > elo && lo != first)) single = false;
    if (e == elo) first = lo;
    if (got >= lo && got <= hi) inside = true;
  }
  return inside && (!single || got == out);
}

// BF16 (1-8-7: float's exponent range, 7 stored mantissa bits) rounding of x: to nearest,
// ties to even, on the grid of round_minifloat with 7 mantissa bits and smallest normal
// exponent -126 (subnormal step 2^-133); a magnitude beyond the largest finite value
// (2 - 2^-7) 2^127 after rounding overflows to inf, as RNE does. NaN and inf are kept.
// §2.2 step 3 / §2.3: the RoPE dims of a cached entry under the official numerics.
inline constexpr double kBf16Max = (2.0 - 1.0 / 128.0) * 0x1p127;
inline double round_bf16(double x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const double q = round_minifloat(x, 7, -126, kInf);
  return std::fabs(q) > kBf16Max ? std::copysign(kInf, x) : q;
}

// round_bf16 of v[0, n) in place.
inline void round_bf16_all(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = round_bf16(v[i]);
}

// Tight check of one BF16-rounded element whose pre-rounding value was computed with error
// <= delta: `got` must be a BF16 value and the rounding of some value in [pre - delta,
// pre + delta], i.e. (rounding is monotone) a BF16 value in [r(pre - delta), r(pre + delta)].
// Where that interval is a single value, `got` must equal the oracle's rounding `out`.
inline bool bf16_consistent(double got, double pre, double delta, double out) {
  const double lo = round_bf16(pre - delta), hi = round_bf16(pre + delta);
  if (round_bf16(got) != got || got < lo || got > hi) return false;
  return lo != hi || got == out;
}

// Loose bound on |round_bf16(x) - x|: half a BF16 step at |x|, 2^(ilogb|x| - 8) <= |x| 2^-8
// in the normal range, + half the subnormal step 2^-134.
inline double bf16_ideal_bound(double x) { return std::fabs(x) / 256 + 0x1p-134; }

// Loose ("ideal") bound on |round trip - x|: half a grid step at |x|.
//   e4m3: 3 mantissa bits -> <= |x| 2^-4 in the normal range, + half the subnormal step
//         2^-10 s; e2m1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}: half gap <= max(|x|/4, s/4).
inline double ideal_bound(Fmt f, double x, double amax) {
  const double s = std::ldexp(1.0, scale_exp(f, amax));
  return f == Fmt::fp8 ? std::fabs(x) / 16 + s / 1024 : std::max(std::fabs(x), s) / 4;
}

// ---------------------------------------------------------------------------------------
// Top-k selection (§2.4 indexer, §2.10 DSA, §3.2 router).

// The candidates (ascending index) ranked by descending score, ties to the lower index.
inline std::vector<int32_t> rank_desc(const double* score, std::vector<int32_t> candidates) {
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  return candidates;
}

// The first min(k, #candidates) of that ranking, padded with -1 to width k.
inline std::vector<int32_t> topk(const double* score, std::vector<int32_t> candidates, int64_t k) {
  const std::vector<int32_t> order = rank_desc(score, std::move(candidates));
  std::vector<int32_t> out(static_cast<size_t>(k), -1);
  std::copy_n(order.begin(), std::min<int64_t>(k, int64_t(order.size())), out.begin());
  return out;
}

// §2.4 step 3 / §2.10 index scores: scores[r][j] = sum_h w[r][h] ReLU(q[r, h, :] . k[j, :])
// for the j with visible(r, j), -inf otherwise; q [T, HI*dI], k [N, dI], w [T, HI].
// mag[r] = max_j sum_h |w_rh| sum_i |q_hi k_ji| (for the tolerance).
template <class Visible>
void index_scores(int64_t T, int64_t N, int64_t HI, int64_t dI, const std::vector<double>& q,
                  const std::vector<double>& k, const std::vector<double>& w, Visible visible,
                  std::vector<double>& scores, std::vector<double>& mag) {
  scores.assign(size_t(T * N), -kInf);
  mag.assign(size_t(T), 0.0);
  for (int64_t r = 0; r < T; ++r)
    for (int64_t j = 0; j < N; ++j) {
      if (!visible(r, j)) continue;
      double s = 0, ms = 0;
      for (int64_t h = 0; h < HI; ++h) {
        double dot = 0, md = 0;
        for (int64_t i = 0; i < dI; ++i) {
          const double t = q[size_t(r * HI * dI + h * dI + i)] * k[size_t(j * dI + i)];
          dot += t;
          md += std::fabs(t);
        }
        s += w[size_t(r * HI + h)] * std::max(0.0, dot);
        ms += std::fabs(w[size_t(r * HI + h)]) * md;
      }
      scores[size_t(r * N + j)] = s;
      mag[size_t(r)] = std::max(mag[size_t(r)], ms);
    }
}

// §2.4 / §2.10 selection over index scores [T, N]: per row the visible j by descending
// score, ties to the lower j, the first min(topk, #visible), padded with -1 -> [T, topk].
template <class Visible>
std::vector<int32_t> index_topk(int64_t T, int64_t N, int64_t topk_, Visible visible,
                                const std::vector<double>& scores) {
  std::vector<int32_t> out;
  out.reserve(size_t(T * topk_));
  for (int64_t r = 0; r < T; ++r) {
    std::vector<int32_t> vis;
    for (int64_t j = 0; j < N; ++j)
      if (visible(r, j)) vis.push_back(int32_t(j));
    const std::vector<int32_t> row = topk(&scores[size_t(r * N)], std::move(vis), topk_);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Attention core (§2.5 with a sink; §1.2 / §2.10 MLA without one).

// Statistics of one attend() call for the tolerance derivations.
struct AttendStats {
  double smag = 0;  // max over entries of scale * sum_i |q_i e_i|
  double omag = 0;  // max over value dims i of sum_j w_j |e_j[i]|
};

// One query head q[0, dk) over the entries ent[j][0, dk): s_j = scale * q . e_j;
// lse = ln(exp(sink) + sum_j exp(s_j)) (sink = -inf: no sink); o[0, dv) = sum_j exp(s_j - lse)
// e_j[0, dv). Nothing attended and no sink: o = 0, lse = -inf. Returns lse.
inline double attend(const double* q, const std::vector<const double*>& ent, int64_t dk,
                     int64_t dv, double scale, double sink, double* o, AttendStats* st) {
  std::vector<double> s(ent.size());
  double m = sink;
  for (size_t j = 0; j < ent.size(); ++j) {
    double dot = 0, mag = 0;
    for (int64_t i = 0; i < dk; ++i) {
      dot += q[i] * ent[j][i];
      mag += std::fabs(q[i] * ent[j][i]);
    }
    s[j] = scale * dot;
    st->smag = std::max(st->smag, scale * mag);
    m = std::max(m, s[j]);
  }
  std::fill(o, o + dv, 0.0);
  if (m == -kInf) return -kInf;
  double z = std::exp(sink - m);
  for (double v : s) z += std::exp(v - m);
  const double lse = m + std::log(z);
  std::vector<double> mag(static_cast<size_t>(dv), 0.0);
  for (size_t j = 0; j < ent.size(); ++j) {
    const double w = std::exp(s[j] - lse);
    for (int64_t i = 0; i < dv; ++i) {
      o[i] += w * ent[j][i];
      mag[size_t(i)] += w * std::fabs(ent[j][i]);
    }
  }
  for (double v : mag) st->omag = std::max(st->omag, v);
  return lse;
}

// Tolerances of an attention op in precision T against attend(), over a whole problem
// (smag, omag: maxima of AttendStats over every call; nmax: most entries of one call).
// o: a score is a length-dk dot product, abs error ds <= reduction_tol<T>(dk, smag); exp
// turns it into a relative error of each weight, at most doubled by the normalisation, so
// o[i] = sum_j w_j e_j[i] moves by <= 2 ds omag; the length-n sum adds
// reduction_tol<T>(n, omag).
template <class T>
double attend_tol_o(double smag, double omag, int64_t dk, int64_t nmax) {
  return 2 * reduction_tol<T>(double(dk), smag) * omag + reduction_tol<T>(double(nmax), omag);
}
// lse = m + ln Z: ds from the scores, a relative error reduction_tol<T>(nterms) of Z (terms
// in (0, 1], one of them 1; nterms = nmax, + 1 with a sink) which ln turns into the same
// absolute error, and the rounding of lse itself.
template <class T>
double attend_tol_lse(double smag, double lsemax, int64_t dk, int64_t nterms) {
  return reduction_tol<T>(double(dk), smag) + reduction_tol<T>(double(nterms), 1.0) +
         reduction_tol<T>(1.0, lsemax);
}

}  // namespace dsv4::test::naive
