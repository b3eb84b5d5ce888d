// bench/compare (the regression comparator) and `dsv4 bench compare` through the binary.
// Oracles: hand-computed U distributions and published critical values; a brute-force
// permutation test written here (every split of the pooled sample); Monte Carlo over many
// seeds for the false-positive rate and the interval's coverage, with binomial bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iomanip>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/compare.h"
#include "tests/cli/cli_harness.h"

namespace dsv4::bench::cmp {
namespace {

// ---- oracles written here ----

double choose(int n, int k) {
  double c = 1;
  for (int i = 1; i <= k; ++i) c = c * (n - k + i) / i;
  return std::round(c);
}

// Midrank of each value, O(N^2): #{smaller} + (#{equal} + 1) / 2.
std::vector<double> naive_midranks(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    double less = 0, equal = 0;
    for (double w : v) {
      less += w < v[i];
      equal += w == v[i];
    }
    r[i] = less + (equal + 1) / 2;
  }
  return r;
}

// Two-sided permutation p-value of the rank sum of the first n values, by enumerating every
// n-subset of the pooled sample: P(|W - E W| >= |w - E W|).
double brute_force_p(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<double> pooled(x);
  pooled.insert(pooled.end(), y.begin(), y.end());
  const auto r = naive_midranks(pooled);
  const int n = static_cast<int>(x.size()), N = static_cast<int>(pooled.size());
  double w = 0;
  for (int i = 0; i < n; ++i) w += r[i];
  const double mean = n * (N + 1) / 2.0;
  const double dev = std::abs(w - mean);
  double extreme = 0, total = 0;
  for (uint32_t mask = 0; mask < (1u << N); ++mask) {
    if (__builtin_popcount(mask) != n) continue;
    double s = 0;
    for (int k = 0; k < N; ++k)
      if (mask >> k & 1) s += r[k];
    total += 1;
    extreme += std::abs(s - mean) >= dev - 1e-9;  // sums of half-integers: exact up to rounding
  }
  return extreme / total;
}

// U by its definition: pairs where the baseline value is larger, ties counting one half.
double naive_u(const std::vector<double>& x, const std::vector<double>& y) {
  double u = 0;
  for (double a : x)
    for (double b : y) u += a > b ? 1.0 : a == b ? 0.5 : 0.0;
  return u;
}

std::vector<double> lognormal(size_t n, std::mt19937_64& g, double sigma, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<double> v(n);
  for (auto& x : v) x = scale * std::exp(d(g));
  return v;
}

// Binomial bound: the rate of an event of probability at most p over K independent trials
// exceeds p + 3 sqrt(p (1 - p) / K) with probability ~0.1 % (normal approximation, 3 sigma).
double binomial_upper(double p, int K) { return p + 3 * std::sqrt(p * (1 - p) / K); }

// ---- the U distribution ----

TEST(UDistribution, HandComputedSmallCases) {
  // n = m = 1: U = 0 or 1. n = m = 2: the 6 orders of xxyy give U = 0,1,2,2,3,4.
  EXPECT_EQ(u_null_counts(1, 1), (std::vector<double>{1, 1}));
  EXPECT_EQ(u_null_counts(2, 2), (std::vector<double>{1, 1, 2, 1, 1}));
  // n = 2, m = 3: U = number of (x, y) pairs with x above y; 10 orders.
  EXPECT_EQ(u_null_counts(2, 3), (std::vector<double>{1, 1, 2, 2, 2, 1, 1}));
  // n = m = 3: partitions of u into at most 3 parts of at most 3 (Gaussian binomial (6 3)).
  EXPECT_EQ(u_null_counts(3, 3), (std::vector<double>{1, 1, 2, 3, 3, 3, 3, 2, 1, 1}));
  EXPECT_EQ(u_null_counts(0, 4), (std::vector<double>{1}));
}

TEST(UDistribution, TotalsAndSymmetry) {
  for (int n = 1; n <= kExactMax; ++n)
    for (int m = 1; m <= kExactMax; ++m) {
      const auto c = u_null_counts(n, m);
      ASSERT_EQ(c.size(), static_cast<size_t>(n * m + 1));
      double total = 0;
      for (size_t u = 0; u < c.size(); ++u) {
        total += c[u];
        ASSERT_EQ(c[u], c[c.size() - 1 - u]) << n << "," << m << " u=" << u;  // U and nm - U
      }
      EXPECT_EQ(total, choose(n + m, n)) << n << "," << m;
      EXPECT_EQ(c, u_null_counts(m, n));
    }
}

// Largest u with P(U <= u) <= a (the lower critical value of the tables), -1 if none.
int critical_value(int n, int m, double a) {
  const auto c = u_null_counts(n, m);
  const double total = choose(n + m, n);
  double cdf = 0;
  int crit = -1;
  for (size_t u = 0; u < c.size(); ++u) {
    cdf += c[u];
    if (cdf / total > a) break;
    crit = static_cast<int>(u);
  }
  return crit;
}

TEST(UDistribution, PublishedCriticalValues) {
  // Standard Mann-Whitney tables, two-sided alpha = 0.05 (P(U <= u) <= 0.025), n1 = n2.
  const int equal[][2] = {{5, 2},   {6, 5},   {7, 8},   {8, 13},  {9, 17},  {10, 23}, {11, 30}, {12, 37},
                          {13, 45}, {14, 55}, {15, 64}, {16, 75}, {17, 87}, {18, 99}, {19, 113}, {20, 127}};
  for (const auto& e : equal) EXPECT_EQ(critical_value(e[0], e[0], 0.025), e[1]) << "n = m = " << e[0];
  // Unequal sizes, same table: n1 = 5 against n2 = 6..10, and 9 against 10.
  const int five[][2] = {{6, 3}, {7, 5}, {8, 6}, {9, 7}, {10, 8}};
  for (const auto& e : five) EXPECT_EQ(critical_value(5, e[0], 0.025), e[1]) << "5 vs " << e[0];
  EXPECT_EQ(critical_value(9, 10, 0.025), 20);
  // n = m = 4: only U = 0 is in the tail (P(U = 0) = 1/70, P(U <= 1) = 2/70 > 0.025).
  EXPECT_EQ(critical_value(4, 4, 0.025), 0);
  EXPECT_EQ(critical_value(3, 3, 0.025), -1);  // 1/20 > 0.025
}

TEST(Midranks, TiesShareTheMeanRank) {
  EXPECT_EQ(midranks({3, 1, 4, 1, 5}), (std::vector<double>{3, 1.5, 4, 1.5, 5}));
  EXPECT_EQ(midranks({2, 2, 2}), (std::vector<double>{2, 2, 2}));
  std::mt19937_64 g(7);
  std::uniform_int_distribution<int> d(1, 6);
  std::vector<double> v(30);
  for (auto& x : v) x = d(g);
  EXPECT_EQ(midranks(v), naive_midranks(v));
}

// ---- p-values ----

TEST(MannWhitney, HandComputedPValues) {
  // Complete separation, 3 vs 3: U = 0, P(U = 0) = 1/20, two-sided 2/20.
  auto t = mann_whitney({1, 2, 3}, {4, 5, 6});
  EXPECT_EQ(t.u, 0);
  EXPECT_TRUE(t.exact);
  EXPECT_DOUBLE_EQ(t.p, 0.1);
  // 2 vs 2 separated: 2/6. 9 vs 9 separated (the 3x case): 2 / C(18, 9) = 2 / 48620.
  EXPECT_DOUBLE_EQ(mann_whitney({3, 4}, {1, 2}).p, 1.0 / 3);
  EXPECT_EQ(mann_whitney({3, 4}, {1, 2}).u, 4);
  std::vector<double> a(9), b(9);
  for (int i = 0; i < 9; ++i) a[i] = 1 + i, b[i] = 100 + i;
  EXPECT_DOUBLE_EQ(mann_whitney(a, b).p, 2.0 / 48620);
  // Interleaved: U = nm/2 exactly -> p = 1.
  EXPECT_DOUBLE_EQ(mann_whitney({1, 4, 5, 8}, {2, 3, 6, 7}).p, 1.0);
  EXPECT_EQ(mann_whitney({}, {1, 2}).p, 1.0);
}

TEST(MannWhitney, MatchesBruteForcePermutationWithoutTies) {
  std::mt19937_64 g(11);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 1 + trial % 8, m = 2 + (trial * 5) % 8;
    const double shift = (trial % 4) * 0.4;
    const auto x = lognormal(n, g, 0.5), y = lognormal(m, g, 0.5, std::exp(shift));
    const auto t = mann_whitney(x, y);
    EXPECT_EQ(t.u, naive_u(x, y));
    EXPECT_NEAR(t.p, brute_force_p(x, y), 1e-12) << "n=" << n << " m=" << m << " trial " << trial;
  }
}

