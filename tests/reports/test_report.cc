// reports/inputs.h + reports/report.h: fixed result files in, the right numbers out. Markdown
// tables are parsed back, figures are checked through their data-* attributes, sections exist
// iff their inputs do, and bad or partial files fail with the file and the field named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "reference/errors.h"
#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {
namespace {

namespace fs = std::filesystem;

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_report_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "in");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string put(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / "in" / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  std::string in() const { return (dir_ / "in").string(); }
  fs::path dir_;
};

const char* kKv = R"({"kind": "dsv4.kv_claims", "unit": "bytes per token",
  "curve": [{"context": 4096, "v4-pro": 5000, "v3.2": 48000}, {"context": 1048576, "v4-pro": 5000, "v3.2": 48000}],
  "claims": [{"claim": "V4-Pro KV vs V3.2", "ours": 0.1047, "paper": 0.10, "difference": 0.0047, "note": "FP8 layouts"}]})";

const char* kFlops = R"({"kind": "dsv4.flops_claims", "convention": "multiply-add = 2",
  "curve": [{"context": 4096, "v4-pro": {"linear": 1, "attention": 2, "indexer": 3, "compressor": 4, "total": 10}},
            {"context": 1048576, "v4-pro": {"linear": 1, "attention": 20, "indexer": 30, "compressor": 4, "total": 55}}],
  "claims": [{"claim": "V4-Pro decode FLOPs vs V3.2", "ours": 0.2609, "paper": 0.27, "difference": -0.0091}]})";

// Two benchmarks: one at 80 % of its ceiling (met), one at 50 % (not met); one speedup.
const char* kBench = R"({"kind": "dsv4.bench", "version": 1,
  "ceilings": {"sgemm_flops_per_s": 1e11, "read_bytes_per_s": 2e10},
  "benchmarks": [
    {"name": "attention_hca_decode/v4-flash/ctx:4096", "seconds": [0.0125, 0.0125, 0.0125], "flops_per_iter": 1e9,
     "bytes_per_iter": 1e6, "roofline_share": [0.8, 0.8, 0.8], "roofline_share_cpu": [0.81, 0.81, 0.81],
     "bound": "compute", "target": true, "target_met": true},
    {"name": "output_proj_decode/v4-flash/tokens:1", "seconds": [0.01], "flops_per_iter": 1e6, "bytes_per_iter": 1e8,
     "roofline_share": [0.5], "bound": "memory", "target": true, "target_met": false}],
  "speedups": [{"context": 4096, "model": "v4-flash", "versus": "v3.2", "measured": 10.0, "analytic": 13.85,
                "analytic_bytes": 4.9, "ratio": 0.722}]})";

const char* kCompare = R"({"kind": "dsv4.bench.compare", "baseline": "base.json", "new": "new.json", "metric": "roofline_share_cpu",
  "threshold": 0.25, "regression": true,
  "results": [{"name": "rmsnorm/v4-flash/rows:4096", "outcome": "slower", "ratio": 0.33, "ratio_ci": [0.3, 0.36], "p_value": 1e-5},
              {"name": "rope/v4-flash/rows:1024", "outcome": "no clear difference", "ratio": 1.01, "ratio_ci": [0.95, 1.05], "p_value": 0.6}]})";

const char* kEval = R"json({"kind": "dsv4.eval.results", "schema_version": 1, "suite": "recall", "format": "probe",
  "probe_label": "mechanism probe (constructed weights)",
  "model": {"dir": "probe-hca", "backend": "engine:ref", "checkpoint_hash": "abc123",
            "probe": {"knobs": {"retrieval": "hca", "S": 12, "quant": true}}},
  "git": {"revision": "deadbeef"}, "machine": {"cpu": "test cpu"},
  "tasks": [{"name": "niah_multikey", "version": "1", "data_hash": "d00d", "effective_length": 4096,
    "by_length": [{"length": 1024, "n": 10, "mean": 0.7, "ci95": [0.4, 1.0], "floors": {"chance": 0.002, "copy_random": 0.059, "copy_first": 0.2}, "prefill_tokens_per_second": 5000},
                  {"length": 4096, "n": 10, "mean": 1.0, "ci95": [1.0, 1.0], "floors": {"chance": 0.002, "copy_random": 0.059, "copy_first": 0.2}}],
    "by_length_depth": [{"length": 1024, "depth": 0.5, "n": 2, "mean": 0.5, "ci95": [0, 1]},
                        {"length": 4096, "depth": 0.5, "n": 2, "mean": 1, "ci95": [1, 1]}],
    "by_length_class": [{"length": 1024, "class": "window_in", "n": 2, "mean": 1, "ci95": [1, 1]},
                        {"length": 1024, "class": "mod4=3", "n": 2, "mean": 0.5, "ci95": [0, 1]}]}]})json";

