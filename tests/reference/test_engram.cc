// Engram (reference/engram.h) against naive loops written in this file from docs/engram.md:
//   primes:      for each Engram layer in config order, each order n = 2..N, each head j: the
//                smallest prime >= base[n-2] (head 0) or > the previous head's prime, never one
//                taken before.
//   multipliers: mult[k] = 2 (r_k mod max(1, floor((2^63-1)/V)/2)) + 1, r_k the k-th splitmix64
//                draw of the stream seeded seed + 10007 l.
//   hash:        c_t = map[id_t] (positions before the sequence: history, then map[pad_id]);
//                mix_n(t) = XOR_{k<n} c_{t-k} mult[k] (mod 2^64); row_{n,j} = offset_{n,j} +
//                mix_n(t) mod p_{n,j}.
//   lookup:      e_t = concat over (n, j) of table[row_{n,j}(t)] (BF16: the bits << 16 as F32).
//   mix:         v = Wv e + bv; k_s = RMSNorm(Wk_s e + bk_s; key_norm_s); q_s = RMSNorm(X_s;
//                query_norm_s); a = <k, q>/sqrt(D); g = sigmoid(sign(a) sqrt(max(|a|, 1e-6)));
//                V = g v; Z = RMSNorm(V; conv_norm_s, 1e-5); C = SiLU(sum_i w[., i]
//                Z_{t-(K-1-i) dil}) with Z = history before the chunk (zeros at the start);
//                Y = V + C.
// Goldens (multipliers, rows) were computed once from these definitions by an independent
// script (Python integers), and are checked against this file's oracle and the op.
//
// Tolerance of engram_mix (mix_oracle below): the oracle carries, per element, a bound on the
// error an implementation in precision T may make, propagated stage by stage from
// reduction_tol<T> (tests/support/tolerance.h): the linear maps (length E+1 with the bias), the
// RMSNorms (the error of the divisor is at most the largest input error over the divisor, plus
// a length-D sum of squares), the dot product a (length D), the gate (a' = sign(a)
// sqrt(max(|a|, 1e-6)) has slope 1/(2 sqrt(max(|a| - da, 1e-6))) while the sign is certain,
// and can move by 2 sqrt(max(|a| + da, 1e-6)) when |a| <= da; the sigmoid has slope <= 1/4),
// the product g v, the convolution (length K) and SiLU (slope <= 1.1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/engram.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace {

using namespace dsv4;
namespace naive = dsv4::test::naive;
using dsv4::test::bitwise_equal;
using dsv4::test::float_exact;
using dsv4::test::nan_vec;
using dsv4::test::reduction_tol;
using dsv4::test::to_double;
using dsv4::test::unit_roundoff;

// The golden configuration: seed 0, main-stack layer 1, N = 3, the V4 vocabulary.
constexpr uint64_t kGoldenSeed = 0;
constexpr int64_t kGoldenLayer = 1;
constexpr int64_t kGoldenN = 3;
constexpr int64_t kV4Vocab = 129280;

