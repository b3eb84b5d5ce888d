#include "model/nvtx.h"

#include <string>

#if DSV4_WITH_NVTX
#include <nvtx3/nvToolsExt.h>
#endif

namespace dsv4 {

ModelRange::ModelRange(const char* backend, const char* op, int64_t layer) {
#if DSV4_WITH_NVTX
  std::string name = std::string(backend) + "." + op;
  if (layer >= 0) name += " L" + std::to_string(layer);
  nvtxRangePushA(name.c_str());
#else
  (void)backend, (void)op, (void)layer;
#endif
}

ModelRange::~ModelRange() {
#if DSV4_WITH_NVTX
  nvtxRangePop();
#endif
}

bool nvtx_enabled() { return DSV4_WITH_NVTX != 0; }

}  // namespace dsv4
