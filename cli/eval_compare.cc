#include "cli/eval_compare.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>

#include "evals/compare.h"
#include "evals/results.h"
#include "reference/errors.h"

namespace dsv4::cli {

CLI::App* add_eval_compare(CLI::App* eval, EvalCompareArgs& a) {
  auto* c = eval->add_subcommand("compare", "paired comparison of finished runs of the same suite and items");
  c->add_option("runs", a.runs, "run directories (each later one is compared with the first)")->required();
  c->add_option("--alpha", a.alpha, "significance level of the exact test")->default_str("0.05");
  c->add_option("--resamples", a.resamples, "bootstrap resamples")->default_str("2000");
  c->add_flag("--json", a.json, "print the JSON document instead of the table");
  c->add_option("--out", a.out, "also write the JSON document to this file");
  return c;
}

int eval_compare(const EvalCompareArgs& a) {
  try {
    if (a.resamples <= 0) throw InputError("--resamples must be positive");
    std::vector<evals::RunOnDisk> runs;
    for (const std::string& d : a.runs) runs.push_back(evals::read_run(d));
    evals::CompareOptions o;
    o.alpha = a.alpha;
    o.resamples = a.resamples;
    const boost::json::object doc = evals::compare_runs(runs, o);
    if (!a.out.empty()) evals::write_file_atomic(a.out, evals::pretty_json(doc));
    if (a.json)
      fmt::print("{}", evals::pretty_json(doc));
    else
      fmt::print("{}", evals::compare_table(doc));
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 eval compare: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsv4 eval compare: error: {}\n", e.what());
    return 1;
  }
}

}  // namespace dsv4::cli
