// The Engram benchmark cases (bench/cases_engram.cc), the analytic Engram cost and the
// Engram-vs-MoE comparison (bench/engram_cost.h), Engram in decode_flops (bench/flops.h), and
// the measured comparison of bench_derived.json (bench/derive.h EngramVsMoeRow). Every
// expected number is written out from the published shapes (docs/engram.md: N = 3, Hn = 8,
// 512 dims per order -> de = 64, E = 1024, K = 4; S = 4; D = 4096 Flash, 7168 Pro; MoE
// I = 2048 / 3072, top-6 + 1 shared, 256 / 384 experts), never from the functions under test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "bench/cases.h"
#include "bench/derive.h"
#include "bench/engram_cost.h"
#include "bench/flops.h"
#include "model/config.h"
#include "reference/engram.h"
#include "reference/errors.h"

namespace dsv4::bench {
namespace {

// Counters are sums of a few exactly representable products; 1e-12 relative covers the order
// of summation of doubles.
constexpr double kSumTol = 1e-12;

const std::vector<Case>& cases() {
  static const std::vector<Case> c = case_list();
  return c;
}

const Case* find(const std::string& name) {
  for (const auto& c : cases())
    if (c.name() == name) return &c;
  return nullptr;
}

// One Engram layer's FLOPs per token at the published shapes with hidden size D (S = 4,
// E = 1024, K = 4): value + 4 keys + 4 gate dots + the K-tap convolution of 4 D channels.
double layer_flops(double D) { return 2 * D * 1024 + 2 * 4 * D * 1024 + 2 * 4 * D + 2 * 4 * 4 * D; }
// Dense parameters read per token: value + 4 key matrices, 5 biases, 12 norm vectors, conv.
double layer_dense(double D) { return 5 * D * 1024 + 5 * D + 3 * 4 * D + 4 * D * 4; }

TEST(EngramBenchCases, EveryCaseOfTheBriefIsListed) {
  EXPECT_NE(find("engram_hash/v4/tokens:512"), nullptr);
  for (const char* table : {"memory_f32", "mmap_bf16"})
    for (int lr = 10; lr <= 22; lr += 2) {
      const std::string n = std::string("engram_lookup/v4/") + table + ",rows:" + std::to_string(1 << lr) + ",tokens:512";
      EXPECT_NE(find(n), nullptr) << n;
    }
  for (const std::string m : {"v4-flash", "v4-pro"}) {
    EXPECT_NE(find("engram_mix_decode/" + m + "/tokens:1"), nullptr) << m;
    EXPECT_NE(find("engram_mix_prefill/" + m + "/tokens:512"), nullptr) << m;
  }
}

TEST(EngramBenchCases, QuickSubsetHasACacheAndADramTableAndTheMix) {
  std::set<std::string> quick;
  for (const auto& c : cases())
    if (c.quick && c.backend == Backend::cpu && c.op.rfind("engram", 0) == 0)  // the GPU ones: test_cuda_cases.cc
      quick.insert(c.name());
  for (const char* n : {"engram_hash/v4/tokens:512", "engram_lookup/v4/memory_f32,rows:1024,tokens:512",
                        "engram_lookup/v4/memory_f32,rows:65536,tokens:512",
                        "engram_lookup/v4/mmap_bf16,rows:65536,tokens:512", "engram_mix_decode/v4-flash/tokens:1",
                        "engram_mix_prefill/v4-flash/tokens:512",
                        "engram_prefetch/v4-flash/mmap_bf16,rows:65536,tokens:512,part:copy",
                        "engram_prefetch/v4-flash/mmap_bf16,rows:65536,tokens:512,part:compute",
                        "engram_prefetch/v4-flash/mmap_bf16,rows:65536,tokens:512,part:both"})
    EXPECT_TRUE(quick.count(n)) << n;
  EXPECT_EQ(quick.size(), 9u) << "the quick Engram subset is budgeted at ~15 s here";
}

// The CPU prefetch overlap: three parts of one measurement, each counting only its own work
// (the rows moved by the lookup, 2 n^3 of the SGEMM), and the derivation of overlap from their
// medians (bench/derive.h EngramOverlapRow), backend cpu.
TEST(EngramBenchCases, PrefetchOverlapPartsAndTheirDerivation) {
  const std::string base = "engram_prefetch/v4-flash/mmap_bf16,rows:65536,tokens:512,part:";
  const Case* copy = find(base + "copy");
  const Case* compute = find(base + "compute");
  const Case* both = find(base + "both");
  ASSERT_TRUE(copy && compute && both);
  const double rows = 512.0 * 16 * 64 * 2, gemm = 2.0 * 640 * 640 * 640;
  EXPECT_EQ(copy->bytes, rows);
  EXPECT_EQ(copy->flops, 0);
  EXPECT_EQ(compute->bytes, 0);
  EXPECT_EQ(compute->flops, gemm);
  EXPECT_EQ(both->bytes, rows);
  EXPECT_EQ(both->flops, gemm);
  for (const Case* c : {copy, compute, both}) EXPECT_FALSE(c->target) << c->name();
  std::vector<DerivedBenchmark> b(3);
  const double secs[3] = {0.004, 0.010, 0.011};  // copy, compute, both: 3 ms of the copy hidden
  const char* parts[3] = {"copy", "compute", "both"};
  for (int i = 0; i < 3; ++i) {
    b[size_t(i)].name = base + parts[i];
    b[size_t(i)].seconds = {secs[i]};
  }
  const auto rowsd = derive_engram_overlap(b);
  ASSERT_EQ(rowsd.size(), 1u);
  EXPECT_EQ(rowsd[0].backend, "cpu");
  EXPECT_EQ(rowsd[0].mode, "mmap_bf16");
  EXPECT_EQ(rowsd[0].tokens, 512);
  EXPECT_NEAR(rowsd[0].overlap, 0.75, 1e-12);
  EXPECT_NEAR(rowsd[0].hidden_fraction_of_copy, 0.75, 1e-12);
}

TEST(EngramBenchCases, CountersFollowThePublishedShapes) {
  // Lookup: 512 tokens x 16 rows x 64 values, 4 bytes in memory, 2 mapped (BF16).
  const Case* f = find("engram_lookup/v4/memory_f32,rows:1048576,tokens:512");
  const Case* b = find("engram_lookup/v4/mmap_bf16,rows:1048576,tokens:512");
  ASSERT_TRUE(f && b);
  EXPECT_EQ(f->bytes, 512.0 * 16 * 64 * 4);
  EXPECT_EQ(b->bytes, 512.0 * 16 * 64 * 2);
  EXPECT_EQ(f->flops, 0);
  EXPECT_FALSE(f->target) << "latency-bound gathers carry no streaming-read target";
  // The table is the memory: 16 tables of ~2^20 rows of 64 floats (4 GiB), half of it in BF16.
  EXPECT_GT(f->memory, 16.0 * (1 << 20) * 64 * 4);
  EXPECT_LT(f->memory, 1.01 * 16.0 * (1 << 20) * 64 * 4);
  // The float table of 2^22 rows per head (16 GiB) does not fit the limit: skipped, with the reason.
  const Case* big = find("engram_lookup/v4/memory_f32,rows:4194304,tokens:512");
  ASSERT_NE(big, nullptr);
  EXPECT_NE(big->skip.find("GiB"), std::string::npos) << big->skip;
  // Mix: FLOPs per token times the tokens.
  for (const auto& [m, D] : {std::pair<std::string, double>{"v4-flash", 4096}, {"v4-pro", 7168}}) {
    SCOPED_TRACE(m);
    const Case* d = find("engram_mix_decode/" + m + "/tokens:1");
    const Case* p = find("engram_mix_prefill/" + m + "/tokens:512");
    ASSERT_TRUE(d && p);
    EXPECT_NEAR(d->flops, layer_flops(D), kSumTol * d->flops);
    EXPECT_NEAR(p->flops, 512 * layer_flops(D), kSumTol * p->flops);
    // bytes: dense parameters + e [1024] + X in and Y out [4 D] + the Z history [9, 4 D] in and out
    const double hist = 2.0 * 9 * 4 * D;
    EXPECT_NEAR(d->bytes, 4 * (layer_dense(D) + 1024 + 2 * 4 * D + hist), kSumTol * d->bytes);
    EXPECT_NEAR(p->bytes, 4 * (layer_dense(D) + 512 * (1024 + 2 * 4 * D) + hist), kSumTol * p->bytes);
  }
}

// The mapped table is written to a temporary file that is unlinked as soon as it is mapped:
// the case runs, and no file of this process is left in the temporary directory.
TEST(EngramBenchCases, MappedTableRunsAndLeavesNoFile) {
  const Case* c = find("engram_lookup/v4/mmap_bf16,rows:1024,tokens:512");
  ASSERT_NE(c, nullptr);
  const std::string prefix = "dsv4-bench-engram-" + std::to_string(::getpid()) + "-";
  auto leftovers = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(std::filesystem::temp_directory_path()))
      n += e.path().filename().string().rfind(prefix, 0) == 0;
    return n;
  };
  {
    Step step = c->setup();
    EXPECT_EQ(leftovers(), 0) << "unlinked once mapped";
    EXPECT_NO_THROW(step());
  }
  EXPECT_EQ(leftovers(), 0);
}

