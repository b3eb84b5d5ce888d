// reports/section_degradation.h and the kernels section's op-status table: the eval runner's
// per-metric aggregates (metrics_by_length) and `dsv4 op --list --json` in, the right numbers
// out. Fixtures: two real degradation-suite results.json files (tests/reports/data/, written by
// `dsv4 eval --suite degradation` on a clean and a noisy CSA probe) and small inline files for
// the edge cases. The Markdown tables are parsed back and compared with the fixture's numbers,
// the figures are read through their data-* attributes, each section exists iff its input does,
// and a malformed entry names the file and the field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
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
namespace json = boost::json;

const fs::path kData = fs::path(DSV4_TEST_DATA_DIR) / ".." / "reports" / "data";

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class DegradationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dsv4_degradation_test_" + std::to_string(::getpid()) + "_" +
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
  // The error load_inputs throws on the inputs folder ("" when it accepts them).
  std::string load_error() {
    try {
      load_inputs({in()});
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

// Every Markdown table whose header starts with `first`, each as rows of cells (header included
// as row 0, so columns can be found by name).
std::vector<std::vector<std::vector<std::string>>> md_tables(const std::string& md, const std::string& first) {
  std::vector<std::vector<std::vector<std::string>>> tables;
  std::istringstream in(md);
  std::string line;
  bool inside = false;
  auto cells = [](const std::string& l) {
    std::vector<std::string> out;
    std::string cell;
    for (size_t i = 1; i < l.size(); ++i) {
      if (l[i] == '|' && l[i - 1] != '\\') {
        out.push_back(cell.substr(1, cell.size() - 2));
        cell.clear();
      } else {
        cell += l[i];
      }
    }
    return out;
  };
  while (std::getline(in, line)) {
    if (!inside) {
      if (line.rfind("| " + first + " |", 0) == 0) {
        inside = true;
        tables.push_back({cells(line)});
        std::getline(in, line);  // the alignment row
      }
      continue;
    }
    if (line.empty() || line[0] != '|') {
      inside = false;
      continue;
    }
    tables.back().push_back(cells(line));
  }
  return tables;
}

size_t column(const std::vector<std::vector<std::string>>& t, const std::string& header) {
  for (size_t k = 0; k < t[0].size(); ++k)
    if (t[0][k] == header) return k;
  ADD_FAILURE() << "no column '" << header << "'";
  return 0;
}

// The numbers in a cell, in order: "2.36e-02 [2.15e-02, 2.58e-02]" -> {0.0236, 0.0215, 0.0258};
// "3.08 MiB" -> {3.08}.
std::vector<double> numbers(const std::string& cell) {
  static const std::regex re(R"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)");
  std::vector<double> out;
  for (auto it = std::sregex_iterator(cell.begin(), cell.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back(std::stod((*it)[0]));
  return out;
}

// The fixture's own numbers, read here without the code under test.
struct Fixture {
  json::object doc;
  const json::object* task(const std::string& name) const {
    for (const auto& t : doc.at("tasks").as_array())
      if (t.as_object().at("name").as_string() == name) return &t.as_object();
    return nullptr;
  }
  // metric at length: {mean, lo, hi}; empty when absent or null.
  std::vector<double> metric(const std::string& name, double length) const {
    for (const auto& t : doc.at("tasks").as_array())
      for (const auto& m : t.as_object().at("metrics_by_length").as_array()) {
        const auto& o = m.as_object();
        if (o.at("metric").as_string() == name && o.at("length").to_number<double>() == length && !o.at("mean").is_null())
          return {o.at("mean").to_number<double>(), o.at("ci95").as_array()[0].to_number<double>(),
                  o.at("ci95").as_array()[1].to_number<double>()};
      }
    return {};
  }
  std::vector<double> by_length(const std::string& task, double length, const char* key = "mean") const {
    if (!this->task(task)) return {};
    for (const auto& b : this->task(task)->at("by_length").as_array())
      if (b.as_object().at("length").to_number<double>() == length) {
        if (std::string(key) != "mean") return {b.as_object().at(key).to_number<double>()};
        return {b.as_object().at("mean").to_number<double>(), b.as_object().at("ci95").as_array()[0].to_number<double>(),
                b.as_object().at("ci95").as_array()[1].to_number<double>()};
      }
    return {};
  }
};

Fixture fixture(const std::string& name) { return {json::parse(slurp(kData / name / "results.json")).as_object()}; }

// Printing tolerances: a value printed with 3 decimals is within 5e-4 of the true one; with 3
// significant digits (x.xxe-yy) within 5e-3 relative; "{:.0f}" within 0.5; binary-unit bytes
// with 2 decimals within 0.005 units (checked in MiB below).
constexpr double kFixed3 = 5e-4 + 1e-12, kSig3 = 5e-3 + 1e-12, kWhole = 0.5 + 1e-9, kDecimals2 = 5e-3 + 1e-12;

void expect_cell(const std::string& cell, const std::vector<double>& want, double tol, bool relative, const std::string& what) {
  if (want.empty()) {
    EXPECT_EQ(cell, "n/a") << what;
    return;
  }
  const auto got = numbers(cell);
  ASSERT_EQ(got.size(), want.size()) << what << ": '" << cell << "'";
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], relative ? tol * std::abs(want[i]) : tol) << what << ": '" << cell << "'";
}

std::vector<std::string> section_ids(const Report& r) {
  std::vector<std::string> ids;
  for (const auto& s : r.sections) ids.push_back(s.id);
  return ids;
}

const Figure* find_figure(const Report& r, const std::string& id) {
  for (const auto& s : r.sections)
    for (const auto& b : s.blocks)
      if (b.kind == Block::FigureBlock && b.figure.id == id) return &b.figure;
  return nullptr;
}

// The y value drawn for (series, x), NaN when there is no such point.
double plotted(const std::string& svg, const std::string& series, double x) {
  const std::regex re("data-series=\"" + series + R"re(" data-x="([^"]*)" data-y="([^"]*)")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    if (std::stod((*it)[1]) == x) return std::stod((*it)[2]);
  return NAN;
}

TEST_F(DegradationTest, TableHoldsTheFixtureNumbers) {
  fs::copy(kData / "degradation-clean", dir_ / "in" / "clean");
  const Report r = build_report(load_inputs({in()}), "now");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"degradation", "provenance"})) << "a degradation run is not a recall run";
  const std::string md = render_markdown(r);
  const auto tables = md_tables(md, "length");
  ASSERT_EQ(tables.size(), 1u);
  const auto& t = tables[0];
  ASSERT_EQ(t.size(), 3u) << "two length bins";
  const Fixture f = fixture("degradation-clean");
  const double lengths[] = {1024, 4096};
  for (size_t i = 0; i < 2; ++i) {
    const auto& row = t[i + 1];
    const double Lb = lengths[i];
    EXPECT_EQ(row[0], i == 0 ? "1K" : "4K");
    expect_cell(row[column(t, "recall (niah_multikey)")], f.by_length("niah_multikey", Lb), kFixed3, false, "recall");
    expect_cell(row[column(t, "top-1 agreement")], f.by_length("layer_trace", Lb), kFixed3, false, "agreement");
    expect_cell(row[column(t, "indexer recall L1")], f.metric("indexer_recall.L1", Lb), kFixed3, false, "indexer");
    expect_cell(row[column(t, "logits rel. error")], f.metric("logits_rel_err", Lb), kSig3, true, "logits");
    expect_cell(row[column(t, "attention rel. error L0")], {}, 0, false, "layer 0 is structurally zero: n/a");
    expect_cell(row[column(t, "attention rel. error L1")], f.metric("attn_rel_err.L1", Lb), kSig3, true, "attention");
    expect_cell(row[column(t, "needle mass L1")], f.metric("needle_mass.L1", Lb), kFixed3, false, "needle mass");
    expect_cell(row[column(t, "needle mass L1 fp64")], f.metric("needle_mass_ref.L1", Lb), kFixed3, false, "fp64 mass");
    expect_cell(row[column(t, "needle mass predicted")], f.metric("needle_mass_predicted", Lb), kFixed3, false, "predicted");
    const std::string kv = row[column(t, "KV cache")];
    EXPECT_NE(kv.find(" MiB"), std::string::npos) << kv;
    expect_cell(kv, {f.metric("kv_bytes", Lb)[0] / (1024.0 * 1024.0)}, kDecimals2, false, "KV bytes in MiB");
    expect_cell(row[column(t, "decode GFLOP/token")], {f.metric("decode_gflop", Lb)[0]}, kSig3, true, "GFLOP");
    expect_cell(row[column(t, "prefill tok/s")], f.by_length("layer_trace", Lb, "prefill_tokens_per_second"), kWhole, false,
                "prefill");
    expect_cell(row[column(t, "fp64 reference (s)")], f.metric("reference_seconds", Lb), kFixed3, false, "reference s");
  }
  // summary.json: the same numbers, exactly.
  const auto& run = r.summary.at("degradation").as_array().at(0).as_object();
  EXPECT_EQ(run.at("retrieval_layer").as_int64(), 1);
  EXPECT_TRUE(run.at("probe").as_bool());
  const auto& row0 = run.at("rows").as_array().at(0).as_object();
  EXPECT_EQ(row0.at("length").to_number<double>(), 1024);
  EXPECT_EQ(row0.at("logits_rel_err").as_object().at("mean").to_number<double>(), f.metric("logits_rel_err", 1024)[0]);
  EXPECT_EQ(row0.at("kv_bytes").as_object().at("mean").to_number<double>(), 1261568);
  EXPECT_TRUE(row0.at("attn_rel_err.L0").is_null()) << "n/a is null in summary.json";
  const auto& row1 = run.at("rows").as_array().at(1).as_object();
  EXPECT_EQ(row1.at("length").to_number<double>(), 4096);
  EXPECT_EQ(row1.at("needle_mass_ref.L1").as_object().at("ci95").as_array()[1].to_number<double>(),
            f.metric("needle_mass_ref.L1", 4096)[2]);
  EXPECT_EQ(row1.at("top1_agreement").as_object().at("mean").to_number<double>(), f.by_length("layer_trace", 4096)[0]);
}

