// dsv4 init through the binary: a loadable tiny checkpoint, exit 2 with one line for every
// refusal (non-empty directory, unknown preset, too large), --force, and nothing left behind.
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "tests/cli/cli_harness.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

TEST(InitCli, WritesALoadableTinyCheckpoint) {
  TempDir t;
  const CmdResult r = run_dsv4("init --preset v4-tiny --seed 3 --out " + t.file("m") + " --shard-mb 4", t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("4 shards"), std::string::npos) << r.out;
  LoadInfo info;
  const ModelWeights w = load_checkpoint(t.file("m"), {}, &info);
  EXPECT_EQ(info.shards, 4);
  EXPECT_EQ(w.config.dim, config_preset("v4-tiny").dim);
  EXPECT_EQ(t.entries(), std::vector<std::string>{"m"});
}

TEST(InitCli, RefusalsExitTwoWithOneLineAndWriteNothing) {
  TempDir t;
  ASSERT_EQ(run_dsv4("init --preset v4-tiny --out " + t.file("m"), t).status, 0);
  const auto before = slurp(t.file("m/config.json"));
  CmdResult r = run_dsv4("init --preset v4-tiny --seed 9 --out " + t.file("m"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  r = run_dsv4("init --preset v4-nope --out " + t.file("n"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  r = run_dsv4("init --preset v4-flash --out " + t.file("f"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("v4-flash"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GB"), std::string::npos) << r.err;
  EXPECT_EQ(t.entries(), std::vector<std::string>{"m"});
  r = run_dsv4("init --preset v4-tiny --seed 9 --force --shard-mb 0 --out " + t.file("m"), t);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(t.entries(), std::vector<std::string>{"m"});
  EXPECT_TRUE(std::filesystem::exists(t.file("m/model-00001-of-00001.safetensors")));
}

}  // namespace
}  // namespace dsv4
