// Problem loading, program assembly and problem-set validation (evals/coding/problems.h),
// run through the real sandbox; and the team's problem set validated (CI).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "evals/coding/problems.h"
#include "reference/errors.h"

namespace dsv4::evals {
namespace {

namespace fs = std::filesystem;

const std::string kTeamSet = std::string(DSV4_TEST_DATA_DIR) + "/../../evals/coding/problems";

// A JSONL file under the test's temporary directory; removed by the fixture.
class CodingProblems : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4-coding-problems-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // The InputError message of loading `text`, "" when it loads.
  std::string load_error(const std::string& text) {
    try {
      load_problems(write("bad.jsonl", text));
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

constexpr const char* kPyLine =
    R"({"task_id": "t/py/1", "language": "python", "prompt": "import math\n\ndef hyp(a, b):\n    \"\"\"Hypotenuse.\"\"\"\n", "entry_point": "hyp", "test": "def check(candidate):\n    assert candidate(3, 4) == 5\n    assert candidate(5, 12) == 13\n", "canonical_solution": "    return math.sqrt(a * a + b * b)\n", "mutant": "    return a + b\n"})";
constexpr const char* kJsLine =
    R"({"task_id": "t/js/1", "language": "javascript", "prompt": "/** Twice x. */\nfunction twice(x) {\n", "entry_point": "twice", "test": "const assert = require('assert');\nfunction check(candidate) {\n  assert.strictEqual(candidate(2), 4);\n  assert.strictEqual(candidate(-3), -6);\n}\n", "canonical_solution": "  return 2 * x;\n}\n", "mutant": "  return x * x;\n}\n"})";

TEST_F(CodingProblems, LoadsBothLanguagesAndDefaultsToPython) {
  const std::string humaneval =
      R"({"task_id": "HumanEval/0", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): pass", "extra": 1})";
  const auto ps = load_problems(
      write("p.jsonl", std::string(kPyLine) + "\n\n" + kJsLine + "\n" + humaneval + "\n"));
  ASSERT_EQ(ps.size(), 3u);
  EXPECT_EQ(ps[0].task_id, "t/py/1");
  EXPECT_EQ(ps[0].language, Language::python);
  EXPECT_TRUE(ps[0].has_canonical && ps[0].has_mutant);
  EXPECT_EQ(ps[1].language, Language::javascript);
  EXPECT_EQ(ps[1].entry_point, "twice");
  EXPECT_EQ(ps[2].language, Language::python);  // no "language": HumanEval's Python
  EXPECT_FALSE(ps[2].has_canonical);
  EXPECT_NE(ps[1].origin.find("p.jsonl:3"), std::string::npos);  // blank line 2 skipped
}

TEST_F(CodingProblems, BadInputNamesFileLineAndField) {
  const std::string good = std::string(kPyLine) + "\n";
  EXPECT_NE(load_error(good + "{not json\n").find("bad.jsonl:2: not valid JSON"),
            std::string::npos);
  EXPECT_NE(load_error("[1]\n").find("bad.jsonl:1: expected a JSON object"), std::string::npos);
  EXPECT_NE(load_error(R"({"task_id": "a", "prompt": "", "entry_point": "f"})")
                .find("bad.jsonl:1: field 'test' is missing"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"task_id": 3, "prompt": "", "entry_point": "f", "test": "check"})")
                .find("field 'task_id' must be a string"),
            std::string::npos);
  EXPECT_NE(
      load_error(
          R"({"task_id": "a", "language": "rust", "prompt": "", "entry_point": "f", "test": "check"})")
          .find("field 'language': language 'rust'"),
      std::string::npos);
  EXPECT_NE(load_error(R"({"task_id": "a", "prompt": "", "entry_point": "f-x", "test": "check"})")
                .find("field 'entry_point'"),
            std::string::npos);
  EXPECT_NE(load_error(R"({"task_id": "a", "prompt": "", "entry_point": "f", "test": "assert 1"})")
                .find("does not define check"),
            std::string::npos);
  EXPECT_NE(load_error(good + good).find("bad.jsonl:2: field 'task_id': 't/py/1' appears twice"),
            std::string::npos);
  EXPECT_NE(load_error("\n\n").find("holds no problems"), std::string::npos);
  EXPECT_THROW(load_problems((dir_ / "missing.jsonl").string()), InputError);
  const std::string a = write("a.jsonl", good), b = write("b.jsonl", good);
  EXPECT_THROW(load_problem_files({a, b}), InputError);  // the same task_id in two files
}

