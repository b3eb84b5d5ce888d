// The CUDA cases of dsv4 bench on a device (bench/cases_cuda.cc, bench/ceilings_cuda.h,
// bench/cuda_device.h): every one sets up and times a few steps with CUDA events. Label gpu:
// skips, with the reason, without a device. What the list holds and how it is derived is
// tests/bench/test_cuda_cases.cc's (label cpu); the kernels' results are their own tests'
// (tests/optimized/test_<op>.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/cuda_device.h"
#include "tests/support/device_harness.h"

namespace dsv4::bench {
namespace {

constexpr int kSteps = 3;  // after the set-up's own warm-up steps

TEST(BenchCudaDevice, EveryCudaCaseSetsUpAndTimesOnTheDevice) {
  DSV4_SKIP_WITHOUT_DEVICE();
  EXPECT_EQ(cuda_unavailable(), "")
      << "dsv4 bench would skip the CUDA cases although a device is present";
  int64_t timed = 0;
  for (const auto& c : case_list()) {
    if (c.backend != Backend::cuda) continue;
    SCOPED_TRACE(c.name());
    ASSERT_TRUE(c.timed_setup);
    TimedStep step = c.timed_setup();
    for (int i = 0; i < kSteps; ++i) {
      const double s = step();
      EXPECT_TRUE(std::isfinite(s) && s > 0) << s;
    }
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    ++timed;
  }
  EXPECT_GE(timed, 79) << "77 twins (7 elementwise, 48 attention, 16 indexer, 6 compressor) and 2 ceilings";
}

// The Engram prefetch overlap cases (bench/cases_engram_cuda.cc) measure what they claim: for
// each mode, with medians of kOverlapSteps steps, both parts together take at least the longer
// part (less 10 % for noise) and at most the two in series (plus 10 %); and the staged mode,
// whose CPU gather runs on the host while the GEMM runs on the device, hides at least a quarter
// of the shorter part (overlap = (copy + compute - both) / min > 0.25; a prefetch stream that
// waited for the GEMM would give ~0).
TEST(BenchCudaDevice, EngramPrefetchOverlapIsBetweenSerialAndFull) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int kOverlapSteps = 7;
  constexpr double kNoise = 0.10, kMinStagedOverlap = 0.25;
  auto median_of = [](const std::string& name) {
    for (const auto& c : case_list())
      if (c.name() == name) {
        TimedStep step = c.timed_setup();
        std::vector<double> t;
        for (int i = 0; i < kOverlapSteps; ++i) t.push_back(step());
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
      }
    ADD_FAILURE() << "no case " << name;
    return 0.0;
  };
  for (const std::string mode : {"staged", "mapped"}) {
    SCOPED_TRACE(mode);
    const std::string at = "engram_prefetch_cuda/v4-flash/" + mode + ",tokens:4096,part:";
    const double copy = median_of(at + "copy"), comp = median_of(at + "compute"), both = median_of(at + "both");
    ASSERT_GT(copy, 0);
    ASSERT_GT(comp, 0);
    EXPECT_GE(both, (1 - kNoise) * std::max(copy, comp)) << copy << " " << comp << " " << both;
    EXPECT_LE(both, (1 + kNoise) * (copy + comp)) << copy << " " << comp << " " << both;
    const double overlap = (copy + comp - both) / std::min(copy, comp);
    if (mode == "staged") {
      EXPECT_GT(overlap, kMinStagedOverlap) << copy << " " << comp << " " << both;
    }
  }
}

// Device time of work that takes longer takes longer: a DeviceTimer around two copies of a
// buffer against one copy (the copies serialise on one stream). Ratio bounds: 2 x nominally;
// [1.5, 2.5] leaves room for launch gaps and clock changes without accepting a timer that
// ignores the work (ratio ~1) or counts it twice.
TEST(BenchCudaDevice, DeviceTimerMeasuresTheWorkBetweenItsEvents) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr size_t kBytes = size_t(256) << 20;
  cuda::DeviceBuffer<char> a(kBytes), b(kBytes);
  DSV4_CUDA_CHECK(cudaMemset(a.data(), 1, kBytes));
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  DeviceTimer timer;
  auto copies = [&](int n) {
    return timer.seconds([&](cudaStream_t s) {
      for (int i = 0; i < n; ++i)
        DSV4_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), kBytes, cudaMemcpyDeviceToDevice, s));
    });
  };
  (void)copies(2);  // warm-up
  double one = 1e30, two = 1e30;
  for (int r = 0; r < 5; ++r) {  // best of 5 each
    one = std::min(one, copies(1));
    two = std::min(two, copies(2));
  }
  EXPECT_GT(two / one, 1.5) << one << " s vs " << two << " s";
  EXPECT_LT(two / one, 2.5) << one << " s vs " << two << " s";
}

}  // namespace
}  // namespace dsv4::bench
