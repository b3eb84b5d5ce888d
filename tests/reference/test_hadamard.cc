// Normalised Walsh-Hadamard transform (reference/hadamard.h; spec §2.3, §2.4) against an
// explicit Sylvester matrix built here: H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]],
// y = x H_d / sqrt(d).
//
// Tolerance: each output is a length-d sum of terms +-x_c / sqrt(d), so
//   |y - y_ref| <= reduction_tol<T>(d, sum_c |x_c| / sqrt(d)).
// Applying the transform twice doubles that bound (the second pass sees |y| ~ |x|):
// reduction_tol<T>(d, 2 sum_c |x_c| / sqrt(d)) per row, against the input itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "reference/errors.h"
#include "reference/hadamard.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace {

using namespace dsv4;
using dsv4::test::reduction_tol;

// The d x d Sylvester matrix (entries +-1), row-major, by the recursive block construction.
std::vector<int> sylvester(int64_t d) {
  std::vector<int> h = {1};
  for (int64_t k = 1; k < d; k *= 2) {
    std::vector<int> n(size_t(4 * k * k));
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < k; ++j) {
        const int v = h[size_t(i * k + j)];
        n[size_t(i * 2 * k + j)] = v;
        n[size_t(i * 2 * k + j + k)] = v;
        n[size_t((i + k) * 2 * k + j)] = v;
        n[size_t((i + k) * 2 * k + j + k)] = -v;
      }
    h.swap(n);
  }
  return h;
}

template <class T>
class Hadamard : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Hadamard, Types);

template <class T>
std::vector<T> run(const std::vector<T>& x, int64_t R, int64_t d) {
  std::vector<T> y(x.size(), std::numeric_limits<T>::quiet_NaN());
  ref::hadamard(HadamardParams<T>{view2(x.data(), R, d), view2(y.data(), R, d)});
  return y;
}

double row_abs_sum_max(const std::vector<double>& x, int64_t R, int64_t d) {
  double m = 0;
  for (int64_t r = 0; r < R; ++r) {
    double s = 0;
    for (int64_t c = 0; c < d; ++c) s += std::fabs(x[size_t(r * d + c)]);
    m = std::max(m, s);
  }
  return m;
}

TYPED_TEST(Hadamard, MatchesSylvesterMatrix) {
  using T = TypeParam;
  for (int64_t d : {1, 2, 4, 128, 512}) {
    SCOPED_TRACE(::testing::Message() << "d = " << d);
    const int64_t R = 3;
    const std::vector<T> x = test::normal<T>(size_t(R * d), 10 + d);
    const std::vector<double> xd(x.begin(), x.end());
    const auto H = sylvester(d);
    // y[r, j] = sum_c x[r, c] H[c, j] / sqrt(d)
    std::vector<double> want(x.size());
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < d; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += xd[size_t(r * d + c)] * H[size_t(c * d + j)];
        want[size_t(r * d + j)] = s / std::sqrt(double(d));
      }
    const auto y = run(x, R, d);
    const double mag = row_abs_sum_max(xd, R, d) / std::sqrt(double(d));
    EXPECT_TRUE(test::all_close(y.data(), want.data(), y.size(), reduction_tol<T>(d, mag)));
  }
}

TYPED_TEST(Hadamard, OrthonormalNormPreservedAndSelfInverse) {
  using T = TypeParam;
  for (int64_t d : {2, 128, 512}) {
    SCOPED_TRACE(::testing::Message() << "d = " << d);
    const int64_t R = 4;
    const std::vector<T> x = test::normal<T>(size_t(R * d), 20 + d);
    const std::vector<double> xd(x.begin(), x.end());
    const auto y = run(x, R, d);
    for (int64_t r = 0; r < R; ++r) {
      double nx = 0, ny = 0;
      for (int64_t c = 0; c < d; ++c) {
        nx += xd[size_t(r * d + c)] * xd[size_t(r * d + c)];
        ny += double(y[size_t(r * d + c)]) * double(y[size_t(r * d + c)]);
      }
      // ||y||^2 = ||x||^2; each y_j errs by reduction_tol(d, sum|x|/sqrt(d)) <= that with
      // sum|x| <= sqrt(d) ||x||, so ||y||^2 errs by ~2 ||x|| * sqrt(d) * that.
      EXPECT_NEAR(ny, nx, 2 * std::sqrt(nx) * std::sqrt(double(d)) *
                              reduction_tol<T>(d, std::sqrt(nx)));
    }
    const auto back = run(y, R, d);  // H/sqrt(d) is symmetric and orthogonal: H H = I
    const double mag = 2 * row_abs_sum_max(xd, R, d) / std::sqrt(double(d));
    EXPECT_TRUE(test::all_close(back, x, reduction_tol<T>(d, mag)));
    EXPECT_FALSE(test::all_close(y, x, 1e-3));  // the first pass did change x
  }
}