TEST_F(DegradationTest, FiguresCarryThePlottedValuesOneSetPerRun) {
  fs::copy(kData / "degradation-clean", dir_ / "in" / "clean");
  fs::copy(kData / "degradation-noisy", dir_ / "in" / "noisy");
  const Report r = build_report(load_inputs({in()}), "now");
  const Fixture clean = fixture("degradation-clean"), noisy = fixture("degradation-noisy");
  for (const char* id : {"deg0_agreement", "deg0_drift", "deg0_needle_mass", "deg0_kv", "deg0_prefill", "deg1_agreement",
                         "deg1_drift", "deg1_needle_mass", "deg1_kv", "deg1_prefill"})
    EXPECT_NE(find_figure(r, id), nullptr) << id;
  // (a) indexer recall falls to 0.84 at 16K in the noisy run; no niah_multikey task there.
  const std::string& a1 = find_figure(r, "deg1_agreement")->svg;
  EXPECT_EQ(plotted(a1, "indexer recall L1", 16384), noisy.metric("indexer_recall.L1", 16384)[0]);
  EXPECT_EQ(plotted(a1, "top-1 agreement", 4096), 1);
  EXPECT_TRUE(std::isnan(plotted(a1, "recall \\(niah_multikey\\)", 4096))) << "not measured in that run: not drawn";
  EXPECT_EQ(plotted(find_figure(r, "deg0_agreement")->svg, "recall \\(niah_multikey\\)", 1024), 1);
  EXPECT_NE(a1.find("class=\"band\""), std::string::npos) << "CI bands";
  // (b) drift on a log axis, the noisy run's values only in the noisy run's figure.
  const std::string& b1 = find_figure(r, "deg1_drift")->svg;
  EXPECT_EQ(plotted(b1, "logits rel. error", 4096), noisy.metric("logits_rel_err", 4096)[0]);
  EXPECT_EQ(plotted(b1, "attention rel. error L1", 16384), noisy.metric("attn_rel_err.L1", 16384)[0]);
  EXPECT_TRUE(std::isnan(plotted(b1, "logits rel. error", 1024))) << "the clean run's 1K bin is not on the noisy run's axes";
  EXPECT_NE(b1.find("relative error (log scale)"), std::string::npos);
  EXPECT_EQ(plotted(find_figure(r, "deg0_drift")->svg, "logits rel. error", 1024), clean.metric("logits_rel_err", 1024)[0]);
  // (c) needle mass: measured, fp64, predicted (the clean probe's closed form; absent when noisy).
  const std::string& c0 = find_figure(r, "deg0_needle_mass")->svg;
  EXPECT_EQ(plotted(c0, "deployment L1", 4096), clean.metric("needle_mass.L1", 4096)[0]);
  EXPECT_EQ(plotted(c0, "fp64 reference L1", 4096), clean.metric("needle_mass_ref.L1", 4096)[0]);
  EXPECT_EQ(plotted(c0, "predicted \\(closed form\\)", 1024), clean.metric("needle_mass_predicted", 1024)[0]);
  EXPECT_TRUE(std::isnan(plotted(find_figure(r, "deg1_needle_mass")->svg, "predicted \\(closed form\\)", 4096)));
  // (d) KV bytes in MiB, prefill tokens/s.
  const std::string& k1 = find_figure(r, "deg1_kv")->svg;
  EXPECT_NE(k1.find("KV cache (MiB)"), std::string::npos);
  EXPECT_DOUBLE_EQ(plotted(k1, "KV cache", 16384), 11091968.0 / (1024 * 1024));
  EXPECT_EQ(plotted(find_figure(r, "deg1_prefill")->svg, "prefill", 16384),
            noisy.by_length("layer_trace", 16384, "prefill_tokens_per_second")[0]);
  // Probes are labelled with their knobs, in the heading and on every chart.
  const std::string md = render_markdown(r);
  EXPECT_NE(md.find("**mechanism probe"), std::string::npos);
  EXPECT_NE(md.find("knobs: retrieval=csa S=4 topk=512 eps=0.6 gate_spread=3 quant=on"), std::string::npos) << md;
  EXPECT_NE(md.find("numerics official, checkpoint 330a1820caf7e0f9"), std::string::npos);
  EXPECT_NE(b1.find("(mechanism probe)"), std::string::npos);
  // The noisy run's table: recall and predicted do not apply.
  const auto tables = md_tables(md, "length");
  ASSERT_EQ(tables.size(), 2u);
  const auto& t = tables[1];
  EXPECT_EQ(t[1][column(t, "recall (niah_multikey)")], "n/a");
  EXPECT_EQ(t[2][column(t, "needle mass predicted")], "n/a");
  EXPECT_EQ(t[2][column(t, "indexer recall L1")], "0.844 [0.838, 0.855]");
}

