// mHC: Sinkhorn (reference/sinkhorn.h), pre-mix and head (hc_pre.h), post-mix (hc_post.h),
// against naive double loops written from spec §3.1:
//   sinkhorn: M <- row_softmax(L) + eps; M <- M / (colsum + eps); then iters - 1 rounds of
//             M <- M / (rowsum + eps), M <- M / (colsum + eps). The sequence is the semantics.
//   hc_pre:   v = vec(X) (stream-major), r = 1/sqrt(mean(v^2) + norm_eps), mu = r (Phi v);
//             pre_j = sigmoid(a0 mu_j + b_j) + eps; post_j = 2 sigmoid(a1 mu_{n+j} + b_{n+j});
//             M[i][k] = a2 mu_{2n + n i + k} + b_{2n + n i + k} -> sinkhorn; u = sum_j pre_j X_j.
//   hc_head:  pre = sigmoid(a mu + b) + eps with Phi [n, nD]; u = sum_j pre_j X_j.
//   hc_post:  y_k = post_k f + sum_j comb[j][k] X_j.
// (sigmoid and the row softmax: the shared naive:: ones of tests/support/naive.h.)
//
// Tolerances (derivations beside each use):
//   sinkhorn_tol<T>: 2 * iters normalisations, each a division by an (n+1)-term sum of entries
//   <= 1: reduction_tol<T>(2 * iters * (n + 1), 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "reference/errors.h"
#include "reference/hc_post.h"
#include "reference/eigen_util.h"
#include "reference/hc_pre.h"
#include "reference/simd.h"
#include "reference/sinkhorn.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace {

using namespace dsv4;
namespace naive = dsv4::test::naive;
using dsv4::test::all_close;
using dsv4::test::nan_vec;
using dsv4::test::reduction_tol;
using dsv4::test::to_double;
using naive::sigmoid;

template <class T>
double sinkhorn_tol(int64_t n, int64_t iters) {
  return reduction_tol<T>(double(2 * iters * (n + 1)), 1.0);
}

// ---- naive oracles ----------------------------------------------------------------------

std::vector<double> sinkhorn_naive(const std::vector<double>& L, int64_t items, int64_t n,
                                   int64_t iters, double eps) {
  std::vector<double> out(L.size());
  for (int64_t r = 0; r < items; ++r) {
    std::vector<std::vector<double>> M(n, std::vector<double>(n));
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> p = naive::softmax(&L[r * n * n + i * n], n);
      for (int64_t j = 0; j < n; ++j) M[i][j] = p[j] + eps;
    }
    auto cols = [&] {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += M[i][j];
        for (int64_t i = 0; i < n; ++i) M[i][j] /= s + eps;
      }
    };
    auto rows = [&] {
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += M[i][j];
        for (int64_t j = 0; j < n; ++j) M[i][j] /= s + eps;
      }
    };
    cols();
    for (int64_t it = 1; it < iters; ++it) {
      rows();
      cols();
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) out[r * n * n + i * n + j] = M[i][j];
  }
  return out;
}

struct PreOut {
  std::vector<double> u, post, comb;
  double mu_mag = 0;  // max over tokens and rows of r * sum_c |Phi_rc v_c|
};

// rows = 2n + n^2 (hc_pre) or n (hc_head).
PreOut hc_pre_naive(const std::vector<double>& x, const std::vector<double>& fn,
                    const std::vector<double>& base, const std::vector<double>& scale, int64_t T,
                    int64_t n, int64_t D, int64_t iters, double eps, double norm_eps, bool head) {
  const int64_t nd = n * D, rows = head ? n : 2 * n + n * n;
  PreOut o;
  o.u.assign(size_t(T * D), 0.0);
  o.post.assign(size_t(T * n), 0.0);
  o.comb.assign(size_t(T * n * n), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    const double* v = &x[size_t(t * nd)];
    double ms = 0;
    for (int64_t c = 0; c < nd; ++c) ms += v[c] * v[c];
    const double rs = 1.0 / std::sqrt(ms / double(nd) + norm_eps);
    std::vector<double> mu(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0, a = 0;
      for (int64_t c = 0; c < nd; ++c) {
        s += fn[size_t(r * nd + c)] * v[c];
        a += std::fabs(fn[size_t(r * nd + c)] * v[c]);
      }
      mu[size_t(r)] = rs * s;
      o.mu_mag = std::max(o.mu_mag, rs * a);
    }
    std::vector<double> pre(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) pre[j] = sigmoid(scale[0] * mu[j] + base[j]) + eps;
    if (!head) {
      for (int64_t j = 0; j < n; ++j)
        o.post[size_t(t * n + j)] = 2.0 * sigmoid(scale[1] * mu[n + j] + base[n + j]);
      std::vector<double> logits(static_cast<size_t>(n * n));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < n; ++k)
          logits[size_t(i * n + k)] = scale[2] * mu[2 * n + n * i + k] + base[2 * n + n * i + k];
      const auto M = sinkhorn_naive(logits, 1, n, iters, eps);
      std::copy(M.begin(), M.end(), o.comb.begin() + t * n * n);
    }
    for (int64_t c = 0; c < D; ++c) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += pre[j] * v[j * D + c];
      o.u[size_t(t * D + c)] = s;
    }
  }
  return o;
}

