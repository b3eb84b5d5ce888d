// The coding suite's task (docs/evals.md "Coding suite"): functional correctness of
// generated code in Python and JavaScript, scored by running the problem's hidden tests in
// the sandbox (sandbox.h), with unbiased pass@k (pass_at_k.h).
//
// Mapping onto the runner's grid: the coding suite has no length axis. Every problem is one
// cell (length bin 0, Cell::geometry "problem=<task_id>"), and the run's --samples is n, the
// completions drawn per problem. Sample i of a problem is one generation at the run's
// coding temperature with its own seed (the item seed), extracted (extract.h), assembled
// with the tests (problems.h) and run in its own sandbox.
//
// Prompt (natural format only): one user message in the model's chat format,
//   "Complete the following <Language> function. Reply with the whole function in one
//    ```<language> code block.\n\n```<language>\n<prompt>```"
// tokenized by the model; the answer is generated up to max_tokens (or eos).
//
// Per sample: score 1 when the tests pass, else 0 (so by_length's mean is pass@1 and
// by_length_class holds each problem's pass rate); metrics "class.<run class>" (0/1, one per
// RunClass: passed, failed, timeout, memory, file_size, output_limit, sandbox_error),
// "sandbox_seconds", "sandbox_cpu_seconds", "javascript" (1 for a JavaScript problem).
// summarize() adds results.json tasks[].summary: pass@1/10/100 per problem, per language and
// overall (null where k > n), counts per run class (timeouts and sandbox kills apart from
// wrong answers).
#pragma once

#include <string>
#include <vector>

#include "evals/registry.h"

namespace dsv4::evals {

// The k of pass@k reported.
inline constexpr int64_t kPassAtK[] = {1, 10, 100};

class CodingTask final : public Task {
 public:
  std::string name() const override { return "humaneval_style"; }
  std::string version() const override { return "1"; }
  std::string description() const override;
  bool supports(PromptFormat f) const override { return f == PromptFormat::natural; }
  uint32_t needs(PromptFormat) const override { return kTokens | kChat | kGenerate; }
  // One cell per problem of grid.options.problem_files (InputError when none are given, a
  // file is bad, or JavaScript problems need a node that is not installed).
  std::vector<Cell> cells(const GridSpec& g) const override;
  Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                int64_t index) const override;
  Outcome evaluate(LanguageModel& m, const Item& item) const override;
  // 1 when `prediction` (a completion) passes the item's tests in the sandbox, else 0.
  double score(const Item& item, const std::string& prediction) const override;
  boost::json::value summarize(const std::vector<const SampleRecord*>& records) const override;
};

// The chat message that asks for the problem's function (the prompt above).
std::string coding_instruction(const std::string& language, const std::string& prompt);

}  // namespace dsv4::evals