// A real-model run (no probe), many layers, a metric that applies nowhere in a bin.
const char* kRealModel = R"json({"kind": "dsv4.eval.results", "schema_version": 1, "suite": "degradation", "format": "chat",
  "model": {"dir": "ckpt/v4-flash", "backend": "engine:ref", "checkpoint_hash": "feedf00d", "numerics": "exact"},
  "tasks": [{"name": "layer_trace", "version": "1", "data_hash": "h", "effective_length": 0,
    "by_length": [{"length": 2048, "n": 4, "mean": 0.75, "ci95": [0.25, 1.0], "prefill_tokens_per_second": 321.5}],
    "metrics_by_length": [
      {"metric": "attn_rel_err.L0", "length": 2048, "n": 4, "n_na": 0, "mean": 1e-3, "ci95": [5e-4, 2e-3], "min": 4e-4, "max": 3e-3},
      {"metric": "attn_rel_err.L1", "length": 2048, "n": 4, "n_na": 0, "mean": 2e-3, "ci95": [1e-3, 3e-3], "min": 1e-3, "max": 3e-3},
      {"metric": "attn_rel_err.L2", "length": 2048, "n": 4, "n_na": 0, "mean": 3e-3, "ci95": [2e-3, 4e-3], "min": 2e-3, "max": 4e-3},
      {"metric": "attn_rel_err.L3", "length": 2048, "n": 4, "n_na": 0, "mean": 4e-3, "ci95": [3e-3, 5e-3], "min": 3e-3, "max": 5e-3},
      {"metric": "attn_rel_err.L10", "length": 2048, "n": 4, "n_na": 0, "mean": 0.0123, "ci95": [0.0, 0.02], "min": 0, "max": 0.03},
      {"metric": "logits_rel_err", "length": 2048, "n": 4, "n_na": 0, "mean": 0.5, "ci95": [0.4, 0.6], "min": 0.4, "max": 0.6},
      {"metric": "needle_mass_predicted", "length": 2048, "n": 0, "n_na": 4, "mean": null},
      {"metric": "kv_bytes", "length": 2048, "n": 4, "n_na": 0, "mean": 3221225472, "ci95": [3221225472, 3221225472], "min": 3221225472, "max": 3221225472}]}]})json";

