#include "bench/compare.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <stdexcept>

namespace dsv4::bench::cmp {

namespace {

// Sizes of the groups of equal values (1 for an untied value).
std::vector<int64_t> tie_groups(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::vector<int64_t> g;
  for (size_t i = 0; i < v.size();) {
    size_t j = i + 1;
    while (j < v.size() && v[j] == v[i]) ++j;
    g.push_back(static_cast<int64_t>(j - i));
    i = j;
  }
  return g;
}

// Two-sided upper quantile: z with P(|Z| > z) = a, by bisection on erfc (monotone).
double normal_two_sided_quantile(double a) {
  double lo = 0, hi = 40;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (std::erfc(mid / std::sqrt(2.0)) > a) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}

// Exact two-sided p-value with ties: the permutation distribution of the sum of doubled
// midranks of a size-n subset of the pooled sample (doubled midranks are integers).
double exact_p_with_ties(const std::vector<double>& ranks, int n, double rank_sum) {
  const int N = static_cast<int>(ranks.size());
  std::vector<int64_t> a(N);
  int64_t total_sum = 0;
  for (int k = 0; k < N; ++k) {
    a[k] = std::llround(2 * ranks[k]);
    total_sum += a[k];
  }
  // cnt[j][s]: number of j-subsets of the items seen so far whose doubled sum is s.
  const size_t S = static_cast<size_t>(total_sum) + 1;
  std::vector<std::vector<double>> cnt(n + 1, std::vector<double>(S, 0.0));
  cnt[0][0] = 1;
  int64_t reach = 0;  // largest sum reachable so far
  for (int k = 0; k < N; ++k) {
    reach += a[k];
    for (int j = std::min(k + 1, n); j >= 1; --j) {
      auto& dst = cnt[j];
      const auto& src = cnt[j - 1];
      for (int64_t s = reach; s >= a[k]; --s) dst[s] += src[s - a[k]];
    }
  }
  const int64_t mean2 = static_cast<int64_t>(n) * (N + 1);  // E[2W]
  const int64_t dev = std::llabs(std::llround(2 * rank_sum) - mean2);
  double extreme = 0, total = 0;
  for (size_t s = 0; s < S; ++s) {
    total += cnt[n][s];
    if (std::llabs(static_cast<int64_t>(s) - mean2) >= dev) extreme += cnt[n][s];
  }
  return std::min(1.0, extreme / total);
}

}  // namespace

std::vector<double> midranks(const std::vector<double>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i + 1;
    while (j < idx.size() && v[idx[j]] == v[idx[i]]) ++j;
    const double rank = 0.5 * (static_cast<double>(i + 1) + static_cast<double>(j));  // mean of i+1..j
    for (size_t k = i; k < j; ++k) r[idx[k]] = rank;
    i = j;
  }
  return r;
}

std::vector<double> u_null_counts(int n, int m) {
  if (n < 0 || m < 0) throw std::invalid_argument("u_null_counts: negative sample size");
  // f[i][j][u]: arrangements of i x's and j y's with U = u. The largest element is an x
  // (then it exceeds all j y's: U grows by j) or a y (U unchanged).
  std::vector<std::vector<std::vector<double>>> f(n + 1, std::vector<std::vector<double>>(m + 1));
  for (int i = 0; i <= n; ++i) {
    for (int j = 0; j <= m; ++j) {
      auto& c = f[i][j];
      c.assign(static_cast<size_t>(i) * j + 1, 0.0);
      if (i == 0 || j == 0) {
        c[0] = 1;
        continue;
      }
      const auto& from_x = f[i - 1][j];
      for (size_t u = 0; u < from_x.size(); ++u) c[u + j] += from_x[u];
      const auto& from_y = f[i][j - 1];
      for (size_t u = 0; u < from_y.size(); ++u) c[u] += from_y[u];
    }
  }
  return f[n][m];
}

