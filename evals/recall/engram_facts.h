// engram_facts: facts retrieved from an Engram table with no context at all ("retrieve
// instead of recompute", model/probe_engram.h). Probe format only: the probe's probe.json
// lists its facts ("engram_facts": [{"key": [a, b], "value": v}, ...], evals/recall/
// probe_tokens.h); item i is fact i: prompt = [a, b] (two tokens, nothing else), answer = v,
// read as the argmax over the value ids like every probe task; score 1 or 0.
// One cell, "no_context" (length 2); --lengths, --depths and --samples do not apply (one item
// per fact). A probe without facts: the task is skipped with the reason; natural format:
// unsupported (a real model's facts are not listed anywhere).
#pragma once

#include "evals/registry.h"

namespace dsv4::evals {

inline constexpr int64_t kEngramFactPromptTokens = 2;  // the fact's 2-gram is the whole prompt
inline constexpr const char* kEngramFactsCell = "no_context";

class EngramFactsTask final : public Task {
 public:
  std::string name() const override { return "engram_facts"; }
  std::string version() const override { return "1"; }
  std::string description() const override;
  bool supports(PromptFormat f) const override { return f == PromptFormat::probe; }
  bool uses_lengths() const override { return false; }
  std::string unavailable(const GenContext& ctx) const override;
  int64_t samples_per_cell(const GenContext& ctx, int64_t run_samples) const override;
  uint32_t needs(PromptFormat f) const override;
  std::vector<Cell> cells(const GridSpec& g) const override;
  Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed, int64_t index) const override;
  Outcome evaluate(LanguageModel& m, const Item& item) const override;
  double score(const Item& item, const std::string& prediction) const override;
};

}  // namespace dsv4::evals
