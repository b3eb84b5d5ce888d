// `dsv4 bench`: runs the selected cases of bench/cases.h with Google Benchmark (single-thread
// Eigen), writes DIR/bench.json (Google Benchmark's JSON, unmodified: every repetition, then
// the aggregates when repetitions > 1) and DIR/bench_derived.json (bench/derive.h), and prints
// the table. A backend's ceilings (CPU: SGEMM, streaming read; GPU: device copy, cuBLAS BF16)
// run whenever a selected case has that backend or the filter names them (every share needs
// them; the CPU ones also when no case is selected), first and again last. Cases that cannot run on this machine (CUDA cases without a
// device) are skipped with the reason, and the rest still run.
#pragma once

#include <string>

#include "bench/cases.h"

namespace dsv4::bench {

struct BenchOptions {
  std::string filter;     // ECMAScript regex searched in the names; empty: every case
  bool quick = false;     // only the cases marked quick (~ 30 s here), shorter minimum times
  int repetitions = 1;
  std::string out = "results/bench";
  double memory_limit = kMemoryLimit;
  double min_time = 0;    // seconds per benchmark; 0: 0.5 (quick: 0.1)
};

// Returns the exit status: 0, 1 when a benchmark failed, 2 for bad options.
int run_bench(const BenchOptions& o);

// Re-derives DIR/bench_derived.json and the table from an existing DIR/bench.json (after a
// change of the derivation, or to print a run's table again). Same exit statuses.
int rederive(const std::string& dir);

}  // namespace dsv4::bench
