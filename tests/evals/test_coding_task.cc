// The coding suite through the runner (evals/coding/coding_task.h) with a scripted fake
// model: prompts, the one-cell-per-problem mapping, the sandbox classes, pass@k in
// results.json against hand-computed values, resume, and bad input.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <map>

#include "evals/coding/coding_task.h"
#include "evals/coding/pass_at_k.h"
#include "evals/runner.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

namespace json = boost::json;
using dsv4::test::TempDir;

// Two problems. "add" and "mul" differ in their entry point, which the fake reads back
// from the prompt to choose its script.
constexpr const char* kProblems =
    R"({"task_id": "t/add", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n", "entry_point": "add", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"}
{"task_id": "t/mul", "prompt": "def mul(a, b):\n    \"\"\"a * b\"\"\"\n", "entry_point": "mul", "test": "def check(candidate):\n    assert candidate(2, 3) == 6\n"}
)";

// Answers the i-th call for a problem with the i-th completion of its script (cyclic).
class ScriptedCoder : public test::TokenizerModel {
 public:
  std::map<std::string, std::vector<std::string>> scripts;  // entry point -> completions
  std::vector<std::string> prompts;
  std::vector<SamplingParams> params;
  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams& p) override {
    ++calls;
    const std::string text = detokenize(prompt);
    prompts.push_back(text);
    params.push_back(p);
    Completion c;
    for (auto& [entry, script] : scripts)
      if (text.find("def " + entry + "(") != std::string::npos)
        c.text = script[size_t(used_[entry]++) % script.size()];
    c.usage.prompt_tokens = int64_t(prompt.size());
    return c;
  }
  CandidateScores score_candidates(const std::vector<int32_t>&,
                                   const std::vector<int32_t>&) override {
    throw Unsupported("scripted coder: no candidates");
  }

 private:
  std::map<std::string, int> used_;
};

RunConfig coding_config(const std::string& out, const std::string& problems) {
  RunConfig c;
  c.suite = "coding";
  c.lengths = {0};
  c.samples = 4;
  c.seed = 3;
  c.out = out;
  c.format = PromptFormat::natural;
  c.options.problem_files = {problems};
  c.options.coding_timeout_seconds = 2;  // the infinite loop below costs 2 s
  c.model_dir = "(fake)";
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  return c;
}

void script(ScriptedCoder& m) {
  m.scripts["add"] = {"```python\ndef add(a, b):\n    return a + b\n```",  // passed
                      "    return a - b\n",                                // failed
                      "    return b + a\n",                                // passed
                      "    while True:\n        pass\n"};                  // timeout
  m.scripts["mul"] = {"    x = bytearray(1 << 40)\n    return 0\n",        // memory
                      "    return a + b\n",                                // failed
                      "    print('x' * (1 << 22))\n    return a * b\n",    // output_limit
                      "    return a ** b\n"};                              // failed
}

