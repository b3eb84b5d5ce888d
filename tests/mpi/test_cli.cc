// `mpirun -np N dsv4 forward|generate --tp T --ep E` through the binary (this test process is
// not under mpirun; it launches mpirun): the sharded logits file equals the unsharded one,
// generation prints the same text once, a rank that fails (a bad checkpoint path on rank 1
// only) ends every rank with its message instead of hanging, and a bad layout is refused.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>
#include <algorithm>

#include "model/config.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/compare.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

using test::CmdResult;
using test::TempDir;

// A hung job is a failure, not a stuck test: every launch is cut off after this long.
constexpr int kLaunchTimeoutS = 60;

// Runs `cmd` (a shell command line) with stdout and stderr captured.
CmdResult sh(const std::string& cmd, const TempDir& t) {
  const std::string out = t.file(".stdout"), err = t.file(".stderr");
  const int raw = std::system(
      ("timeout " + std::to_string(kLaunchTimeoutS) + " " + cmd + " >" + out + " 2>" + err)
          .c_str());
  CmdResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = test::slurp(out);
  r.err = test::slurp(err);
  return r;
}

std::string dsv4() {
  return DSV4_BINARY;
}
std::string mpirun(int np) {
  return std::string(DSV4_MPIEXEC) + " -np " + std::to_string(np) + " ";
}

class MpiCli : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    if (!std::filesystem::exists(DSV4_MPIEXEC)) return;
    const CmdResult r = sh(dsv4() + " init --preset v4-tiny --out " + dir_->file("tiny"), *dir_);
    ASSERT_EQ(r.status, 0) << r.err;
    std::ofstream f(dir_->file("ids.txt"));
    for (int i = 0; i < 150; ++i) f << (17 + 29 * i) % 4000 << "\n";  // past the 128 window
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override {
    if (!std::filesystem::exists(DSV4_MPIEXEC))
      GTEST_SKIP() << DSV4_MPIEXEC << " is not on this machine";
  }
  static std::string model() { return dir_->file("tiny"); }
  static std::string ids() { return dir_->file("ids.txt"); }
  static TempDir* dir_;
};
TempDir* MpiCli::dir_ = nullptr;

std::vector<float> logits(const std::string& file) {
  SafetensorsReader rd(file);
  return rd.read_float<float>(*rd.find("logits"));
}

TEST_F(MpiCli, ShardedForwardWritesTheUnshardedLogits) {
  TempDir t;
  const std::string common = " forward --numerics exact --model " + model() + " --tokens " + ids();
  CmdResult r = sh(dsv4() + common + " --out " + t.file("one.st"), t);
  ASSERT_EQ(r.status, 0) << r.err;
  r = sh(mpirun(2) + dsv4() + common + " --tp 2 --ep 2 --out " + t.file("tpep.st"), t);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto a = logits(t.file("one.st")), b = logits(t.file("tpep.st"));
  double m = 0;
  for (float v : a) m = std::max(m, double(std::fabs(v)));
  // the bound of tests/mpi/test_sharded.cc: reordered float sums through 4 layers and the head
  const auto& c = config_preset("v4-tiny");
  EXPECT_TRUE(
      test::all_close(b, a, test::reduction_tol<float>(double(c.dim * c.n_layers), m) * 16));
  EXPECT_EQ(SafetensorsReader(t.file("tpep.st")).metadata().at("layout"), "ranks=2 tp=2 ep=2");
}

TEST_F(MpiCli, ShardedGenerateGreedyPrintsTheSameTokensOnce) {
  TempDir t;
  const std::string common =
      " generate --model " + model() + " --tokens " + ids() + " --max-tokens 6 --stop 0";
  const CmdResult one = sh(dsv4() + common, t);
  ASSERT_EQ(one.status, 0) << one.err;
  const CmdResult sharded = sh(mpirun(2) + dsv4() + common + " --tp 2 --ep 2", t);
  ASSERT_EQ(sharded.status, 0) << sharded.err;
  EXPECT_EQ(sharded.out, one.out);  // rank 0 alone prints: the same text, not twice
  EXPECT_EQ(test::count_lines(sharded.out), 1) << sharded.out;
}

// Every "prediction":"..." and "score":x of a samples.jsonl, in order.
std::vector<std::string> answers(const std::string& samples) {
  static const std::regex kField(R"re("(prediction|score)":("[^"]*"|[0-9.eE+-]+))re");
  std::vector<std::string> v;
  for (std::sregex_iterator i(samples.begin(), samples.end(), kField), end; i != end; ++i)
    v.push_back((*i)[0]);
  return v;
}

