// dsv4 eval: run an eval suite on a model (evals/, docs/evals.md).
//   dsv4 eval --suite recall --model DIR --lengths 4k,16k --samples N --seed S --out DIR
//   dsv4 eval --list
//   dsv4 eval --suite coding --model DIR --samples N --out DIR [--problems FILE,...]
//   dsv4 eval --suite coding --validate [--problems FILE,...]
//   dsv4 eval --suite S --endpoint URL --model-name NAME [--model DIR] ...   (the http backend)
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "cli/http_options.h"

namespace dsv4::cli {

struct EvalArgs {
  bool list = false;
  std::string suite = "recall";
  std::string model;
  std::string backend = "ref";
  std::string numerics;  // "" = not given: from probe.json knobs.quant, else official
  std::string engram_tables = "memory";  // memory | mmap (docs/engram.md)
  std::string kv_layout = "auto";  // auto: fp8 (deployment) with official numerics, f32 with exact
  int64_t chunk = 512;
  int tp = 1, ep = 1;  // multi-rank engine under mpirun (docs/parallel.md, evals/multi_rank.h)
  int dp = 1;          // data-parallel replicas: each runs its share of the samples
  std::string lengths;
  std::string depths = "0,0.25,0.5,0.75,1";
  std::string tasks;
  std::string format = "auto";
  int64_t samples = 5;
  uint64_t seed = 0;
  int64_t distractors = 16;
  int64_t values = 4;
  int64_t queries = 4;
  int64_t hops = 4;
  double threshold = 0.9;
  int resamples = 2000;
  std::string out;
  bool force = false;
  bool fresh = false;  // --new
  std::string progress = "auto";
  // coding suite (evals/coding/): problem files, sampling, the sandbox timeout; --validate
  // runs the problem set's reference solutions and mutants instead of a model.
  std::string problems;  // comma-separated JSONL files; "" = the team's set
  bool validate = false;
  double temperature = 0.8;
  double top_p = 0.95;
  int64_t max_tokens = 512;
  double code_timeout = 10;
  HttpArgs http;  // --endpoint URL --model-name NAME: the http backend instead of the engine
};

// Adds the `eval` subcommand to app; returns it.
CLI::App* add_eval_command(CLI::App& app, EvalArgs& a);
// Exit status: 0 done, 1 runtime failure, 2 bad input.
int eval_command(const EvalArgs& a);

}  // namespace dsv4::cli
