// bench/cases, bench/derive and `dsv4 bench`: the one case list covers every op of the issue
// at the real V4-Flash and V4-Pro shapes over 4K..1M (and the predecessors), its counters are
// positive and add up to bench/flops.h's analytic decode FLOPs where the two overlap, the
// derived numbers follow their definitions, and the command writes valid JSON.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "bench/cases.h"
#include "bench/derive.h"
#include "bench/flops.h"
#include "model/config.h"

#ifndef DSV4_BINARY
// tests/dsv4_test_bench_bench -> cli/dsv4 in the same build tree.
inline std::string dsv4_binary_in_build_tree() {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "cli" / "dsv4").string();
}
#define DSV4_BINARY dsv4_binary_in_build_tree()
#endif
#include "tests/cli/cli_harness.h"

namespace dsv4::bench {
namespace {

const std::vector<Case>& cases() {
  static const std::vector<Case> c = case_list();
  return c;
}

const Case* find(const std::string& name) {
  for (const auto& c : cases())
    if (c.name() == name) return &c;
  return nullptr;
}

double flops_of(const std::string& name) {
  const Case* c = find(name);
  EXPECT_NE(c, nullptr) << name;
  return c ? c->flops : std::nan("");
}

// Counters are sums of exactly representable products; 1e-12 relative covers the order of
// summation of a few dozen doubles.
constexpr double kSumTol = 1e-12;

TEST(BenchCases, EveryOpAtEveryModelAndContext) {
  const char* per_context[] = {"indexer_decode",         "indexer_prefill",         "attention_csa_decode",
                               "attention_hca_decode",   "attention_window_decode", "attention_csa_prefill",
                               "attention_hca_prefill",  "attention_window_prefill", "layer_csa_decode",
                               "layer_hca_decode"};
  const char* per_model[] = {"indexer_query_decode/{}/tokens:1", "query_path_decode/{}/tokens:1",
                             "window_kv_decode/{}/tokens:1",     "output_proj_decode/{}/tokens:1",
                             "output_proj_prefill/{}/tokens:256", "compressor_decode/{}/csa",
                             "compressor_decode/{}/csa_indexer", "compressor_decode/{}/hca",
                             "compressor_prefill/{}/csa,tokens:256", "mhc_decode/{}/tokens:1",
                             "mhc_prefill/{}/tokens:256",         "moe_decode/{}/experts:16",
                             "moe_prefill/{}/experts:16,tokens:16", "rmsnorm/{}/rows:4096", "rope/{}/rows:1024"};
  for (const std::string m : {"v4-flash", "v4-pro"}) {
    for (const char* op : per_context)
      for (int64_t L : kContexts) EXPECT_NE(find(std::string(op) + "/" + m + "/" + ctx_variant(L)), nullptr) << op << " " << m << " " << L;
    for (std::string pat : per_model) EXPECT_NE(find(pat.replace(pat.find("{}"), 2, m)), nullptr) << pat;
  }
  for (int64_t L : kContexts) {
    EXPECT_NE(find("dsa_indexer_decode/v3.2/" + ctx_variant(L)), nullptr) << L;
    EXPECT_NE(find("mla_sparse_decode/v3.2/" + ctx_variant(L)), nullptr) << L;
    EXPECT_NE(find("mla_dense_decode/v3/" + ctx_variant(L)), nullptr) << L;
  }
  for (const char* n : {"dsa_indexer_query_decode/v3.2/tokens:1", "ceiling_sgemm/cpu/n:1024", "ceiling_read/cpu/mib:256",
                        "hadamard/v4/rows:131072", "quant_fp8/v4/rows:32768", "quant_fp4/v4/rows:131072"})
    EXPECT_NE(find(n), nullptr) << n;
}

TEST(BenchCases, NamesAreUniqueAndFollowTheConvention) {
  const std::regex form("^[a-z0-9_]+/(v4-flash|v4-pro|v4|v3\\.2|v3|cpu|gpu)/[a-z0-9_:,]+$");
  std::set<std::string> seen;
  for (const auto& c : cases()) {
    EXPECT_TRUE(std::regex_match(c.name(), form)) << c.name();
    EXPECT_TRUE(seen.insert(c.name()).second) << "duplicate " << c.name();
  }
}

TEST(BenchCases, CountersArePositive) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name());
    EXPECT_GE(c.flops, 0);
    EXPECT_GE(c.bytes, 0);
    EXPECT_GT(c.flops + c.bytes, 0);
    EXPECT_GT(c.memory + c.device_memory, 0);
    EXPECT_TRUE(bool(c.setup) != bool(c.timed_setup)) << "exactly one set-up";
    if (c.op.find("attention") != std::string::npos || c.op.find("mla") != std::string::npos ||
        c.op.find("indexer") != std::string::npos || c.op.find("layer") != std::string::npos) {
      EXPECT_GT(c.flops, 0);
      EXPECT_GT(c.bytes, 0);
    }
  }
}

