#include "cli/op_status.h"

#include <fmt/core.h>

#include <boost/json.hpp>

namespace dsv4::cli {

bool built_with_cuda() {
#ifdef DSV4_BUILT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_status(const OpSpec& op) {
  if (op.cuda_kernel.empty()) return kCudaNoKernel;
  if (!built_with_cuda()) return kCudaNotBuilt;
  return op.run_cuda ? kCudaRunsInOp : kCudaCompiled;
}

void print_op_list_json() {
  namespace json = boost::json;
  json::array ops;
  for (const auto& s : op_registry())
    ops.push_back(json::object{{"name", s.name},
                               {"summary", s.summary},
                               {"cuda_kernel", s.cuda_kernel.empty() ? json::value(nullptr) : json::value(s.cuda_kernel)},
                               {"backends", json::object{{"ref", kRefAvailable}, {"cuda", cuda_status(s)}}}});
  const json::object doc{{"kind", kOpsKind}, {"schema_version", kOpsSchemaVersion}, {"ops", std::move(ops)}};
  fmt::print("{}\n", json::serialize(doc));
}

}  // namespace dsv4::cli
