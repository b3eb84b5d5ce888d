// The http backend against our own OpenAI-compatible server (evals/openai_server.h) on a
// loopback port, serving a recall probe (model/probe.h):
//   - the recall suite (probe format, two lengths, two tasks) scores exactly as the engine
//     backend on the same seeds: every sample's prediction and score, every bin's mean
//   - score_candidates, loglik, generate (plain and streamed), chat and tokenize agree with
//     the engine
//   - a run whose server starts failing (500s) stops with a clear error and resumes later
//     with nothing lost (the same results as the engine's uninterrupted run)
//   - request validation (bad JSON, unknown fields, bad values, over-long prompts, oversized
//     bodies, unknown model/path) answers 4xx with a JSON message; a full queue answers 503
//   - `dsv4 serve` stops cleanly on SIGTERM; `dsv4 eval --endpoint` records the endpoint and
//     model name, never the API key
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

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

namespace dsv4::evals {
namespace {

namespace json = boost::json;
using dsv4::test::TempDir;

constexpr const char* kModelName = "probe-csa";
// Log-probs computed on two paths of the same model (a prefill per prefix on the server vs
// one forward over the continuation in EngineModel::loglik) agree to float rounding of the
// logits (|logit| ~ 10, ulp ~1e-6) times a few: 1e-4, as in test_engine_backend.
constexpr double kLogprobTol = 1e-4;

// A LanguageModel that forwards to another, failing (std::runtime_error) once `budget`
// score_candidates calls are used up (budget < 0: never), or blocking each call until
// released (block = true).
class Faulty final : public LanguageModel {
 public:
  explicit Faulty(LanguageModel& m) : m_(m) {}
  std::atomic<int> budget{-1};
  std::string spec() const override { return m_.spec(); }
  uint32_t capabilities() const override { return m_.capabilities(); }
  std::vector<int32_t> tokenize(std::string_view t) const override { return m_.tokenize(t); }
  std::string detokenize(const std::vector<int32_t>& ids) const override {
    return m_.detokenize(ids);
  }
  std::string render_chat(const std::vector<ChatMessage>& m) const override {
    return m_.render_chat(m);
  }
  Completion generate(const std::vector<int32_t>& p, const SamplingParams& s) override {
    return m_.generate(p, s);
  }
  Loglik loglik(const std::vector<int32_t>& c, const std::vector<int32_t>& x) override {
    return m_.loglik(c, x);
  }
  CandidateScores score_candidates(const std::vector<int32_t>& p,
                                   const std::vector<int32_t>& c) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (block) {
        entered = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !block; });
      }
    }
    if (budget == 0) throw std::runtime_error("injected failure");
    if (budget > 0) --budget;
    return m_.score_candidates(p, c);
  }
  void set_block(bool b) {
    std::lock_guard<std::mutex> lock(mu_);
    block = b;
    entered = false;
    cv_.notify_all();
  }
  void wait_entered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered; });
  }

 private:
  LanguageModel& m_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool block = false, entered = false;
};

// The probe checkpoint, the engine on it (the reference) and a second engine behind a server.
struct Served {
  TempDir tmp;
  std::string dir = tmp.file("probe");
  std::unique_ptr<EngineModel> engine, served;
  std::unique_ptr<Faulty> faulty;
  std::unique_ptr<OpenAIServer> server;
  std::thread thread;
  int port = 0;
  ProbeTokens probe;