// Rows of the Markdown table whose header starts with `first`, as cells.
std::vector<std::vector<std::string>> md_table(const std::string& md, const std::string& first) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(md);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside) {
      inside = line.rfind("| " + first + " |", 0) == 0;
      if (inside) std::getline(in, line);  // the alignment row
      continue;
    }
    if (line.empty() || line[0] != '|') break;
    std::vector<std::string> cells;
    std::string cell;
    for (size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '|' && line[i - 1] != '\\') {
        cells.push_back(cell.substr(1, cell.size() - 2));
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    rows.push_back(cells);
  }
  return rows;
}

std::vector<std::string> section_ids(const Report& r) {
  std::vector<std::string> ids;
  for (const auto& s : r.sections) ids.push_back(s.id);
  return ids;
}

TEST_F(ReportTest, ClaimsTableAndCurvesCarryTheNumbers) {
  put("kv.json", kKv);
  put("flops.json", kFlops);
  const Report r = build_report(load_inputs({in()}), "2026-11-29T00:00:00Z");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"reproduction", "provenance"}));
  const std::string md = render_markdown(r);
  const auto rows = md_table(md, "claim");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"V4-Pro KV vs V3.2", "10.47 %", "10.00 %", "+0.47 points", "FP8 layouts"}));
  EXPECT_EQ(rows[1][1], "26.09 %");
  EXPECT_EQ(rows[1][3], "-0.91 points");
  // The KV figure: bytes per token x context, in GiB (5000 B x 1M tokens = 4.657 GiB).
  const std::string html = render_html(r);
  const std::regex pt(R"re(data-series="V4-Pro" data-x="1048576" data-y="([^"]*)")re");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(html, m, pt));
  EXPECT_NEAR(std::stod(m[1]), 5000.0 * 1048576 / (1024.0 * 1024 * 1024), 1e-9);
  EXPECT_NE(html.find("data-series=\"V4-Pro\" data-x=\"1048576\" data-y=\"55\""), std::string::npos) << "FLOPs total";
  EXPECT_NE(md.find("figures/kv_per_sequence.svg"), std::string::npos);
  EXPECT_EQ(r.summary.at("claims").as_array().size(), 2u);
}

TEST_F(ReportTest, KernelTableTargetsSpeedupsAndVerdicts) {
  put("run/bench_derived.json", kBench);
  put("run/bench.json", R"({"context": {"host_name": "testhost", "num_cpus": 2}, "benchmarks": [{"x": NaN}]})");
  put("compare.json", kCompare);
  const Inputs in_ = load_inputs({in()});
  EXPECT_EQ(in_.used.size(), 2u);
  ASSERT_EQ(in_.ignored.size(), 1u) << "Google Benchmark's own file (bare NaN included) is read as context, not an input";
  const Report r = build_report(in_, "now");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"kernels", "regression", "provenance"}));
  const std::string md = render_markdown(r);
  const auto k = md_table(md, "op");
  ASSERT_EQ(k.size(), 2u);
  // time 12.5 ms; 1e9 FLOPs / 12.5 ms = 80 GFLOP/s; 1e6 B -> 0.08 GB/s
  EXPECT_EQ(k[0], (std::vector<std::string>{"attention_hca_decode", "v4-flash", "ctx:4096", "12.500", "80.00", "0.08",
                                            "compute", "80.0 %", "81.0 %", "met"}));
  EXPECT_EQ(k[1][7], "50.0 %");
  EXPECT_EQ(k[1][8], "-") << "no CPU-time share in that file";
  EXPECT_EQ(k[1][9], "**not met**");
  const auto sp = md_table(md, "context");
  ASSERT_EQ(sp.size(), 1u);
  EXPECT_EQ(sp[0], (std::vector<std::string>{"4K", "v4-flash", "v3.2", "10.00x", "13.85x", "0.72"}));
  const auto v = md_table(md, "benchmark");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0][4], "**slower**");
  EXPECT_NE(md.find("**regression**"), std::string::npos);
  EXPECT_NE(md.find("testhost"), std::string::npos) << "the machine from bench.json";
  const auto& kern = r.summary.at("kernels").as_array()[0].as_object();
  EXPECT_EQ(kern.at("with_target").as_int64(), 2);
  EXPECT_EQ(kern.at("target_met").as_int64(), 1);
  // The roofline: the met op sits at intensity 1000 and 80 GFLOP/s.
  const std::string html = render_html(r);
  EXPECT_NE(html.find("data-series=\"V4-Flash\" data-x=\"1000\" data-y=\"80\""), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no scripts";
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "no external resources";
}

