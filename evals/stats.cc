#include "evals/stats.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "evals/rng.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

// Linear interpolation between order statistics of sorted v at quantile q in [0, 1].
double quantile(const std::vector<double>& v, double q) {
  const double at = q * double(v.size() - 1);
  const size_t i = size_t(std::floor(at));
  const size_t j = std::min(i + 1, v.size() - 1);
  return v[i] + (at - double(i)) * (v[j] - v[i]);
}

}  // namespace

Interval bootstrap_ci(const std::vector<double>& x, uint64_t seed, int resamples, double level) {
  require(!x.empty(), "bootstrap_ci: no samples");
  require(resamples > 0, "bootstrap_ci: resamples must be positive");
  require(level > 0 && level < 1, "bootstrap_ci: level must be in (0, 1)");
  const auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  if (*mn == *mx) return {*mn, *mx};
  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<size_t>(resamples));
  for (double& m : means) {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += x[uniform_index(rng, x.size())];
    m = s / double(x.size());
  }
  std::sort(means.begin(), means.end());
  const double tail = (1 - level) / 2;
  return {quantile(means, tail), quantile(means, 1 - tail)};
}

Metric summarize(const std::vector<ScoredSample>& s, uint64_t seed, int resamples) {
  Metric m;
  m.n = int64_t(s.size());
  if (s.empty()) return m;
  std::vector<double> scores;
  double prompt_tokens = 0, prefill = 0;
  for (const auto& x : s) {
    scores.push_back(x.score);
    m.mean += x.score;
    m.chance += x.chance;
    m.copy_random += x.copy_random;
    m.copy_first += x.copy_first;
    m.seconds += x.seconds;
    prompt_tokens += double(x.prompt_tokens);
    prefill += x.prefill_seconds;
  }
  const double n = double(s.size());
  m.mean /= n;
  m.chance /= n;
  m.copy_random /= n;
  m.copy_first /= n;
  m.prefill_tokens_per_second = prefill > 0 ? prompt_tokens / prefill : 0;
  m.ci = bootstrap_ci(scores, seed, resamples);
  return m;
}

int64_t effective_length(const std::map<int64_t, Metric>& by_length, double threshold) {
  int64_t best = 0;
  for (const auto& [L, m] : by_length)
    if (m.n > 0 && m.mean >= threshold) best = std::max(best, L);
  return best;
}

}  // namespace dsv4::evals