// ---- analytic cost ---------------------------------------------------------------------------

ModelConfig flash_with(const std::string& layers) {
  ModelConfig c = config_preset("v4-flash");
  config_set_engram(c, "engram=" + layers);
  config_validate(c);
  return c;
}

TEST(EngramCost, LayerCostStateAndTables) {
  const ModelConfig c = flash_with("1,15");
  const EngramLayerCost l = engram_layer_cost(c);
  EXPECT_NEAR(l.flops, layer_flops(4096), kSumTol * l.flops);
  EXPECT_EQ(l.gathered_rows, 16);
  EXPECT_EQ(l.gathered, 1024);
  EXPECT_NEAR(l.dense, layer_dense(4096), kSumTol * l.dense);
  // 2 int32 ids + (K-1) N = 9 rows of S D = 16384 floats
  EXPECT_EQ(l.state_bytes, 2 * 4 + 9 * 16384 * 4);
  const EngramModelCost m = engram_model_cost(c);
  EXPECT_EQ(m.layers, 2);
  EXPECT_EQ(m.state_bytes, 2 * l.state_bytes);
  EXPECT_EQ(m.flops, 2 * l.flops);
  // 2 layers x 16 distinct primes >= 5 x 129280 = 646400, each below the next prime gap bound
  EXPECT_GT(m.table_rows, 32.0 * 646400);
  EXPECT_LT(m.table_rows, 32.0 * 647400);
  EXPECT_EQ(m.table_bytes, m.table_rows * 64 * 2);
}