TEST_F(MpiCli, ShardedEvalGivesTheUnshardedAnswersAndRankZeroAloneWrites) {
  // The constructed CSA recall probe (4 heads, 2 output groups, 4 experts): rank 0 runs the
  // eval, rank 1 follows its model calls (evals/multi_rank.h).
  TempDir t;
  ASSERT_EQ(sh(dsv4() + " init --probe recall --retrieval csa --out " + t.file("probe"), t).status,
            0);
  const std::string common =
      " eval --model " + t.file("probe") +
      " --lengths 1k --samples 2 --depths 0.5 --tasks niah_multikey --progress none --out ";
  const CmdResult one = sh(dsv4() + common + t.file("one"), t);
  ASSERT_EQ(one.status, 0) << one.err;
  const CmdResult two = sh(mpirun(2) + dsv4() + common + t.file("two") + " --tp 2 --ep 2", t);
  ASSERT_EQ(two.status, 0) << two.err;
  const auto a = answers(test::slurp(t.file("one/samples.jsonl"))),
             b = answers(test::slurp(t.file("two/samples.jsonl")));
  EXPECT_EQ(a.size(), 4u);  // 2 samples x (prediction, score)
  EXPECT_EQ(b, a);
  EXPECT_EQ(test::count_lines(two.out), test::count_lines(one.out)) << two.out;  // the table, once
  int runs = 0;
  for (const auto& e : std::filesystem::directory_iterator(t.file("")))
    runs += e.is_directory() && e.path().filename() != "probe";
  EXPECT_EQ(runs, 2);  // one, two: nothing from rank 1
}

// Per sample (line) of a samples.jsonl: its cell, index, item hash, prediction and score.
std::string answers_text(const std::string& samples) {
  static const std::regex kField(R"re("(cell|index|item_hash|prediction|score)":("[^"]*"|[0-9.eE+-]+))re");
  std::string out;
  std::stringstream ss(samples);
  for (std::string line; std::getline(ss, line);) {
    for (std::sregex_iterator i(line.begin(), line.end(), kField), end; i != end; ++i) out += (*i)[0].str() + " ";
    out += "\n";
  }
  return out;
}

TEST_F(MpiCli, DataParallelEvalSplitsTheSamplesAndMergesTheUnshardedRun) {
  // 4 ranks: --dp 2 replicas of tp 2 (x ep 2 for the MoE); replica r runs samples i % 2 == r
  // into OUT/dp-r, rank 0 merges: the same answers, metrics and table as one rank.
  TempDir t;
  ASSERT_EQ(sh(dsv4() + " init --probe recall --retrieval csa --out " + t.file("probe"), t).status, 0);
  const std::string common = " eval --model " + t.file("probe") +
                             " --lengths 1k --samples 3 --depths 0.25,0.75 --tasks niah_multikey --progress none --out ";
  const CmdResult one = sh(dsv4() + common + t.file("one"), t);
  ASSERT_EQ(one.status, 0) << one.err;
  const CmdResult dp = sh(mpirun(4) + "--oversubscribe " + dsv4() + common + t.file("dp") + " --dp 2 --tp 2 --ep 2", t);
  ASSERT_EQ(dp.status, 0) << dp.err;
  auto sorted_lines = [](const std::string& text) {
    std::vector<std::string> v;
    std::stringstream ss(text);
    for (std::string l; std::getline(ss, l);) v.push_back(l);
    std::sort(v.begin(), v.end());
    return v;
  };
  // Each replica ran its half: 6 samples -> 3 + 3, every sample exactly once.
  EXPECT_EQ(test::count_lines(test::slurp(t.file("dp/dp-0/samples.jsonl"))), 3);
  EXPECT_EQ(test::count_lines(test::slurp(t.file("dp/dp-1/samples.jsonl"))), 3);
  EXPECT_EQ(sorted_lines(answers_text(test::slurp(t.file("dp/samples.jsonl")))),
            sorted_lines(answers_text(test::slurp(t.file("one/samples.jsonl")))));
  // The results table, without its last column (prefill tokens/s: a timing).
  auto without_speed = [](const std::string& table) { return std::regex_replace(table, std::regex(R"re(\s+[0-9.]+\n)re"), "\n"); };
  EXPECT_EQ(without_speed(dp.out), without_speed(one.out));
  EXPECT_EQ(test::count_lines(dp.out), test::count_lines(one.out)) << dp.out;
  // Rerunning the same command resumes everything (no sample runs twice).
  const CmdResult again = sh(mpirun(4) + "--oversubscribe " + dsv4() + common + t.file("dp") + " --dp 2 --tp 2 --ep 2", t);
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(test::count_lines(test::slurp(t.file("dp/samples.jsonl"))), 6);
  // A DP count that does not divide the ranks is refused by every rank, clearly.
  const CmdResult bad = sh(mpirun(2) + dsv4() + common + t.file("bad") + " --dp 3", t);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("--dp 3: must divide the 2 ranks"), std::string::npos) << bad.err;
}

