// Small vector helpers shared by the tests (test::cast in random.h converts element types).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace dsv4::test {

// Rounds every value to T and back, so a double oracle sees exactly what an op in T sees.
template <class T>
std::vector<double> round_to(std::vector<double> v) {
  for (double& x : v) x = double(T(x));
  return v;
}

// round_to<float>: inputs shared by the float and double instantiations.
inline std::vector<double> float_exact(std::vector<double> v) { return round_to<float>(std::move(v)); }

// n quiet NaNs: the poison an op's output is filled with before the call.
template <class T>
std::vector<T> nan_vec(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

template <class T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// sqrt(mean(v^2)) of v[0, n).
inline double rms_of(const double* v, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += v[i] * v[i];
  return std::sqrt(ss / double(n));
}

}  // namespace dsv4::test
