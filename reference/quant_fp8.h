// FP8 e4m3fn block quantisation with UE8M0 (power-of-two) scales, and its round trip.
// Spec: docs/v4-architecture.md §2.2 step 3 (KV: dims 0:448, blocks of 64), §2.3 (main
// compressor entries, same layout), §7 and §9.4 (activations: blocks of 128 along K).
//
// For each row and each block b of `block` consecutive columns within [0, dims):
//   e     = ceil(log2(max(amax_b, 1e-4) / 448))          (exact; scale byte = e + 127)
//   code  = e4m3_rne(clamp(x / 2^e, -448, 448))
//   y     = e4m3_decode(code) * 2^e
// Columns >= dims are copied unchanged (the BF16 RoPE dims of the KV layout). A trailing
// partial block (dims not a multiple of block) is quantised on its own amax; the official
// code asserts divisibility, which holds for every real V4 shape.
//
// Shapes: x [R, d], y [R, d]. Overwrites y; y may alias x.
// A block holding an infinity has no UE8M0 scale (byte 0xFF, NaN): all of its values become
// NaN, as in the official kernels. NaN inputs do not count towards amax and stay NaN.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct QuantFp8Params {
  View2<const T> x;  // [R, d]
  View2<T> y;        // [R, d]
  int64_t block = kFp8KvBlock;
  int64_t dims = 0;  // 0: all columns
};

namespace ref {
template <class T>
void quant_fp8(const QuantFp8Params<T>& p);

// One block of n values -> n e4m3 codes; returns the UE8M0 scale byte.
template <class T>
uint8_t fp8_encode_block(const T* x, int64_t n, uint8_t* codes);
// codes * 2^(scale - 127) -> y.
template <class T>
void fp8_decode_block(const uint8_t* codes, int64_t n, uint8_t scale, T* y);
}  // namespace ref

}  // namespace dsv4
