#include "bench/cuda_device.h"

#include <mutex>

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"

namespace dsv4::bench {

namespace {

std::string ask_runtime() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // leave no sticky error for later checks
    return std::string("no CUDA device: cudaGetDeviceCount failed: ") + cudaGetErrorName(err) +
           ": " + cudaGetErrorString(err);
  }
  if (n == 0) return "no CUDA device: cudaGetDeviceCount found 0 devices";
  return "";
}

}  // namespace

std::string cuda_unavailable() {
  static std::once_flag once;
  static std::string reason;
  std::call_once(once, [] { reason = ask_runtime(); });
  return reason;
}

DeviceTimer::DeviceTimer() {
  try {
    cuda::keep_pool_memory();  // the ops' stream-ordered scratch is reused across steps
    DSV4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DSV4_CUDA_CHECK(cudaEventCreate(&start_));
    DSV4_CUDA_CHECK(cudaEventCreate(&stop_));
  } catch (...) {
    release();  // the destructor does not run after a throwing constructor
    throw;
  }
}

DeviceTimer::~DeviceTimer() {
  release();
}

void DeviceTimer::release() noexcept {
  // Must not throw (destructor): a failed destroy only leaks.
  if (stop_) (void)cudaEventDestroy(stop_);
  if (start_) (void)cudaEventDestroy(start_);
  if (stream_) (void)cudaStreamDestroy(stream_);
  stop_ = start_ = nullptr;
  stream_ = nullptr;
}

double DeviceTimer::seconds(const std::function<void(cudaStream_t)>& work) {
  DSV4_CUDA_CHECK(cudaEventRecord(start_, stream_));
  work(stream_);
  DSV4_CUDA_CHECK(cudaEventRecord(stop_, stream_));
  DSV4_CUDA_CHECK(cudaEventSynchronize(stop_));
  float ms = 0;
  DSV4_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
  return double(ms) * 1e-3;
}

}  // namespace dsv4::bench
