#include "reference/hadamard.h"

#include <cmath>

#include "reference/errors.h"

namespace dsv4::ref {

template <class T>
void hadamard(const HadamardParams<T>& p) {
  const int64_t d = p.x.cols;
  require(d > 0 && (d & (d - 1)) == 0,
          "hadamard: tensor 'x': last dim must be a power of two, found " + std::to_string(d));
  require(p.y.rows == p.x.rows && p.y.cols == d, "hadamard: y must have the shape of x");
  const T norm = T(1) / std::sqrt(T(d));
  for (int64_t r = 0; r < p.x.rows; ++r) {
    T* y = p.y.row(r);
    const T* x = p.x.row(r);
    if (y != x)
      for (int64_t c = 0; c < d; ++c) y[c] = x[c];
    // In-place butterflies: O(d log d).
    for (int64_t h = 1; h < d; h *= 2) {
      for (int64_t i = 0; i < d; i += 2 * h) {
        for (int64_t j = i; j < i + h; ++j) {
          const T a = y[j], b = y[j + h];
          y[j] = a + b;
          y[j + h] = a - b;
        }
      }
    }
    for (int64_t c = 0; c < d; ++c) y[c] *= norm;
  }
}

template void hadamard<float>(const HadamardParams<float>&);
template void hadamard<double>(const HadamardParams<double>&);

}  // namespace dsv4::ref
