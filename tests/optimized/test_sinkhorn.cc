// dsv4::cuda::sinkhorn against the double-precision oracle of tests/optimized/mhc_oracle.h
// (written from docs/v4-architecture.md §3.1 step 5: the iteration sequence) and against its
// CPU twin ref::sinkhorn<float>. Label gpu: every test that needs a device skips, with the
// reason, when there is none; the host-side validation runs everywhere.
//
// Tolerances: the twin forms every sum and division in the reference's order, so it differs
// from ref::sinkhorn<float> only through expf (CUDA, <= 2 ulp) against std::exp. Against the
// oracle it may err at most kTwoImpls times the reference's measured error plus a floor of two
// normalisations' rounding, reduction_tol<float>(2 (n+1), 1) (entries <= 1: absolute), which
// covers the expf difference entering at the softmax (a relative perturbation that the
// normalisations carry, not amplify); against the reference, that plus the reference's error.
// (mhc::sinkhorn_tol, the bound of the whole 2*iters-step sequence, is ~40x the measured errors.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/sinkhorn.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/sinkhorn.h"
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
constexpr double kEps = kHcEps;

double floor_tol(int64_t n) {
  return test::reduction_tol<float>(2.0 * double(n + 1), 1.0);
}

std::vector<float> run_ref(const std::vector<float>& L, int64_t items, int64_t n, int64_t iters,
                           double eps = kEps) {
  std::vector<float> m = test::nan_vec<float>(L.size());
  ref::sinkhorn<float>({L.data(), m.data(), items, n, iters, eps});
  return m;
}

// Runs the twin out of place on a poisoned, canary-guarded m; checks canaries, that logits are
// untouched, and that a rerun gives the same bits. Returns m.
std::vector<float> run_twin(const std::vector<float>& L, int64_t items, int64_t n, int64_t iters,
                            double eps = kEps) {
  const Guarded gl{1, int64_t(L.size()), int64_t(L.size())}, gm{items, n * n, n * n};
  const std::vector<float> l_img = gl.image(L);
  cuda::DeviceBuffer<float> dl(l_img), dm(gm.poisoned());
  const SinkhornParams<float> p{
      gl.view<const float>(dl.data()).data, gm.view(dm.data()).data, items, n, iters, eps};
  launch_and_sync([&] { cuda::sinkhorn(p); });
  const std::vector<float> m_img = dm.download();
  EXPECT_TRUE(gm.canaries_intact(m_img));
  EXPECT_TRUE(test::bitwise_equal(dl.download(), l_img)) << "the op wrote into logits";
  EXPECT_TRUE(rerun_bitwise(dm, gm.poisoned(), m_img, [&] { cuda::sinkhorn(p); }))
      << "rerun differs";
  return gm.extract(m_img);
}

void check(int64_t items, int64_t n, int64_t iters, double sigma, uint64_t seed,
           double eps = kEps) {
  SCOPED_TRACE(::testing::Message() << "items " << items << " n " << n << " iters " << iters
                                    << " sigma " << sigma << " eps " << eps);
  const std::vector<float> L = test::normal<float>(size_t(items * n * n), seed, sigma);
  const std::vector<float> m = run_twin(L, items, n, iters, eps);
  const std::vector<double> want = test::mhc::sinkhorn(test::to_double(L), items, n, iters, eps);
  const std::vector<float> r = run_ref(L, items, n, iters, eps);
  const double ref_err = test::mhc::max_abs_err(r, want);
  const double tol = kTwoImpls * ref_err + floor_tol(n);
  EXPECT_TRUE(test::all_close(m, want, tol))
      << "against the oracle (reference error " << ref_err << ")";
  EXPECT_TRUE(test::all_close(m, r, tol + ref_err)) << "against ref::sinkhorn<float>";
}

// The mHC shape: n = 4, 20 rounds, one item per token of a 4096-token prefill chunk.
TEST(SinkhornCuda, RealShape) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(4096, kHcMult, kSinkhornIters, 1.0, 11);
}

