// dsv4::cuda::hc_post against the double-precision oracle of tests/optimized/mhc_oracle.h
// (docs/v4-architecture.md §3.1 "Post-mix": y_k = post_k f + sum_j comb[j, k] X_j) and against
// its CPU twin ref::hc_post<float>. Label gpu: every test that needs a device skips, with the
// reason, when there is none; the host-side validation runs everywhere.
//
// Tolerances: y is an (n+1)-term sum; reduction_tol<float>(n + 1, magnitude) with the largest
// per-element magnitude |post_k f| + sum_j |comb_jk X_j| bounds any FP32 implementation; against
// the CPU twin the two bounds add (kTwoImpls). (The twin forms post_k f and then one fused
// multiply-add per stream in the reference's order, which GCC's -mfma build of the reference
// also fuses, so the two usually agree bitwise; the test does not rely on the host compiler.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/hc_post.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/hc_post.h"
#include "tests/optimized/mhc_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::rerun_bitwise;

constexpr double kTwoImpls = 2.0;

struct Case {
  int64_t T, n, D;
  int64_t pad;  // extra elements after every row of every matrix (0: dense)
  uint64_t seed;
};

void check(const Case& k) {
  SCOPED_TRACE(::testing::Message()
               << "T " << k.T << " n " << k.n << " D " << k.D << " pad " << k.pad);
  const int64_t T = k.T, n = k.n, D = k.D;
  const std::vector<float> x = test::normal<float>(size_t(T * n * D), k.seed, 2.0);
  const std::vector<float> f = test::normal<float>(size_t(T * D), k.seed + 1);
  const std::vector<float> post = test::uniform<float>(size_t(T * n), k.seed + 2, 0.1, 2.0);
  // comb: entries of a (near) doubly stochastic matrix lie in (0, 1).
  const std::vector<float> comb = test::uniform<float>(size_t(T * n * n), k.seed + 3, 0.01, 1.0);

  const Guarded gx{T, n * D, n * D + k.pad}, gf{T, D, D + k.pad}, gp{T, n, n + k.pad},
      gc{T, n * n, n * n + k.pad}, gy{T, n * D, n * D + k.pad};
  const std::vector<float> x_img = gx.image(x), f_img = gf.image(f);
  cuda::DeviceBuffer<float> dx(x_img), df(f_img), dp(gp.image(post)), dc(gc.image(comb)),
      dy(gy.poisoned());
  const HcPostParams<float> p{gx.view<const float>(dx.data()),
                              gf.view<const float>(df.data()),
                              gp.view<const float>(dp.data()),
                              gc.view<const float>(dc.data()),
                              n,
                              gy.view(dy.data())};
  launch_and_sync([&] { cuda::hc_post(p); });

  const std::vector<float> y_img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(test::bitwise_equal(dx.download(), x_img)) << "the op wrote into x";
  EXPECT_TRUE(test::bitwise_equal(df.download(), f_img)) << "the op wrote into f";
  const std::vector<float> y = gy.extract(y_img);

  std::vector<double> mag;
  const std::vector<double> want = test::mhc::hc_post(x, f, post, comb, T, n, D, &mag);
  const double max_mag = mag.empty() ? 0.0 : *std::max_element(mag.begin(), mag.end());
  const double tol = test::reduction_tol<float>(double(n + 1), max_mag);
  EXPECT_TRUE(test::all_close(y, want, tol)) << "against the oracle";

  std::vector<float> y_ref = test::nan_vec<float>(size_t(T * n * D));
  ref::hc_post<float>({view2(x.data(), T, n * D), view2(f.data(), T, D), view2(post.data(), T, n),
                       view2(comb.data(), T, n * n), n, view2(y_ref.data(), T, n * D)});
  EXPECT_TRUE(test::all_close(y, y_ref, kTwoImpls * tol)) << "against ref::hc_post<float>";

  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, [&] { cuda::hc_post(p); }))
      << "rerun differs";
}

// The real shapes: n = 4, D = 4096 (V4-Flash) and 7168 (V4-Pro).
TEST(HcPostCuda, FlashAndProShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({5, kHcMult, 4096, 0, 11});
  check({3, kHcMult, 7168, 4, 12});
}

// Widths around the block (256 columns), a single column, every stream count up to the limit.
TEST(HcPostCuda, EdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t n : {int64_t(1), int64_t(3), kHcMult, cuda::kHcPostMaxN})
    for (int64_t D : {1, 255, 257}) check({2, n, D, 3, uint64_t(100 + 10 * n + D)});
  check({1, kHcMult, 256, 0, 7});
}

// Host-side validation, before any device work: runs without a device.
TEST(HcPostCuda, RejectsBadShapesBeforeLaunch) {
  float a = 0, b = 0;
  auto good = [&] {
    return HcPostParams<float>{view2<const float>(&a, 2, 4 * 8),
                               view2<const float>(&a, 2, 8),
                               view2<const float>(&a, 2, 4),
                               view2<const float>(&a, 2, 16),
                               4,
                               view2(&b, 2, 32)};
  };
  HcPostParams<float> p = good();
  p.x.cols = 30;
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();
  p.f.cols = 7;
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();
  p.post.rows = 3;
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();
  p.comb.cols = 4;
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();
  p.y.cols = 31;
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();
  p.y.data = &a;  // aliases x
  EXPECT_THROW(cuda::hc_post(p), InputError);
  p = good();  // n above the GPU limit, shapes consistent
  const int64_t n = cuda::kHcPostMaxN + 1;
  p.n = n;
  p.x.cols = n * 8;
  p.post.cols = n;
  p.comb.cols = n * n;
  p.y.cols = n * 8;
  EXPECT_THROW(cuda::hc_post(p), InputError);
}

}  // namespace
}  // namespace dsv4
