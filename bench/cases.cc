#include "bench/cases.h"

#include <fmt/core.h>

namespace dsv4::bench {

std::vector<Case> case_list(double memory_limit) {
  std::vector<Case> out;
  add_ceiling_cases(out);
  add_v4_attention_cases(out);
  add_v4_layer_cases(out);
  add_v4_block_cases(out);
  add_predecessor_cases(out);
  add_engram_cases(out);
#if DSV4_BENCH_CUDA
  add_cuda_cases(out);  // after the reference cases: it makes their twins
#endif
  for (auto& c : out)
    if (c.skip.empty() && c.memory > memory_limit)
      c.skip = fmt::format("needs {:.1f} GiB, over the {:.1f} GiB limit", c.memory / (1 << 30), memory_limit / (1 << 30));
  return out;
}

Backend backend_of_name(const std::string& name) {
  const size_t a = name.find('/');
  const std::string op = name.substr(0, a);
  const size_t b = a == std::string::npos ? a : name.find('/', a + 1);
  const std::string model = a == std::string::npos ? "" : name.substr(a + 1, b == std::string::npos ? b : b - a - 1);
  const std::string suffix = kCudaOpSuffix;
  const bool cuda_op = op.size() > suffix.size() && op.compare(op.size() - suffix.size(), suffix.size(), suffix) == 0;
  const bool gpu_ceiling = op.rfind("ceiling_", 0) == 0 && model == kGpuCeilingModel;
  return cuda_op || gpu_ceiling ? Backend::cuda : Backend::cpu;
}

const char* backend_string(Backend b) { return b == Backend::cuda ? "cuda" : "cpu"; }

}  // namespace dsv4::bench