TEST(CodingTask, RunsEveryProblemNTimesAndReportsPassAtK) {
  TempDir tmp;
  const std::string problems = tmp.file("p.jsonl");
  std::ofstream(problems) << kProblems;
  ScriptedCoder m;
  script(m);
  const RunSummary s = run_eval(coding_config(tmp.file("run"), problems), m, nullptr);
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(s.planned, 8);
  EXPECT_EQ(m.calls, 8);
  // The prompt: the chat instruction around the problem's code; sampled with the run's settings.
  EXPECT_NE(m.prompts[0].find("Complete the following Python function"), std::string::npos);
  EXPECT_NE(m.prompts[0].find("```python\ndef add(a, b):"), std::string::npos);
  EXPECT_EQ(m.params[0].temperature, 0.8);
  EXPECT_EQ(m.params[0].max_tokens, 512);
  EXPECT_NE(m.params[0].seed, m.params[1].seed) << "each sample has its own seed";

  const json::object& task = s.results.at("tasks").as_array()[0].as_object();
  EXPECT_EQ(task.at("name").as_string(), "humaneval_style");
  // by_length (bin 0) mean = the share of passing samples = pass@1 over equal n.
  EXPECT_DOUBLE_EQ(task.at("by_length").as_array()[0].at("mean").to_number<double>(), 2.0 / 8);
  const json::object& sum = task.at("summary").as_object();
  const json::object& overall = sum.at("overall").as_object();
  // add: n = 4, c = 2; mul: n = 4, c = 0.
  EXPECT_DOUBLE_EQ(overall.at("pass_at_k").at("pass@1").to_number<double>(), (0.5 + 0) / 2);
  EXPECT_TRUE(overall.at("pass_at_k").at("pass@10").is_null()) << "k > n: not defined";
  EXPECT_EQ(overall.at("wrong_answers").as_int64(), 3);
  EXPECT_EQ(overall.at("timeouts").as_int64(), 1);
  EXPECT_EQ(overall.at("sandbox_kills").as_int64(), 2);  // memory + output_limit
  EXPECT_EQ(overall.at("classes").at("passed").as_int64(), 2);
  EXPECT_EQ(overall.at("classes").at("memory").as_int64(), 1);
  EXPECT_EQ(overall.at("classes").at("output_limit").as_int64(), 1);
  // Both problems are Python: one language group, equal to the overall numbers.
  ASSERT_EQ(sum.at("by_language").as_object().size(), 1u);
  EXPECT_EQ(sum.at("by_language").at("python"), sum.at("overall"));
  const json::array& per = sum.at("problems").as_array();
  ASSERT_EQ(per.size(), 2u);
  EXPECT_EQ(per[0].at("task_id").as_string(), "t/add");
  EXPECT_EQ(per[0].at("c").as_int64(), 2);
  EXPECT_DOUBLE_EQ(per[0].at("pass@1").to_number<double>(), *pass_at_k(4, 2, 1));
  EXPECT_EQ(per[1].at("c").as_int64(), 0);
  // Per-problem pass rates also come out as the runner's classes.
  EXPECT_EQ(task.at("by_length_class").as_array().size(), 2u);
}

TEST(CodingTask, ResumeGivesTheSameSummary) {
  TempDir tmp;
  const std::string problems = tmp.file("p.jsonl");
  std::ofstream(problems) << kProblems;
  // Scripts with no timeouts, so the two runs are quick.
  ScriptedCoder a;
  a.scripts["add"] = {"    return a + b\n", "    return 0\n"};
  a.scripts["mul"] = {"    return a * b\n"};
  RunConfig c = coding_config(tmp.file("run"), problems);
  c.stop_after = 3;
  EXPECT_FALSE(run_eval(c, a, nullptr).complete);
  c.stop_after = -1;
  const RunSummary s = run_eval(c, a, nullptr);
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(s.resumed, 3);
  ScriptedCoder b;
  b.scripts = a.scripts;
  const RunSummary whole = run_eval(coding_config(tmp.file("whole"), problems), b, nullptr);
  // The resumed run's scripted answers continue where the first stopped: the same sequence.
  EXPECT_EQ(s.results.at("tasks").as_array()[0].at("summary"),
            whole.results.at("tasks").as_array()[0].at("summary"));
}

TEST(CodingTask, BadInputIsRefusedBeforeAnyModelCall) {
  TempDir tmp;
  ScriptedCoder m;
  RunConfig c = coding_config(tmp.file("run"), tmp.file("missing.jsonl"));
  EXPECT_THROW(run_eval(c, m, nullptr), InputError);
  c.options.problem_files.clear();
  EXPECT_THROW(run_eval(c, m, nullptr), InputError);
  c.format = PromptFormat::probe;
  EXPECT_THROW(run_eval(c, m, nullptr), InputError);
  EXPECT_EQ(m.calls, 0);
}

TEST(CodingTask, InstructionWrapsTheCodeInAFence) {
  EXPECT_EQ(coding_instruction("javascript", "function f(x) {"),
            "Complete the following JavaScript function. Reply with the whole function in one "
            "```javascript code block.\n\n```javascript\nfunction f(x) {\n```");
  EXPECT_THROW(coding_instruction("cobol", ""), InputError);
}

}  // namespace
}  // namespace dsv4::evals