TEST(MannWhitney, MatchesBruteForcePermutationWithTies) {
  // Integer values on few levels: many ties, handled by the exact conditional distribution.
  std::mt19937_64 g(12);
  for (int trial = 0; trial < 40; ++trial) {
    const int n = 2 + trial % 7, m = 2 + (trial * 3) % 8, levels = 2 + trial % 4;
    std::uniform_int_distribution<int> dx(1, levels), dy(1 + trial % 2, levels + trial % 2);
    std::vector<double> x(n), y(m);
    for (auto& v : x) v = dx(g);
    for (auto& v : y) v = dy(g);
    const auto t = mann_whitney(x, y);
    EXPECT_TRUE(t.exact);
    EXPECT_EQ(t.u, naive_u(x, y));
    EXPECT_NEAR(t.p, brute_force_p(x, y), 1e-12) << "n=" << n << " m=" << m << " trial " << trial;
  }
}

TEST(MannWhitney, TiesAtTheExtremes) {
  // Every value equal: no evidence, p = 1 (exact and normal paths).
  EXPECT_EQ(mann_whitney(std::vector<double>(9, 2.0), std::vector<double>(9, 2.0)).p, 1.0);
  EXPECT_EQ(mann_whitney(std::vector<double>(25, 2.0), std::vector<double>(25, 2.0)).p, 1.0);
  // Two tied blocks, perfectly separated: only 2 of C(18, 9) splits are as extreme.
  EXPECT_DOUBLE_EQ(mann_whitney(std::vector<double>(9, 1.0), std::vector<double>(9, 3.0)).p, 2.0 / 48620);
  // Half of one side tied with the other side.
  const std::vector<double> x = {1, 1, 1, 2, 2}, y = {2, 2, 3, 3, 3, 3};
  EXPECT_NEAR(mann_whitney(x, y).p, brute_force_p(x, y), 1e-12);
}

