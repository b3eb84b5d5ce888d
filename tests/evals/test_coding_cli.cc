// `dsv4 eval --suite coding` end to end: --validate on good and broken problem sets, bad
// input (exit 2), and a run on a tiny random checkpoint (results.json holds pass@k and the
// run classes; the random model's code fails, and the harness survives it).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>

#include "tests/cli/cli_harness.h"

namespace dsv4 {
namespace {

namespace json = boost::json;
using test::CmdResult;
using test::run_dsv4;
using test::slurp;
using test::TempDir;

constexpr const char* kGood =
    R"({"task_id": "c/1", "prompt": "def inc(x):\n", "entry_point": "inc", "test": "def check(candidate):\n    assert candidate(1) == 2\n", "canonical_solution": "    return x + 1\n", "mutant": "    return x\n"})";
// The same problem with a test that cannot tell the mutant apart.
constexpr const char* kVacuous =
    R"({"task_id": "c/2", "prompt": "def inc(x):\n", "entry_point": "inc", "test": "def check(candidate):\n    candidate(1)\n", "canonical_solution": "    return x + 1\n", "mutant": "    return x\n"})";

TEST(CodingCli, ValidateGoodAndBrokenSets) {
  TempDir tmp;
  std::ofstream(tmp.file("good.jsonl")) << kGood << "\n";
  std::ofstream(tmp.file("bad.jsonl")) << kGood << "\n" << kVacuous << "\n";
  const CmdResult good =
      run_dsv4("eval --suite coding --validate --problems " + tmp.file("good.jsonl"), tmp);
  EXPECT_EQ(good.status, 0) << good.out << good.err;
  EXPECT_NE(good.out.find("1 problems, 2 checks passed, 0 failed"), std::string::npos) << good.out;
  const CmdResult bad =
      run_dsv4("eval --suite coding --validate --problems " + tmp.file("bad.jsonl"), tmp);
  EXPECT_EQ(bad.status, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("FAIL c/2 mutant: passed"), std::string::npos) << bad.out;
}

TEST(CodingCli, BadInputExitsTwo) {
  TempDir tmp;
  std::ofstream(tmp.file("broken.jsonl")) << kGood << "\n{\"task_id\": \"x\"}\n";
  const std::pair<std::string, std::string> cases[] = {
      {"eval --suite coding --validate --problems " + tmp.file("missing.jsonl"), "is not a file"},
      {"eval --suite coding --validate --problems " + tmp.file("broken.jsonl"),
       "broken.jsonl:2: field 'prompt' is missing"},
      {"eval --suite recall --validate", "only the coding suite"},
      {"eval --suite coding --model " + tmp.file("") + " --lengths 4k --out " + tmp.file("o"),
       "no length axis"},
      {"eval --suite coding --model " + tmp.file("") + " --temperature -1 --out " + tmp.file("o"),
       "--temperature"},
      {"eval --suite recall --model " + tmp.file("") + " --lengths 1k --problems " +
           tmp.file("broken.jsonl") + " --out " + tmp.file("o"),
       "only the coding suite reads problems"},
  };
  for (const auto& [args, msg] : cases) {
    const CmdResult r = run_dsv4(args, tmp);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << "\n" << r.err;
  }
}

TEST(CodingCli, RunsOnATinyRandomCheckpoint) {
  TempDir tmp;
  ASSERT_EQ(run_dsv4("init --preset v4-tiny --seed 1 --out " + tmp.file("tiny"), tmp).status, 0);
  std::ofstream(tmp.file("p.jsonl")) << kGood << "\n";
  const CmdResult r = run_dsv4(
      "eval --suite coding --model " + tmp.file("tiny") + " --problems " + tmp.file("p.jsonl") +
          " --samples 2 --max-tokens 8 --progress none --out " + tmp.file("run"),
      tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("pass@1 0.0000  pass@10 n/a  pass@100 n/a"), std::string::npos) << r.out;
  const json::object res = json::parse(slurp(tmp.file("run") + "/results.json")).as_object();
  const json::object& task = res.at("tasks").as_array()[0].as_object();
  const json::object& overall = task.at("summary").at("overall").as_object();
  EXPECT_EQ(overall.at("samples").as_int64(), 2);
  // Random tokens are never a right function: each sample is a wrong answer (or a syntax
  // error, also "failed"), never a sandbox error.
  EXPECT_EQ(overall.at("classes").at("passed").as_int64(), 0);
  EXPECT_EQ(overall.at("sandbox_errors").as_int64(), 0);
  EXPECT_EQ(res.at("arguments").at("coding").at("max_tokens").as_int64(), 8);
}

}  // namespace
}  // namespace dsv4