// FlashMLA convention, written out once from the spec shapes for one case of each kind.
TEST(BenchCases, AttentionCountersFollowTheFlashMlaConvention) {
  // Flash CSA decode at 128K: 128 window + 512 selected entries, 64 heads, d = 512.
  const Case* c = find("attention_csa_decode/v4-flash/ctx:131072");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->flops, 2.0 * 64 * (128 + 512) * (512 + 512));
  EXPECT_EQ(c->bytes, (128.0 + 512) * 512 * 4 + 2.0 * 64 * 512 * 4);
  // Pro HCA decode at 1M: 128 + 8192 entries, 128 heads.
  c = find("attention_hca_decode/v4-pro/ctx:1048576");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->flops, 2.0 * 128 * (128 + 8192) * 1024);
  EXPECT_EQ(c->bytes, (128.0 + 8192) * 512 * 4 + 2.0 * 128 * 512 * 4);
  // V3 dense MLA at 32K: d_qk = 576, d_v = 512.
  c = find("mla_dense_decode/v3/ctx:32768");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->flops, 2.0 * 128 * 32768 * (576 + 512));
  EXPECT_EQ(c->bytes, 32768.0 * 576 * 4 + 128.0 * (576 + 512) * 4);
  // A prefill chunk of 64 CSA rows at 32K: the pool of 512 + 63 entries is read once.
  c = find("attention_csa_prefill/v4-flash/ctx:32768");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->flops, 64 * 2.0 * 64 * (128 + 512) * 1024);
  EXPECT_EQ(c->bytes, ((64.0 + 127) + (512 + 63)) * 512 * 4 + 2.0 * 64 * 64 * 512 * 4);
}

// The same-run speedup compares exactly the parts bench/flops.h counts as attention +
// indexer: the case counters times the layer counts must reproduce them.
TEST(BenchCases, DecodePathsAddUpToTheAnalyticModel) {
  for (const std::string m : {"v4-flash", "v4-pro"}) {
    const ModelConfig c = config_preset(m);
    const double ncsa = double(c.count_layers(kCsaRatio)), nhca = double(c.count_layers(kHcaRatio)),
                 nwin = double(c.count_layers(0));
    for (int64_t L : kContexts) {
      SCOPED_TRACE(m + " " + std::to_string(L));
      const std::string ctx = "/" + m + "/" + ctx_variant(L);
      const double ours = ncsa * (flops_of("indexer_query_decode/" + m + "/tokens:1") + flops_of("indexer_decode" + ctx) +
                                  flops_of("attention_csa_decode" + ctx)) +
                          nhca * flops_of("attention_hca_decode" + ctx) + nwin * flops_of("attention_window_decode" + ctx);
      const DecodeFlops f = decode_flops(c, L);
      EXPECT_NEAR(ours, f.attention + f.indexer, kSumTol * ours);
      // and the compressors of every layer = flops.h's compressor term
      const double comp = ncsa * (flops_of("compressor_decode/" + m + "/csa") + flops_of("compressor_decode/" + m + "/csa_indexer")) +
                          nhca * flops_of("compressor_decode/" + m + "/hca");
      EXPECT_NEAR(comp, f.compressor, kSumTol * comp);
    }
  }
  for (int64_t L : kContexts) {
    SCOPED_TRACE(L);
    const double v32 = 61 * (flops_of("dsa_indexer_query_decode/v3.2/tokens:1") + flops_of("dsa_indexer_decode/v3.2/" + ctx_variant(L)) +
                             flops_of("mla_sparse_decode/v3.2/" + ctx_variant(L)));
    const DecodeFlops f32 = decode_flops(config_preset("v3.2"), L);
    EXPECT_NEAR(v32, f32.attention + f32.indexer, kSumTol * v32);
    const double v3 = 61 * flops_of("mla_dense_decode/v3/" + ctx_variant(L));
    EXPECT_NEAR(v3, decode_flops(config_preset("v3"), L).attention, kSumTol * v3);
  }
}

