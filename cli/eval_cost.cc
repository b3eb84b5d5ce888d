#include "cli/eval_cost.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <filesystem>

#include "evals/compare.h"
#include "evals/cost.h"
#include "evals/results.h"
#include "reference/errors.h"

namespace dsv4::cli {

CLI::App* add_eval_cost(CLI::App* eval, EvalCostArgs& a) {
  auto* c = eval->add_subcommand("cost", "what each answer of a finished run costs under a dated price table");
  c->add_option("run", a.run, "run directory")->required();
  c->add_option("--prices", a.prices, "price table (kind dsv4.prices; example: evals/prices.example.json)")->required();
  c->add_option("--price", a.price, "the entry of the table to apply")->required();
  c->add_option("--out", a.out, "where to write the cost document (default RUN/cost.json)");
  c->add_flag("--json", a.json, "print the document instead of the table");
  return c;
}

int eval_cost(const EvalCostArgs& a) {
  try {
    const evals::RunOnDisk run = evals::read_run(a.run);
    const evals::PriceTable t = evals::read_prices(a.prices);
    const boost::json::object doc = evals::cost_document(a.run, run.samples, t, t.at(a.price));
    const std::string out = a.out.empty() ? (std::filesystem::path(a.run) / "cost.json").string() : a.out;
    evals::write_file_atomic(out, evals::pretty_json(doc));
    fmt::print("{}", a.json ? evals::pretty_json(doc) : evals::cost_table(doc));
    fmt::print(stderr, "dsv4 eval cost: -> {}\n", out);
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 eval cost: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsv4 eval cost: error: {}\n", e.what());
    return 1;
  }
}

}  // namespace dsv4::cli
