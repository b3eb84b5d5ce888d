// `dsv4 bench compare BASELINE NEW`: the performance-regression check between two
// bench_derived.json files ("kind": "dsv4.bench", written by `dsv4 bench`). Statistics and
// outcomes: bench/compare.h. Exit status: 0 no confirmed regression, 1 at least one
// benchmark confirmed slower, 2 bad input (one line naming the file and the field).
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace dsv4::cli {

struct BenchCompareArgs {
  std::string baseline, fresh;
  std::string metric = "share";  // share: roofline_share and speedups | seconds
  double alpha = 0.05;
  double threshold = 0.25;
  int min_repetitions = 9;
  bool json = false;
};

// Adds the `compare` subcommand (and its options) under `bench`.
CLI::App* add_bench_compare(CLI::App* bench, BenchCompareArgs& a);

int bench_compare(const BenchCompareArgs& a);

}  // namespace dsv4::cli
