// Paired comparison of finished eval runs (`dsv4 eval compare RUN_A RUN_B [RUN_C ...]`,
// docs/evals.md "Comparing runs").
//
// Runs are comparable when they ran the same suite with the same tasks at the same generator
// versions, data hashes, lengths, depths and run seed: then every sample of A has exactly one
// twin in B (the same key task|version|length|cell|index and the same item hash: the same
// prompt). Anything else is refused with an InputError naming the run and the field.
//
// Per task x length bin, and per task x length x cell (depth or geometry class), with
// d_i = score_A,i - score_B,i over the matched samples:
//   each run's mean with its percentile-bootstrap interval (stats.h),
//   the paired difference mean(d) with a paired bootstrap interval (resampling the pairs),
//   an exact test of "no difference": binary scores (all 0/1) -> exact McNemar (two-sided
//   binomial test on the discordant pairs, p = 1/2); otherwise the exact two-sided sign test
//   on the non-zero d_i;
//   verdict: p < alpha and mean(d) > 0 -> "A better"; p < alpha and mean(d) < 0 -> "B better";
//   else "no clear difference".
// With more than two runs, each later run is compared against the first.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "evals/results.h"
#include "evals/stats.h"

namespace dsv4::evals {

// Two-sided exact binomial test of k successes in n trials at p = 1/2:
// min(1, 2 min(P(X <= k), P(X >= k))); n = 0 gives 1.
double binomial_two_sided_p(int64_t k, int64_t n);

struct PairedTest {
  std::string test;  // "mcnemar" | "sign"
  int64_t n = 0;     // pairs
  int64_t a_wins = 0, b_wins = 0, ties = 0;  // d > 0, d < 0, d = 0
  double p = 1;
};
// The exact test for the pairs (a[i], b[i]) as described above.
PairedTest paired_test(const std::vector<double>& a, const std::vector<double>& b);

struct CompareOptions {
  double alpha = 0.05;
  int resamples = kDefaultResamples;
  uint64_t seed = 0;  // bootstrap seeds derive from it and the group
};

// One finished run, read from its directory (results.json + samples.jsonl).
struct RunOnDisk {
  std::string dir;
  boost::json::object results;
  std::vector<SampleRecord> samples;
};
// InputError naming the file when results.json or samples.jsonl is missing or malformed, or
// the run is not complete.
RunOnDisk read_run(const std::string& dir);

// The comparison document ("kind": "dsv4.eval.compare"): runs (dir, model_dir, backend,
// checkpoint hash, numerics, kv_layout, endpoint / model_name, probe), and per comparison (first vs each later run) the per-bin and
// per-cell rows {task, length, cell?, n, a {mean, ci95}, b {mean, ci95}, diff {mean, ci95},
// test {name, n, a_wins, b_wins, ties, p}, verdict}.
boost::json::object compare_runs(const std::vector<RunOnDisk>& runs, const CompareOptions& o);

// A plain-text table of the per-bin rows of compare_runs' document.
std::string compare_table(const boost::json::object& doc);

}  // namespace dsv4::evals