  // checkpoint: "probe" (the CSA recall probe) or "tiny" (a random v4-tiny checkpoint).
  explicit Served(ServeOptions o = {}, const std::string& checkpoint = "probe") {
    if (checkpoint == "probe")
      write_probe_checkpoint(ProbeKnobs{}, dir);
    else
      write_random_checkpoint(config_preset("v4-tiny"), 1, dir, 0);
    engine = std::make_unique<EngineModel>(dir, EngineOptions{});
    served = std::make_unique<EngineModel>(dir, EngineOptions{});
    faulty = std::make_unique<Faulty>(*served);
    if (checkpoint == "probe") probe = read_probe_tokens(dir + "/probe.json", engine->vocab_size());
    o.model_name = kModelName;
    o.vocab_size = engine->vocab_size();
    o.port = 0;
    server = std::make_unique<OpenAIServer>(*faulty, o);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Served() {
    server->stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/v1"; }
  HttpBackendOptions client(bool tokenizer = true) const {
    HttpBackendOptions o;
    o.http.base_url = url();
    o.http.max_retries = 1;
    o.http.backoff_s = 0.01;
    o.http.timeout_s = 60;
    o.model = kModelName;
    if (tokenizer) o.tokenizer = dir + "/tokenizer.json";
    o.top_logprobs = int(engine->vocab_size());  // the server allows the whole vocabulary
    return o;
  }
};

RunConfig recall_config(const std::string& out) {
  RunConfig c;
  c.suite = "recall";
  c.tasks = {"niah_single", "niah_multikey"};
  c.lengths = {1024, 2048};
  c.depths = {0.25, 0.75};
  c.samples = 1;
  c.seed = 7;
  c.format = PromptFormat::probe;
  c.out = out;
  c.progress = RunConfig::Progress::none;
  return c;
}

std::vector<json::object> sample_lines(const std::string& out) {
  std::vector<json::object> v;
  std::istringstream in(dsv4::test::slurp(out + "/samples.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) v.push_back(json::parse(line).as_object());
  return v;
}

// The per-sample and per-bin results of two runs are the same, sample by sample.
void expect_same_scores(const RunSummary& a, const std::string& out_a, const RunSummary& b,
                        const std::string& out_b) {
  const auto la = sample_lines(out_a), lb = sample_lines(out_b);
  ASSERT_EQ(la.size(), lb.size());
  ASSERT_FALSE(la.empty());
  auto key = [](const json::object& s) {
    return json::serialize(s.at("task")) + json::serialize(s.at("length")) +
           json::serialize(s.at("cell")) + json::serialize(s.at("index"));
  };
  std::map<std::string, const json::object*> by_key;
  for (const auto& s : lb) by_key[key(s)] = &s;
  for (const auto& s : la) {
    ASSERT_TRUE(by_key.count(key(s))) << key(s);
    const json::object& t = *by_key[key(s)];
    EXPECT_EQ(s.at("item_hash"), t.at("item_hash")) << key(s);
    EXPECT_EQ(s.at("prediction"), t.at("prediction")) << key(s);
    EXPECT_EQ(s.at("score"), t.at("score")) << key(s);
  }
  const auto& ta = a.results.at("tasks").as_array();
  const auto& tb = b.results.at("tasks").as_array();
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    const auto& ba = ta[i].at("by_length").as_array();
    const auto& bb = tb[i].at("by_length").as_array();
    ASSERT_EQ(ba.size(), bb.size());
    for (size_t j = 0; j < ba.size(); ++j) {
      EXPECT_EQ(ba[j].at("mean"), bb[j].at("mean"));
      EXPECT_EQ(ba[j].at("ci95"), bb[j].at("ci95"));
    }
  }
}

TEST(HttpServe, RecallProbeScoresEqualTheEngines) {
  Served s;
  const RunSummary e = run_eval(recall_config(s.tmp.file("engine")), *s.engine, &s.probe);
  HttpModel http(s.client());
  RunConfig c = recall_config(s.tmp.file("http"));
  c.endpoint = http.base_url();
  c.model_name = http.model_name();
  const RunSummary h = run_eval(c, http, &s.probe);
  ASSERT_TRUE(e.complete && h.complete);
  expect_same_scores(e, s.tmp.file("engine"), h, s.tmp.file("http"));
  // The probe solves recall at these lengths: the comparison is not between two failures.
  const auto& t0 = h.results.at("tasks").as_array()[0].at("by_length").as_array();
  EXPECT_EQ(t0[0].at("mean").to_number<double>(), 1.0);
  const auto& model = h.results.at("model").as_object();
  EXPECT_EQ(model.at("endpoint").as_string(), "http://127.0.0.1:" + std::to_string(s.port));
  EXPECT_EQ(model.at("model_name").as_string(), kModelName);
  EXPECT_EQ(model.at("backend").as_string(),
            std::string("http:") + kModelName + "@http://127.0.0.1:" + std::to_string(s.port));
}

// The natural format (token-space prompts around the chat template, greedy generation of
// the answer) on a random tiny checkpoint: the same generated answers, sample by sample.
TEST(HttpServe, NaturalRecallAnswersEqualTheEngines) {
  Served s({}, "tiny");
  RunConfig c = recall_config("");
  c.format = PromptFormat::natural;
  c.tasks = {"niah_single", "variable_tracking"};
  c.lengths = {512};
  c.depths = {0.5};
  RunConfig ce = c, ch = c;
  ce.out = s.tmp.file("engine");
  ch.out = s.tmp.file("http");
  const RunSummary e = run_eval(ce, *s.engine, nullptr);
  HttpModel http(s.client());
  const RunSummary h = run_eval(ch, http, nullptr);
  ASSERT_TRUE(e.complete && h.complete);
  expect_same_scores(e, ce.out, h, ch.out);
  // The answers compared are real generations, not empty strings.
  for (const auto& x : sample_lines(ch.out)) EXPECT_FALSE(x.at("prediction").as_string().empty());
}

TEST(HttpServe, BackendMethodsAgreeWithTheEngine) {
  Served s;
  HttpModel http(s.client());
  EngineModel& e = *s.engine;
  const std::vector<int32_t> prompt = e.tokenize(" baba kbaba vbaba bubu kbaba");
  ASSERT_EQ(prompt.size(), 5u);
  // score_candidates: the same prefill and log-softmax, sent as JSON doubles (exact round trip).
  const std::vector<int32_t> cands = {prompt[2], prompt[3], 0, 1};
  EXPECT_EQ(http.score_candidates(prompt, cands).logprob,
            e.score_candidates(prompt, cands).logprob);
  // loglik through echo: a prefill per prefix on the server.
  for (const std::vector<int32_t>& cont :
       {std::vector<int32_t>{prompt[2]}, std::vector<int32_t>{prompt[2], prompt[3]}}) {
    const Loglik a = http.loglik(prompt, cont), b = e.loglik(prompt, cont);
    EXPECT_NEAR(a.logprob, b.logprob, kLogprobTol);
    EXPECT_EQ(a.greedy, b.greedy);
  }
  EXPECT_TRUE(http.loglik(prompt, {prompt[2]}).greedy);  // the probe answers the value: greedy
  // Greedy generation, plain and streamed, and from text.
  SamplingParams p;
  p.max_tokens = 3;
  const Completion ref = e.generate(prompt, p);
  ASSERT_FALSE(ref.text.empty());
  EXPECT_EQ(http.generate(prompt, p).text, ref.text);
  EXPECT_EQ(http.generate(prompt, p).tokens, e.tokenize(ref.text));
  EXPECT_EQ(http.generate_text(" baba kbaba vbaba bubu kbaba", p).text, ref.text);
  HttpBackendOptions so = s.client();
  so.stream = true;
  HttpModel streamed(so);
  EXPECT_EQ(streamed.generate(prompt, p).text, ref.text);
  // Chat: the server's template is the engine's render_chat.
  const std::vector<ChatMessage> msgs = {{"user", " baba kbaba vbaba"}};
  SamplingParams greedy;
  greedy.max_tokens = 3;
  EXPECT_EQ(http.chat(msgs, greedy).text, e.generate(e.tokenize(e.render_chat(msgs)), greedy).text);
  EXPECT_EQ(streamed.chat(msgs, greedy).text,
            e.generate(e.tokenize(e.render_chat(msgs)), greedy).text);
  // Tokenize through the server's /tokenize and /detokenize.
  HttpBackendOptions to = s.client(/*tokenizer=*/false);
  to.server_tokenize = true;
  HttpModel remote(to);
  EXPECT_EQ(remote.capabilities() & kTokens, uint32_t(kTokens));
  EXPECT_EQ(remote.tokenize(" baba kbaba"), e.tokenize(" baba kbaba"));
  EXPECT_EQ(remote.detokenize(prompt), e.detokenize(prompt));
}

TEST(HttpServe, AFailingServerRunResumesWithNothingLost) {
  Served s;
  RunConfig base = recall_config("");
  base.tasks = {"niah_single"};
  base.depths = {0.0, 0.5, 1.0};
  base.lengths = {1024};
  base.samples = 2;  // 6 samples
  RunConfig ce = base;
  ce.out = s.tmp.file("engine");
  const RunSummary e = run_eval(ce, *s.engine, &s.probe);
  RunConfig ch = base;
  ch.out = s.tmp.file("http");
  ch.model_name = kModelName;
  s.faulty->budget = 3;  // three samples, then every request fails with 500
  {
    HttpModel http(s.client());
    try {
      run_eval(ch, http, &s.probe);
      FAIL() << "the run did not stop";
    } catch (const HttpError& err) {
      EXPECT_EQ(err.status, 500);
      EXPECT_NE(std::string(err.what()).find("injected failure"), std::string::npos) << err.what();
    }
  }
  EXPECT_EQ(sample_lines(ch.out).size(), 3u);
  s.faulty->budget = -1;  // the server recovers
  HttpModel http(s.client());
  const RunSummary h = run_eval(ch, http, &s.probe);
  EXPECT_TRUE(h.complete);
  EXPECT_EQ(h.resumed, 3);
  EXPECT_EQ(h.ran, 3);
  expect_same_scores(e, ce.out, h, ch.out);
  // Resuming under another model name is refused: the run's identity includes it.
  RunConfig other = ch;
  other.model_name = "another-model";
  EXPECT_THROW(run_eval(other, http, &s.probe), InputError);
}

// POSTs body and returns "<status> <message>" of the error (or "200").
std::string post_status(const Served& s, const std::string& path, const std::string& body) {
  HttpOptions o;
  o.base_url = s.url();
  o.max_retries = 0;
  o.timeout_s = 20;  // a broken queue would block, not hang the test
  HttpTransport t(o);
  try {
    t.post_json(path, body);
    return "200";
  } catch (const HttpError& e) {
    return std::to_string(e.status) + " " + e.what();
  }
}

TEST(HttpServe, BadRequestsGet4xxWithAMessage) {
  ServeOptions o;
  o.max_prompt_tokens = 64;
  o.max_new_tokens = 8;
  o.max_echo_tokens = 16;
  o.max_body_bytes = 4096;
  Served s(o);
  auto expect = [&](const std::string& path, const std::string& body, const std::string& status,
                    const std::string& phrase) {
    const std::string r = post_status(s, path, body);
    EXPECT_EQ(r.substr(0, 3), status) << body << " -> " << r;
    EXPECT_NE(r.find(phrase), std::string::npos) << body << " -> " << r;
  };
  const std::string m = std::string(R"("model":")") + kModelName + "\"";
  expect("/v1/completions", "{" + m + ",", "400", "invalid JSON");
  expect("/v1/completions", "[1,2]", "400", "JSON object");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"frequency_penalty":1})", "400",
         "unknown field 'frequency_penalty'");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"max_tokens":"3"})", "400",
         "'max_tokens' must be an integer");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"max_tokens":9})", "400",
         "'max_tokens' must be in [1, 8]");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"temperature":-1})", "400",
         "'temperature' must be in");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"n":2})", "400", "'n' must be in [1, 1]");
  expect("/v1/completions", "{" + m + R"(,"prompt":[999999]})", "400", "not an id in [0, ");
  expect("/v1/completions", "{" + m + R"(,"prompt":[]})", "400", "'prompt' is empty");
  expect("/v1/completions", "{" + m + "}", "400", "'prompt' is required");
  expect("/v1/completions", R"({"model":"gpt-9","prompt":[5]})", "404",
         "model 'gpt-9' does not exist");
  std::string long_prompt = "[5";
  for (int i = 0; i < 64; ++i) long_prompt += ",5";
  expect("/v1/completions", "{" + m + R"(,"prompt":)" + long_prompt + "]}", "400",
         "65 tokens, more than");
  std::string echo_prompt = "[5";
  for (int i = 0; i < 16; ++i) echo_prompt += ",5";
  expect("/v1/completions",
         "{" + m + R"(,"prompt":)" + echo_prompt + R"(],"echo":true,"logprobs":1})", "400",
         "at most 16 tokens");
  expect("/v1/completions", "{" + m + R"(,"prompt":")" + std::string(5000, 'a') + "\"}", "413",
         "larger than");
  expect("/v1/chat/completions", "{" + m + R"(,"messages":[{"role":"robot","content":"x"}]})",
         "400", "role must be system, user or assistant");
  expect("/v1/chat/completions",
         "{" + m + R"(,"messages":[{"role":"user","content":"x","name":"y"}]})", "400",
         "unknown message field 'name'");
  expect("/v1/nowhere", "{}", "404", "no such endpoint");
  expect("/v1/completions", "{" + m + R"(,"prompt":[5],"max_tokens":1})", "200", "200");
}

