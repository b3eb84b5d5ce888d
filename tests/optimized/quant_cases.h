// Shared by tests/optimized/test_quant_fp8.cc and test_quant_fp4.cc: inputs that hit the edges
// of a UE8M0 block round trip (optimized/quant_grid.cuh), and the checks. Each test file binds
// a QuantFormat (its grid, its reference twin, its CUDA twin) and calls these.
//
// What "right" means: the CUDA twin's output is BITWISE the reference twin's (every bit,
// NaNs included: the standard quiet NaNs the inputs use come back unchanged from both), and
// blocks without NaN or infinity equal the fp64 oracle of tests/support/naive.h exactly (the
// round trip is exact arithmetic plus one RNE; every result is a float).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "optimized/device.cuh"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"

namespace dsv4::test::quant {

// The ops under test, over a [rows, cols] view with row stride ld: host (reference) and
// device (CUDA twin, asynchronous) versions with the same block and dims arguments.
struct QuantFormat {
  naive::Fmt fmt;
  std::function<void(View2<const float>, View2<float>, int64_t block, int64_t dims)> ref;
  std::function<void(View2<const float>, View2<float>, int64_t block, int64_t dims)> cuda;
};

// Every non-negative grid value of the format at scale 1, ascending: e4m3fn 0, 2^-9, ..., 448;
// e2m1 0, 0.5, ..., 6 (built by rounding a fine sweep with the oracle's own grid rounding).
inline std::vector<double> grid_values(naive::Fmt f) {
  std::vector<double> g;
  const double qmax = naive::fmt_max(f);
  for (double v = 0; v <= qmax; v += std::ldexp(1.0, -12)) {
    const double q = naive::fmt_round(f, v);
    if (g.empty() || q != g.back()) g.push_back(q);
  }
  return g;
}

// One row of `n` values whose first is qmax 2^e (so the block scale is exactly 2^e) followed by
// every grid value times 2^e, every midpoint between neighbours (the RNE ties), the values one
// float step either side of each midpoint, all with alternating signs; repeated to fill n.
inline std::vector<float> boundary_row(naive::Fmt f, int e, int64_t n) {
  const std::vector<double> g = grid_values(f);
  std::vector<float> vals;
  for (size_t i = 0; i < g.size(); ++i) {
    vals.push_back(float(std::ldexp(g[i], e)));
    if (i + 1 < g.size()) {
      const float mid = float(std::ldexp((g[i] + g[i + 1]) / 2, e));  // exact: few significant bits
      vals.push_back(mid);
      vals.push_back(std::nextafter(mid, 0.0f));
      vals.push_back(std::nextafter(mid, std::numeric_limits<float>::infinity()));
    }
  }
  std::vector<float> row(static_cast<size_t>(n));
  row[0] = float(std::ldexp(naive::fmt_max(f), e));
  for (int64_t i = 1; i < n; ++i) {
    const float v = vals[size_t(i - 1) % vals.size()];
    row[size_t(i)] = (i % 2) ? -v : v;
  }
  return row;
}

// Random rows: N(0, 1) * 2^s with s from -130 (float subnormals) to +120 across rows.
inline std::vector<float> wide_rows(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<float> x = normal<float>(size_t(rows * cols), seed);
  for (int64_t r = 0; r < rows; ++r) {
    const int s = int((r * 37) % 251) - 130;
    for (int64_t c = 0; c < cols; ++c) x[size_t(r * cols + c)] = float(std::ldexp(double(x[size_t(r * cols + c)]), s));
  }
  return x;
}

// The fp64 oracle of rows whose blocks are all finite: naive::quant_blocks on [0, dims)
// (dims 0: every column, as the ops read it), the rest copied.
inline std::vector<double> oracle(naive::Fmt f, const std::vector<float>& x, int64_t rows, int64_t cols,
                                  int64_t block, int64_t dims) {
  std::vector<double> y(x.begin(), x.end());
  const int64_t n = dims ? dims : cols;
  for (int64_t r = 0; r < rows; ++r) naive::quant_blocks(f, &y[size_t(r * cols)], n, block);
  return y;
}

struct Result {
  std::vector<float> y;       // dense [rows, cols]
  std::vector<float> y_ref;   // ref twin
};

// Runs the CUDA twin out of place (poisoned, guarded y, x strided by ld_x) and the reference;
// checks canaries, x untouched, bitwise equality with the reference, and a bitwise rerun.
inline Result run_and_compare(const QuantFormat& q, const std::vector<float>& x, int64_t rows, int64_t cols,
                              int64_t ld_x, int64_t ld_y, int64_t block, int64_t dims) {
  const Guarded gx{rows, cols, ld_x}, gy{rows, cols, ld_y};
  const std::vector<float> x_img = gx.image(x);
  cuda::DeviceBuffer<float> dx(x_img), dy(gy.poisoned());
  const auto launch = [&] { q.cuda(gx.view<const float>(dx.data()), gy.view(dy.data()), block, dims); };
  launch_and_sync(launch);
  const std::vector<float> y_img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(y_img));
  EXPECT_TRUE(bitwise_equal(dx.download(), x_img)) << "the op wrote into x";

