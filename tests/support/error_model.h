// Stage-wise relative error model of a composed layer (tests of the attention paths and the
// whole attention sub-layer).
//
// Each stage (linear map, pooling, attention) in precision T errs, relative to the RMS of its
// output row, by at most reduction_tol<T>(K, kappa) with kappa = max sum|terms| / rms(row)
// measured by the naive oracle. Relative errors of consecutive stages add: RMSNorm and RoPE
// are well-conditioned (condition ~1), a random linear map carries an input error with the
// signal's gain, and softmax turns an absolute logit error into a relative weight error, at
// most doubled by the normalisation. The final absolute tolerance is rel<T>() * max|y|.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/naive.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4::test {

struct ErrModel {
  std::map<std::string, std::pair<double, double>> stages;  // name -> (max K, max kappa)
  void note(const std::string& name, double K, double kappa) {
    auto& s = stages[name];
    s.first = std::max(s.first, K);
    s.second = std::max(s.second, kappa);
  }
  template <class T>
  double rel() const {
    double r = 0;
    for (const auto& [n, s] : stages) r += reduction_tol<T>(s.first, s.second);
    return r;
  }
};

// naive::linear y = W x (W [out, in]) noting the stage (K = in, kappa = max_i sum_j |W_ij x_j|
// / rms(y)) in em when non-null; *abs_mag receives max_i sum_j |W_ij x_j| when non-null.
inline std::vector<double> linear_noted(const std::vector<double>& W, int64_t out, int64_t in,
                                        const double* x, ErrModel* em, const std::string& name,
                                        double* abs_mag = nullptr) {
  double mmax = 0;
  std::vector<double> y = naive::linear(W.data(), out, in, x, &mmax);
  const double r = rms_of(y.data(), out);
  if (em && r > 0) em->note(name, double(in), mmax / r);
  if (abs_mag) *abs_mag = mmax;
  return y;
}

}  // namespace dsv4::test
