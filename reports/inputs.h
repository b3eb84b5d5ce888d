// The result files a report is made from, found by their "kind" field.
//
//   dsv4.kv_claims        `dsv4 kv --table --json`: KV bytes per token vs context, the claims
//   dsv4.flops_claims     `dsv4 flops --table --json`: decode FLOPs per token vs context, claims
//   dsv4.bench            `dsv4 bench`'s bench_derived.json (+ its sibling bench.json's context:
//                         host, date, CPUs), docs/bench.md
//   dsv4.bench.compare    `dsv4 bench compare --json`: the regression verdicts
//   dsv4.eval.results     `dsv4 eval`'s results.json (docs/evals.md): per task and length bin
//                         the mean score, its bootstrap CI, the noise floors; depth and
//                         compression-geometry breakdowns; per task the per-metric aggregates
//                         "metrics_by_length" (the degradation suite, evals/degradation/)
//   dsv4.ops              `dsv4 op --list --json`: every op and its status per backend
//   dsv4.eval.compare     `dsv4 eval compare --out F`: paired comparisons of eval runs
//   dsv4.eval.cost        `dsv4 eval cost RUN ...` (RUN/cost.json): what each answer cost
//   dsv4.bench.model      `dsv4 bench --model DIR [--tp --ep]` (model_bench.json): whole-model
//                         prefill/decode time on N ranks and the share spent in collectives
//
// load_inputs() takes files and directories (searched recursively, at most kMaxDepth levels,
// for *.json). JSON files without a "kind" string, or with a kind not listed, are listed as
// ignored. A listed kind with a missing or malformed field is an InputError naming the file
// and the field ("results/kv.json: curve[3].context: expected a number").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dsv4::report {

inline constexpr int kMaxDepth = 4;

struct Claim {
  std::string claim, note;
  double ours = 0, paper = 0, difference = 0;
};

struct KvClaims {
  std::string file, unit;
  std::vector<double> contexts;
  std::map<std::string, std::vector<double>> bytes_per_token;  // model -> per context
  std::vector<Claim> claims;
};

struct FlopsClaims {
  std::string file, convention;
  std::vector<double> contexts;
  // model -> part ("linear", "attention", "indexer", "compressor", "total") -> per context
  std::map<std::string, std::map<std::string, std::vector<double>>> flops;
  std::vector<Claim> claims;
};

struct BenchRow {
  std::string name, op, model, variant, bound;
  double seconds = 0;   // median, wall clock
  double flops = 0, bytes = 0;  // per iteration
  double share = -1, share_cpu = -1;  // medians; -1: not measured
  bool target = false, target_met = false;
};

struct BenchSpeedup {
  double context = 0, measured = 0, analytic = 0, ratio = 0;
  std::string model, versus;
};

// bench_derived.json engram_overlap (bench/derive.h EngramOverlapRow): the Engram prefetch's
// overlap with compute, from one run's three parts.
struct BenchEngramOverlap {
  std::string backend, model, mode;
  double tokens = 0, copy_seconds = 0, compute_seconds = 0, both_seconds = 0, overlap = 0, hidden = 0;
};

struct BenchRun {
  std::string file;
  double sgemm_flops_per_s = 0, read_bytes_per_s = 0;
  std::vector<BenchRow> rows;
  std::vector<BenchSpeedup> speedups;
  std::vector<BenchEngramOverlap> engram_overlap;  // optional key
  std::map<std::string, std::string> context;  // from bench.json beside it, when present
};

struct CompareRow {
  std::string name, outcome;
  double ratio = 1, lo = 1, hi = 1, p = 1;
};

struct CompareRun {
  std::string file, baseline, fresh, metric;
  double threshold = 0;
  std::vector<CompareRow> rows;
  bool regression = false;
};

// One aggregate of an eval task: a length bin, or a (length, depth) / (length, class) cell.
struct EvalBin {
  double length = 0, depth = -1;  // depth -1: not a depth cell
  std::string cls;                // geometry class ("mod4=1", "window_in", ...), or empty
  double n = 0, mean = 0, lo = 0, hi = 0;
  double chance = -1, copy_random = -1, copy_first = -1;  // noise floors; -1: not given
  double tokens_per_second = -1;
};

// One entry of a task's "metrics_by_length": a named per-sample metric aggregated over the
// samples of one length bin. n samples had the metric, n_na did not (it does not apply there);
// mean, ci95, min, max are NaN when n == 0 (the file writes mean null).
struct MetricBin {
  std::string metric;  // "logits_rel_err", "needle_mass.L1", ...
  double length = 0, n = 0, n_na = 0;
  double mean = 0, lo = 0, hi = 0, min = 0, max = 0;
};

