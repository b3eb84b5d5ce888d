// Runs one op of the registry on a safetensors file: the `dsv4 op` command.
#pragma once

#include <string>
#include <vector>

namespace dsv4::cli {

struct OpRunArgs {
  std::string op;
  std::string in;
  std::string out;
  std::string backend = "ref";
  std::string precision = "f32";
  std::vector<std::string> sets;  // KEY=VALUE
};

// Exit status: 0 ok; 2 bad input (one line on stderr naming the tensor or key); 1 other
// failure (e.g. the output cannot be written). The output file appears only on success.
int run_op(const OpRunArgs& a);
void print_op_list();
// Returns false when the op is unknown.
bool print_op_help(const std::string& op);

}  // namespace dsv4::cli
