// dsv4::cuda::hc_pre and dsv4::cuda::hc_head against the double-precision oracle of
// tests/optimized/mhc_oracle.h (written from docs/v4-architecture.md §3.1) and against their CPU
// twins ref::hc_pre<float> / ref::hc_head<float>. Label gpu: every test that needs a device
// skips, with the reason, when there is none; the host-side validation runs everywhere.
//
// Tolerances (mhc::pre_tol): against the oracle, at most twice the CPU twin's own measured
// error plus a rounding floor for the steps after mu; against the CPU twin, that plus the
// twin's error (|gpu - ref| <= |gpu - oracle| + |ref - oracle|).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/hc_pre.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/hc_pre.h"
#include "tests/optimized/mhc_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::rerun_bitwise;
using test::mhc::PreInputs;

constexpr int64_t kIters = kSinkhornIters;

// Row strides of the device matrices: dense, or each row padded by a few elements.
struct Strides {
  int64_t x = 0, u = 0, post = 0, comb = 0;  // extra elements after each row
};

struct Outputs {
  std::vector<float> u, post, comb;
};

// The twin on poisoned, canary-guarded outputs (post and comb only for hc_pre); checks the
// canaries, that the inputs are untouched and that a rerun gives the same bits.
Outputs run_twin(const PreInputs& in, const Strides& s) {
  const int64_t T = in.T, n = in.n, D = in.D;
  const Guarded gx{T, n * D, n * D + s.x}, gu{T, D, D + s.u}, gp{T, n, n + s.post},
      gc{T, n * n, n * n + s.comb};
  const std::vector<float> x_img = gx.image(in.x);
  cuda::DeviceBuffer<float> dx(x_img), dfn(in.fn), dbase(in.base), dscale(in.scale);
  cuda::DeviceBuffer<float> du(gu.poisoned()), dp(gp.poisoned()), dc(gc.poisoned());
  HcPreParams<float> p;
  HcHeadParams<float> h;
  if (in.head) {
    h.x = gx.view<const float>(dx.data());
    h.fn = dfn.data();
    h.base = dbase.data();
    h.scale = dscale.data();
    h.n = n;
    h.u = gu.view(du.data());
  } else {
    p.x = gx.view<const float>(dx.data());
    p.fn = dfn.data();
    p.base = dbase.data();
    p.scale = dscale.data();
    p.n = n;
    p.iters = kIters;
    p.u = gu.view(du.data());
    p.post = gp.view(dp.data());
    p.comb = gc.view(dc.data());
  }
  auto launch = [&] {
    if (in.head)
      cuda::hc_head(h);
    else
      cuda::hc_pre(p);
  };
  launch_and_sync(launch);
  const std::vector<float> u_img = du.download(), p_img = dp.download(), c_img = dc.download();
  EXPECT_TRUE(gu.canaries_intact(u_img));
  EXPECT_TRUE(test::bitwise_equal(dx.download(), x_img)) << "the op wrote into x";
  Outputs o{gu.extract(u_img), {}, {}};
  if (!in.head) {
    EXPECT_TRUE(gp.canaries_intact(p_img));
    EXPECT_TRUE(gc.canaries_intact(c_img));
    o.post = gp.extract(p_img);
    o.comb = gc.extract(c_img);
    // One rerun re-poisons u only: post and comb of the first run must be rewritten too.
    dp.upload(gp.poisoned());
    dc.upload(gc.poisoned());
  }
  EXPECT_TRUE(rerun_bitwise(du, gu.poisoned(), u_img, launch)) << "rerun differs (u)";
  if (!in.head) {
    EXPECT_TRUE(test::bitwise_equal(dp.download(), p_img)) << "rerun differs (post)";
    EXPECT_TRUE(test::bitwise_equal(dc.download(), c_img)) << "rerun differs (comb)";
  }
  return o;
}

Outputs run_ref(const PreInputs& in) {
  const int64_t T = in.T, n = in.n, D = in.D;
  Outputs o{test::nan_vec<float>(size_t(T * D)), test::nan_vec<float>(size_t(T * n)),
            test::nan_vec<float>(size_t(T * n * n))};
  if (in.head) {
    HcHeadParams<float> h;
    h.x = view2(in.x.data(), T, n * D);
    h.fn = in.fn.data();
    h.base = in.base.data();
    h.scale = in.scale.data();
    h.n = n;
    h.u = view2(o.u.data(), T, D);
    ref::hc_head(h);
  } else {
    HcPreParams<float> p;
    p.x = view2(in.x.data(), T, n * D);
    p.fn = in.fn.data();
    p.base = in.base.data();
    p.scale = in.scale.data();
    p.n = n;
    p.iters = kIters;
    p.u = view2(o.u.data(), T, D);
    p.post = view2(o.post.data(), T, n);
    p.comb = view2(o.comb.data(), T, n * n);
    ref::hc_pre(p);
  }
  return o;
}