// y and, per element, the magnitude |post_k f| + sum_j |comb_jk X_j| for the tolerance.
std::vector<double> hc_post_naive(const std::vector<double>& x, const std::vector<double>& f,
                                  const std::vector<double>& post, const std::vector<double>& comb,
                                  int64_t T, int64_t n, int64_t D, std::vector<double>* mag) {
  std::vector<double> y(size_t(T * n * D));
  mag->assign(y.size(), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < n; ++k)
      for (int64_t c = 0; c < D; ++c) {
        double s = post[t * n + k] * f[t * D + c];
        double m = std::fabs(s);
        for (int64_t j = 0; j < n; ++j) {
          const double term = comb[t * n * n + j * n + k] * x[t * n * D + j * D + c];
          s += term;
          m += std::fabs(term);
        }
        y[size_t(t * n * D + k * D + c)] = s;
        (*mag)[size_t(t * n * D + k * D + c)] = m;
      }
  return y;
}


template <class T>
std::vector<T> run_sinkhorn(const std::vector<T>& L, int64_t items, int64_t n, int64_t iters,
                            double eps = 1e-6) {
  auto m = nan_vec<T>(L.size());
  ref::sinkhorn(SinkhornParams<T>{L.data(), m.data(), items, n, iters, eps});
  return m;
}

// Largest |row sum - 1| or |col sum - 1| over all items.
template <class T>
double ds_deviation(const std::vector<T>& m, int64_t items, int64_t n) {
  double dev = 0;
  for (int64_t r = 0; r < items; ++r)
    for (int64_t i = 0; i < n; ++i) {
      double rs = 0, cs = 0;
      for (int64_t j = 0; j < n; ++j) {
        rs += double(m[r * n * n + i * n + j]);
        cs += double(m[r * n * n + j * n + i]);
      }
      dev = std::max({dev, std::fabs(rs - 1), std::fabs(cs - 1)});
    }
  return dev;
}

template <class T>
class Mhc : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Mhc, Types);

// ---- Sinkhorn ---------------------------------------------------------------------------

TYPED_TEST(Mhc, SinkhornMatchesNaiveSequence) {
  using T = TypeParam;
  for (int64_t n : {4, 3}) {
    for (int64_t iters : {1, 2, 20}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " iters " << iters);
      const int64_t items = 16;
      const auto L = test::normal<T>(size_t(items * n * n), 10 * n + iters);
      const auto m = run_sinkhorn(L, items, n, iters);
      EXPECT_TRUE(all_close(m, sinkhorn_naive(to_double(L), items, n, iters, 1e-6),
                            sinkhorn_tol<T>(n, iters)));
    }
  }
}

TYPED_TEST(Mhc, SinkhornModerateLogitsAreDoublyStochastic) {
  using T = TypeParam;
  // Moderate: logits in [-1, 1] (entries of the first softmax within e^2 of each other).
  // Row and column sums then sit within ~eps (1e-6) of 1; column sums end exactly at
  // colsum / (colsum + eps). (With N(0, 1) logits an occasional item is still 2e-5 away
  // after 20 rounds.)
  const int64_t items = 256, n = 4;
  const auto L = test::uniform<T>(size_t(items * n * n), 20, -1.0, 1.0);
  const auto m = run_sinkhorn(L, items, n, 20);
  EXPECT_LT(ds_deviation(m, items, n), 1e-5);
  for (T v : m) EXPECT_GT(v, T(0));
}

TYPED_TEST(Mhc, SinkhornPeakedLogitsFollowTheSequenceNotConvergence) {
  // Logits of scale 50: 20 rounds do not reach a doubly stochastic matrix, and the op must
  // still equal the naive sequence (op-contract: the sequence is the semantics).
  using T = TypeParam;
  const int64_t items = 32, n = 4;
  auto L = test::normal<T>(size_t(items * n * n), 30, 50.0);
  // Item 0 by hand: rows 0-2 peak in column 0, row 3 in column 1.
  for (int64_t k = 0; k < n * n; ++k) L[k] = T(0);
  L[0 * n + 0] = L[1 * n + 0] = L[2 * n + 0] = L[3 * n + 1] = T(50);
  const auto m = run_sinkhorn(L, items, n, 20);
  const auto want = sinkhorn_naive(to_double(L), items, n, 20, 1e-6);
  // Entries span 1e-8 .. 1; the same sinkhorn_tol bound holds (measured float error
  // ~1.4e-7 against a bound of 6.7e-6).
  EXPECT_TRUE(all_close(m, want, sinkhorn_tol<T>(n, 20)));
  EXPECT_GT(ds_deviation(m, 1, n), 1e-2);      // the hand-made item is far from DS
  EXPECT_GT(ds_deviation(m, items, n), 1e-2);
}

