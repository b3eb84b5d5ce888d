// A scoped NVTX range, so that an Nsight Systems profile of `dsv4 bench` reads by case name
// (`nsys profile dsv4 bench --filter ...`: one range per benchmark repetition). NVTX3 is
// header-only and comes with the CUDA toolkit; without the toolkit the range compiles to
// nothing. With no profiler attached a push/pop costs a few nanoseconds, and it sits outside
// the timed iterations.
#pragma once

#if DSV4_HAVE_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace dsv4::bench {

class NvtxRange {
 public:
  explicit NvtxRange([[maybe_unused]] const char* name) {
#if DSV4_HAVE_NVTX
    nvtxRangePushA(name);
#endif
  }
  ~NvtxRange() {
#if DSV4_HAVE_NVTX
    nvtxRangePop();
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace dsv4::bench
