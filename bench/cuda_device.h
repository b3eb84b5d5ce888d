// The GPU side of the bench harness (CUDA builds only; bench/CMakeLists.txt): whether a
// device is usable at run time, and timing device work with CUDA events.
//
//   cuda_unavailable()  "" when at least one CUDA device is usable, else the reason, e.g.
//                       "no CUDA device: cudaGetDeviceCount failed: cudaErrorNoDevice: no
//                       CUDA-capable device is detected". Asked once per process (the answer
//                       does not change while it runs; the first call initialises the driver).
//   DeviceTimer         one stream and two events; seconds(work) enqueues `work` on the stream
//                       between the two events, waits for the stop event and returns the
//                       elapsed device time (cudaEventElapsedTime: ~0.5 us resolution), so
//                       host launch overhead before the start event is not counted.
// Plain C++ (no device code): the runtime API only.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <string>

namespace dsv4::bench {

std::string cuda_unavailable();

class DeviceTimer {
 public:
  DeviceTimer();
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  cudaStream_t stream() const { return stream_; }
  // Seconds of device time that `work` (launches on the given stream) takes.
  double seconds(const std::function<void(cudaStream_t)>& work);

 private:
  void release() noexcept;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace dsv4::bench