TYPED_TEST(Mhc, SinkhornInPlaceAndBadIters) {
  using T = TypeParam;
  const int64_t items = 4, n = 4;
  const auto L = test::normal<T>(size_t(items * n * n), 40);
  const auto want = run_sinkhorn(L, items, n, 20);
  auto buf = L;
  ref::sinkhorn(SinkhornParams<T>{buf.data(), buf.data(), items, n, 20, 1e-6});
  EXPECT_TRUE(test::bitwise_equal(buf, want));
  EXPECT_THROW(run_sinkhorn(L, items, n, 0), InputError);
}

// ---- hc_pre / hc_head -------------------------------------------------------------------

struct PreInputs {
  int64_t T, n, D;
  std::vector<double> x, fn, base, scale;
};

PreInputs make_pre_inputs(int64_t T, int64_t n, int64_t D, bool head, uint64_t seed) {
  const int64_t rows = head ? n : 2 * n + n * n, nd = n * D;
  PreInputs in{T, n, D, {}, {}, {}, {}};
  in.x = test::normal<double>(size_t(T * nd), seed, 2.0);
  // Phi ~ N(0, 1/nD) so mu ~ N(0, 1): sigmoids and Sinkhorn in their sensitive range.
  in.fn = test::normal<double>(size_t(rows * nd), seed + 1, 1.0 / std::sqrt(double(nd)));
  in.base = test::normal<double>(size_t(rows), seed + 2, 0.5);
  in.scale = head ? std::vector<double>{0.9} : std::vector<double>{0.8, 1.3, 2.0};
  return in;
}

TYPED_TEST(Mhc, HcPreMatchesNaive) {
  using T = TypeParam;
  const int64_t Tn = 5, n = 4, D = 16, iters = 20;
  const double eps = 1e-6, norm_eps = 1e-6;
  const PreInputs in = make_pre_inputs(Tn, n, D, false, 50);
  const auto x = test::cast<T>(in.x), fn = test::cast<T>(in.fn), base = test::cast<T>(in.base),
             scale = test::cast<T>(in.scale);
  auto u = nan_vec<T>(size_t(Tn * D)), post = nan_vec<T>(size_t(Tn * n)),
       comb = nan_vec<T>(size_t(Tn * n * n));
  HcPreParams<T> p;
  p.x = view2(x.data(), Tn, n * D);
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.n = n;
  p.iters = iters;
  p.eps = eps;
  p.norm_eps = norm_eps;
  p.u = view2(u.data(), Tn, D);
  p.post = view2(post.data(), Tn, n);
  p.comb = view2(comb.data(), Tn, n * n);
  ref::hc_pre(p);
  const PreOut o = hc_pre_naive(to_double(x), to_double(fn), to_double(base), to_double(scale), Tn, n, D, iters, eps,
                                norm_eps, false);
  // mu errs by the length-nD reduction (Phi v, and the mean square inside r):
  const double dmu = 2 * reduction_tol<T>(double(n * D), o.mu_mag);
  // post = 2 sigmoid(a1 mu + b): sigmoid' <= 1/4, plus the sigmoid's own rounding.
  EXPECT_TRUE(all_close(post, o.post, 2 * (in.scale[1] * dmu / 4) + reduction_tol<T>(4, 2.0)));
  // comb: logits err by a2 dmu; the row softmax moves an entry by at most 2x that; then
  // the Sinkhorn rounds (sinkhorn_tol).
  EXPECT_TRUE(all_close(comb, o.comb, 4 * in.scale[2] * dmu + sinkhorn_tol<T>(n, iters)));
  // u = sum_j pre_j X_j: pre errs by a0 dmu / 4 + rounding; times sum_j |X_j|, plus the
  // n-term sum's own rounding.
  double xsum = 0;
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t c = 0; c < D; ++c) {
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::fabs(in.x[size_t(t * n * D + j * D + c)]);
      xsum = std::max(xsum, s);
    }
  const double dpre = in.scale[0] * dmu / 4 + reduction_tol<T>(4, 1.0);
  EXPECT_TRUE(all_close(u, o.u, dpre * xsum + reduction_tol<T>(double(n), xsum)));
}

// hc_pre's params over x rows `ld` apart (eps and norm_eps 1e-6), writing u, post and comb.
template <class T>
HcPreParams<T> strided_pre_params(const T* x, int64_t Tn, int64_t n, int64_t D, int64_t ld, const std::vector<T>& fn,
                                  const std::vector<T>& base, const std::vector<T>& scale, int64_t iters,
                                  std::vector<T>& u, std::vector<T>& post, std::vector<T>& comb) {
  HcPreParams<T> p;
  p.x = {x, Tn, n * D, ld};
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.n = n;
  p.iters = iters;
  p.eps = 1e-6;
  p.norm_eps = 1e-6;
  p.u = view2(u.data(), Tn, D);
  p.post = view2(post.data(), Tn, n);
  p.comb = view2(comb.data(), Tn, n * n);
  return p;
}

