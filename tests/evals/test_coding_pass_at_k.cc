// pass@k (evals/coding/pass_at_k.h) against brute-force enumeration of every k-subset.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

#include "evals/coding/pass_at_k.h"
#include "reference/errors.h"

namespace dsv4::evals {
namespace {

// The share of the k-subsets of n samples (the first c passing) that hold a passing one,
// by enumerating every subset as a bit mask (n <= 16: at most 65536 masks).
double brute_force(int n, int c, int k) {
  int64_t subsets = 0, hits = 0;
  for (uint32_t m = 0; m < (1u << n); ++m) {
    if (std::popcount(m) != k) continue;
    ++subsets;
    if (m & ((1u << c) - 1)) ++hits;  // samples 0..c-1 are the passing ones
  }
  return double(hits) / double(subsets);
}

TEST(CodingPassAtK, MatchesBruteForceForEverySmallCase) {
  constexpr int kMaxN = 12;
  // The product runs over <= n factors, each rounded once: a relative error of a few n ulps.
  const double tol = 8 * kMaxN * std::numeric_limits<double>::epsilon();
  int checked = 0;
  for (int n = 1; n <= kMaxN; ++n)
    for (int c = 0; c <= n; ++c)
      for (int k = 1; k <= n; ++k) {
        const std::optional<double> p = pass_at_k(n, c, k);
        ASSERT_TRUE(p.has_value()) << n << " " << c << " " << k;
        EXPECT_NEAR(*p, brute_force(n, c, k), tol) << "n=" << n << " c=" << c << " k=" << k;
        ++checked;
      }
  EXPECT_EQ(checked, 728);  // sum over n = 1..12 of (n + 1) n: every (c, k) pair
}

TEST(CodingPassAtK, KnownValues) {
  EXPECT_DOUBLE_EQ(*pass_at_k(10, 0, 1), 0.0);
  EXPECT_DOUBLE_EQ(*pass_at_k(10, 10, 10), 1.0);
  EXPECT_NEAR(*pass_at_k(10, 3, 1), 0.3, 1e-15);  // pass@1 = c / n
  EXPECT_DOUBLE_EQ(*pass_at_k(10, 8, 5), 1.0);    // n - c = 2 < k: every subset passes
  // Large n: the product form stays finite where C(200, 100) would overflow an int64.
  const double p = *pass_at_k(200, 1, 100);
  EXPECT_NEAR(p, 0.5, 1e-12);  // one passing sample is in half of the 100-subsets
}

TEST(CodingPassAtK, KAboveNIsNotDefined) {
  EXPECT_FALSE(pass_at_k(5, 2, 10).has_value());
  EXPECT_FALSE(mean_pass_at_k({{20, 1}, {5, 5}}, 10).has_value());
  EXPECT_FALSE(mean_pass_at_k({}, 1).has_value());
  EXPECT_NEAR(*mean_pass_at_k({{4, 1}, {4, 2}}, 1), (0.25 + 0.5) / 2, 1e-15);
}

TEST(CodingPassAtK, BadCountsAreInputErrors) {
  EXPECT_THROW(pass_at_k(0, 0, 1), InputError);
  EXPECT_THROW(pass_at_k(5, 6, 1), InputError);
  EXPECT_THROW(pass_at_k(5, -1, 1), InputError);
  EXPECT_THROW(pass_at_k(5, 1, 0), InputError);
}

}  // namespace
}  // namespace dsv4::evals
