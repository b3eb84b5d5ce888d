#include "evals/coding/pass_at_k.h"

#include <fmt/core.h>

#include "reference/errors.h"

namespace dsv4::evals {

std::optional<double> pass_at_k(int64_t n, int64_t c, int64_t k) {
  require(n >= 1, fmt::format("pass@k: n = {} samples; need at least 1", n));
  require(c >= 0 && c <= n, fmt::format("pass@k: c = {} correct out of n = {}", c, n));
  require(k >= 1, fmt::format("pass@k: k = {}; need k >= 1", k));
  if (k > n) return std::nullopt;
  if (n - c < k) return 1.0;
  double all_fail = 1.0;  // C(n - c, k) / C(n, k)
  for (int64_t i = n - c + 1; i <= n; ++i) all_fail *= 1.0 - double(k) / double(i);
  return 1.0 - all_fail;
}

std::optional<double> mean_pass_at_k(const std::vector<std::pair<int64_t, int64_t>>& nc,
                                     int64_t k) {
  if (nc.empty()) return std::nullopt;
  double sum = 0;
  for (const auto& [n, c] : nc) {
    const std::optional<double> p = pass_at_k(n, c, k);
    if (!p) return std::nullopt;
    sum += *p;
  }
  return sum / double(nc.size());
}

}  // namespace dsv4::evals
