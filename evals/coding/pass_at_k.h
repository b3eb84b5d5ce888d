// Unbiased pass@k (docs/evals.md "Coding suite: scoring").
//
// With n samples of a problem of which c pass, pass@k is the probability that a k-subset
// drawn uniformly without replacement holds at least one passing sample:
//
//   pass@k = 1 - C(n - c, k) / C(n, k)
//
// computed in the stable product form (no huge binomials):
//
//   C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i)      (for n - c >= k)
//
// and pass@k = 1 when n - c < k (every k-subset holds a passing sample). For k > n the
// estimator is not defined: pass_at_k returns nullopt ("n/a" in results).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace dsv4::evals {

// pass@k for n samples with c correct. InputError unless n >= 1, 0 <= c <= n and k >= 1;
// nullopt when k > n.
std::optional<double> pass_at_k(int64_t n, int64_t c, int64_t k);

// The mean of pass@k over problems given as (n, c) pairs; nullopt when k exceeds some
// problem's n (the mean would leave that problem out) or there are no problems.
std::optional<double> mean_pass_at_k(const std::vector<std::pair<int64_t, int64_t>>& nc, int64_t k);

}  // namespace dsv4::evals