TEST(MannWhitney, NormalApproximationBeyondTheExactRange) {
  // At n = m = 20 (the largest exact case) the approximation formula agrees with the exact
  // p within 0.01; beyond, it matches a Monte Carlo permutation estimate.
  std::mt19937_64 g(13);
  for (int trial = 0; trial < 5; ++trial) {
    const int n = 30, m = 26;
    const auto x = lognormal(n, g, 0.3), y = lognormal(m, g, 0.3, 1.0 + 0.05 * trial);
    const auto t = mann_whitney(x, y);
    EXPECT_FALSE(t.exact);
    std::vector<double> pooled(x);
    pooled.insert(pooled.end(), y.begin(), y.end());
    const auto r = naive_midranks(pooled);
    double w = 0;
    for (int i = 0; i < n; ++i) w += r[i];
    const double mean = n * (n + m + 1) / 2.0, dev = std::abs(w - mean);
    // 20000 random splits: standard error <= 0.0036.
    const int K = 20000;
    int extreme = 0;
    std::vector<int> idx(n + m);
    for (int k = 0; k < K; ++k) {
      std::iota(idx.begin(), idx.end(), 0);
      std::shuffle(idx.begin(), idx.end(), g);
      double s = 0;
      for (int i = 0; i < n; ++i) s += r[idx[i]];
      extreme += std::abs(s - mean) >= dev - 1e-9;
    }
    EXPECT_NEAR(t.p, double(extreme) / K, 0.02) << "trial " << trial;
  }
}