TEST_F(DegradationTest, RealModelRunManyLayersAndNotApplicable) {
  put("real/results.json", kRealModel);
  const Report r = build_report(load_inputs({in()}), "now");
  const std::string md = render_markdown(r);
  EXPECT_EQ(md.find("mechanism probe"), std::string::npos) << "a real model is not labelled a probe";
  EXPECT_NE(md.find("model `ckpt/v4-flash` (backend engine:ref, numerics exact, checkpoint feedf00d)"), std::string::npos) << md;
  const auto t = md_tables(md, "length").at(0);
  // Five traced layers > the per-layer limit: the last layer (by number, L10 after L3) only.
  EXPECT_EQ(std::count_if(t[0].begin(), t[0].end(), [](const std::string& h) { return h.rfind("attention rel. error", 0) == 0; }),
            1);
  EXPECT_EQ(t[1][column(t, "attention rel. error L10")], "1.23e-02 [0.00e+00, 2.00e-02]");
  EXPECT_EQ(t[1][column(t, "needle mass predicted")], "n/a") << "mean null";
  EXPECT_EQ(t[1][column(t, "needle mass")], "n/a") << "no layer traced a needle mass";
  EXPECT_EQ(t[1][column(t, "KV cache")], "3.00 GiB");
  EXPECT_EQ(t[1][column(t, "top-1 agreement")], "0.750 [0.250, 1.000]");
  EXPECT_EQ(t[1][column(t, "prefill tok/s")], "322");
  EXPECT_EQ(t[1][column(t, "decode GFLOP/token")], "n/a");
  // The CI reaching 0 on the log axis is clamped to the axis floor, the mean is drawn as it is.
  const std::string& drift = find_figure(r, "deg0_drift")->svg;
  EXPECT_EQ(plotted(drift, "attention rel. error L10", 2048), 0.0123);
  EXPECT_EQ(find_figure(r, "deg0_needle_mass"), nullptr) << "nothing to draw: no figure";
  EXPECT_EQ(plotted(find_figure(r, "deg0_kv")->svg, "KV cache", 2048), 3) << "GiB";
}

