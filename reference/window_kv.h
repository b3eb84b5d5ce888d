// Sliding-window KV entry of a V4 attention layer (every layer). Spec: §2.2.
//
//   kv = RMSNorm_w(Wkv x)              [T, d]   one vector is key and value of all heads
//   RoPE on kv[d - d_r, d) at position pos0 + r
//   quant (official numerics): FP8 round trip of kv[0, d - d_r) in blocks of 64 and BF16
//   rounding of the RoPE dims kv[d - d_r, d) (the official code holds them in BF16; the
//   584-byte deployment entry stores them so) — every cached value then has an exact
//   FP8 / BF16 encoding;
//   act_quant: FP8 round trip (1x128) of x before Wkv.
// Shapes: x [T, D], wkv [d, D], kv_norm [d] -> kv [T, d]. Overwrites kv.
#pragma once

#include <cstdint>

#include "reference/constants.h"
#include "reference/rope.h"
#include "reference/view.h"

namespace dsv4 {

template <class T>
struct WindowKvParams {
  View2<const T> x;            // [T, D]
  const T* wkv = nullptr;      // [d, D]
  const T* kv_norm = nullptr;  // [d]
  int64_t head_dim = kHeadDim;
  int64_t pos0 = 0;
  RopeConfig rope;
  double eps = kNormEps;
  bool quant = false;
  bool act_quant = false;
  View2<T> kv;  // [T, d] out
};

namespace ref {
template <class T>
void window_kv(const WindowKvParams<T>& p);
// Rounds columns [from, cols) of every row to BF16 (the RoPE dims of a cached entry).
template <class T>
void round_bf16_tail(View2<T> v, int64_t from);
}  // namespace ref

}  // namespace dsv4
