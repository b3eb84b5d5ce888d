// Plain-data views shared by the reference (dsv4::ref) and CUDA (dsv4::cuda) twins.
//
// View2<T> is a row-major 2-D view over memory owned by someone else:
//   element (r, c) lives at data[r * ld + c], with ld >= cols.
// Op params structs hold views, never owning containers, so the same struct can be
// passed to a host reference op or a device kernel.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define DSV4_HD __host__ __device__
#else
#define DSV4_HD
#endif

namespace dsv4 {

template <class T>
struct View2 {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;  // elements between the starts of consecutive rows

  DSV4_HD T* row(int64_t r) const { return data + r * ld; }
  DSV4_HD T& operator()(int64_t r, int64_t c) const { return data[r * ld + c]; }
  DSV4_HD bool empty() const { return rows == 0 || cols == 0; }
  // A view of rows [r0, r0 + n).
  DSV4_HD View2 slice_rows(int64_t r0, int64_t n) const { return {data + r0 * ld, n, cols, ld}; }
  // A view of columns [c0, c0 + n) of every row.
  DSV4_HD View2 slice_cols(int64_t c0, int64_t n) const { return {data + c0, rows, n, ld}; }
  // View2<T> -> View2<const T>. A template so that View2<const T> declares no conversion
  // to itself (nvcc warns about such a declaration).
  template <class U = T, std::enable_if_t<!std::is_const_v<U>, int> = 0>
  DSV4_HD operator View2<const U>() const {
    return {data, rows, cols, ld};
  }
};

// A dense (ld == cols) view.
template <class T>
DSV4_HD View2<T> view2(T* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols};
}

}  // namespace dsv4