TEST_F(DegradationTest, SectionIffItsInputExists) {
  const char* recall_only = R"json({"kind": "dsv4.eval.results", "schema_version": 1, "suite": "recall", "format": "probe",
    "model": {"dir": "p", "backend": "engine:ref", "checkpoint_hash": "c"},
    "tasks": [{"name": "niah_single", "version": "1", "data_hash": "d", "effective_length": 1024,
      "by_length": [{"length": 1024, "n": 1, "mean": 1, "ci95": [1, 1]}], "metrics_by_length": []}]})json";
  put("recall/results.json", recall_only);
  EXPECT_EQ(section_ids(build_report(load_inputs({in()}), "now")), (std::vector<std::string>{"recall", "provenance"}))
      << "an empty metrics_by_length is no degradation input";
  // A recall-suite run whose task carries per-metric aggregates joins the section.
  std::string with_metrics = recall_only;
  with_metrics.replace(with_metrics.find("\"metrics_by_length\": []"), 23,
                       R"("metrics_by_length": [{"metric": "kv_bytes", "length": 1024, "n": 1, "n_na": 0, "mean": 2048,
                           "ci95": [2048, 2048], "min": 2048, "max": 2048}])");
  put("recall/results.json", with_metrics);
  const Report r = build_report(load_inputs({in()}), "now");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"recall", "degradation", "provenance"}));
  const auto t = md_tables(render_markdown(r), "length").back();
  EXPECT_EQ(t[1][column(t, "KV cache")], "2.00 KiB");
}