// A whole-layer step is the sum of the op cases it is made of (§2.9).
TEST(BenchCases, LayerStepIsTheSumOfItsOps) {
  for (const std::string m : {"v4-flash", "v4-pro"})
    for (int64_t L : kContexts) {
      SCOPED_TRACE(m + " " + std::to_string(L));
      const std::string ctx = "/" + m + "/" + ctx_variant(L), tok = "/" + m + "/tokens:1";
      const double common = flops_of("query_path_decode" + tok) + flops_of("window_kv_decode" + tok) + flops_of("output_proj_decode" + tok);
      const double csa = common + flops_of("indexer_query_decode" + tok) + flops_of("indexer_decode" + ctx) +
                         flops_of("attention_csa_decode" + ctx) + flops_of("compressor_decode/" + m + "/csa") +
                         flops_of("compressor_decode/" + m + "/csa_indexer");
      EXPECT_NEAR(flops_of("layer_csa_decode" + ctx), csa, kSumTol * csa);
      const double hca = common + flops_of("attention_hca_decode" + ctx) + flops_of("compressor_decode/" + m + "/hca");
      EXPECT_NEAR(flops_of("layer_hca_decode" + ctx), hca, kSumTol * hca);
    }
}

TEST(BenchCases, CasesThatDoNotFitAreSkippedWithAReason) {
  const Case* all = find("moe_decode/v4-flash/experts:256");
  ASSERT_NE(all, nullptr);
  EXPECT_GT(all->memory, kMemoryLimit);  // 3 x 256 x 2048 x 4096 floats
  EXPECT_NE(all->skip.find("GiB"), std::string::npos) << all->skip;
  for (const auto& c : cases()) EXPECT_EQ(c.memory > kMemoryLimit, !c.skip.empty()) << c.name();
  // A small limit skips the large cases and keeps the small ones.
  int64_t small = 0, skipped = 0;
  for (const auto& c : case_list(64.0 * 1024 * 1024)) {
    EXPECT_EQ(c.memory > 64.0 * 1024 * 1024, !c.skip.empty()) << c.name();
    (c.skip.empty() ? small : skipped)++;
  }
  EXPECT_GT(small, 10);
  EXPECT_GT(skipped, 10);
}

TEST(BenchCases, QuickSubsetHasTheCeilingsAndOneCaseOfEachFamily) {
  std::set<std::string> ops;
  for (const auto& c : cases())
    if (c.quick) ops.insert(c.op);
  for (const char* op : {"ceiling_sgemm", "ceiling_read", "indexer_decode", "attention_csa_decode", "attention_hca_decode",
                         "attention_window_decode", "layer_csa_decode", "layer_hca_decode", "compressor_decode", "mhc_decode",
                         "moe_decode", "output_proj_decode", "dsa_indexer_decode", "mla_sparse_decode", "mla_dense_decode"})
    EXPECT_TRUE(ops.count(op)) << op;
}

