#include "bench/ceilings_cuda.h"

#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>
#include <vector>

#include "bench/setup.h"
#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4::bench {

namespace {

constexpr int kCopyFillByte = 0x5A;     // any non-zero pattern
constexpr uint64_t kCublasSeed = 9100;  // A: seed, B: seed + 1
constexpr float kCublasSigma = 1.0f;
constexpr int64_t kCublasMaxN = 65536;  // 8 GiB per BF16 matrix: past any device's memory

// cuBLAS is opened when the GEMM ceiling is set up, not linked: linked, its ~0.5 GB
// libcublasLt would be loaded at the start of every process of every executable that links
// dsv4_bench (dsv4 itself, the evals and reports tests), ~0.17 s each on the build machines,
// though only this ceiling uses it. The soname first (found through the run path, the
// loader's cache or LD_LIBRARY_PATH), then the file the build was configured with.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // cublasGemmEx is overloaded in C++ (cublas_api.h), so its C signature is spelled out.
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void*, const void*, cudaDataType, int, const void*,
                                    cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
  GemmEx gemm_ex = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

template <class F>
void resolve(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) throw cuda::CudaError(std::string("ceiling_cublas: cuBLAS has no symbol ") + name);
}

CublasApi open_cublas() {
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string why = lib ? "" : dlerror();
#ifdef DSV4_CUBLAS_LIBRARY
  if (!lib) lib = dlopen(DSV4_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!lib) why += std::string("; ") + dlerror();
#endif
  if (!lib) throw cuda::CudaError("ceiling_cublas: cannot open cuBLAS: " + why);
  CublasApi api;  // the library stays open for the life of the process
  resolve(lib, "cublasCreate_v2", api.create);
  resolve(lib, "cublasDestroy_v2", api.destroy);
  resolve(lib, "cublasSetStream_v2", api.set_stream);
  resolve(lib, "cublasGemmEx", api.gemm_ex);
  resolve(lib, "cublasGetStatusString", api.status_string);
  return api;
}

const CublasApi& cublas() {
  static const CublasApi api = open_cublas();  // thread-safe, once; a failure retries next time
  return api;
}

// DSV4_CUBLAS_CHECK's message, through the opened library.
void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw cuda::CudaError(std::string("ceiling_cublas: ") + what + " failed: cuBLAS status " +
                          std::to_string(static_cast<int>(status)) + ": " +
                          cublas().status_string(status));
}

}  // namespace

struct CopyCeiling::Data {
  cuda::DeviceBuffer<char> src, dst;
};

CopyCeiling::CopyCeiling(int64_t mib) : d_(std::make_unique<Data>()) {
  require(mib > 0,
          "ceiling_copy: the buffer must have at least 1 MiB, found " + std::to_string(mib));
  const size_t n = size_t(mib) << 20;
  d_->src = cuda::DeviceBuffer<char>(n);
  d_->dst = cuda::DeviceBuffer<char>(n);
  DSV4_CUDA_CHECK(cudaMemset(d_->src.data(), kCopyFillByte, n));
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
}
CopyCeiling::~CopyCeiling() = default;

void CopyCeiling::step(cudaStream_t stream) {
  DSV4_CUDA_CHECK(cudaMemcpyAsync(d_->dst.data(), d_->src.data(), d_->src.bytes(),
                                  cudaMemcpyDeviceToDevice, stream));
}

double CopyCeiling::bytes() const {
  return 2.0 * double(d_->src.bytes());
}

struct CublasCeiling::Data {
  cuda::DeviceBuffer<uint16_t> a, b, c;  // BF16 bit patterns
  cublasHandle_t handle = nullptr;
  ~Data() {
    if (handle) (void)cublas().destroy(handle);  // must not throw
  }
};

CublasCeiling::CublasCeiling(int64_t n) : n_(n), d_(std::make_unique<Data>()) {
  (void)cublas();  // before any device work: a missing cuBLAS is what gets reported
  require(n > 0 && n <= kCublasMaxN, "ceiling_cublas: n must be in [1, " +
                                         std::to_string(kCublasMaxN) + "], found " +
                                         std::to_string(n));
  const size_t nn = size_t(n) * size_t(n);
  auto random_bf16 = [nn](uint64_t seed) {
    const std::vector<float> f = rand_uniform(nn, seed, kCublasSigma);
    std::vector<uint16_t> h(nn);
    for (size_t i = 0; i < nn; ++i) h[i] = fmt::bf16_encode(f[i]);
    return h;
  };
  d_->a = cuda::DeviceBuffer<uint16_t>(random_bf16(kCublasSeed));
  d_->b = cuda::DeviceBuffer<uint16_t>(random_bf16(kCublasSeed + 1));
  d_->c = cuda::DeviceBuffer<uint16_t>(nn);
  check(cublas().create(&d_->handle), "cublasCreate");
}
CublasCeiling::~CublasCeiling() = default;

void CublasCeiling::step(cudaStream_t stream) {
  const float alpha = 1.0f, beta = 0.0f;
  const int n = static_cast<int>(n_);
  check(cublas().set_stream(d_->handle, stream), "cublasSetStream");
  check(cublas().gemm_ex(d_->handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, d_->a.data(),
                         CUDA_R_16BF, n, d_->b.data(), CUDA_R_16BF, n, &beta, d_->c.data(),
                         CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

}  // namespace dsv4::bench
