// The CUDA model backend in a build without CUDA (model/backend.h): nothing to make, and the
// reason. model/backend_cuda.cc is the CUDA build's counterpart.
#include "model/backend.h"

namespace dsv4 {

std::string cuda_backend_problem() {
  return "this dsv4 was built without CUDA (configure with nvcc available and -DDSV4_CUDA=ON)";
}

int cuda_bind_rank(int) { throw InputError("--backend cuda: " + cuda_backend_problem()); }

std::unique_ptr<Backend> make_cuda_backend(ModelWeights, BackendOptions) {
  throw InputError("--backend cuda: " + cuda_backend_problem());
}

}  // namespace dsv4
