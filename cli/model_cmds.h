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
  bool table = false;  // the paper-claims reproduction over 4K..1M
};
int kv_report(const KvArgs& a);

// dsv4 flops --preset NAME|PATH --context L [--json]: decode FLOPs per token by part and the
// ratio to V3.2 and V3; with --table the paper-claims reproduction over 4K..1M (bench/).
struct FlopsArgs {
  std::string preset = "v4-pro";
  int64_t context = 1048576;
  bool json = false;
  bool table = false;
};
int flops_report(const FlopsArgs& a);

}  // namespace dsv4::cli