TEST(EngramCost, OffIsBadInputNamingTheFlag) {
  try {
    engram_layer_cost(config_preset("v4-flash"));
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("engram"), std::string::npos) << e.what();
  }
}

TEST(EngramCost, EngramVsMoeAtTheSameBudget) {
  const ModelConfig c = flash_with("1");
  const auto rows = engram_vs_moe(c);
  ASSERT_EQ(rows.size(), 2u);
  const double D = 4096, expert = 3.0 * 2048 * D;
  // Budget of V4-Flash's MoE layer: router + 256 routed + 1 shared expert.
  const EngramVsMoe& a = rows[0];
  EXPECT_EQ(a.budget, "moe layer");
  const double P = 256 * D + 257 * expert;
  EXPECT_NEAR(a.budget_params, P, kSumTol * P);
  EXPECT_NEAR(a.moe_experts, 256, 1e-9);
  EXPECT_NEAR(a.moe.params, P, kSumTol * P);
  EXPECT_NEAR(a.engram.params, P, kSumTol * P) << "the Engram table fills the same budget";
  EXPECT_NEAR(a.engram_table_rows, (P - layer_dense(D)) / 64, kSumTol * P);
  const double moe_active = 256 * D + 7 * expert;  // router + top-6 + shared
  EXPECT_NEAR(a.moe.flops, 2 * moe_active, kSumTol * moe_active);
  EXPECT_NEAR(a.moe.values_read, moe_active, kSumTol * moe_active);
  EXPECT_NEAR(a.engram.flops, layer_flops(D), kSumTol * a.engram.flops);
  EXPECT_NEAR(a.engram.values_read, 1024 + layer_dense(D), kSumTol * a.engram.values_read);
  EXPECT_EQ(a.moe.bytes(), 2 * a.moe.values_read);  // BF16 on both sides
  // Budget of the Engram layer itself: the MoE of that size has fewer experts, the same top-k.
  const EngramVsMoe& b = rows[1];
  EXPECT_EQ(b.budget, "engram layer");
  EXPECT_NEAR(b.moe.params, b.budget_params, kSumTol * b.budget_params);
  EXPECT_NEAR(b.engram.params, b.budget_params, kSumTol * b.budget_params);
  EXPECT_GT(b.moe_experts, 6);
  EXPECT_LT(b.moe_experts, 256);
}

