// reports/section_cost: the cost section from dsv4.eval.cost documents (RUN/cost.json): the
// table holds the documents' numbers, "cost to reach accuracy X" picks the cheapest run that
// reaches X (and says so when none does), the scatter plots one point per run and task, the
// section is absent without cost files, and a malformed document names the field.
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

json::object cost_doc(const std::string& run, double cost_per_sample, double mean) {
  return {{"kind", "dsv4.eval.cost"},
          {"schema_version", 1},
          {"run", run},
          {"price", json::object{{"name", "p-" + run}, {"date", "2026-11-29"}, {"source", "test"}, {"currency", "USD"}}},
          {"total", 4 * cost_per_sample},
          {"tasks", json::array{json::object{
                        {"name", "niah_single"},
                        {"by_length", json::array{json::object{{"length", 4096},
                                                                {"n", 4},
                                                                {"cost_per_sample", cost_per_sample},
                                                                {"mean_score", mean}}}}}}}};
}

class CostSectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_cost_section_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void put(const std::string& run, const json::object& doc) {
    fs::create_directories(dir_ / run);
    std::ofstream(dir_ / run / "cost.json") << json::serialize(doc);
  }
  fs::path dir_;
};

TEST_F(CostSectionTest, TableScatterAndCostToReachAccuracy) {
  put("cheap", cost_doc("cheap", 0.002, 0.6));
  put("dear", cost_doc("dear", 0.05, 0.95));
  put("dearer", cost_doc("dearer", 0.08, 0.97));
  const Report r = build_report(load_inputs({dir_.string()}), "2026-11-29T00:00:00Z");
  const std::string md = render_markdown(r);
  ASSERT_NE(md.find("## Cost against accuracy"), std::string::npos);
  EXPECT_NE(md.find("| cheap | p-cheap (2026-11-29) | niah_single | 4K | 4 | 0.002 USD | 0.600 | 300 |"), std::string::npos)
      << md;
  EXPECT_NE(md.find("Cost to reach accuracy 0.5 on niah_single: 0.002 USD per sample (`cheap · p-cheap`)"),
            std::string::npos);
  EXPECT_NE(md.find("Cost to reach accuracy 0.9 on niah_single: 0.05 USD per sample (`dear · p-dear`)"), std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("data-x=\"0.05\" data-y=\"0.95\""), std::string::npos);
  EXPECT_EQ(r.summary.at("cost").as_array().size(), 3u);
}

TEST_F(CostSectionTest, NoRunReachingATargetIsSaid) {
  put("weak", cost_doc("weak", 0.01, 0.3));
  const std::string md = render_markdown(build_report(load_inputs({dir_.string()}), "2026-11-29T00:00:00Z"));
  EXPECT_NE(md.find("Cost to reach accuracy 0.5 on niah_single: no priced run reaches it."), std::string::npos);
}

TEST_F(CostSectionTest, AbsentWithoutCostFilesAndMalformedNamesTheField) {
  EXPECT_EQ(render_markdown(build_report(Inputs{}, "x")).find("Cost against accuracy"), std::string::npos);
  json::object bad = cost_doc("bad", 0.01, 0.3);
  bad["tasks"].as_array()[0].as_object()["by_length"].as_array()[0].as_object().erase("mean_score");
  put("bad", bad);
  try {
    load_inputs({dir_.string()});
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tasks[0].by_length[0].mean_score: missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4::report
