// `dsv4 eval compare RUN_A RUN_B [RUN_C ...]`: paired comparison of finished eval runs of the
// same suite and items (evals/compare.h). Prints the per-bin table (or the JSON document with
// --json); --out FILE also writes the document ("kind": "dsv4.eval.compare", atomically).
// Exit status: 0 compared, 2 bad input (runs not comparable, missing files), one line saying why.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace dsv4::cli {

struct EvalCompareArgs {
  std::vector<std::string> runs;
  double alpha = 0.05;
  int resamples = 2000;
  bool json = false;
  std::string out;
};

// Adds the `compare` subcommand under `eval`.
CLI::App* add_eval_compare(CLI::App* eval, EvalCompareArgs& a);

int eval_compare(const EvalCompareArgs& a);

}  // namespace dsv4::cli
