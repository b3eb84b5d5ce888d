// `dsv4 kv` and `dsv4 flops` with Engram (docs/engram.md, bench/engram_cost.h): the extra
// state / table lines and FLOPs, in text and --json, from `--set engram=...` on a preset and
// from a config.json with an engram block; nothing extra when Engram is off; bad --set values
// exit 2 naming the key. Expected numbers are written out from the published shapes
// (V4-Flash: D = 4096, S = 4; Engram N = 3, K = 4, E = 1024).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>

#include "model/config.h"
#include "tests/cli/cli_harness.h"

namespace dsv4 {
namespace {

using namespace dsv4::test;

// One Engram layer at V4-Flash: FLOPs per token and decode state bytes per sequence.
constexpr double kFlashLayerFlops = 2.0 * 4096 * 1024 + 2.0 * 4 * 4096 * 1024 + 2.0 * 4 * 4096 + 2.0 * 4 * 4 * 4096;
constexpr double kFlashLayerState = 2 * 4 + 9.0 * 4 * 4096 * 4;  // 2 ids + 9 Z rows of S D floats

boost::json::object parse(const std::string& s) { return boost::json::parse(s).as_object(); }

TEST(EngramKvFlopsCli, KvJsonHasTheStateAndTablesOnlyWithEngram) {
  TempDir t;
  const CmdResult on = run_dsv4("kv --preset v4-flash --context 4096 --json --set engram=1,15", t);
  ASSERT_EQ(on.status, 0) << on.err;
  const auto o = parse(on.out);
  ASSERT_TRUE(o.contains("engram")) << on.out;
  const auto& e = o.at("engram").as_object();
  EXPECT_EQ(e.at("layers").to_number<int64_t>(), 2);
  EXPECT_EQ(e.at("state_bytes").to_number<double>(), 2 * kFlashLayerState);
  const double rows = e.at("table_rows").to_number<double>();
  EXPECT_GT(rows, 32.0 * 646400);  // 2 layers x 16 primes >= 5 x vocab
  EXPECT_EQ(e.at("table_bytes").to_number<double>(), rows * 64 * 2);
  // The KV numbers themselves do not change.
  const CmdResult off = run_dsv4("kv --preset v4-flash --context 4096 --json", t);
  ASSERT_EQ(off.status, 0) << off.err;
  const auto p = parse(off.out);
  EXPECT_FALSE(p.contains("engram"));
  EXPECT_EQ(boost::json::serialize(p.at("analytic")), boost::json::serialize(o.at("analytic")));
}

TEST(EngramKvFlopsCli, KvTextHasTheTwoLines) {
  TempDir t;
  const CmdResult r = run_dsv4("kv --preset v4-flash --context 4096 --set engram=1,15", t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Engram decode state"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(int64_t(2 * kFlashLayerState))), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Engram tables (host, BF16)"), std::string::npos) << r.out;
  const CmdResult off = run_dsv4("kv --preset v4-flash --context 4096", t);
  EXPECT_EQ(off.out.find("Engram"), std::string::npos) << off.out;
}

TEST(EngramKvFlopsCli, FlopsFromAConfigFileAddTheEngramLayers) {
  TempDir t;
  ModelConfig c = config_preset("v4-flash");
  config_set_engram(c, "engram=2,9,20");
  const std::string path = t.file("config.json");
  std::ofstream(path) << config_to_json(c);
  const CmdResult on = run_dsv4("flops --preset " + path + " --context 65536 --json", t);
  ASSERT_EQ(on.status, 0) << on.err;
  const CmdResult off = run_dsv4("flops --preset v4-flash --context 65536 --json", t);
  ASSERT_EQ(off.status, 0) << off.err;
  const auto a = parse(on.out), b = parse(off.out);
  EXPECT_NEAR(a.at("engram").to_number<double>(), 3 * kFlashLayerFlops, 1e-6);
  EXPECT_EQ(b.at("engram").to_number<double>(), 0);
  EXPECT_NEAR(a.at("total").to_number<double>() - b.at("total").to_number<double>(), 3 * kFlashLayerFlops, 1.0);
  const auto& e = a.at("engram_layer").as_object();
  EXPECT_EQ(e.at("flops_per_token_per_layer").to_number<double>(), kFlashLayerFlops);
  ASSERT_EQ(e.at("vs_moe").as_array().size(), 2u);
  const auto& moe_budget = e.at("vs_moe").as_array()[0].as_object();
  EXPECT_EQ(moe_budget.at("budget").as_string(), "moe layer");
  EXPECT_GT(moe_budget.at("flops_ratio").to_number<double>(), 1.0);
  EXPECT_FALSE(b.contains("engram_layer"));
}

TEST(EngramKvFlopsCli, FlopsTextHasTheEngramLineAndTheComparison) {
  TempDir t;
  const CmdResult r = run_dsv4("flops --preset v4-flash --context 4096 --set engram=1", t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\nengram "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Engram layer vs the MoE layer"), std::string::npos) << r.out;
  const CmdResult off = run_dsv4("flops --preset v4-flash --context 4096", t);
  EXPECT_EQ(off.out.find("\nengram "), std::string::npos) << off.out;
  EXPECT_EQ(off.out.find("Engram"), std::string::npos) << off.out;
}

TEST(EngramKvFlopsCli, BadSetExitsTwoNamingTheKey) {
  TempDir t;
  for (const auto& [args, expect] : {std::pair<std::string, std::string>{"kv --preset v4-flash --set engram=99", "layer_ids"},
                                     {"flops --preset v4-flash --set engram=1 --set engram.max_ngram_size=1", "max_ngram_size"},
                                     {"flops --preset v4-flash --set engram.bogus=1", "engram.bogus"},
                                     {"kv --preset v4-flash --set engram=a", "engram"}}) {
    const CmdResult r = run_dsv4(args, t);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_NE(r.err.find(expect), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
  }
}

}  // namespace
}  // namespace dsv4
