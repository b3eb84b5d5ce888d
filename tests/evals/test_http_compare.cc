// Two servers, one comparison (issue: compare models side by side): run_evals runs the same
// items on two models interleaved (sample i on every model before sample i + 1 on any), each
// run resumes on its own, plans that differ are refused; and end to end, two OpenAI-compatible
// servers on loopback serving different checkpoints (the CSA and the HCA recall probes)
// through the http backend give each engine's own scores, and `compare_runs` pairs them.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <tuple>
#include <thread>

#include "evals/compare.h"
#include "evals/engine_backend.h"
#include "evals/http_backend.h"
#include "evals/openai_server.h"
#include "evals/recall/probe_tokens.h"
#include "evals/runner.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/probe.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

using dsv4::test::TempDir;

// Records the order of calls across models.
struct Logged : test::OracleModel {
  Logged(std::vector<std::string>& log, std::string name) : log_(log), name_(std::move(name)) {}
  CandidateScores score_candidates(const std::vector<int32_t>& p, const std::vector<int32_t>& c) override {
    log_.push_back(name_);
    return OracleModel::score_candidates(p, c);
  }
  std::vector<std::string>& log_;
  std::string name_;
};

RunConfig config(const std::string& out) {
  RunConfig c;
  c.suite = "recall";
  c.tasks = {"niah_single"};
  c.lengths = {512, 1024};
  c.depths = {0.5};
  c.samples = 3;
  c.seed = 5;
  c.format = PromptFormat::probe;
  c.out = out;
  c.model_dir = "(fake)";
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  return c;
}

TEST(RunEvals, InterleavesResumesAndRefusesDifferentPlans) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  std::vector<std::string> log;
  Logged a(log, "a"), b(log, "b");
  RunConfig ca = config(tmp.file("a")), cb = config(tmp.file("b"));
  ca.stop_after = 2;  // a is killed after 2 samples; b finishes
  auto s = run_evals({ca, cb}, {&a, &b}, &p);
  EXPECT_FALSE(s[0].complete);
  EXPECT_TRUE(s[1].complete);
  ASSERT_GE(log.size(), 4u);
  EXPECT_EQ((std::vector<std::string>(log.begin(), log.begin() + 4)), (std::vector<std::string>{"a", "b", "a", "b"}));
  log.clear();
  ca.stop_after = -1;
  s = run_evals({ca, cb}, {&a, &b}, &p);  // a resumes, b has nothing left to do
  EXPECT_TRUE(s[0].complete);
  EXPECT_EQ(s[0].resumed, 2);
  EXPECT_EQ(s[1].resumed, 6);
  EXPECT_EQ(log, std::vector<std::string>(4, "a"));
  // The interleaved run equals a plain one.
  test::OracleModel alone;
  const RunSummary plain = run_eval(config(tmp.file("plain")), alone, &p);
  EXPECT_EQ(s[0].results.at("tasks"), plain.results.at("tasks"));

  RunConfig other = config(tmp.file("c"));
  other.lengths = {512};
  EXPECT_THROW(run_evals({config(tmp.file("d")), other}, {&a, &b}, &p), InputError);
  EXPECT_THROW(run_evals({config(tmp.file("e")), config(tmp.file("e"))}, {&a, &b}, &p), InputError);
}