RankTest mann_whitney(const std::vector<double>& x, const std::vector<double>& y) {
  RankTest t;
  const int n = static_cast<int>(x.size()), m = static_cast<int>(y.size());
  if (n == 0 || m == 0) return t;
  std::vector<double> pooled(x);
  pooled.insert(pooled.end(), y.begin(), y.end());
  const std::vector<double> r = midranks(pooled);
  double R = 0;
  for (int i = 0; i < n; ++i) R += r[i];
  t.u = R - 0.5 * n * (n + 1);
  const int N = n + m;
  const auto groups = tie_groups(pooled);
  const bool ties = static_cast<int>(groups.size()) < N;

  if (n <= kExactMax && m <= kExactMax) {
    t.exact = true;
    if (ties) {
      t.p = exact_p_with_ties(r, n, R);
    } else {
      const auto c = u_null_counts(n, m);
      // U is an integer here; compare |2u - nm| to stay in integers.
      const int64_t nm = static_cast<int64_t>(n) * m;
      const int64_t dev = std::llabs(2 * std::llround(t.u) - nm);
      double extreme = 0, total = 0;
      for (size_t u = 0; u < c.size(); ++u) {
        total += c[u];
        if (std::llabs(2 * static_cast<int64_t>(u) - nm) >= dev) extreme += c[u];
      }
      t.p = std::min(1.0, extreme / total);
    }
    return t;
  }
  double tie_term = 0;
  for (int64_t g : groups) tie_term += static_cast<double>(g * g * g - g);
  const double var = static_cast<double>(n) * m / 12.0 *
                     ((N + 1) - tie_term / (static_cast<double>(N) * (N - 1)));
  if (var <= 0) {
    t.p = 1;  // every value tied
    return t;
  }
  const double dev = std::max(0.0, std::abs(t.u - 0.5 * n * m) - 0.5);
  t.p = std::min(1.0, std::erfc(dev / std::sqrt(var) / std::sqrt(2.0)));
  return t;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

Shift hodges_lehmann_ratio(const std::vector<double>& x, const std::vector<double>& y, double alpha) {
  Shift s;
  const int n = static_cast<int>(x.size()), m = static_cast<int>(y.size());
  if (n == 0 || m == 0) return s;
  std::vector<double> d;
  d.reserve(static_cast<size_t>(n) * m);
  for (double xi : x)
    for (double yj : y) d.push_back(std::log(yj) - std::log(xi));
  std::sort(d.begin(), d.end());
  const size_t nm = d.size(), h = nm / 2;
  s.ratio = std::exp(nm % 2 ? d[h] : 0.5 * (d[h - 1] + d[h]));
  // k: largest k >= 1 with P(U <= k - 1) <= alpha / 2 under the no-tie null.
  int64_t k = 1;
  if (n <= kExactMax && m <= kExactMax) {
    const auto c = u_null_counts(n, m);
    const double total = std::accumulate(c.begin(), c.end(), 0.0);
    double cdf = 0;
    for (size_t u = 0; u < c.size(); ++u) {
      cdf += c[u];  // P(U <= u)
      if (cdf / total > alpha / 2) break;
      k = static_cast<int64_t>(u) + 1;  // P(U <= k - 1) <= alpha / 2
    }
  } else {
    const double z = normal_two_sided_quantile(alpha);
    const double nmd = static_cast<double>(nm);
    k = static_cast<int64_t>(std::floor(nmd / 2 - z * std::sqrt(nmd * (n + m + 1) / 12.0)));
  }
  k = std::clamp<int64_t>(k, 1, static_cast<int64_t>(h > 0 ? h : 1));
  s.lo = std::exp(d[k - 1]);
  s.hi = std::exp(d[nm - k]);
  return s;
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Faster: return "faster";
    case Outcome::Slower: return "slower";
    case Outcome::NoClearDifference: return "no clear difference";
    case Outcome::InsufficientData: return "insufficient data";
  }
  return "?";
}

int Comparison::count(Outcome o) const {
  return static_cast<int>(std::count_if(results.begin(), results.end(), [&](const Result& r) { return r.outcome == o; }));
}

Result compare_one(const std::string& name, const std::vector<double>& x, const std::vector<double>& y,
                   Better better, const CompareOptions& opt) {
  Result r;
  r.name = name;
  r.better = better;
  r.n_baseline = static_cast<int>(x.size());
  r.n_new = static_cast<int>(y.size());
  r.baseline_median = median(x);
  r.new_median = median(y);
  if (!x.empty() && !y.empty()) {
    r.test = mann_whitney(x, y);
    r.shift = hodges_lehmann_ratio(x, y, opt.alpha);
    r.slowdown = better == Better::Higher ? 1 / r.shift.ratio : r.shift.ratio;
  }
  if (r.n_baseline < opt.min_repetitions || r.n_new < opt.min_repetitions) {
    r.outcome = Outcome::InsufficientData;
  } else if (r.test.p < opt.alpha && r.slowdown > 1 + opt.threshold) {
    r.outcome = Outcome::Slower;
  } else if (r.test.p < opt.alpha && r.slowdown < 1 / (1 + opt.threshold)) {
    r.outcome = Outcome::Faster;
  } else {
    r.outcome = Outcome::NoClearDifference;
  }
  return r;
}

