// Streaming (non-temporal) stores for the large outputs of the elementwise reference ops
// (rmsnorm; quant_fp8 was tried through a stack buffer per block and got slower: 0.47 of the
// read ceiling instead of 0.52). A plain store first reads its cache line for ownership, so writing an
// output that leaves the cache before anyone reads it costs three bus transfers per line; a
// streaming store costs one. Outputs above kStreamingStoreBytes (larger than a last-level
// cache) that do not overlap their input are written this way; smaller ones (the model's prefill
// chunks, which the next op reads) stay cached. The values written are the same either way.
#pragma once

#include <cstdint>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace dsv4::ref {

inline constexpr int64_t kStreamingStoreBytes = int64_t(32) << 20;

// Whether an output of `ybytes` at y, beside an input of `xbytes` at x, is written with
// streaming stores (large, and apart from the input; AVX builds only).
inline bool use_streaming_stores(const void* x, int64_t xbytes, const void* y, int64_t ybytes) {
#if defined(__AVX__)
  const auto *xb = static_cast<const char*>(x), *yb = static_cast<const char*>(y);
  return ybytes > kStreamingStoreBytes && (yb + ybytes <= xb || xb + xbytes <= yb);
#else
  (void)x, (void)xbytes, (void)y, (void)ybytes;
  return false;
#endif
}

// Orders the streaming stores before the stores and loads that follow (the end of an op that
// used them).
inline void streaming_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

}  // namespace dsv4::ref