// The coding suite's tasks[].summary (evals/coding/coding_task.h): pass@k and run classes.
struct PassAtK {
  double pass1 = -1, pass10 = -1, pass100 = -1;  // -1: not defined (k > n)
};
struct CodingAggregate {
  std::string scope;  // "overall" or a language
  double problems = 0, samples = 0, wrong = 0, timeouts = 0, kills = 0, errors = 0;
  PassAtK pass;
};
struct CodingProblem {
  std::string task_id, language;
  double n = 0, c = 0;
  PassAtK pass;
  std::vector<std::pair<std::string, double>> classes;  // run class -> samples
};
struct CodingSummary {
  std::vector<CodingAggregate> aggregates;  // overall first, then per language
  std::vector<CodingProblem> problems;
};

struct EvalTask {
  std::string name, version, data_hash;
  std::optional<CodingSummary> coding;  // tasks[].summary of the coding suite
  double effective_length = 0;
  std::vector<EvalBin> by_length, by_depth, by_class;
  std::vector<MetricBin> metrics_by_length;  // empty when the file has none
};

struct EvalRun {
  std::string file, suite, format, probe_label, model_dir, backend, checkpoint_hash, revision, machine;
  std::string numerics;     // model.numerics ("official", "exact"); empty when not given
  std::string probe_knobs;  // "retrieval=csa S=12 ..." for probes, else empty
  std::map<std::string, std::string> probe_knob_values;  // the same knobs by name
  std::vector<EvalTask> tasks;
};

// `dsv4 op --list --json`: per op, its status per backend as the binary that wrote the file
// states it ("available (CPU reference)", "kernel, runs in dsv4 op", "compiled, not run", "not
// in this build", "no kernel yet"), shown verbatim.
struct OpStatus {
  std::string name, summary;
  std::vector<std::pair<std::string, std::string>> backends;  // in the file's order
};

struct OpsList {
  std::string file;
  std::vector<OpStatus> ops;
};

// `dsv4 eval compare`: one paired comparison row (a task x length bin) of run A vs run B.
struct PairedRow {
  std::string task, verdict, test;
  double length = 0, n = 0;
  double a = 0, a_lo = 0, a_hi = 0, b = 0, b_lo = 0, b_hi = 0, diff = 0, diff_lo = 0, diff_hi = 0, p = 1;
};

struct EvalComparison {
  std::string file, a, b;  // run directories
  std::string a_model, b_model;  // "dir (backend, numerics)" as the file describes the runs
  std::vector<PairedRow> rows;   // by_length
};

// `dsv4 eval cost`: one task x length bin of a priced run.
struct CostRow {
  std::string task;
  double length = 0, n = 0, cost_per_sample = 0, mean_score = 0;
};

struct RunCost {
  std::string file, run, price, date, source, currency;
  double total = 0;
  std::vector<CostRow> rows;
};

// `dsv4 bench --model DIR [--tp T --ep E]` (OUT/model_bench.json, kind dsv4.bench.model,
// bench/model_bench.h): one model's prefill and decode time on N ranks.
struct ModelBenchRun {
  std::string file, config, transport, numerics, kv_layout;
  double ranks = 1, tp = 1, ep = 1, prompt = 0, decode = 0;
  double prefill_seconds = 0, prefill_tokens_per_s = 0, prefill_comm_share = 0;
  double decode_seconds = 0, decode_ms_per_token = 0, decode_comm_share = 0;
};

struct Inputs {
  std::optional<KvClaims> kv;
  std::optional<FlopsClaims> flops;
  std::vector<BenchRun> bench;
  std::vector<CompareRun> compare;
  std::vector<EvalRun> evals;
  std::optional<OpsList> ops;
  std::vector<EvalComparison> comparisons;  // one per (first run, later run) of each file
  std::vector<RunCost> costs;
  std::vector<ModelBenchRun> model_bench;
  std::vector<std::string> used;     // files read, in order
  std::vector<std::string> ignored;  // JSON files without a known kind
};

// Throws InputError: a path that does not exist, an unreadable or non-JSON file of a known
// kind, a missing/malformed field, two files of a kind that must be unique (kv, flops, ops).
Inputs load_inputs(const std::vector<std::string>& paths);

}  // namespace dsv4::report
