// `dsv4 bench --model DIR [--tp T --ep E]`: the whole-model prefill/decode benchmark
// (bench/model_bench.h), on one rank or, under mpirun, sharded over the ranks
// (model/backend_sharded.h) with the time spent in collectives. Rank 0 prints the table and
// writes OUT/model_bench.json.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace dsv4::cli {

struct BenchModelArgs {
  std::string model;  // checkpoint directory; empty: the microbenchmarks instead
  std::string backend = "ref";  // ref | cuda (model/backend_factory.h)
  int tp = 1, ep = 1;
  int64_t prompt = 512, decode = 16, chunk = 512;
  int repetitions = 3;
  uint64_t seed = 0;
  std::string numerics = "official";
  std::string kv_layout = "fp8";
  std::string engram_tables = "memory";  // memory | mmap
};

// Adds --model, --model-backend, --tp, --ep, --prompt, --decode, --chunk, --model-reps, --seed, --numerics,
// --kv-layout to `dsv4 bench`.
void add_bench_model_options(CLI::App* bench, BenchModelArgs& a);
// Runs it; `out` is dsv4 bench's --out. Exit status (2: bad input).
int bench_model_command(const BenchModelArgs& a, const std::string& out);

}  // namespace dsv4::cli
