// The http backend against a scripted fake server (tests/evals/fake_http_server.h): retries
// with backoff on 5xx/429/dropped connections, bounded; timeouts; a clear error for every
// other status, without the API key; SSE parsing; candidates missing from the top set.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "evals/http_backend.h"
#include "evals/registry.h"
#include "reference/errors.h"
#include "tests/evals/fake_http_server.h"

namespace dsv4::evals {
namespace {

using test::FakeHttpServer;
using Clock = std::chrono::steady_clock;

constexpr const char* kKeyEnv = "DSV4_TEST_HTTP_KEY";
constexpr const char* kKey = "sk-test-d0n0tl0g-4242";
// The backoff of these tests: short, but long enough that a missing sleep is measurable.
constexpr double kBackoff = 0.1;

const std::string kOk =
    R"({"choices":[{"index":0,"text":" hello","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2}})";

HttpBackendOptions options(const FakeHttpServer& s, int retries = 3) {
  HttpBackendOptions o;
  o.http.base_url = s.url() + "/v1/";
  o.http.api_key_env = kKeyEnv;
  o.http.max_retries = retries;
  o.http.backoff_s = kBackoff;
  o.http.timeout_s = 5;
  o.model = "m";
  return o;
}

double seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

SamplingParams params() {
  SamplingParams p;
  p.max_tokens = 2;
  return p;
}

TEST(HttpBackend, RetriesA500ThenSucceeds) {
  FakeHttpServer s(
      {test::respond(500, R"({"error":{"message":"boom"}})"), test::respond(200, kOk)});
  HttpModel m(options(s));
  const auto t0 = Clock::now();
  const Completion c = m.generate({5, 6, 7}, params());
  EXPECT_EQ(c.text, " hello");
  EXPECT_EQ(c.usage.completion_tokens, 2);
  EXPECT_EQ(s.requests(), 2);
  EXPECT_GE(seconds(t0), kBackoff);  // slept before the retry
  // The request: the token-array prompt, the model, the sampling fields.
  const std::string req = s.raw_requests().at(0);
  EXPECT_NE(req.find("POST /v1/completions"), std::string::npos) << req;
  EXPECT_NE(req.find(R"("prompt":[5,6,7])"), std::string::npos) << req;
  EXPECT_NE(req.find(R"("model":"m")"), std::string::npos) << req;
}

// Token accounting for the cost of a sample (evals/cost.h): the cached prompt tokens and the
// reasoning tokens servers report in their usage details, OpenAI's and DeepSeek's spellings.
TEST(HttpBackend, ReadsCachedAndReasoningTokens) {
  FakeHttpServer s(
      {test::respond(200, R"({"choices":[{"index":0,"text":" a","finish_reason":"length"}],"usage":{"prompt_tokens":900,)"
                          R"("completion_tokens":40,"prompt_tokens_details":{"cached_tokens":512},)"
                          R"("completion_tokens_details":{"reasoning_tokens":30}}})"),
       test::respond(200, R"({"choices":[{"index":0,"text":" b","finish_reason":"length"}],"usage":{"prompt_tokens":900,)"
                          R"("completion_tokens":40,"prompt_cache_hit_tokens":640}})")});
  HttpModel m(options(s));
  const Completion a = m.generate({5, 6}, params());
  EXPECT_EQ(a.usage.prompt_tokens, 900);
  EXPECT_EQ(a.usage.cached_prompt_tokens, 512);
  EXPECT_EQ(a.usage.reasoning_tokens, 30);
  const Completion b = m.generate({5, 6}, params());
  EXPECT_EQ(b.usage.cached_prompt_tokens, 640);
  EXPECT_EQ(b.usage.reasoning_tokens, 0);
  const Outcome o = greedy_line(m, {5, 6}, 2);  // the last reply repeats: the runner's record gets them
  EXPECT_EQ(o.prompt_tokens, 900);
  EXPECT_EQ(o.cached_prompt_tokens, 640);
}

TEST(HttpBackend, BacksOffExponentiallyOn429) {
  FakeHttpServer s({test::respond(429, R"({"error":"slow down"})"),
                    test::respond(429, R"({"error":"slow down"})"), test::respond(200, kOk)});
  HttpModel m(options(s));
  const auto t0 = Clock::now();
  EXPECT_EQ(m.generate({5}, params()).text, " hello");
  EXPECT_EQ(s.requests(), 3);
  EXPECT_GE(seconds(t0), kBackoff + 2 * kBackoff);  // 0.1 then 0.2
}