// Runs f and checks it throws InputError whose message contains `what`.
::testing::AssertionResult throws_input_error(const std::function<void()>& f,
                                              const std::string& what) {
  try {
    f();
  } catch (const InputError& e) {
    if (std::string(e.what()).find(what) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "InputError '" << e.what() << "' does not mention '" << what << "'";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-InputError: " << e.what();
  }
  return ::testing::AssertionFailure()
         << "did not throw (expected an InputError mentioning '" << what << "')";
}

// |actual - expected| <= bound element by element (NaN fails); names the worst element.
::testing::AssertionResult within_bounds(const std::vector<double>& actual,
                                         const std::vector<double>& expected,
                                         const std::vector<double>& bound) {
  if (actual.size() != expected.size() || bound.size() != expected.size())
    return ::testing::AssertionFailure()
           << "sizes " << actual.size() << ", " << expected.size() << ", " << bound.size();
  size_t worst = actual.size();
  double worst_ratio = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double d = std::fabs(actual[i] - expected[i]);
    if (std::isnan(d)) return ::testing::AssertionFailure() << "NaN at " << i;
    if (d > bound[i] && (worst == actual.size() || d / bound[i] > worst_ratio)) {
      worst = i;
      worst_ratio = d / bound[i];
    }
  }
  if (worst == actual.size()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "worst at " << worst << ": actual " << actual[worst] << ", expected " << expected[worst]
         << ", |diff| " << std::fabs(actual[worst] - expected[worst]) << " > bound "
         << bound[worst];
}

// max_i |actual - expected| / bound (how much of the bound a run used).
double bound_used(const std::vector<double>& actual, const std::vector<double>& expected,
                  const std::vector<double>& bound) {
  double r = 0;
  for (size_t i = 0; i < actual.size(); ++i)
    r = std::max(r, std::fabs(actual[i] - expected[i]) / bound[i]);
  return r;
}

// ---- oracle: primes and multipliers -------------------------------------------------------

namespace oracle {

bool is_prime(int64_t v) {
  if (v < 2) return false;
  for (int64_t d = 2; d * d <= v; ++d)
    if (v % d == 0) return false;
  return true;
}

std::vector<std::vector<int64_t>> primes(int64_t layers, const std::vector<int64_t>& base,
                                         int64_t heads) {
  std::set<int64_t> taken;
  std::vector<std::vector<int64_t>> out;
  for (int64_t l = 0; l < layers; ++l) {
    std::vector<int64_t> layer;
    for (int64_t b : base) {
      int64_t p = b;  // head 0: >= base; later heads: > the previous head's prime
      for (int64_t j = 0; j < heads; ++j) {
        while (!is_prime(p) || taken.count(p)) ++p;
        taken.insert(p);
        layer.push_back(p);
        ++p;
      }
    }
    out.push_back(layer);
  }
  return out;
}

// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
// the state advances by the golden-ratio increment; the output is the state mixed by two
// xor-shift-multiply rounds and a final xor-shift.
uint64_t splitmix64_next(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<uint64_t> multipliers(uint64_t seed, int64_t layer, int64_t N, int64_t vocab) {
  const uint64_t max_signed = uint64_t(std::numeric_limits<int64_t>::max());  // 2^63 - 1
  const uint64_t modulus = std::max<uint64_t>(1, (max_signed / uint64_t(vocab)) / 2);
  uint64_t state = seed + 10007 * uint64_t(layer);
  std::vector<uint64_t> m;
  for (int64_t k = 0; k < N; ++k) m.push_back(2 * (splitmix64_next(state) % modulus) + 1);
  return m;
}

// ---- oracle: hash and lookup ----------------------------------------------------------------

struct Layout {
  int64_t N = 0, heads = 0, vocab = 0, pad_raw = 0;
  std::vector<uint64_t> mult;
  std::vector<int64_t> primes;     // [(N-1)*heads], order-major
  std::vector<int32_t> token_map;  // [vocab]; empty: identity
  int64_t canonical(int64_t id) const { return token_map.empty() ? id : token_map[size_t(id)]; }
  int64_t offset(size_t slot) const {
    int64_t o = 0;
    for (size_t i = 0; i < slot; ++i) o += primes[i];
    return o;
  }
};

// rows [T, (N-1)*heads] of the raw ids after the canonical history (oldest first, -1 = before
// the sequence; empty = all before the sequence).
std::vector<int64_t> hash_rows(const Layout& L, const std::vector<int32_t>& ids,
                               const std::vector<int32_t>& history) {
  std::vector<int64_t> c;  // canonical ids of the window: N-1 earlier positions, then the ids
  for (int64_t i = 0; i < L.N - 1; ++i) {
    const int64_t h = history.empty() ? -1 : history[size_t(i)];
    c.push_back(h < 0 ? L.canonical(L.pad_raw) : h);
  }
  for (int32_t id : ids) c.push_back(L.canonical(id));
  std::vector<int64_t> rows;
  for (size_t t = 0; t < ids.size(); ++t) {
    const size_t at = size_t(L.N - 1) + t;
    for (int64_t n = 2; n <= L.N; ++n) {
      uint64_t mix = 0;
      for (int64_t k = 0; k < n; ++k) mix ^= uint64_t(c[at - size_t(k)]) * L.mult[size_t(k)];
      for (int64_t j = 0; j < L.heads; ++j) {
        const size_t slot = size_t((n - 2) * L.heads + j);
        rows.push_back(L.offset(slot) + int64_t(mix % uint64_t(L.primes[slot])));
      }
    }
  }
  return rows;
}

// The last N-1 canonical ids after the history and the ids (-1 where there are fewer).
std::vector<int32_t> next_history(const Layout& L, const std::vector<int32_t>& history,
                                  const std::vector<int32_t>& ids) {
  std::vector<int32_t> all = history.empty() ? std::vector<int32_t>(size_t(L.N - 1), -1) : history;
  for (int32_t id : ids) all.push_back(int32_t(L.canonical(id)));
  return std::vector<int32_t>(all.end() - (L.N - 1), all.end());
}

// BF16 bits -> the float they encode (the bits are the high half of an IEEE single).
float bf16_bits_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- oracle: the gated value and its convolution --------------------------------------------

struct MixInputs {
  int64_t T = 0, S = 1, D = 0, E = 0, K = 4, dil = 3;
  double eps = 1e-6;
  std::vector<double> x, e, vw, vb, kw, kb, kn, qn, cw, cn;
  std::vector<double> history;  // [(K-1)*dil, S*D]; empty: zeros
  int64_t H() const { return (K - 1) * dil; }
};

struct MixOut {
  std::vector<double> y, y_bound;              // [T, S*D]
  std::vector<double> history, history_bound;  // [H, S*D]
  std::vector<double> gate;                    // [T, S]
};

template <class T>
MixOut mix(const MixInputs& in) {
  const double u = unit_roundoff<T>();
  const int64_t Tn = in.T, S = in.S, D = in.D, E = in.E, K = in.K, H = in.H(), W = S * D;
  // Z timeline (H history rows, then the chunk) and its bound; the history is exact input.
  std::vector<double> z(size_t((H + Tn) * W), 0.0), dz(z.size(), 0.0);
  if (!in.history.empty()) std::copy(in.history.begin(), in.history.end(), z.begin());
  std::vector<double> V(size_t(Tn * W)), dV(V.size());
  MixOut o;
  for (int64_t t = 0; t < Tn; ++t) {
    // v = Wv e + bv and its bound (a length-E sum plus the bias).
    std::vector<double> v(static_cast<size_t>(D)), dv(static_cast<size_t>(D));
    for (int64_t c = 0; c < D; ++c) {
      double acc = in.vb[size_t(c)], mag = std::fabs(in.vb[size_t(c)]);
      for (int64_t j = 0; j < E; ++j) {
        acc += in.vw[size_t(c * E + j)] * in.e[size_t(t * E + j)];
        mag += std::fabs(in.vw[size_t(c * E + j)] * in.e[size_t(t * E + j)]);
      }
      v[size_t(c)] = acc;
      dv[size_t(c)] = reduction_tol<T>(double(E + 1), mag);
    }
    for (int64_t s = 0; s < S; ++s) {
      // k = RMSNorm(Wk_s e + bk_s; key_norm_s)
      std::vector<double> k(static_cast<size_t>(D)), dkpre(static_cast<size_t>(D));
      for (int64_t c = 0; c < D; ++c) {
        double acc = in.kb[size_t(s * D + c)], mag = std::fabs(acc);
        for (int64_t j = 0; j < E; ++j) {
          const double term = in.kw[size_t((s * D + c) * E + j)] * in.e[size_t(t * E + j)];
          acc += term;
          mag += std::fabs(term);
        }
        k[size_t(c)] = acc;
        dkpre[size_t(c)] = reduction_tol<T>(double(E + 1), mag);
      }
      const std::vector<double> kpre = k;
      const double rk = naive::rmsnorm(k.data(), D, &in.kn[size_t(s * D)], in.eps);
      const double norm_rel =
          reduction_tol<T>(double(D), 1.0) + 4 * u;  // sum of squares, sqrt, 2 products
      const double max_dkpre = *std::max_element(dkpre.begin(), dkpre.end());
      std::vector<double> dk(static_cast<size_t>(D));
      for (int64_t c = 0; c < D; ++c)
        dk[size_t(c)] = std::fabs(in.kn[size_t(s * D + c)]) / rk *
                            (dkpre[size_t(c)] + std::fabs(kpre[size_t(c)]) * max_dkpre / rk) +
                        std::fabs(k[size_t(c)]) * norm_rel;
      // q = RMSNorm(X_s; query_norm_s): exact input, the norm's own roundings only.
      std::vector<double> q(in.x.begin() + (t * W + s * D), in.x.begin() + (t * W + s * D + D));
      naive::rmsnorm(q.data(), D, &in.qn[size_t(s * D)], in.eps);
      // a, its bound, and the gate.
      double dot = 0, dot_mag = 0, da_in = 0;
      for (int64_t c = 0; c < D; ++c) {
        dot += k[size_t(c)] * q[size_t(c)];
        dot_mag += std::fabs(k[size_t(c)] * q[size_t(c)]);
        da_in += dk[size_t(c)] * std::fabs(q[size_t(c)]) +
                 std::fabs(k[size_t(c)] * q[size_t(c)]) * norm_rel;
      }
      const double a = dot / std::sqrt(double(D));
      const double da = (da_in + reduction_tol<T>(double(D), dot_mag)) / std::sqrt(double(D)) +
                        2 * u * std::fabs(a);
      const double mag = std::sqrt(std::max(std::fabs(a), kEngramGateFloor));
      const double a2 = a > 0 ? mag : (a < 0 ? -mag : 0.0);
      const double da2 =
          (std::fabs(a) > da ? da / (2 * std::sqrt(std::max(std::fabs(a) - da, kEngramGateFloor)))
                             : 2 * std::sqrt(std::max(std::fabs(a) + da, kEngramGateFloor))) +
          2 * u * mag;
      const double g = naive::sigmoid(a2);
      const double dg = da2 / 4 + reduction_tol<T>(3, g);  // exp, add, divide
      o.gate.push_back(g);
      // V = g v, then Z = RMSNorm(V; conv_norm_s, 1e-5) into the timeline.
      double max_dV = 0;
      for (int64_t c = 0; c < D; ++c) {
        const size_t i = size_t(t * W + s * D + c);
        V[i] = g * v[size_t(c)];
        dV[i] = dg * std::fabs(v[size_t(c)]) + g * dv[size_t(c)] + u * std::fabs(V[i]);
        max_dV = std::max(max_dV, dV[i]);
      }
      double* zr = &z[size_t((H + t) * W + s * D)];
      std::copy(&V[size_t(t * W + s * D)], &V[size_t(t * W + s * D + D)], zr);
      const double rz = naive::rmsnorm(zr, D, &in.cn[size_t(s * D)], kEngramConvNormEps);
      for (int64_t c = 0; c < D; ++c) {
        const size_t i = size_t(t * W + s * D + c);
        dz[size_t((H + t) * W + s * D + c)] =
            std::fabs(in.cn[size_t(s * D + c)]) / rz * (dV[i] + std::fabs(V[i]) * max_dV / rz) +
            std::fabs(zr[c]) * norm_rel;
      }
    }
  }
  // C = SiLU(dilated causal depthwise convolution of Z); Y = V + C.
  for (int64_t t = 0; t < Tn; ++t) {
    for (int64_t ch = 0; ch < W; ++ch) {
      double acc = 0, mag = 0, dacc = 0;
      for (int64_t i = 0; i < K; ++i) {
        const size_t zi = size_t((H + t - (K - 1 - i) * in.dil) * W + ch);
        const double w = in.cw[size_t(ch * K + i)];
        acc += w * z[zi];
        mag += std::fabs(w * z[zi]);
        dacc += std::fabs(w) * dz[zi];
      }
      dacc += reduction_tol<T>(double(K), mag);
      const double C = acc * naive::sigmoid(acc);
      const double dC =
          1.1 * dacc + reduction_tol<T>(3, std::fabs(C));  // SiLU' <= 1.1; exp, add, divide
      const size_t i = size_t(t * W + ch);
      o.y.push_back(V[i] + C);
      o.y_bound.push_back(dV[i] + dC + u * std::fabs(V[i] + C));
    }
  }
  o.history.assign(z.end() - H * W, z.end());
  o.history_bound.assign(dz.end() - H * W, dz.end());
  return o;
}

}  // namespace oracle

// ---- primes ---------------------------------------------------------------------------------

TEST(EngramPrimes, HandCheckedSmallCase) {
  // Layer 0: order 2 takes 11, 13 (>= 10); order 3 takes 23, 29 (>= 20). Layer 1 skips those:
  // 17, 19 and 31, 37.
  const std::vector<std::vector<int64_t>> want = {{11, 13, 23, 29}, {17, 19, 31, 37}};
  EXPECT_EQ(engram_primes(2, {10, 20}, 2), want);
  EXPECT_EQ(oracle::primes(2, {10, 20}, 2), want);
}

TEST(EngramPrimes, DistinctPrimesAtLeastTheBaseInHeadOrder) {
  // Three layers, three orders (two sharing a base, one base itself prime), four heads.
  const std::vector<int64_t> base = {1000, 1000, 4999};
  const int64_t layers = 3, heads = 4;
  const auto p = engram_primes(layers, base, heads);
  ASSERT_EQ(p, oracle::primes(layers, base, heads));
  std::set<int64_t> seen;
  for (const auto& layer : p) {
    ASSERT_EQ(layer.size(), base.size() * size_t(heads));
    for (size_t n = 0; n < base.size(); ++n) {
      EXPECT_GE(layer[n * size_t(heads)], base[n]);
      for (int64_t j = 0; j < heads; ++j) {
        const int64_t v = layer[n * size_t(heads) + size_t(j)];
        EXPECT_TRUE(oracle::is_prime(v)) << v;
        EXPECT_TRUE(seen.insert(v).second) << v << " is used twice";
        if (j > 0) {
          EXPECT_GT(v, layer[n * size_t(heads) + size_t(j) - 1]);
        }
      }
    }
  }
  EXPECT_EQ(p[0][2 * size_t(heads)], 4999);  // a prime base is taken by head 0 of the first layer
  EXPECT_TRUE(throws_input_error([] { engram_primes(1, {10}, 0); }, "heads"));
  EXPECT_TRUE(throws_input_error([] { engram_primes(1, {1}, 2); }, "at least 2"));
}

// ---- multipliers ----------------------------------------------------------------------------

// Seed 0, layer 1, N 3, vocabulary 129280: the anchor of "same ids -> same addresses on every
// backend". From splitmix64 seeded 10007, reduced mod floor((2^63-1)/129280)/2 = 35672076256399.
const std::vector<uint64_t> kGoldenMultipliers = {47762298590157ull, 10444933147983ull,
                                                  21746184383045ull};

TEST(EngramMultipliers, Golden) {
  EXPECT_EQ(oracle::multipliers(kGoldenSeed, kGoldenLayer, kGoldenN, kV4Vocab), kGoldenMultipliers);
  EXPECT_EQ(engram_multipliers(kGoldenSeed, kGoldenLayer, kGoldenN, kV4Vocab), kGoldenMultipliers);
}

TEST(EngramMultipliers, OddBoundedDeterministicAndPerLayerAndSeed) {
  for (int64_t vocab : {int64_t(1), int64_t(2), int64_t(1000), kV4Vocab, int64_t(1) << 40}) {
    for (int64_t layer : {0, 1, 15}) {
      const auto m = engram_multipliers(7, layer, 4, vocab);
      ASSERT_EQ(m, oracle::multipliers(7, layer, 4, vocab)) << vocab << " " << layer;
      EXPECT_EQ(m, engram_multipliers(7, layer, 4, vocab));  // deterministic
      const uint64_t limit = uint64_t(std::numeric_limits<int64_t>::max()) / uint64_t(vocab);
      for (uint64_t v : m) {
        EXPECT_EQ(v % 2, 1u) << v;
        EXPECT_LT(v, limit) << "c * mult could overflow for vocab " << vocab;
      }
    }
  }
  const auto base = engram_multipliers(0, 1, 3, kV4Vocab);
  EXPECT_NE(base, engram_multipliers(0, 2, 3, kV4Vocab)) << "layers must hash differently";
  EXPECT_NE(base, engram_multipliers(1, 1, 3, kV4Vocab)) << "seeds must hash differently";
  EXPECT_TRUE(throws_input_error([] { engram_multipliers(0, 0, 3, 0); }, "vocab"));
}

// ---- hash -----------------------------------------------------------------------------------

// A layout for the tests: primes of Engram layer `layer_index` of `layers`, multipliers of
// main-stack layer `layer`.
oracle::Layout make_layout(int64_t N, int64_t heads, int64_t vocab,
                           const std::vector<int64_t>& base, int64_t layers, int64_t layer_index,
                           uint64_t seed, int64_t layer, int64_t pad_raw,
                           std::vector<int32_t> token_map = {}) {
  oracle::Layout L;
  L.N = N;
  L.heads = heads;
  L.vocab = vocab;
  L.pad_raw = pad_raw;
  L.mult = oracle::multipliers(seed, layer, N, vocab);
  L.primes = oracle::primes(layers, base, heads)[size_t(layer_index)];
  L.token_map = std::move(token_map);
  return L;
}

EngramHash ref_hash(const oracle::Layout& L) {
  return engram_layer_hash(L.primes, L.mult, L.N, L.heads,
                           L.token_map.empty() ? nullptr : L.token_map.data(), L.vocab, L.pad_raw);
}

std::vector<int64_t> ref_rows(const EngramHash& h, const std::vector<int32_t>& ids,
                              const std::vector<int32_t>& history) {
  std::vector<int64_t> rows(ids.size() * size_t(h.slots()),
                            std::numeric_limits<int64_t>::min());  // poisoned
  EngramHashParams p;
  p.hash = &h;
  p.ids = ids.data();
  p.n = int64_t(ids.size());
  p.history = history.empty() ? nullptr : history.data();
  p.rows = view2(rows.data(), p.n, h.slots());
  ref::engram_hash(p);
  return rows;
}

// A surjective map of `vocab` raw ids onto vocab / 3 canonical ids (a deterministic scramble).
std::vector<int32_t> folding_map(int64_t vocab) {
  std::vector<int32_t> m(static_cast<size_t>(vocab));
  const int64_t canon = std::max<int64_t>(1, vocab / 3);
  for (int64_t i = 0; i < vocab; ++i) m[size_t(i)] = int32_t((i * 7 + 3) % canon);
  return m;
}

TEST(EngramHash, RowsGolden) {
  // The golden multipliers; primes of Engram layer 1 of 2 over bases {1000, 2000} with two
  // heads (1019, 1021, 2017, 2027); identity map; pad_id 2.
  const oracle::Layout L =
      make_layout(kGoldenN, 2, kV4Vocab, {1000, 2000}, 2, 1, kGoldenSeed, kGoldenLayer, 2);
  ASSERT_EQ(L.primes, (std::vector<int64_t>{1019, 1021, 2017, 2027}));
  const std::vector<int32_t> ids = {5, 100, 129279, 2, 7, 0};
  const std::vector<int64_t> want = {927, 1150, 2724, 4242, 575, 1829, 2192, 5682,
                                     148, 2024, 3011, 6066, 127, 1394, 3145, 5668,
                                     281, 1212, 3456, 4635, 392, 2036, 2060, 4745};
  EXPECT_EQ(oracle::hash_rows(L, ids, {}), want);
  const EngramHash h = ref_hash(L);
  EXPECT_EQ(ref_rows(h, ids, {}), want);
}

TEST(EngramHash, MatchesTheOracleWithMapAndHistory) {
  const int64_t vocab = 50;
  const oracle::Layout L =
      make_layout(4, 3, vocab, {101, 211, 307}, 2, 1, 5, 3, 2, folding_map(vocab));
  const EngramHash h = ref_hash(L);
  EXPECT_EQ(h.pad_id, L.token_map[2]);
  EXPECT_EQ(h.table_rows, L.offset(L.primes.size()));
  const std::vector<int32_t> ids = {7, 49, 0, 2, 13, 13, 31, 5, 44};
  // No history, all before the sequence, partly before, all real (canonical ids).
  for (const std::vector<int32_t>& hist :
       std::vector<std::vector<int32_t>>{{}, {-1, -1, -1}, {-1, 4, 9}, {15, 0, 8}}) {
    const auto rows = ref_rows(h, ids, hist);
    EXPECT_EQ(rows, oracle::hash_rows(L, ids, hist)) << "history size " << hist.size();
    for (size_t i = 0; i < rows.size(); ++i) {
      const size_t slot = i % size_t(h.slots());
      EXPECT_GE(rows[i], L.offset(slot));
      EXPECT_LT(rows[i], L.offset(slot) + L.primes[slot]);
    }
  }
}

TEST(EngramHash, ChunkedEqualsWholeWithTheHistoryCarried) {
  const int64_t vocab = 97;
  const oracle::Layout L = make_layout(3, 2, vocab, {53, 71}, 1, 0, 11, 4, 1, folding_map(vocab));
  const EngramHash h = ref_hash(L);
  std::vector<int32_t> ids;
  for (int i = 0; i < 13; ++i) ids.push_back(int32_t((i * 37 + 5) % vocab));
  const auto whole = ref_rows(h, ids, {});
  ASSERT_EQ(whole, oracle::hash_rows(L, ids, {}));
  // Chunks of 5, 1 (a decode step), 0 and 7 tokens.
  std::vector<int64_t> chunked;
  std::vector<int32_t> history;
  size_t at = 0;
  for (size_t len : {5, 1, 0, 7}) {
    const std::vector<int32_t> chunk(ids.begin() + int64_t(at), ids.begin() + int64_t(at + len));
    const auto rows = ref_rows(h, chunk, history);
    chunked.insert(chunked.end(), rows.begin(), rows.end());
    const auto next = engram_advance_history(h, history, chunk.data(), int64_t(chunk.size()));
    EXPECT_EQ(next, oracle::next_history(L, history, chunk)) << "after " << at + len << " tokens";
    history = next;
    at += len;
  }
  ASSERT_EQ(at, ids.size());
  EXPECT_EQ(chunked, whole);
}

TEST(EngramHash, TokenMapAndPadAreApplied) {
  const int64_t vocab = 30;
  std::vector<int32_t> map(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) map[size_t(i)] = int32_t(i);
  map[20] = 4;  // raw 20 and raw 4 are one canonical id
  map[2] = 9;   // the pad (raw 2) reads canonical 9
  const oracle::Layout L = make_layout(3, 2, vocab, {41, 43}, 1, 0, 0, 0, 2, map);
  const EngramHash h = ref_hash(L);
  EXPECT_EQ(h.pad_id, 9);
  const std::vector<int32_t> a = {4, 20, 4}, b = {20, 4, 20};
  EXPECT_EQ(ref_rows(h, a, {}), ref_rows(h, b, {}))
      << "raw ids with one canonical id must hash alike";
  EXPECT_EQ(ref_rows(h, a, {}), oracle::hash_rows(L, a, {}));
  // Padding before the sequence is the mapped pad id, not the raw one.
  EXPECT_EQ(ref_rows(h, a, {}), ref_rows(h, a, {9, 9}));
  EXPECT_NE(ref_rows(h, a, {}), ref_rows(h, a, {2, 2}));
  // Without the map the same ids hash differently (the map is not ignored).
  const oracle::Layout identity = make_layout(3, 2, vocab, {41, 43}, 1, 0, 0, 0, 2);
  EXPECT_NE(ref_rows(ref_hash(identity), b, {}), ref_rows(h, b, {}));
}

TEST(EngramHash, BadInputIsRejectedBeforeAnyRowIsWritten) {
  const int64_t vocab = 30;
  const oracle::Layout L = make_layout(3, 2, vocab, {41, 43}, 1, 0, 0, 0, 2);
  const EngramHash h = ref_hash(L);
  for (int32_t bad : {-1, 30, 1000000}) {
    std::vector<int32_t> ids = {1, 2, bad, 3};
    std::vector<int64_t> rows(ids.size() * 4, -7);
    EngramHashParams p{&h, ids.data(), 4, nullptr, view2(rows.data(), 4, 4)};
    EXPECT_TRUE(
        throws_input_error([&] { ref::engram_hash(p); }, "token id " + std::to_string(bad)));
    EXPECT_EQ(rows, std::vector<int64_t>(16, -7)) << "rows written before the bad id was found";
  }
  std::vector<int32_t> ids = {1, 2}, hist = {3, 30};
  std::vector<int64_t> rows(8);
  EngramHashParams p{&h, ids.data(), 2, hist.data(), view2(rows.data(), 2, 4)};
  EXPECT_TRUE(throws_input_error([&] { ref::engram_hash(p); }, "history id 30"));
  p.history = nullptr;
  p.rows = view2(rows.data(), 2, 3);
  EXPECT_TRUE(throws_input_error([&] { ref::engram_hash(p); }, "rows must be [2, 4]"));
  EXPECT_TRUE(throws_input_error(
      [&] { engram_layer_hash(L.primes, L.mult, 3, 2, nullptr, vocab, 30); }, "pad_id 30"));
  EXPECT_TRUE(throws_input_error(
      [&] {
        engram_layer_hash({41, 43}, L.mult, 3, 2, nullptr, vocab, 2);
      },
      "expected 4 table primes"));
}

// ---- lookup ---------------------------------------------------------------------------------

constexpr int64_t kTableRows = 37, kTableDim = 6, kLookupTokens = 5, kLookupSlots = 4;

std::vector<int64_t> lookup_rows() {
  std::vector<int64_t> r;
  for (int64_t i = 0; i < kLookupTokens * kLookupSlots; ++i) r.push_back((i * 11 + 3) % kTableRows);
  r[3] = kTableRows - 1;  // the last row
  r[4] = 0;
  return r;
}

template <class T>
std::vector<T> run_lookup(const EngramTableView& table, const std::vector<int64_t>& rows,
                          int64_t slots) {
  const int64_t n = int64_t(rows.size()) / slots;
  std::vector<T> e = nan_vec<T>(size_t(n * slots * table.dim));
  EngramLookupParams<T> p;
  p.table = table;
  p.rows = view2(rows.data(), n, slots);
  p.e = view2(e.data(), n, slots * table.dim);
  ref::engram_lookup(p);
  return e;
}

// The oracle gather: e[t, s*de + c] = table[rows[t, s], c] as float.
std::vector<float> gather(const std::vector<float>& table, const std::vector<int64_t>& rows) {
  std::vector<float> e;
  for (int64_t r : rows)
    for (int64_t c = 0; c < kTableDim; ++c) e.push_back(table[size_t(r * kTableDim + c)]);
  return e;
}

template <class T>
void check_lookup_dtypes() {
  const auto rows = lookup_rows();
  const std::vector<float> f32 =
      dsv4::test::uniform<float>(size_t(kTableRows * kTableDim), 41, -3, 3);
  const std::vector<float> want32 = gather(f32, rows);
  EXPECT_TRUE(bitwise_equal(
      run_lookup<T>({f32.data(), TableDType::f32, kTableRows, kTableDim}, rows, kLookupSlots),
      std::vector<T>(want32.begin(), want32.end())));
  // BF16: the high halves of random float bit patterns (any exponent, either sign).
  std::vector<uint16_t> bf16;
  std::vector<float> widened;
  for (float v : dsv4::test::uniform<float>(size_t(kTableRows * kTableDim), 42, -1e4, 1e4)) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bf16.push_back(uint16_t(bits >> 16));
    widened.push_back(oracle::bf16_bits_to_float(bf16.back()));
  }
  const std::vector<float> want16 = gather(widened, rows);
  EXPECT_TRUE(bitwise_equal(
      run_lookup<T>({bf16.data(), TableDType::bf16, kTableRows, kTableDim}, rows, kLookupSlots),
      std::vector<T>(want16.begin(), want16.end())));
}

TEST(EngramLookup, F32AndBF16TablesGatherBitwise) {
  check_lookup_dtypes<float>();
  check_lookup_dtypes<double>();
}

TEST(EngramLookup, OutOfRangeRowsAndShapesAreRejected) {
  const std::vector<float> table(size_t(kTableRows * kTableDim), 1.0f);
  const EngramTableView tv{table.data(), TableDType::f32, kTableRows, kTableDim};
  for (int64_t bad : {int64_t(-1), kTableRows}) {
    auto rows = lookup_rows();
    rows[6] = bad;  // token 1, slot 2
    EXPECT_TRUE(throws_input_error([&] { run_lookup<float>(tv, rows, kLookupSlots); },
                                   "row " + std::to_string(bad) + " at token 1"));
  }
  const auto rows = lookup_rows();
  std::vector<float> e(100);
  EngramLookupParams<float> p{tv, view2(rows.data(), kLookupTokens, kLookupSlots),
                              view2(e.data(), kLookupTokens, 5)};
  EXPECT_TRUE(throws_input_error([&] { ref::engram_lookup(p); }, "e must be [5, 24]"));
}

// ---- mix ------------------------------------------------------------------------------------

// Random inputs of the given shape; every weight away from zero in distribution. The gate's
// dot product is spread by keeping the key and query norms near 1.
oracle::MixInputs mix_inputs(int64_t T, int64_t S, int64_t D, int64_t E, int64_t K, int64_t dil,
                             uint64_t seed, bool with_history) {
  using dsv4::test::uniform;
  oracle::MixInputs in;
  in.T = T, in.S = S, in.D = D, in.E = E, in.K = K, in.dil = dil;
  const double we = 1.0 / std::sqrt(double(E));  // keeps W e of order 1
  in.x = float_exact(uniform(size_t(T * S * D), seed + 1, -2, 2));
  in.e = float_exact(uniform(size_t(T * E), seed + 2, -1, 1));
  in.vw = float_exact(uniform(size_t(D * E), seed + 3, -we, we));
  in.vb = float_exact(uniform(size_t(D), seed + 4, -0.5, 0.5));
  in.kw = float_exact(uniform(size_t(S * D * E), seed + 5, -we, we));
  in.kb = float_exact(uniform(size_t(S * D), seed + 6, -0.5, 0.5));
  in.kn = float_exact(uniform(size_t(S * D), seed + 7, 0.5, 1.5));
  in.qn = float_exact(uniform(size_t(S * D), seed + 8, 0.5, 1.5));
  in.cw = float_exact(uniform(size_t(S * D * K), seed + 9, -1, 1));
  in.cn = float_exact(uniform(size_t(S * D), seed + 10, 0.5, 1.5));
  if (with_history) in.history = float_exact(uniform(size_t(in.H() * S * D), seed + 11, -2, 2));
  return in;
}

struct MixRun {
  std::vector<double> y, history;
};

// Runs ref::engram_mix<T> on rows [t0, t0 + n) of the inputs, the history in/out in `hist`
// (T values, [(K-1)*dil, S*D]).
template <class T>
MixRun run_mix_rows(const oracle::MixInputs& in, int64_t t0, int64_t n, std::vector<T>& hist) {
  const int64_t W = in.S * in.D;
  const auto x = dsv4::test::cast<T>(in.x), e = dsv4::test::cast<T>(in.e);
  const auto vw = dsv4::test::cast<T>(in.vw), vb = dsv4::test::cast<T>(in.vb),
             kw = dsv4::test::cast<T>(in.kw);
  const auto kb = dsv4::test::cast<T>(in.kb), kn = dsv4::test::cast<T>(in.kn),
             qn = dsv4::test::cast<T>(in.qn);
  const auto cw = dsv4::test::cast<T>(in.cw), cn = dsv4::test::cast<T>(in.cn);
  std::vector<T> y = nan_vec<T>(size_t(n * W));
  EngramMixParams<T> p;
  p.x = view2<const T>(x.data() + t0 * W, n, W);
  p.e = view2<const T>(e.data() + t0 * in.E, n, in.E);
  p.w = {vw.data(), vb.data(), kw.data(), kb.data(), kn.data(), qn.data(), cw.data(), cn.data()};
  p.streams = in.S;
  p.kernel = in.K;
  p.dilation = in.dil;
  p.norm_eps = in.eps;
  p.history = view2(hist.data(), in.H(), W);
  p.y = view2(y.data(), n, W);
  ref::engram_mix(p);
  return {to_double(y), to_double(hist)};
}

template <class T>
std::vector<T> initial_history(const oracle::MixInputs& in) {
  return in.history.empty() ? std::vector<T>(size_t(in.H() * in.S * in.D), T(0))
                            : dsv4::test::cast<T>(in.history);
}

// The whole sequence in one call.
template <class T>
MixRun run_mix(const oracle::MixInputs& in) {
  std::vector<T> hist = initial_history<T>(in);
  return run_mix_rows<T>(in, 0, in.T, hist);
}

// The sequence in consecutive chunks of the given lengths, the history carried.
template <class T>
MixRun run_mix_chunked(const oracle::MixInputs& in, const std::vector<int64_t>& lengths) {
  std::vector<T> hist = initial_history<T>(in);
  MixRun all;
  int64_t t0 = 0;
  for (int64_t len : lengths) {
    const MixRun r = run_mix_rows<T>(in, t0, len, hist);
    all.y.insert(all.y.end(), r.y.begin(), r.y.end());
    all.history = r.history;
    t0 += len;
  }
  EXPECT_EQ(t0, in.T);
  return all;
}

template <class T>
void check_mix_against_oracle(const oracle::MixInputs& in, const char* what) {
  const oracle::MixOut want = oracle::mix<T>(in);
  const MixRun got = run_mix<T>(in);
  EXPECT_TRUE(within_bounds(got.y, want.y, want.y_bound)) << what << ": y";
  EXPECT_TRUE(within_bounds(got.history, want.history, want.history_bound)) << what << ": history";
  // The bound must stay far below the signal, or a wrong result could pass: at most
  // kMaxBoundUlps unit roundoffs of max |y|. Measured: the largest bound is ~8e3 u max|y|
  // (the median ~400 u), where the gate's a is small and a' = sqrt(|a|) amplifies its error;
  // the op used at most ~1.3% of its bound.
  constexpr double kMaxBoundUlps = 2e4;
  EXPECT_LT(*std::max_element(want.y_bound.begin(), want.y_bound.end()),
            kMaxBoundUlps * unit_roundoff<T>() * dsv4::test::max_abs(want.y))
      << what;
  ::testing::Test::RecordProperty(
      std::string(what) + (std::is_same_v<T, float> ? "_f32" : "_f64") + "_bound_used",
      std::to_string(bound_used(got.y, want.y, want.y_bound)));
}

TEST(EngramMix, FloatAndDoubleMatchTheOracle) {
  // Two streams, D 16, E 24 (N = 3 orders x 2 heads x de 6), K 4, dilation 3, 11 tokens (more
  // than the 9-row history), with and without a carried history; a 20-token run also takes the
  // reference's GEMM path (> 16 rows) for the projections.
  const auto fresh = mix_inputs(11, 2, 16, 24, 4, 3, 100, false);
  const auto carried = mix_inputs(11, 2, 16, 24, 4, 3, 200, true);
  const auto longer = mix_inputs(20, 3, 8, 12, 3, 2, 300, true);
  check_mix_against_oracle<float>(fresh, "fresh");
  check_mix_against_oracle<double>(fresh, "fresh");
  check_mix_against_oracle<float>(carried, "carried");
  check_mix_against_oracle<double>(carried, "carried");
  check_mix_against_oracle<float>(longer, "longer");
  check_mix_against_oracle<double>(longer, "longer");
}

// Inputs that pin the gate: D 4, one stream, E 2; Wk = 0 and bk = 1 so k = key_norm (up to
// the norm's eps), x = 1 so q = query_norm (likewise); conv_w = 0 so C = SiLU(0) = 0 and
// y = g v exactly as computed. a = <key_norm, query_norm> / 2.
oracle::MixInputs gate_inputs(const std::vector<double>& key_norm,
                              const std::vector<double>& query_norm) {
  oracle::MixInputs in;
  in.T = 1, in.S = 1, in.D = 4, in.E = 2, in.K = 2, in.dil = 1;
  in.x = {1, 1, 1, 1};
  in.e = {1, -1};
  in.vw = {1, 0, 0, 1, 0.5, 0.5, 2, 0};
  in.vb = {0.25, 0.5, 1, 0};  // v = (1.25, -0.5, 1, 2)
  in.kw.assign(8, 0.0);
  in.kb.assign(4, 1.0);
  in.kn = key_norm;
  in.qn = query_norm;
  in.cw.assign(8, 0.0);
  in.cn.assign(4, 1.0);
  return in;
}

TEST(EngramMix, GateAtZeroAndUnderTheFloor) {
  const std::vector<double> v = {1.25, -0.5, 1, 2};
  // k and q on disjoint dims: a = 0 exactly, sign 0, g = 1/2 (not sigmoid(+-1e-3)).
  {
    const auto in = gate_inputs({1, 1, 0, 0}, {0, 0, 1, 1});
    EXPECT_EQ(oracle::mix<double>(in).gate[0], 0.5);
    for (const auto& y : {run_mix<double>(in).y, run_mix<float>(in).y})
      for (size_t c = 0; c < 4; ++c) EXPECT_EQ(y[c], 0.5 * v[c]) << c;
  }
  // |a| = 1e-9 < 1e-6: a' = +-sqrt(1e-6) = +-1e-3, not +-sqrt(1e-9); the sign is kept.
  for (double sign : {1.0, -1.0}) {
    const auto in = gate_inputs({sign * 2e-9, 0, 0, 0}, {1, 1, 1, 1});
    const double g = oracle::mix<double>(in).gate[0];
    EXPECT_NEAR(g, naive::sigmoid(sign * std::sqrt(kEngramGateFloor)), 1e-12);
    const auto yd = run_mix<double>(in).y;
    const auto yf = run_mix<float>(in).y;
    for (size_t c = 0; c < 4; ++c) {
      EXPECT_NEAR(yd[c], g * v[c], 4 * unit_roundoff<double>() * std::fabs(v[c]))
          << c;  // g, then g v
      EXPECT_NEAR(yf[c], g * v[c], 4 * unit_roundoff<float>() * std::fabs(v[c])) << c;
    }
  }
  // Above the floor the square root is taken as is: a = 0.09 -> a' = 0.3.
  {
    const auto in = gate_inputs({0.18, 0, 0, 0}, {1, 1, 1, 1});
    EXPECT_NEAR(run_mix<double>(in).y[0], naive::sigmoid(0.3) * v[0],
                1e-6);  // q, k carry the norms' eps
  }
}

TEST(EngramMix, ChunkedEqualsWholeWithTheHistoryCarried) {
  // 12 tokens, no initial history. Chunks of 2..16 rows run the same per-row arithmetic as the
  // whole (the reference's few-rows projection sums each row in one order whatever the row
  // count): bitwise in double and float. Decode steps (1 row) and a long whole (> 16 rows)
  // take Eigen's GEMV/GEMM for the projections, whose order is Eigen's: those are checked
  // against the oracle's bound instead (measured on this AVX2 build: decode steps happened to
  // match bitwise; a 20-row whole differs from two 10-row chunks by up to 9e-16 in double and
  // 6e-7 in float, on outputs of order 1).
  const auto in = mix_inputs(12, 2, 16, 24, 4, 3, 400, false);
  {
    const MixRun whole = run_mix<double>(in), chunked = run_mix_chunked<double>(in, {5, 7});
    EXPECT_TRUE(bitwise_equal(chunked.y, whole.y));
    EXPECT_TRUE(bitwise_equal(chunked.history, whole.history));
  }
  {
    const MixRun whole = run_mix<float>(in), chunked = run_mix_chunked<float>(in, {2, 3, 7});
    EXPECT_TRUE(bitwise_equal(chunked.y, whole.y));
    EXPECT_TRUE(bitwise_equal(chunked.history, whole.history));
  }
  const oracle::MixOut want_f = oracle::mix<float>(in), want_d = oracle::mix<double>(in);
  const std::vector<int64_t> decode(12, 1), mixed = {4, 1, 1, 6};
  for (const auto& lengths : {decode, mixed}) {
    const MixRun f = run_mix_chunked<float>(in, lengths), d = run_mix_chunked<double>(in, lengths);
    EXPECT_TRUE(within_bounds(f.y, want_f.y, want_f.y_bound))
        << "float, " << lengths.size() << " chunks";
    EXPECT_TRUE(within_bounds(f.history, want_f.history, want_f.history_bound));
    EXPECT_TRUE(within_bounds(d.y, want_d.y, want_d.y_bound))
        << "double, " << lengths.size() << " chunks";
    EXPECT_TRUE(within_bounds(d.history, want_d.history, want_d.history_bound));
  }
}

TEST(EngramMix, KernelOneHasNoHistory) {
  // K = 1: C = SiLU(w Z_t) of the current token only; the history view is empty.
  const auto in = mix_inputs(6, 2, 8, 12, 1, 3, 500, false);
  ASSERT_EQ(in.H(), 0);
  for (bool as_float : {false, true}) {
    const oracle::MixOut want = as_float ? oracle::mix<float>(in) : oracle::mix<double>(in);
    const MixRun got = as_float ? run_mix<float>(in) : run_mix<double>(in);
    EXPECT_TRUE(within_bounds(got.y, want.y, want.y_bound)) << (as_float ? "float" : "double");
    EXPECT_TRUE(got.history.empty());
  }
}

TEST(EngramMix, ShapeErrorsNameTheProblem) {
  const auto in = mix_inputs(3, 2, 4, 6, 4, 3, 600, false);
  const int64_t W = 8, H = 9;
  std::vector<double> x = in.x, e = in.e, hist(size_t(H * W), 0.0), y(size_t(3 * W));
  EngramMixParams<double> good;
  good.x = view2<const double>(x.data(), 3, W);
  good.e = view2<const double>(e.data(), 3, 6);
  good.w = {in.vw.data(), in.vb.data(), in.kw.data(), in.kb.data(),
            in.kn.data(), in.qn.data(), in.cw.data(), in.cn.data()};
  good.streams = 2;
  good.kernel = 4;
  good.dilation = 3;
  good.history = view2(hist.data(), H, W);
  good.y = view2(y.data(), 3, W);
  ref::engram_mix(good);  // the baseline is accepted
  auto expect = [&](const std::function<void(EngramMixParams<double>&)>& breakit,
                    const std::string& what) {
    EngramMixParams<double> p = good;
    breakit(p);
    EXPECT_TRUE(throws_input_error([&] { ref::engram_mix(p); }, what));
  };
  expect([](auto& p) { p.streams = 3; }, "not a multiple of 3 streams");
  expect([&](auto& p) { p.e = view2<const double>(e.data(), 2, 6); },
         "e must have 3 rows, found 2");
  expect([&](auto& p) { p.y = view2(y.data(), 3, 4); }, "y must be [3, 8], found [3, 4]");
  expect([&](auto& p) { p.history = view2(hist.data(), 8, W); },
         "history must be [9, 8], found [8, 8]");
  expect([&](auto& p) { p.kernel = 0; }, "kernel and dilation must be positive");
  expect([](auto& p) { p.w.conv_norm = nullptr; }, "a weight is missing");
}

}  // namespace
