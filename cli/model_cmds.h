// dsv4 commands about whole models: config show, kv (later: forward, generate).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::cli {

// dsv4 config show PRESET|PATH [--json]. Exit 0, or 2 with one line for a bad config.
int config_show(const std::string& what, bool as_json);

// dsv4 kv --preset NAME|PATH --context L [--layout fp8|bf16|f32] [--json] [--measure]:
// per-layer-type and total KV bytes of one sequence (spec §4), the ratio to V3.2 and V3 at
// the same context; --measure also allocates the real cache (synthetic contents) and shows
// measured == analytic. When the config has Engram (a config.json with an engram block, or
// --set engram=L1,L2), two more lines: the Engram decode state per sequence and the tables
// (host-resident, not KV; bench/engram_cost.h), and an "engram" object in --json.
struct KvArgs {
  std::string preset = "v4-pro";
  int64_t context = 1048576;
  std::string layout = "fp8";
  bool json = false;
  bool measure = false;
  bool table = false;  // the paper-claims reproduction over 4K..1M
  std::vector<std::string> sets;  // --set engram=... overrides (model/config.h config_set_engram)
};
int kv_report(const KvArgs& a);

// dsv4 flops --preset NAME|PATH --context L [--json]: decode FLOPs per token by part and the
// ratio to V3.2 and V3; with --table the paper-claims reproduction over 4K..1M (bench/).
// With Engram: its FLOPs per token (per layer and in all) and the Engram-vs-MoE comparison at
// the same parameter budget (bench/engram_cost.h); in --json under "engram".
struct FlopsArgs {
  std::string preset = "v4-pro";
  int64_t context = 1048576;
  bool json = false;
  bool table = false;
  std::vector<std::string> sets;  // --set engram=... overrides
};
int flops_report(const FlopsArgs& a);

}  // namespace dsv4::cli