TEST(MannWhitney, NormalApproximationWithTies) {
  // Five levels, 30 vs 30: the tie correction shrinks the variance by 3 %, which moves p by
  // 0.010 here (0.2416 with it, 0.2519 without); a Monte Carlo permutation estimate with
  // 100000 splits (standard error 0.0014) tells them apart at tolerance 0.005.
  // (With only two or three levels the 0.5 continuity correction is too small for the
  // coarse lattice of U and the approximation is rougher; timings rarely tie.)
  const int cx[5] = {6, 6, 6, 6, 6}, cy[5] = {3, 5, 6, 8, 8};
  std::vector<double> x, y;
  for (int level = 0; level < 5; ++level) {
    x.insert(x.end(), cx[level], 1.0 + level);
    y.insert(y.end(), cy[level], 1.0 + level);
  }
  const auto t = mann_whitney(x, y);
  EXPECT_FALSE(t.exact);
  std::vector<double> pooled(x);
  pooled.insert(pooled.end(), y.begin(), y.end());
  const auto r = naive_midranks(pooled);
  double w = 0;
  for (int i = 0; i < 30; ++i) w += r[i];
  const double mean = 30 * 61 / 2.0, dev = std::abs(w - mean);
  std::mt19937_64 g(14);
  const int K = 100000;
  int extreme = 0;
  std::vector<int> idx(60);
  std::iota(idx.begin(), idx.end(), 0);
  for (int k = 0; k < K; ++k) {
    std::shuffle(idx.begin(), idx.end(), g);
    double s = 0;
    for (int i = 0; i < 30; ++i) s += r[idx[i]];
    extreme += std::abs(s - mean) >= dev - 1e-9;
  }
  EXPECT_NEAR(t.p, double(extreme) / K, 0.005);
}

// ---- Hodges-Lehmann ----

TEST(HodgesLehmann, HandComputedRatio) {
  // Pairwise ratios y/x: 2 4 8 / 1 2 4 / .5 1 2 -> sorted .5 1 1 2 2 2 4 4 8, median 2.
  const auto s = hodges_lehmann_ratio({1, 2, 4}, {2, 4, 8}, 0.05);
  EXPECT_NEAR(s.ratio, 2.0, 1e-12);
  // 3 vs 3 has no 95 % interval narrower than the range (k = 1): [0.5, 8].
  EXPECT_NEAR(s.lo, 0.5, 1e-12);
  EXPECT_NEAR(s.hi, 8.0, 1e-12);
  // Even count: geometric mean of the middle two ratios. x = {1, 2}, y = {3, 8}: 1.5 3 4 8.
  EXPECT_NEAR(hodges_lehmann_ratio({1, 2}, {3, 8}, 0.05).ratio, std::sqrt(3.0 * 4.0), 1e-12);
}

TEST(HodgesLehmann, IntervalIsTheTabulatedOrderStatistic) {
  // n = m = 9, 95 %: critical value 17, so the interval is [D(18), D(64)] of the 81 ratios.
  std::mt19937_64 g(21);
  const auto x = lognormal(9, g, 0.2), y = lognormal(9, g, 0.2, 1.3);
  std::vector<double> d;
  for (double a : x)
    for (double b : y) d.push_back(b / a);
  std::sort(d.begin(), d.end());
  const auto s = hodges_lehmann_ratio(x, y, 0.05);
  EXPECT_NEAR(s.lo, d[17], 1e-12 * d[17]);
  EXPECT_NEAR(s.hi, d[63], 1e-12 * d[63]);
  EXPECT_NEAR(s.ratio, d[40], 1e-12 * d[40]);
  // Scaling the new sample scales the estimate; swapping the sides inverts it.
  std::vector<double> y3(y);
  for (auto& v : y3) v *= 3;
  EXPECT_NEAR(hodges_lehmann_ratio(x, y3, 0.05).ratio, 3 * s.ratio, 1e-12);
  EXPECT_NEAR(hodges_lehmann_ratio(y, x, 0.05).ratio, 1 / s.ratio, 1e-12);
}

TEST(HodgesLehmann, IntervalCoversTheTrueRatio) {
  // y = 1.4 x in distribution: the 95 % interval covers 1.4 in at least ~95 % of 1000 seeds.
  for (int n : {9, 25}) {
    std::mt19937_64 g(22 + n);
    const int K = 1000;
    int covered = 0;
    for (int k = 0; k < K; ++k) {
      const auto x = lognormal(n, g, 0.3), y = lognormal(n, g, 0.3, 1.4);
      const auto s = hodges_lehmann_ratio(x, y, 0.05);
      covered += s.lo <= 1.4 && 1.4 <= s.hi;
    }
    EXPECT_GE(double(covered) / K, 1 - binomial_upper(0.05, K)) << "n = " << n;
  }
}

// ---- outcomes ----

CompareOptions defaults() { return CompareOptions{}; }

TEST(Outcome, IdenticalSamplesShowNoDifference) {
  std::mt19937_64 g(31);
  const auto x = lognormal(9, g, 0.1);
  const auto r = compare_one("op", x, x, Better::Higher, defaults());
  EXPECT_EQ(r.outcome, Outcome::NoClearDifference);
  EXPECT_DOUBLE_EQ(r.test.p, 1.0);
  EXPECT_NEAR(r.shift.ratio, 1.0, 1e-12);
}