// bench_derived.json's engram_overlap rows (CPU and GPU; files from before the backend field
// existed held GPU rows only) become the kernels section's overlap table.
TEST_F(ReportTest, EngramOverlapTable) {
  std::string bench = kBench;
  bench.insert(bench.rfind('}'), R"(, "engram_overlap": [
    {"backend": "cpu", "model": "v4-flash", "mode": "mmap_bf16", "tokens": 512, "copy_seconds": 0.004,
     "compute_seconds": 0.010, "both_seconds": 0.011, "overlap": 0.75, "hidden_fraction_of_copy": 0.75},
    {"model": "v4-flash", "mode": "staged", "tokens": 4096, "copy_seconds": 0.002, "compute_seconds": 0.003,
     "both_seconds": 0.0035, "overlap": 0.75, "hidden_fraction_of_copy": 0.75}])");
  put("run/bench_derived.json", bench);
  const std::string md = render_markdown(build_report(load_inputs({in()}), "now"));
  const auto t = md_table(md, "on");
  ASSERT_EQ(t.size(), 2u) << md;
  EXPECT_EQ(t[0], (std::vector<std::string>{"cpu", "v4-flash", "mmap_bf16", "512", "4.000", "10.000", "11.000", "0.75",
                                            "75.0 %"}));
  EXPECT_EQ(t[1][0], "gpu");
  EXPECT_EQ(t[1][2], "staged");
  std::string bad = kBench;
  bad.insert(bad.rfind('}'), R"(, "engram_overlap": [{"backend": "cpu", "model": "m", "mode": "x", "tokens": 1}])");
  fs::remove_all(dir_ / "in");
  const std::string f = put("run/bench_derived.json", bad);
  try {
    load_inputs({in()});
    ADD_FAILURE() << "an overlap row without its seconds was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("engram_overlap[0].copy_seconds: missing"), std::string::npos) << e.what();
  }
}

