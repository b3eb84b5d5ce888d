// dsv4::cuda::rmsnorm against a double-precision oracle written from the spec
// (docs/v4-architecture.md §2.1, §3.1: y = x / sqrt(mean(x^2) + eps) * w) and against its
// CPU twin ref::rmsnorm<float>; plus the device helpers of optimized/device.cuh.
// Label gpu: every test that needs a device skips, with the reason, when there is none.
// Harness (skip, canaries, poisoned buffers, rerun check): tests/support/device_harness.h;
// oracle: naive::rmsnorm of tests/support/naive.h.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/rmsnorm.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/rmsnorm.h"
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

// Spec oracle in double, from the float inputs: y = x / sqrt(mean_c x^2 + eps) * (w or 1).
std::vector<double> oracle(const std::vector<float>& x, const std::vector<float>* w, int64_t rows,
                           int64_t d, double eps) {
  std::vector<double> y(x.begin(), x.end());
  const std::vector<double> wd = w ? std::vector<double>(w->begin(), w->end()) : std::vector<double>();
  for (int64_t r = 0; r < rows; ++r)
    test::naive::rmsnorm(&y[size_t(r * d)], d, w ? wd.data() : nullptr, eps);
  return y;
}

// Tolerance, relative per element. The FP32 sum of d squares errs by ~sqrt(d)*u relative
// (typical-case bound of tolerance.h); 1/sqrt halves it and the add, divide, sqrt and two
// multiplies add a few u, which kSafety covers. Errors are multiplicative in every step, so
// the bound is relative to |y|.
double rms_rtol(int64_t d) { return test::reduction_tol<float>(double(d), 1.0); }
// Two FP32 implementations each within rtol of the exact value are within 2*rtol of each other.
constexpr double kTwoImpls = 2.0;

// Row r of x ~ N(0, 1) * 2^(r % 7 - 3): magnitudes from 1/8 to 8 across rows.
std::vector<float> make_x(int64_t rows, int64_t d, uint64_t seed) {
  std::vector<float> x = test::normal<float>(size_t(rows * d), seed);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) x[size_t(r * d + c)] *= std::ldexp(1.0f, int(r % 7) - 3);
  return x;
}

struct Case {
  int64_t rows, d, ld_x, ld_y;
  bool weighted;
  uint64_t seed;
};

// Out of place: poisoned y with canaries, compare with the oracle and the CPU twin, check x is
// untouched, rerun on a re-poisoned y and require the same bits.
void check_out_of_place(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "rows " << k.rows << " d " << k.d << " ld_x " << k.ld_x
                                    << " ld_y " << k.ld_y << (k.weighted ? " weighted" : " unweighted"));
  const std::vector<float> x = make_x(k.rows, k.d, k.seed);
  const std::vector<float> w = test::uniform<float>(size_t(k.d), k.seed + 1, 0.5, 1.5);
  const Guarded gx{k.rows, k.d, k.ld_x}, gy{k.rows, k.d, k.ld_y};

  const std::vector<float> x_img = gx.image(x);
  cuda::DeviceBuffer<float> dx(x_img), dy(gy.poisoned()), dw(w);
  RmsNormParams<float> p;
  p.x = gx.view<const float>(dx.data());
  p.w = k.weighted ? dw.data() : nullptr;
  p.y = gy.view(dy.data());
  launch_and_sync([&] { cuda::rmsnorm(p); });

  const std::vector<float> y_img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(test::bitwise_equal(dx.download(), x_img)) << "the op wrote into x";
  const std::vector<float> y = gy.extract(y_img);

  const double rtol = rms_rtol(k.d);
  EXPECT_TRUE(test::all_close(y, oracle(x, k.weighted ? &w : nullptr, k.rows, k.d, kNormEps), 0.0, rtol));

  std::vector<float> y_ref(x.size(), kNaN);
  RmsNormParams<float> pr;
  pr.x = view2(x.data(), k.rows, k.d);
  pr.w = k.weighted ? w.data() : nullptr;
  pr.y = view2(y_ref.data(), k.rows, k.d);
  ref::rmsnorm(pr);
  EXPECT_TRUE(test::all_close(y, y_ref, 0.0, kTwoImpls * rtol)) << "against ref::rmsnorm<float>";

  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, [&] { cuda::rmsnorm(p); }))
      << "rerun differs";
}

// The model-width norms (attn_norm, ffn_norm, §3.1): rows of 4096, weighted, both row strides
// wider than the row.
TEST(RmsNormCuda, WeightedModelWidthStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_out_of_place({16, 4096, 4096 + 32, 4096 + 48, true, 101});
}

