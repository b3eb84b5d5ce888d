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
  for (auto& c : out)
    if (c.skip.empty() && c.memory > memory_limit)
      c.skip = fmt::format("needs {:.1f} GiB, over the {:.1f} GiB limit", c.memory / (1 << 30), memory_limit / (1 << 30));
  return out;
}

}  // namespace dsv4::bench
