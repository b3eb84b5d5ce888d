// The run loop with fake models: scores, intervals, floors and effective length; the
// results.json fields; resume after a kill (stop after k samples, a cut-short last line);
// argument mismatches and bad inputs.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "evals/results.h"
#include "evals/runner.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using dsv4::test::slurp;
using dsv4::test::TempDir;

RunConfig probe_config(const std::string& out) {
  RunConfig c;
  c.lengths = {512, 1024};
  c.depths = {0.0, 0.5, 1.0};
  c.samples = 3;
  c.seed = 9;
  c.out = out;
  c.format = PromptFormat::probe;
  c.options.distractors = 4;
  c.model_dir = "(fake)";
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  return c;
}

json::object results_of(const std::string& dir) {
  return json::parse(slurp(dir + "/results.json")).as_object();
}

const json::object& task_json(const json::object& r, const std::string& name) {
  for (const auto& t : r.at("tasks").as_array())
    if (t.as_object().at("name").as_string() == name) return t.as_object();
  throw std::runtime_error("no task " + name);
}

TEST(Runner, OracleScoresOneWithAPointInterval) {
  TempDir tmp;
  test::OracleModel m;
  const ProbeTokens p = test::synthetic_probe();
  const RunSummary s = run_eval(probe_config(tmp.file("run")), m, &p);
  ASSERT_TRUE(s.complete);
  // 4 probe tasks (multiquery has no probe format): 3 x (2 lengths x 3 depths) + 1 x
  // (2 lengths x 8 classes), 3 samples each.
  EXPECT_EQ(s.planned, 3 * (6 + 6 + 6 + 16));
  EXPECT_EQ(m.calls, s.planned);
  const json::object r = results_of(tmp.file("run"));
  for (const char* t : {"niah_single", "niah_multikey", "niah_multivalue", "niah_geometry"}) {
    const json::object& tj = task_json(r, t);
    EXPECT_EQ(tj.at("effective_length").as_int64(), 1024) << t;
    for (const auto& b : tj.at("by_length").as_array()) {
      EXPECT_EQ(b.at("mean").to_number<double>(), 1.0) << t;
      EXPECT_EQ(b.at("ci95").as_array()[0].to_number<double>(), 1.0);
      EXPECT_EQ(b.at("ci95").as_array()[1].to_number<double>(), 1.0);
      // A uniform guess hits one of the task's answers (4 under one key for multivalue).
      EXPECT_DOUBLE_EQ(b.at("floors").at("chance").to_number<double>(),
                       (std::string(t) == "niah_multivalue" ? 4.0 : 1.0) / 64);
    }
  }
  // Floors of the multi-key task: copying a random needle of 5 scores 1/5 exactly; copying
  // the first needle scores 1 when the target is first (always at depth 0).
  const json::object& mk = task_json(r, "niah_multikey");
  for (const auto& b : mk.at("by_length").as_array())
    EXPECT_NEAR(b.at("floors").at("copy_random").to_number<double>(), 0.2, 1e-12);
  for (const auto& b : mk.at("by_length_depth").as_array())
    if (b.at("depth").to_number<double>() == 0.0) {
      EXPECT_EQ(b.at("floors").at("copy_first").to_number<double>(), 1.0);
    }
  // Geometry breakdowns exist per class and per dimension.
  const json::object& geo = task_json(r, "niah_geometry");
  EXPECT_EQ(geo.at("by_length_class").as_array().size(), 2u * 8);
  bool saw_window_in = false;
  for (const auto& g : geo.at("by_length_geometry").as_array())
    saw_window_in |= g.at("dimension").as_string() == "window" && g.at("class").as_string() == "in";
  EXPECT_TRUE(saw_window_in);
}

TEST(Runner, RandomModelScoresNearChance) {
  TempDir tmp;
  test::RandomModel m;
  const ProbeTokens p = test::synthetic_probe(200, 64, 8);  // chance 1/8
  RunConfig c = probe_config(tmp.file("run"));
  c.tasks = {"niah_single"};
  c.lengths = {256};
  c.depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  c.samples = 60;  // 300 samples: sd of the mean sqrt(1/8 * 7/8 / 300) = 0.019
  run_eval(c, m, &p);
  const json::object r = results_of(c.out);
  const json::object& b = task_json(r, "niah_single").at("by_length").as_array()[0].as_object();
  const double mean = b.at("mean").to_number<double>();
  EXPECT_NEAR(mean, 0.125, 4 * 0.019) << "4 sd";
  const auto& ci = b.at("ci95").as_array();
  EXPECT_LT(ci[0].to_number<double>(), mean);
  EXPECT_GT(ci[1].to_number<double>(), mean);
  EXPECT_LT(ci[1].to_number<double>() - ci[0].to_number<double>(), 0.1) << "about 2 x 1.96 x 0.019";
  EXPECT_EQ(task_json(r, "niah_single").at("effective_length").as_int64(), 0);
}

