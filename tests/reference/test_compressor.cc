// Tests of reference/compressor.h: the token-level KV compressor (CSA with overlap, HCA).
// Spec: docs/v4-architecture.md §2.3 (math, state), §2.7 (RoPE table), §2.8 (emission),
// §2.9 (decode order).
//
// The oracle below is a naive double-precision loop written from §2.3: per-token
// projections, one per-channel softmax per entry (CSA: A halves of the previous block and
// B halves of the current block), RMSNorm, interleaved RoPE on the last 64 dims at the
// block's first position, then the quantisation simulation (fp8: FP8 round trip of the
// non-RoPE dims in blocks of 64, then BF16 rounding of the RoPE dims). It never calls reference/; the
// spec pieces it shares with other tests (softmax, RMSNorm, the §2.7 compressed RoPE table
// and interleaved rotation, the normalised Hadamard, the FP8 / FP4 block round trips and
// their consistency checks) are the ones of tests/support/naive.h.
#include "reference/compressor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using naive::Fmt;
using test::all_close;
using test::bitwise_equal;
using test::reduction_tol;
using test::round_to;
using test::unit_roundoff;

constexpr double kInf = naive::kInf;
constexpr int64_t kRd = naive::kRopeDim;  // d_r

// ---------------------------------------------------------------------------------------
// The compressor oracle (§2.3).

struct Cfg {
  int64_t D, dc, m;
  bool overlap;
  CompressorQuant quant = CompressorQuant::none;
  int64_t c() const { return overlap ? 2 : 1; }
  int64_t width() const { return c() * dc; }
  int64_t rows() const { return c() * m; }
};

std::string describe(const Cfg& c) {
  static const char* q[] = {"none", "fp8", "fp4_hadamard"};
  return "D=" + std::to_string(c.D) + " dc=" + std::to_string(c.dc) + " m=" +
         std::to_string(c.m) + (c.overlap ? " CSA" : " HCA") + " quant=" + q[int(c.quant)];
}

// Inputs held in double, already rounded to the op's element type, so the oracle sees
// exactly what the op sees.
struct Model {
  Cfg cfg;
  std::vector<double> wkv, wgate, ape, norm;  // [w, D], [w, D], [m, w], [dc]
};

// Random weights: a = Wkv x ~ O(1/3) for x ~ U(-1, 1); gate logits ~ O(gate) and ape ~
// O(ape) so that the softmax is far from uniform and ape visibly shifts it.
template <class T>
Model random_model(const Cfg& c, uint64_t seed, double gate = 3.0, double ape = 1.0) {
  Model M{c, {}, {}, {}, {}};
  const double s = 1.0 / std::sqrt(double(c.D));
  M.wkv = round_to<T>(test::uniform(c.width() * c.D, seed, -s, s));
  M.wgate = round_to<T>(test::uniform(c.width() * c.D, seed + 1, -gate * s, gate * s));
  M.ape = round_to<T>(test::uniform(c.m * c.width(), seed + 2, -ape, ape));
  M.norm = round_to<T>(test::uniform(c.dc, seed + 3, 0.5, 1.5));
  return M;
}

// Values +-k 2^-denom_log2 with k uniform in [1, kmax] (default: all of [-1, 1]).
std::vector<double> dyadic(size_t n, uint64_t seed, int denom_log2, int kmax = 0) {
  std::mt19937_64 g(seed);
  const int k = kmax > 0 ? kmax : 1 << denom_log2;
  std::uniform_int_distribution<int> d(1, k), sgn(0, 1);
  std::vector<double> v(n);
  for (double& x : v) x = (sgn(g) ? -1.0 : 1.0) * std::ldexp(d(g), -denom_log2);
  return v;
}

// Exactly representable inputs with x in (1/4)Z (from dyadic(n, seed, 2)):
//   small D (<= 2^10): W in (1/8)Z and ape in (1/8)Z, all in [-1, 1]. Every product is a
//     multiple of 2^-5 bounded by 1, so every partial sum of a projection is a multiple of
//     2^-5 below 2^10: 15 significant bits;
//   wide (D = 4096): W = +-k 2^-10, k in [1, 32] (|W| <= 2^-5), ape in 2^-8 Z: products are
//     multiples of 2^-12 bounded by 2^-5, partial sums below 4096 2^-5 = 2^7: 19 bits (20
//     with ape).
// Both fit float's 24 bits, so the projections are exact in any summation order: the GEMM
// (prefill) and GEMV (decode) agree exactly, and so must everything computed from them.
Model exact_model(const Cfg& c, uint64_t seed, bool wide = false) {
  Model M{c, {}, {}, {}, {}};
  M.wkv = wide ? dyadic(c.width() * c.D, seed, 10, 32) : dyadic(c.width() * c.D, seed, 3);
  M.wgate = wide ? dyadic(c.width() * c.D, seed + 1, 10, 32) : dyadic(c.width() * c.D, seed + 1, 3);
  M.ape = wide ? dyadic(c.m * c.width(), seed + 2, 8) : dyadic(c.m * c.width(), seed + 2, 3);
  M.norm = dyadic(c.dc, seed + 3, 2);
  for (double& w : M.norm) w = 0.75 + std::fabs(w) / 2;  // in [0.875, 1.25], dyadic
  return M;
}

struct Oracle {
  int64_t T = 0, nb = 0;
  std::vector<double> a, z;      // [T, w] projections (z includes ape)
  std::vector<double> C;         // [nb, dc] pooled, before the norm
  std::vector<double> pre, out;  // [nb, dc] just before the rounding; final
  // Statistics used by the tolerance derivation (entry_delta).
  double Ma = 0, Mz = 0, Amax = 0, ratio = 0, Wn = 0, Ymax = 0;
  double Hmag = 0;  // max over entries of sum_i |y_i| / sqrt(dc): the Hadamard's magnitude
  double sens = 0;  // max over entries, channels of sum_k w_k |a_k - C| (softmax weights w)
  double gain = 0;  // max over entries of (1 + max|C| / rms) / rms (the norm's amplification)
  bool exact_proj = false;  // projections exact in the op's type (dyadic inputs)
};

