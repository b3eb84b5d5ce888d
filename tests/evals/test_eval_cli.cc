// `dsv4 eval` end to end: --list, bad input (exit 2), a natural-format run on a tiny random
// checkpoint (plumbing: files, resume, argument mismatch), and probe checkpoints whose
// answers are known (../shared/docs/probe-models.md "What the probe predicts"):
//   CSA probe, 16 distractors, 1K-2K tokens: recall 1.0 at every depth
//   window-only probe: exact iff the needle is in the last 128 tokens
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "model/backend.h"
#include "tests/cli/cli_harness.h"

namespace dsv4::test {
namespace {

namespace json = boost::json;

json::object results(const std::string& dir) {
  return json::parse(slurp(dir + "/results.json")).as_object();
}

const json::object& task_of(const json::object& r, const std::string& name) {
  for (const auto& t : r.at("tasks").as_array())
    if (t.as_object().at("name").as_string() == name) return t.as_object();
  throw std::runtime_error("no task " + name);
}

TEST(EvalCli, ListShowsSuitesTasksAndVersions) {
  TempDir tmp;
  const CmdResult r = run_dsv4("eval --list", tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s :
       {"suite recall", "niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery",
        "variable_tracking", "niah_geometry", "mrcr", "v1", "suite degradation", "layer_trace"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(EvalCli, BadInputExitsTwoWithAMessage) {
  TempDir tmp;
  const std::string ok = " --model " + tmp.file("m") + " --out " + tmp.file("o");
  std::filesystem::create_directories(tmp.file("m"));
  const std::pair<std::string, std::string> cases[] = {
      {"eval --lengths 4k --out " + tmp.file("o"), "--model is required"},
      {"eval --lengths 4x" + ok, "'4x' is not a length"},
      {"eval --lengths 4k,,8k" + ok, "empty length"},
      {"eval --suite nope --lengths 4k" + ok, "unknown suite 'nope'"},
      {"eval --suite degradation --lengths 4k" + ok, "no config.json"},
      {"eval --lengths 4k --depths 2" + ok, "'2' is not a depth"},
      {"eval --lengths 4k --format other" + ok, "--format"},
      // refused before the checkpoint loads, unless the CUDA backend can run here
      {"eval --lengths 4k --backend cuda" + ok,
       cuda_backend_problem().empty() ? std::string("no config.json") : "--backend cuda: " + cuda_backend_problem()},
      {"eval --lengths 4k --backend tpu" + ok, "--backend: expected ref or cuda, found 'tpu'"},
      {"eval --lengths 4k --new --force" + ok, "--new and --force"},
      {"eval --lengths 4k --model " + tmp.file("missing") + " --out " + tmp.file("o"),
       "is not a directory"},
  };
  for (const auto& [args, msg] : cases) {
    const CmdResult r = run_dsv4(args, tmp);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << "\n" << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.file("o"))) << "bad input writes nothing";
}

TEST(EvalCli, NaturalFormatOnATinyRandomCheckpointResumes) {
  TempDir tmp;
  ASSERT_EQ(run_dsv4("init --preset v4-tiny --seed 1 --out " + tmp.file("tiny"), tmp).status, 0);
  const std::string args = "eval --model " + tmp.file("tiny") +
                           " --lengths 512 --samples 1 --depths 0,1 --tasks niah_single --out " +
                           tmp.file("run") + " --progress lines";
  const CmdResult r = run_dsv4(args, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("niah_single"), std::string::npos) << r.out;
  const json::object res = results(tmp.file("run"));
  EXPECT_EQ(res.at("format").as_string(), "natural");
  EXPECT_EQ(res.at("model").at("backend").as_string(), "engine:ref");
  EXPECT_EQ(res.at("samples_total").as_int64(), 2);
  const json::object& t = task_of(res, "niah_single");
  EXPECT_EQ(t.at("by_length").as_array()[0].at("n").as_int64(), 2);
  EXPECT_GT(t.at("by_length").as_array()[0].at("prefill_tokens_per_second").to_number<double>(), 0);
  EXPECT_EQ(count_lines(slurp(tmp.file("run") + "/samples.jsonl")), 2);
  // Rerun: everything resumed, nothing recomputed, same data.
  const CmdResult again = run_dsv4(args, tmp);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("resuming, 2 of 2"), std::string::npos) << again.err;
  EXPECT_EQ(task_of(results(tmp.file("run")), "niah_single").at("data_hash"), t.at("data_hash"));
  // Other arguments on the same --out: refused.
  const CmdResult other = run_dsv4(args + " --seed 3", tmp);
  EXPECT_EQ(other.status, 2);
  EXPECT_NE(other.err.find("different arguments (seed"), std::string::npos) << other.err;
}

TEST(EvalCli, CsaProbeRecallsEveryNeedleWithDistractors) {
  TempDir tmp;
  ASSERT_EQ(run_dsv4("init --probe recall --retrieval csa --out " + tmp.file("probe"), tmp).status,
            0);
  const CmdResult r = run_dsv4("eval --model " + tmp.file("probe") +
                                   " --lengths 1k,2k --samples 1 --depths 0,0.5,1 --tasks "
                                   "niah_multikey --distractors 16 --out " +
                                   tmp.file("run") + " --progress none",
                               tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const json::object res = results(tmp.file("run"));
  EXPECT_EQ(res.at("format").as_string(), "probe");
  EXPECT_EQ(res.at("model").at("probe").at("retrieval").as_string(), "csa");
  EXPECT_EQ(res.at("model").at("numerics").as_string(), "official");  // quant=true by default
  EXPECT_EQ(res.at("model").at("numerics_source").as_string(), "probe.json knobs.quant=true");
  EXPECT_EQ(res.at("model").at("kv_layout").as_string(), "fp8");  // --kv-layout auto: the deployment layout
  const json::object& t = task_of(res, "niah_multikey");
  for (const auto& b : t.at("by_length").as_array()) {
    EXPECT_EQ(b.at("mean").to_number<double>(), 1.0) << json::serialize(b);
    EXPECT_NEAR(b.at("floors").at("chance").to_number<double>(), 1.0 / 512, 1e-15);
    EXPECT_NEAR(b.at("floors").at("copy_random").to_number<double>(), 1.0 / 17, 1e-12);
  }
  EXPECT_EQ(t.at("effective_length").as_int64(), 2048);
}

// An F32 probe (quant=false) runs with exact numerics unless told otherwise; an explicit
// --numerics official contradicts it: exit 2 before anything is written.
TEST(EvalCli, F32ProbeRunsWithExactNumerics) {
  TempDir tmp;
  ASSERT_EQ(
      run_dsv4("init --probe recall --retrieval csa --set quant=false --out " + tmp.file("probe"),
               tmp)
          .status,
      0);
  const std::string args = "eval --model " + tmp.file("probe") +
                           " --lengths 512 --samples 1 --depths 0.5 --tasks niah_single "
                           "--progress none --out ";
  const CmdResult bad = run_dsv4(args + tmp.file("bad") + " --numerics official", tmp);
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("contradicts"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("bad")));
  const CmdResult r = run_dsv4(args + tmp.file("run"), tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const json::object res = results(tmp.file("run"));
  EXPECT_EQ(res.at("model").at("numerics").as_string(), "exact");
  EXPECT_EQ(res.at("model").at("numerics_source").as_string(), "probe.json knobs.quant=false");
  EXPECT_EQ(res.at("arguments").at("numerics").as_string(), "exact");
  EXPECT_EQ(res.at("arguments").at("kv_layout").as_string(), "f32");  // auto with exact numerics
  EXPECT_EQ(
      task_of(res, "niah_single").at("by_length").as_array()[0].at("mean").to_number<double>(),
      1.0);
}

TEST(EvalCli, WindowProbeRecallsOnlyInsideTheWindow) {
  TempDir tmp;
  ASSERT_EQ(
      run_dsv4("init --probe recall --retrieval window --out " + tmp.file("probe"), tmp).status, 0);
  const CmdResult r = run_dsv4("eval --model " + tmp.file("probe") +
                                   " --lengths 1k --samples 2 --tasks niah_geometry --out " +
                                   tmp.file("run") + " --progress none",
                               tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const json::object res = results(tmp.file("run"));
  int checked = 0;
  for (const auto& g : task_of(res, "niah_geometry").at("by_length_geometry").as_array()) {
    if (g.at("dimension").as_string() != "window") continue;
    const double mean = g.at("mean").to_number<double>();
    if (g.at("class").as_string() == "in")
      EXPECT_EQ(mean, 1.0);
    else
      EXPECT_LT(mean, 0.2) << "outside the window the needle is invisible: near chance 1/512";
    ++checked;
  }
  EXPECT_EQ(checked, 2);
}

}  // namespace
}  // namespace dsv4::test