TEST(Runner, NaturalFormatWithTheOracle) {
  TempDir tmp;
  test::OracleModel m;
  RunConfig c = probe_config(tmp.file("run"));
  c.format = PromptFormat::natural;
  c.lengths = {800};
  c.samples = 2;
  const RunSummary s = run_eval(c, m, nullptr);
  EXPECT_EQ(s.results.at("tasks").as_array().size(), 7u) << "every task has a natural format";
  for (const auto& t : s.results.at("tasks").as_array())
    EXPECT_EQ(t.at("by_length").as_array()[0].at("mean").to_number<double>(), 1.0) << t.at("name");
  // Multi-answer floors: one needle's value is 1/4 of the answers.
  const json::object r = results_of(c.out);
  EXPECT_NEAR(task_json(r, "niah_multiquery")
                  .at("by_length")
                  .as_array()[0]
                  .at("floors")
                  .at("copy_random")
                  .to_number<double>(),
              0.25, 1e-12);
  // Variable tracking: 2 chains of 4; a random statement's name is 1/4 of the answer half
  // the time.
  EXPECT_NEAR(task_json(r, "variable_tracking")
                  .at("by_length")
                  .as_array()[0]
                  .at("floors")
                  .at("copy_random")
                  .to_number<double>(),
              0.125, 1e-12);
  EXPECT_NEAR(task_json(r, "niah_multivalue")
                  .at("by_length")
                  .as_array()[0]
                  .at("floors")
                  .at("copy_first")
                  .to_number<double>(),
              0.25, 1e-12);
}

TEST(Runner, ResultsJsonFields) {
  TempDir tmp;
  test::OracleModel m;
  const ProbeTokens p = test::synthetic_probe();
  RunConfig c = probe_config(tmp.file("run"));
  c.tasks = {"niah_single"};
  run_eval(c, m, &p);
  const json::object r = results_of(c.out);
  for (const char* k : {"kind", "schema_version", "suite", "format", "arguments", "model", "seeds",
                        "statistics", "effective_length_rule", "tasks", "git", "machine",
                        "samples_total", "model_seconds", "wall_seconds_this_invocation"})
    EXPECT_TRUE(r.contains(k)) << k;
  for (const char* k : {"dir", "backend", "checkpoint_hash", "checkpoint_hash_method", "probe"})
    EXPECT_TRUE(r.at("model").as_object().contains(k)) << k;
  for (const char* k : {"revision", "source"})
    EXPECT_TRUE(r.at("git").as_object().contains(k)) << k;
  for (const char* k : {"cpu", "logical_cores", "memory_bytes"})
    EXPECT_TRUE(r.at("machine").as_object().contains(k)) << k;
  const json::object& t = task_json(r, "niah_single");
  for (const char* k : {"name", "version", "data_hash", "samples", "effective_length", "by_length",
                        "by_length_depth", "by_length_geometry"})
    EXPECT_TRUE(t.contains(k)) << k;
  EXPECT_EQ(t.at("data_hash").as_string().size(), 16u);
  // samples.jsonl: one parsable record per sample.
  std::ifstream f(c.out + "/samples.jsonl");
  int lines = 0;
  for (std::string line; std::getline(f, line); ++lines) {
    const SampleRecord rec = sample_from_json(json::parse(line));
    EXPECT_EQ(rec.score, 1.0);
    EXPECT_EQ(rec.prediction, rec.expected);
  }
  EXPECT_EQ(lines, 2 * 3 * 3);
}

// Everything of results.json that must not depend on how the run was cut (timings aside:
// the fakes report 0 seconds, so the task metrics compare exactly).
json::value stable(const std::string& dir) {
  json::object r = results_of(dir);
  return json::array{r.at("tasks"), r.at("arguments"), r.at("samples_total")};
}