// The shared tail of §2.3: RMSNorm_w, RoPE at block*m, quantisation simulation.
void finish_oracle(const Model& M, const double* C, int64_t block, double* pre, double* out,
                   Oracle* stats) {
  const Cfg& c = M.cfg;
  const int64_t dc = c.dc;
  const double cmax = naive::block_amax(C, dc);
  std::vector<double> y(C, C + dc);
  const double rms = naive::rmsnorm(y.data(), dc, M.norm.data(), kNormEps);
  // interleaved RoPE on the last 64 dims
  naive::rope_interleaved(y.data() + dc - kRd, double(block * c.m), naive::v4_compressed_freqs());
  if (stats) {
    stats->ratio = std::max(stats->ratio, cmax / rms);
    stats->gain = std::max(stats->gain, (1 + cmax / rms) / rms);
    stats->Ymax = std::max(stats->Ymax, naive::block_amax(y.data(), dc));
    stats->Wn = naive::block_amax(M.norm.data(), dc);
    stats->Hmag = std::max(stats->Hmag, naive::hadamard_magnitude(y.data(), dc));
  }
  if (c.quant == CompressorQuant::fp4_hadamard) naive::hadamard(y.data(), dc);
  std::copy(y.begin(), y.end(), pre);
  if (c.quant == CompressorQuant::fp8) {  // main entries: FP8 non-RoPE dims, BF16 RoPE dims
    naive::quant_blocks(Fmt::fp8, y.data(), dc - kRd, 64);
    naive::round_bf16_all(y.data() + dc - kRd, kRd);
  }
  if (c.quant == CompressorQuant::fp4_hadamard) naive::quant_blocks(Fmt::fp4, y.data(), dc, 32);
  std::copy(y.begin(), y.end(), out);
}

Oracle run_oracle(const Model& M, const std::vector<double>& x, int64_t T) {
  const Cfg& c = M.cfg;
  const int64_t D = c.D, w = c.width(), dc = c.dc, m = c.m;
  Oracle o;
  o.T = T;
  o.nb = T / m;
  o.a.assign(T * w, 0.0);
  o.z.assign(T * w, 0.0);
  for (int64_t s = 0; s < T; ++s) {
    const double* xs = &x[s * D];
    for (int64_t ch = 0; ch < w; ++ch) {
      const double* wk = &M.wkv[ch * D];
      const double* wg = &M.wgate[ch * D];
      double sa = 0, sz = 0, ma = 0, mz = 0;
      for (int64_t k = 0; k < D; ++k) {
        sa += wk[k] * xs[k];
        sz += wg[k] * xs[k];
        ma += std::fabs(wk[k] * xs[k]);
        mz += std::fabs(wg[k] * xs[k]);
      }
      const double ape = M.ape[(s % m) * w + ch];
      o.a[s * w + ch] = sa;
      o.z[s * w + ch] = sz + ape;
      o.Ma = std::max(o.Ma, ma);
      o.Mz = std::max(o.Mz, mz + std::fabs(ape));
      o.Amax = std::max(o.Amax, std::fabs(sa));
    }
  }
  o.C.assign(o.nb * dc, 0.0);
  o.pre.assign(o.nb * dc, 0.0);
  o.out.assign(o.nb * dc, 0.0);
  std::vector<double> lg, val;
  for (int64_t i = 0; i < o.nb; ++i) {
    for (int64_t ch = 0; ch < dc; ++ch) {
      lg.clear();
      val.clear();
      if (c.overlap && i > 0) {  // A half [0, dc) of the m tokens of block i-1
        for (int64_t s = (i - 1) * m; s < i * m; ++s) {
          lg.push_back(o.z[s * w + ch]);
          val.push_back(o.a[s * w + ch]);
        }
      }
      const int64_t off = c.overlap ? dc : 0;  // B half [dc, 2dc) of block i (HCA: all)
      for (int64_t s = i * m; s < (i + 1) * m; ++s) {
        lg.push_back(o.z[s * w + off + ch]);
        val.push_back(o.a[s * w + off + ch]);
      }
      const std::vector<double> wt = naive::softmax(lg.data(), int64_t(lg.size()));
      double Cv = 0;
      for (size_t k = 0; k < lg.size(); ++k) Cv += wt[k] * val[k];
      o.C[i * dc + ch] = Cv;
      double sens = 0;
      for (size_t k = 0; k < lg.size(); ++k) sens += wt[k] * std::fabs(val[k] - Cv);
      o.sens = std::max(o.sens, sens);
    }
    finish_oracle(M, &o.C[i * dc], i, &o.pre[i * dc], &o.out[i * dc], &o);
  }
  return o;
}

// The decode state after T tokens (§2.3 and the header): CSA rows 0..m-1 the previous
// (last complete) block, rows m..2m-1 the current partial block; HCA rows 0..m-1 the
// current partial block; rows not holding a token: kv = 0, score = -inf.
void oracle_state(const Model& M, const Oracle& o, int64_t T, std::vector<double>& kv,
                  std::vector<double>& score) {
  const Cfg& c = M.cfg;
  const int64_t w = c.width(), m = c.m;
  kv.assign(c.rows() * w, 0.0);
  score.assign(c.rows() * w, -kInf);
  auto put = [&](int64_t row, int64_t s) {
    for (int64_t ch = 0; ch < w; ++ch) {
      kv[row * w + ch] = o.a[s * w + ch];
      score[row * w + ch] = o.z[s * w + ch];
    }
  };
  const int64_t cut = (T / m) * m;
  if (c.overlap && cut > 0)
    for (int64_t k = 0; k < m; ++k) put(k, cut - m + k);
  const int64_t cur = c.overlap ? m : 0;
  for (int64_t s = cut; s < T; ++s) put(cur + s - cut, s);
}

// Derived bound on |op - oracle| for an entry element before the rounding step, for an op
// computing in T (u = unit roundoff of T), first order:
//   projections (length-D reductions):  ea = reduction_tol<T>(D, Ma), ez likewise (+ ape);
//                    both 0 when the inputs make every partial sum exact (exact_proj)
//   softmax pooling: dC = sum_k w_k da_k + sum_k dw_k a_k with dw_k = w_k (dz_k - sum_j
//                    w_j dz_j), i.e. sum_k dw_k a_k = sum_k w_k dz_k (a_k - C)
//                    -> |dC| <= ea + ez sens, + the pooling's own length-2m rounding
//   RMSNorm y = C w / rms: dy_d = w_d (dC_d / rms - C_d (C . dC) / (dc rms^3)) and
//                    |C . dC| <= dc rms max|dC| -> |dy| <= Wn max|dC| gain, + its length-dc
//                    sum of squares
//   RoPE (rotation, cos/sin rounded to T): sqrt(2) |dy| + 4 u Ymax
//   Hadamard (fp4 path): dh_j = sum_i +-dy_i / sqrt(dc), dc terms of size <= max|dy| /
//                        sqrt(dc): |dh_j| <= max|dy| in the typical (sqrt(k)) combination
//                        that reduction_tol assumes, + its own length-dc reduction of
//                        magnitude Hmag = sum_i |y_i| / sqrt(dc)
// extra_C adds a known perturbation of C (the gate tests' leakage).
template <class T>
double entry_delta(const Cfg& c, const Oracle& o, double extra_C = 0.0) {
  const double u = unit_roundoff<T>();
  const double ea = o.exact_proj ? 0.0 : reduction_tol<T>(double(c.D), o.Ma);
  const double ez = o.exact_proj ? 0.0 : reduction_tol<T>(double(c.D), o.Mz);
  const double eC = ea + ez * o.sens + reduction_tol<T>(double(2 * c.m), o.Amax) + extra_C;
  const double ey = o.Wn * eC * o.gain + reduction_tol<T>(double(c.dc), o.Wn * o.ratio);
  const double er = std::sqrt(2.0) * ey + 4 * u * o.Ymax;
  if (c.quant != CompressorQuant::fp4_hadamard) return er;
  return er + reduction_tol<T>(double(c.dc), o.Hmag);
}

