// Normalised Walsh-Hadamard transform on the GPU: the CUDA twin of reference/hadamard.h
// (same params struct, same semantics). Spec: docs/v4-architecture.md §2.3, §2.4 (the
// indexer's rotation before FP4).
//
//   y[r, :] = x[r, :] H_d / sqrt(d),   H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]] (Sylvester)
//
// H_d / sqrt(d) is orthonormal and symmetric, so the transform is its own inverse.
// Shapes: x [R, d], y [R, d], d a power of two with d <= kHadamardMaxDim; every pointer is a
// DEVICE pointer, rows strided by x.ld / y.ld. Overwrites y; y may alias x exactly (in
// place), but must not overlap it otherwise. The indexer uses d = d_I = 128.
//
// Precision: FP32 throughout. The butterflies are the reference's, stage for stage
// (h = 1, 2, 4, ...: (a, b) -> (a + b, a - b)), then one multiply by 1/sqrt(d), so reruns are
// bitwise identical.
//
// Launch geometry: one block per row, grid [R], min(max(d/2, 1), 256) threads and d floats
// of dynamic shared memory (32 KiB at d = 8192, inside the 48 KiB default). The block loads
// the row into shared memory, runs log2(d) butterfly stages over the d/2 pairs with a
// barrier after each, and writes the scaled row. Every read of x precedes the first barrier
// and every write of y follows the last one, which is what makes y == x safe.
//
// Errors: d and the shapes are checked on the host before any launch, with the reference's
// messages (dsv4::InputError), plus the GPU's limit on d; a failed launch throws
// dsv4::cuda::CudaError. The launch is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "reference/hadamard.h"

namespace dsv4::cuda {

// Largest d: one row of d floats lives in shared memory (d * 4 bytes <= 48 KiB).
inline constexpr int64_t kHadamardMaxDim = 8192;

void hadamard(const HadamardParams<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
