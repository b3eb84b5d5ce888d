// dsv4 init --probe recall through the binary: a loadable probe directory with tokenizer.json
// and probe.json; every bad knob exits 2 with one line naming the knob and writes nothing.
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "tests/cli/cli_harness.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

TEST(InitProbeCli, WritesALoadableProbe) {
  TempDir t;
  const CmdResult r = run_dsv4(
      "init --probe recall --retrieval hca --set S=10 --set quant=off --out " + t.file("p"), t);
  ASSERT_EQ(r.status, 0) << r.err;
  const ModelWeights w = load_checkpoint(t.file("p"));
  EXPECT_EQ(w.config.n_layers, 2);
  EXPECT_EQ(w.config.ratio(1), 128);
  EXPECT_NE(slurp(t.file("p/probe.json")).find("\"retrieval\":\"hca\""), std::string::npos);
  EXPECT_FALSE(slurp(t.file("p/tokenizer.json")).empty());
  EXPECT_EQ(t.entries(), std::vector<std::string>{"p"});
}

TEST(InitProbeCli, MissingParentFoldersAreCreated) {
  TempDir t;
  const CmdResult r = run_dsv4("init --probe recall --out " + t.file("a/b/p"), t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(t.file("a/b/p/probe.json")));
}

TEST(InitProbeCli, BadKnobsExitTwoNamingTheKnob) {
  TempDir t;
  for (const auto& [args, named] : std::vector<std::pair<std::string, std::string>>{
           {"--set bogus=1", "bogus"},
           {"--set r_K=99", "r_K"},
           {"--set S=twelve", "S"},
           {"--set quant=sometimes", "quant"},
           {"--retrieval dense", "retrieval"},
           {"--preset v4-tiny", "--preset"},
       }) {
    const CmdResult r = run_dsv4("init --probe recall " + args + " --out " + t.file("p"), t);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_NE(r.err.find(named), std::string::npos) << r.err;
  }
  const CmdResult r = run_dsv4("init --probe lookup --out " + t.file("p"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("lookup"), std::string::npos) << r.err;
  EXPECT_TRUE(t.entries().empty());
}

}  // namespace
}  // namespace dsv4