TEST(HttpBackend, HonoursRetryAfter) {
  FakeHttpServer s({test::respond(429, "{}", "Retry-After: 1\r\n"), test::respond(200, kOk)});
  HttpModel m(options(s));
  const auto t0 = Clock::now();
  EXPECT_EQ(m.generate({5}, params()).text, " hello");
  EXPECT_GE(seconds(t0), 1.0);
}

TEST(HttpBackend, GivesUpAfterBoundedRetriesWithTheServerMessage) {
  FakeHttpServer s({test::respond(503, R"({"error":{"message":"overloaded, try later"}})")});
  HttpModel m(options(s, 2));
  try {
    m.generate({5}, params());
    FAIL() << "no error";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 503);
    EXPECT_TRUE(e.retryable);
    const std::string w = e.what();
    EXPECT_NE(w.find("HTTP 503"), std::string::npos) << w;
    EXPECT_NE(w.find("overloaded, try later"), std::string::npos) << w;
    EXPECT_NE(w.find("after 3 attempts"), std::string::npos) << w;
    EXPECT_NE(w.find("/v1/completions"), std::string::npos) << w;
  }
  EXPECT_EQ(s.requests(), 3);
}

TEST(HttpBackend, AStallTimesOut) {
  FakeHttpServer s({test::stall(3000)});
  HttpBackendOptions o = options(s, 0);
  o.http.timeout_s = 0.3;
  HttpModel m(o);
  const auto t0 = Clock::now();
  try {
    m.generate({5}, params());
    FAIL() << "no error";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 0);
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  EXPECT_LT(seconds(t0), 2.0);
  EXPECT_EQ(s.requests(), 1);
}

TEST(HttpBackend, ADroppedConnectionIsRetried) {
  FakeHttpServer s({test::drop(), test::respond(200, kOk)});
  HttpModel m(options(s));
  EXPECT_EQ(m.generate({5}, params()).text, " hello");
  EXPECT_EQ(s.requests(), 2);
}