TEST(Runner, ResumeAfterAKillGivesTheUninterruptedResults) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  test::OracleModel whole;
  run_eval(probe_config(tmp.file("whole")), whole, &p);

  RunConfig c = probe_config(tmp.file("cut"));
  c.stop_after = 10;
  test::OracleModel first;
  EXPECT_FALSE(run_eval(c, first, &p).complete);
  EXPECT_FALSE(fs::exists(c.out + "/results.json"));
  // A kill in the middle of the 11th line: append half of a record.
  {
    std::ifstream f(c.out + "/samples.jsonl");
    std::string line;
    std::getline(f, line);
    std::ofstream a(c.out + "/samples.jsonl", std::ios::app);
    a << line.substr(0, line.size() / 2);
  }
  c.stop_after = 30;
  test::OracleModel second;
  const RunSummary s2 = run_eval(c, second, &p);
  EXPECT_EQ(s2.resumed, 10);
  EXPECT_EQ(s2.ran, 30);
  c.stop_after = -1;
  test::OracleModel third;
  const RunSummary s3 = run_eval(c, third, &p);
  EXPECT_TRUE(s3.complete);
  EXPECT_EQ(s3.resumed, 40);
  EXPECT_EQ(second.calls + third.calls + 10, whole.calls) << "no sample ran twice";
  EXPECT_EQ(stable(c.out), stable(tmp.file("whole")));
  // A finished run rerun: nothing to do, the same results.
  test::OracleModel fourth;
  run_eval(c, fourth, &p);
  EXPECT_EQ(fourth.calls, 0);
  EXPECT_EQ(stable(c.out), stable(tmp.file("whole")));
}

TEST(Runner, DifferentArgumentsOnAnExistingRunAreRefused) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  test::OracleModel m;
  RunConfig c = probe_config(tmp.file("run"));
  c.tasks = {"niah_single"};
  run_eval(c, m, &p);
  RunConfig d = c;
  d.seed = 10;
  try {
    run_eval(d, m, &p);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  d.force = true;
  const RunSummary s = run_eval(d, m, &p);
  EXPECT_EQ(s.resumed, 0);
  EXPECT_TRUE(s.complete);
}

TEST(Runner, CorruptLinesAndBadInputs) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  test::OracleModel m;
  RunConfig c = probe_config(tmp.file("run"));
  c.tasks = {"niah_single"};
  c.stop_after = 3;
  run_eval(c, m, &p);
  {  // corrupt the first of three lines: not a cut-short write
    std::string text = slurp(c.out + "/samples.jsonl");
    text[0] = '#';
    std::ofstream(c.out + "/samples.jsonl", std::ios::trunc) << text;
  }
  c.stop_after = -1;
  EXPECT_THROW(run_eval(c, m, &p), InputError);
  RunConfig bad = probe_config(tmp.file("bad"));
  bad.tasks = {"niah_nope"};
  EXPECT_THROW(run_eval(bad, m, &p), InputError);
  bad = probe_config(tmp.file("bad"));
  bad.tasks = {"niah_multiquery"};
  EXPECT_THROW(run_eval(bad, m, &p), InputError) << "no probe format";
  bad = probe_config(tmp.file("bad"));
  bad.samples = 0;
  EXPECT_THROW(run_eval(bad, m, &p), InputError);
  bad = probe_config(tmp.file("bad"));
  EXPECT_THROW(run_eval(bad, m, nullptr), InputError) << "probe format without probe.json";
  bad.suite = "degradation";
  EXPECT_THROW(run_eval(bad, m, &p), InputError);
  EXPECT_FALSE(fs::exists(tmp.file("bad"))) << "bad input writes nothing";
  EXPECT_THROW(parse_lengths("4k,,8k"), InputError);
  EXPECT_THROW(parse_lengths("4x"), InputError);
  EXPECT_THROW(parse_lengths("0"), InputError);
  EXPECT_THROW(parse_lengths("4k,4096"), InputError) << "duplicate";
  EXPECT_EQ(parse_lengths("4k,16K,1m,300"), (std::vector<int64_t>{4096, 16384, 1048576, 300}));
  EXPECT_THROW(parse_depths("0,1.5"), InputError);
  EXPECT_EQ(parse_depths("0,0.5,1"), (std::vector<double>{0, 0.5, 1}));
}

// A backend without the capability a task needs is refused before any call.
class NoCandidates : public test::OracleModel {
 public:
  uint32_t capabilities() const override { return kTokens | kChat | kGenerate; }
};

TEST(Runner, MissingCapabilityIsRefused) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  NoCandidates m;
  try {
    run_eval(probe_config(tmp.file("run")), m, &p);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("candidates"), std::string::npos) << e.what();
  }
  EXPECT_EQ(m.calls, 0);
}

TEST(Results, Utf8SanitizerAndHexHash) {
  EXPECT_EQ(valid_utf8("ab\xE2\x82"), "ab\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(valid_utf8("é€𐍈"), "é€𐍈");
  EXPECT_EQ(hex64(0xabc), "0000000000000abc");
}

}  // namespace
}  // namespace dsv4::evals