TEST_F(MpiCli, ShardedModelBenchTimesTheCollectives) {
  // dsv4 bench --model: one rank has no collectives; tp 2 x ep 2 on 2 ranks does an attention
  // all-reduce per layer and the MoE all-to-alls, timed on every rank (comm/timing_comm.h).
  TempDir t;
  const std::string common = " bench --model " + model() + " --prompt 40 --decode 2 --model-reps 1 --out ";
  const CmdResult one = sh(dsv4() + common + t.file("one"), t);
  ASSERT_EQ(one.status, 0) << one.err;
  const CmdResult two = sh(mpirun(2) + dsv4() + common + t.file("two") + " --tp 2 --ep 2", t);
  ASSERT_EQ(two.status, 0) << two.err;
  const auto a = boost::json::parse(test::slurp(t.file("one/model_bench.json"))).as_object();
  const auto b = boost::json::parse(test::slurp(t.file("two/model_bench.json"))).as_object();
  EXPECT_EQ(a.at("kind").as_string(), "dsv4.bench.model");
  EXPECT_EQ(a.at("ranks").as_int64(), 1);
  EXPECT_TRUE(a.at("prefill").at("collectives").as_object().empty());
  EXPECT_EQ(b.at("ranks").as_int64(), 2);
  EXPECT_EQ(b.at("transport").as_string(), "mpi");
  for (const char* phase : {"prefill", "decode"}) {
    const auto& p = b.at(phase).as_object();
    EXPECT_GT(p.at("seconds").as_double(), 0.0) << phase;
    EXPECT_EQ(p.at("comm_seconds").as_array().size(), 2u) << phase;
    const auto& c = p.at("collectives").as_object();
    ASSERT_TRUE(c.contains("all_reduce_sum") && c.contains("all_to_all_v")) << phase << ": " << boost::json::serialize(c);
    // v4-tiny: 4 layers, one attention all-reduce each at least (prefill: one chunk; decode: 2 steps)
    EXPECT_GE(c.at("all_reduce_sum").at("calls").as_int64(), phase == std::string("prefill") ? 4 : 8) << phase;
  }
  EXPECT_EQ(test::count_lines(two.out), test::count_lines(one.out)) << "rank 0 alone prints the table";
  const CmdResult bad = sh(dsv4() + " bench --model " + model() + " --prompt 0 --out " + t.file("bad"), t);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--prompt must be positive"), std::string::npos) << bad.err;
}

TEST_F(MpiCli, AFailingRankEndsEveryRankWithItsMessage) {
  // MPMD: rank 0 gets the checkpoint, rank 1 a path that does not exist. Rank 0 would wait for
  // rank 1 in the first collective; rank 1's abort must end it (timeout: status 124).
  TempDir t;
  const std::string args = " forward --tokens " + ids() + " --tp 2 --out " + t.file("o.st");
  const CmdResult r =
      sh(std::string(DSV4_MPIEXEC) + " -np 1 " + dsv4() + args + " --model " + model() +
             " : -np 1 " + dsv4() + args + " --model " + t.file("nowhere"),
         t);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("rank 1 of 2: dsv4 forward: checkpoint '" + t.file("nowhere") + "'"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(t.file("o.st")));
}

TEST_F(MpiCli, ALayoutThatDoesNotFitTheRanksIsRefused) {
  TempDir t;
  const std::string common =
      " forward --model " + model() + " --tokens " + ids() + " --out " + t.file("o.st");
  CmdResult r = sh(mpirun(2) + dsv4() + common + " --tp 4", t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--tp must divide the number of ranks"), std::string::npos) << r.err;
  r = sh(dsv4() + common + " --ep 2", t);  // one rank, no mpirun
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--ep must divide the number of ranks"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(t.file("o.st")));
}

}  // namespace
}  // namespace dsv4
