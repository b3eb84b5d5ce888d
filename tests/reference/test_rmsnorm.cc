// RMSNorm (reference/rmsnorm.h) and LayerNorm (reference/layernorm.h) against naive
// double loops written from the formulas (spec §2.1-§2.3, §3.1 for RMSNorm; §2.10 for the
// V3.2 indexer's LayerNorm):
//   rmsnorm:   y = x / sqrt(mean(x^2) + eps) * w
//   layernorm: y = (x - mean(x)) / sqrt(mean((x - mean)^2) + eps) * w + b
//
// Tolerances: the only long reduction is the length-d sum (of squares, or of x and of the
// centred squares). Each output element is that reduction's result (relative error
// ~ sqrt(d) u) times a few more rounded ops, so
//   rmsnorm:   |y - y_ref| <= reduction_tol<T>(d, |y_ref|)  elementwise (rtol form), and
//   layernorm: |y - y_ref| <= reduction_tol<T>(d, (max|x| + max|x - mu|) * inv * max|w|
//                                                 + max|b|)
//              (absolute: the centring x - mu errs by ~u * |x| plus the mean's error
//              ~sqrt(d) u max|x|, whatever the spread; inv = 1/std then scales it up).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "reference/layernorm.h"
#include "reference/rmsnorm.h"
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

// naive::rmsnorm row by row.
std::vector<double> rms_oracle(const std::vector<double>& x, const std::vector<double>* w,
                               int64_t R, int64_t d, double eps) {
  std::vector<double> y = x;
  for (int64_t r = 0; r < R; ++r) naive::rmsnorm(&y[r * d], d, w ? w->data() : nullptr, eps);
  return y;
}

// Also returns the error magnitude max over rows of (max|x| + max|x - mu|) * inv * max|w|
// + max|b|.
std::vector<double> ln_oracle(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>& b, int64_t R, int64_t d, double eps,
                              double* magnitude) {
  std::vector<double> y = x;
  double wmax = 0, bmax = 0;
  for (int64_t c = 0; c < d; ++c) {
    wmax = std::max(wmax, std::fabs(w[c]));
    bmax = std::max(bmax, std::fabs(b[c]));
  }
  *magnitude = 0;
  for (int64_t r = 0; r < R; ++r) {
    const naive::LayerNormStats st = naive::layernorm(&y[r * d], d, w.data(), b.data(), eps);
    double spread = 0, xmax = 0;
    for (int64_t c = 0; c < d; ++c) {
      spread = std::max(spread, std::fabs(x[r * d + c] - st.mean));
      xmax = std::max(xmax, std::fabs(x[r * d + c]));
    }
    const double inv = 1.0 / st.sd;
    *magnitude = std::max(*magnitude, (xmax + spread) * inv * wmax + bmax);
  }
  return y;
}

template <class T>
class Norm : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Norm, Types);

// Runs rmsnorm (out of place or in place) and checks it against the oracle.
template <class T>
void check_rms(int64_t R, int64_t d, bool weighted, bool in_place, double eps, uint64_t seed,
               double x_sigma = 1.0) {
  SCOPED_TRACE(::testing::Message() << "R " << R << " d " << d << " weighted " << weighted
                                    << " in_place " << in_place << " eps " << eps);
  const auto xd = test::normal<double>(size_t(R * d), seed, x_sigma);
  const auto wd = test::uniform<double>(size_t(d), seed + 1, 0.5, 1.5);
  const std::vector<T> x = test::cast<T>(xd), w = test::cast<T>(wd);
  const std::vector<double> xr(x.begin(), x.end()), wr(w.begin(), w.end());
  const auto want = rms_oracle(xr, weighted ? &wr : nullptr, R, d, eps);
  std::vector<T> y = in_place ? x : nan_vec<T>(x.size());
  RmsNormParams<T> p{view2<const T>(in_place ? y.data() : x.data(), R, d),
                     weighted ? w.data() : nullptr, view2(y.data(), R, d), eps};
  ref::rmsnorm(p);
  EXPECT_TRUE(all_close(y.data(), want.data(), y.size(), 0.0, reduction_tol<T>(double(d))));
}

TYPED_TEST(Norm, RmsNormWeightedAndUnweighted) {
  using T = TypeParam;
  for (int64_t d : {1, 7, 64, 129}) {
    check_rms<T>(5, d, true, false, 1e-6, 10 + d);
    check_rms<T>(5, d, false, false, 1e-6, 20 + d);
  }
}

TYPED_TEST(Norm, RmsNormInPlace) {
  using T = TypeParam;
  check_rms<T>(6, 96, true, true, 1e-6, 31);
  check_rms<T>(6, 96, false, true, 1e-6, 32);
}