TEST_F(CodingProblems, AssemblesContinuationsAndWholeDefinitions) {
  const Problem p = load_problems(write("p.jsonl", kPyLine))[0];
  // A continuation: prompt + code + test + the call of check.
  EXPECT_EQ(assemble_program(p, {"    return 0\n", false, "continuation"}),
            p.prompt + "    return 0\n" + "\n\n" + p.test + "\n\ncheck(hyp)\n");
  // A whole definition replaces the prompt's own, after the preamble (the import).
  EXPECT_EQ(assemble_program(p, {"def hyp(a, b):\n    return 0\n", true, "fence:python"}),
            "import math\n\ndef hyp(a, b):\n    return 0\n\n\n" + p.test + "\n\ncheck(hyp)\n");
  const Problem j = load_problems(write("j.jsonl", kJsLine))[0];
  EXPECT_EQ(
      assemble_program(j, {"function twice(x) { return 0; }\n", true, "fence:js"}),
      "/** Twice x. */\nfunction twice(x) { return 0; }\n\n\n" + j.test + "\n\ncheck(twice);\n");
}

TEST_F(CodingProblems, CompletionsRunInTheSandbox) {
  const auto ps = load_problems(write("p.jsonl", std::string(kPyLine) + "\n" + kJsLine + "\n"));
  const Problem& py = ps[0];
  auto run = [](const Problem& p, const std::string& completion, double wall = 0) {
    SandboxLimits l = default_limits(p.language);
    if (wall > 0) l.wall_seconds = wall;
    return run_sandboxed(sandbox_program(p, program_for_completion(p, completion)), l).outcome;
  };
  EXPECT_EQ(run(py, "    return math.hypot(a, b)\n\ndef unused():\n    pass\n"), RunClass::passed);
  EXPECT_EQ(run(py, "    return a * b\n"), RunClass::failed);
  EXPECT_EQ(run(py, "Sure:\n```python\ndef hyp(a, b):\n    return (a**2 + b**2) ** 0.5\n```"),
            RunClass::passed);
  EXPECT_EQ(run(py, "    while True:\n        pass\n", 1.0), RunClass::timeout);  // 1 s, not 10
  if (interpreter_path(Language::javascript).empty()) GTEST_SKIP() << "node is not installed";
  const Problem& js = ps[1];
  EXPECT_EQ(run(js, "  return x + x;\n}\n"), RunClass::passed);
  EXPECT_EQ(run(js, "```js\nfunction twice(x) {\n  return x << 1;\n}\n```"), RunClass::passed);
  EXPECT_EQ(run(js, "  return x;\n}\n"), RunClass::failed);
}

TEST_F(CodingProblems, ValidationCatchesAWrongReferenceAndAVacuousTest) {
  std::string vacuous = kPyLine;
  vacuous.replace(vacuous.find("t/py/1"), 6, "t/py/2");
  vacuous.replace(vacuous.find("assert candidate(3, 4) == 5"), 27, "candidate(3, 4)");
  vacuous.replace(vacuous.find("assert candidate(5, 12) == 13"), 29, "candidate(5, 12)");
  std::string wrong = kPyLine;
  wrong.replace(wrong.find("t/py/1"), 6, "t/py/3");
  wrong.replace(wrong.find("math.sqrt(a * a + b * b)"), 24, "a * b");
  const auto rows = validate_problems(
      load_problems(write("v.jsonl", std::string(kPyLine) + "\n" + vacuous + "\n" + wrong + "\n")));
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_TRUE(rows[0].ok && rows[1].ok);  // t/py/1: canonical passes, mutant fails
  EXPECT_EQ(rows[1].outcome, RunClass::failed);
  EXPECT_TRUE(rows[2].ok);   // t/py/2: canonical passes a vacuous test...
  EXPECT_FALSE(rows[3].ok);  // ...and so does its mutant: caught
  EXPECT_FALSE(rows[4].ok);  // t/py/3: a wrong canonical solution: caught
  EXPECT_NE(rows[4].detail.find("AssertionError"), std::string::npos) << rows[4].detail;
}

// The team's problem set (evals/coding/problems/*.jsonl): every canonical solution passes
// and every mutant fails, in both languages.
TEST(CodingProblemSet, TeamSetValidates) {
  std::vector<std::string> files;
  for (const char* f : {"python.jsonl", "javascript.jsonl"})
    if (fs::exists(kTeamSet + "/" + f)) files.push_back(kTeamSet + "/" + f);
  if (files.empty()) GTEST_SKIP() << "no team problem set under " << kTeamSet;
  const auto problems = load_problem_files(files);
  bool has_js = false;
  for (const Problem& p : problems) has_js = has_js || p.language == Language::javascript;
  if (has_js && interpreter_path(Language::javascript).empty())
    GTEST_SKIP() << "node is not installed (scripts/setup installs nodejs)";
  int checked = 0;
  constexpr int kJobs = 2;  // the CI machine's cores
  for (const ValidationRow& r : validate_problems(problems, kJobs)) {
    EXPECT_TRUE(r.ok) << r.task_id << " " << r.kind << ": " << run_class_name(r.outcome) << " "
                      << r.detail;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace dsv4::evals
