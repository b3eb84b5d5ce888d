// FP8 e4m3fn block round trip with UE8M0 scales on the GPU: the CUDA twin of
// reference/quant_fp8.h (same params struct, same semantics, the same bits). Spec:
// docs/v4-architecture.md §2.2 step 3 (KV entries: dims 0:448 in blocks of 64), §2.3 (main
// compressor entries, same layout), §7 and §9.4 (activations: blocks of 128 along K).
//
// For each row and each block of `block` consecutive columns within [0, dims):
//   e = ceil(log2(max(amax, 1e-4) / 448)),  y = e4m3_rne(clamp(x / 2^e, -448, 448)) * 2^e
// Columns >= dims are copied unchanged (the BF16 RoPE dims of the KV layout); a trailing
// partial block is quantised on its own amax. A block holding an infinity becomes NaN
// (quiet NaN 0x7FC00000, as the reference writes); a NaN input does not count towards amax
// and is written back unchanged (the reference's result for the standard quiet NaNs
// 0x7FC00000 / 0xFFC00000; its float path turns NaNs with large payloads, e.g. CUDA's canonical
// 0x7FFFFFFF, into -0, unlike its double path and its own documentation: not mirrored here).
//
// Shapes: x [R, d], y [R, d], dims = 0 meaning d; DEVICE views, rows strided by ld. Overwrites
// y; y may alias x exactly (in place), but must not overlap it otherwise. Real shapes: KV and
// compressed entries [T, 512] with dims 448, block 64; activations [T, 4096] (Flash) or
// [T, 7168] (Pro) with block 128.
//
// Precision: bitwise equal to ref::quant_fp8<float> (every step but the grid rounding is exact;
// that rounding is RNE on the bits, as the reference's float path: optimized/quant_grid.cuh).
// Reruns are bitwise identical (amax is an integer max).
//
// Launch geometry: one warp per (row, block), 256 threads (8 warps) per CUDA block, grid
// ceil(R * ceil(dims / block) / 8) (optimized/quant_grid.cuh); the columns >= dims by one
// cudaMemcpy2DAsync when y is not x.
//
// Errors: the reference's checks and messages (block > 0, dims in [0, d] with d > 0, y shaped
// as x) on the host before any launch (dsv4::InputError), plus the grid limit; a failed launch
// throws dsv4::cuda::CudaError. Asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include "reference/quant_fp8.h"

namespace dsv4::cuda {

void quant_fp8(const QuantFp8Params<float>& p, cudaStream_t stream = 0);

}  // namespace dsv4::cuda
