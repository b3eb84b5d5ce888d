// dsv4::cuda::layernorm against a double-precision oracle written from the spec
// (docs/v4-architecture.md §2.10: y = (x - mean) / sqrt(var + eps) * w + b, the biased
// variance; tests/support/naive.h naive::layernorm) and against its CPU twin
// ref::layernorm<float>. Label gpu: every test that needs a device skips, with the reason,
// when there is none; the host-side validation test runs everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/layernorm.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/layernorm.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::rerun_bitwise;

constexpr float kNaN = test::kPoison;
constexpr int64_t kIndexerKeyDim = kIndexerDim;  // §2.10: the V3.2 indexer keys, d = 128

// Row r of x ~ (N(0, 1) + 3) * 2^(r % 7 - 3): a mean of 3 standard deviations (the two-pass
// variance must not cancel) and magnitudes from 1/8 to 8 across rows.
std::vector<float> make_x(int64_t rows, int64_t d, uint64_t seed) {
  std::vector<float> x = test::normal<float>(size_t(rows * d), seed);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c)
      x[size_t(r * d + c)] = (x[size_t(r * d + c)] + 3.0f) * std::ldexp(1.0f, int(r % 7) - 3);
  return x;
}

struct Oracle {
  std::vector<double> y;
  double mean_abs_over_sd = 0;  // max over rows of mean|x| / sqrt(var + eps)
};

// Spec oracle in double from the float inputs; w, b nullptr: 1 and 0.
Oracle oracle(const std::vector<float>& x, const std::vector<float>* w, const std::vector<float>* b,
              int64_t rows, int64_t d) {
  Oracle o;
  o.y.assign(x.begin(), x.end());
  const std::vector<double> wd = w ? std::vector<double>(w->begin(), w->end()) : std::vector<double>(size_t(d), 1.0);
  const std::vector<double> bd = b ? std::vector<double>(b->begin(), b->end()) : std::vector<double>(size_t(d), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double mean_abs = 0;
    for (int64_t c = 0; c < d; ++c) mean_abs += std::fabs(double(x[size_t(r * d + c)]));
    const auto st = test::naive::layernorm(&o.y[size_t(r * d)], d, wd.data(), bd.data(), kNormEps);
    o.mean_abs_over_sd = std::max(o.mean_abs_over_sd, mean_abs / double(d) / st.sd);
  }
  return o;
}

// Tolerance, |y - exact| <= atol + rtol |y|. With z = (x - mu) / sd:
//   the FP32 mean errs by reduction_tol(d, mean|x|), i.e. by reduction_tol(d, mean|x| / sd)
//   in units of sd, and every z inherits it: times max|w| (atol);
//   the FP32 variance sum (terms (x - mu)^2, summing to d var) errs relatively by
//   reduction_tol(d, 1), 1/sqrt halves it: relative to |w z| <= |y| + |b| (rtol, and
//   rtol * max|b| into atol); the final multiply-add rounds once more (kSafety covers it).
struct Tol {
  double atol, rtol;
};
Tol layernorm_tol(int64_t d, double mean_abs_over_sd, double wmax, double bmax) {
  const double rtol = test::reduction_tol<float>(double(d), 1.0);
  return {wmax * test::reduction_tol<float>(double(d), mean_abs_over_sd) + rtol * bmax, rtol};
}
// Two FP32 implementations each within the bound of the exact value are within twice it.
constexpr double kTwoImpls = 2.0;

struct Case {
  int64_t rows, d, ld_x, ld_y;
  bool weighted, biased;
  uint64_t seed;
};

