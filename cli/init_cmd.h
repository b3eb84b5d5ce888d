// dsv4 init: write a random checkpoint for a preset (model/checkpoint.h), or a constructed
// recall probe (--probe recall, model/probe.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::cli {

struct InitArgs {
  std::string preset;  // preset name or config.json path
  uint64_t seed = 0;
  std::string out;
  int64_t shard_mb = 4096;  // <= 0: one shard
  bool force = false;
  double max_gb = 64.0;   // refuse larger checkpoints
  std::string tokenizer;  // "" = model/assets/tokenizer-tiny.json when present
  // --probe recall: a constructed probe (model/probe.h) instead of --preset
  std::string probe;
  std::string retrieval;                // csa | hca | window ("" = the knob's default, csa)
  std::vector<std::string> probe_sets;  // KNOB=V
};

// Exit 0, or 2 with one line on stderr (bad input or knob, too large, DIR not empty).
int init_command(const InitArgs& a);

}  // namespace dsv4::cli
