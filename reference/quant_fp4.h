// FP4 e2m1 block quantisation with UE8M0 scales, and its round trip.
// Spec: docs/v4-architecture.md §2.3 (indexer keys: Hadamard, then FP4 in blocks of 32),
// §2.4 (indexer queries, same), §7 (packed FP4 expert weights).
//
// For each row and each block b of `block` consecutive columns:
//   e    = ceil(log2(max(amax_b, 6 * 2^-126) / 6))
//   code = e2m1_rne(clamp(x / 2^e, -6, 6))      grid {0, .5, 1, 1.5, 2, 3, 4, 6}
//   y    = e2m1_decode(code) * 2^e
// A trailing partial block is quantised on its own amax.
//
// Shapes: x [R, d], y [R, d]. Overwrites y; y may alias x.
// Packing (fp4_encode_block with packed output): two codes per byte, element 2k in the
// low nibble, 2k+1 in the high nibble (§7).
// A block holding an infinity has no UE8M0 scale (byte 0xFF, NaN): all of its values become
// NaN, as in the official kernels. NaN inputs do not count towards amax and stay NaN.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct QuantFp4Params {
  View2<const T> x;  // [R, d]
  View2<T> y;        // [R, d]
  int64_t block = kFp4Block;
};

namespace ref {
template <class T>
void quant_fp4(const QuantFp4Params<T>& p);

// One block of n values (n even) -> n/2 packed bytes; returns the UE8M0 scale byte.
template <class T>
uint8_t fp4_encode_block(const T* x, int64_t n, uint8_t* packed);
template <class T>
void fp4_decode_block(const uint8_t* packed, int64_t n, uint8_t scale, T* y);
}  // namespace ref

}  // namespace dsv4
