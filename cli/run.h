// `dsv4 run`: the default harness run (docs/run.md).
#pragma once

#include <string>

namespace dsv4::cli {

struct RunArgs {
  std::string out = "results";
  bool quick = false;
  int threads = 1;  // single-thread numbers are the targets' basis (targets.md)
};

int run_harness(const RunArgs& a);

}  // namespace dsv4::cli