TEST_F(ReportTest, WritesTheFilesAndReplacesAnOldReport) {
  put("kv.json", kKv);
  const Report r = build_report(load_inputs({in()}), "now");
  const fs::path out = dir_ / "out";
  fs::create_directories(out / "figures");
  std::ofstream(out / "figures" / "stale.svg") << "old";
  write_report(r, out.string());
  for (const char* f : {"report.md", "index.html", "summary.json", "figures/kv_per_sequence.svg"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  EXPECT_FALSE(fs::exists(out / "figures" / "stale.svg")) << "figures of the previous report are replaced";
  std::ifstream s(out / "summary.json");
  std::stringstream ss;
  ss << s.rdbuf();
  const auto j = boost::json::parse(ss.str()).as_object();
  EXPECT_EQ(j.at("kind").as_string(), "dsv4.report");
  size_t leftovers = 0;
  for (const auto& e : fs::directory_iterator(out)) leftovers += e.path().filename().string().rfind(".report-tmp", 0) == 0;
  EXPECT_EQ(leftovers, 0u);
}

// Each bad input names the file and the field.
TEST_F(ReportTest, BadOrPartialFilesNameTheFileAndField) {
  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"kind": "dsv4.kv_claims", "unit": "b", "curve": [{"context": "4k"}], "claims": []})", "curve[0].context: expected a number"},
      {R"({"kind": "dsv4.kv_claims", "curve": [], "claims": []})", "unit: missing"},
      {R"({"kind": "dsv4.bench", "ceilings": {"sgemm_flops_per_s": 1, "read_bytes_per_s": 1},
          "benchmarks": [{"name": "a/b/c", "seconds": [0.1, -1], "flops_per_iter": 1, "bytes_per_iter": 1, "roofline_share": [1]}]})",
       "benchmarks[0].seconds[1]: expected a positive number"},
      {R"({"kind": "dsv4.bench", "ceilings": {"sgemm_flops_per_s": 1, "read_bytes_per_s": 1},
          "benchmarks": [{"name": "nameless", "seconds": [0.1], "flops_per_iter": 1, "bytes_per_iter": 1, "roofline_share": [1]}]})",
       "benchmarks[0].name: 'nameless' is not <op>/<model>/<case>"},
      {R"({"kind": "dsv4.bench.compare", "baseline": "b", "new": "n", "metric": "m", "threshold": 0.25, "regression": "yes",
          "results": []})", "regression: expected true or false"},
      {R"({"kind": "dsv4.flops_claims", "convention": "c", "curve": [{"context": 1, "v4-pro": {"linear": 1}}], "claims": []})",
       "curve[0].v4-pro.attention: missing"},
      {R"({"kind": "dsv4.kv_claims", "unit": "b", "curve": [)", "not valid JSON"},
  };
  for (const auto& c : cases) {
    fs::remove_all(dir_ / "in");
    const std::string f = put("bad.json", c.text);
    try {
      load_inputs({in()});
      ADD_FAILURE() << "accepted: " << c.text;
    } catch (const InputError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(f), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    }
  }
  EXPECT_THROW(load_inputs({(dir_ / "missing").string()}), InputError);
  fs::remove_all(dir_ / "in");
  put("a/kv.json", kKv);
  put("b/kv.json", kKv);
  EXPECT_THROW(load_inputs({in()}), InputError) << "two claims files: which one?";
}

TEST_F(ReportTest, RecallSectionTablesHeatmapAndGeometry) {
  put("eval/results.json", kEval);
  const Report r = build_report(load_inputs({in()}), "now");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"recall", "provenance"}));
  const std::string md = render_markdown(r);
  const auto rows = md_table(md, "length");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"1K", "10", "0.700", "[0.400, 1.000]", "0.002", "0.059", "0.200", "5000"}));
  EXPECT_EQ(rows[1][7], "-") << "no tokens/s given";
  const auto geo = md_table(md, "geometry class");
  ASSERT_EQ(geo.size(), 2u);
  EXPECT_EQ(geo[0], (std::vector<std::string>{"window_in", "1.000 (n 2)", "-"}));
  EXPECT_NE(md.find("mechanism probe (constructed weights)"), std::string::npos) << "probes are labelled as such";
  EXPECT_NE(md.find("retrieval=hca S=12 quant=on"), std::string::npos) << "with their knobs";
  EXPECT_NE(md.find("effective length 4K"), std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("data-row=\"50 %\" data-col=\"1K\" data-v=\"0.5\""), std::string::npos) << "the depth heatmap";
  EXPECT_NE(html.find("data-series=\"score (95 % CI band)\" data-x=\"1024\" data-y=\"0.7\""), std::string::npos);
  EXPECT_NE(html.find("class=\"ref\" data-y=\"0.002\""), std::string::npos) << "the chance floor";
  EXPECT_NE(md.find("deadbeef"), std::string::npos) << "provenance: the eval's revision";
  fs::remove_all(dir_ / "in");
  std::string bad = kEval;
  bad.replace(bad.find("[0.4, 1.0]"), 10, "[0.4]");
  put("eval/results.json", bad);
  try {
    load_inputs({in()});
    ADD_FAILURE() << "accepted a one-sided CI";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tasks[0].by_length[0].ci95: expected [lo, hi]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4::report
