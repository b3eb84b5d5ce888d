// dsv4 commands about whole models: config show (later: init, forward, generate, kv).
#pragma once

#include <string>

namespace dsv4::cli {

// dsv4 config show PRESET|PATH [--json]. Exit 0, or 2 with one line for a bad config.
int config_show(const std::string& what, bool as_json);

}  // namespace dsv4::cli