// The mixes kernel (hc_pre.cc: column blocks, register tiles of 4 tokens x 3 Phi rows; taken
// above kFewRowsMax tokens, below it linear()): token counts on both sides, 7 and 19 (19 =
// 4 x 4 + 3 leaves a partial tile), a width that is no multiple of the
// SIMD packet and spans several column blocks (n*D = 4 * 333 = 1332), and a row stride
// larger than the width. Same tolerances as HcPreMatchesNaive.
TYPED_TEST(Mhc, HcPreOddSizesAndRowStride) {
  using T = TypeParam;
  static_assert(19 > ref::kFewRowsMax, "19 tokens must take the mixes kernel");
  for (const int64_t Tn : {int64_t(7), int64_t(19)}) {
    const int64_t n = 4, D = 333, nd = n * D, ld = nd + 5, iters = 20;
    const PreInputs in = make_pre_inputs(Tn, n, D, false, 80);
    const auto xd = test::cast<T>(in.x), fn = test::cast<T>(in.fn), base = test::cast<T>(in.base),
               scale = test::cast<T>(in.scale);
    std::vector<T> xs(size_t(Tn * ld), std::numeric_limits<T>::quiet_NaN());  // NaN padding must not be read
    for (int64_t t = 0; t < Tn; ++t) std::copy_n(&xd[size_t(t * nd)], nd, &xs[size_t(t * ld)]);
    auto u = nan_vec<T>(size_t(Tn * D)), post = nan_vec<T>(size_t(Tn * n)), comb = nan_vec<T>(size_t(Tn * n * n));
    ref::hc_pre(strided_pre_params<T>(xs.data(), Tn, n, D, ld, fn, base, scale, iters, u, post, comb));
    const PreOut o = hc_pre_naive(to_double(xd), to_double(fn), to_double(base), to_double(scale), Tn, n, D, iters,
                                  1e-6, 1e-6, false);
    const double dmu = 2 * reduction_tol<T>(double(nd), o.mu_mag);
    EXPECT_TRUE(all_close(post, o.post, 2 * (in.scale[1] * dmu / 4) + reduction_tol<T>(4, 2.0)));
    EXPECT_TRUE(all_close(comb, o.comb, 4 * in.scale[2] * dmu + sinkhorn_tol<T>(n, iters)));
    double xsum = 0;
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t c = 0; c < D; ++c) {
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::fabs(in.x[size_t(t * nd + j * D + c)]);
        xsum = std::max(xsum, s);
      }
    const double dpre = in.scale[0] * dmu / 4 + reduction_tol<T>(4, 1.0);
    EXPECT_TRUE(all_close(u, o.u, dpre * xsum + reduction_tol<T>(double(n), xsum)));
  }
}

