// FP4 e2m1 block round trip with UE8M0 scales on the GPU: the CUDA twin of
// reference/quant_fp4.h (same params struct, same semantics, the same bits). Spec:
// docs/v4-architecture.md §2.3 (indexer keys: Hadamard, then FP4 in blocks of 32), §2.4
// (indexer queries, same), §7 (FP4 expert weights).
//
// For each row and each block of `block` consecutive columns:
//   e = ceil(log2(max(amax, 6 * 2^-126) / 6)),  y = e2m1_rne(clamp(x / 2^e, -6, 6)) * 2^e
// on the grid {0, .5, 1, 1.5, 2, 3, 4, 6}; a trailing partial block is quantised on its own
// amax. A block holding an infinity becomes NaN (quiet NaN 0x7FC00000, as the reference
// writes); a NaN input does not count towards amax and is written back unchanged (the
// reference's result for the standard quiet NaNs 0x7FC00000 / 0xFFC00000; its float path turns
// NaNs with large payloads, e.g. CUDA's canonical 0x7FFFFFFF, into -0, unlike its double path
// and its own documentation: not mirrored here).
//
// Shapes: x [R, d], y [R, d]; DEVICE views, rows strided by ld. Overwrites y; y may alias x
// exactly (in place), but must not overlap it otherwise. Real shapes: indexer keys [T, 128]
// and queries [T * 64, 128], block 32.
//
// Precision: bitwise equal to ref::quant_fp4<float> (every step but the grid rounding is exact;
// that rounding is RNE on the bits, as the reference's float path: optimized/quant_grid.cuh).
// Reruns are bitwise identical (amax is an integer max).
//
// Launch geometry: one warp per (row, block), 256 threads (8 warps) per CUDA block, grid
// ceil(R * ceil(d / block) / 8) (optimized/quant_grid.cuh).
//
// Errors: the reference's checks and messages (block > 0, y shaped as x) on the host before
// any launch (dsv4::InputError), plus the grid limit; a failed launch throws
// dsv4::cuda::CudaError. Asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "reference/quant_fp4.h"

namespace dsv4::cuda {

void quant_fp4(const QuantFp4Params<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
