// The engine backend on a tiny random V4 checkpoint: loglik, score_candidates and generate
// agree with each other and with the model's own prefill; capabilities; bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "evals/engine_backend.h"
#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"

namespace dsv4::evals {
namespace {

// One checkpoint for all checks (ctest runs every TEST in its own process, and writing and
// loading the checkpoint is most of the time): the checks are functions called from one TEST.
struct Tiny {
  test::TempDir tmp;
  std::unique_ptr<EngineModel> model;
  Tiny() {
    write_random_checkpoint(config_preset("v4-tiny"), 5, tmp.file("tiny"), 0);
    model = std::make_unique<EngineModel>(tmp.file("tiny"), EngineOptions{});
  }
};

// Sums of log-probs in double from float logits: a chunked prefill and a one-row forward
// compute the same rows in float, so agreement is to float rounding of the logits
// (|logit| ~ 10, ulp 1e-6) times a few: 1e-4.
constexpr double kLogprobTol = 1e-4;

void loglik_is_the_sum_of_next_token_logprobs(EngineModel& m) {
  EXPECT_EQ(m.spec(), "engine:ref");
  EXPECT_EQ(m.capabilities(), uint32_t(kTokens | kChat | kGenerate | kLoglik | kCandidates | kTrace));
  const std::vector<int32_t> ctx = m.tokenize("The quiet river follows the old road.");
  const std::vector<int32_t> cont = {ctx[1], ctx[2], ctx[3]};
  const Loglik whole = m.loglik(ctx, cont);
  double sum = 0;
  std::vector<int32_t> prefix = ctx;
  for (int32_t t : cont) {
    sum += m.score_candidates(prefix, {t}).logprob[0];
    prefix.push_back(t);
  }
  EXPECT_NEAR(whole.logprob, sum, kLogprobTol);
  EXPECT_LT(whole.logprob, 0);
  // Greedy: the argmax continuation is flagged greedy; log-probs are a distribution.
  std::vector<int32_t> all(size_t(m.vocab_size()));
  for (int32_t i = 0; i < int32_t(all.size()); ++i) all[size_t(i)] = i;
  const std::vector<double> lp = m.score_candidates(ctx, all).logprob;
  double mass = 0;
  for (double x : lp) mass += std::exp(x);
  EXPECT_NEAR(mass, 1.0, 1e-6);
  const int32_t best = int32_t(std::max_element(lp.begin(), lp.end()) - lp.begin());
  EXPECT_TRUE(m.loglik(ctx, {best}).greedy);
  EXPECT_FALSE(m.loglik(ctx, {best == 0 ? 1 : 0}).greedy);
  // Greedy generation starts with that token.
  SamplingParams p;
  p.max_tokens = 3;
  const Completion c = m.generate(ctx, p);
  if (c.tokens.empty()) return ADD_FAILURE() << "no tokens";
  EXPECT_EQ(c.tokens[0], best);
  EXPECT_EQ(c.usage.prompt_tokens, int64_t(ctx.size()));
  EXPECT_EQ(c.usage.completion_tokens, int64_t(c.tokens.size()));
  EXPECT_GT(c.usage.prefill_seconds, 0);
}

void stop_strings_cut_the_text(EngineModel& m) {
  const std::vector<int32_t> ctx = m.tokenize("One two three");
  SamplingParams p;
  p.max_tokens = 6;
  const Completion free = m.generate(ctx, p);
  if (free.text.size() < 2)
    return ADD_FAILURE() << "the random model printed too little to test a stop string";
  p.stop = {free.text.substr(1, 1)};  // a character it will print
  const Completion cut = m.generate(ctx, p);
  EXPECT_EQ(cut.text, free.text.substr(0, free.text.find(p.stop[0])));
  EXPECT_LE(cut.tokens.size(), free.tokens.size());
}

void bad_input(EngineModel& m, const std::string& dir) {
  EXPECT_THROW(m.score_candidates({1, 2}, {int32_t(m.vocab_size())}), InputError);
  EXPECT_THROW(m.loglik({}, {1}), InputError);
  EXPECT_THROW(m.generate({-1}, {}), InputError);
  EngineOptions cuda;
  cuda.backend = "cuda";
  if (!cuda_backend_problem().empty()) {  // else tests/optimized/test_backend_cuda.cc runs it
    try {
      EngineModel bad(dir, cuda);
      FAIL();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--backend cuda: " + cuda_backend_problem()), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(EngineModel(dir + "-missing", EngineOptions{}), InputError);
}

TEST(EngineBackend, LoglikCandidatesGenerationStopsAndBadInput) {
  Tiny t;
  {
    SCOPED_TRACE("loglik");
    loglik_is_the_sum_of_next_token_logprobs(*t.model);
  }
  {
    SCOPED_TRACE("stop strings");
    stop_strings_cut_the_text(*t.model);
  }
  {
    SCOPED_TRACE("bad input");
    bad_input(*t.model, t.tmp.file("tiny"));
  }
}

}  // namespace
}  // namespace dsv4::evals
