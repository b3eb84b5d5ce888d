// Harness of the device (gpu-labelled) tests, tests/optimized/*: the skip when no device is
// present, NaN-poisoned output matrices surrounded by canaries in device memory, upload and
// download through cuda::DeviceBuffer, and the bitwise rerun check. Host-only C++ (the tests
// are built by the host compiler and link dsv4_optimized).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "optimized/device.cuh"
#include "reference/view.h"
#include "tests/support/compare.h"

// First statement of a test that needs a device: skips, with the reason, when there is none.
#define DSV4_SKIP_WITHOUT_DEVICE()         \
  if (::dsv4::cuda::device_count() == 0)   \
  GTEST_SKIP() << "no CUDA device: " << ::dsv4::cuda::device_summary()

namespace dsv4::test {

inline constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();
// Canary value around and between output rows: finite (unlike the NaN poison) and far from
// any value the ops produce, compared bitwise.
inline constexpr float kSentinel = -7.25e30f;
inline constexpr int64_t kGuard = 64;  // canary elements before and after each device matrix

// A [rows, cols] matrix with row stride ld placed kGuard elements into a device allocation
// whose every other element (the guards, and the ld - cols gap after each row) is kSentinel.
struct Guarded {
  int64_t rows, cols, ld;

  size_t size() const { return size_t(2 * kGuard + (rows > 0 ? (rows - 1) * ld + cols : 0)); }
  size_t at(int64_t r, int64_t c) const { return size_t(kGuard + r * ld + c); }
  // The allocation's contents with `dense` ([rows, cols], row-major) at the element slots.
  std::vector<float> image(const std::vector<float>& dense) const {
    std::vector<float> img(size(), kSentinel);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) img[at(r, c)] = dense[size_t(r * cols + c)];
    return img;
  }
  // Every element slot NaN (an unwritten output fails), every other slot a canary.
  std::vector<float> poisoned() const {
    return image(std::vector<float>(size_t(rows * cols), kPoison));
  }
  std::vector<float> extract(const std::vector<float>& img) const {
    std::vector<float> dense(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) dense[size_t(r * cols + c)] = img[at(r, c)];
    return dense;
  }
  ::testing::AssertionResult canaries_intact(const std::vector<float>& img) const {
    std::vector<bool> slot(img.size(), false);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) slot[at(r, c)] = true;
    for (size_t i = 0; i < img.size(); ++i) {
      if (!slot[i] && std::memcmp(&img[i], &kSentinel, sizeof(float)) != 0)
        return ::testing::AssertionFailure() << "canary overwritten at allocation element " << i
                                             << " (first element slot at " << kGuard
                                             << "): found " << img[i];
    }
    return ::testing::AssertionSuccess();
  }
  // The matrix as a view into a device allocation holding image().
  template <class T>
  View2<T> view(T* base) const {
    return {base + kGuard, rows, cols, ld};
  }
};

// Runs the launch and waits for the device (errors surface here).
template <class Launch>
void launch_and_sync(Launch&& launch) {
  launch();
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
}

// Determinism: uploads `init` into buf, launches again and requires buf to hold exactly the
// bits of `want` (the first run's result).
template <class Launch>
::testing::AssertionResult rerun_bitwise(cuda::DeviceBuffer<float>& buf,
                                         const std::vector<float>& init,
                                         const std::vector<float>& want, Launch&& launch) {
  buf.upload(init);
  launch_and_sync(launch);
  return bitwise_equal(buf.download(), want);
}

}  // namespace dsv4::test
