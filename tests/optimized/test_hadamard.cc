// dsv4::cuda::hadamard against a double-precision oracle written from the spec
// (docs/v4-architecture.md §2.3, §2.4: y = x H_d / sqrt(d), H_d the Sylvester matrix, whose
// entry (c, j) is (-1)^popcount(c & j)) and against its CPU twin ref::hadamard<float>.
// Label gpu: every test that needs a device skips, with the reason, when there is none.
// Harness (skip, canaries, poisoned buffers, rerun check): tests/support/device_harness.h;
// oracle: naive::hadamard of tests/support/naive.h.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/hadamard.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
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

// Spec oracle in double: y[r, j] = sum_c x[r, c] (-1)^popcount(c & j) / sqrt(d). O(d^2) per
// row and independent of the butterfly factorisation the ops use.
std::vector<double> oracle(const std::vector<float>& x, int64_t rows, int64_t d) {
  std::vector<double> y(x.begin(), x.end());
  for (int64_t r = 0; r < rows; ++r) test::naive::hadamard(&y[size_t(r * d)], d);
  return y;
}

// Tolerance, absolute. Each output is a signed sum of d terms x[c]/sqrt(d) formed in
// log2(d) <= sqrt(d) (times a small constant that kSafety covers) FP32 butterfly stages, so
// it errs by at most ~sqrt(d) * u * sum_c |x[c]| / sqrt(d): tolerance.h's reduction_tol with
// magnitude = the largest row's sum of |terms|.
double hadamard_atol(const std::vector<float>& x, int64_t rows, int64_t d) {
  const std::vector<double> xd(x.begin(), x.end());
  double magnitude = 0;
  for (int64_t r = 0; r < rows; ++r)
    magnitude = std::max(magnitude, test::naive::hadamard_magnitude(&xd[size_t(r * d)], d));
  return test::reduction_tol<float>(double(d), magnitude);
}
// Two FP32 implementations each within atol of the exact value are within 2*atol of each other.
constexpr double kTwoImpls = 2.0;

struct Case {
  int64_t rows, d, ld_x, ld_y;
  uint64_t seed;
};

// Out of place: poisoned y with canaries, compare with the oracle and the CPU twin, check x is
// untouched, apply the op again to y (it is its own inverse) and get x back, rerun on a
// re-poisoned y and require the same bits.
void check_out_of_place(const Case& k) {
  SCOPED_TRACE(::testing::Message() << "rows " << k.rows << " d " << k.d << " ld_x " << k.ld_x
                                    << " ld_y " << k.ld_y);
  const std::vector<float> x = test::uniform<float>(size_t(k.rows * k.d), k.seed);
  const Guarded gx{k.rows, k.d, k.ld_x}, gy{k.rows, k.d, k.ld_y};

  const std::vector<float> x_img = gx.image(x);
  cuda::DeviceBuffer<float> dx(x_img), dy(gy.poisoned());
  HadamardParams<float> p;
  p.x = gx.view<const float>(dx.data());
  p.y = gy.view(dy.data());
  launch_and_sync([&] { cuda::hadamard(p); });

  const std::vector<float> y_img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(test::bitwise_equal(dx.download(), x_img)) << "the op wrote into x";
  const std::vector<float> y = gy.extract(y_img);

  const double atol = hadamard_atol(x, k.rows, k.d);
  EXPECT_TRUE(test::all_close(y, oracle(x, k.rows, k.d), atol));

  std::vector<float> y_ref(x.size(), kNaN);
  HadamardParams<float> pr;
  pr.x = view2(x.data(), k.rows, k.d);
  pr.y = view2(y_ref.data(), k.rows, k.d);
  ref::hadamard(pr);
  EXPECT_TRUE(test::all_close(y, y_ref, kTwoImpls * atol)) << "against ref::hadamard<float>";

  // Invariant (the op with itself): H/sqrt(d) is an involution, so H(y) -> x. Tolerance: the
  // second transform's own rounding (hadamard_atol of its input y) plus y's error carried
  // through an orthonormal map, which keeps its 2-norm, so per element ~ atol (typical case).
  cuda::DeviceBuffer<float> dz(gx.poisoned());
  HadamardParams<float> pz;
  pz.x = gy.view<const float>(dy.data());
  pz.y = gx.view(dz.data());
  launch_and_sync([&] { cuda::hadamard(pz); });
  const std::vector<float> z_img = dz.download();
  EXPECT_TRUE(gx.canaries_intact(z_img));
  EXPECT_TRUE(test::all_close(gx.extract(z_img), x, atol + hadamard_atol(y, k.rows, k.d)))
      << "applying the transform twice";

  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, [&] { cuda::hadamard(p); }))
      << "rerun differs";
}

// The indexer's rotation (§2.4): q_I [T, H_I, d_I] viewed as [T*64, 128], strided rows.
TEST(HadamardCuda, IndexerShapeStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kT = 4;
  check_out_of_place({kT * kIndexerHeads, kIndexerDim, kIndexerDim + 8, kIndexerDim + 24, 11});
}

// Every power of two the kernel takes, from 1 to its limit, through 512 (the head dim).
TEST(HadamardCuda, PowersOfTwo) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t d = 1; d <= cuda::kHadamardMaxDim; d *= 2) {
    const int64_t rows = d >= 4096 ? 2 : 5;
    check_out_of_place({rows, d, d + 1, d + 3, uint64_t(20 + d)});
  }
}

// y aliases x (in place), indexer shape, strided rows; canaries around, rerun bitwise.
TEST(HadamardCuda, InPlaceStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t rows = 64, d = kIndexerDim, ld = kIndexerDim + 8;
  const std::vector<float> x = test::uniform<float>(size_t(rows * d), 31);
  const Guarded g{rows, d, ld};
  cuda::DeviceBuffer<float> dxy(g.image(x));
  HadamardParams<float> p;
  p.x = g.view<const float>(dxy.data());
  p.y = g.view(dxy.data());
  launch_and_sync([&] { cuda::hadamard(p); });

  const std::vector<float> img = dxy.download();
  EXPECT_TRUE(g.canaries_intact(img));
  EXPECT_TRUE(test::all_close(g.extract(img), oracle(x, rows, d), hadamard_atol(x, rows, d)));

  EXPECT_TRUE(rerun_bitwise(dxy, g.image(x), img, [&] { cuda::hadamard(p); })) << "rerun differs";
}

// Host-side validation, before any device work: needs no device, so it runs everywhere.
TEST(HadamardCuda, RejectsBadDimsBeforeLaunch) {
  float dummy = 0;
  HadamardParams<float> p;
  p.x = view2<const float>(&dummy, 2, 96);  // not a power of two
  p.y = view2(&dummy, 2, 96);
  EXPECT_THROW(cuda::hadamard(p), InputError);
  p.x = view2<const float>(&dummy, 2, 0);
  p.y = view2(&dummy, 2, 0);
  EXPECT_THROW(cuda::hadamard(p), InputError);
  p.x = view2<const float>(&dummy, 2, 2 * cuda::kHadamardMaxDim);  // over the GPU's limit
  p.y = view2(&dummy, 2, 2 * cuda::kHadamardMaxDim);
  EXPECT_THROW(cuda::hadamard(p), InputError);
  p.x = view2<const float>(&dummy, 2, 128);
  p.y = view2(&dummy, 3, 128);  // shape mismatch
  EXPECT_THROW(cuda::hadamard(p), InputError);
}

}  // namespace
}  // namespace dsv4
