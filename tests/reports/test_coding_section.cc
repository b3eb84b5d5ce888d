// reports/section_coding: the coding section from a coding-suite results.json (tasks[].summary
// as evals/coding/coding_task.cc writes it): the pass@k table per scope holds the file's
// numbers (n/a where pass@k is null), the per-problem table lists the failure classes, the
// chart plots pass@k, the section is absent without a coding run, coding runs stay out of the
// degradation section, and a malformed summary names the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>

#include "reference/errors.h"
#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

json::object aggregate(int64_t problems, int64_t samples, json::value p1, json::value p10, int64_t wrong, int64_t timeouts) {
  return {{"problems", problems},
          {"samples", samples},
          {"pass_at_k", json::object{{"pass@1", p1}, {"pass@10", p10}, {"pass@100", nullptr}}},
          {"classes", json::object{{"passed", samples - wrong - timeouts}, {"failed", wrong}, {"timeout", timeouts}}},
          {"wrong_answers", wrong},
          {"timeouts", timeouts},
          {"sandbox_kills", 0},
          {"sandbox_errors", 0}};
}

json::object results() {
  json::object summary{
      {"estimator", "unbiased"},
      {"overall", aggregate(2, 20, 0.45, 0.9, 10, 1)},
      {"by_language", json::object{{"python", aggregate(1, 10, 0.7, 1.0, 3, 0)}, {"javascript", aggregate(1, 10, 0.2, 0.8, 7, 1)}}},
      {"problems",
       json::array{json::object{{"task_id", "dsv4/py/001"}, {"language", "python"}, {"n", 10}, {"c", 7}, {"pass@1", 0.7},
                                {"pass@10", 1.0}, {"pass@100", nullptr},
                                {"classes", json::object{{"passed", 7}, {"failed", 3}}}},
                   json::object{{"task_id", "dsv4/js/001"}, {"language", "javascript"}, {"n", 10}, {"c", 2}, {"pass@1", 0.2},
                                {"pass@10", 0.8}, {"pass@100", nullptr},
                                {"classes", json::object{{"passed", 2}, {"failed", 7}, {"timeout", 1}}}}}}};
  json::object bin{{"length", 0}, {"n", 20}, {"mean", 0.45}, {"ci95", json::array{0.25, 0.65}}};
  json::object task{{"name", "humaneval_style"},
                    {"version", "1"},
                    {"data_hash", "00"},
                    {"effective_length", 0},
                    {"by_length", json::array{bin}},
                    {"metrics_by_length",
                     json::array{json::object{{"metric", "class.failed"}, {"length", 0}, {"n", 20}, {"n_na", 0},
                                              {"mean", 0.5}, {"ci95", json::array{0.3, 0.7}}, {"min", 0}, {"max", 1}}}},
                    {"summary", summary}};
  return {{"kind", "dsv4.eval.results"},
          {"schema_version", 1},
          {"suite", "coding"},
          {"format", "natural"},
          {"model", json::object{{"dir", "m"}, {"backend", "engine:ref"}, {"checkpoint_hash", "0"}}},
          {"tasks", json::array{task}}};
}

class CodingSectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_coding_section_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string put(const json::object& doc) {
    const fs::path p = dir_ / "results.json";
    std::ofstream(p) << json::serialize(doc);
    return p.string();
  }
  fs::path dir_;
};

TEST_F(CodingSectionTest, TablesAndChartHoldTheSummary) {
  const Report r = build_report(load_inputs({put(results())}), "2026-11-29T00:00:00Z");
  const std::string md = render_markdown(r);
  ASSERT_NE(md.find("## Coding"), std::string::npos);
  EXPECT_EQ(md.find("## Degradation"), std::string::npos) << "coding runs stay out of the degradation section";
  EXPECT_NE(md.find("| overall | 2 | 20 | 0.450 | 0.900 | n/a | 10 | 1 | 0 | 0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| javascript | 1 | 10 | 0.200 | 0.800 | n/a | 7 | 1 | 0 | 0 |"), std::string::npos);
  EXPECT_NE(md.find("| dsv4/js/001 | javascript | 10 | 2 | 0.200 | failed 7, timeout 1 |"), std::string::npos);
  EXPECT_NE(md.find("| dsv4/py/001 | python | 10 | 7 | 0.700 | failed 3 |"), std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("data-x=\"10\" data-y=\"0.9\""), std::string::npos) << "overall pass@10 plotted";
  EXPECT_EQ(html.find("data-x=\"100\""), std::string::npos) << "null pass@100 not plotted";
  EXPECT_EQ(r.summary.at("coding").as_array().size(), 1u);
}

TEST_F(CodingSectionTest, AbsentWithoutACodingRunAndMalformedNamesTheField) {
  EXPECT_EQ(render_markdown(build_report(Inputs{}, "x")).find("## Coding"), std::string::npos);
  json::object bad = results();
  bad["tasks"].as_array()[0].as_object()["summary"].as_object()["overall"].as_object()["pass_at_k"].as_object()["pass@1"] =
      "high";
  try {
    load_inputs({put(bad)});
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("summary.overall.pass_at_k.pass@1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4::report
