// Seeded random inputs for tests. Never zeros: non-vacuity (engineering.md §3).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace dsv4::test {

// n values uniform in [lo, hi), from a fixed seed.
template <class T = double>
std::vector<T> uniform(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = T(d(g));
  return v;
}

// n values N(0, sigma^2).
template <class T = double>
std::vector<T> normal(size_t n, uint64_t seed, double sigma = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, sigma);
  std::vector<T> v(n);
  for (auto& x : v) x = T(d(g));
  return v;
}

// Converts element type (double oracle inputs -> float op inputs).
template <class To, class From>
std::vector<To> cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

}  // namespace dsv4::test
