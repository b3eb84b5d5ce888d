// MRCR (evals/recall/mrcr.h) and the sequence-match ratio (evals/sequence_ratio.h):
// hand-computed ratios, exact prompt lengths, determinism, and scoring with oracle fakes
// that answer right (1.0), the wrong index (the wrong-index floor), without the prefix (0).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "evals/recall/mrcr.h"
#include "evals/runner.h"
#include "evals/sequence_ratio.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

using test::OracleModel;

GenContext natural(const LanguageModel& m) {
  GenContext c;
  c.format = PromptFormat::natural;
  c.model = &m;
  return c;
}

Cell items(int64_t length, int64_t k) {
  return Cell{length, -1, "items=" + std::to_string(k)};
}

// Hand computations (M = characters in the matching blocks, ratio = 2M / (|a| + |b|)):
//   "abcd" vs "bcde": block "bcd" (3), nothing left or right: 6/8
//   "qabxcd" vs "abycdf": "ab" (first longest), then right of it "xcd" vs "ycdf": "cd": 8/12
//   "abcXYZ" vs "XYZabc": "abc" (ties go to the first in a) at b[3], nothing to its left in
//                         b, nothing to its right in a: M = 3, 6/12 (not the LCS-free 12/12)
//   "ab" vs "ba": "a" at a[0], b[1]; right: "b" vs "" -> M = 1, 2/4
TEST(SequenceRatio, HandComputedValues) {
  EXPECT_DOUBLE_EQ(sequence_ratio("abcd", "bcde"), 6.0 / 8);
  EXPECT_DOUBLE_EQ(sequence_ratio("qabxcd", "abycdf"), 8.0 / 12);
  EXPECT_DOUBLE_EQ(sequence_ratio("abcXYZ", "XYZabc"), 6.0 / 12);
  EXPECT_DOUBLE_EQ(sequence_ratio("ab", "ba"), 2.0 / 4);
  EXPECT_DOUBLE_EQ(sequence_ratio("", ""), 1.0);
  EXPECT_DOUBLE_EQ(sequence_ratio("abc", ""), 0.0);
  EXPECT_DOUBLE_EQ(sequence_ratio("same line.", "same line."), 1.0);
  EXPECT_DOUBLE_EQ(sequence_ratio("abc", "xyz"), 0.0);
  const MatchBlock m = longest_match("abcXYZ", "XYZabc", 0, 6, 0, 6);
  EXPECT_EQ(m.a_pos, 0);
  EXPECT_EQ(m.b_pos, 3);
  EXPECT_EQ(m.size, 3);
  EXPECT_EQ(matching_characters("qabxcd", "abycdf"), 4);
}

TEST(Mrcr, OrdinalsAndCells) {
  EXPECT_EQ(ordinal(1), "1st");
  EXPECT_EQ(ordinal(2), "2nd");
  EXPECT_EQ(ordinal(3), "3rd");
  EXPECT_EQ(ordinal(4), "4th");
  EXPECT_EQ(ordinal(11), "11th");
  EXPECT_EQ(ordinal(22), "22nd");
  const auto cells = MrcrTask().cells(GridSpec{{1024, 2048}, {0.5}});
  ASSERT_EQ(cells.size(), 6u);
  EXPECT_EQ(cells[0].label(), "geometry=items=2");
  EXPECT_EQ(cells[5].label(), "geometry=items=8");
  EXPECT_FALSE(MrcrTask().supports(PromptFormat::probe));
}

TEST(Mrcr, ExactLengthsAndTheTargetLineInPlace) {
  OracleModel m;
  const MrcrTask t;
  for (int64_t L : {512, 1024, 2053, 8192})
    for (int64_t k : mrcr_item_counts()) {
      SCOPED_TRACE(std::to_string(L) + " items=" + std::to_string(k));
      const Item it = t.generate(natural(m), items(L, k), 7, 0);
      EXPECT_EQ(int64_t(it.prompt.size()), L);
      ASSERT_EQ(it.answers.size(), 2u);
      EXPECT_EQ(it.answers[0].size(), 10u);
      EXPECT_EQ(it.needle_answers.size(), size_t(k - 1));
      const Geometry& g = it.geometry;
      const std::vector<int32_t> line(it.prompt.begin() + g.needle_pos,
                                      it.prompt.begin() + g.needle_pos + g.needle_len);
      EXPECT_EQ(m.detokenize(line), " " + it.answers[1]);
      const std::string text = m.detokenize(it.prompt);
      EXPECT_NE(text.find("Prepend " + it.answers[0]), std::string::npos);
    }
}