TEST(HttpBackend, ConnectionsDroppedEveryTimeGiveUp) {
  FakeHttpServer s({test::drop()});
  HttpModel m(options(s, 1));
  try {
    m.generate({5}, params());
    FAIL() << "no error";
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 0);
    EXPECT_NE(std::string(e.what()).find("connection failed"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("after 2 attempts"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.requests(), 2);
}

TEST(HttpBackend, A401IsNotRetriedAndNeverShowsTheKey) {
  ::setenv(kKeyEnv, kKey, 1);
  // A server that quotes the key back must not make the error quote it.
  FakeHttpServer s({test::respond(
      401, std::string(R"({"error":{"message":"Incorrect API key provided: )") + kKey + "\"}}")});
  HttpModel m(options(s));
  try {
    m.generate({5}, params());
    FAIL() << "no error";
  } catch (const HttpError& e) {
    const std::string w = e.what();
    EXPECT_EQ(e.status, 401);
    EXPECT_FALSE(e.retryable);
    EXPECT_NE(w.find("HTTP 401"), std::string::npos) << w;
    EXPECT_NE(w.find("Incorrect API key provided"), std::string::npos) << w;
    EXPECT_EQ(w.find(kKey), std::string::npos) << w;
  }
  EXPECT_EQ(s.requests(), 1);
  // The key went out as a bearer token, and spec() does not hold it.
  EXPECT_NE(s.raw_requests().at(0).find(std::string("Bearer ") + kKey), std::string::npos);
  EXPECT_EQ(m.spec().find(kKey), std::string::npos);
  EXPECT_EQ(m.spec(), "http:m@" + s.url());
  ::unsetenv(kKeyEnv);
}

TEST(HttpBackend, A400IsNotRetried) {
  FakeHttpServer s({test::respond(400, R"({"error":{"message":"'prompt' is required"}})")});
  HttpModel m(options(s));
  EXPECT_THROW(m.generate({5}, params()), HttpError);
  EXPECT_EQ(s.requests(), 1);
}

TEST(HttpBackend, ReadsServerSentEvents) {
  const std::string sse =
      "data: {\"choices\":[{\"text\":\" he\"}]}\n\n"
      "data: {\"choices\":[{\"text\":\"llo\"}]}\n\n"
      "data: {\"choices\":[{\"text\":\" "
      "world\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,"
      "\"completion_tokens\":3}}\n\n"
      "data: [DONE]\n\n";
  FakeHttpServer s(
      {test::respond(200, sse), test::respond(200, sse.substr(0, sse.find("data: [DONE]")))});
  HttpBackendOptions o = options(s);
  o.stream = true;
  HttpModel m(o);
  SamplingParams p = params();
  p.stop = {" wor"};  // the client cuts at a stop string too
  const Completion c = m.generate({5}, p);
  EXPECT_EQ(c.text, " hello");
  EXPECT_EQ(c.usage.completion_tokens, 3);
  EXPECT_NE(s.raw_requests().at(0).find(R"("stream":true)"), std::string::npos);
  // A stream cut before [DONE] is an error, not a short answer.
  EXPECT_THROW(m.generate({5}, params()), std::runtime_error);
}

TEST(HttpBackend, CandidatesMustAllBeInTheTopSet) {
  const std::string body =
      R"({"choices":[{"text":"","logprobs":{"tokens":["token_id:5"],"token_logprobs":[-0.5],)"
      R"("top_logprobs":[{"token_id:5":-0.5,"token_id:9":-1.25}]}}]})";
  FakeHttpServer s({test::respond(200, body)});
  HttpModel m(options(s));
  const CandidateScores c = m.score_candidates({1, 2}, {9, 5});
  ASSERT_EQ(c.logprob.size(), 2u);
  EXPECT_EQ(c.logprob[0], -1.25);
  EXPECT_EQ(c.logprob[1], -0.5);
  EXPECT_THROW(m.score_candidates({1, 2}, {5, 7}), Unsupported);
  // More candidates than the top set can hold: refused without a request.
  HttpBackendOptions o = options(s);
  o.top_logprobs = 2;
  HttpModel small(o);
  const int before = s.requests();
  EXPECT_THROW(small.score_candidates({1, 2}, {5, 9, 7}), Unsupported);
  EXPECT_EQ(s.requests(), before);
}

TEST(HttpBackend, LoglikFromEchoedLogprobs) {
  // Prompt [3, 4, 5] with context [3]: continuation 4 (top-1 there: greedy) and 5 (not top-1).
  const std::string body =
      R"({"choices":[{"text":"","logprobs":{"tokens":["token_id:3","token_id:4","token_id:5","token_id:0"],)"
      R"("token_logprobs":[null,-0.25,-2.0,-1.0],)"
      R"("top_logprobs":[null,{"token_id:4":-0.25},{"token_id:6":-0.5},{"token_id:0":-1.0}]}}]})";
  FakeHttpServer s({test::respond(200, body)});
  HttpModel m(options(s));
  const Loglik a = m.loglik({3}, {4, 5});
  EXPECT_EQ(a.logprob, -2.25);
  EXPECT_FALSE(a.greedy);
  const Loglik b = m.loglik({3}, {4});
  EXPECT_EQ(b.logprob, -0.25);
  EXPECT_TRUE(b.greedy);
  EXPECT_NE(s.raw_requests().at(0).find(R"("echo":true)"), std::string::npos);
}

TEST(HttpBackend, BadOptionsAreInputErrors) {
  HttpBackendOptions o;
  o.http.base_url = "127.0.0.1:8000";
  o.model = "m";
  EXPECT_THROW(HttpModel{o}, InputError);  // no scheme
  o.http.base_url = "http://127.0.0.1:8000";
  o.model = "";
  EXPECT_THROW(HttpModel{o}, InputError);  // no model name
  o.model = "m";
  o.tokenizer = "/nonexistent/tokenizer.json";
  EXPECT_THROW(HttpModel{o}, InputError);
  o.tokenizer = "";
  EXPECT_THROW(HttpModel(o).tokenize("x"), Unsupported);  // no tokenizer, no server tokenize
  EXPECT_EQ(HttpModel(o).capabilities(), uint32_t(kGenerate | kLoglik | kCandidates));
}

}  // namespace
}  // namespace dsv4::evals
