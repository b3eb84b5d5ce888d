// Aggregation of per-sample scores (docs/evals.md "Scoring").
//   mean with a percentile-bootstrap 95 % interval: B resamples of the n scores with
//   replacement (seeded), the interval = the 2.5th and 97.5th percentiles of the B
//   resample means (linear interpolation between order statistics). n = 1 or all scores
//   equal: the interval is the point.
//   noise floors beside every mean: chance (a uniform guess), copy_random (answering with
//   a uniformly random needle's answer, target included: its expected score, exactly), and
//   copy_first (answering with the first needle in document order).
//   effective length: the longest length bin whose mean >= threshold (0 when none).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsv4::evals {

inline constexpr int kDefaultResamples = 2000;
inline constexpr double kConfidence = 0.95;
inline constexpr double kDefaultEffectiveThreshold = 0.9;

struct Interval {
  double lo = 0, hi = 0;
};

// Percentile bootstrap interval of the mean of x (non-empty) at `level`.
Interval bootstrap_ci(const std::vector<double>& x, uint64_t seed,
                      int resamples = kDefaultResamples, double level = kConfidence);

// What aggregation needs of one finished sample.
struct ScoredSample {
  double score = 0, chance = 0, copy_random = 0, copy_first = 0;
  int64_t tokens = 0;  // prompt + completion
  double seconds = 0;  // model time for the sample
  double prefill_seconds = 0;
  int64_t prompt_tokens = 0;
};

struct Metric {
  int64_t n = 0;
  double mean = 0;
  Interval ci;
  double chance = 0, copy_random = 0, copy_first = 0;  // floor means
  double seconds = 0;                                  // summed model time
  double prefill_tokens_per_second = 0;  // sum prompt tokens / sum prefill seconds (0 if no time)
};

Metric summarize(const std::vector<ScoredSample>& s, uint64_t seed,
                 int resamples = kDefaultResamples);

// The longest length whose metric mean >= threshold; 0 when none.
int64_t effective_length(const std::map<int64_t, Metric>& by_length, double threshold);

}  // namespace dsv4::evals