TEST_F(DegradationTest, MalformedMetricsNameTheFileAndField) {
  const std::string ok = R"({"metric": "kv_bytes", "length": 1024, "n": 2, "n_na": 0, "mean": 5, "ci95": [4, 6], "min": 4, "max": 6})";
  struct Case {
    std::string entry, expect;
  };
  const Case cases[] = {
      {R"({"length": 1024, "n": 2, "n_na": 0, "mean": 5, "ci95": [4, 6], "min": 4, "max": 6})", "metrics_by_length[1].metric: missing"},
      {R"({"metric": "x", "length": "1k", "n": 2, "n_na": 0, "mean": 5, "ci95": [4, 6], "min": 4, "max": 6})",
       "metrics_by_length[1].length: expected a number"},
      {R"({"metric": "x", "length": 1024, "n": -1, "n_na": 0, "mean": 5, "ci95": [4, 6], "min": 4, "max": 6})",
       "metrics_by_length[1].n: expected a count"},
      {R"({"metric": "x", "length": 1024, "n": 2, "n_na": 0, "mean": null})", "metrics_by_length[1].mean: null, but n = 2"},
      {R"({"metric": "x", "length": 1024, "n": 2, "n_na": 0, "mean": "0.5", "ci95": [4, 6], "min": 4, "max": 6})",
       "metrics_by_length[1].mean: expected a number"},
      {R"({"metric": "x", "length": 1024, "n": 2, "n_na": 0, "mean": 5, "ci95": [4], "min": 4, "max": 6})",
       "metrics_by_length[1].ci95: expected [lo, hi]"},
      {R"({"metric": "x", "length": 1024, "n": 2, "n_na": 0, "mean": 5, "ci95": [6, 4], "min": 4, "max": 6})",
       "metrics_by_length[1].ci95: lo > hi"},
      {R"({"metric": "x", "length": 1024, "n": 2, "n_na": 0, "mean": 5, "ci95": [4, 6], "max": 6})", "metrics_by_length[1].min: missing"},
      {ok, "metrics_by_length[1]: a second entry for metric 'kv_bytes' at length 1024"},
  };
  for (const auto& c : cases) {
    fs::remove_all(dir_ / "in");
    std::string doc = kRealModel;
    const size_t at = doc.find("\"metrics_by_length\": [") + 22;
    doc.insert(at, ok + ", " + c.entry + ", ");
    const std::string f = put("bad/results.json", doc);
    const std::string msg = load_error();
    EXPECT_NE(msg.find(f), std::string::npos) << c.entry << " -> " << msg;
    EXPECT_NE(msg.find("tasks[0]." + c.expect), std::string::npos) << c.entry << " -> " << msg;
  }
  fs::remove_all(dir_ / "in");
  std::string not_array = kRealModel;
  not_array.replace(not_array.find("\"metrics_by_length\": ["), 22, "\"metrics_by_length\": 7, \"unused\": [");
  put("bad/results.json", not_array);
  EXPECT_NE(load_error().find("tasks[0].metrics_by_length: expected an array"), std::string::npos) << load_error();
}