TYPED_TEST(Mhc, HcPreCombIndexIsRowMajorIK) {
  // Only comb logit 2n + n*1 + 3 (row i = 1, col k = 3) is large: after the row softmax
  // M[1][3] dominates row 1, so comb(1, 3) must be the largest entry of row 1 and column 3.
  using T = TypeParam;
  const int64_t n = 4, D = 8, nd = n * D, rows = 2 * n + n * n;
  const auto x = test::normal<T>(size_t(nd), 60);
  std::vector<T> fn = test::normal<T>(size_t(rows * nd), 61, 1e-3);
  std::vector<T> base(rows, T(0.1)), scale = {T(1), T(1), T(1)};
  base[2 * n + n * 1 + 3] = T(6);
  std::vector<T> u(D), post(n), comb(n * n, std::numeric_limits<T>::quiet_NaN());
  HcPreParams<T> p;
  p.x = view2(x.data(), 1, nd);
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.u = view2(u.data(), 1, D);
  p.post = view2(post.data(), 1, n);
  p.comb = view2(comb.data(), 1, n * n);
  ref::hc_pre(p);
  for (int64_t k = 0; k < n; ++k) {
    if (k != 3) {
      EXPECT_GT(comb[1 * n + 3], comb[1 * n + k]) << "k = " << k;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (i != 1) {
      EXPECT_GT(comb[1 * n + 3], comb[i * n + 3]) << "i = " << i;
    }
  }
}

TYPED_TEST(Mhc, HcHeadMatchesNaive) {
  using T = TypeParam;
  const int64_t Tn = 4, n = 4, D = 24;
  const PreInputs in = make_pre_inputs(Tn, n, D, true, 70);
  const auto x = test::cast<T>(in.x), fn = test::cast<T>(in.fn), base = test::cast<T>(in.base),
             scale = test::cast<T>(in.scale);
  auto u = nan_vec<T>(size_t(Tn * D));
  HcHeadParams<T> p;
  p.x = view2(x.data(), Tn, n * D);
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.n = n;
  p.u = view2(u.data(), Tn, D);
  ref::hc_head(p);
  const PreOut o = hc_pre_naive(to_double(x), to_double(fn), to_double(base), to_double(scale), Tn, n, D, 1, 1e-6, 1e-6,
                                true);
  const double dmu = 2 * reduction_tol<T>(double(n * D), o.mu_mag);
  double xsum = 0;
  for (double v : in.x) xsum = std::max(xsum, std::fabs(v));
  xsum *= double(n);
  const double dpre = in.scale[0] * dmu / 4 + reduction_tol<T>(4, 1.0);
  EXPECT_TRUE(all_close(u, o.u, dpre * xsum + reduction_tol<T>(double(n), xsum)));
}

// ---- hc_post ----------------------------------------------------------------------------

// Outputs of 8 MiB or more take hc_post's non-temporal stores (hc_post.cc), from a
// packet-aligned start after a scalar prologue: the same bits as row-by-row calls (small
// outputs, cached stores), and the naive result within the (n+1)-term sum's tolerance.
// y starts one element past an aligned address and D is no multiple of the packet.
TYPED_TEST(Mhc, HcPostLargeOutputSameBitsAsSmall) {
  using T = TypeParam;
  const int64_t n = 4, D = 4099, Tn = (8 << 20) / int64_t(sizeof(T)) / (n * D) + 1;  // just over 8 MiB
  const auto x = test::normal<T>(size_t(Tn * n * D), 90);
  const auto f = test::normal<T>(size_t(Tn * D), 91);
  const auto post = test::uniform<T>(size_t(Tn * n), 92, 0.1, 2.0);
  const auto comb = test::uniform<T>(size_t(Tn * n * n), 93, 0.01, 0.6);
  std::vector<T> big(x.size() + 1), rows(x.size());
  ref::hc_post(HcPostParams<T>{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D), view2(post.data(), Tn, n),
                               view2(comb.data(), Tn, n * n), n, view2(big.data() + 1, Tn, n * D)});
  for (int64_t t = 0; t < Tn; ++t)
    ref::hc_post(HcPostParams<T>{view2(x.data() + t * n * D, 1, n * D), view2(f.data() + t * D, 1, D),
                                 view2(post.data() + t * n, 1, n), view2(comb.data() + t * n * n, 1, n * n), n,
                                 view2(rows.data() + t * n * D, 1, n * D)});
  EXPECT_TRUE(std::equal(rows.begin(), rows.end(), big.begin() + 1));
  std::vector<double> mag;
  const auto want = hc_post_naive(to_double(x), to_double(f), to_double(post), to_double(comb), Tn, n, D, &mag);
  double mmax = 0;
  for (double m : mag) mmax = std::max(mmax, m);
  EXPECT_TRUE(all_close(std::vector<T>(big.begin() + 1, big.end()), want, reduction_tol<T>(double(n + 1), mmax)));
}

TYPED_TEST(Mhc, HcPostMatchesNaive) {
  using T = TypeParam;
  const int64_t Tn = 3, n = 4, D = 32;
  const auto x = test::normal<T>(size_t(Tn * n * D), 80);
  const auto f = test::normal<T>(size_t(Tn * D), 81);
  const auto post = test::uniform<T>(size_t(Tn * n), 82, 0.1, 2.0);
  const auto comb = test::uniform<T>(size_t(Tn * n * n), 83, 0.01, 0.6);  // not symmetric
  auto y = nan_vec<T>(x.size());
  HcPostParams<T> p{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D),
                    view2(post.data(), Tn, n), view2(comb.data(), Tn, n * n), n,
                    view2(y.data(), Tn, n * D)};
  ref::hc_post(p);
  std::vector<double> mag;
  const auto want = hc_post_naive(to_double(x), to_double(f), to_double(post), to_double(comb), Tn, n, D, &mag);
  double mmax = 0;
  for (double m : mag) mmax = std::max(mmax, m);
  // An (n+1)-term sum per element.
  EXPECT_TRUE(all_close(y, want, reduction_tol<T>(double(n + 1), mmax)));
  // The transposed mixing (comb[k][j]) would be a different answer.
  std::vector<double> combT(comb.size());
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < n; ++k) combT[t * n * n + j * n + k] = comb[t * n * n + k * n + j];
  EXPECT_FALSE(all_close(y, hc_post_naive(to_double(x), to_double(f), to_double(post), combT, Tn, n, D, &mag),
                         reduction_tol<T>(double(n + 1), mmax)));
}

TYPED_TEST(Mhc, HcPostIdentityCombZeroPostReturnsX) {
  using T = TypeParam;
  const int64_t Tn = 2, n = 4, D = 16;
  const auto x = test::normal<T>(size_t(Tn * n * D), 90);
  const auto f = test::normal<T>(size_t(Tn * D), 91);
  std::vector<T> post(size_t(Tn * n), T(0)), comb(size_t(Tn * n * n), T(0));
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t j = 0; j < n; ++j) comb[t * n * n + j * n + j] = T(1);
  auto y = nan_vec<T>(x.size());
  ref::hc_post(HcPostParams<T>{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D),
                               view2(post.data(), Tn, n), view2(comb.data(), Tn, n * n), n,
                               view2(y.data(), Tn, n * D)});
  EXPECT_TRUE(test::bitwise_equal(y, x));
  // y aliasing x is refused (the op reads every stream for every output stream).
  EXPECT_THROW(ref::hc_post(HcPostParams<T>{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D),
                                            view2(post.data(), Tn, n),
                                            view2(comb.data(), Tn, n * n), n,
                                            view2(const_cast<T*>(x.data()), Tn, n * D)}),
               InputError);
}

