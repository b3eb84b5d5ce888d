// dsv4 forward / generate / kv / config through the binary: files shaped as documented and
// equal to the library's results, deterministic generation, and exit 2 with one line and no
// output file for every bad input.
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <fstream>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/compare.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

class ModelCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    ASSERT_EQ(run_dsv4("init --preset v4-tiny --seed 5 --out " + dir_->file("m"), *dir_).status, 0);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return dir_->file("m"); }
  static TempDir* dir_;
};
TempDir* ModelCli::dir_ = nullptr;

TEST_F(ModelCli, ForwardWritesEveryPositionAndMatchesTheLibrary) {
  TempDir t;
  {
    std::ofstream f(t.file("ids.txt"));
    for (int i = 0; i < 140; ++i) f << (17 + 29 * i) % 4000 << "\n";
  }
  const CmdResult r = run_dsv4("forward --model " + model() + " --tokens " + t.file("ids.txt") + " --out " +
                                   t.file("o.st") + " --hidden --numerics exact --chunk 64",
                               t);
  ASSERT_EQ(r.status, 0) << r.err;
  SafetensorsReader rd(t.file("o.st"));
  const auto& c = config_preset("v4-tiny");
  EXPECT_EQ(rd.find("logits")->shape, (std::vector<int64_t>{140, c.vocab_size}));
  EXPECT_EQ(rd.find("tokens")->shape, (std::vector<int64_t>{140}));
  for (int64_t L = 0; L < c.n_layers; ++L)
    EXPECT_EQ(rd.find("hidden." + std::to_string(L))->shape, (std::vector<int64_t>{140, c.hc_mult, c.dim}));
  EXPECT_EQ(rd.metadata().at("numerics"), "exact");
  // the same chunking on the same thread count (the CLI's default: 1) gives the same bits
  Eigen::setNbThreads(1);
  Model m(make_reference_backend(load_checkpoint(model()), {Numerics::exact, KvLayout::f32}));
  Sequence s = m.new_sequence();
  std::vector<int32_t> ids;
  for (int64_t v : rd.read_int(*rd.find("tokens"))) ids.push_back(int32_t(v));
  std::vector<float> want;
  for (int64_t i = 0; i < 140; i += 64) {
    const int64_t n = std::min<int64_t>(64, 140 - i);
    std::vector<int64_t> rows(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k) rows[size_t(k)] = k;
    const auto o = m.forward(s, ids.data() + i, n, rows);
    want.insert(want.end(), o.logits.begin(), o.logits.end());
  }
  EXPECT_TRUE(bitwise_equal(rd.read_float<float>(*rd.find("logits")), want));
}

TEST_F(ModelCli, GenerateIsDeterministicAndStreamsText) {
  TempDir t;
  const std::string cmd = "generate --model " + model() + " --prompt 'KV cache' --max-tokens 8";
  const CmdResult a = run_dsv4(cmd, t), b = run_dsv4(cmd, t);
  ASSERT_EQ(a.status, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.err.find("tokens/s"), std::string::npos) << a.err;
  const CmdResult s1 = run_dsv4(cmd + " --temperature 0.9 --top-p 0.8 --seed 11", t);
  const CmdResult s2 = run_dsv4(cmd + " --temperature 0.9 --top-p 0.8 --seed 11", t);
  ASSERT_EQ(s1.status, 0) << s1.err;
  EXPECT_EQ(s1.out, s2.out);
  EXPECT_EQ(run_dsv4("generate --model " + model() + " --chat 'hello' --max-tokens 4", t).status, 0);
}

TEST_F(ModelCli, BadInputsExitTwoWithOneLineAndNoFile) {
  TempDir t;
  std::ofstream(t.file("bad.txt")) << "12\n99999\n";
  std::ofstream(t.file("junk.txt")) << "12\nabc\n";
  const std::string m = " --model " + model();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"forward --model " + t.file("none") + " --prompt x --out " + t.file("o.st"), "none"},
      {"forward" + m + " --prompt x --tokens " + t.file("bad.txt") + " --out " + t.file("o.st"), "exactly one of"},
      {"forward" + m + " --tokens " + t.file("bad.txt") + " --out " + t.file("o.st"), "line 2"},
      {"forward" + m + " --tokens " + t.file("junk.txt") + " --out " + t.file("o.st"), "line 2"},
      {"forward" + m + " --prompt x --numerics fast --out " + t.file("o.st"), "--numerics"},
      {"forward" + m + " --prompt x --kv-layout fp4 --out " + t.file("o.st"), "layout"},
      {"forward" + m + " --prompt x --precision f64 --out " + t.file("o.st"), "--precision"},
      {"forward" + m + " --prompt x --chunk 0 --out " + t.file("o.st"), "--chunk"},
      {"forward" + m + " --prompt x --out " + t.file("no/dir/o.st"), "does not exist"},
      {"generate" + m + " --prompt x --top-p 0", "--top-p"},
      {"generate" + m + " --prompt x --backend tpu", "--backend"},
      {"bench" + m + " --model-backend tpu --out " + t.file("bm"), "--backend"},
      {"kv --preset v4-pro --context 0", "--context"},
      {"kv --preset v9", "v9"},
      {"config show nothing-here", "nothing-here"},
  };
  for (const auto& [cmd, expect] : cases) {
    const CmdResult r = run_dsv4(cmd, t);
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << cmd << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(t.file("o.st"))) << cmd;
  }
}

// Without a device (or without CUDA) --backend cuda is refused with the reason before any
// checkpoint loads; with one, tests/optimized/test_backend_cuda.cc runs the backend.
TEST_F(ModelCli, BackendCudaIsRefusedWithItsReasonWhereItCannotRun) {
  const std::string problem = cuda_backend_problem();
  if (problem.empty()) GTEST_SKIP() << "the CUDA backend can run here";
  TempDir t;
  const std::string m = " --model " + model();
  for (const std::string& cmd : {"generate" + m + " --prompt x --backend cuda",
                                "forward" + m + " --prompt x --backend cuda --out " + t.file("o.st"),
                                "bench --model " + model() + " --model-backend cuda --out " + t.file("bm"),
                                "eval" + m + " --lengths 512 --backend cuda --out " + t.file("run")}) {
    const CmdResult r = run_dsv4(cmd, t);
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.err;
    EXPECT_NE(r.err.find("--backend cuda: " + problem), std::string::npos) << cmd << "\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(t.file("o.st")) || std::filesystem::exists(t.file("run")) ||
                 std::filesystem::exists(t.file("bm")))
        << cmd;
  }
}

TEST(KvCli, MeasuredEqualsAnalyticAndJson) {
  TempDir t;
  const CmdResult r = run_dsv4("kv --preset v4-flash --context 4099 --measure --json", t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\"measured_equals_analytic\":true"), std::string::npos) << r.out;
  const CmdResult p = run_dsv4("kv --preset v4-pro --context 1048576", t);
  ASSERT_EQ(p.status, 0);
  EXPECT_NE(p.out.find("9.55x smaller"), std::string::npos) << p.out;
}

}  // namespace
}  // namespace dsv4
