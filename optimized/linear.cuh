// Linear layers on the GPU with cuBLAS, in the checkpoint's weight layout: the projections of
// the attention paths (optimized/query_path, window_kv, output_proj). Spec: docs/v4-architecture.md
// §2.1 (wq_a, wq_b), §2.2 (wkv), §2.6 (grouped wo_a, wo_b).
//
//   linear:          Y[rows, out] = alpha X[rows, in] W[out, in]^T   (alpha 1 by default)
//   linear_grouped:  Y[:, k*out + j] = sum_i X[:, k*in + i] W_k[j, i],  W_k = w + k*out*in,
//                    k = 0..groups-1 (block-diagonal weight: group k reads its own `in` columns
//                    of X and writes its own `out` columns of Y)
//
// Shapes: X [rows, in] (linear) or [rows, groups*in] (grouped), row stride x.ld; W row-major
// [out, in] (groups of them back to back); Y [rows, out] or [rows, groups*out], row stride
// y.ld. Every pointer is a DEVICE pointer. Overwrites Y; Y must not overlap X or W.
//
// Precision: FP32 in, FP32 out, cuBLAS SGEMM in the default math mode (FP32 FMA, no TF32).
// cuBLAS picks one algorithm per problem shape and runs it in a fixed order, so reruns on one
// GPU with the same handle and stream are bitwise identical; the summation order differs from
// the reference's Eigen GEMM (tolerances, not bits).
//
// Launch geometry: row-major Y = X W^T is column-major Y^T = W X^T: cublasSgemm(op(A) = T on
// W as column-major [in, out] with lda = in, op(B) = N on X as column-major [in, rows] with
// ldb = x.ld, C = Y as column-major [out, rows] with ldc = y.ld). The grouped form is one
// cublasSgemmStridedBatched with strides out*in (W), in (X) and out (Y): the batch's B and C
// matrices interleave within the rows of X and Y but never share an element.
//
// Errors: the callers (the ops) check their shapes with their own messages before any device
// work; these functions check only cuBLAS's int range (dsv4::InputError, naming `op`) and
// throw dsv4::cuda::CudaError when cuBLAS fails. Asynchronous on `stream`.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/view.h"

namespace dsv4::cuda {

// A cuBLAS handle created on first use (an op's workspace may be made without a device) in the
// default math mode, destroyed with its owner. Not copyable; one per stream that runs the op.
class BlasHandle {
 public:
  BlasHandle() = default;
  ~BlasHandle();
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;

  // The handle, created if needed and bound to `stream`.
  cublasHandle_t on(cudaStream_t stream);

 private:
  cublasHandle_t handle_ = nullptr;
};

// True when every size of Y[rows, out] = X[rows, in] W^T (and the row strides) fits cuBLAS's int.
bool linear_fits_int(int64_t rows, int64_t out, int64_t in, int64_t x_ld, int64_t y_ld);

// Y = alpha X W^T, W [out, in] row-major; x.cols == in and y.cols == out are the caller's to
// check. `op` names the calling op in the int-range message. rows == 0 does nothing. alpha
// scales each finished dot product (one FP32 multiply, as a product followed by a scaling).
void linear(const char* op, BlasHandle& blas, View2<const float> x, const float* w, int64_t out,
            View2<float> y, cudaStream_t stream, float alpha = 1.0f);

// The block-diagonal product above: x [rows, groups*in], w [groups*out, in], y [rows, groups*out].
void linear_grouped(const char* op, BlasHandle& blas, View2<const float> x, const float* w,
                    int64_t groups, int64_t out, int64_t in, View2<float> y, cudaStream_t stream);

}  // namespace dsv4::cuda
