// The performance-regression comparator behind `dsv4 bench compare BASELINE NEW`.
//
// Each benchmark gives one sample per repetition on each side (baseline x_1..x_n, new
// y_1..y_m; all > 0). Per benchmark:
//   test      two-sided Mann-Whitney U (rank-sum) test of "same distribution".
//             U = #{(i,j): x_i > y_j} + 0.5 #{(i,j): x_i = y_j}, mean nm/2.
//             n, m <= 20: exact permutation p-value, computed by dynamic programming over
//             the sums of doubled midranks of all C(n+m, n) ways to split the pooled
//             sample: p = P(|W - E W| >= |w - E W|) for the rank sum W of the first
//             sample. Ties are handled exactly (the distribution is conditional on the
//             observed tie pattern), with no correction needed; without ties this is the
//             textbook exact test.
//             Larger samples: normal approximation with the tie-corrected variance
//             nm/12 ((N+1) - sum(t^3 - t) / (N(N-1))) and a continuity correction of 0.5.
//             (With very few distinct values the 0.5 correction is too small for the
//             coarse lattice of U and p comes out low; timings rarely tie.)
//   shift     Hodges-Lehmann estimate of the ratio new/baseline: the median of the nm
//             pairwise ratios y_j / x_i, taken on the log scale (an even count gives the
//             geometric mean of the two middle ratios, so inverting the metric inverts the
//             estimate exactly). Confidence interval at level 1 - alpha from the order
//             statistics of the pairwise ratios ([D_(k), D_(nm+1-k)], k from the no-tie
//             U distribution, exact for n, m <= 20, normal beyond).
//   outcome   slowdown = the shift seen as a time factor (1/ratio for higher-is-better
//             metrics such as the roofline share, ratio for seconds):
//               slower              p < alpha and slowdown > 1 + threshold
//               faster              p < alpha and slowdown < 1 / (1 + threshold)
//               no clear difference otherwise
//               insufficient data   fewer than min_repetitions samples on either side
//                                   (never a failure by itself; reported)
//             Benchmarks present on one side only are listed, not compared.
// A comparison fails (exit 1 of the command) only on at least one `slower`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::bench::cmp {

// ---- statistics (no external library) ----

// Midranks (1-based) of v: tied values share the mean of the ranks they occupy.
std::vector<double> midranks(const std::vector<double>& v);

// Null distribution of U for samples of sizes n and m without ties: counts[u] for
// u = 0..n*m is the number of the C(n+m, n) arrangements with U = u.
std::vector<double> u_null_counts(int n, int m);

struct RankTest {
  double u = 0;        // U of the first sample (see above)
  double p = 1;        // two-sided p-value
  bool exact = false;  // exact permutation distribution (else the normal approximation)
};

// Largest sample size (per side) for which the exact distribution is used.
inline constexpr int kExactMax = 20;

// Two-sided Mann-Whitney test of x (baseline) against y (new). Empty x or y: p = 1.
RankTest mann_whitney(const std::vector<double>& x, const std::vector<double>& y);

struct Shift {
  double ratio = 1;              // Hodges-Lehmann estimate of new / baseline
  double lo = 1, hi = 1;         // confidence interval of the ratio
};

// Hodges-Lehmann ratio new/baseline and its (1 - alpha) interval; values must be > 0.
Shift hodges_lehmann_ratio(const std::vector<double>& x, const std::vector<double>& y, double alpha);

double median(std::vector<double> v);

// ---- the comparison ----

enum class Better { Higher, Lower };

// One compared quantity: a benchmark's roofline share (or seconds), or a speedup.
struct Series {
  std::string name;
  std::vector<double> values;  // one per repetition, all > 0 and finite
  Better better = Better::Higher;
};

enum class Outcome { Faster, Slower, NoClearDifference, InsufficientData };
const char* outcome_name(Outcome o);  // "faster", "slower", "no clear difference", ...

struct CompareOptions {
  double alpha = 0.05;        // significance level of the rank test (and 1 - CI level)
  double threshold = 0.25;    // relative shift that counts (0.25: 25 % slower or faster)
  int min_repetitions = 9;    // fewer on either side: insufficient data
};

struct Result {
  std::string name;
  Better better = Better::Higher;
  int n_baseline = 0, n_new = 0;
  double baseline_median = 0, new_median = 0;
  Shift shift;                // new / baseline in the metric
  double slowdown = 1;        // the shift as a time factor (> 1: slower)
  RankTest test;
  Outcome outcome = Outcome::InsufficientData;
};

struct Comparison {
  std::string metric;                      // "roofline_share" or "seconds"
  CompareOptions options;
  std::vector<Result> results;             // in the baseline's order
  std::vector<std::string> only_baseline;  // names in the baseline only
  std::vector<std::string> only_new;       // names in the new run only
  int count(Outcome o) const;
  bool regression() const { return count(Outcome::Slower) > 0; }
};

// Compares series of the same name. Throws std::invalid_argument on a non-positive or
// non-finite value or a duplicated name (naming it).
Comparison compare(const std::vector<Series>& baseline, const std::vector<Series>& fresh,
                   const std::string& metric, const CompareOptions& opt);

// Compares one pair of samples (the per-benchmark step of compare()).
Result compare_one(const std::string& name, const std::vector<double>& x, const std::vector<double>& y,
                   Better better, const CompareOptions& opt);

// The table: benchmark, baseline median, new median, shift with CI, p-value, outcome; then
// the one-side-only names and a summary line.
std::string comparison_table(const Comparison& c);

}  // namespace dsv4::bench::cmp