// One probe checkpoint served on loopback, and an engine on the same files for reference.
struct Server {
  TempDir tmp;
  std::string dir = tmp.file("probe");
  std::unique_ptr<EngineModel> engine, served;
  std::unique_ptr<OpenAIServer> server;
  std::thread thread;
  int port = 0;
  // A recall probe (retrieval r), or with `tiny` a random v4-tiny checkpoint.
  explicit Server(ProbeRetrieval r, const std::string& name, bool tiny = false) {
    ProbeKnobs k;
    k.retrieval = r;
    if (tiny)
      write_random_checkpoint(config_preset("v4-tiny"), 3, dir, 0);
    else
      write_probe_checkpoint(k, dir);
    engine = std::make_unique<EngineModel>(dir, EngineOptions{});
    served = std::make_unique<EngineModel>(dir, EngineOptions{});
    ServeOptions o;
    o.model_name = name;
    o.vocab_size = engine->vocab_size();
    o.port = 0;
    server = std::make_unique<OpenAIServer>(*served, o);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Server() {
    server->stop();
    thread.join();
  }
  HttpBackendOptions client(const std::string& name) const {
    HttpBackendOptions o;
    o.http.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    o.http.max_retries = 1;
    o.http.timeout_s = 60;
    o.model = name;
    o.tokenizer = dir + "/tokenizer.json";
    o.top_logprobs = int(engine->vocab_size());
    return o;
  }
};

// (key, prediction, score) of every sample of a finished run: what must not depend on the path.
std::vector<std::tuple<std::string, std::string, double>> outcomes(const std::string& dir) {
  std::vector<std::tuple<std::string, std::string, double>> v;
  for (const SampleRecord& r : read_run(dir).samples) v.emplace_back(r.key(), r.prediction, r.score);
  std::sort(v.begin(), v.end());
  return v;
}

TEST(HttpCompare, TwoServersTwoCheckpointsOneComparison) {
  Server csa(ProbeRetrieval::csa, "csa"), hca(ProbeRetrieval::hca, "hca");
  const ProbeTokens p = read_probe_tokens(csa.dir + "/probe.json", csa.engine->vocab_size());
  TempDir tmp;
  RunConfig base = config("");
  base.tasks = {"niah_multikey"};
  base.lengths = {1024};
  base.samples = 4;
  base.model_dir = csa.dir;
  RunConfig ca = base, cb = base;
  ca.out = tmp.file("csa"), cb.out = tmp.file("hca");
  ca.model_name = "csa", cb.model_name = "hca";
  HttpModel a(csa.client("csa")), b(hca.client("hca"));
  const auto s = run_evals({ca, cb}, {&a, &b}, &p);
  ASSERT_TRUE(s[0].complete && s[1].complete);
  // Each server gives its own engine's scores.
  RunConfig ea = base, eb = base;
  ea.out = tmp.file("engine-csa"), eb.out = tmp.file("engine-hca");
  run_eval(ea, *csa.engine, &p);
  run_eval(eb, *hca.engine, &p);
  EXPECT_EQ(outcomes(ca.out), outcomes(ea.out));
  EXPECT_EQ(outcomes(cb.out), outcomes(eb.out));
  EXPECT_NE(outcomes(ca.out), outcomes(cb.out)) << "the two servers serve different checkpoints";
  const auto doc = compare_runs({read_run(ca.out), read_run(cb.out)}, {});
  const auto& row = doc.at("comparisons").as_array()[0].as_object().at("by_length").as_array()[0].as_object();
  EXPECT_EQ(row.at("n").as_int64(), 4);
  EXPECT_EQ(row.at("a").as_object().at("mean").to_number<double>(), 1.0);  // CSA: exact with 16 distractors
  EXPECT_GE(row.at("diff").as_object().at("mean").to_number<double>(), 0.0);
}

// Runs `c` on the server's engine directly and through the http backend against the server
// (into tmp/engine and tmp/http); returns both runs' outcomes.
std::pair<std::vector<std::tuple<std::string, std::string, double>>,
          std::vector<std::tuple<std::string, std::string, double>>>
engine_and_http(const Server& server, const std::string& name, RunConfig c, TempDir& tmp) {
  c.model_dir = server.dir;
  c.progress = RunConfig::Progress::none;
  RunConfig ce = c, ch = c;
  ce.out = tmp.file("engine"), ch.out = tmp.file("http");
  ch.model_name = name;
  HttpModel http(server.client(name));
  run_eval(ce, *server.engine, nullptr);
  run_eval(ch, http, nullptr);
  return {outcomes(ce.out), outcomes(ch.out)};
}

// The coding suite through the http backend against our server: the same completions as the
// engine on the same seeds (sampled at the coding temperature), so the same pass@k.
TEST(HttpCompare, CodingThroughAServerEqualsTheEngine) {
  Server tiny(ProbeRetrieval::csa, "tiny", /*tiny=*/true);
  TempDir tmp;
  RunConfig c;
  c.suite = "coding";
  c.lengths = {0};
  c.samples = 2;
  c.seed = 4;
  c.format = PromptFormat::natural;
  {  // the first two problems of the team's Python set
    std::ifstream in(std::string(DSV4_TEST_DATA_DIR) + "/../../evals/coding/problems/python.jsonl");
    std::ofstream out(tmp.file("problems.jsonl"));
    std::string line;
    for (int i = 0; i < 2 && std::getline(in, line); ++i) out << line << "\n";
  }
  c.options.problem_files = {tmp.file("problems.jsonl")};
  c.options.coding_max_tokens = 24;
  const auto [engine, http] = engine_and_http(tiny, "tiny", c, tmp);
  EXPECT_EQ(engine, http);
  EXPECT_FALSE(engine.empty());
}

// The longcode suite (natural format: generation) through our server: the engine's answers.
TEST(HttpCompare, LongCodeThroughAServerEqualsTheEngine) {
  Server tiny(ProbeRetrieval::csa, "tiny", /*tiny=*/true);
  TempDir tmp;
  RunConfig c;
  c.suite = "longcode";
  c.lengths = {1024};
  c.depths = {0.5};
  c.samples = 1;
  c.seed = 6;
  c.format = PromptFormat::natural;
  const auto [engine, http] = engine_and_http(tiny, "tiny", c, tmp);
  EXPECT_EQ(engine.size(), 3u);  // repo_return, repo_file, repo_params
  EXPECT_EQ(engine, http);
}

}  // namespace
}  // namespace dsv4::evals
