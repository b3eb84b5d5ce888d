// Recall generators: exact lengths, exact needle positions for every depth and geometry
// class, both prompt formats; determinism of items and data hashes; the filler grammar.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "evals/recall/filler.h"
#include "evals/recall/niah.h"
#include "evals/registry.h"
#include "reference/errors.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

using test::OracleModel;

const Task& task(const std::string& name) {
  for (const auto& t : find_suite("recall").tasks)
    if (t->name() == name) return *t;
  throw std::runtime_error("no task " + name);
}

// The class predicate each geometry cell must satisfy (niah.h).
void expect_geometry_class(const Item& it) {
  const Geometry& g = it.geometry;
  const int64_t L = it.cell.length, last = g.needle_pos + g.needle_len - 1;
  const std::string& c = it.cell.geometry;
  SCOPED_TRACE(c + " at " + std::to_string(g.needle_pos));
  if (c.rfind("mod4=", 0) == 0 || c.rfind("mod128=", 0) == 0) {
    EXPECT_LT(last, L - 128) << "outside the window";
  }
  if (c.rfind("mod4=", 0) == 0) {
    EXPECT_EQ(g.mod4, std::stoll(c.substr(5)));
  }
  if (c == "mod128=0") {
    EXPECT_EQ(g.mod128, 0);
  }
  if (c == "mod128=127") {
    EXPECT_EQ(g.mod128, 127);
    EXPECT_TRUE(g.straddle128);
  }
  if (c == "window_in") {
    EXPECT_TRUE(g.in_window);
    EXPECT_GE(g.needle_pos, L - 128);
  }
  if (c == "window_out") {
    EXPECT_FALSE(g.in_window);
    EXPECT_LE(last, L - 129);
    EXPECT_GE(last, L - 256);
  }
  if (it.format == PromptFormat::probe && c == "mod4=3") {
    EXPECT_TRUE(g.straddle4) << "[k v] across a 4-block boundary";
  }
  if (it.format == PromptFormat::probe && c == "mod4=1") {
    EXPECT_FALSE(g.straddle4);
  }
}

TEST(Generators, ProbeExactLengthsPositionsAndGeometry) {
  const ProbeTokens p = test::synthetic_probe();
  GenContext ctx{PromptFormat::probe, &p, nullptr, {}};
  ctx.options.distractors = 16;
  const GridSpec grid{{1024, 4096 + 3}, {0.0, 0.1, 0.5, 1.0}};
  int checked = 0;
  for (const char* name : {"niah_single", "niah_multikey", "niah_multivalue", "niah_geometry"}) {
    const Task& t = task(name);
    for (const Cell& c : t.cells(grid))
      for (int64_t i = 0; i < 3; ++i) {
        const Item it = t.generate(ctx, c, 7, i);
        const int64_t L = c.length;
        SCOPED_TRACE(std::string(name) + " " + c.label() + " L=" + std::to_string(L));
        ASSERT_EQ(int64_t(it.prompt.size()), L);
        const Geometry& g = it.geometry;
        EXPECT_EQ(g.needle_len, 2);
        EXPECT_EQ(g.value_pos, g.needle_pos + 1);
        EXPECT_EQ(it.prompt.back(), it.prompt[size_t(g.needle_pos)])
            << "the query is the target's key";
        EXPECT_EQ(std::to_string(it.prompt[size_t(g.value_pos)]), it.answers.at(0));
        if (c.depth >= 0) {  // body = [0, L-1): depth d puts the key at round(d * (L - 3))
          EXPECT_EQ(g.needle_pos, std::llround(c.depth * double(L - 3)));
        } else {
          expect_geometry_class(it);
        }
        // Needles: key ids appear only as needles (+ the query), each key once, distinct.
        std::set<int32_t> keys;
        int64_t key_tokens = 0;
        for (int64_t j = 0; j + 1 < L; ++j)
          if (it.prompt[size_t(j)] >= 1000 && it.prompt[size_t(j)] < 1064) {
            ++key_tokens;
            keys.insert(it.prompt[size_t(j)]);
            EXPECT_GE(it.prompt[size_t(j + 1)], 2000) << "a value follows every key";
          }
        const bool multivalue = std::string(name) == "niah_multivalue";
        const int64_t needles = std::string(name) == "niah_multikey" ? 17 : multivalue ? 4 : 1;
        EXPECT_EQ(key_tokens, needles);
        EXPECT_EQ(int64_t(keys.size()), multivalue ? 1 : needles)
            << "multivalue: one key; else distinct keys";
        EXPECT_EQ(int64_t(it.needle_answers.size()), needles);
        EXPECT_EQ(int64_t(it.answers.size()), multivalue ? 4 : 1);
        for (const std::string& a : it.answers)
          EXPECT_EQ(std::count(it.needle_answers.begin(), it.needle_answers.end(), a), 1)
              << "answers are distinct and distractor values differ from the target's";
        EXPECT_DOUBLE_EQ(it.chance, double(it.answers.size()) / 64);
        ++checked;
      }
  }
  EXPECT_EQ(checked, 3 * (3 * 2 * 4 + 2 * 8));
}