// Every small case sets up and runs one step without error (the large ones run in dsv4 bench).
TEST(BenchCases, SmallCasesSetUpAndRun) {
  int64_t ran = 0;
  for (const auto& c : cases()) {
    if (!c.skip.empty() || c.memory > 48.0 * 1024 * 1024 || c.flops > 0.6e9 || c.op.rfind("ceiling_", 0) == 0 ||
        c.backend != Backend::cpu)  // the CUDA cases: tests/bench/test_cuda_cases.cc
      continue;
    SCOPED_TRACE(c.name());
    Step step = c.setup();
    EXPECT_NO_THROW(step());
    ++ran;
  }
  EXPECT_GT(ran, 20);
}

// ---- derive ----------------------------------------------------------------------------

boost::json::object run(const std::string& name, double ms, double flops, double bytes, int64_t rep) {
  return {{"name", name},       {"run_name", name},    {"run_type", "iteration"}, {"repetition_index", rep},
          {"real_time", ms},    {"cpu_time", ms},      {"time_unit", "ms"},        {"flops_per_iter", flops},
          {"bytes_per_iter", bytes}, {"iterations", 10}};
}

TEST(BenchDerive, CeilingsSharesAndSpeedupsFollowTheirDefinitions) {
  boost::json::array runs;
  // SGEMM 2e9 FLOPs in 20 ms = 100 GFLOP/s; read 2e8 bytes in 10 ms = 20 GB/s.
  runs.push_back(run("ceiling_sgemm/cpu/n:1024", 20, 2e9, 0, 0));
  runs.push_back(run("ceiling_read/cpu/mib:256", 10, 0, 2e8, 0));
  // a compute-bound op: 1e9 FLOPs -> 10 ms at the ceiling; 12.5 and 20 ms -> shares 0.8, 0.5
  runs.push_back(run("attention_hca_decode/v4-flash/ctx:4096", 12.5, 1e9, 1e6, 0));
  runs.push_back(run("attention_hca_decode/v4-flash/ctx:4096", 20, 1e9, 1e6, 1));
  boost::json::object agg = run("attention_hca_decode/v4-flash/ctx:4096", 16, 1e9, 1e6, 0);
  agg["run_type"] = "aggregate";
  agg["name"] = "attention_hca_decode/v4-flash/ctx:4096_mean";
  runs.push_back(agg);
  // a memory-bound op: 1e8 bytes -> 5 ms at the ceiling; 10 ms -> 0.5
  runs.push_back(run("output_proj_decode/v4-flash/tokens:1", 10, 1e6, 1e8, 0));
  boost::json::object err{{"name", "mhc_decode/v4-flash/tokens:1"}, {"run_name", "mhc_decode/v4-flash/tokens:1"},
                          {"run_type", "iteration"}, {"error_occurred", true}, {"error_message", "boom"}};
  runs.push_back(err);
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  EXPECT_DOUBLE_EQ(d.sgemm_flops_per_s, 1e11);
  EXPECT_DOUBLE_EQ(d.read_bytes_per_s, 2e10);
  ASSERT_EQ(d.benchmarks.size(), 4u);
  const auto& h = d.benchmarks[2];
  ASSERT_EQ(h.seconds.size(), 2u) << "the aggregate is not a repetition";
  EXPECT_DOUBLE_EQ(h.roofline_share[0], 0.8);
  EXPECT_DOUBLE_EQ(h.roofline_share[1], 0.5);
  EXPECT_EQ(h.bound, "compute");
  EXPECT_TRUE(h.target);
  EXPECT_DOUBLE_EQ(d.benchmarks[3].roofline_share[0], 0.5);
  EXPECT_EQ(d.benchmarks[3].bound, "memory");
  EXPECT_FALSE(d.benchmarks[0].target);
  EXPECT_EQ(d.errors.at("mhc_decode/v4-flash/tokens:1"), "boom");
  EXPECT_TRUE(d.speedups.empty()) << "parts are missing";
  // A ceiling is the median of its samples (run first and last): one slow sample of three
  // changes nothing, two of three set it.
  runs.push_back(run("ceiling_read/cpu/mib:256", 40, 0, 2e8, 0));
  runs.push_back(run("ceiling_read/cpu/mib:256", 10, 0, 2e8, 1));
  EXPECT_DOUBLE_EQ(derive(boost::json::object{{"benchmarks", runs}}).read_bytes_per_s, 2e10);
  runs.push_back(run("ceiling_read/cpu/mib:256", 40, 0, 2e8, 2));
  runs.push_back(run("ceiling_read/cpu/mib:256", 40, 0, 2e8, 3));
  EXPECT_DOUBLE_EQ(derive(boost::json::object{{"benchmarks", runs}}).read_bytes_per_s, 5e9);
  const auto j = derived_json(d, {{"moe_decode/v4-flash/experts:256", "too big"}});
  EXPECT_EQ(j.at("kind").as_string(), "dsv4.bench");
  EXPECT_EQ(j.at("benchmarks").as_array().size(), 4u);
  EXPECT_EQ(j.at("skipped").as_array().size(), 1u);
  EXPECT_NE(derived_table(d).find("NO"), std::string::npos);  // the 0.5 ops miss the target
}

