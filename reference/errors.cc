#include "reference/errors.h"

namespace dsv4 {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void require_shape(const std::string& name, const std::vector<int64_t>& expected,
                   const std::vector<int64_t>& found) {
  if (expected != found) {
    throw InputError("tensor '" + name + "': expected shape " + shape_string(expected) +
                     ", found " + shape_string(found));
  }
}

}  // namespace dsv4