TEST(HttpServe, AFullQueueAnswers503) {
  ServeOptions o;
  o.max_queue = 1;
  Served s(o);
  s.faulty->set_block(true);
  std::string first;
  std::thread a([&] {
    first = post_status(s, "/v1/completions",
                        std::string(R"({"model":")") + kModelName +
                            R"(","prompt":[5],"max_tokens":1,"logprobs":1,"temperature":0})");
  });
  s.faulty->wait_entered();  // the first request holds the only place
  const std::string second =
      post_status(s, "/v1/completions",
                  std::string(R"({"model":")") + kModelName + R"(","prompt":[5],"max_tokens":1})");
  s.faulty->set_block(false);
  a.join();
  EXPECT_EQ(second.substr(0, 3), "503") << second;
  EXPECT_NE(second.find("server busy"), std::string::npos) << second;
  EXPECT_EQ(first, "200");
  EXPECT_EQ(
      post_status(s, "/v1/completions",
                  std::string(R"({"model":")") + kModelName + R"(","prompt":[5],"max_tokens":1})"),
      "200");  // the place is free again
}

TEST(AdmissionGate, CountsRunningAndWaiting) {
  AdmissionGate g(2);
  EXPECT_TRUE(g.try_enter());
  EXPECT_TRUE(g.try_enter());
  EXPECT_FALSE(g.try_enter());
  EXPECT_EQ(g.load(), 2);
  g.leave();
  EXPECT_TRUE(g.try_enter());
}

// `dsv4 serve` in a child process: prints its port, answers, and exits 0 on SIGTERM.
// `dsv4 eval --endpoint` against it records the endpoint and model name, never the key.
TEST(HttpServe, ServeCommandAndEvalEndpoint) {
  TempDir tmp;
  const std::string dir = tmp.file("probe");
  write_probe_checkpoint(ProbeKnobs{}, dir);
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  // A failed assertion below must not leave the server running.
  struct Reaper {
    pid_t pid;
    bool reaped = false;
    ~Reaper() {
      if (!reaped && pid > 0) kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
    }
  } reaper{pid};
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(DSV4_BINARY, DSV4_BINARY, "serve", "--model", dir.c_str(), "--port", "0", "--model-name",
          kModelName, static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;
  for (char ch; read(out[0], &ch, 1) == 1 && ch != '\n';) line += ch;
  close(out[0]);
  const size_t at = line.find("http://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  const std::string url = line.substr(at, line.find(' ', at) - at);
  HttpOptions ho;
  ho.base_url = url;
  ho.max_retries = 0;
  HttpTransport t(ho);
  EXPECT_NE(t.get("/v1/models").find(kModelName), std::string::npos);

  const std::string secret = "sk-never-write-me-31337";
  ::setenv("DSV4_TEST_SERVE_KEY", secret.c_str(), 1);
  const EngineModel e(dir, EngineOptions{});
  const auto r = dsv4::test::run_dsv4(
      "eval --suite recall --tasks niah_single --endpoint " + url + "/v1 --model-name " +
          kModelName + " --api-key-env DSV4_TEST_SERVE_KEY --model " + dir +
          " --lengths 1k --depths 0.5 --samples 1 --top-logprobs " +
          std::to_string(e.vocab_size()) + " --progress none --out " + tmp.file("run"),
      tmp);
  ::unsetenv("DSV4_TEST_SERVE_KEY");
  EXPECT_EQ(r.status, 0) << r.err;
  const json::value res = json::parse(dsv4::test::slurp(tmp.file("run") + "/results.json"));
  EXPECT_EQ(res.at("model").at("endpoint").as_string(), url);
  EXPECT_EQ(res.at("model").at("model_name").as_string(), kModelName);
  EXPECT_EQ(res.at("tasks").at(0).at("by_length").at(0).at("mean").to_number<double>(), 1.0);
  for (const char* f : {"/results.json", "/manifest.json", "/samples.jsonl"})
    EXPECT_EQ(dsv4::test::slurp(tmp.file("run") + f).find(secret), std::string::npos) << f;
  EXPECT_EQ(r.err.find(secret), std::string::npos);

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  reaper.reaped = true;
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_THROW(t.get("/v1/models"), HttpError);  // nothing listens any more
}

TEST(HttpServe, ServeCommandBadInput) {
  TempDir tmp;
  EXPECT_EQ(dsv4::test::run_dsv4("serve --model " + tmp.file("missing") + " --port 0", tmp).status,
            2);
  const auto r = dsv4::test::run_dsv4(
      "eval --suite recall --endpoint http://127.0.0.1:1 --lengths 1k --out " + tmp.file("run"),
      tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--model-name"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv4::evals