TEST(BenchDerive, NonFiniteCountersOfGoogleBenchmarkReadAsNull) {
  const auto v = parse_benchmark_json(R"({"a": NaN, "b": -Infinity, "c": "NaN", "d": 1.5})").as_object();
  EXPECT_TRUE(v.at("a").is_null());
  EXPECT_TRUE(v.at("b").is_null());
  EXPECT_EQ(v.at("c").as_string(), "NaN");
  EXPECT_EQ(v.at("d").as_double(), 1.5);
  EXPECT_THROW(parse_benchmark_json("{\"a\": nope}"), std::exception);
}

TEST(BenchDerive, SpeedupIsTheRatioOfTheLayerWeightedPaths) {
  const int64_t L = 4096;
  const std::string ctx = ctx_variant(L);
  boost::json::array runs;
  auto add = [&](const std::string& name, double ms) { runs.push_back(run(name, ms, 1e6, 1e6, 0)); };
  add("indexer_query_decode/v4-flash/tokens:1", 1);
  add("indexer_decode/v4-flash/" + ctx, 2);
  add("attention_csa_decode/v4-flash/" + ctx, 3);
  add("attention_hca_decode/v4-flash/" + ctx, 4);
  add("attention_window_decode/v4-flash/" + ctx, 5);
  add("dsa_indexer_query_decode/v3.2/tokens:1", 6);
  add("dsa_indexer_decode/v3.2/" + ctx, 7);
  add("mla_sparse_decode/v3.2/" + ctx, 8);
  add("mla_dense_decode/v3/" + ctx, 9);
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  ASSERT_EQ(d.speedups.size(), 2u);
  const ModelConfig f = config_preset("v4-flash");
  const double v4 = double(f.count_layers(kCsaRatio)) * 6 + double(f.count_layers(kHcaRatio)) * 4 + double(f.count_layers(0)) * 5;
  EXPECT_NEAR(d.speedups[0].measured, 61.0 * 21 / v4, 1e-12);
  EXPECT_EQ(d.speedups[0].versus, "v3.2");
  EXPECT_NEAR(d.speedups[1].measured, 61.0 * 9 / v4, 1e-12);
  const DecodeFlops a = decode_flops(f, L), b = decode_flops(config_preset("v3.2"), L);
  EXPECT_NEAR(d.speedups[0].analytic, (b.attention + b.indexer) / (a.attention + a.indexer), 1e-12);
  EXPECT_NEAR(d.speedups[0].ratio, d.speedups[0].measured / d.speedups[0].analytic, 1e-12);
}