// The per-head unweighted RMS of §2.1 step 3: q [T, 64, 512] viewed as [T*64, 512], dense.
TEST(RmsNormCuda, UnweightedPerHead) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kT = 4, kHeads = 64;
  check_out_of_place({kT * kHeads, kHeadDim, kHeadDim, kHeadDim, false, 202});
}

// Widths around the block size (256 threads) and a single column / single row.
TEST(RmsNormCuda, EdgeWidths) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t d : {1, 31, 255, 256, 257, 4097}) {
    check_out_of_place({3, d, d + 3, d + 5, true, uint64_t(300 + d)});
    check_out_of_place({1, d, d, d, false, uint64_t(400 + d)});
  }
}

// y aliases x (in place), weighted, strided rows of 4096; canaries around, rerun bitwise.
TEST(RmsNormCuda, InPlaceStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t rows = 8, d = 4096, ld = 4096 + 16;
  const std::vector<float> x = make_x(rows, d, 505);
  const std::vector<float> w = test::uniform<float>(size_t(d), 506, 0.5, 1.5);
  const Guarded g{rows, d, ld};
  cuda::DeviceBuffer<float> dxy(g.image(x)), dw(w);
  RmsNormParams<float> p;
  p.x = g.view<const float>(dxy.data());
  p.w = dw.data();
  p.y = g.view(dxy.data());
  launch_and_sync([&] {
    const cuda::NvtxRange range("rmsnorm in place");
    cuda::rmsnorm(p);
  });

  const std::vector<float> img = dxy.download();
  EXPECT_TRUE(g.canaries_intact(img));
  EXPECT_TRUE(test::all_close(g.extract(img), oracle(x, &w, rows, d, kNormEps), 0.0, rms_rtol(d)));

  EXPECT_TRUE(rerun_bitwise(dxy, g.image(x), img, [&] { cuda::rmsnorm(p); })) << "rerun differs";
}

// Host-side validation, before any device work: needs no device, so it runs everywhere.
TEST(RmsNormCuda, RejectsShapeMismatchBeforeLaunch) {
  float dummy = 0;
  RmsNormParams<float> p;
  p.x = view2<const float>(&dummy, 4, 8);
  p.y = view2(&dummy, 4, 7);
  EXPECT_THROW(cuda::rmsnorm(p), InputError);
  p.y = view2(&dummy, 3, 8);
  EXPECT_THROW(cuda::rmsnorm(p), InputError);
}

// device_count() never throws, and device_summary() agrees with it: a reason when there is no
// device, the SM version of each one when there is. The summary is recorded in the XML.
TEST(CudaDevice, SummaryAgreesWithCount) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda::device_count());
  const std::string s = cuda::device_summary();
  std::cout << "device_summary: " << s << "\n";
  RecordProperty("device_summary", s);
  if (n == 0) {
    EXPECT_NE(s.find("no CUDA device available"), std::string::npos) << s;
  } else {
    EXPECT_GT(n, 0);
    EXPECT_NE(s.find("sm_"), std::string::npos) << s;
    EXPECT_NE(s.find("device " + std::to_string(n - 1) + ":"), std::string::npos) << s;
  }
}

// DeviceBuffer: round trip, partial copies, range checks, move leaves the source empty.
TEST(CudaDeviceBuffer, RoundTripMoveAndRangeChecks) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const std::vector<float> h = test::uniform<float>(1000, 7);
  cuda::DeviceBuffer<float> a(h);
  EXPECT_EQ(a.size(), h.size());
  EXPECT_TRUE(test::bitwise_equal(a.download(), h));

  const std::vector<float> part = test::uniform<float>(10, 8);
  a.upload(part.data(), part.size(), 990);
  std::vector<float> back(10, kNaN);
  a.download(back.data(), back.size(), 990);
  EXPECT_TRUE(test::bitwise_equal(back, part));
  EXPECT_THROW(a.upload(part.data(), part.size(), 991), InputError);
  EXPECT_THROW(a.upload(std::vector<float>(999)), InputError);

  cuda::DeviceBuffer<float> b(std::move(a));
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.data(), nullptr);
  ASSERT_EQ(b.size(), h.size());
  std::vector<float> expect = h;
  std::copy(part.begin(), part.end(), expect.begin() + 990);
  EXPECT_TRUE(test::bitwise_equal(b.download(), expect));

  cuda::DeviceBuffer<float> c;
  c = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(c.size(), h.size());
}

}  // namespace
}  // namespace dsv4