// Every n the kernel takes (n*n <= 32 lanes), iteration counts 1, 2, 20, and item counts that
// leave the last block (8 items) partly empty.
TEST(SinkhornCuda, EveryNAndIterationCount) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t n = 1; n <= cuda::kSinkhornMaxN; ++n)
    for (int64_t iters : {1, 2, 20})
      check(n == 3 ? 9 : 37, n, iters, 1.0, uint64_t(100 + 10 * n + iters));
  check(1, kHcMult, kSinkhornIters, 1.0, 7);
}

// Peaked logits (scale 50): 20 rounds do not converge and the op must still follow the
// sequence; entries span 1e-8 .. 1.
TEST(SinkhornCuda, PeakedLogitsFollowTheSequence) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(64, kHcMult, kSinkhornIters, 50.0, 21);
}

// A large eps (the op's key) makes every "+ eps" of the sequence visible at float precision.
TEST(SinkhornCuda, LargeEpsEveryStepCounts) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(16, kHcMult, kSinkhornIters, 1.0, 51, 0.05);
  check(16, 3, 2, 1.0, 52, 0.05);
}

// m == logits: the same bits as out of place.
TEST(SinkhornCuda, InPlace) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t items = 13, n = kHcMult;
  const std::vector<float> L = test::normal<float>(size_t(items * n * n), 31);
  const std::vector<float> want = run_twin(L, items, n, kSinkhornIters);
  cuda::DeviceBuffer<float> d(L);
  launch_and_sync([&] { cuda::sinkhorn({d.data(), d.data(), items, n, kSinkhornIters, kEps}); });
  EXPECT_TRUE(test::bitwise_equal(d.download(), want));
}

// Special values, compared first and exactly with the CPU twin: a NaN logit makes its row NaN
// and the column normalisations spread it over the item; a -inf logit is an exact 0 before the
// + eps; an all -inf row is NaN (exp(-inf - -inf)). Other items are unaffected.
TEST(SinkhornCuda, SpecialValuesAsTheReference) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t items = 4, n = kHcMult;
  std::vector<float> L = test::normal<float>(size_t(items * n * n), 41);
  const float inf = std::numeric_limits<float>::infinity();
  L[0 * 16 + 5] = std::numeric_limits<float>::quiet_NaN();
  L[1 * 16 + 2] = -inf;
  L[1 * 16 + 9] = -inf;
  for (int64_t k = 0; k < n; ++k) L[size_t(2 * 16 + 4 + k)] = -inf;
  const std::vector<float> m = run_twin(L, items, n, kSinkhornIters);
  const std::vector<float> r = run_ref(L, items, n, kSinkhornIters);
  size_t nans = 0;
  for (size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(std::isnan(m[i]), std::isnan(r[i])) << "NaN position " << i;
    nans += std::isnan(r[i]);
  }
  EXPECT_EQ(nans, size_t(2 * n * n)) << "items 0 and 2 all NaN in the reference";
  std::vector<float> mf, rf;
  for (size_t i = 0; i < m.size(); ++i)
    if (!std::isnan(r[i]) && !std::isnan(m[i])) {
      mf.push_back(m[i]);
      rf.push_back(r[i]);
    }
  EXPECT_TRUE(test::all_close(mf, rf, floor_tol(n)));
}

// Host-side validation, before any device work: runs without a device.
TEST(SinkhornCuda, RejectsBadParametersBeforeLaunch) {
  float dummy = 0;
  EXPECT_THROW(cuda::sinkhorn({&dummy, &dummy, 1, 0, 20, kEps}), InputError);
  EXPECT_THROW(cuda::sinkhorn({&dummy, &dummy, 1, 4, 0, kEps}), InputError);
  EXPECT_THROW(cuda::sinkhorn({&dummy, &dummy, 1, cuda::kSinkhornMaxN + 1, 20, kEps}), InputError);
  EXPECT_THROW(cuda::sinkhorn({&dummy, &dummy, -1, 4, 20, kEps}), InputError);
  EXPECT_NO_THROW(cuda::sinkhorn({nullptr, nullptr, 0, 4, 20, kEps}));  // no items: no launch
}

}  // namespace
}  // namespace dsv4