TYPED_TEST(Mhc, ProbeConstantMixingGivesStreamMean) {
  // Invariant tying hc_pre and hc_post (the probe models' constant mixing): Phi = 0, base
  // giving pre = 1/4 (b = logit(1/4 - eps)), post = 1 (b = 0), and equal comb logits (b = 0)
  // so that Sinkhorn returns ~1/4 everywhere. Then hc_pre's u is the stream mean and
  // hc_post(f) = f + mean in every stream.
  using T = TypeParam;
  const int64_t Tn = 3, n = 4, D = 20, rows = 2 * n + n * n;
  const double eps = 1e-6;
  const auto x = test::normal<T>(size_t(Tn * n * D), 100);
  const auto f = test::normal<T>(size_t(Tn * D), 101);
  std::vector<T> fn(size_t(rows * n * D), T(0)), base(rows, T(0)), scale = {T(1), T(1), T(1)};
  const double q = 0.25 - eps;
  for (int64_t j = 0; j < n; ++j) base[j] = T(std::log(q / (1 - q)));
  std::vector<T> u = nan_vec<T>(size_t(Tn * D)), post = nan_vec<T>(size_t(Tn * n)),
                 comb = nan_vec<T>(size_t(Tn * n * n));
  HcPreParams<T> p;
  p.x = view2(x.data(), Tn, n * D);
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.eps = eps;
  p.u = view2(u.data(), Tn, D);
  p.post = view2(post.data(), Tn, n);
  p.comb = view2(comb.data(), Tn, n * n);
  ref::hc_pre(p);
  std::vector<double> mean(size_t(Tn * D)), absum(size_t(Tn * D));
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t c = 0; c < D; ++c) {
      for (int64_t j = 0; j < n; ++j) {
        mean[t * D + c] += double(x[t * n * D + j * D + c]) / n;
        absum[t * D + c] += std::fabs(double(x[t * n * D + j * D + c]));
      }
    }
  double amax = 0;
  for (double a : absum) amax = std::max(amax, a);
  // pre = 1/4 up to the rounding of logit and sigmoid (a few u): the n-term sum's bound.
  EXPECT_TRUE(all_close(u, mean, reduction_tol<T>(double(n), amax)));
  EXPECT_TRUE(all_close(post, std::vector<double>(post.size(), 1.0), reduction_tol<T>(1, 1.0)));
  // Sinkhorn of a constant matrix: every normalisation of (1/4 + O(eps)) entries by
  // (sum + eps) leaves them within ~eps of 1/4.
  EXPECT_TRUE(all_close(comb, std::vector<double>(comb.size(), 0.25), 2 * eps));
  auto y = nan_vec<T>(x.size());
  ref::hc_post(HcPostParams<T>{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D),
                               view2(post.data(), Tn, n), view2(comb.data(), Tn, n * n), n,
                               view2(y.data(), Tn, n * D)});
  std::vector<double> want(y.size());
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t k = 0; k < n; ++k)
      for (int64_t c = 0; c < D; ++c)
        want[t * n * D + k * D + c] = double(f[t * D + c]) + mean[t * D + c];
  double fmax = 0;
  for (T v : f) fmax = std::max(fmax, std::fabs(double(v)));
  // comb within 2 eps of 1/4 -> 2 eps sum_j |X_j|; plus the (n+1)-term sum's rounding.
  EXPECT_TRUE(all_close(y, want, 2 * eps * amax + reduction_tol<T>(double(n + 1), fmax + amax)));
}

// ---- bitwise: the reference's per-element operation order -------------------------------
//
// Scalar loops in T that perform, per output element, the reference's operations in its
// order, so that a faster kernel (SIMD lanes, token groups, fused passes) must give the same
// bits. Every a * b + c of the reference is one madd_like_pmadd (Eigen's pmadd: fused where
// the build has FMA). The mixes kernel's order (hc_pre.cc, above kFewRowsMax tokens): lane
// l = k mod W of the SIMD packet (W = kPacket<T>) accumulates x_k phi_k in k order over the
// whole packets, the W lanes are summed by Eigen's predux, the remaining columns are added
// one by one, and the sum is scaled by rs.

template <class T>
T madd_like_pmadd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  const T ab = a * b;
  return ab + c;
#endif
}

// sum_k a[k] b[k] over k < len in the mixes kernel's order (see above).
template <class T>
T dot_kernel_order(const T* a, const T* b, int64_t len) {
  constexpr int W = ref::kPacket<T>;
  const int64_t whole = len / W * W;
  alignas(64) T lane[W] = {};
  for (int64_t k = 0; k < whole; ++k) lane[k % W] = madd_like_pmadd(a[k], b[k], lane[k % W]);
  T s = Eigen::internal::predux(Eigen::internal::pload<ref::Packet<T>>(lane));
  for (int64_t k = whole; k < len; ++k) s = madd_like_pmadd(a[k], b[k], s);
  return s;
}