TEST(Outcome, ThreeTimesSlowerIsSlower) {
  std::mt19937_64 g(32);
  const auto x = lognormal(9, g, 0.1, 0.3);
  const auto y = lognormal(9, g, 0.1, 0.1);  // roofline share / 3: three times slower
  const auto r = compare_one("op", x, y, Better::Higher, defaults());
  EXPECT_EQ(r.outcome, Outcome::Slower);
  EXPECT_NEAR(r.slowdown, 3.0, 0.3);
  EXPECT_LT(r.test.p, 1e-4);
  // The same in seconds (lower is better): times x 3.
  const auto t = compare_one("op", y, x, Better::Lower, defaults());
  EXPECT_EQ(t.outcome, Outcome::Slower);
  // And the other way round: faster.
  EXPECT_EQ(compare_one("op", y, x, Better::Higher, defaults()).outcome, Outcome::Faster);
}

TEST(Outcome, SignificantButSmallShiftIsNotARegression) {
  // A clear 10 % shift (p tiny) stays under the 25 % threshold: no clear difference.
  std::mt19937_64 g(33);
  const auto x = lognormal(15, g, 0.01), y = lognormal(15, g, 0.01, 1 / 1.1);
  const auto r = compare_one("op", x, y, Better::Higher, defaults());
  EXPECT_LT(r.test.p, 1e-4);
  EXPECT_EQ(r.outcome, Outcome::NoClearDifference);
  CompareOptions tight;
  tight.threshold = 0.05;
  EXPECT_EQ(compare_one("op", x, y, Better::Higher, tight).outcome, Outcome::Slower);
}

TEST(Outcome, LargeButNoisyShiftIsNotConfirmed) {
  // 9 a side with noise spanning 25x: a 1.5x shift of every value is not significant, so
  // not confirmed, although the estimated shift exceeds the threshold.
  const std::vector<double> x = {1, 0.2, 5, 0.3, 4, 0.5, 3, 0.25, 2};
  std::vector<double> y(x);
  for (auto& v : y) v /= 1.5;
  std::swap(y[0], y[1]);
  const auto r = compare_one("op", x, y, Better::Higher, defaults());
  EXPECT_GE(r.test.p, 0.05);
  EXPECT_EQ(r.outcome, Outcome::NoClearDifference);
}

TEST(Outcome, SameDistributionNoiseRarelyFlags) {
  // Many seeds of the same distribution: p < alpha at most alpha of the time (the exact test
  // is conservative) and a flagged outcome (needs p < alpha and a 25 % shift) rarer still.
  for (int n : {9, 12, 30}) {
    for (double sigma : {0.05, 0.3}) {
      std::mt19937_64 g(41 + n);
      const int K = 2000;
      int significant = 0, flagged = 0, slower = 0;
      for (int k = 0; k < K; ++k) {
        const auto x = lognormal(n, g, sigma), y = lognormal(n, g, sigma);
        const auto r = compare_one("op", x, y, Better::Higher, defaults());
        significant += r.test.p < 0.05;
        flagged += r.outcome == Outcome::Slower || r.outcome == Outcome::Faster;
        slower += r.outcome == Outcome::Slower;
      }
      EXPECT_LE(double(significant) / K, binomial_upper(0.05, K)) << "n " << n << " sigma " << sigma;
      EXPECT_LE(double(flagged) / K, binomial_upper(0.05, K)) << "n " << n << " sigma " << sigma;
      EXPECT_LE(double(slower) / K, binomial_upper(0.025, K)) << "n " << n << " sigma " << sigma;
      // Not vacuous: the test does reject sometimes under the null.
      EXPECT_GT(significant, 0);
    }
  }
}

TEST(Outcome, PowerAgainstAThreefoldSlowdown) {
  std::mt19937_64 g(51);
  const int K = 500;
  int slower = 0;
  for (int k = 0; k < K; ++k) {
    const auto x = lognormal(9, g, 0.3), y = lognormal(9, g, 0.3, 1.0 / 3);
    slower += compare_one("op", x, y, Better::Higher, defaults()).outcome == Outcome::Slower;
  }
  EXPECT_GE(slower, K - 5);
}