// Compares nb op entries with the oracle: plain dims within delta; quantised dims
// (fp8: [0, dc-64), fp4_hadamard: all) must be a rounding of a value within delta of the
// oracle's pre-rounding value (tight), and within the format's half step of it (ideal);
// the RoPE dims [dc-64, dc) of fp8 entries likewise for BF16 (naive::bf16_consistent:
// a BF16 value, the rounding of some value within delta of pre; and half a BF16 step).
template <class T>
::testing::AssertionResult entries_match(const Cfg& c, const T* got, const Oracle& o,
                                         int64_t nb, double delta) {
  const int64_t dc = c.dc;
  if (nb > o.nb) return ::testing::AssertionFailure() << "oracle has too few entries";
  for (int64_t i = 0; i < nb; ++i) {
    const double* pre = &o.pre[i * dc];
    const double* out = &o.out[i * dc];
    for (int64_t d = 0; d < dc; ++d) {
      const double g = double(got[i * dc + d]);
      if (!std::isfinite(g))
        return ::testing::AssertionFailure() << "entry " << i << " dim " << d << " is " << g;
      if (c.quant == CompressorQuant::fp8 && d >= dc - kRd) {
        if (!naive::bf16_consistent(g, pre[d], delta, out[d]))
          return ::testing::AssertionFailure()
                 << "entry " << i << " dim " << d << ": got " << g << ", not a BF16 rounding of "
                 << pre[d] << " +- " << delta << " (oracle rounding " << out[d] << ")";
        if (std::fabs(g - pre[d]) > naive::bf16_ideal_bound(pre[d]) + delta)
          return ::testing::AssertionFailure()
                 << "entry " << i << " dim " << d << ": got " << g << ", ideal " << pre[d]
                 << " beyond half a BF16 step";
        continue;
      }
      bool q = false;
      Fmt f = Fmt::fp8;
      int64_t blk = 0;
      if (c.quant == CompressorQuant::fp8 && d < dc - kRd) {
        q = true;
        blk = 64;
      } else if (c.quant == CompressorQuant::fp4_hadamard) {
        q = true;
        f = Fmt::fp4;
        blk = 32;
      }
      if (!q) {
        if (std::fabs(g - out[d]) > delta)
          return ::testing::AssertionFailure()
                 << "entry " << i << " dim " << d << ": got " << g << ", oracle " << out[d]
                 << ", |diff| " << std::fabs(g - out[d]) << " > " << delta;
        continue;
      }
      const int64_t b0 = d / blk * blk;
      const int64_t len = std::min(blk, (c.quant == CompressorQuant::fp8 ? dc - kRd : dc) - b0);
      const double amax = naive::block_amax(pre + b0, len);
      if (!naive::quant_consistent(f, g, pre[d], amax, delta, out[d]))
        return ::testing::AssertionFailure()
               << "entry " << i << " dim " << d << ": got " << g << ", not a rounding of "
               << pre[d] << " +- " << delta << " (oracle rounding " << out[d] << ")";
      if (std::fabs(g - pre[d]) > naive::ideal_bound(f, pre[d], amax) + delta)
        return ::testing::AssertionFailure()
               << "entry " << i << " dim " << d << ": got " << g << ", ideal " << pre[d]
               << " beyond half a grid step";
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------
// Calling the op.

template <class T>
struct Op {
  Cfg cfg;
  std::vector<T> wkv, wgate, ape, norm;
  explicit Op(const Model& M)
      : cfg(M.cfg),
        wkv(M.wkv.begin(), M.wkv.end()),
        wgate(M.wgate.begin(), M.wgate.end()),
        ape(M.ape.begin(), M.ape.end()),
        norm(M.norm.begin(), M.norm.end()) {}
  CompressorParams<T> params() const {
    CompressorParams<T> p;
    p.shape.dim = cfg.D;
    p.shape.head_dim = cfg.dc;
    p.shape.ratio = cfg.m;
    p.shape.overlap = cfg.overlap;
    p.w.wkv = wkv.data();
    p.w.wgate = wgate.data();
    p.w.ape = ape.data();
    p.w.norm = norm.data();
    p.quant = cfg.quant;
    return p;
  }
};

template <class T>
T nan_v() {
  return std::numeric_limits<T>::quiet_NaN();
}

// Prefill over the first T tokens of x; entries poisoned with NaN first.
template <class T>
std::vector<T> prefill(const Op<T>& op, const std::vector<T>& x, int64_t T_,
                       CompressorState<T>* st = nullptr) {
  const int64_t nb = T_ / op.cfg.m, dc = op.cfg.dc;
  std::vector<T> e((nb + 1) * dc, nan_v<T>());  // one spare row: never written
  ref::compressor_prefill<T>(op.params(), view2(x.data(), T_, op.cfg.D), view2(e.data(), nb, dc),
                             st);
  for (int64_t d = 0; d < dc; ++d)
    EXPECT_TRUE(std::isnan(e[nb * dc + d])) << "prefill wrote past its entries";
  e.resize(nb * dc);
  return e;
}

// Token-by-token decode up to max(lengths); at each length records the entries emitted so
// far and a copy of the state. Checks the emission rule on every step.
template <class T>
struct Decoded {
  std::vector<std::vector<T>> entries;
  std::vector<CompressorState<T>> states;
};
template <class T>
Decoded<T> decode(const Op<T>& op, const std::vector<T>& x, const std::vector<int64_t>& lengths) {
  const int64_t m = op.cfg.m, dc = op.cfg.dc;
  const int64_t Tmax = *std::max_element(lengths.begin(), lengths.end());
  CompressorState<T> st = ref::compressor_state_init<T>(
      CompressorShape{op.cfg.D, op.cfg.dc, op.cfg.m, op.cfg.overlap});
  const CompressorParams<T> p = op.params();
  std::vector<T> all, entry(dc);
  Decoded<T> out;
  for (int64_t t = 0; t < Tmax; ++t) {
    std::fill(entry.begin(), entry.end(), nan_v<T>());
    const bool emitted = ref::compressor_decode<T>(p, &x[t * op.cfg.D], st, entry.data());
    EXPECT_EQ(emitted, (t + 1) % m == 0) << "emission rule at t = " << t << ", m = " << m;
    EXPECT_EQ(st.pos, t + 1);
    if (emitted) all.insert(all.end(), entry.begin(), entry.end());
    if (std::find(lengths.begin(), lengths.end(), t + 1) != lengths.end()) {
      out.entries.push_back(all);
      out.states.push_back(st);
    }
  }
  return out;
}

template <class T>
::testing::AssertionResult state_matches(const Cfg& c, const CompressorState<T>& st,
                                         const Model& M, const Oracle& o, int64_t T_,
                                         double tol_kv, double tol_score) {
  if (st.pos != T_)
    return ::testing::AssertionFailure() << "state pos " << st.pos << " != " << T_;
  if (st.rows != c.rows() || st.width != c.width())
    return ::testing::AssertionFailure() << "state shape [" << st.rows << ", " << st.width << "]";
  std::vector<double> kv, score;
  oracle_state(M, o, T_, kv, score);
  // Empty rows must be exactly kv = 0, score = -inf.
  for (size_t i = 0; i < score.size(); ++i)
    if (std::isinf(score[i]) && (st.kv[i] != T(0) || !(std::isinf(st.score[i]) && st.score[i] < 0)))
      return ::testing::AssertionFailure()
             << "empty state element " << i << " (row " << i / c.width() << "): kv "
             << double(st.kv[i]) << ", score " << double(st.score[i]);
  auto r = all_close(st.kv, kv, tol_kv);
  if (!r) return r << " (state kv)";
  r = all_close(st.score, score, tol_score);
  if (!r) return r << " (state score)";
  return ::testing::AssertionSuccess();
}

template <class T>
class Compressor : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Compressor, Types);

// Small shapes: a main-like CSA (dc = 128 with 64 rope dims, fp8 on the first 64), an
// indexer-like CSA (fp4_hadamard), plain CSA, HCA-like m = 8 and the real m = 128.
std::vector<Cfg> small_cfgs() {
  return {
      {48, 128, 4, true, CompressorQuant::fp8},
      {32, 128, 4, true, CompressorQuant::fp4_hadamard},
      {40, 128, 4, true, CompressorQuant::none},
      {36, 128, 8, false, CompressorQuant::none},
      {32, 128, 8, false, CompressorQuant::fp8},
      {32, 128, 128, false, CompressorQuant::fp8},
      {32, 128, 128, false, CompressorQuant::fp4_hadamard},
  };
}

// ---------------------------------------------------------------------------------------

TYPED_TEST(Compressor, StateInitIsEmpty) {
  using T = TypeParam;
  for (const Cfg& c : {Cfg{16, 128, 4, true}, Cfg{16, 512, 128, false}}) {
    SCOPED_TRACE(describe(c));
    const CompressorState<T> st =
        ref::compressor_state_init<T>(CompressorShape{c.D, c.dc, c.m, c.overlap});
    EXPECT_EQ(st.pos, 0);
    EXPECT_EQ(st.rows, c.rows());
    EXPECT_EQ(st.width, c.width());
    ASSERT_EQ(int64_t(st.kv.size()), c.rows() * c.width());
    ASSERT_EQ(int64_t(st.score.size()), c.rows() * c.width());
    for (size_t i = 0; i < st.kv.size(); ++i) {
      ASSERT_EQ(st.kv[i], T(0));
      ASSERT_TRUE(std::isinf(st.score[i]) && st.score[i] < 0);
    }
  }
}

// The shared tail: RMSNorm, RoPE at block*m, quantisation, on random pooled vectors.
TYPED_TEST(Compressor, FinishEntryMatchesOracle) {
  using T = TypeParam;
  for (CompressorQuant q :
       {CompressorQuant::none, CompressorQuant::fp8, CompressorQuant::fp4_hadamard}) {
    for (int64_t dc : {int64_t(128), int64_t(512)}) {
      Cfg c{8, dc, 4, true, q};
      const Model M = random_model<T>(c, 100 + dc);
      const Op<T> op(M);
      for (int64_t block : {int64_t(0), int64_t(1), int64_t(7), int64_t(3000)}) {
        SCOPED_TRACE(describe(c) + " block " + std::to_string(block));
        const std::vector<double> C = round_to<T>(test::uniform(dc, 7 + block, -2.0, 2.0));
        std::vector<T> e = test::cast<T>(C);
        ref::compressor_finish_entry<T>(op.params(), block, e.data());
        Oracle o;
        o.nb = 1;
        o.pre.resize(dc);
        o.out.resize(dc);
        finish_oracle(M, C.data(), block, o.pre.data(), o.out.data(), &o);
        // Input C is exact here: only the tail's rounding (norm, RoPE, Hadamard) counts.
        o.Ma = o.Mz = o.Amax = 0;
        EXPECT_TRUE(entries_match<T>(c, e.data(), o, 1, entry_delta<T>(c, o)));
      }
    }
  }
}

// fp8 (main entries, as a window entry §2.2 step 3): the RoPE dims [dc-64, dc) of every
// entry are BF16 values, and the comparison tells the BF16 step apart: an output with the
// RoPE dims left unrounded is rejected, and so is an oracle without the BF16 step (both
// under entries_match and under the plain |diff| <= delta check the RoPE dims had before).
TYPED_TEST(Compressor, Fp8EntryRopeDimsAreBf16) {
  using T = TypeParam;
  const Cfg c{48, 128, 4, true, CompressorQuant::fp8};
  const int64_t Tn = 64, nb = Tn / c.m, dc = c.dc;
  const Model M = random_model<T>(c, 141);
  const std::vector<double> x = round_to<T>(test::uniform(Tn * c.D, 142));
  const Oracle o = run_oracle(M, x, Tn);
  const double delta = entry_delta<T>(c, o);
  const std::vector<T> e = prefill(Op<T>(M), test::cast<T>(x), Tn);
  ASSERT_EQ(int64_t(e.size()), nb * dc);
  EXPECT_TRUE(entries_match<T>(c, e.data(), o, nb, delta));
  int64_t pre_not_bf16 = 0;
  std::vector<T> unrounded = e;
  Oracle old = o;  // the previous semantics: RoPE dims not rounded
  std::vector<double> got_rope, old_rope;
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t d = dc - kRd; d < dc; ++d) {
      const double g = double(e[i * dc + d]), pre = o.pre[i * dc + d];
      EXPECT_EQ(naive::round_bf16(g), g) << "entry " << i << " dim " << d << " not BF16";
      if (naive::round_bf16(pre) != pre) ++pre_not_bf16;
      unrounded[i * dc + d] = T(pre);
      old.out[i * dc + d] = pre;
      got_rope.push_back(g);
      old_rope.push_back(pre);
    }
  EXPECT_GT(pre_not_bf16, nb * kRd / 2);  // the rounding is not vacuous
  EXPECT_FALSE(entries_match<T>(c, unrounded.data(), o, nb, delta)) << "unrounded RoPE dims";
  EXPECT_FALSE(entries_match<T>(c, e.data(), old, nb, delta)) << "oracle without BF16";
  EXPECT_FALSE(all_close(got_rope, old_rope, delta)) << "oracle without BF16, plain check";
}

// Prefill vs the oracle over the edge lengths (entries and the state left behind).
TYPED_TEST(Compressor, PrefillMatchesOracleEdgeLengths) {
  using T = TypeParam;
  for (const Cfg& c : small_cfgs()) {
    std::vector<int64_t> lengths;
    if (c.m == 4) lengths = {1, 3, 4, 5, 7, 8, 9, 127, 128, 129, 255, 256, 257, 1009};
    if (c.m == 8) lengths = {1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 256, 257};
    if (c.m == 128) lengths = {1, 127, 128, 129, 255, 256, 257};
    const int64_t Tmax = *std::max_element(lengths.begin(), lengths.end());
    const Model M = random_model<T>(c, 11 * c.D + c.m);
    const std::vector<double> x = round_to<T>(test::uniform(Tmax * c.D, 5 + c.m));
    const Oracle o = run_oracle(M, x, Tmax);
    const double delta = entry_delta<T>(c, o);
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    for (int64_t T_ : lengths) {
      SCOPED_TRACE(describe(c) + " T=" + std::to_string(T_));
      CompressorState<T> st;
      const std::vector<T> e = prefill(op, xt, T_, &st);
      ASSERT_EQ(int64_t(e.size()), (T_ / c.m) * c.dc);
      EXPECT_TRUE(entries_match<T>(c, e.data(), o, T_ / c.m, delta));
      EXPECT_TRUE(state_matches<T>(c, st, M, o, T_, reduction_tol<T>(double(c.D), o.Ma),
                                   reduction_tol<T>(double(c.D), o.Mz)));
    }
  }
}

// Decode step by step: the emission rule ((t+1) % m == 0, entry t/m), each emitted entry
// vs the oracle, and the state layout after every step vs the oracle state.
TYPED_TEST(Compressor, DecodeEmissionRuleAndStateLayout) {
  using T = TypeParam;
  for (const Cfg& c : {Cfg{32, 128, 4, true, CompressorQuant::none},
                       Cfg{32, 128, 4, true, CompressorQuant::fp4_hadamard},
                       Cfg{24, 128, 8, false, CompressorQuant::fp8},
                       Cfg{16, 128, 128, false, CompressorQuant::none}}) {
    const int64_t Tmax = c.m == 128 ? 260 : 3 * c.m + 2;
    const Model M = random_model<T>(c, 21 + c.m);
    const std::vector<double> x = round_to<T>(test::uniform(Tmax * c.D, 22 + c.m));
    const Oracle o = run_oracle(M, x, Tmax);
    const double delta = entry_delta<T>(c, o);
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    const CompressorParams<T> p = op.params();
    CompressorState<T> st =
        ref::compressor_state_init<T>(CompressorShape{c.D, c.dc, c.m, c.overlap});
    std::vector<T> entry(c.dc);
    for (int64_t t = 0; t < Tmax; ++t) {
      SCOPED_TRACE(describe(c) + " t=" + std::to_string(t));
      std::fill(entry.begin(), entry.end(), nan_v<T>());
      const bool emitted = ref::compressor_decode<T>(p, &xt[t * c.D], st, entry.data());
      ASSERT_EQ(emitted, (t + 1) % c.m == 0);
      if (emitted) {
        // entry index t / m: compare against that row of the oracle
        Oracle one = o;
        const int64_t i = t / c.m;
        one.nb = 1;
        one.pre.assign(o.pre.begin() + i * c.dc, o.pre.begin() + (i + 1) * c.dc);
        one.out.assign(o.out.begin() + i * c.dc, o.out.begin() + (i + 1) * c.dc);
        EXPECT_TRUE(entries_match<T>(c, entry.data(), one, 1, delta)) << "entry " << i;
      }
      if (c.m < 128 || t % 61 == 0 || t >= 126) {
        ASSERT_TRUE(state_matches<T>(c, st, M, o, t + 1, reduction_tol<T>(double(c.D), o.Ma),
                                     reduction_tol<T>(double(c.D), o.Mz)));
      }
    }
  }
}

TYPED_TEST(Compressor, ShorterThanOneBlockGivesNoEntries) {
  using T = TypeParam;
  for (const Cfg& c : {Cfg{16, 128, 4, true}, Cfg{16, 128, 128, false}}) {
    const Model M = random_model<T>(c, 31);
    const std::vector<double> x = round_to<T>(test::uniform(c.m * c.D, 32));
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    const Oracle o = run_oracle(M, x, c.m - 1);
    for (int64_t T_ : {int64_t(1), c.m - 1}) {
      SCOPED_TRACE(describe(c) + " T=" + std::to_string(T_));
      CompressorState<T> st;
      EXPECT_TRUE(prefill(op, xt, T_, &st).empty());
      EXPECT_TRUE(state_matches<T>(c, st, M, o, T_, reduction_tol<T>(double(c.D), o.Ma),
                                   reduction_tol<T>(double(c.D), o.Mz)));
      const Decoded<T> d = decode(op, xt, {T_});
      EXPECT_TRUE(d.entries[0].empty());
    }
  }
}

// Lengths for prefill == decode: every length 1..3m+1 for m = 4 (CSA) and m = 8 (HCA-like),
// the real HCA m = 128 around its block edges, and a long odd prime for CSA.
std::vector<std::pair<Cfg, std::vector<int64_t>>> invariance_cases(CompressorQuant q1,
                                                                   CompressorQuant q2) {
  std::vector<int64_t> l4, l8;
  for (int64_t t = 1; t <= 13; ++t) l4.push_back(t);
  for (int64_t t = 1; t <= 25; ++t) l8.push_back(t);
  return {
      {Cfg{32, 128, 4, true, q1}, l4},
      {Cfg{32, 128, 4, true, q2}, l4},
      {Cfg{32, 128, 8, false, q1}, l8},
      {Cfg{32, 128, 128, false, q2}, {127, 128, 129, 255, 256, 257}},
      {Cfg{24, 128, 4, true, q1}, {1009}},
  };
}

// Random float inputs: the GEMM (prefill) and GEMV (decode) projections round differently,
// so compare within twice the oracle bound (both sides are within it). No quantisation
// here: a rounding step could flip on those differences (covered bitwise below).
TYPED_TEST(Compressor, PrefillEqualsDecodeRandomInputs) {
  using T = TypeParam;
  for (const auto& [c, lengths] :
       invariance_cases(CompressorQuant::none, CompressorQuant::none)) {
    const int64_t Tmax = *std::max_element(lengths.begin(), lengths.end());
    const Model M = random_model<T>(c, 41 + c.m + c.D);
    const std::vector<double> x = round_to<T>(test::uniform(Tmax * c.D, 42 + c.m));
    const Oracle o = run_oracle(M, x, Tmax);
    const double tol_e = 2 * entry_delta<T>(c, o);
    const double tol_kv = 2 * reduction_tol<T>(double(c.D), o.Ma);
    const double tol_sc = 2 * reduction_tol<T>(double(c.D), o.Mz);
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    const Decoded<T> d = decode(op, xt, lengths);
    for (size_t li = 0; li < lengths.size(); ++li) {
      const int64_t T_ = lengths[li];
      SCOPED_TRACE(describe(c) + " T=" + std::to_string(T_));
      CompressorState<T> st;
      const std::vector<T> e = prefill(op, xt, T_, &st);
      EXPECT_TRUE(all_close(e, d.entries[li], tol_e));
      EXPECT_EQ(st.pos, d.states[li].pos);
      EXPECT_EQ(st.rows, d.states[li].rows);
      EXPECT_EQ(st.width, d.states[li].width);
      EXPECT_TRUE(all_close(st.kv, d.states[li].kv, tol_kv));
      EXPECT_TRUE(all_close(st.score, d.states[li].score, tol_sc));
    }
  }
}

// Exactly representable inputs (see exact_model): bit-for-bit equality of entries and
// state, every quantisation mode.
TYPED_TEST(Compressor, PrefillEqualsDecodeBitwiseOnExactInputs) {
  using T = TypeParam;
  int checked = 0;
  for (const auto& [c0, lengths] :
       invariance_cases(CompressorQuant::fp8, CompressorQuant::fp4_hadamard)) {
    for (CompressorQuant q : {c0.quant, CompressorQuant::none}) {
      Cfg c = c0;
      c.quant = q;
      const int64_t Tmax = *std::max_element(lengths.begin(), lengths.end());
      const Model M = exact_model(c, 51 + c.m);
      const std::vector<double> x = dyadic(Tmax * c.D, 52 + c.m, 2);
      const Op<T> op(M);
      const std::vector<T> xt = test::cast<T>(x);
      const Decoded<T> d = decode(op, xt, lengths);
      for (size_t li = 0; li < lengths.size(); ++li) {
        const int64_t T_ = lengths[li];
        SCOPED_TRACE(describe(c) + " T=" + std::to_string(T_));
        CompressorState<T> st;
        const std::vector<T> e = prefill(op, xt, T_, &st);
        for (const T v : e) ASSERT_TRUE(std::isfinite(double(v)));
        EXPECT_TRUE(bitwise_equal(e, d.entries[li]));
        EXPECT_EQ(st.pos, d.states[li].pos);
        EXPECT_TRUE(bitwise_equal(st.kv, d.states[li].kv));
        EXPECT_TRUE(bitwise_equal(st.score, d.states[li].score));
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 2 * (13 + 13 + 25 + 6 + 1));
}

// The exactness premise of the bitwise test: the prefill state's projections equal the
// oracle's double sums exactly (if this failed, the bitwise test would prove nothing).
TYPED_TEST(Compressor, ExactInputsGiveExactProjections) {
  using T = TypeParam;
  const Cfg c{32, 128, 4, true, CompressorQuant::none};
  const Model M = exact_model(c, 61);
  const std::vector<double> x = dyadic(7 * c.D, 62, 2);
  const Oracle o = run_oracle(M, x, 7);
  const Op<T> op(M);
  CompressorState<T> st;
  prefill(op, test::cast<T>(x), 7, &st);
  std::vector<double> kv, score;
  oracle_state(M, o, 7, kv, score);
  EXPECT_TRUE(all_close(st.kv, kv, 0.0));
  EXPECT_TRUE(all_close(st.score, score, 0.0));
}

// Smallest margin, over the dc channels, of the logit of (token s, half offset off) over
// every other logit in entry i's softmax window (CSA: A halves of block i-1 and B halves of
// block i; HCA: block i).
double window_gap(const Cfg& c, const Oracle& o, int64_t i, int64_t s, int64_t off) {
  const int64_t w = c.width(), dc = c.dc, m = c.m;
  std::vector<std::pair<int64_t, int64_t>> win;  // (token, half offset)
  if (c.overlap && i > 0)
    for (int64_t t = (i - 1) * m; t < i * m; ++t) win.push_back({t, 0});
  for (int64_t t = i * m; t < (i + 1) * m; ++t) win.push_back({t, c.overlap ? dc : 0});
  double gap = kInf;
  bool found = false;
  for (const auto& [t, h] : win) {
    if (t == s && h == off) {
      found = true;
      continue;
    }
    for (int64_t ch = 0; ch < dc; ++ch)
      gap = std::min(gap, o.z[s * w + off + ch] - o.z[t * w + h + ch]);
  }
  return found ? gap : -kInf;
}

// Perturbation propagated through the tail for a known bound on |dC| (leakage of the
// non-selected tokens): reuses entry_delta with extra_C.
// Softmax leakage: with the chosen logit above every other by >= gap, the other k <= 2m-1
// weights sum to <= (2m-1) e^-gap, and |C - a_chosen| <= that * 2 Amax.
double leakage(const Cfg& c, double gap, double Amax) {
  return double(2 * c.m - 1) * std::exp(-gap) * 2 * Amax;
}

// A gate that strongly prefers one token makes the entry equal that token's projection
// (before the norm): CSA entry i sees token s* of block i through the B half and entry i+1
// sees it through the A half; HCA entry i sees its own block's token. Fails if the
// overlap took the wrong half or the wrong block.
TYPED_TEST(Compressor, GateSelectingOneTokenGivesThatTokensProjection) {
  using T = TypeParam;
  for (const Cfg& c : {Cfg{33, 128, 4, true, CompressorQuant::none},
                       Cfg{33, 128, 8, false, CompressorQuant::none}}) {
    SCOPED_TRACE(describe(c));
    const int64_t nb = 3, Tn = nb * c.m, w = c.width(), dc = c.dc;
    Model M = random_model<T>(c, 71 + c.m, 1.0, 0.5);
    // Marker input dim 0: +1 on the chosen tokens, -1 elsewhere; gate column 0 = 40, so
    // the chosen token's logits are 80 above the others' (up to the random part).
    for (int64_t ch = 0; ch < w; ++ch) M.wgate[ch * c.D] = 40.0;
    std::vector<double> x = round_to<T>(test::uniform(Tn * c.D, 72));
    // CSA: one token s* = 5 (block 1). HCA: one per block.
    std::vector<int64_t> chosen = c.overlap ? std::vector<int64_t>{5}
                                            : std::vector<int64_t>{3, 8 + 6, 16 + 0};
    for (int64_t s = 0; s < Tn; ++s)
      x[s * c.D] = std::find(chosen.begin(), chosen.end(), s) != chosen.end() ? 1.0 : -1.0;
    const Oracle o = run_oracle(M, x, Tn);
    // Expected entries: (entry index, token, half offset).
    std::vector<std::tuple<int64_t, int64_t, int64_t>> expect;
    if (c.overlap) {
      expect = {{1, 5, dc}, {2, 5, 0}};  // B half in its own block, A half in the next
    } else {
      for (int64_t i = 0; i < nb; ++i) expect.push_back({i, chosen[i], 0});
    }
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    const std::vector<T> e = prefill(op, xt, Tn);
    const Decoded<T> d = decode(op, xt, {Tn});
    for (const auto& [i, s, off] : expect) {
      SCOPED_TRACE("entry " + std::to_string(i) + " token " + std::to_string(s));
      const double gap = window_gap(c, o, i, s, off);
      ASSERT_GT(gap, 60.0);
      const double delta = entry_delta<T>(c, o, leakage(c, gap, o.Amax));
      Oracle one = o;
      one.nb = 1;
      one.pre.assign(dc, 0.0);
      one.out.assign(dc, 0.0);
      finish_oracle(M, &o.a[s * w + off], i, one.pre.data(), one.out.data(), nullptr);
      EXPECT_TRUE(entries_match<T>(c, &e[i * dc], one, 1, delta)) << "prefill";
      EXPECT_TRUE(entries_match<T>(c, &d.entries[0][i * dc], one, 1, delta)) << "decode";
      // And the single-token projection is far from the other half's (non-vacuity).
      if (c.overlap) {
        finish_oracle(M, &o.a[s * w + (dc - off)], i, one.pre.data(), one.out.data(), nullptr);
        EXPECT_FALSE(entries_match<T>(c, &e[i * dc], one, 1, 100 * delta)) << "wrong half";
      }
    }
  }
}

// ape shifts the logits per slot s mod m: a large ape on one slot makes every entry equal
// the projection of the token in that slot (fails if ape were ignored, indexed by s instead
// of s mod m, or split into the wrong halves).
TYPED_TEST(Compressor, ApeShiftsLogitsPerSlot) {
  using T = TypeParam;
  struct Case {
    Cfg c;
    int64_t slot, half;  // half: 0 = A (or HCA), 1 = B
  };
  for (const Case& k : {Case{Cfg{24, 128, 4, true}, 2, 0}, Case{Cfg{24, 128, 4, true}, 1, 1},
                        Case{Cfg{24, 128, 8, false}, 5, 0}}) {
    const Cfg& c = k.c;
    SCOPED_TRACE(describe(c) + " slot " + std::to_string(k.slot) + " half " +
                 std::to_string(k.half));
    const int64_t nb = 4, Tn = nb * c.m, w = c.width(), dc = c.dc;
    Model M = random_model<T>(c, 81 + k.slot, 1.0, 0.5);
    for (int64_t ch = k.half * dc; ch < (k.half + 1) * dc; ++ch) M.ape[k.slot * w + ch] = 60.0;
    const std::vector<double> x = round_to<T>(test::uniform(Tn * c.D, 82));
    const Oracle o = run_oracle(M, x, Tn);
    const Op<T> op(M);
    const std::vector<T> xt = test::cast<T>(x);
    const std::vector<T> e = prefill(op, xt, Tn);
    // Everything agrees with the full oracle...
    EXPECT_TRUE(entries_match<T>(c, e.data(), o, nb, entry_delta<T>(c, o)));
    // ...and, where the large slot takes part, with the single-token expectation.
    for (int64_t i = 0; i < nb; ++i) {
      const bool prev_block = c.overlap && k.half == 0;
      if (prev_block && i == 0) continue;  // entry 0 has no previous block
      const int64_t s = (prev_block ? i - 1 : i) * c.m + k.slot;
      const int64_t off = k.half * dc;
      const double gap = window_gap(c, o, i, s, off);
      ASSERT_GT(gap, 40.0);
      Oracle one = o;
      one.nb = 1;
      one.pre.assign(dc, 0.0);
      one.out.assign(dc, 0.0);
      finish_oracle(M, &o.a[s * w + off], i, one.pre.data(), one.out.data(), nullptr);
      EXPECT_TRUE(entries_match<T>(c, &e[i * dc], one, 1,
                                   entry_delta<T>(c, o, leakage(c, gap, o.Amax))))
          << "entry " << i << " should be token " << s;
    }
    // Non-vacuity: the same inputs with ape = 0 give clearly different entries.
    Model M0 = M;
    std::fill(M0.ape.begin(), M0.ape.end(), 0.0);
    const Oracle o0 = run_oracle(M0, x, Tn);
    EXPECT_FALSE(entries_match<T>(c, e.data(), o0, nb, 100 * entry_delta<T>(c, o)));
  }
}

// The A / B halves: same inputs, but the A half of Wkv replaced. Only entries that pool a
// previous block (i >= 1) may change; entry 0 (B half only) must not.
TYPED_TEST(Compressor, CsaHalvesPoolTheRightBlocks) {
  using T = TypeParam;
  const Cfg c{24, 128, 4, true, CompressorQuant::none};
  const int64_t nb = 3, Tn = nb * c.m, dc = c.dc;
  const Model M = random_model<T>(c, 91);
  Model M2 = M;
  const std::vector<double> other = round_to<T>(test::uniform(dc * c.D, 92, -0.2, 0.2));
  for (int64_t ch = 0; ch < dc; ++ch)
    for (int64_t k = 0; k < c.D; ++k) M2.wkv[ch * c.D + k] = other[ch * c.D + k];
  const std::vector<double> x = round_to<T>(test::uniform(Tn * c.D, 93));
  const Oracle o = run_oracle(M, x, Tn), o2 = run_oracle(M2, x, Tn);
  const std::vector<T> e = prefill(Op<T>(M), test::cast<T>(x), Tn);
  const std::vector<T> e2 = prefill(Op<T>(M2), test::cast<T>(x), Tn);
  EXPECT_TRUE(entries_match<T>(c, e.data(), o, nb, entry_delta<T>(c, o)));
  EXPECT_TRUE(entries_match<T>(c, e2.data(), o2, nb, entry_delta<T>(c, o2)));
  EXPECT_TRUE(bitwise_equal(std::vector<T>(e.begin(), e.begin() + dc),
                            std::vector<T>(e2.begin(), e2.begin() + dc)));
  for (int64_t i = 1; i < nb; ++i) {
    Oracle one = o2;
    one.nb = 1;
    one.pre.assign(o.pre.begin() + i * dc, o.pre.begin() + (i + 1) * dc);
    one.out.assign(o.out.begin() + i * dc, o.out.begin() + (i + 1) * dc);
    EXPECT_FALSE(entries_match<T>(c, &e2[i * dc], one, 1, 100 * entry_delta<T>(c, o2)))
        << "entry " << i << " ignored the A half of block " << i - 1;
  }
}

// ---------------------------------------------------------------------------------------
// One real V4-Flash main-compressor shape (D = 4096, dc = 512, FP8 on dims 0:448), float
// op vs the double oracle. The inputs are the wide exact ones (exact_model): the float
// projections are then exact, which (a) is checked on the state (tolerance 0), (b) leaves
// only the pooling / norm / RoPE rounding in the bound, so the comparison is tight, and
// (c) makes prefill == decode bit for bit at the real shape.

void real_shape_case(const Cfg& c, int64_t Tn, uint64_t seed) {
  SCOPED_TRACE(describe(c) + " T=" + std::to_string(Tn));
  const Model M = exact_model(c, seed, true);
  const std::vector<double> x = dyadic(Tn * c.D, seed + 7, 2);
  Oracle o = run_oracle(M, x, Tn);
  o.exact_proj = true;
  const Op<float> op(M);
  const std::vector<float> xt = test::cast<float>(x);
  CompressorState<float> st;
  const std::vector<float> e = prefill(op, xt, Tn, &st);
  ASSERT_EQ(int64_t(e.size()), (Tn / c.m) * c.dc);
  EXPECT_TRUE(state_matches<float>(c, st, M, o, Tn, 0.0, 0.0)) << "projections not exact";
  EXPECT_TRUE(entries_match<float>(c, e.data(), o, Tn / c.m, entry_delta<float>(c, o)));
  const Decoded<float> d = decode(op, xt, {Tn});
  EXPECT_TRUE(bitwise_equal(d.entries[0], e));
  EXPECT_TRUE(bitwise_equal(d.states[0].kv, st.kv));
  EXPECT_TRUE(bitwise_equal(d.states[0].score, st.score));
}

TEST(CompressorRealShape, V4FlashCsaMain) {
  real_shape_case({4096, 512, 4, true, CompressorQuant::fp8}, 9, 101);
}

TEST(CompressorRealShape, V4FlashHcaMain) {
  real_shape_case({4096, 512, 128, false, CompressorQuant::fp8}, 260, 111);
}

// ---------------------------------------------------------------------------------------
// Bad input.

TEST(CompressorBadInput, PrefillEntriesOfWrongShape) {
  const Cfg c{16, 128, 4, true};
  const Model M = random_model<float>(c, 121);
  const Op<float> op(M);
  const std::vector<float> x = test::cast<float>(test::uniform(9 * c.D, 122));
  std::vector<float> e(4 * c.dc);
  // 9 tokens -> 2 entries of 128.
  EXPECT_THROW(ref::compressor_prefill<float>(op.params(), view2(x.data(), 9, c.D),
                                              view2(e.data(), 3, c.dc), nullptr),
               InputError);
  EXPECT_THROW(ref::compressor_prefill<float>(op.params(), view2(x.data(), 9, c.D),
                                              view2(e.data(), 2, c.dc - 1), nullptr),
               InputError);
  EXPECT_THROW(ref::compressor_prefill<float>(op.params(), view2(x.data(), 9, c.D),
                                              view2(e.data(), 1, c.dc), nullptr),
               InputError);
  EXPECT_NO_THROW(ref::compressor_prefill<float>(op.params(), view2(x.data(), 9, c.D),
                                                 view2(e.data(), 2, c.dc), nullptr));
}

TEST(CompressorBadInput, DecodeStateOfAnotherShape) {
  const Cfg c{16, 128, 4, true};
  const Model M = random_model<double>(c, 131);
  const Op<double> op(M);
  const std::vector<double> x = test::uniform(c.D, 132);
  std::vector<double> e(c.dc);
  // An HCA-shaped state (rows m, width dc) and one of another ratio.
  CompressorState<double> hca =
      ref::compressor_state_init<double>(CompressorShape{c.D, c.dc, c.m, false});
  EXPECT_THROW(ref::compressor_decode<double>(op.params(), x.data(), hca, e.data()), InputError);
  CompressorState<double> other =
      ref::compressor_state_init<double>(CompressorShape{c.D, c.dc, 8, true});
  EXPECT_THROW(ref::compressor_decode<double>(op.params(), x.data(), other, e.data()),
               InputError);
  CompressorState<double> wide =
      ref::compressor_state_init<double>(CompressorShape{c.D, 2 * c.dc, c.m, true});
  EXPECT_THROW(ref::compressor_decode<double>(op.params(), x.data(), wide, e.data()), InputError);
  CompressorState<double> ok =
      ref::compressor_state_init<double>(CompressorShape{c.D, c.dc, c.m, true});
  EXPECT_NO_THROW(ref::compressor_decode<double>(op.params(), x.data(), ok, e.data()));
}

}  // namespace
}  // namespace dsv4