TYPED_TEST(Hadamard, InPlace) {
  using T = TypeParam;
  const int64_t R = 3, d = 128;
  const std::vector<T> x = test::normal<T>(size_t(R * d), 30);
  const auto want = run(x, R, d);
  std::vector<T> buf = x;
  ref::hadamard(HadamardParams<T>{view2<const T>(buf.data(), R, d), view2(buf.data(), R, d)});
  // Same butterflies on the same data: bit-identical to the out-of-place run.
  EXPECT_TRUE(test::bitwise_equal(buf, want));
}

// The butterflies written out in the plainest order: stages h = 1, 2, ..., d/2, each mapping
// (y[i + j], y[i + j + h]) to (a + b, a - b), then the scale. The op (whole-row SIMD registers,
// lane permutes for the stages inside a packet, streaming stores for large outputs) performs
// the same operations on the same operands, so it must match bit for bit.
template <class T>
std::vector<T> scalar_butterflies(const std::vector<T>& x, int64_t R, int64_t d) {
  std::vector<T> y = x;
  const T norm = T(1) / std::sqrt(T(d));
  for (int64_t r = 0; r < R; ++r) {
    T* v = y.data() + r * d;
    for (int64_t h = 1; h < d; h *= 2)
      for (int64_t i = 0; i < d; i += 2 * h)
        for (int64_t j = i; j < i + h; ++j) {
          const T a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
    for (int64_t c = 0; c < d; ++c) v[c] *= norm;
  }
  return y;
}

// Every power of two from 1 to 4096: below one packet (scalar), the register rows (up to 16
// packets) and the buffered rows beyond them; out of place and in place.
TYPED_TEST(Hadamard, BitIdenticalToScalarButterflies) {
  using T = TypeParam;
  constexpr int64_t kRows = 5;
  for (int64_t d = 1; d <= 4096; d *= 2) {
    SCOPED_TRACE("d = " + std::to_string(d));
    const std::vector<T> x = test::normal<T>(size_t(kRows * d), 31);
    const auto want = scalar_butterflies(x, kRows, d);
    EXPECT_TRUE(test::bitwise_equal(run(x, kRows, d), want));
    std::vector<T> buf = x;
    ref::hadamard(HadamardParams<T>{view2<const T>(buf.data(), kRows, d), view2(buf.data(), kRows, d)});
    EXPECT_TRUE(test::bitwise_equal(buf, want));
  }
}

// An output over 32 MiB apart from its input is written with streaming stores
// (reference/stream_store.h): the same bits, and every row written.
TEST(HadamardLarge, StreamingStoresBitIdentical) {
  constexpr int64_t d = 128, R = (int64_t(32) << 20) / (d * int64_t(sizeof(float))) + 3;
  const std::vector<float> x = test::normal<float>(size_t(R * d), 32);
  EXPECT_TRUE(test::bitwise_equal(run(x, R, d), scalar_butterflies(x, R, d)));
}

TYPED_TEST(Hadamard, NonPowerOfTwoThrows) {
  using T = TypeParam;
  for (int64_t d : {3, 6, 12, 100, 384}) {
    std::vector<T> x(size_t(2 * d), T(1)), y(size_t(2 * d));
    EXPECT_THROW(ref::hadamard(HadamardParams<T>{view2(x.data(), 2, d), view2(y.data(), 2, d)}),
                 InputError)
        << "d = " << d;
  }
}

}  // namespace