TEST(EngramCost, DecodeFlopsAddTheEngramLayersAndNothingElse) {
  const ModelConfig off = config_preset("v4-flash");
  const ModelConfig on = flash_with("1,15,30");
  const DecodeFlops a = decode_flops(off, 65536), b = decode_flops(on, 65536);
  EXPECT_EQ(a.engram, 0);
  EXPECT_NEAR(b.engram, 3 * layer_flops(4096), kSumTol * b.engram);
  EXPECT_EQ(b.linear, a.linear);
  EXPECT_EQ(b.attention, a.attention);
  EXPECT_NEAR(b.total() - a.total(), b.engram, kSumTol * b.total());
}

// ---- the measured comparison ------------------------------------------------------------------

boost::json::object run(const std::string& name, double ms) {
  return {{"name", name},      {"run_name", name},  {"run_type", "iteration"}, {"repetition_index", 0},
          {"real_time", ms},   {"cpu_time", ms},    {"time_unit", "ms"},        {"flops_per_iter", 1.0},
          {"bytes_per_iter", 1.0}, {"iterations", 10}};
}

TEST(EngramDerive, MeasuredComparisonSumsThePartsPerToken) {
  boost::json::array runs;
  runs.push_back(run("engram_hash/v4/tokens:512", 0.512));                                   // 1 us a token
  runs.push_back(run("engram_lookup/v4/memory_f32,rows:1024,tokens:512", 0.256));            // smaller table
  runs.push_back(run("engram_lookup/v4/mmap_bf16,rows:262144,tokens:512", 5.12));            // same size, mapped
  runs.push_back(run("engram_lookup/v4/memory_f32,rows:262144,tokens:512", 10.24));          // 20 us a token: used
  runs.push_back(run("engram_mix_decode/v4-flash/tokens:1", 9.0));
  runs.push_back(run("moe_decode/v4-flash/experts:16", 100.0));
  runs.push_back(run("engram_mix_decode/v4-pro/tokens:1", 1.0));  // no Pro MoE case: no Pro row
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  ASSERT_EQ(d.engram_vs_moe.size(), 1u);
  const EngramVsMoeRow& r = d.engram_vs_moe[0];
  EXPECT_EQ(r.model, "v4-flash");
  EXPECT_EQ(r.lookup, "engram_lookup/v4/memory_f32,rows:262144,tokens:512");
  EXPECT_NEAR(r.hash_seconds, 1e-6, 1e-15);
  EXPECT_NEAR(r.lookup_seconds, 20e-6, 1e-15);
  EXPECT_NEAR(r.mix_seconds, 9e-3, 1e-15);
  EXPECT_NEAR(r.engram_seconds, 9.021e-3, 1e-15);
  EXPECT_NEAR(r.measured, 0.1 / 9.021e-3, 1e-12);
  const double D = 4096, moe_active = 256 * D + 7 * 3.0 * 2048 * D;
  EXPECT_NEAR(r.analytic_flops, 2 * moe_active / layer_flops(D), 1e-9);
  EXPECT_NEAR(r.analytic_bytes, moe_active / (1024 + layer_dense(D)), 1e-9);
  const boost::json::object j = derived_json(d, {});
  ASSERT_EQ(j.at("engram_vs_moe").as_array().size(), 1u);
  EXPECT_EQ(j.at("engram_vs_moe").as_array()[0].as_object().at("lookup_case").as_string(), r.lookup);
  EXPECT_NE(derived_table(d).find("Engram layer vs the MoE layer"), std::string::npos);
}

TEST(EngramDerive, NoRowWhenAPartIsMissing) {
  boost::json::array runs;
  runs.push_back(run("engram_lookup/v4/memory_f32,rows:1024,tokens:512", 0.256));
  runs.push_back(run("engram_mix_decode/v4-flash/tokens:1", 9.0));
  runs.push_back(run("moe_decode/v4-flash/experts:16", 100.0));
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});  // no hash case
  EXPECT_TRUE(d.engram_vs_moe.empty());
  EXPECT_TRUE(derived_json(d, {}).at("engram_vs_moe").as_array().empty());
  EXPECT_EQ(derived_table(d).find("Engram layer vs"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::bench