// Outputs over 32 MiB apart from x are written with streaming stores (reference/rmsnorm.cc):
// the same bits as the in-place (plain-store) path, at every alignment of y (the stores start
// at y's first 32-byte boundary), with and without the weight, the padding of strided rows
// untouched.
TEST(RmsNormStreaming, LargeOutputsHaveTheBitsOfThePlainPath) {
  const int64_t R = 2100, d = 4100, ld = 4103;  // 34 MB of output: past the streaming threshold
  const std::vector<float> x = test::uniform<float>(size_t(R * d), 61, -2.0, 2.0);
  const std::vector<float> w = test::uniform<float>(size_t(d), 62, 0.5, 1.5);
  for (const float* wp : {w.data(), static_cast<const float*>(nullptr)}) {
    std::vector<float> plain = x;  // in place: never streamed
    ref::rmsnorm<float>({view2<const float>(plain.data(), R, d), wp, view2(plain.data(), R, d)});
    for (int64_t shift : {0, 1, 3, 5}) {  // y at every float offset from a 32-byte boundary
      std::vector<float> y(size_t(shift + R * ld), -7.0f);
      ref::rmsnorm<float>({view2<const float>(x.data(), R, d), wp, View2<float>{y.data() + shift, R, d, ld}});
      bool same = true, pad = true;
      for (int64_t r = 0; r < R && same; ++r)
        for (int64_t c = 0; c < ld; ++c) {
          const float v = y[size_t(shift + r * ld + c)];
          if (c < d) same = same && std::memcmp(&v, &plain[size_t(r * d + c)], sizeof(float)) == 0;
          else pad = pad && v == -7.0f;
        }
      EXPECT_TRUE(same) << "shift " << shift << (wp ? " weighted" : " unweighted");
      EXPECT_TRUE(pad) << "shift " << shift;
    }
  }
}

TYPED_TEST(Norm, RmsNormEpsMatters) {
  // Small inputs (rms ~ 1e-3, mean square 1e-6 ~ eps): the eps term changes the answer by
  // ~50 %, so an op that drops or misplaces it fails.
  using T = TypeParam;
  check_rms<T>(4, 32, true, false, 1e-6, 41, 1e-3);
  check_rms<T>(4, 32, true, false, 1e-2, 42, 1e-3);
}

TYPED_TEST(Norm, RmsNormV4Shapes) {
  // V4-Flash hidden rows (D = 4096, attn_norm / ffn_norm) and the per-head unweighted norm
  // of §2.1 step 3 over q viewed as [T*H, 512] (T = 2, H = 64).
  using T = TypeParam;
  check_rms<T>(3, 4096, true, false, 1e-6, 51);
  check_rms<T>(2 * 64, kHeadDim, false, true, 1e-6, 52);
}

TYPED_TEST(Norm, RmsNormStridedViews) {
  // Rows with ld > cols: the padding between rows must be neither read into nor written.
  using T = TypeParam;
  const int64_t R = 4, d = 24, ld = 31;
  const auto xd = test::normal<double>(size_t(R * ld), 61);
  std::vector<T> x = test::cast<T>(xd);
  std::vector<T> y = nan_vec<T>(size_t(R * ld));
  const T canary = T(12345.5);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = d; c < ld; ++c) y[r * ld + c] = canary;
  RmsNormParams<T> p{{x.data(), R, d, ld}, nullptr, {y.data(), R, d, ld}, 1e-6};
  ref::rmsnorm(p);
  std::vector<double> xr, got;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < d; ++c) {
      xr.push_back(double(x[r * ld + c]));
      got.push_back(double(y[r * ld + c]));
    }
  EXPECT_TRUE(all_close(got, rms_oracle(xr, nullptr, R, d, 1e-6), 0.0, reduction_tol<T>(d)));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = d; c < ld; ++c) EXPECT_EQ(y[r * ld + c], canary);
}

template <class T>
void check_ln(int64_t R, int64_t d, bool in_place, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "R " << R << " d " << d << " in_place " << in_place);
  // A non-zero mean (x in [0.5, 1.5)) so that the centring matters.
  const std::vector<T> x = test::uniform<T>(size_t(R * d), seed, 0.5, 1.5);
  const std::vector<T> w = test::uniform<T>(size_t(d), seed + 1, 0.5, 1.5);
  const std::vector<T> b = test::uniform<T>(size_t(d), seed + 2, -0.5, 0.5);
  double mag = 0;
  const auto want = ln_oracle(std::vector<double>(x.begin(), x.end()),
                              std::vector<double>(w.begin(), w.end()),
                              std::vector<double>(b.begin(), b.end()), R, d, 1e-6, &mag);
  std::vector<T> y = in_place ? x : nan_vec<T>(x.size());
  LayerNormParams<T> p{view2<const T>(in_place ? y.data() : x.data(), R, d), w.data(), b.data(),
                       view2(y.data(), R, d), 1e-6};
  ref::layernorm(p);
  EXPECT_TRUE(all_close(y.data(), want.data(), y.size(), reduction_tol<T>(double(d), mag)));
}

TYPED_TEST(Norm, LayerNormWeightBias) {
  using T = TypeParam;
  for (int64_t d : {2, 17, 128}) check_ln<T>(5, d, false, 70 + d);
}

TYPED_TEST(Norm, LayerNormInPlace) {
  using T = TypeParam;
  check_ln<T>(4, 128, true, 80);
}

}  // namespace
