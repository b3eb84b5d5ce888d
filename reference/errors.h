// The one error type for bad input (spec: engineering.md §2 rule 5).
//
// Every op checks its params before touching memory and throws InputError with a message
// that names the tensor or key, the expected shape or value and what was found. The CLI
// turns it into exit status 2 and one line on stderr.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4 {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "[5, 4, 512]"
std::string shape_string(const std::vector<int64_t>& shape);

// Throws InputError("tensor 'name': expected shape [..], found [..]") unless equal.
void require_shape(const std::string& name, const std::vector<int64_t>& expected,
                   const std::vector<int64_t>& found);

// Throws InputError(what) when cond is false.
inline void require(bool cond, const std::string& what) {
  if (!cond) throw InputError(what);
}

}  // namespace dsv4
