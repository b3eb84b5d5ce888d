#include "optimized/device.cuh"

#include <nvtx3/nvToolsExt.h>

#include <cstdint>
#include <cstdio>

namespace dsv4::cuda {

namespace {

// "13.0" from CUDA's integer version 13000.
std::string version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string versions() {
  int driver = 0, runtime = 0;
  (void)cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  (void)cudaRuntimeGetVersion(&runtime);
  return "driver " + (driver ? version_string(driver) : std::string("none")) + ", runtime " +
         version_string(runtime);
}

}  // namespace

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // leave no error behind for the next check
    return 0;
  }
  return n;
}

std::string device_summary() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("no CUDA device available: cudaGetDeviceCount: ") + cudaGetErrorName(err) +
           ": " + cudaGetErrorString(err) + " (" + versions() + ")";
  }
  if (n == 0) return "no CUDA device available: cudaGetDeviceCount found 0 (" + versions() + ")";
  std::string s;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    const cudaError_t perr = cudaGetDeviceProperties(&prop, i);
    if (i) s += "; ";
    if (perr != cudaSuccess) {
      (void)cudaGetLastError();
      s += "device " + std::to_string(i) + ": cudaGetDeviceProperties: " + cudaGetErrorName(perr);
      continue;
    }
    char mem[32], l2[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB", double(prop.totalGlobalMem) / (1024.0 * 1024 * 1024));
    std::snprintf(l2, sizeof l2, "%.0f MiB", double(prop.l2CacheSize) / (1024.0 * 1024));
    s += "device " + std::to_string(i) + ": " + prop.name + ", sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs, " +
         mem + ", L2 " + l2;
  }
  return s + " (" + versions() + ")";
}

void keep_pool_memory() {
  int device = 0;
  DSV4_CUDA_CHECK(cudaGetDevice(&device));
  cudaMemPool_t pool = nullptr;
  DSV4_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t keep = UINT64_MAX;
  DSV4_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
}

NvtxRange::NvtxRange(const char* name) { nvtxRangePushA(name); }
NvtxRange::~NvtxRange() { nvtxRangePop(); }

}  // namespace dsv4::cuda