// CPU-time shares use CPU-time ceilings: a run whose wall clock was stretched 2x by another
// process (cpu_time unchanged) keeps its CPU-time share; speedups per repetition pair the r-th
// repetitions of every part.
TEST(BenchDerive, CpuTimeSharesAndPerRepetitionSpeedups) {
  auto timed = [](const std::string& name, double wall_ms, double cpu_ms, double flops, double bytes, int64_t rep) {
    boost::json::object o = run(name, wall_ms, flops, bytes, rep);
    o["cpu_time"] = cpu_ms;
    return o;
  };
  const std::string ctx = ctx_variant(4096);
  boost::json::array runs;
  runs.push_back(timed("ceiling_sgemm/cpu/n:1024", 20, 20, 2e9, 0, 0));
  runs.push_back(timed("ceiling_read/cpu/mib:256", 10, 10, 0, 2e8, 0));
  // 1e9 FLOPs: 10 ms at the ceiling; wall 25 ms (busy machine), CPU 12.5 ms -> 0.4 and 0.8
  runs.push_back(timed("attention_hca_decode/v4-flash/" + ctx, 25, 12.5, 1e9, 1e6, 0));
  const std::vector<std::string> parts = {"indexer_query_decode/v4-flash/tokens:1", "indexer_decode/v4-flash/" + ctx,
                                          "attention_csa_decode/v4-flash/" + ctx, "attention_window_decode/v4-flash/" + ctx,
                                          "mla_dense_decode/v3/" + ctx};
  for (int64_t r = 0; r < 2; ++r) {
    for (const auto& name : parts) {
      const double ms = name.rfind("mla_dense", 0) == 0 ? 100.0 * double(r + 1) : 1.0;  // V3: 100 then 200 ms
      runs.push_back(timed(name, ms, ms / 2, 1e6, 1e6, r));
    }
    if (r == 1) runs.push_back(timed("attention_hca_decode/v4-flash/" + ctx, 25, 12.5, 1e9, 1e6, 1));
  }
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  EXPECT_DOUBLE_EQ(d.sgemm_flops_per_cpu_s, 1e11);
  const DerivedBenchmark* h = nullptr;
  for (const auto& b : d.benchmarks)
    if (b.name == "attention_hca_decode/v4-flash/" + ctx) h = &b;
  ASSERT_NE(h, nullptr);
  EXPECT_DOUBLE_EQ(h->roofline_share[0], 0.4);
  EXPECT_DOUBLE_EQ(h->roofline_share_cpu[0], 0.8);
  ASSERT_EQ(d.speedups.size(), 1u);  // versus v3 only: the V3.2 parts are missing
  const auto& s = d.speedups[0];
  ASSERT_EQ(s.measured_per_repetition.size(), 2u);
  EXPECT_NEAR(s.measured_per_repetition[1] / s.measured_per_repetition[0], 2.0, 1e-12) << "V3 took twice as long in rep 1";
  ASSERT_EQ(s.measured_cpu_per_repetition.size(), 2u);
  EXPECT_NEAR(s.measured_cpu_per_repetition[0], s.measured_per_repetition[0], 1e-12) << "CPU times are all halved";
  const auto j = derived_json(d, {});
  EXPECT_EQ(j.at("speedups").as_array()[0].as_object().at("measured_per_repetition").as_array().size(), 2u);
  EXPECT_TRUE(j.at("benchmarks").as_array()[2].as_object().contains("roofline_share_cpu"));
}

// ---- the command -----------------------------------------------------------------------

std::string dsv4_binary() { return DSV4_BINARY; }

