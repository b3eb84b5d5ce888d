// `mpirun -np N dsv4 forward|generate --tp T --ep E` through the binary (this test process is
// not under mpirun; it launches mpirun): the sharded logits file equals the unsharded one,
// generation prints the same text once, a rank that fails (a bad checkpoint path on rank 1
// only) ends every rank with its message instead of hanging, and a bad layout is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>

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
