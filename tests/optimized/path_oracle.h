// Shared pieces of the tests of the per-token attention paths on the GPU
// (tests/optimized/test_query_path.cc, test_window_kv.cc, test_output_proj.cc; spec
// docs/v4-architecture.md §2.1, §2.2, §2.6): float inputs made directly (the real V4 weights,
// up to 10^8 values, are never held in double), the double-precision projection of one row
// from float weights with its error-model statistics, and the error measures. Written from the
// spec; nothing here calls a dsv4::ref or dsv4::cuda function.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/error_model.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4::test::paths {

// [out, in] weights U(-a, a), a = sqrt(3 / in): unit gain, as the layer-path tests'.
inline std::vector<float> unit_gain(int64_t out, int64_t in, uint64_t seed) {
  const double a = std::sqrt(3.0 / double(in));
  return uniform<float>(size_t(out * in), seed, -a, a);
}

// y = W x in double for one row (W [out, in] float row-major, x double), noting the stage in em
// (K = in, kappa = max_i sum_j |W_ij x_j| / rms(y); error_model.h).
inline std::vector<double> linear(const std::vector<float>& W, int64_t out, int64_t in, const double* x,
                                  ErrModel& em, const std::string& stage, int64_t w_offset = 0) {
  std::vector<double> y(static_cast<size_t>(out));
  double mag = 0;
  for (int64_t i = 0; i < out; ++i) {
    const float* w = W.data() + w_offset + i * in;
    double s = 0, a = 0;
    for (int64_t j = 0; j < in; ++j) {
      const double t = double(w[j]) * x[j];
      s += t;
      a += std::fabs(t);
    }
    y[size_t(i)] = s;
    mag = std::max(mag, a);
  }
  const double r = rms_of(y.data(), out);
  if (r > 0) em.note(stage, double(in), mag / r);
  return y;
}

// max |got - want| over all elements.
template <class A>
double max_err(const std::vector<A>& got, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < want.size(); ++i) e = std::max(e, std::fabs(double(got[i]) - want[i]));
  return e;
}

}  // namespace dsv4::test::paths