TEST(BenchCommand, QuickFilteredRunWritesValidJson) {
  ASSERT_TRUE(std::filesystem::exists(dsv4_binary())) << dsv4_binary() << " (build the dsv4 target)";
  test::TempDir tmp;
  const std::string out = tmp.file("bench");
  const auto r = test::run_dsv4("bench --quick --filter '^window_kv_decode/v4-flash' --repetitions 2 --out " + out, tmp);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto bench = parse_benchmark_json(test::slurp(out + "/bench.json"));
  int iterations = 0, aggregates = 0;
  std::set<std::string> names;
  for (const auto& v : bench.at("benchmarks").as_array()) {
    const auto& o = v.as_object();
    names.insert(std::string(o.at("run_name").as_string()));
    if (o.at("run_type").as_string() == "iteration") {
      ++iterations;
      const double f = o.at("flops_per_iter").to_number<double>(), b = o.at("bytes_per_iter").to_number<double>();
      EXPECT_GT(f + b, 0);  // the ceilings count one of the two
      if (o.at("run_name").as_string().starts_with("window_kv")) {
        EXPECT_TRUE(f > 0 && b > 0);
      }
      EXPECT_TRUE(o.contains("flops") && o.contains("bytes") && o.contains("repetition_index"));
    } else {
      ++aggregates;
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"ceiling_sgemm/cpu/n:1024", "ceiling_read/cpu/mib:256", "window_kv_decode/v4-flash/tokens:1"}));
  EXPECT_EQ(iterations, 10);  // 2 repetitions of window_kv and of each ceiling, run first and last
  EXPECT_GT(aggregates, 0);
  const auto derived = boost::json::parse(test::slurp(out + "/bench_derived.json")).as_object();
  EXPECT_EQ(derived.at("kind").as_string(), "dsv4.bench");
  EXPECT_GT(derived.at("ceilings").at("sgemm_flops_per_s").to_number<double>(), 1e9);
  EXPECT_GT(derived.at("ceilings").at("read_bytes_per_s").to_number<double>(), 1e9);
  bool found = false;
  for (const auto& v : derived.at("benchmarks").as_array()) {
    const auto& o = v.as_object();
    if (o.at("name").as_string() != "window_kv_decode/v4-flash/tokens:1") continue;
    found = true;
    EXPECT_EQ(o.at("seconds").as_array().size(), 2u);
    ASSERT_EQ(o.at("roofline_share").as_array().size(), 2u);
    for (const auto& s : o.at("roofline_share").as_array()) EXPECT_GT(s.to_number<double>(), 0);
  }
  EXPECT_TRUE(found);
  EXPECT_NE(r.out.find("window_kv_decode"), std::string::npos);
  EXPECT_NE(r.out.find("share"), std::string::npos);
}

TEST(BenchCommand, RederiveRewritesTheDerivedFileFromBenchJson) {
  test::TempDir tmp;
  const std::string dir = tmp.file("run");
  std::filesystem::create_directories(dir);
  boost::json::array runs;
  runs.push_back(run("ceiling_sgemm/cpu/n:1024", 20, 2e9, 0, 0));
  runs.push_back(run("ceiling_read/cpu/mib:256", 10, 0, 2e8, 0));
  runs.push_back(run("attention_hca_decode/v4-flash/ctx:4096", 12.5, 1e9, 1e6, 0));
  {
    std::ofstream f(dir + "/bench.json");
    f << boost::json::serialize(boost::json::object{{"benchmarks", runs}});
  }
  const auto r = test::run_dsv4("bench --rederive " + dir, tmp);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto d = boost::json::parse(test::slurp(dir + "/bench_derived.json")).as_object();
  EXPECT_DOUBLE_EQ(d.at("ceilings").at("sgemm_flops_per_s").to_number<double>(), 1e11);
  EXPECT_DOUBLE_EQ(d.at("benchmarks").as_array()[2].at("roofline_share").as_array()[0].to_number<double>(), 0.8);
  EXPECT_EQ(test::run_dsv4("bench --rederive " + tmp.file("none"), tmp).status, 2);
}

TEST(BenchCommand, BadFilterIsBadInput) {
  ASSERT_TRUE(std::filesystem::exists(dsv4_binary()));
  test::TempDir tmp;
  const auto r = test::run_dsv4("bench --filter '(' --out " + tmp.file("b"), tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("filter"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::bench
