// Scoring statistics: the bootstrap interval, floors and effective length.
#include <gtest/gtest.h>

#include <cmath>

#include "evals/stats.h"
#include "reference/errors.h"

namespace dsv4::evals {
namespace {

TEST(Stats, BootstrapOfConstantScoresIsThePoint) {
  const Interval a = bootstrap_ci(std::vector<double>(50, 1.0), 1);
  EXPECT_EQ(a.lo, 1.0);
  EXPECT_EQ(a.hi, 1.0);
  const Interval b = bootstrap_ci({0.25}, 1);
  EXPECT_EQ(b.lo, 0.25);
  EXPECT_EQ(b.hi, 0.25);
  EXPECT_THROW(bootstrap_ci({}, 1), InputError);
}

TEST(Stats, BootstrapMatchesTheNormalApproximation) {
  // 100 Bernoulli scores with mean 0.5: the bootstrap distribution of the mean has
  // sd sqrt(0.25 / 100) = 0.05, so the 95 % interval is about 0.5 +- 1.96 * 0.05 = [0.402,
  // 0.598]. With 2000 resamples the percentiles move by ~0.01 (quantile noise), and
  // discreteness (means are multiples of 0.01) by 0.01: allow 0.025.
  std::vector<double> x;
  for (int i = 0; i < 100; ++i) x.push_back(i % 2);
  const Interval ci = bootstrap_ci(x, 42);
  EXPECT_NEAR(ci.lo, 0.402, 0.025);
  EXPECT_NEAR(ci.hi, 0.598, 0.025);
  const Interval again = bootstrap_ci(x, 42);
  EXPECT_EQ(ci.lo, again.lo) << "seeded: the same interval";
  EXPECT_EQ(ci.hi, again.hi);
  // A 99 % interval is wider.
  const Interval wide = bootstrap_ci(x, 42, kDefaultResamples, 0.99);
  EXPECT_LT(wide.lo, ci.lo);
  EXPECT_GT(wide.hi, ci.hi);
}

TEST(Stats, SummarizeMeansFloorsAndThroughput) {
  std::vector<ScoredSample> s(4);
  for (int i = 0; i < 4; ++i) {
    s[size_t(i)].score = i < 3 ? 1 : 0;
    s[size_t(i)].chance = 0.125;
    s[size_t(i)].copy_random = 0.2;
    s[size_t(i)].copy_first = i == 0 ? 1 : 0;
    s[size_t(i)].prompt_tokens = 1000;
    s[size_t(i)].prefill_seconds = 0.5;
    s[size_t(i)].seconds = 0.6;
  }
  const Metric m = summarize(s, 3);
  EXPECT_EQ(m.n, 4);
  EXPECT_DOUBLE_EQ(m.mean, 0.75);
  EXPECT_DOUBLE_EQ(m.chance, 0.125);
  EXPECT_DOUBLE_EQ(m.copy_random, 0.2);
  EXPECT_DOUBLE_EQ(m.copy_first, 0.25);
  EXPECT_DOUBLE_EQ(m.prefill_tokens_per_second, 2000.0);
  EXPECT_NEAR(m.seconds, 2.4, 1e-12);
  EXPECT_LE(m.ci.lo, m.mean);
  EXPECT_GE(m.ci.hi, m.mean);
}

TEST(Stats, EffectiveLengthIsTheLongestBinAtOrAboveTheThreshold) {
  auto metric = [](double mean) {
    Metric m;
    m.n = 10;
    m.mean = mean;
    return m;
  };
  std::map<int64_t, Metric> by{
      {4096, metric(1.0)}, {16384, metric(0.95)}, {65536, metric(0.5)}, {262144, metric(0.9)}};
  EXPECT_EQ(effective_length(by, 0.9), 262144)
      << "the longest bin >= threshold, not the first failure";
  EXPECT_EQ(effective_length(by, 0.96), 4096);
  EXPECT_EQ(effective_length(by, 1.01), 0);
}

}  // namespace
}  // namespace dsv4::evals
