// The CUDA backend of dsv4 op in a build without CUDA (cli/op_cuda.h): no op has a CUDA runner
// and every `--backend cuda` run is refused. cli/ops_cuda.cc is the CUDA build's counterpart.
#include "cli/op_cuda.h"

namespace dsv4::cli {

void attach_cuda_runners(std::vector<OpSpec>&) {}

std::string cuda_backend_problem() {
  return "this dsv4 was built without CUDA (configure with nvcc available and -DDSV4_CUDA=ON)";
}

}  // namespace dsv4::cli
