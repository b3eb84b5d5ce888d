#include "optimized/quant_fp4.cuh"

#include "optimized/device.cuh"
#include "optimized/quant_grid.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

void quant_fp4(const QuantFp4Params<float>& p, cudaStream_t stream) {
  // The reference's checks, in its order and with its messages.
  require(p.block > 0, "quant_fp4: key 'block' must be positive, found " + std::to_string(p.block));
  require(p.y.rows == p.x.rows && p.y.cols == p.x.cols, "quant_fp4: y must have the shape of x");
  if (p.x.rows == 0 || p.x.cols == 0) return;

  const NvtxRange range("quant_fp4");
  quant_grid::launch<quant_grid::E2m1>("quant_fp4", p.x, p.y, p.block, p.x.cols, stream);
}

}  // namespace dsv4::cuda
