// Row movement on the GPU for the model backend (model/backend_cuda.cc): the glue between the
// ops that the reference backend (model/backend_ref.cc) does with host loops.
//
//   gather_rows:  dst[i, :] = src[idx[i], :]              i < n  (embedding lookup: src = the
//                 embedding table [V, D], idx = token ids; the head's chosen rows; a chunk's
//                 requested attention rows)
//   spread_rows:  dst[i*s + k, :] (+)= src[i, :]          i < n, k < s  (hc_expand: every mHC
//                 stream a copy of x; accumulate: the MTP input's e_proj added to each
//                 stream's h_proj; s = 1: a residual add y += x)
//
// Shapes: src [*, cols] (row stride src_ld), idx [n] int32 (DEVICE; every value must lie in
// [0, src_rows): checked on the host by the caller, the kernel does not read outside src for a
// value outside [0, src_rows) but writes zeros), dst [n (* s), cols] (row stride dst_ld). Every
// pointer is a DEVICE pointer; dst must not overlap src.
//
// Precision: copies are exact; the accumulating spread is one FP32 add per element
// (dst + src, the reference's order).
//
// Launch geometry: grid [n (* s) rows], kRowsThreads threads striding the columns (coalesced).
//
// Errors: n and the rows' product must fit a grid (InputError); a failed launch throws
// dsv4::cuda::CudaError. Asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace dsv4::cuda {

inline constexpr int kRowsThreads = 256;

void gather_rows(const float* src, int64_t src_rows, int64_t src_ld, const int32_t* idx, int64_t n,
                 int64_t cols, float* dst, int64_t dst_ld, cudaStream_t stream = 0);

void spread_rows(const float* src, int64_t n, int64_t cols, int64_t s, float* dst, bool accumulate,
                 cudaStream_t stream = 0);

}  // namespace dsv4::cuda
