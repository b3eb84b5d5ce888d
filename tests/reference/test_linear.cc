// reference/eigen_util.h linear() and its few-rows path (reference/linear_few_rows.cc):
// Y = X W^T against a float64 loop, for every row count that selects a different tile shape
// (1 = Eigen's GEMV, 2..16 = the few-rows tiles in groups of <= 6, 17+ = Eigen's GEMM), with
// `in` not a multiple of the SIMD width (the tail after the packets) and `out` not a multiple
// of any tile's weight rows (the last partial tile), and a strided X; and linear_few_rows bit
// for bit against one dot product at a time in its documented order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "reference/eigen_util.h"
#include "reference/simd.h"
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

// linear_few_rows(x, w) against its order of operations, one dot product at a time: per SIMD
// lane a running sum of fused (or, without FMA, Eigen's) multiply-adds over the whole packets,
// Eigen's horizontal sum, then the tail in order. `in` = 5003 spans several of the k-ranges
// the tiles walk for every group size, plus a tail; out = 53 spans several weight blocks.
template <class T>
void check_bits(int64_t rows, int64_t out, int64_t in, int64_t ldx) {
  namespace ei = Eigen::internal;
  using P = Packet<T>;
  constexpr int W = kPacket<T>;
  const auto xs = test::normal<T>(size_t(rows * ldx), uint64_t(rows * 31 + in));
  const auto w = test::normal<T>(size_t(out * in), uint64_t(out * 5 + in));
  Mat<T> y(rows, out);
  linear_few_rows<T>({xs.data(), rows, in, ldx}, w.data(), out, in, view_of(y));
  const int64_t whole = in / W * W;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const T* wr = w.data() + o * in;
      const T* xr = xs.data() + r * ldx;
      P acc = ei::pset1<P>(T(0));
      for (int64_t k = 0; k < whole; k += W) acc = ei::pmadd(ei::ploadu<P>(wr + k), ei::ploadu<P>(xr + k), acc);
      T want = ei::predux(acc);
      for (int64_t k = whole; k < in; ++k) want += wr[k] * xr[k];
      const T got = y(r, o);
      ASSERT_EQ(std::memcmp(&got, &want, sizeof(T)), 0)
          << "rows " << rows << " out " << out << " in " << in << " at (" << r << ", " << o << "): " << got
          << " vs " << want;
    }
}

TYPED_TEST(Linear, FewRowsBitForBitAgainstOneDotAtATime) {
  for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) check_bits<TypeParam>(rows, 53, 5003, 5011);
}

}  // namespace
}  // namespace dsv4::ref