TEST(Mrcr, TooShortIsAnInputError) {
  OracleModel m;
  EXPECT_THROW((void)MrcrTask().generate(natural(m), items(64, 8), 0, 0), InputError);
  GenContext probe = natural(m);
  probe.format = PromptFormat::probe;
  EXPECT_THROW((void)MrcrTask().generate(probe, items(1024, 2), 0, 0), InputError);
}

TEST(Mrcr, DeterministicFromSeedCellAndIndex) {
  OracleModel m;
  const MrcrTask t;
  const Item a = t.generate(natural(m), items(2048, 4), 5, 3);
  const Item b = t.generate(natural(m), items(2048, 4), 5, 3);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.expected, b.expected);
  EXPECT_NE(t.generate(natural(m), items(2048, 4), 5, 4).hash, a.hash);
  EXPECT_NE(t.generate(natural(m), items(2048, 4), 6, 3).hash, a.hash);
  EXPECT_NE(t.generate(natural(m), items(2048, 8), 5, 3).hash, a.hash);
}

TEST(Mrcr, ScoresRightWrongAndWithoutThePrefix) {
  OracleModel m;
  const MrcrTask t;
  for (int64_t k : mrcr_item_counts())
    for (int64_t i = 0; i < 3; ++i) {
      SCOPED_TRACE("items=" + std::to_string(k) + " index " + std::to_string(i));
      const Item it = t.generate(natural(m), items(1536, k), 11, i);
      m.mrcr_mode = OracleModel::MrcrMode::right;
      EXPECT_EQ(t.evaluate(m, it).score, 1.0);
      m.mrcr_mode = OracleModel::MrcrMode::no_prefix;
      EXPECT_EQ(t.evaluate(m, it).score, 0.0) << "no prefix: 0";
      m.mrcr_mode = OracleModel::MrcrMode::prefix_only;
      EXPECT_EQ(t.evaluate(m, it).score, it.chance) << "the empty-answer floor";
      EXPECT_EQ(it.chance, 0.0);
      m.mrcr_mode = OracleModel::MrcrMode::wrong_index;
      const Outcome wrong = t.evaluate(m, it);
      EXPECT_LT(wrong.score, 1.0);
      // The wrong answer is one of the other items: its score is one of the floor's terms.
      bool among = false;
      for (const auto& a : it.needle_answers) among = among || t.score(it, a) == wrong.score;
      EXPECT_TRUE(among) << wrong.prediction;
      if (k == 2) {
        EXPECT_EQ(wrong.score, t.score(it, it.needle_answers[0])) << "the floor of K = 2";
        EXPECT_EQ(wrong.prediction, it.needle_answers[0]);
      }
    }
  m.mrcr_mode = OracleModel::MrcrMode::right;
}

TEST(Mrcr, RunnerAggregatesWithTheWrongIndexFloor) {
  dsv4::test::TempDir tmp;
  OracleModel m;
  RunConfig c;
  c.tasks = {"mrcr"};
  c.lengths = {1024};
  c.samples = 2;
  c.format = PromptFormat::natural;
  c.out = tmp.file("run");
  c.progress = RunConfig::Progress::none;
  const RunSummary s = run_eval(c, m, nullptr);
  ASSERT_TRUE(s.complete);
  const auto& task = s.results.at("tasks").as_array()[0].as_object();
  const auto& b = task.at("by_length").as_array()[0].as_object();
  EXPECT_EQ(b.at("n").as_int64(), 6);
  EXPECT_EQ(b.at("mean").to_number<double>(), 1.0);
  EXPECT_EQ(b.at("floors").at("chance").to_number<double>(), 0.0);
  const double wrong = b.at("floors").at("copy_random").to_number<double>();
  EXPECT_GT(wrong, 0.0) << "lines of one grammar share characters";
  EXPECT_LT(wrong, 1.0);
  EXPECT_EQ(task.at("by_length_class").as_array().size(), 3u) << "items=2,4,8";
}

}  // namespace
}  // namespace dsv4::evals