TEST(Outcome, FewerThanNineRepetitionsIsInsufficientData) {
  std::mt19937_64 g(61);
  const auto x = lognormal(8, g, 0.05), y = lognormal(9, g, 0.05, 1.0 / 3);
  const auto r = compare_one("op", x, y, Better::Higher, defaults());
  EXPECT_EQ(r.outcome, Outcome::InsufficientData);
  EXPECT_NEAR(r.slowdown, 3, 0.3);  // still estimated and shown
  Comparison c = compare({{"op", x, Better::Higher}}, {{"op", y, Better::Higher}}, "roofline_share", defaults());
  EXPECT_FALSE(c.regression());
  EXPECT_NE(comparison_table(c).find("insufficient data (8 vs 9 repetitions)"), std::string::npos);
}

TEST(Compare, OneSidedNamesAreListedAndBadValuesRefused) {
  std::mt19937_64 g(71);
  const auto a = lognormal(9, g, 0.05), b = lognormal(9, g, 0.05);
  const std::vector<Series> base = {{"a", a, Better::Higher}, {"old", a, Better::Higher}};
  const std::vector<Series> fresh = {{"new", b, Better::Higher}, {"a", b, Better::Higher}};
  const auto c = compare(base, fresh, "roofline_share", defaults());
  ASSERT_EQ(c.results.size(), 1u);
  EXPECT_EQ(c.results[0].name, "a");
  EXPECT_EQ(c.only_baseline, std::vector<std::string>{"old"});
  EXPECT_EQ(c.only_new, std::vector<std::string>{"new"});
  const auto table = comparison_table(c);
  EXPECT_NE(table.find("only in the baseline (not compared): old"), std::string::npos);
  EXPECT_NE(table.find("only in the new run (not compared): new"), std::string::npos);
  EXPECT_NE(table.find("no confirmed regression"), std::string::npos);
  std::vector<double> bad(a);
  bad[3] = 0;
  EXPECT_THROW(compare({{"a", bad, Better::Higher}}, fresh, "x", defaults()), std::invalid_argument);
  bad[3] = std::nan("");
  EXPECT_THROW(compare(base, {{"a", bad, Better::Higher}}, "x", defaults()), std::invalid_argument);
  EXPECT_THROW(compare({base[0], base[0]}, fresh, "x", defaults()), std::invalid_argument);
}

// ---- through the binary: dsv4 bench compare ----

using dsv4::test::run_dsv4;
using dsv4::test::TempDir;

struct Bench {
  std::string name;
  std::vector<double> share;
};

std::string numbers(const std::vector<double>& v) {
  std::ostringstream s;
  s << std::setprecision(17) << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  return s.str() + "]";
}

