// evals/cost: the cost arithmetic (cached prompt tokens at their own price, time pricing per
// GPU-hour), the price table's validation naming the file and field, and the per-bin document
// of a run written by the real runner with a fake model.
#include <gtest/gtest.h>

#include <fstream>

#include "evals/compare.h"
#include "evals/cost.h"
#include "evals/runner.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

namespace json = boost::json;
using dsv4::test::TempDir;

std::string table_text(const std::string& prices) {
  return R"({"kind": "dsv4.prices", "schema_version": 1, "date": "2026-11-29", "source": "test", "currency": "USD",
             "prices": )" + prices + "}";
}

PriceTable table(TempDir& tmp, const std::string& prices) {
  const std::string p = tmp.file("prices.json");
  std::ofstream(p) << table_text(prices);
  return read_prices(p);
}

TEST(Cost, TokenPricingChargesCachedTokensAtTheirPrice) {
  TempDir tmp;
  const PriceTable t = table(tmp, R"({"api": {"input_per_mtok": 2, "cached_input_per_mtok": 0.5, "output_per_mtok": 8},
                                     "nocache": {"input_per_mtok": 2, "output_per_mtok": 8}})");
  SampleRecord r;
  r.prompt_tokens = 1'000'000;
  r.cached_prompt_tokens = 400'000;
  r.completion_tokens = 250'000;
  // 600K x 2 + 400K x 0.5 + 250K x 8, per million: 1.2 + 0.2 + 2.0
  EXPECT_DOUBLE_EQ(sample_cost(t.at("api"), r), 3.4);
  // without a cached price the cached tokens cost the input price: 1.0 x 2 + 0.25 x 8
  EXPECT_DOUBLE_EQ(sample_cost(t.at("nocache"), r), 4.0);
}

TEST(Cost, TimePricingPerGpuHour) {
  TempDir tmp;
  const PriceTable t = table(tmp, R"({"node": {"per_gpu_hour": 3, "gpus": 8}})");
  SampleRecord r;
  r.seconds = 90;
  EXPECT_DOUBLE_EQ(sample_cost(t.at("node"), r), 90.0 * 8 * 3 / 3600);  // 0.6
}

TEST(Cost, BadTablesNameTheField) {
  TempDir tmp;
  auto error = [&](const std::string& text) {
    const std::string p = tmp.file("bad.json");
    std::ofstream(p) << text;
    try {
      read_prices(p);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error(table_text(R"({"a": {"input_per_mtok": -1, "output_per_mtok": 1}})")).find("input_per_mtok"),
            std::string::npos);
  EXPECT_NE(error(table_text(R"({"a": {"input_per_mtok": 1}})")).find("output_per_mtok: missing"), std::string::npos);
  EXPECT_NE(error(table_text(R"({"a": {"per_gpu_hour": 1, "gpus": 0.5}})")).find("gpus"), std::string::npos);
  EXPECT_NE(error(table_text(R"({})")).find("prices"), std::string::npos);
  EXPECT_NE(error(R"({"kind": "dsv4.prices", "date": "Nov 29", "source": "x", "currency": "USD", "prices": {}})")
                .find("YYYY-MM-DD"),
            std::string::npos);
  EXPECT_NE(error("[]").find("not a JSON object"), std::string::npos);
  const PriceTable t = table(tmp, R"({"a": {"input_per_mtok": 1, "output_per_mtok": 1}})");
  EXPECT_THROW(t.at("b"), InputError);
}

TEST(Cost, DocumentAggregatesPerBin) {
  TempDir tmp;
  const ProbeTokens p = test::synthetic_probe();
  RunConfig c;
  c.lengths = {512, 1024};
  c.depths = {0.5};
  c.samples = 3;
  c.out = tmp.file("run");
  c.format = PromptFormat::probe;
  c.tasks = {"niah_single"};
  c.model_dir = "(fake)";
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  test::OracleModel m;
  run_eval(c, m, &p);
  const RunOnDisk run = read_run(c.out);
  const PriceTable t = table(tmp, R"({"api": {"input_per_mtok": 1, "output_per_mtok": 4}})");
  const json::object doc = cost_document(c.out, run.samples, t, t.at("api"));
  EXPECT_EQ(doc.at("kind").as_string(), "dsv4.eval.cost");
  const auto& rows = doc.at("tasks").as_array()[0].as_object().at("by_length").as_array();
  ASSERT_EQ(rows.size(), 2u);
  double total = 0;
  for (const auto& rv : rows) {
    const auto& r = rv.as_object();
    const int64_t L = r.at("length").as_int64();
    EXPECT_EQ(r.at("n").as_int64(), 3);
    EXPECT_EQ(r.at("prompt_tokens").as_int64(), 3 * L);  // prompts are exactly L tokens
    EXPECT_DOUBLE_EQ(r.at("cost_per_sample").to_number<double>(), double(L) / 1e6);  // probe: no completion tokens
    EXPECT_DOUBLE_EQ(r.at("mean_score").to_number<double>(), 1.0);
    EXPECT_DOUBLE_EQ(r.at("score_per_currency_unit").to_number<double>(), 1e6 / double(L));
    total += r.at("cost_total").to_number<double>();
  }
  EXPECT_DOUBLE_EQ(doc.at("total").to_number<double>(), total);
  EXPECT_NE(cost_table(doc).find("niah_single"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::evals