Outputs check(int64_t T, int64_t n, int64_t D, bool head, const Strides& s, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << (head ? "hc_head" : "hc_pre") << " T " << T << " n " << n
                                    << " D " << D << " pad x " << s.x);
  const PreInputs in = test::mhc::pre_inputs(T, n, D, head, seed);
  const Outputs o = run_twin(in, s);
  const test::mhc::PreOut want = test::mhc::hc_pre(in, kIters, kHcEps, kNormEps);
  const Outputs r = run_ref(in);
  const test::mhc::PreTol tol = test::mhc::pre_tol(in, want, kIters, r.u, r.post, r.comb);
  using test::mhc::max_abs_err;
  EXPECT_TRUE(test::all_close(o.u, want.u, tol.u)) << "u against the oracle";
  EXPECT_TRUE(test::all_close(o.u, r.u, tol.u + max_abs_err(r.u, want.u)))
      << "u against the CPU twin";
  if (!head) {
    EXPECT_TRUE(test::all_close(o.post, want.post, tol.post)) << "post against the oracle";
    EXPECT_TRUE(test::all_close(o.post, r.post, tol.post + max_abs_err(r.post, want.post)))
        << "post against the CPU twin";
    EXPECT_TRUE(test::all_close(o.comb, want.comb, tol.comb)) << "comb against the oracle";
    EXPECT_TRUE(test::all_close(o.comb, r.comb, tol.comb + max_abs_err(r.comb, want.comb)))
        << "comb against the CPU twin";
  }
  return o;
}

// The real shapes: n = 4, D = 4096 (V4-Flash) and 7168 (V4-Pro), decode-sized T, padded rows.
TEST(HcPreCuda, FlashAndProShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(3, kHcMult, 4096, false, {8, 3, 2, 1}, 101);
  check(2, kHcMult, 7168, false, {0, 0, 0, 0}, 102);
}

TEST(HcHeadCuda, FlashAndProShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(3, kHcMult, 4096, true, {4, 1, 0, 0}, 111);
  check(2, kHcMult, 7168, true, {0, 0, 0, 0}, 112);
}

// Widths around the block (256 threads), a single column, fewer streams.
TEST(HcPreCuda, EdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t n : {1, 2, 3, 4})
    for (int64_t D : {1, 63, 257}) {
      check(2, n, D, false, {1, 2, 3, 4}, uint64_t(200 + 10 * n + D));
      check(1, n, D, true, {0, 0, 0, 0}, uint64_t(300 + 10 * n + D));
    }
}

// T >= kHcPreWideMinTokens takes the 4-token tiles (the last one partial here); every token's
// results must be bitwise those of the 1-token tiles (a small T), and match the oracle.
TEST(HcPreCuda, WideTilesAgreeBitwiseWithSingleTokenTiles) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t T = cuda::kHcPreWideMinTokens + 3, n = kHcMult, D = 40, few = 6;
  for (bool head : {false, true}) {
    SCOPED_TRACE(head ? "hc_head" : "hc_pre");
    const Outputs wide = check(T, n, D, head, {0, 0, 0, 0}, 401);
    PreInputs in = test::mhc::pre_inputs(T, n, D, head, 401);
    in.T = few;
    in.x.resize(size_t(few * n * D));
    const Outputs narrow = run_twin(in, {});
    EXPECT_TRUE(test::bitwise_equal(narrow.u,
                                    std::vector<float>(wide.u.begin(), wide.u.begin() + few * D)));
    if (!head) {
      EXPECT_TRUE(test::bitwise_equal(
          narrow.post, std::vector<float>(wide.post.begin(), wide.post.begin() + few * n)));
      EXPECT_TRUE(test::bitwise_equal(
          narrow.comb, std::vector<float>(wide.comb.begin(), wide.comb.begin() + few * n * n)));
    }
  }
}

// Host-side validation, before any device work: runs without a device.
TEST(HcPreCuda, RejectsBadShapesBeforeLaunch) {
  float d = 0;
  auto good = [&] {
    HcPreParams<float> p;
    p.x = view2<const float>(&d, 2, 4 * 8);
    p.fn = p.base = p.scale = &d;
    p.n = 4;
    p.u = view2(&d, 2, 8);
    p.post = view2(&d, 2, 4);
    p.comb = view2(&d, 2, 16);
    return p;
  };
  HcPreParams<float> p = good();
  p.x.cols = 30;  // not a multiple of n
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();
  p.u.cols = 7;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();
  p.post.rows = 1;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();
  p.comb.cols = 4;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();
  p.iters = 0;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();
  p.fn = nullptr;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
  p = good();  // n = 5 > the GPU limit of 4, shapes consistent
  p.n = 5;
  p.x.cols = 5 * 8;
  p.post.cols = 5;
  p.comb.cols = 25;
  EXPECT_THROW(cuda::hc_pre(p), InputError);
}

TEST(HcHeadCuda, RejectsBadShapesBeforeLaunch) {
  float d = 0;
  HcHeadParams<float> h;
  h.x = view2<const float>(&d, 2, 4 * 8);
  h.fn = h.base = h.scale = &d;
  h.n = 4;
  h.u = view2(&d, 2, 9);
  EXPECT_THROW(cuda::hc_head(h), InputError);
  h.u = view2(&d, 2, 8);
  h.n = 0;
  EXPECT_THROW(cuda::hc_head(h), InputError);
  h.n = 4;
  h.scale = nullptr;
  EXPECT_THROW(cuda::hc_head(h), InputError);
}

}  // namespace
}  // namespace dsv4
