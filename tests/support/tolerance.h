// Named, derived tolerances (engineering.md §3 "Derive tolerances").
//
// A length-k reduction in a format with unit roundoff u errs by at most ~k*u*sum|terms| in
// the worst case and ~sqrt(k)*u*sum|terms| typically. We bound with
//   tol = kSafety * sqrt(k) * u * magnitude
// where magnitude is a bound on the sum of |terms| the test knows from its inputs, and
// kSafety covers the handful of chained ops (norm, exp, division) after the reduction.
#pragma once

#include <cmath>
#include <limits>

namespace dsv4::test {

inline constexpr double kSafety = 8.0;

template <class T>
constexpr double unit_roundoff() {
  return std::numeric_limits<T>::epsilon() / 2;
}

// Absolute error bound for a length-k reduction of terms whose |sum| is <= magnitude.
template <class T>
double reduction_tol(double k, double magnitude = 1.0) {
  return kSafety * std::sqrt(std::max(k, 1.0)) * unit_roundoff<T>() * magnitude;
}

}  // namespace dsv4::test
