// `dsv4 report`: the end-to-end path from the commands that write results to the report
// folder, and its exit statuses (0 written; 2 bad input, nothing written).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/cli/cli_harness.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;

TEST(ReportCli, ClaimsFromTheKvAndFlopsCommandsMakeAReport) {
  TempDir t;
  fs::create_directories(t.file("in"));
  for (const char* what : {"kv", "flops"}) {
    const auto j = run_dsv4(std::string(what) + " --table --json", t);
    ASSERT_EQ(j.status, 0) << j.err;
    std::ofstream(t.file("in/" + std::string(what) + ".json")) << j.out;
  }
  const auto r = run_dsv4("report " + t.file("in") + " --out " + t.file("out"), t);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("sections: reproduction, provenance"), std::string::npos) << r.out;
  const std::string md = slurp(t.file("out/report.md"));
  EXPECT_NE(md.find("| V4-Pro KV vs V3.2 | 10.47 % | 10.00 % | +0.47 points |"), std::string::npos) << md;
  EXPECT_NE(md.find("| V4-Flash decode FLOPs vs V3.2 | 12.10 % | 10.00 % | +2.10 points |"), std::string::npos);
  const std::string html = slurp(t.file("out/index.html"));
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_TRUE(fs::exists(t.file("out/figures/kv_per_sequence.svg")));
}

TEST(ReportCli, BadInputExitsTwoAndWritesNothing) {
  TempDir t;
  auto r = run_dsv4("report " + t.file("missing") + " --out " + t.file("out"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no such file or directory"), std::string::npos) << r.err;
  fs::create_directories(t.file("empty"));
  r = run_dsv4("report " + t.file("empty") + " --out " + t.file("out"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no result files found"), std::string::npos) << r.err;
  fs::create_directories(t.file("bad"));
  std::ofstream(t.file("bad/kv.json")) << R"({"kind": "dsv4.kv_claims", "unit": "b", "curve": [{"context": null}], "claims": []})";
  r = run_dsv4("report " + t.file("bad") + " --out " + t.file("out"), t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("kv.json: curve[0].context: expected a number"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(t.file("out"))) << "nothing written on bad input";
}

}  // namespace
}  // namespace dsv4::test
