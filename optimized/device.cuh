// Device discovery, an owning device buffer and an NVTX range for dsv4::cuda.
//
//   device_count()    number of usable CUDA devices; 0 when there is no driver or no device
//                     (never throws: CUDA code is built on machines without a GPU, and the
//                     gpu-labelled tests skip on 0).
//   device_summary()  one line per device (name, SM version, multiprocessors, memory, L2,
//                     driver and runtime versions), or the reason no device is available.
//   DeviceBuffer<T>   move-only owner of n elements of device memory (cudaMalloc/cudaFree)
//                     with synchronous upload/download to and from host vectors.
//   NvtxRange         RAII NVTX range (push in the constructor, pop in the destructor), for
//                     Nsight Systems / Nsight Compute timelines; free when no tool is attached.
//
// Plain C++ header: host-only translation units (the tests) may include it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "optimized/cuda_check.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

int device_count();
std::string device_summary();

// Makes the current device's default memory pool keep the memory freed into it (release
// threshold = no limit), so the stream-ordered scratch of the ops (split-K partials, indexer
// score blocks, the model backend's temporaries: cudaMallocAsync / cudaFreeAsync) is reused
// rather than mapped again after every synchronisation (the default threshold, 0, returns it
// at each one). Idempotent; for processes that run the ops repeatedly (the model backend, the
// benchmarks).
void keep_pool_memory();

// Device memory for n elements of T. Copies are synchronous (cudaMemcpy): they wait for the
// host data and are ordered after earlier work on the legacy default stream; work queued on
// other streams must be synchronised by the caller before a download.
template <class T>
class DeviceBuffer {
  static_assert(std::is_trivially_copyable_v<T>,
                "DeviceBuffer copies bytes: its element type must be trivially copyable");

 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    require(n <= std::numeric_limits<size_t>::max() / sizeof(T),
            "DeviceBuffer: " + std::to_string(n) + " elements overflow size_t bytes");
    if (n) DSV4_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { release(); }

  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return n_ == 0; }

  // Copies host[0, n) to elements [offset, offset + n).
  void upload(const T* host, size_t n, size_t offset = 0) {
    check_range("upload", n, offset);
    if (n) {
      DSV4_CUDA_CHECK(cudaMemcpy(p_ + offset, host, n * sizeof(T), cudaMemcpyHostToDevice));
      // From pageable memory cudaMemcpy may return before the DMA lands, ordered only with the
      // legacy default stream: wait for it, so work on any stream sees the data.
      DSV4_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
    }
  }
  // Copies the whole buffer from host; host.size() must equal size().
  void upload(const std::vector<T>& host) {
    require(host.size() == n_, "DeviceBuffer::upload: host vector has " +
                                   std::to_string(host.size()) + " elements, buffer has " +
                                   std::to_string(n_));
    upload(host.data(), host.size());
  }
  // Copies elements [offset, offset + n) to host[0, n).
  void download(T* host, size_t n, size_t offset = 0) const {
    check_range("download", n, offset);
    if (n)
      DSV4_CUDA_CHECK(cudaMemcpy(host, p_ + offset, n * sizeof(T), cudaMemcpyDeviceToHost));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    download(host.data(), n_);
    return host;
  }

 private:
  void check_range(const char* what, size_t n, size_t offset) const {
    require(offset <= n_ && n <= n_ - offset,
            std::string("DeviceBuffer::") + what + ": elements [" + std::to_string(offset) +
                ", " + std::to_string(offset) + " + " + std::to_string(n) +
                ") outside a buffer of " + std::to_string(n_));
  }
  void release() noexcept {
    if (p_) (void)cudaFree(p_);  // a destructor must not throw; a failed free leaks
    p_ = nullptr;
    n_ = 0;
  }

  T* p_ = nullptr;
  size_t n_ = 0;
};

// Marks [construction, destruction) as a named range on the calling thread's NVTX stack.
class NvtxRange {
 public:
  explicit NvtxRange(const char* name);
  ~NvtxRange();
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace dsv4::cuda
