// dsv4 commands about whole models: config show, kv (later: forward, generate).
#pragma once

#include <cstdint>
#include <string>

namespace dsv4::cli {

// dsv4 config show PRESET|PATH [--json]. Exit 0, or 2 with one line for a bad config.
int config_show(const std::string& what, bool as_json);

// dsv4 kv --preset NAME|PATH --context L [--layout fp8|bf16|f32] [--json] [--measure]:
// per-layer-type and total KV bytes of one sequence (spec §4), the ratio to V3.2 and V3 at
// the same context; --measure also allocates the real cache (synthetic contents) and shows
// measured == analytic.
struct KvArgs {
  std::string preset = "v4-pro";
  int64_t context = 1048576;
  std::string layout = "fp8";
  bool json = false;
  bool measure = false;
};
int kv_report(const KvArgs& a);

}  // namespace dsv4::cli
