// reports/section_compare: the model-comparison section from a dsv4.eval.compare document
// (the shape `dsv4 eval compare --out` writes): present iff such a file is given, the table
// holds the file's numbers (parsed back from the Markdown), the figure plots each bin's
// paired difference, and a malformed document is refused naming the file and the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <regex>

#include "reference/errors.h"
#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

json::object row(const char* task, int64_t length, double a, double b, double p, const char* verdict) {
  auto mc = [](double m) { return json::object{{"mean", m}, {"ci95", json::array{m - 0.1, m + 0.1}}}; };
  return {{"task", task},
          {"length", length},
          {"n", 12},
          {"a", mc(a)},
          {"b", mc(b)},
          {"diff", mc(a - b)},
          {"test", json::object{{"name", "mcnemar"}, {"n", 12}, {"a_wins", 5}, {"b_wins", 0}, {"ties", 7}, {"p", p}}},
          {"verdict", verdict}};
}

json::object document() {
  return {{"kind", "dsv4.eval.compare"},
          {"schema_version", 1},
          {"runs", json::array{json::object{{"dir", "runs/csa"}, {"model_dir", "probe-csa"}, {"backend", "engine:ref"}},
                               json::object{{"dir", "runs/hca"}, {"model_dir", "probe-hca"}, {"backend", "engine:ref"}}}},
          {"comparisons",
           json::array{json::object{{"a", "runs/csa"},
                                    {"b", "runs/hca"},
                                    {"by_length", json::array{row("niah_multikey", 1024, 1.0, 0.375, 0.0625,
                                                                  "no clear difference"),
                                                              row("niah_multikey", 4096, 1.0, 0.25, 0.0039, "A better")}},
                                    {"by_length_cell", json::array{}}}}}};
}

class CompareSectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_compare_section_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string put(const json::object& doc) {
    const fs::path p = dir_ / "compare.json";
    std::ofstream(p) << json::serialize(doc);
    return p.string();
  }
  fs::path dir_;
};

TEST_F(CompareSectionTest, TableAndFigureHoldTheDocumentsNumbers) {
  const Report r = build_report(load_inputs({put(document())}), "2026-11-29T00:00:00Z");
  const std::string md = render_markdown(r);
  ASSERT_NE(md.find("## Model comparisons"), std::string::npos);
  EXPECT_NE(md.find("model probe-csa"), std::string::npos);
  // | niah_multikey | 4K | 12 | 1.000 [0.900, 1.100] | 0.250 [0.150, 0.350] | 0.750 [0.650, 0.850] | mcnemar | 0.0039 | **A better** |
  const std::regex line(R"(\| niah_multikey \| 4K \| 12 \| ([0-9.]+) \[[^|]*\| ([0-9.]+) \[[^|]*\| ([0-9.]+) \[[^|]*\| mcnemar \| ([0-9.e-]+) \| \*\*A better\*\* \|)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(md, m, line)) << md;
  EXPECT_DOUBLE_EQ(std::stod(m[1]), 1.0);
  EXPECT_DOUBLE_EQ(std::stod(m[2]), 0.25);
  EXPECT_DOUBLE_EQ(std::stod(m[3]), 0.75);
  EXPECT_DOUBLE_EQ(std::stod(m[4]), 0.0039);
  EXPECT_NE(md.find("| niah_multikey | 1K | 12 | 1.000 [0.900, 1.100] | 0.375 [0.275, 0.475] | 0.625 [0.525, 0.725] | "
                    "mcnemar | 0.0625 | no clear difference |"),
            std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("data-x=\"4096\" data-y=\"0.75\""), std::string::npos) << "the 4K difference is plotted";
  EXPECT_NE(html.find("data-x=\"1024\" data-y=\"0.625\""), std::string::npos);
  const auto& summary = r.summary.at("comparison").as_array();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].as_object().at("A better").as_int64(), 1);
}

TEST_F(CompareSectionTest, AbsentWithoutAComparisonFile) {
  const std::string md = render_markdown(build_report(Inputs{}, "2026-11-29T00:00:00Z"));
  EXPECT_EQ(md.find("Model comparisons"), std::string::npos);
}

TEST_F(CompareSectionTest, MalformedDocumentsNameTheField) {
  auto error = [&](const json::object& doc) {
    try {
      load_inputs({put(doc)});
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  json::object no_runs = document();
  no_runs.erase("runs");
  EXPECT_NE(error(no_runs).find("runs: missing"), std::string::npos) << error(no_runs);
  json::object bad_ci = document();
  bad_ci["comparisons"].as_array()[0].as_object()["by_length"].as_array()[0].as_object()["diff"].as_object()["ci95"] =
      json::array{1};
  EXPECT_NE(error(bad_ci).find("comparisons[0].by_length[0].diff.ci95"), std::string::npos) << error(bad_ci);
  json::object unknown_run = document();
  unknown_run["comparisons"].as_array()[0].as_object()["b"] = "runs/other";
  EXPECT_NE(error(unknown_run).find("runs/other"), std::string::npos) << error(unknown_run);
}

}  // namespace
}  // namespace dsv4::report
