// `dsv4 eval cost RUN --prices FILE --price NAME [--out FILE] [--json]`: what each answer of a
// finished run cost under one entry of a dated price table (evals/cost.h); writes RUN/cost.json
// (or --out) and prints the per-bin table. Exit status: 0 priced, 2 bad input.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace dsv4::cli {

struct EvalCostArgs {
  std::string run, prices, price, out;
  bool json = false;
};

CLI::App* add_eval_cost(CLI::App* eval, EvalCostArgs& a);
int eval_cost(const EvalCostArgs& a);

}  // namespace dsv4::cli