// Out of place: poisoned y with canaries, compare with the oracle and the CPU twin, check x is
// untouched, rerun on a re-poisoned y and require the same bits.
void check_out_of_place(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "rows " << k.rows << " d " << k.d << " ld_x " << k.ld_x << " ld_y "
                                    << k.ld_y << (k.weighted ? " weighted" : "") << (k.biased ? " biased" : ""));
  const std::vector<float> x = make_x(k.rows, k.d, k.seed);
  const std::vector<float> w = test::uniform<float>(size_t(k.d), k.seed + 1, 0.5, 1.5);
  const std::vector<float> b = test::uniform<float>(size_t(k.d), k.seed + 2, -1.0, 1.0);
  const Guarded gx{k.rows, k.d, k.ld_x}, gy{k.rows, k.d, k.ld_y};

  const std::vector<float> x_img = gx.image(x);
  cuda::DeviceBuffer<float> dx(x_img), dy(gy.poisoned()), dw(w), db(b);
  LayerNormParams<float> p;
  p.x = gx.view<const float>(dx.data());
  p.w = k.weighted ? dw.data() : nullptr;
  p.b = k.biased ? db.data() : nullptr;
  p.y = gy.view(dy.data());
  launch_and_sync([&] { cuda::layernorm(p); });

  const std::vector<float> y_img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(test::bitwise_equal(dx.download(), x_img)) << "the op wrote into x";
  const std::vector<float> y = gy.extract(y_img);

  const Oracle o = oracle(x, k.weighted ? &w : nullptr, k.biased ? &b : nullptr, k.rows, k.d);
  const Tol tol = layernorm_tol(k.d, o.mean_abs_over_sd, k.weighted ? 1.5 : 1.0, k.biased ? 1.0 : 0.0);
  EXPECT_TRUE(test::all_close(y, o.y, tol.atol, tol.rtol)) << "against the fp64 oracle";

  std::vector<float> y_ref(x.size(), kNaN);
  LayerNormParams<float> pr;
  pr.x = view2(x.data(), k.rows, k.d);
  pr.w = k.weighted ? w.data() : nullptr;
  pr.b = k.biased ? b.data() : nullptr;
  pr.y = view2(y_ref.data(), k.rows, k.d);
  ref::layernorm(pr);
  EXPECT_TRUE(test::all_close(y, y_ref, kTwoImpls * tol.atol, kTwoImpls * tol.rtol)) << "against ref::layernorm<float>";

  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, [&] { cuda::layernorm(p); })) << "rerun differs";
}

// The V3.2 indexer key norm (§2.10): k [T, 128] with weight and bias, dense and strided.
TEST(LayerNormCuda, IndexerKeyShape) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_out_of_place({64, kIndexerKeyDim, kIndexerKeyDim, kIndexerKeyDim, true, true, 11});
  check_out_of_place({17, kIndexerKeyDim, kIndexerKeyDim + 4, kIndexerKeyDim + 9, true, true, 12});
}

// Model widths (v4-architecture.md, hidden D): V4-Flash 4096, V4-Pro 7168; weight only, none.
constexpr int64_t kFlashHidden = 4096, kProHidden = 7168;
TEST(LayerNormCuda, ModelWidths) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_out_of_place({6, kFlashHidden, kFlashHidden, kFlashHidden, true, false, 21});
  check_out_of_place({5, kProHidden, kProHidden + 32, kProHidden + 16, false, false, 22});
}

// Widths around the block size (256 threads) and a single column / single row.
TEST(LayerNormCuda, EdgeWidths) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t d : {1, 2, 31, 255, 256, 257, 4097}) {
    check_out_of_place({3, d, d + 3, d + 5, true, true, uint64_t(300 + d)});
    check_out_of_place({1, d, d, d, false, true, uint64_t(400 + d)});
  }
}

// y aliases x (in place), weighted and biased, strided rows; canaries around, rerun bitwise.
TEST(LayerNormCuda, InPlaceStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t rows = 9, d = 1000, ld = 1000 + 24;
  const std::vector<float> x = make_x(rows, d, 505);
  const std::vector<float> w = test::uniform<float>(size_t(d), 506, 0.5, 1.5);
  const std::vector<float> b = test::uniform<float>(size_t(d), 507, -1.0, 1.0);
  const Guarded g{rows, d, ld};
  cuda::DeviceBuffer<float> dxy(g.image(x)), dw(w), db(b);
  LayerNormParams<float> p;
  p.x = g.view<const float>(dxy.data());
  p.w = dw.data();
  p.b = db.data();
  p.y = g.view(dxy.data());
  launch_and_sync([&] { cuda::layernorm(p); });

  const std::vector<float> img = dxy.download();
  EXPECT_TRUE(g.canaries_intact(img));
  const Oracle o = oracle(x, &w, &b, rows, d);
  const Tol tol = layernorm_tol(d, o.mean_abs_over_sd, 1.5, 1.0);
  EXPECT_TRUE(test::all_close(g.extract(img), o.y, tol.atol, tol.rtol));

  EXPECT_TRUE(rerun_bitwise(dxy, g.image(x), img, [&] { cuda::layernorm(p); })) << "rerun differs";
}

// Host-side validation, before any device work: needs no device, so it runs everywhere.
TEST(LayerNormCuda, RejectsShapeMismatchBeforeLaunch) {
  float dummy = 0;
  LayerNormParams<float> p;
  p.x = view2<const float>(&dummy, 4, 8);
  p.y = view2(&dummy, 4, 7);
  EXPECT_THROW(cuda::layernorm(p), InputError);
  p.y = view2(&dummy, 3, 8);
  EXPECT_THROW(cuda::layernorm(p), InputError);
}

}  // namespace
}  // namespace dsv4
