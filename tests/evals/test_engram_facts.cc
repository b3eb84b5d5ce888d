// evals/recall/engram_facts: the recall suite's no-context Engram task on an engram probe
// (model/probe_engram.h), through run_eval and the engine: probe.json's facts read back, one
// item per fact of prompt [key_a, key_b] only, recall equal to what the closed form predicts,
// reported as its own task; skipped with the reason on a probe without facts (an error when
// named); no natural format; and the in-context niah_single on the same engram probe still
// recalls every needle at 1K (CSA), with and without distractors; and the CLI:
// `dsv4 init --probe recall --set engram_facts=N` then `dsv4 eval --suite recall --tasks
// engram_facts --model DIR` (no --lengths).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "evals/engine_backend.h"
#include "evals/recall/engram_facts.h"
#include "evals/recall/probe_tokens.h"
#include "evals/runner.h"
#include "model/probe.h"
#include "model/probe_engram.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"

namespace dsv4::evals {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("dsv4-engram-facts-" + std::to_string(std::random_device{}()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

ProbeKnobs knobs(std::initializer_list<const char*> sets) {
  ProbeKnobs k;
  for (const char* s : sets) probe_set_knob(k, s);
  return k;
}

// A probe written once per set of knobs, with its tokens and an engine over it.
struct WrittenProbe {
  TempDir tmp;
  ProbeModel m;
  std::string dir;
  ProbeTokens tokens;
  std::unique_ptr<EngineModel> model;
  explicit WrittenProbe(const ProbeKnobs& k) : m(build_probe(k)), dir((tmp.path / "probe").string()) {
    write_probe_checkpoint(k, dir);
    tokens = read_probe_tokens(dir + "/probe.json", m.vocab.size);
    EngineOptions o;
    o.numerics = k.quant ? "official" : "exact";
    model = std::make_unique<EngineModel>(dir, o);
  }
};

// F = 256 facts, 4 heads, table 4093; release encodings as `dsv4 init` writes by default.
WrittenProbe& engram_probe() {
  static WrittenProbe p(knobs({"engram_facts=256", "engram_table=4093", "engram_heads=4"}));
  return p;
}
WrittenProbe& plain_probe() {
  static WrittenProbe p(knobs({"fillers=200", "keys=32", "values=32"}));
  return p;
}

RunConfig run_config(const std::string& out, std::vector<std::string> tasks, std::vector<int64_t> lengths) {
  RunConfig c;
  c.suite = "recall";
  c.tasks = std::move(tasks);
  c.lengths = std::move(lengths);
  c.format = PromptFormat::probe;
  c.out = out;
  c.progress = RunConfig::Progress::none;
  c.resamples = 200;
  return c;
}

const json::object& task_of(const json::object& results, const std::string& name) {
  for (const json::value& t : results.at("tasks").as_array())
    if (t.as_object().at("name").as_string() == name) return t.as_object();
  throw std::runtime_error("no task " + name + " in results.json");
}

TEST(EngramFacts, ProbeJsonFactsReadBack) {
  const WrittenProbe& p = engram_probe();
  ASSERT_EQ(p.tokens.engram_facts.size(), p.m.facts.size());
  for (size_t i = 0; i < p.m.facts.size(); ++i) {
    EXPECT_EQ(p.tokens.engram_facts[i].key_a, p.m.facts[i].key_a);
    EXPECT_EQ(p.tokens.engram_facts[i].key_b, p.m.facts[i].key_b);
    EXPECT_EQ(p.tokens.engram_facts[i].value, p.m.facts[i].value);
  }
  EXPECT_TRUE(plain_probe().tokens.engram_facts.empty());
}

TEST(EngramFacts, BadFactEntriesAreNamed) {
  const WrittenProbe& p = engram_probe();
  std::ifstream f(p.dir + "/probe.json");
  std::stringstream ss;
  ss << f.rdbuf();
  const json::object good = json::parse(ss.str()).as_object();
  const int64_t k0 = p.m.vocab.key0, v0 = p.m.vocab.value0;
  TempDir tmp;
  auto expect_bad = [&](json::value facts, const std::string& what) {
    json::object o = good;
    o["engram_facts"] = std::move(facts);
    const std::string path = (tmp.path / "probe.json").string();
    std::ofstream(path) << json::serialize(o);
    try {
      (void)read_probe_tokens(path);
      ADD_FAILURE() << what << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("engram_facts"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_bad(json::object{}, "must be an array");
  expect_bad(json::array{json::object{{"key", json::array{v0, k0}}, {"value", v0}}}, "not {\"key\"");  // a value as key
  expect_bad(json::array{json::object{{"key", json::array{k0, k0 + 1}}, {"value", k0}}}, "not {\"key\"");  // a key as value
  expect_bad(json::array{json::object{{"key", json::array{k0}}, {"value", v0}}}, "not {\"key\"");
  expect_bad(json::array{json::object{{"key", json::array{k0, k0 + 1}}, {"value", v0}},
                         json::object{{"key", json::array{k0, k0 + 1}}, {"value", v0 + 1}}},
             "twice");
}

// The task through run_eval without --lengths: one item per fact, recall as predicted.
TEST(EngramFacts, RecallSuiteAnswersEveryFactFromTheTable) {
  WrittenProbe& p = engram_probe();
  TempDir out;
  const RunSummary s = run_eval(run_config(out.path.string(), {"engram_facts"}, {}), *p.model, &p.tokens);
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(s.planned, int64_t(p.m.facts.size()));
  int64_t predicted = 0;
  for (const ProbeFactPrediction& q : probe_predict_facts(p.m)) predicted += q.correct;
  const json::object& t = task_of(s.results, "engram_facts");
  EXPECT_EQ(t.at("samples").as_int64(), int64_t(p.m.facts.size()));
  const json::array& bins = t.at("by_length").as_array();
  ASSERT_EQ(bins.size(), 1u);
  EXPECT_EQ(bins[0].at("length").as_int64(), kEngramFactPromptTokens);
  EXPECT_EQ(bins[0].at("mean").to_number<double>(), double(predicted) / double(p.m.facts.size()));
  EXPECT_EQ(predicted, int64_t(p.m.facts.size()));  // 256 facts, 4 heads of ~4093 rows: no flips
  // Every sample's prompt is the fact's two tokens: the cell, the prompt size and the answer.
  std::ifstream f(out.path / "samples.jsonl");
  int64_t lines = 0;
  for (std::string line; std::getline(f, line); ++lines) {
    const json::object r = json::parse(line).as_object();
    EXPECT_EQ(r.at("cell").as_string(), kEngramFactsCell);
    EXPECT_EQ(r.at("prompt_tokens").as_int64(), kEngramFactPromptTokens);
    EXPECT_EQ(r.at("expected").as_string(), std::to_string(p.m.facts[size_t(r.at("index").as_int64())].value));
  }
  EXPECT_EQ(lines, int64_t(p.m.facts.size()));
}

TEST(EngramFacts, SkippedWithTheReasonOnAProbeWithoutFacts) {
  WrittenProbe& p = plain_probe();
  {  // named: an error before anything runs
    TempDir out;
    try {
      (void)run_eval(run_config(out.path.string(), {"engram_facts"}, {}), *p.model, &p.tokens);
      ADD_FAILURE() << "engram_facts ran on a probe without facts";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("no Engram facts"), std::string::npos) << e.what();
    }
  }
  // The whole suite: left out, the reason in results.json (one short cell of the others).
  TempDir out;
  RunConfig c = run_config(out.path.string(), {}, {512});
  c.depths = {0.5};
  c.samples = 1;
  const RunSummary s = run_eval(c, *p.model, &p.tokens);
  ASSERT_TRUE(s.complete);
  const json::array& skipped = s.results.at("skipped_tasks").as_array();
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].at("name").as_string(), "engram_facts");
  EXPECT_NE(std::string(skipped[0].at("reason").as_string()).find("no Engram facts"), std::string::npos);
  for (const json::value& t : s.results.at("tasks").as_array()) EXPECT_NE(t.at("name").as_string(), "engram_facts");
}

TEST(EngramFacts, ProbeFormatOnlyAndLengthsStillRequiredByTheOthers) {
  const EngramFactsTask t;
  EXPECT_FALSE(t.supports(PromptFormat::natural));
  EXPECT_FALSE(t.uses_lengths());
  EXPECT_FALSE(tasks_use_lengths("recall", {"engram_facts"}));
  EXPECT_TRUE(tasks_use_lengths("recall", {"engram_facts", "niah_single"}));
  EXPECT_TRUE(tasks_use_lengths("recall", {}));
  WrittenProbe& p = engram_probe();
  TempDir out;
  EXPECT_THROW(run_eval(run_config(out.path.string(), {"engram_facts", "niah_single"}, {}), *p.model, &p.tokens),
               InputError);
}

// The facts in the table do not disturb in-context recall: niah_single and niah_multikey (16
// distractors) at 1K (CSA), every depth.
TEST(EngramFacts, InContextRecallOnTheEngramProbeIsUnchanged) {
  WrittenProbe& p = engram_probe();
  TempDir out;
  RunConfig c = run_config(out.path.string(), {"niah_single", "niah_multikey"}, {1024});
  c.samples = 1;
  const RunSummary s = run_eval(c, *p.model, &p.tokens);
  ASSERT_TRUE(s.complete);
  for (const char* task : {"niah_single", "niah_multikey"}) {
    const json::object& t = task_of(s.results, task);
    EXPECT_EQ(t.at("samples").as_int64(), 5) << task;
    EXPECT_EQ(t.at("by_length").as_array()[0].at("mean").to_number<double>(), 1.0) << task;
  }
}

TEST(EngramFacts, CliInitAndEvalWithoutLengths) {
  test::TempDir tmp;
  const std::string dir = tmp.file("probe"), out = tmp.file("out");
  test::CmdResult r = test::run_dsv4("init --probe recall --set engram_facts=32 --set engram_heads=2 --out " + dir, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  r = test::run_dsv4("eval --suite recall --tasks engram_facts --model " + dir + " --out " + out, tmp);
  ASSERT_EQ(r.status, 0) << r.err;
  const json::object res = json::parse(test::slurp(out + "/results.json")).as_object();
  const json::object& t = task_of(res, "engram_facts");
  EXPECT_EQ(t.at("samples").as_int64(), 32);
  EXPECT_EQ(t.at("by_length").as_array()[0].at("mean").to_number<double>(), 1.0);  // 32 facts in 2 x 4093 rows
  // Other tasks still need --lengths (exit 2, the message names it).
  r = test::run_dsv4("eval --suite recall --tasks engram_facts,niah_single --model " + dir + " --out " + out + "2", tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--lengths"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv4::evals
