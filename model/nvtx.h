// NVTX ranges around the model backends' ops, so that a profile of a whole run (Nsight Systems)
// reads by op and layer on either backend: "ref.attention L3", "cuda.moe L5", "cuda.head".
// The CUDA twins open their own ranges inside ("attention_layer", "moe", ...), so a CUDA
// profile nests kernel-level names under the model-level ones.
//
// Header-only NVTX3 from the CUDA toolkit, compiled in when the build found CUDA
// (DSV4_WITH_NVTX); otherwise a range is a no-op. Without a tool attached a range costs a
// branch and the name's formatting.
#pragma once

#include <cstdint>

namespace dsv4 {

class ModelRange {
 public:
  // layer < 0: no layer in the name.
  ModelRange(const char* backend, const char* op, int64_t layer = -1);
  ~ModelRange();
  ModelRange(const ModelRange&) = delete;
  ModelRange& operator=(const ModelRange&) = delete;
};

// Whether this build emits the ranges.
bool nvtx_enabled();

}  // namespace dsv4