  Result res;
  res.y = gy.extract(y_img);
  res.y_ref.assign(x.size(), kPoison);
  q.ref(view2(x.data(), rows, cols), view2(res.y_ref.data(), rows, cols), block, dims);
  EXPECT_TRUE(bitwise_equal(res.y, res.y_ref)) << "not the reference's bits";
  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, launch)) << "rerun differs";
  return res;
}

// Finite inputs: bitwise the reference and exactly the fp64 oracle.
inline void check_finite(const QuantFormat& q, const std::vector<float>& x, int64_t rows, int64_t cols,
                         int64_t ld_x, int64_t ld_y, int64_t block, int64_t dims) {
  SCOPED_TRACE(::testing::Message() << "rows " << rows << " cols " << cols << " ld " << ld_x << "/" << ld_y
                                    << " block " << block << " dims " << dims);
  const Result r = run_and_compare(q, x, rows, cols, ld_x, ld_y, block, dims);
  EXPECT_TRUE(all_close(r.y, oracle(q.fmt, x, rows, cols, block, dims), 0.0, 0.0)) << "against the fp64 oracle";
}

// In place (y == x, strided): the same bits as out of place on the reference.
inline void check_in_place(const QuantFormat& q, const std::vector<float>& x, int64_t rows, int64_t cols,
                           int64_t ld, int64_t block, int64_t dims) {
  const Guarded g{rows, cols, ld};
  cuda::DeviceBuffer<float> dxy(g.image(x));
  launch_and_sync([&] { q.cuda(g.view<const float>(dxy.data()), g.view(dxy.data()), block, dims); });
  const std::vector<float> img = dxy.download();
  EXPECT_TRUE(g.canaries_intact(img));
  std::vector<float> y_ref = x;
  q.ref(view2(x.data(), rows, cols), view2(y_ref.data(), rows, cols), block, dims);
  EXPECT_TRUE(bitwise_equal(g.extract(img), y_ref)) << "in place: not the reference's bits";
}

// Special values, one block each (block 32, 4 blocks per row):
//   block 0: all zeros with negative zeros (amax 0: the floor sets the scale; signs kept)
//   block 1: random values and a +inf -> the whole block NaN (0x7FC00000)
//   block 2: random values and -inf and a NaN -> the whole block NaN
//   block 3: random values and NaNs of both signs -> NaNs unchanged, the rest quantised as if
//            the NaNs were absent (checked against the oracle on the block without them)
inline void check_special_values(const QuantFormat& q) {
  constexpr int64_t kBlock = 32, kCols = 4 * kBlock, kRows = 2;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = uniform<float>(size_t(kRows * kCols), 77, -3.0, 3.0);
  for (int64_t r = 0; r < kRows; ++r) {
    float* row = &x[size_t(r * kCols)];
    for (int64_t c = 0; c < kBlock; ++c) row[c] = (c % 2) ? -0.0f : 0.0f;
    row[kBlock + 5 + r] = inf;
    row[2 * kBlock + 7] = -inf;
    row[2 * kBlock + 9 + r] = nan;
    row[3 * kBlock + 1] = nan;
    row[3 * kBlock + 20 + r] = -nan;
  }
  const Result res = run_and_compare(q, x, kRows, kCols, kCols + 1, kCols + 2, kBlock, kCols);
  for (int64_t r = 0; r < kRows; ++r) {
    const float* y = &res.y[size_t(r * kCols)];
    const float* xr = &x[size_t(r * kCols)];
    for (int64_t c = 0; c < kBlock; ++c)
      EXPECT_TRUE(y[c] == 0.0f && std::signbit(y[c]) == std::signbit(xr[c])) << "zero block, col " << c;
    for (int64_t c = kBlock; c < 3 * kBlock; ++c) EXPECT_TRUE(std::isnan(y[c])) << "inf block, col " << c;
    // Block 3 without its NaNs, through the oracle.
    std::vector<double> clean;
    for (int64_t c = 3 * kBlock; c < kCols; ++c)
      if (!std::isnan(xr[c])) clean.push_back(xr[c]);
    const double amax = naive::block_amax(clean.data(), int64_t(clean.size()));
    const double s = std::ldexp(1.0, naive::scale_exp(q.fmt, amax));
    for (int64_t c = 3 * kBlock; c < kCols; ++c) {
      if (std::isnan(xr[c])) {
        EXPECT_EQ(std::memcmp(&y[c], &xr[c], sizeof(float)), 0) << "NaN not kept, col " << c;
      } else {
        EXPECT_EQ(double(y[c]), naive::fmt_round(q.fmt, double(xr[c]) / s) * s) << "col " << c;
      }
    }
  }
}

}  // namespace dsv4::test::quant