// A bench_derived.json (bench convention) with seconds = 1e-3 / share; with `cpu`, also the
// CPU-time fields (cpu_seconds = 0.9 seconds, roofline_share_cpu = share / 0.9).
std::string derived_json(const std::vector<Bench>& benches, const std::vector<double>& speedup, const char* kind = "dsv4.bench",
                         bool cpu = false) {
  std::ostringstream s;
  s << std::setprecision(17);
  s << "{\"kind\": \"" << kind << "\", \"ceilings\": {\"sgemm_flops_per_s\": 5e10, \"read_bytes_per_s\": 1e10},\n"
    << " \"benchmarks\": [";
  for (size_t i = 0; i < benches.size(); ++i) {
    std::vector<double> sec;
    for (double x : benches[i].share) sec.push_back(x > 0 ? 1e-3 / x : 1.0);  // finite JSON
    s << (i ? ",\n  " : "\n  ") << "{\"name\": \"" << benches[i].name << "\", \"seconds\": " << numbers(sec)
      << ", \"flops_per_iter\": 1e6, \"bytes_per_iter\": 2e6, \"roofline_share\": " << numbers(benches[i].share);
    if (cpu) {
      std::vector<double> cs, csh;
      for (double x : sec) cs.push_back(0.9 * x);
      for (double x : benches[i].share) csh.push_back(x / 0.9);
      s << ", \"cpu_seconds\": " << numbers(cs) << ", \"roofline_share_cpu\": " << numbers(csh);
    }
    s << "}";
  }
  // A single speedup is a scalar `measured`; several are `measured_per_repetition` beside
  // their median.
  s << "],\n \"speedups\": [{\"context\": 131072, \"model\": \"v4-flash\", \"versus\": \"v3.2\", \"measured\": "
    << median(speedup);
  if (speedup.size() > 1) s << ", \"measured_per_repetition\": " << numbers(speedup);
  s << ", \"analytic\": 3.5, \"ratio\": 0.9}]}\n";
  return s.str();
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<Bench> suite(std::mt19937_64& g, double scale) {
  return {{"attention_csa_decode/v4-flash/ctx:4096", lognormal(9, g, 0.08, 0.3 * scale)},
          {"indexer_decode/v4-flash/ctx:4096", lognormal(9, g, 0.08, 0.5 * scale)},
          {"ceiling_read/cpu/mib:256", lognormal(9, g, 0.02, 1.0)}};
}

TEST(BenchCompareCli, SameDistributionPassesAndThreefoldSlowerFails) {
  TempDir tmp;
  std::mt19937_64 g(81);
  write(tmp.file("base.json"), derived_json(suite(g, 1), lognormal(9, g, 0.05, 3)));
  write(tmp.file("same.json"), derived_json(suite(g, 1), lognormal(9, g, 0.05, 3)));
  write(tmp.file("slow.json"), derived_json(suite(g, 1.0 / 3), lognormal(9, g, 0.05, 1)));

  auto r = run_dsv4("bench compare " + tmp.file("base.json") + " " + tmp.file("same.json"), tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("no confirmed regression"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("speedup/v4-flash/vs:v3.2/ctx:131072"), std::string::npos) << r.out;

  r = run_dsv4("bench compare " + tmp.file("base.json") + " " + tmp.file("slow.json"), tmp);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("REGRESSION: 3 benchmark(s)"), std::string::npos) << r.out;  // 2 ops + the speedup
  EXPECT_NE(r.out.find("attention_csa_decode/v4-flash/ctx:4096"), std::string::npos);

  // Absolute times on request: seconds = 1e-3 / share, three times longer.
  r = run_dsv4("bench compare --metric seconds " + tmp.file("base.json") + " " + tmp.file("slow.json"), tmp);
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("metric: seconds"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("speedup/"), std::string::npos) << r.out;  // speedups are share-mode only

  // The reverse direction is faster, not a failure.
  r = run_dsv4("bench compare " + tmp.file("slow.json") + " " + tmp.file("base.json"), tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("faster"), std::string::npos) << r.out;

  // JSON output.
  r = run_dsv4("bench compare --json " + tmp.file("base.json") + " " + tmp.file("slow.json"), tmp);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(dsv4::test::count_lines(r.out), 1) << r.out;
  EXPECT_NE(r.out.find("\"kind\":\"dsv4.bench.compare\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"regression\":true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"outcome\":\"slower\""), std::string::npos) << r.out;
}

TEST(BenchCompareCli, CpuTimeMetricsWhenTheRunHasThem) {
  TempDir tmp;
  std::mt19937_64 g(84);
  write(tmp.file("base.json"), derived_json(suite(g, 1), {3.0}, "dsv4.bench", true));
  write(tmp.file("same.json"), derived_json(suite(g, 1), {3.0}, "dsv4.bench", true));
  write(tmp.file("slow.json"), derived_json(suite(g, 1.0 / 3), {3.0}, "dsv4.bench", true));
  write(tmp.file("wall.json"), derived_json(suite(g, 1), {3.0}));  // no CPU-time fields
  for (const char* metric : {"cpu_share", "cpu_seconds"}) {
    auto r = run_dsv4(std::string("bench compare --metric ") + metric + " " + tmp.file("base.json") + " " + tmp.file("same.json"), tmp);
    EXPECT_EQ(r.status, 0) << metric << r.out << r.err;
    r = run_dsv4(std::string("bench compare --metric ") + metric + " " + tmp.file("base.json") + " " + tmp.file("slow.json"), tmp);
    EXPECT_EQ(r.status, 1) << metric << r.out << r.err;
    EXPECT_NE(r.out.find("REGRESSION"), std::string::npos) << r.out;
    r = run_dsv4(std::string("bench compare --metric ") + metric + " " + tmp.file("base.json") + " " + tmp.file("wall.json"), tmp);
    EXPECT_EQ(r.status, 2) << metric << r.out << r.err;
    const std::string field = std::string(metric) == "cpu_share" ? "roofline_share_cpu" : "cpu_seconds";
    EXPECT_NE(r.err.find("wall.json: benchmarks[0]." + field + ": missing"), std::string::npos) << r.err;
  }
}

TEST(BenchCompareCli, InsufficientAndOneSidedAreReportedNotFailed) {
  TempDir tmp;
  std::mt19937_64 g(82);
  auto base = suite(g, 1);
  auto slow = suite(g, 1.0 / 3);
  for (auto& b : slow) b.share.resize(5);  // 3x slower, but only 5 repetitions
  slow.push_back({"brand_new/v4-pro/ctx:4096", lognormal(9, g, 0.1)});
  base.push_back({"retired/v3/ctx:4096", lognormal(9, g, 0.1)});
  write(tmp.file("base.json"), derived_json(base, {3.0}));
  write(tmp.file("slow.json"), derived_json(slow, {1.0}));
  const auto r = run_dsv4("bench compare " + tmp.file("base.json") + " " + tmp.file("slow.json"), tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("insufficient data (9 vs 5 repetitions)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("insufficient data (1 vs 1 repetitions)"), std::string::npos) << r.out;  // scalar speedup
  EXPECT_NE(r.out.find("only in the baseline (not compared): retired/v3/ctx:4096"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("only in the new run (not compared): brand_new/v4-pro/ctx:4096"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("were not judged"), std::string::npos) << r.out;
}

TEST(BenchCompareCli, BadInputExitsTwoNamingFileAndField) {
  TempDir tmp;
  std::mt19937_64 g(83);
  const std::string good = tmp.file("good.json");
  write(good, derived_json(suite(g, 1), {3.0}));
  auto suite_with = [&](const std::function<void(std::vector<Bench>&)>& edit) {
    auto s = suite(g, 1);
    edit(s);
    return derived_json(s, {3.0});
  };
  std::string zero = suite_with([](std::vector<Bench>& s) { s[1].share[4] = 0; });
  std::string dup = suite_with([](std::vector<Bench>& s) { s[2].name = s[0].name; });
  std::string no_share = derived_json(suite(g, 1), {3.0});
  no_share.replace(no_share.find("\"roofline_share\""), 16, "\"share\"");
  const struct {
    const char* file;
    std::string text;
    const char* expect;  // in the one stderr line besides the file name
  } cases[] = {
      {"trunc.json", "{\"kind\": \"dsv4.bench\", \"benchmarks\": [", "not valid JSON"},
      {"kind.json", derived_json(suite(g, 1), {3.0}, "dsv4.run"), "kind: expected \"dsv4.bench\""},
      {"nokind.json", "{\"benchmarks\": []}", "kind: missing"},
      {"array.json", "[1, 2]", "expected an object"},
      {"zero.json", zero, "benchmarks[1].roofline_share[4]: 0 is not a positive finite number"},
      {"noshare.json", no_share, "benchmarks[0].roofline_share: missing"},
      {"dup.json", dup, "benchmarks[2].name: duplicate name"},
      {"nobench.json", "{\"kind\": \"dsv4.bench\"}", "benchmarks: missing"},
  };
  for (const auto& c : cases) {
    write(tmp.file(c.file), c.text);
    for (bool new_side : {false, true}) {
      const std::string args = new_side ? good + " " + tmp.file(c.file) : tmp.file(c.file) + " " + good;
      const auto r = run_dsv4("bench compare " + args, tmp);
      EXPECT_EQ(r.status, 2) << c.file << ": " << r.out << r.err;
      EXPECT_EQ(dsv4::test::count_lines(r.err), 1) << r.err;
      EXPECT_NE(r.err.find(c.file), std::string::npos) << r.err;
      EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.file << ": " << r.err;
    }
  }
  // Unreadable file; unknown metric.
  auto r = run_dsv4("bench compare " + good + " " + tmp.file("absent.json"), tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("absent.json: cannot read"), std::string::npos) << r.err;
  r = run_dsv4("bench compare --metric flops " + good + " " + good, tmp);
  EXPECT_EQ(r.status, 2) << r.err;
  // Ceilings of 0 (not measured in that run) are not bad input: the shares are what counts.
  std::string no_ceilings = derived_json(suite(g, 1), {3.0});
  no_ceilings.replace(no_ceilings.find("5e10"), 4, "0");
  write(tmp.file("noceil.json"), no_ceilings);
  r = run_dsv4("bench compare " + good + " " + tmp.file("noceil.json"), tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  // The good file against itself: fine.
  r = run_dsv4("bench compare " + good + " " + good, tmp);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

}  // namespace
}  // namespace dsv4::bench::cmp
