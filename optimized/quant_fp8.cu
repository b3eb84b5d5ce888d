#include "optimized/quant_fp8.cuh"

#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/quant_grid.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

void quant_fp8(const QuantFp8Params<float>& p, cudaStream_t stream) {
  // The reference's checks, in its order and with its messages.
  const int64_t dims = p.dims ? p.dims : p.x.cols;
  require(p.block > 0, "quant_fp8: key 'block' must be positive, found " + std::to_string(p.block));
  require(dims > 0 && dims <= p.x.cols, "quant_fp8: key 'dims' must be in [0, " +
                                            std::to_string(p.x.cols) + "], found " +
                                            std::to_string(p.dims));
  require(p.y.rows == p.x.rows && p.y.cols == p.x.cols, "quant_fp8: y must have the shape of x");
  if (p.x.rows == 0) return;

  const NvtxRange range("quant_fp8");
  quant_grid::launch<quant_grid::E4m3>("quant_fp8", p.x, p.y, p.block, dims, stream);
  if (dims < p.x.cols && p.y.data != p.x.data) {  // the unquantised columns, as they are
    DSV4_CUDA_CHECK(cudaMemcpy2DAsync(p.y.data + dims, size_t(p.y.ld) * sizeof(float),
                                      p.x.data + dims, size_t(p.x.ld) * sizeof(float),
                                      size_t(p.x.cols - dims) * sizeof(float), size_t(p.x.rows),
                                      cudaMemcpyDeviceToDevice, stream));
  }
}

}  // namespace dsv4::cuda
