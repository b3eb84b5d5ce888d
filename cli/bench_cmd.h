// `dsv4 bench`: the Google Benchmark microbenchmarks (bench/runner.h, docs/bench.md).
#pragma once

#include <string>

namespace dsv4::cli {

struct BenchArgs {
  std::string filter;  // regex over <op>/<model>/<case>
  bool quick = false;
  int repetitions = 1;
  double min_time = 0;  // seconds per benchmark repetition; 0: 0.5 (quick: 0.1)
  std::string out = "results/bench";
  bool list = false;   // print the case list (name, FLOPs, bytes, memory, skip reason) and exit
  std::string rederive;  // DIR: re-derive DIR/bench_derived.json and the table from DIR/bench.json
};

int bench_command(const BenchArgs& a);

}  // namespace dsv4::cli
