#include "optimized/linear.cuh"

#include <climits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

BlasHandle::~BlasHandle() {
  if (handle_) (void)cublasDestroy(handle_);  // a destructor must not throw
}

cublasHandle_t BlasHandle::on(cudaStream_t stream) {
  if (!handle_) {
    DSV4_CUBLAS_CHECK(cublasCreate(&handle_));
    // The default math mode: FP32 FMA for SGEMM (TF32 only with CUBLAS_TF32_TENSOR_OP_MATH).
    DSV4_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  }
  DSV4_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  return handle_;
}

bool linear_fits_int(int64_t rows, int64_t out, int64_t in, int64_t x_ld, int64_t y_ld) {
  for (int64_t v : {rows, out, in, x_ld, y_ld})
    if (v < 0 || v > INT_MAX) return false;
  return true;
}

namespace {

void require_int(const char* op, int64_t rows, int64_t out, int64_t in, int64_t x_ld, int64_t y_ld) {
  require(linear_fits_int(rows, out, in, x_ld, y_ld),
          std::string(op) + ": GEMM sizes beyond cuBLAS's int range (rows " + std::to_string(rows) +
              ", out " + std::to_string(out) + ", in " + std::to_string(in) + ", row strides " +
              std::to_string(x_ld) + " / " + std::to_string(y_ld) + ")");
}

}  // namespace

void linear(const char* op, BlasHandle& blas, View2<const float> x, const float* w, int64_t out,
            View2<float> y, cudaStream_t stream, float alpha) {
  const int64_t rows = x.rows, in = x.cols;
  require_int(op, rows, out, in, x.ld, y.ld);
  if (rows == 0 || out == 0) return;
  const float zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSgemm(blas.on(stream), CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(rows),
                                int(in), &alpha, w, int(in), x.data, int(x.ld), &zero, y.data,
                                int(y.ld)));
}

void linear_grouped(const char* op, BlasHandle& blas, View2<const float> x, const float* w,
                    int64_t groups, int64_t out, int64_t in, View2<float> y, cudaStream_t stream) {
  const int64_t rows = x.rows;
  require_int(op, rows, out, in, x.ld, y.ld);
  require(groups >= 0 && groups <= INT_MAX,
          std::string(op) + ": group count " + std::to_string(groups) + " beyond cuBLAS's int range");
  if (rows == 0 || out == 0 || groups == 0) return;
  const float one = 1.0f, zero = 0.0f;
  DSV4_CUBLAS_CHECK(cublasSgemmStridedBatched(
      blas.on(stream), CUBLAS_OP_T, CUBLAS_OP_N, int(out), int(rows), int(in), &one, w, int(in),
      static_cast<long long>(out * in), x.data, int(x.ld), static_cast<long long>(in), &zero,
      y.data, int(y.ld), static_cast<long long>(out), int(groups)));
}

}  // namespace dsv4::cuda
