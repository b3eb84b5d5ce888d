// reports/section_multirank: the sharded-runs section from dsv4.bench.model documents
// (`dsv4 bench --model DIR [--tp --ep]`, model_bench.json): one row per run with the documents'
// numbers, the decode speedup over the same config's one-rank run (n/a without one), the
// section is absent without such files, and a malformed document names the field.
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

json::object bench_doc(const std::string& config, int ranks, int tp, int ep, double decode_ms, double comm) {
  auto phase = [](double seconds, double tps, double share) {
    return json::object{{"seconds", seconds}, {"tokens_per_second", tps}, {"comm_share", share}, {"comm_seconds", json::array{}},
                        {"collectives", json::object{}}};
  };
  json::object d{{"kind", "dsv4.bench.model"}, {"schema_version", 1}, {"config", config}, {"ranks", ranks},
                 {"tp", tp},                   {"ep", ep},                {"transport", ranks > 1 ? "mpi" : "local"},
                 {"numerics", "official"},     {"kv_layout", "fp8"},      {"prompt_tokens", 64},
                 {"decode_tokens", 4}};
  d["prefill"] = phase(0.5, 128.0, comm);
  json::object dec = phase(4 * decode_ms / 1e3, 1e3 / decode_ms, comm);
  dec["ms_per_token"] = decode_ms;
  d["decode"] = std::move(dec);
  return d;
}

class MultirankSectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_multirank_section_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void put(const std::string& run, const json::object& doc) {
    fs::create_directories(dir_ / run);
    std::ofstream(dir_ / run / "model_bench.json") << json::serialize(doc);
  }
  fs::path dir_;
};

TEST_F(MultirankSectionTest, OneRowPerRunWithTheSpeedupOverOneRank) {
  put("one", bench_doc("tiny/config.json", 1, 1, 1, 20.0, 0.0));
  put("four", bench_doc("tiny/config.json", 4, 2, 2, 8.0, 0.25));
  put("other", bench_doc("other/config.json", 2, 2, 1, 10.0, 0.5));
  const Report r = build_report(load_inputs({dir_.string()}), "2026-11-29T00:00:00Z");
  const std::string md = render_markdown(r);
  ASSERT_NE(md.find("## Sharded runs: time and communication"), std::string::npos) << md;
  EXPECT_NE(md.find("| tiny/config.json | 4 | 2 x 2 | mpi | 128.0 | 25% | 8.000 | 25% | 2.50x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| tiny/config.json | 1 | 1 x 1 | local | 128.0 | 0% | 20.000 | 0% | 1.00x |"), std::string::npos) << md;
  EXPECT_NE(md.find("| other/config.json | 2 | 2 x 1 | mpi | 128.0 | 50% | 10.000 | 50% | n/a (no one-rank run) |"),
            std::string::npos)
      << md;
  const auto& rows = r.summary.at("multirank").as_array();
  ASSERT_EQ(rows.size(), 3u);
  int speedups = 0;
  for (const auto& row : rows) speedups += row.as_object().at("decode_speedup").is_double();
  EXPECT_EQ(speedups, 2);
}

TEST_F(MultirankSectionTest, AbsentWithoutBenchModelFiles) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "x.json") << R"({"kind": "something.else"})";
  const Report r = build_report(load_inputs({dir_.string()}), "2026-11-29T00:00:00Z");
  EXPECT_EQ(render_markdown(r).find("Sharded runs"), std::string::npos);
}

TEST_F(MultirankSectionTest, AMalformedDocumentNamesTheField) {
  json::object d = bench_doc("tiny/config.json", 2, 2, 1, 8.0, 0.2);
  d["decode"].as_object().erase("ms_per_token");
  put("bad", d);
  try {
    load_inputs({dir_.string()});
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("decode.ms_per_token: missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4::report
