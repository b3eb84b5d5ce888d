// Internal helpers of the reference: Eigen maps over View2 and small shared loops.
// Not part of any op's contract; included by reference/*.cc only.
#pragma once

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "reference/view.h"

namespace dsv4::ref {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using RowVec = Eigen::Matrix<T, 1, Eigen::Dynamic>;

template <class T>
using MapMat = Eigen::Map<Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstMapMat = Eigen::Map<const Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
MapMat<T> as_eigen(View2<T> v) {
  return MapMat<T>(v.data, v.rows, v.cols, Eigen::OuterStride<>(v.ld));
}
template <class T>
ConstMapMat<T> as_eigen(View2<const T> v) {
  return ConstMapMat<T>(v.data, v.rows, v.cols, Eigen::OuterStride<>(v.ld));
}
// A dense [rows, cols] matrix at p.
template <class T>
ConstMapMat<T> as_eigen(const T* p, int64_t rows, int64_t cols) {
  return ConstMapMat<T>(p, rows, cols, Eigen::OuterStride<>(cols));
}
template <class T>
MapMat<T> as_eigen(T* p, int64_t rows, int64_t cols) {
  return MapMat<T>(p, rows, cols, Eigen::OuterStride<>(cols));
}

template <class T>
View2<T> view_of(Mat<T>& m) {
  return {m.data(), m.rows(), m.cols(), m.cols()};
}
template <class T>
View2<const T> cview_of(const Mat<T>& m) {
  return {m.data(), m.rows(), m.cols(), m.cols()};
}

// Y[rows, out] = X[rows, in] * W[out, in]^T for a few rows (linear_few_rows.cc): reads W
// once, unpacked, with the rows of X in cache.
template <class T>
void linear_few_rows(View2<const T> x, const T* w, int64_t out, int64_t in, View2<T> y);
// Up to this many rows linear() takes linear_few_rows (memory-bound: W read once) rather than
// Eigen's GEMM, which packs all of W first (about 3x the weight traffic) and only pays off
// once the rows make the product compute-bound.
inline constexpr int64_t kFewRowsMax = 16;

// Y[rows, out] = X[rows, in] * W[out, in]^T: a linear layer with the checkpoint's
// [out, in] weight layout.
template <class T>
Mat<T> linear(View2<const T> x, const T* w, int64_t out, int64_t in) {
  if (x.rows >= 2 && x.rows <= kFewRowsMax) {
    Mat<T> y(x.rows, out);
    linear_few_rows(x, w, out, in, view_of(y));
    return y;
  }
  return as_eigen(x) * as_eigen(w, out, in).transpose();
}

}  // namespace dsv4::ref
