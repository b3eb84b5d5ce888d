// evals/compare: the exact binomial test against enumeration of every sign vector, the
// paired bootstrap against the exact bootstrap distribution of a small sample, and
// compare_runs on runs written by the real runner with fake models: the oracle beats a
// random model in every bin, a run against its twin shows no difference, and runs that
// differ in lengths, seed or generator arguments are refused naming the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "evals/compare.h"
#include "evals/runner.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

namespace json = boost::json;
using dsv4::test::TempDir;

// Two-sided p by enumeration: the share of the 2^n equally likely sign vectors whose count of
// "+" is at least as far from n/2 as k.
double brute_force_p(int64_t k, int64_t n) {
  int64_t extreme = 0;
  for (int64_t v = 0; v < (int64_t(1) << n); ++v) {
    const int64_t plus = __builtin_popcountll(uint64_t(v));
    extreme += std::abs(2 * plus - n) >= std::abs(2 * k - n);
  }
  return double(extreme) / double(int64_t(1) << n);
}

TEST(CompareStats, BinomialTestMatchesEnumeration) {
  EXPECT_DOUBLE_EQ(binomial_two_sided_p(0, 6), 2.0 / 64);  // hand: 2 * (1/2)^6
  EXPECT_DOUBLE_EQ(binomial_two_sided_p(3, 6), 1.0);
  EXPECT_DOUBLE_EQ(binomial_two_sided_p(0, 0), 1.0);
  for (int64_t n = 1; n <= 14; ++n)
    for (int64_t k = 0; k <= n; ++k)
      EXPECT_NEAR(binomial_two_sided_p(k, n), brute_force_p(k, n), 1e-12) << "k=" << k << " n=" << n;
  EXPECT_THROW(binomial_two_sided_p(5, 4), std::exception);
}

TEST(CompareStats, PairedTestChoosesMcNemarForBinaryScores) {
  const PairedTest m = paired_test({1, 1, 1, 1, 1, 1, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 1});
  EXPECT_EQ(m.test, "mcnemar");
  EXPECT_EQ(m.a_wins, 6);
  EXPECT_EQ(m.b_wins, 0);
  EXPECT_EQ(m.ties, 2);
  EXPECT_DOUBLE_EQ(m.p, 2.0 / 64);  // 6 discordant pairs, all one way
  const PairedTest s = paired_test({0.5, 0.9, 0.2}, {0.4, 0.9, 0.3});
  EXPECT_EQ(s.test, "sign");
  EXPECT_EQ(s.a_wins, 1);
  EXPECT_EQ(s.b_wins, 1);
  EXPECT_DOUBLE_EQ(s.p, 1.0);
}

// The paired bootstrap interval is the bootstrap of the differences: for n = 4 the bootstrap
// distribution of the mean is exact by enumerating all 4^4 equally likely resamples; the
// seeded Monte Carlo interval (20000 resamples: the quantile's CDF position errs by about
// sqrt(0.025 * 0.975 / 20000) = 0.0011) must fall between the exact 1.5 % and 3.5 % (and 96.5 %
// and 98.5 %) quantiles.
TEST(CompareStats, PairedBootstrapMatchesTheExactDistribution) {
  const std::vector<double> d{1, 0, 1, -1};
  std::vector<double> means;
  for (int i = 0; i < 256; ++i) {
    double s = 0;
    for (int j = 0, v = i; j < 4; ++j, v /= 4) s += d[size_t(v % 4)];
    means.push_back(s / 4);
  }
  std::sort(means.begin(), means.end());
  auto q = [&](double p) { return means[size_t(std::floor(p * 255))]; };
  const Interval ci = bootstrap_ci(d, 7, 20000);
  EXPECT_GE(ci.lo, q(0.015));
  EXPECT_LE(ci.lo, q(0.035));
  EXPECT_GE(ci.hi, q(0.965));
  EXPECT_LE(ci.hi, q(0.985));
}

RunConfig probe_run(const std::string& out) {
  RunConfig c;
  c.lengths = {512, 1024};
  c.depths = {0.0, 0.5};
  c.samples = 6;
  c.seed = 3;
  c.out = out;
  c.format = PromptFormat::probe;
  c.tasks = {"niah_single"};
  c.model_dir = "(fake)";
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  return c;
}

TEST(CompareRuns, OracleBeatsRandomAndTwinsTie) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  test::OracleModel oracle, oracle2;
  test::RandomModel random;
  run_eval(probe_run(tmp.file("oracle")), oracle, &p);
  run_eval(probe_run(tmp.file("oracle2")), oracle2, &p);
  run_eval(probe_run(tmp.file("random")), random, &p);
  const auto doc = compare_runs(
      {read_run(tmp.file("oracle")), read_run(tmp.file("random")), read_run(tmp.file("oracle2"))}, {});
  EXPECT_EQ(doc.at("kind").as_string(), "dsv4.eval.compare");
  const auto& cs = doc.at("comparisons").as_array();
  ASSERT_EQ(cs.size(), 2u);
  // oracle vs random: 12 pairs per length bin, the oracle right every time, random near 1/64
  for (const auto& r : cs[0].as_object().at("by_length").as_array()) {
    const auto& o = r.as_object();
    EXPECT_EQ(o.at("n").as_int64(), 12);
    EXPECT_EQ(o.at("a").as_object().at("mean").to_number<double>(), 1.0);
    EXPECT_EQ(o.at("verdict").as_string(), "A better") << json::serialize(o);
    EXPECT_EQ(o.at("test").as_object().at("name").as_string(), "mcnemar");
    EXPECT_LT(o.at("test").as_object().at("p").to_number<double>(), 0.05);
  }
  EXPECT_EQ(cs[0].as_object().at("by_length_cell").as_array().size(), 4u);  // 2 lengths x 2 depths
  for (const auto& r : cs[1].as_object().at("by_length").as_array()) {
    EXPECT_EQ(r.as_object().at("verdict").as_string(), "no clear difference");
    EXPECT_EQ(r.as_object().at("diff").as_object().at("mean").to_number<double>(), 0.0);
  }
  EXPECT_NE(compare_table(doc).find("A better"), std::string::npos);
}

TEST(CompareRuns, MismatchedRunsAreRefused) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  test::OracleModel m;
  run_eval(probe_run(tmp.file("base")), m, &p);
  RunConfig lengths = probe_run(tmp.file("lengths"));
  lengths.lengths = {512, 2048};
  RunConfig seed = probe_run(tmp.file("seed"));
  seed.seed = 4;
  RunConfig distractors = probe_run(tmp.file("distractors"));
  distractors.options.distractors = 3;
  for (RunConfig* c : {&lengths, &seed, &distractors}) run_eval(*c, m, &p);
  auto refused = [&](const std::string& other, const std::string& field) {
    try {
      compare_runs({read_run(tmp.file("base")), read_run(tmp.file(other))}, {});
      ADD_FAILURE() << other << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  refused("lengths", "\"lengths\"");
  refused("seed", "\"seed\"");
  refused("distractors", "\"distractors\"");
  EXPECT_THROW(read_run(tmp.file("missing")), InputError);
  EXPECT_THROW(compare_runs({read_run(tmp.file("base"))}, {}), InputError);
}

}  // namespace
}  // namespace dsv4::evals
