#include "cli/bench_cmd.h"

#include <fmt/core.h>

#include <regex>

#include "bench/cases.h"
#include "bench/runner.h"

namespace dsv4::cli {

namespace {

int list_cases(const BenchArgs& a) {
  std::regex re;
  try {
    re = std::regex(a.filter, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fmt::print(stderr, "dsv4 bench: --filter '{}' is not a valid regular expression: {}\n", a.filter, e.what());
    return 2;
  }
  fmt::print("{:<60} {:>12} {:>12} {:>10} {:>5}  {}\n", "name", "GFLOP/iter", "MB/iter", "mem GiB", "quick", "skip");
  for (const auto& c : bench::case_list()) {
    if (a.quick && !c.quick) continue;
    if (!a.filter.empty() && !std::regex_search(c.name(), re)) continue;
    fmt::print("{:<60} {:>12.4f} {:>12.2f} {:>10.2f} {:>5}  {}\n", c.name(), c.flops / 1e9, c.bytes / 1e6, c.memory / (1 << 30),
               c.quick ? "yes" : "", c.skip);
  }
  return 0;
}

}  // namespace

int bench_command(const BenchArgs& a) {
  if (a.list) return list_cases(a);
  if (!a.rederive.empty()) return bench::rederive(a.rederive);
  bench::BenchOptions o;
  o.filter = a.filter;
  o.quick = a.quick;
  o.repetitions = a.repetitions;
  if (a.min_time < 0) {
    fmt::print(stderr, "dsv4 bench: --min-time must be >= 0 (0: the default), found {}\n", a.min_time);
    return 2;
  }
  o.min_time = a.min_time;
  o.out = a.out;
  return bench::run_bench(o);
}

}  // namespace dsv4::cli