// One item of sinkhorn in T, in sinkhorn.cc's order: row softmax (max, exp, sum from 0 in
// column order, divide, + eps), then column / row normalisations by (sum from 0) + eps.
template <class T>
void sinkhorn_scalar(const T* L, T* M, int64_t n, int64_t iters, T eps) {
  for (int64_t i = 0; i < n; ++i) {
    T mx = L[i * n];
    for (int64_t j = 1; j < n; ++j) mx = std::max(mx, L[i * n + j]);
    T s = 0;
    for (int64_t j = 0; j < n; ++j) s += (M[i * n + j] = std::exp(L[i * n + j] - mx));
    for (int64_t j = 0; j < n; ++j) M[i * n + j] = M[i * n + j] / s + eps;
  }
  auto cols = [&] {
    for (int64_t j = 0; j < n; ++j) {
      T s = 0;
      for (int64_t i = 0; i < n; ++i) s += M[i * n + j];
      for (int64_t i = 0; i < n; ++i) M[i * n + j] /= s + eps;
    }
  };
  auto rows = [&] {
    for (int64_t i = 0; i < n; ++i) {
      T s = 0;
      for (int64_t j = 0; j < n; ++j) s += M[i * n + j];
      for (int64_t j = 0; j < n; ++j) M[i * n + j] /= s + eps;
    }
  };
  cols();
  for (int64_t it = 1; it < iters; ++it) {
    rows();
    cols();
  }
}

template <class T>
T sigmoid_t(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// hc_pre (head: hc_head) in T, token by token, in the reference's order: mu by
// dot_kernel_order, rs = 1 / sqrt(sumsq / nD + norm_eps), the gates, sinkhorn_scalar, and
// u[c] = madd(pre_{n-1}, x_{n-1}[c], ... madd(pre_0, x_0[c], 0)).
// x [T, nD] at row stride ld.
template <class T>
void hc_pre_scalar(const T* x, int64_t ld, const T* fn, const T* base, const T* scale, int64_t Tn, int64_t n,
                   int64_t D, int64_t iters, double eps, double norm_eps, bool head, T* u, T* post, T* comb) {
  const int64_t nd = n * D, rows = head ? n : 2 * n + n * n;
  std::vector<T> mu(static_cast<size_t>(rows)), pre(static_cast<size_t>(n)), logits(static_cast<size_t>(n * n));
  for (int64_t t = 0; t < Tn; ++t) {
    const T* v = x + t * ld;
    const T rs = T(1) / std::sqrt(dot_kernel_order(v, v, nd) / T(nd) + T(norm_eps));
    for (int64_t r = 0; r < rows; ++r) mu[r] = dot_kernel_order(fn + r * nd, v, nd) * rs;
    for (int64_t j = 0; j < n; ++j) pre[j] = sigmoid_t(madd_like_pmadd(scale[0], mu[j], base[j])) + T(eps);
    if (!head) {
      for (int64_t j = 0; j < n; ++j)
        post[t * n + j] = T(2) * sigmoid_t(madd_like_pmadd(scale[1], mu[n + j], base[n + j]));
      for (int64_t k = 0; k < n * n; ++k) logits[k] = madd_like_pmadd(scale[2], mu[2 * n + k], base[2 * n + k]);
      sinkhorn_scalar(logits.data(), comb + t * n * n, n, iters, T(eps));
    }
    for (int64_t c = 0; c < D; ++c) {
      T s = 0;
      for (int64_t j = 0; j < n; ++j) s = madd_like_pmadd(pre[j], v[j * D + c], s);
      u[t * D + c] = s;
    }
  }
}

// hc_post in T in the reference's order: y = post_k f, then y = madd(comb[j][k], x_j, y) in
// j order.
template <class T>
std::vector<T> hc_post_scalar(const std::vector<T>& x, const std::vector<T>& f, const std::vector<T>& post,
                              const std::vector<T>& comb, int64_t Tn, int64_t n, int64_t D) {
  std::vector<T> y(x.size());
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t k = 0; k < n; ++k)
      for (int64_t c = 0; c < D; ++c) {
        T v = post[t * n + k] * f[t * D + c];
        for (int64_t j = 0; j < n; ++j) v = madd_like_pmadd(comb[t * n * n + j * n + k], x[t * n * D + j * D + c], v);
        y[t * n * D + k * D + c] = v;
      }
  return y;
}

TYPED_TEST(Mhc, SinkhornBitwiseScalarOrder) {
  // 13 items: lanes of several SIMD chunks and a partial last chunk; n = 3 and 4.
  using T = TypeParam;
  for (int64_t n : {4, 3}) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const int64_t items = 13, iters = 20;
    const auto L = test::normal<T>(size_t(items * n * n), 110 + n, 2.0);
    const auto m = run_sinkhorn(L, items, n, iters);
    std::vector<T> want(L.size());
    for (int64_t r = 0; r < items; ++r) sinkhorn_scalar(&L[r * n * n], &want[r * n * n], n, iters, T(1e-6));
    EXPECT_TRUE(test::bitwise_equal(m, want));
  }
}