TEST(Generators, NaturalExactLengthsAndNeedleText) {
  OracleModel m;
  GenContext ctx{PromptFormat::natural, nullptr, &m, {}};
  ctx.options.distractors = 4;
  const GridSpec grid{{700, 1024}, {0.0, 0.5, 1.0}};
  for (const char* name :
       {"niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "niah_geometry"}) {
    const Task& t = task(name);
    for (const Cell& c : t.cells(grid)) {
      const Item it = t.generate(ctx, c, 3, 0);
      SCOPED_TRACE(std::string(name) + " " + c.label());
      ASSERT_EQ(int64_t(it.prompt.size()), c.length);
      const Geometry& g = it.geometry;
      const std::vector<int32_t> needle(it.prompt.begin() + g.needle_pos,
                                        it.prompt.begin() + g.needle_pos + g.needle_len);
      const std::string text = m.detokenize(needle);
      EXPECT_EQ(text.rfind(" The secret value for key ", 0), 0u) << text;
      EXPECT_EQ(text.substr(text.size() - it.answers[0].size() - 1), it.answers[0] + ".") << text;
      const std::vector<int32_t> value(it.prompt.begin() + g.value_pos,
                                       it.prompt.begin() + g.needle_pos + g.needle_len);
      EXPECT_EQ(m.detokenize(value), " " + it.answers[0] + ".");
      const std::string all = m.detokenize(it.prompt);
      EXPECT_NE(all.find("? Answer with the number"), std::string::npos);
      for (const std::string& a : it.answers)
        EXPECT_NE(all.find(" is " + a + "."), std::string::npos) << "every answer is in a needle";
      EXPECT_NE(all.find("<｜User｜>"), std::string::npos);
      EXPECT_GT(all.rfind("<｜Assistant｜>"), all.rfind("Answer with"))
          << "the question sits inside the user turn";
      if (c.depth < 0) expect_geometry_class(it);
    }
  }
}

TEST(Generators, VariableTrackingChainsInDocumentOrder) {
  OracleModel m;
  GenContext ctx{PromptFormat::natural, nullptr, &m, {}};
  ctx.options.hops = 4;
  const Task& t = task("variable_tracking");
  EXPECT_FALSE(t.supports(PromptFormat::probe));
  for (const Cell& c : t.cells(GridSpec{{600, 2048}, {0.0, 0.5, 1.0}}))
    for (int64_t i = 0; i < 3; ++i) {
      const Item it = t.generate(ctx, c, 1, i);
      SCOPED_TRACE(c.label() + " L=" + std::to_string(c.length));
      ASSERT_EQ(int64_t(it.prompt.size()), c.length);
      ASSERT_EQ(it.answers.size(), 4u);
      EXPECT_EQ(it.needle_answers.size(), 8u) << "two chains of 4";
      const std::string text = m.detokenize(it.prompt);
      // The chain: VAR A = V. then VAR B = VAR A. ... each after the one it names.
      size_t at = text.find(" VAR " + it.answers[0] + " = ");
      ASSERT_NE(at, std::string::npos);
      for (size_t h = 1; h < it.answers.size(); ++h) {
        const size_t next =
            text.find(" VAR " + it.answers[h] + " = VAR " + it.answers[h - 1] + ".");
        ASSERT_NE(next, std::string::npos) << h;
        EXPECT_GT(next, at) << "hop " << h << " comes after hop " << h - 1;
        at = next;
      }
      // The target (first statement) sits at the depth position; its name at value_pos.
      const Geometry& g = it.geometry;
      const std::vector<int32_t> name(it.prompt.begin() + g.value_pos,
                                      it.prompt.begin() + g.needle_pos + g.needle_len);
      EXPECT_EQ(m.detokenize(name).rfind(" " + it.answers[0] + " = ", 0), 0u);
      EXPECT_NE(text.find("assigned the value"), std::string::npos);
    }
}

TEST(Generators, SameArgumentsSameItemsInAnyOrder) {
  const ProbeTokens p = test::synthetic_probe();
  GenContext ctx{PromptFormat::probe, &p, nullptr, {}};
  const Task& t = task("niah_multikey");
  const Cell a{2048, 0.5, ""}, b{4096, 0.25, ""};
  const Item a1 = t.generate(ctx, a, 11, 2);
  (void)t.generate(ctx, b, 11, 0);
  const Item a2 = t.generate(ctx, a, 11, 2);
  EXPECT_EQ(a1.hash, a2.hash);
  EXPECT_EQ(a1.prompt, a2.prompt);
  EXPECT_NE(t.generate(ctx, a, 12, 2).hash, a1.hash) << "another seed";
  EXPECT_NE(t.generate(ctx, a, 11, 3).hash, a1.hash) << "another index";
  EXPECT_NE(task("niah_single").generate(ctx, a, 11, 2).hash, a1.hash) << "another task";
}

TEST(Generators, TooShortLengthIsAnInputError) {
  const ProbeTokens p = test::synthetic_probe();
  GenContext ctx{PromptFormat::probe, &p, nullptr, {}};
  ctx.options.distractors = 16;
  EXPECT_THROW(task("niah_multikey").generate(ctx, Cell{40, 0.5, ""}, 0, 0), InputError);
  EXPECT_THROW(task("niah_geometry").generate(ctx, Cell{200, -1, "mod128=127"}, 0, 0), InputError)
      << "no 128-block boundary outside the window of a 200-token prompt";
  GenContext nat{PromptFormat::natural, nullptr, nullptr, {}};
  EXPECT_THROW(task("niah_single").generate(nat, Cell{4096, 0.5, ""}, 0, 0), InputError)
      << "natural needs a model";
}

TEST(Filler, GrammarSentencesTokenizedPieceByPiece) {
  OracleModel m;
  GrammarFiller f(m, 5), g(m, 5);
  // The stream is the concatenation of each piece's ids.
  std::vector<int32_t> expect;
  for (int s = 0; s < 20; ++s)
    for (const std::string& piece : g.sentence()) {
      const auto ids = m.tokenize(piece);
      expect.insert(expect.end(), ids.begin(), ids.end());
    }
  std::vector<int32_t> got;
  for (size_t i = 0; i < expect.size(); ++i) got.push_back(f.next());
  EXPECT_EQ(got, expect);
  GrammarFiller h(m, 6);
  const auto sent = h.sentence();
  ASSERT_GE(sent.size(), 6u);
  EXPECT_TRUE(sent.front()[1] >= 'A' && sent.front()[1] <= 'Z') << sent.front();
  EXPECT_EQ(sent.back(), ".");
}

}  // namespace
}  // namespace dsv4::evals
