// The longcode suite (evals/recall/niah.h repo_*): prompts of exact length whose haystack is a
// synthetic Python repository; the target function is defined exactly once, under its file
// header, at the cell's depth; the expected answer is what that definition says (computed here
// from the prompt text itself); exact-match scoring; and the probe format reduces to key ->
// value recall.
#include <gtest/gtest.h>

#include <regex>

#include "evals/recall/filler.h"
#include "evals/recall/niah.h"
#include "evals/recall/probe_tokens.h"
#include "evals/registry.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

int64_t count(const std::string& s, const std::string& what) {
  int64_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

TEST(LongCode, PromptsHoldOneTargetDefinitionAndTheRightAnswer) {
  test::OracleModel m;  // the tiny tokenizer and chat template
  const GenContext ctx{PromptFormat::natural, nullptr, &m, {}};
  for (NiahKind k : {NiahKind::repo_return, NiahKind::repo_file, NiahKind::repo_params}) {
    const NiahTask task(k);
    for (int64_t L : {1024, 4096})
      for (double depth : {0.0, 0.5, 1.0}) {
        const Item it = task.generate(ctx, Cell{L, depth, ""}, 3, 1);
        ASSERT_EQ(int64_t(it.prompt.size()), L) << task.name();
        const std::string text = m.detokenize(it.prompt);
        std::smatch q;
        ASSERT_TRUE(std::regex_search(text, q, std::regex(R"((f_[0-9]{5}))"))) << text.substr(text.size() - 300);
        // the function the question names: the last f_N in the prompt (the question comes last)
        std::string name;
        const std::regex fn(R"(f_[0-9]{5})");
        for (std::sregex_iterator i(text.begin(), text.end(), fn), e; i != e; ++i) name = i->str();
        EXPECT_EQ(count(text, "def " + name + "("), 1) << "one definition of " << name;
        std::smatch d;
        const std::regex def("# file: (pkg/mod_[0-9]{4}\\.py)\\ndef " + name +
                             R"(\((\w+), (\w+)\):\n    return \w+ \* ([0-9]+) \+ \w+ - ([0-9]+)\n)");
        ASSERT_TRUE(std::regex_search(text, d, def)) << name;
        if (k == NiahKind::repo_return) {
          std::smatch call;
          ASSERT_TRUE(std::regex_search(text, call, std::regex(name + R"(\(([0-9]+), ([0-9]+)\) return\?)")));
          const int64_t want = std::stoll(call[1]) * std::stoll(d[4]) + std::stoll(call[2]) - std::stoll(d[5]);
          EXPECT_EQ(it.expected, std::to_string(want));
        } else if (k == NiahKind::repo_file) {
          EXPECT_EQ(it.expected, d[1].str());
        } else {
          EXPECT_EQ(it.expected, d[2].str() + ", " + d[3].str());
        }
        // the needle sits at the cell's depth: the value offset points at the def line
        const double at = double(it.geometry.needle_pos) / double(L);
        EXPECT_NEAR(at, depth, 0.2) << task.name() << " L=" << L;
      }
  }
}

TEST(LongCode, ExactMatchScoring) {
  test::OracleModel m;
  const GenContext ctx{PromptFormat::natural, nullptr, &m, {}};
  const NiahTask ret(NiahKind::repo_return), params(NiahKind::repo_params);
  const Item r = ret.generate(ctx, Cell{1024, 0.5, ""}, 1, 0), p = params.generate(ctx, Cell{1024, 0.5, ""}, 1, 0);
  EXPECT_EQ(ret.score(r, r.expected), 1.0);
  EXPECT_EQ(ret.score(r, "  `" + r.expected + "`\nbecause ..."), 1.0);
  EXPECT_EQ(ret.score(r, "The answer is " + r.expected), 0.0);  // exact, not substring
  EXPECT_EQ(ret.score(r, r.expected + "0"), 0.0);
  const std::string a = p.expected.substr(0, p.expected.find(',')), b = p.expected.substr(p.expected.find(',') + 2);
  EXPECT_EQ(params.score(p, a + ",  " + b), 1.0);
  EXPECT_EQ(params.score(p, b + ", " + a), 0.0);  // order matters
}

TEST(LongCode, ProbeFormatIsKeyValueRecall) {
  const ProbeTokens pt = test::synthetic_probe();
  const GenContext ctx{PromptFormat::probe, &pt, nullptr, {}};
  const Item it = NiahTask(NiahKind::repo_file).generate(ctx, Cell{512, 0.5, ""}, 2, 0);
  EXPECT_EQ(it.prompt.size(), 512u);
  EXPECT_EQ(it.candidates, pt.values);
  ASSERT_EQ(it.answers.size(), 1u);
  // the prompt ends with the needle's key; the value followed that key in the haystack
  const int32_t key = it.prompt.back();
  const auto at = std::find(it.prompt.begin(), it.prompt.end() - 1, key);
  ASSERT_NE(at, it.prompt.end() - 1);
  EXPECT_EQ(std::to_string(*(at + 1)), it.answers[0]);
}

}  // namespace
}  // namespace dsv4::evals