TYPED_TEST(Mhc, HcPreAndHeadBitwiseScalarOrder) {
  // The mixes kernel's path (more than kFewRowsMax tokens): 19 tokens (4 groups of 4 and one
  // of 3), widths with and without a partial packet (n*D = 1332, 256), a row stride larger
  // than the width.
  using T = TypeParam;
  static_assert(19 > ref::kFewRowsMax, "19 tokens must take the mixes kernel");
  for (const bool head : {false, true}) {
    for (const int64_t D : {int64_t(333), int64_t(64)}) {
      SCOPED_TRACE(::testing::Message() << "head " << head << " D " << D);
      const int64_t Tn = 19, n = 4, nd = n * D, ld = nd + 5, iters = 20;
      const PreInputs in = make_pre_inputs(Tn, n, D, head, 120);
      const auto xd = test::cast<T>(in.x), fn = test::cast<T>(in.fn), base = test::cast<T>(in.base),
                 scale = test::cast<T>(in.scale);
      std::vector<T> xs(size_t(Tn * ld), std::numeric_limits<T>::quiet_NaN());
      for (int64_t t = 0; t < Tn; ++t) std::copy_n(&xd[size_t(t * nd)], nd, &xs[size_t(t * ld)]);
      auto u = nan_vec<T>(size_t(Tn * D)), post = nan_vec<T>(size_t(Tn * n)), comb = nan_vec<T>(size_t(Tn * n * n));
      auto wu = nan_vec<T>(u.size()), wpost = nan_vec<T>(post.size()), wcomb = nan_vec<T>(comb.size());
      if (head) {
        ref::hc_head(HcHeadParams<T>{{xs.data(), Tn, nd, ld}, fn.data(), base.data(), scale.data(), n, 1e-6, 1e-6,
                                     view2(u.data(), Tn, D)});
      } else {
        ref::hc_pre(strided_pre_params<T>(xs.data(), Tn, n, D, ld, fn, base, scale, iters, u, post, comb));
      }
      hc_pre_scalar(xs.data(), ld, fn.data(), base.data(), scale.data(), Tn, n, D, iters, 1e-6, 1e-6, head, wu.data(),
                    wpost.data(), wcomb.data());
      EXPECT_TRUE(test::bitwise_equal(u, wu));
      if (!head) {
        EXPECT_TRUE(test::bitwise_equal(post, wpost));
        EXPECT_TRUE(test::bitwise_equal(comb, wcomb));
      }
    }
  }
}

TYPED_TEST(Mhc, HcPostBitwiseScalarOrder) {
  // n = 4 with whole packets per stream (all output streams in one pass), D no multiple of
  // the packet and n = 3 (one pass per output stream); each just over 8 MiB of output
  // (non-temporal stores) and as single rows (cached stores), y one element past an aligned
  // address.
  using T = TypeParam;
  for (const auto& [n, D] : {std::pair<int64_t, int64_t>{4, 4096}, {4, 4099}, {3, 4096}}) {
    SCOPED_TRACE(::testing::Message() << "n " << n << " D " << D);
    const int64_t Tn = (8 << 20) / int64_t(sizeof(T)) / (n * D) + 1;
    const auto x = test::normal<T>(size_t(Tn * n * D), 130);
    const auto f = test::normal<T>(size_t(Tn * D), 131);
    const auto post = test::uniform<T>(size_t(Tn * n), 132, 0.1, 2.0);
    const auto comb = test::uniform<T>(size_t(Tn * n * n), 133, 0.01, 0.6);
    const auto want = hc_post_scalar(x, f, post, comb, Tn, n, D);
    std::vector<T> big(x.size() + 1);
    ref::hc_post(HcPostParams<T>{view2(x.data(), Tn, n * D), view2(f.data(), Tn, D), view2(post.data(), Tn, n),
                                 view2(comb.data(), Tn, n * n), n, view2(big.data() + 1, Tn, n * D)});
    EXPECT_TRUE(test::bitwise_equal(std::vector<T>(big.begin() + 1, big.end()), want));
    std::vector<T> row(size_t(n * D) + 1);
    for (const int64_t t : {int64_t(0), Tn - 1}) {
      ref::hc_post(HcPostParams<T>{view2(x.data() + t * n * D, 1, n * D), view2(f.data() + t * D, 1, D),
                                   view2(post.data() + t * n, 1, n), view2(comb.data() + t * n * n, 1, n * n), n,
                                   view2(row.data() + 1, 1, n * D)});
      EXPECT_TRUE(test::bitwise_equal(std::vector<T>(row.begin() + 1, row.end()),
                                      std::vector<T>(want.begin() + t * n * D, want.begin() + (t + 1) * n * D)));
    }
  }
}

}  // namespace