namespace {

void check_series(const std::vector<Series>& side, const char* which, std::map<std::string, const Series*>& by_name) {
  for (const auto& s : side) {
    if (!by_name.emplace(s.name, &s).second)
      throw std::invalid_argument(fmt::format("{}: benchmark '{}' appears twice", which, s.name));
    for (size_t i = 0; i < s.values.size(); ++i)
      if (!std::isfinite(s.values[i]) || s.values[i] <= 0)
        throw std::invalid_argument(fmt::format("{}: benchmark '{}' repetition {}: value {} is not a positive finite number",
                                                which, s.name, i, s.values[i]));
  }
}

}  // namespace

Comparison compare(const std::vector<Series>& baseline, const std::vector<Series>& fresh, const std::string& metric,
                   const CompareOptions& opt) {
  std::map<std::string, const Series*> b, f;
  check_series(baseline, "baseline", b);
  check_series(fresh, "new", f);
  Comparison c;
  c.metric = metric;
  c.options = opt;
  for (const auto& s : baseline) {
    const auto it = f.find(s.name);
    if (it == f.end()) {
      c.only_baseline.push_back(s.name);
      continue;
    }
    c.results.push_back(compare_one(s.name, s.values, it->second->values, s.better, opt));
  }
  for (const auto& s : fresh)
    if (!b.count(s.name)) c.only_new.push_back(s.name);
  return c;
}

namespace {

std::string pct(double ratio) { return fmt::format("{:+.1f}%", 100 * (ratio - 1)); }

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

std::string comparison_table(const Comparison& c) {
  const auto& o = c.options;
  std::string s = fmt::format(
      "metric: {} (per repetition); two-sided Mann-Whitney U, alpha {:g}; Hodges-Lehmann shift new/baseline "
      "with {:g} % CI; threshold {:g} %; at least {} repetitions a side\n",
      c.metric, o.alpha, 100 * (1 - o.alpha), 100 * o.threshold, o.min_repetitions);
  size_t w = 9;
  for (const auto& r : c.results) w = std::max(w, r.name.size());
  s += fmt::format("{:<{}}  {:>11} {:>11}  {:>30}  {:>8}  {}\n", "benchmark", w, "baseline", "new", "shift [CI]", "p",
                   "outcome");
  for (const auto& r : c.results) {
    const bool any = r.n_baseline > 0 && r.n_new > 0;
    const std::string shift =
        any ? fmt::format("{} [{}, {}]", pct(r.shift.ratio), pct(r.shift.lo), pct(r.shift.hi)) : "-";
    std::string outcome = outcome_name(r.outcome);
    if (r.outcome == Outcome::InsufficientData)
      outcome += fmt::format(" ({} vs {} repetitions)", r.n_baseline, r.n_new);
    else if (r.outcome != Outcome::NoClearDifference)
      outcome += fmt::format(" ({:.2f}x)", r.outcome == Outcome::Slower ? r.slowdown : 1 / r.slowdown);
    s += fmt::format("{:<{}}  {:>11.4g} {:>11.4g}  {:>30}  {:>8}  {}\n", r.name, w, r.baseline_median, r.new_median,
                     shift, any ? fmt::format("{:.2g}", r.test.p) : "-", outcome);
  }
  if (!c.only_baseline.empty())
    s += fmt::format("only in the baseline (not compared): {}\n", join(c.only_baseline));
  if (!c.only_new.empty()) s += fmt::format("only in the new run (not compared): {}\n", join(c.only_new));
  const int insufficient = c.count(Outcome::InsufficientData);
  s += fmt::format("{} compared: {} slower, {} faster, {} no clear difference, {} insufficient data\n", c.results.size(),
                   c.count(Outcome::Slower), c.count(Outcome::Faster), c.count(Outcome::NoClearDifference),
                   insufficient);
  if (insufficient > 0)
    s += fmt::format("note: {} benchmark(s) had fewer than {} repetitions on a side and were not judged\n",
                     insufficient, o.min_repetitions);
  if (c.regression()) {
    std::vector<std::string> slow;
    for (const auto& r : c.results)
      if (r.outcome == Outcome::Slower) slow.push_back(r.name);
    s += fmt::format("REGRESSION: {} benchmark(s) slower by more than {:g} % (p < {:g}): {}\n", slow.size(),
                     100 * o.threshold, o.alpha, join(slow));
  } else {
    s += "no confirmed regression\n";
  }
  return s;
}

}  // namespace dsv4::bench::cmp
