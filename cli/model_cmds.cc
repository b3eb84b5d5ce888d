#include "cli/model_cmds.h"

#include <fmt/core.h>

#include "model/config.h"
#include "reference/errors.h"

namespace dsv4::cli {

int config_show(const std::string& what, bool as_json) {
  try {
    const ModelConfig c = config_load(what);
    fmt::print("{}", as_json ? config_to_json(c) + "\n" : config_describe(c));
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 config: {}\n", e.what());
    return 2;
  }
}

}  // namespace dsv4::cli
