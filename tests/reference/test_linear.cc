// reference/eigen_util.h linear() and its few-rows path (reference/linear_few_rows.cc):
// Y = X W^T against a float64 loop, for every row count that selects a different tile shape
// (1 = Eigen's GEMV, 2..16 = the few-rows tiles in groups of <= 6, 17+ = Eigen's GEMM), with
// `in` not a multiple of the SIMD width (the tail after the packets) and `out` not a multiple
// of any tile's weight rows (the last partial tile), and a strided X.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference/eigen_util.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4::ref {
namespace {

template <class T>
void check(int64_t rows, int64_t out, int64_t in, int64_t ldx) {
  const auto xs = test::normal<T>(size_t(rows * ldx), uint64_t(rows * 1000 + in));
  const auto w = test::normal<T>(size_t(out * in), uint64_t(out * 7 + in));
  View2<const T> x{xs.data(), rows, in, ldx};
  const Mat<T> y = linear<T>(x, w.data(), out, in);
  ASSERT_EQ(y.rows(), rows);
  ASSERT_EQ(y.cols(), out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double want = 0, mag = 0;
      for (int64_t k = 0; k < in; ++k) {
        const double t = double(xs[size_t(r * ldx + k)]) * double(w[size_t(o * in + k)]);
        want += t;
        mag += std::abs(t);
      }
      // A length-`in` reduction in T (derived bound, tests/support/tolerance.h).
      ASSERT_NEAR(double(y(r, o)), want, test::reduction_tol<T>(double(in), mag))
          << "rows " << rows << " out " << out << " in " << in << " at (" << r << ", " << o << ")";
    }
}

template <class T>
class Linear : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Linear, Types);

TYPED_TEST(Linear, EveryRowCountAgainstFloat64) {
  for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 16, 17, 33})
    for (int64_t in : {int64_t(5), int64_t(37), int64_t(256)}) check<TypeParam>(rows, 29, in, in);
}

TYPED_TEST(Linear, StridedRowsAndWideOutputs) {
  for (int64_t rows : {2, 6, 9, 16}) check<TypeParam>(rows, 53, 130, 141);
  check<TypeParam>(6, 250, 64, 64);  // several weight blocks (kWeightBlock = 24 rows each)
}

}  // namespace
}  // namespace dsv4::ref
