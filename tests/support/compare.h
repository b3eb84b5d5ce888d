// Element-wise comparison with special values first (engineering.md §3):
// NaN never matches; +-inf must sit at the same positions with the same sign; then
// |a - e| <= atol + rtol * |e| for the finite ones. Reports the worst element.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace dsv4::test {

template <class A, class E>
::testing::AssertionResult all_close(const A* actual, const E* expected, size_t n, double atol,
                                     double rtol = 0.0) {
  size_t worst = n;
  double worst_excess = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = double(actual[i]), e = double(expected[i]);
    if (std::isnan(a) || std::isnan(e)) {
      return ::testing::AssertionFailure() << "NaN at " << i << ": actual " << a << ", expected " << e;
    }
    if (std::isinf(a) || std::isinf(e)) {
      if (a != e)
        return ::testing::AssertionFailure()
               << "infinity mismatch at " << i << ": actual " << a << ", expected " << e;
      continue;
    }
    const double excess = std::fabs(a - e) - (atol + rtol * std::fabs(e));
    if (excess > 0 && (worst == n || excess > worst_excess)) {
      worst = i;
      worst_excess = excess;
    }
  }
  if (worst == n) return ::testing::AssertionSuccess();
  std::ostringstream s;
  s.precision(17);
  s << "worst at " << worst << ": actual " << double(actual[worst]) << ", expected "
    << double(expected[worst]) << ", |diff| " << std::fabs(double(actual[worst]) - double(expected[worst]))
    << " > atol " << atol << " + rtol " << rtol;
  return ::testing::AssertionFailure() << s.str();
}

template <class A, class E>
::testing::AssertionResult all_close(const std::vector<A>& actual, const std::vector<E>& expected,
                                     double atol, double rtol = 0.0) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " != expected " << expected.size();
  return all_close(actual.data(), expected.data(), actual.size(), atol, rtol);
}

// Bitwise equality (reruns, prefill == decode on exactly representable inputs).
template <class T>
::testing::AssertionResult bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "size " << a.size() << " != " << b.size();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0)
      return ::testing::AssertionFailure() << "differs at " << i << ": " << double(a[i]) << " vs "
                                           << double(b[i]);
  }
  return ::testing::AssertionSuccess();
}

}  // namespace dsv4::test
