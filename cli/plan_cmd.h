// `dsv4 plan --preset v4-flash|v4-pro|CONFIG --gpus N --gpu-mem 141GiB --context 1m --batch B
//  [--tp T --ep E] [--json]`: per-rank weight bytes (as stored), KV bytes, activation
// workspace and whether each tensor/expert-parallel layout fits (model/plan.h); the suggested
// layout first. Exit status: 0 printed (whether or not a layout fits), 2 bad input.
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace dsv4::cli {

struct PlanArgs {
  std::string preset = "v4-flash";
  int64_t gpus = 8;
  std::string gpu_mem = "141GiB";  // H200
  std::string context = "1m";
  int64_t batch = 1;
  int64_t tp = 0, ep = 0;  // 0: every valid layout
  bool json = false;
};

CLI::App* add_plan_command(CLI::App& app, PlanArgs& a);
int plan_command(const PlanArgs& a);

}  // namespace dsv4::cli