// ---- the kernels section's correctness status (dsv4.ops) -----------------------------------

const char* kOps = R"json({"kind": "dsv4.ops", "schema_version": 1, "ops": [
  {"name": "rmsnorm", "summary": "y = x / rms(x) * w", "cuda_kernel": "optimized/rmsnorm.cuh",
   "backends": {"ref": "available (CPU reference)", "cuda": "compiled, not run"}},
  {"name": "rope", "summary": "rotary | embedding", "cuda_kernel": null,
   "backends": {"ref": "available (CPU reference)", "cuda": "no kernel yet"}}]})json";

TEST_F(DegradationTest, OpStatusTableInTheKernelsSection) {
  EXPECT_EQ(section_ids(build_report(load_inputs({in()}), "now")), (std::vector<std::string>{"provenance"}));
  put("ops.json", kOps);
  const Report r = build_report(load_inputs({in()}), "now");
  EXPECT_EQ(section_ids(r), (std::vector<std::string>{"kernels", "provenance"})) << "present iff the ops file is given";
  const auto t = md_tables(render_markdown(r), "op").at(0);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0], (std::vector<std::string>{"op", "ref", "cuda", "what it computes"}));
  EXPECT_EQ(t[1], (std::vector<std::string>{"rmsnorm", "available (CPU reference)", "compiled, not run", "y = x / rms(x) * w"}));
  EXPECT_EQ(t[2][2], "no kernel yet");
  EXPECT_EQ(t[2][3], "rotary \\| embedding") << "a pipe in a summary is escaped";
  const auto& ops = r.summary.at("op_status").as_object().at("ops").as_array();
  ASSERT_EQ(ops.size(), 2u);
  EXPECT_EQ(ops[0].as_object().at("backends").as_object().at("cuda").as_string(), "compiled, not run");
  EXPECT_EQ(render_html(r).find("verified"), std::string::npos) << "nothing claims a GPU run";
}

TEST_F(DegradationTest, MalformedOpsFileNamesTheFileAndField) {
  struct Case {
    const char* text;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"kind": "dsv4.ops", "schema_version": 2, "ops": []})", "schema_version: expected 1, found 2"},
      {R"({"kind": "dsv4.ops", "schema_version": 1})", "ops: missing"},
      {R"({"kind": "dsv4.ops", "schema_version": 1, "ops": [{"name": "a", "summary": "s", "backends": {"ref": "x"}}]})",
       "ops[0].backends.cuda: missing"},
      {R"({"kind": "dsv4.ops", "schema_version": 1, "ops": [{"name": "a", "summary": "s", "backends": {"ref": "x", "cuda": 1}}]})",
       "ops[0].backends.cuda: expected a string"},
      {R"({"kind": "dsv4.ops", "schema_version": 1, "ops": [{"name": "a", "summary": "s", "backends": []}]})",
       "ops[0].backends: expected an object"},
      {R"({"kind": "dsv4.ops", "schema_version": 1, "ops": [{"summary": "s", "backends": {}}]})", "ops[0].name: missing"},
  };
  for (const auto& c : cases) {
    fs::remove_all(dir_ / "in");
    const std::string f = put("ops.json", c.text);
    const std::string msg = load_error();
    EXPECT_NE(msg.find(f), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
  }
  fs::remove_all(dir_ / "in");
  put("a/ops.json", kOps);
  put("b/ops.json", kOps);
  EXPECT_NE(load_error().find("a second dsv4.ops file"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::report
