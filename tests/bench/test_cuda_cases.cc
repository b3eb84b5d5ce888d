// The GPU half of dsv4 bench (bench/cases_cuda.cc, bench/ceilings_cuda.h, bench/cuda_device.h,
// the backend-aware parts of bench/runner.cc and bench/derive.cc): a CUDA twin of every
// reference case of every op with a CUDA kernel when built with CUDA and none otherwise, twin
// counters equal to the reference's, shares against the GPU ceilings, and the no-device path
// (GPU cases and ceilings skipped with the reason, CPU cases still run; or, on a machine with
// a device, run). Setting up and timing every CUDA case on a device: tests/optimized/
// test_bench_cuda.cc (label gpu).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "bench/cases.h"
#include "bench/derive.h"
#if DSV4_BENCH_CUDA
#include "bench/ceilings_cuda.h"
#include "bench/cuda_device.h"
#endif

#ifndef DSV4_BINARY
// tests/dsv4_test_bench_cuda_cases -> cli/dsv4 in the same build tree.
inline std::string dsv4_binary_in_build_tree() {
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "cli" /
          "dsv4")
      .string();
}
#define DSV4_BINARY dsv4_binary_in_build_tree()
#endif
#include "tests/cli/cli_harness.h"

#ifndef DSV4_TEST_HAVE_CUDA
#error "tests/CMakeLists.txt defines DSV4_TEST_HAVE_CUDA (0 or 1) for this test"
#endif

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

bool is_ceiling(const Case& c) {
  return c.op.rfind("ceiling_", 0) == 0;
}

// The GPU-only cases (bench/cases_engram_cuda.cc): no reference twin.
bool is_gpu_only(const Case& c) {
  return c.op == "engram_lookup_cuda" || c.op == "engram_prefetch_cuda";
}

// The ops with a CUDA kernel: optimized/<op>.cuh with a reference twin reference/<op>.h
// (device.cuh and cuda_check.cuh are support headers, not ops). Read from the source tree so a
// new kernel without a bench twin fails here.
std::set<std::string> cuda_ops() {
  const std::filesystem::path root =
      std::filesystem::path(DSV4_TEST_DATA_DIR).parent_path().parent_path();
  std::set<std::string> ops;
  for (const auto& e : std::filesystem::directory_iterator(root / "optimized")) {
    if (e.path().extension() != ".cuh") continue;
    const std::string op = e.path().stem().string();
    if (std::filesystem::exists(root / "reference" / (op + ".h"))) ops.insert(op);
  }
  return ops;
}

// Reference case ops timed by the CUDA kernel of another name (bench/cases_cuda_attention.cc):
// case op -> kernel (optimized/<kernel>.cuh).
const std::map<std::string, std::string>& twinned_families() {
  static const std::map<std::string, std::string> m = {
      {"attention_csa_decode", "attention"},    {"attention_hca_decode", "attention"},
      {"attention_window_decode", "attention"}, {"attention_csa_prefill", "attention"},
      {"attention_hca_prefill", "attention"},   {"attention_window_prefill", "attention"},
      {"indexer_decode", "indexer"},            {"indexer_prefill", "indexer"},
      {"compressor_prefill", "compressor"}};
  return m;
}

// Whether the reference case op `op` must have a CUDA twin, given the kernels in optimized/.
bool needs_twin(const std::string& op, const std::set<std::string>& kernels) {
  if (kernels.count(op)) return true;
  const auto f = twinned_families().find(op);
  return f != twinned_families().end() && kernels.count(f->second);
}

TEST(BenchCudaCases, EveryCudaOpHasATwinOfEveryReferenceCaseWhenBuiltWithCuda) {
  const std::set<std::string> ops = cuda_ops();
  ASSERT_TRUE(ops.count("rmsnorm") && ops.count("hadamard"))
      << "the source tree's optimized/ was not found";
  int64_t twins = 0, cuda_cases = 0;
  for (const auto& c : cases()) {
    if (c.backend == Backend::cuda && !is_gpu_only(c)) ++cuda_cases;
    if (c.backend != Backend::cpu || !needs_twin(c.op, ops)) continue;
    const Case* t = find(c.op + kCudaOpSuffix + "/" + c.model + "/" + c.variant);
    if (DSV4_TEST_HAVE_CUDA) {
      EXPECT_NE(t, nullptr) << "no CUDA twin of " << c.name();
      twins += t != nullptr;
    } else {
      EXPECT_EQ(t, nullptr) << c.name() << " has a CUDA twin in a build without CUDA";
    }
  }
  if (DSV4_TEST_HAVE_CUDA) {
    EXPECT_GE(twins, 3 + 48 + 16 + 6)
        << "rmsnorm at two models, hadamard at one; attention 3 kinds x decode/prefill x 4 "
           "contexts x 2 models; indexer decode/prefill x 4 x 2; compressor prefill 3 x 2";
    EXPECT_NE(find("ceiling_copy/gpu/mib:1024"), nullptr);
    EXPECT_NE(find("ceiling_cublas/gpu/n:8192"), nullptr);
    EXPECT_EQ(cuda_cases, twins + 2) << "the twins and the two GPU ceilings, nothing else (but the GPU-only Engram cases)";
  } else {
    EXPECT_EQ(cuda_cases, 0);
  }
}

TEST(BenchCudaCases, TwinCountersEqualTheReferenceTwins) {
  for (const auto& c : cases()) {
    if (c.backend != Backend::cuda || is_ceiling(c) || is_gpu_only(c)) continue;
    SCOPED_TRACE(c.name());
    ASSERT_TRUE(c.op.ends_with(kCudaOpSuffix));
    const Case* r = find(c.op.substr(0, c.op.size() - std::string(kCudaOpSuffix).size()) + "/" +
                         c.model + "/" + c.variant);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->backend, Backend::cpu);
    EXPECT_EQ(c.flops, r->flops);  // exact: copied, never recomputed
    EXPECT_EQ(c.bytes, r->bytes);
    EXPECT_GT(c.bytes, 0);
    EXPECT_EQ(c.quick, r->quick);
    EXPECT_EQ(c.target, r->target);
  }
}

// The GPU twins of the decode path and prefill (docs/bench.md "GPU half"): CSA and HCA decode
// at every context and both V4 shapes, a prefill chunk, the indexer scan + top-k, the
// compressor prefill; a device-memory estimate on each; no attention_fp8 twin (the reference
// has no FP8-layout case to twin).
TEST(BenchCudaCases, AttentionIndexerAndCompressorTwinsAtTheRealShapes) {
  if (!DSV4_TEST_HAVE_CUDA) GTEST_SKIP() << "built without CUDA: no twins";
  for (const std::string model : {"v4-flash", "v4-pro"}) {
    for (int64_t L : kContexts) {
      const std::string ctx = "/" + model + "/" + ctx_variant(L);
      for (const std::string op : {"attention_csa_decode", "attention_hca_decode", "attention_window_decode",
                                   "attention_csa_prefill", "attention_hca_prefill", "indexer_decode",
                                   "indexer_prefill"}) {
        const Case* t = find(op + kCudaOpSuffix + ctx);
        ASSERT_NE(t, nullptr) << op << ctx;
        EXPECT_EQ(t->context, L);
        EXPECT_GT(t->device_memory, t->bytes) << t->name() << ": at least what one step reads";
        EXPECT_LT(t->device_memory, 16.0 * (1 << 30)) << t->name();
        EXPECT_TRUE(t->skip.empty()) << t->name() << ": " << t->skip;
      }
    }
    for (const std::string kind : {"csa", "csa_indexer", "hca"})
      EXPECT_NE(find("compressor_prefill_cuda/" + model + "/" + kind + ",tokens:" + std::to_string(kCompressorTokens)),
                nullptr)
          << model << " " << kind;
    EXPECT_EQ(find("compressor_decode_cuda/" + model + "/csa"), nullptr) << "the CUDA compressor is prefill only";
  }
  for (const auto& c : cases()) EXPECT_NE(c.op.rfind("attention_fp8", 0), 0u) << c.name();
}

// The GPU-only Engram cases (bench/cases_engram_cuda.cc): the lookup at three residencies x
// six table sizes, 512 tokens, bytes = the BF16 rows moved; the prefetch overlap's three parts
// per mode, with the GEMM's FLOPs only where the compute runs and the rows only where the copy
// runs (the derivation pairs them by name).
TEST(BenchCudaCases, EngramGpuCases) {
  int64_t n = 0;
  for (const auto& c : cases()) n += is_gpu_only(c);
  if (!DSV4_TEST_HAVE_CUDA) {
    EXPECT_EQ(n, 0) << "GPU-only cases in a build without CUDA";
    return;
  }
  EXPECT_EQ(n, 3 * 5 + 2 * 3);
  const double rows_512 = 512.0 * 16 * 64 * 2;  // tokens x slots x de x BF16
  for (const std::string where : {"device", "mapped", "staged"})
    for (int lr : {12, 14, 16, 18, 20}) {
      const Case* c = find("engram_lookup_cuda/v4/" + where + "_bf16,rows:" + std::to_string(int64_t(1) << lr) +
                           ",tokens:512");
      ASSERT_NE(c, nullptr) << where << " 2^" << lr;
      EXPECT_EQ(c->bytes, rows_512);
      EXPECT_EQ(c->flops, 0);
      EXPECT_FALSE(c->target);
      EXPECT_EQ(c->quick, lr == 16);
      EXPECT_TRUE(c->skip.empty()) << c->name() << ": " << c->skip;
      EXPECT_GT(c->device_memory, 0);
    }
  const double gemm = 2.0 * 8960 * 8960 * 8960;  // 2 n^3 = 2 x 4096 x (6 + 1) x 3 x 4096 x 2048, n to 128
  for (const std::string mode : {"staged", "mapped"}) {
    const std::string at = "engram_prefetch_cuda/v4-flash/" + mode + ",tokens:4096,part:";
    const Case *copy = find(at + "copy"), *comp = find(at + "compute"), *both = find(at + "both");
    ASSERT_TRUE(copy && comp && both) << mode;
    EXPECT_EQ(copy->bytes, 8.0 * rows_512);
    EXPECT_EQ(copy->flops, 0);
    EXPECT_EQ(comp->bytes, 0);
    EXPECT_EQ(comp->flops, gemm);
    EXPECT_EQ(both->bytes, copy->bytes);
    EXPECT_EQ(both->flops, comp->flops);
  }
}

TEST(BenchCudaCases, GpuCeilingCounters) {
  if (!DSV4_TEST_HAVE_CUDA) GTEST_SKIP() << "built without CUDA: no GPU ceilings";
  const Case* copy = find("ceiling_copy/gpu/mib:1024");
  const Case* gemm = find("ceiling_cublas/gpu/n:8192");
  ASSERT_TRUE(copy && gemm);
  EXPECT_EQ(copy->bytes, 2.0 * 1024 * 1024 * 1024) << "1 GiB read + 1 GiB written";
  EXPECT_EQ(copy->flops, 0);
  EXPECT_EQ(gemm->flops, 2.0 * 8192 * 8192 * 8192);
  EXPECT_EQ(gemm->bytes, 0);
  for (const Case* c : {copy, gemm}) {
    EXPECT_FALSE(c->target);
    EXPECT_TRUE(c->quick);
    EXPECT_EQ(c->backend, Backend::cuda);
  }
}

// Each case has exactly the set-up of its backend, and its backend can be read from its name
// alone (what bench/derive.cc does with bench.json from any build).
TEST(BenchCudaCases, BackendAndSetUpFollowTheName) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name());
    EXPECT_EQ(backend_of_name(c.name()), c.backend);
    if (c.backend == Backend::cuda) {
      EXPECT_TRUE(c.timed_setup && !c.setup);
      EXPECT_TRUE(bool(c.unavailable)) << "a CUDA case must say when it cannot run";
    } else {
      EXPECT_TRUE(c.setup && !c.timed_setup);
    }
  }
  EXPECT_EQ(backend_of_name("rmsnorm_cuda/v4-flash/rows:4096"), Backend::cuda);
  EXPECT_EQ(backend_of_name("ceiling_cublas/gpu/n:8192"), Backend::cuda);
  EXPECT_EQ(backend_of_name("ceiling_sgemm/cpu/n:1024"), Backend::cpu);
  EXPECT_EQ(backend_of_name("rmsnorm/v4-flash/rows:4096"), Backend::cpu);
  EXPECT_EQ(backend_of_name("_cuda/v4/x"), Backend::cpu) << "the suffix alone is no op name";
}

#if DSV4_BENCH_CUDA
// cuBLAS is opened at run time (bench/ceilings_cuda.cc), not linked. Without a device the
// GEMM ceiling must still find the library and its symbols, and fail only at the first
// allocation; with one it sets up and runs.
TEST(BenchCudaCases, CublasCeilingOpensCublasAtRunTime) {
  if (cuda_unavailable().empty()) {
    CublasCeiling c(256);
    DeviceTimer timer;
    EXPECT_GT(timer.seconds([&](cudaStream_t s) { c.step(s); }), 0);
    return;
  }
  try {
    CublasCeiling c(256);
    ADD_FAILURE() << "set up without a device";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find("cannot open cuBLAS"), std::string::npos) << what;
    EXPECT_EQ(what.find("has no symbol"), std::string::npos) << what;
    EXPECT_NE(what.find("cudaMalloc"), std::string::npos) << what;
  }
}
#endif

// ---- derive ----------------------------------------------------------------------------

boost::json::object run(const std::string& name, double ms, double flops, double bytes,
                        int64_t rep) {
  return {{"name", name},
          {"run_name", name},
          {"run_type", "iteration"},
          {"repetition_index", rep},
          {"real_time", ms},
          {"cpu_time", ms},
          {"time_unit", "ms"},
          {"flops_per_iter", flops},
          {"bytes_per_iter", bytes},
          {"iterations", 10}};
}

TEST(BenchCudaDerive, CudaSharesUseTheGpuCeilingsAndCpuSharesTheCpuOnes) {
  boost::json::array runs;
  // CPU: SGEMM 1e11 FLOP/s, read 2e10 B/s. GPU: copy 2e9 B in 0.5 ms = 4e12 B/s;
  // cuBLAS 1e12 FLOPs in 1.25 ms = 8e14 FLOP/s. Device runs carry Google Benchmark's
  // "/manual_time" suffix.
  runs.push_back(run("ceiling_sgemm/cpu/n:1024", 20, 2e9, 0, 0));
  runs.push_back(run("ceiling_read/cpu/mib:256", 10, 0, 2e8, 0));
  runs.push_back(run("ceiling_copy/gpu/mib:1024/manual_time", 0.5, 0, 2e9, 0));
  runs.push_back(run("ceiling_cublas/gpu/n:8192/manual_time", 1.25, 1e12, 0, 0));
  // memory-bound on both: 1e8 bytes, 1e6 FLOPs. CPU: 5 ms at the ceiling, 10 ms -> 0.5.
  // GPU: 25 us at the ceiling; 28.5714.. us -> 0.875 (met, >= 0.8); 40 us -> 0.625 (not met).
  runs.push_back(run("rmsnorm/v4-flash/rows:4096", 10, 1e6, 1e8, 0));
  runs.push_back(run("rmsnorm_cuda/v4-flash/rows:4096/manual_time", 0.025 / 0.875, 1e6, 1e8, 0));
  runs.push_back(run("hadamard_cuda/v4/rows:131072/manual_time", 0.040, 1e6, 1e8, 0));
  // compute-bound on the GPU: 8e11 FLOPs = 1 ms at the ceiling; 1.5 ms -> 0.667 (>= 0.6: met)
  runs.push_back(run("made_up_cuda/v4/x/manual_time", 1.5, 8e11, 1e6, 0));
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  EXPECT_DOUBLE_EQ(d.copy_bytes_per_s, 4e12);
  EXPECT_DOUBLE_EQ(d.cublas_flops_per_s, 8e14);
  EXPECT_DOUBLE_EQ(d.sgemm_flops_per_s, 1e11) << "the GPU ceilings leave the CPU ones alone";
  EXPECT_DOUBLE_EQ(d.read_bytes_per_s, 2e10);
  std::map<std::string, const DerivedBenchmark*> by;
  for (const auto& b : d.benchmarks) by[b.name] = &b;
  ASSERT_EQ(by.size(), 8u);
  ASSERT_TRUE(by.count("rmsnorm_cuda/v4-flash/rows:4096")) << "the manual_time suffix is dropped";
  const auto& cpu = *by.at("rmsnorm/v4-flash/rows:4096");
  EXPECT_EQ(cpu.backend, "cpu");
  EXPECT_DOUBLE_EQ(cpu.roofline_share.at(0), 0.5);
  EXPECT_DOUBLE_EQ(target_share(cpu), kTargetShare);
  const auto& gpu = *by.at("rmsnorm_cuda/v4-flash/rows:4096");
  EXPECT_EQ(gpu.backend, "cuda");
  EXPECT_EQ(gpu.bound, "memory");
  EXPECT_NEAR(gpu.roofline_share.at(0), 0.875, 1e-12);
  EXPECT_TRUE(gpu.roofline_share_cpu.empty()) << "device time has no CPU-time share";
  EXPECT_DOUBLE_EQ(target_share(gpu), kCudaMemoryTargetShare);
  const auto& slow = *by.at("hadamard_cuda/v4/rows:131072");
  EXPECT_NEAR(slow.roofline_share.at(0), 0.625, 1e-12);
  const auto& comp = *by.at("made_up_cuda/v4/x");
  EXPECT_EQ(comp.bound, "compute");
  EXPECT_NEAR(comp.roofline_share.at(0), 1.0 / 1.5, 1e-12);
  EXPECT_DOUBLE_EQ(target_share(comp), kCudaComputeTargetShare);

  const auto j = derived_json(d, {});
  EXPECT_DOUBLE_EQ(j.at("ceilings").at("copy_bytes_per_s").to_number<double>(), 4e12);
  EXPECT_DOUBLE_EQ(j.at("ceilings").at("cublas_bf16_flops_per_s").to_number<double>(), 8e14);
  std::map<std::string, boost::json::object> rows;
  for (const auto& v : j.at("benchmarks").as_array())
    rows[std::string(v.at("name").as_string())] = v.as_object();
  EXPECT_EQ(rows.at("rmsnorm_cuda/v4-flash/rows:4096").at("backend").as_string(), "cuda");
  EXPECT_TRUE(rows.at("rmsnorm_cuda/v4-flash/rows:4096").at("target_met").as_bool());
  EXPECT_FALSE(rows.at("hadamard_cuda/v4/rows:131072").at("target_met").as_bool());
  EXPECT_DOUBLE_EQ(
      rows.at("rmsnorm_cuda/v4-flash/rows:4096").at("target_share").to_number<double>(), 0.8);
  EXPECT_EQ(rows.at("rmsnorm/v4-flash/rows:4096").at("backend").as_string(), "cpu");
  EXPECT_FALSE(rows.at("rmsnorm/v4-flash/rows:4096").at("target_met").as_bool());
  EXPECT_NE(derived_table(d).find("GPU ceilings"), std::string::npos);
}

TEST(BenchCudaDerive, CudaCasesWithoutGpuCeilingsHaveNoShare) {
  boost::json::array runs;
  runs.push_back(run("ceiling_sgemm/cpu/n:1024", 20, 2e9, 0, 0));
  runs.push_back(run("ceiling_read/cpu/mib:256", 10, 0, 2e8, 0));
  runs.push_back(run("rmsnorm_cuda/v4-flash/rows:4096/manual_time", 0.03, 1e6, 1e8, 0));
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  ASSERT_EQ(d.benchmarks.size(), 3u);
  EXPECT_TRUE(d.benchmarks[2].roofline_share.empty()) << "never judged against the CPU ceilings";
  EXPECT_FALSE(
      derived_json(d, {}).at("benchmarks").as_array()[2].as_object().contains("target_met"));
}

// ---- the command without (or with) a device ---------------------------------------------

std::string dsv4_binary() {
  return DSV4_BINARY;
}

// What a run on this machine must show for the CUDA cases: skipped with "no CUDA device: ..."
// when none is usable (this machine has the toolkit but no GPU), measured when one is.
TEST(BenchCudaCommand, GpuCasesAreSkippedWithTheReasonWithoutADeviceAndCpuCasesRun) {
  ASSERT_TRUE(std::filesystem::exists(dsv4_binary()))
      << dsv4_binary() << " (build the dsv4 target)";
  test::TempDir tmp;
  const std::string out = tmp.file("bench");
  const auto r = test::run_dsv4("bench --filter rmsnorm --quick --out " + out, tmp);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto derived = boost::json::parse(test::slurp(out + "/bench_derived.json")).as_object();
  std::map<std::string, std::string> skipped;
  for (const auto& v : derived.at("skipped").as_array())
    skipped[std::string(v.at("name").as_string())] = std::string(v.at("reason").as_string());
  std::map<std::string, boost::json::object> ran;
  for (const auto& v : derived.at("benchmarks").as_array())
    ran[std::string(v.at("name").as_string())] = v.as_object();
  EXPECT_TRUE(derived.at("errors").as_array().empty()) << r.out;
  // The CPU case and its ceilings ran, with a share.
  ASSERT_TRUE(ran.count("rmsnorm/v4-flash/rows:4096")) << r.out;
  EXPECT_GT(ran.at("rmsnorm/v4-flash/rows:4096")
                .at("roofline_share")
                .as_array()
                .at(0)
                .to_number<double>(),
            0);
  EXPECT_TRUE(ran.count("ceiling_sgemm/cpu/n:1024") && ran.count("ceiling_read/cpu/mib:256"));
  const std::vector<std::string> gpu = {"rmsnorm_cuda/v4-flash/rows:4096",
                                        "ceiling_copy/gpu/mib:1024", "ceiling_cublas/gpu/n:8192"};
#if DSV4_BENCH_CUDA
  const std::string why = cuda_unavailable();
  for (const auto& name : gpu) {
    SCOPED_TRACE(name);
    if (!why.empty()) {
      ASSERT_TRUE(skipped.count(name)) << r.out;
      EXPECT_EQ(skipped.at(name), why);
      EXPECT_EQ(skipped.at(name).rfind("no CUDA device: ", 0), 0u) << skipped.at(name);
      EXPECT_FALSE(ran.count(name));
      EXPECT_NE(r.out.find("skipped " + name + ": no CUDA device"), std::string::npos) << r.out;
    } else {
      EXPECT_FALSE(skipped.count(name));
      ASSERT_TRUE(ran.count(name)) << r.out;
      EXPECT_EQ(ran.at(name).at("backend").as_string(), "cuda");
    }
  }
  if (why.empty()) {
    EXPECT_GT(ran.at(gpu[0]).at("roofline_share").as_array().at(0).to_number<double>(), 0);
  }
#else
  for (const auto& name : gpu) EXPECT_FALSE(skipped.count(name) || ran.count(name)) << name;
#endif
  EXPECT_FALSE(ran.count("rmsnorm/v4-pro/rows:4096")) << "not in --quick";
}

// The GPU check's own filter (scripts/gpu-check): without a device every chosen case is
// skipped and the run still succeeds, with an empty benchmark list (the CPU ceilings do not
// run: no CPU case is chosen). In a build without CUDA the filter matches no case, and then,
// as for any such filter, the CPU ceilings run alone.
TEST(BenchCudaCommand, OnlyGpuCasesChosen) {
  ASSERT_TRUE(std::filesystem::exists(dsv4_binary()))
      << dsv4_binary() << " (build the dsv4 target)";
  test::TempDir tmp;
  const std::string out = tmp.file("bench");
  const auto r =
      test::run_dsv4("bench --quick --filter '_cuda|ceiling_(copy|cublas)' --out " + out, tmp);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto derived = boost::json::parse(test::slurp(out + "/bench_derived.json")).as_object();
  std::set<std::string> ran;
  for (const auto& v : derived.at("benchmarks").as_array())
    ran.insert(std::string(v.at("name").as_string()));
  const size_t skipped = derived.at("skipped").as_array().size();
#if DSV4_BENCH_CUDA
  std::set<std::string> quick_gpu;  // what --quick chooses with this filter: the quick CUDA cases
  for (const auto& c : cases())
    if (c.backend == Backend::cuda && c.quick) quick_gpu.insert(c.name());
  EXPECT_TRUE(quick_gpu.count("rmsnorm_cuda/v4-flash/rows:4096") &&
              quick_gpu.count("attention_csa_decode_cuda/v4-flash/ctx:4096") &&
              quick_gpu.count("ceiling_copy/gpu/mib:1024"));
  if (!cuda_unavailable().empty()) {
    EXPECT_TRUE(ran.empty()) << r.out;
    EXPECT_EQ(skipped, quick_gpu.size()) << "every quick CUDA case and the two GPU ceilings: " << r.out;
  } else {
    EXPECT_EQ(ran, quick_gpu) << r.out;
    EXPECT_EQ(skipped, 0u) << r.out;
  }
#else
  EXPECT_EQ(ran, (std::set<std::string>{"ceiling_sgemm/cpu/n:1024", "ceiling_read/cpu/mib:256"}))
      << r.out;
  EXPECT_EQ(skipped, 0u) << r.out;
#endif
}

// --min-time: seconds of (device, for CUDA cases) time per repetition; negative refused
// before anything runs.
TEST(BenchCudaCommand, MinTimeOption) {
  ASSERT_TRUE(std::filesystem::exists(dsv4_binary()))
      << dsv4_binary() << " (build the dsv4 target)";
  test::TempDir tmp;
  const auto bad = test::run_dsv4("bench --filter rmsnorm/v4-flash --min-time -1 --out " + tmp.file("b"), tmp);
  EXPECT_EQ(bad.status, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("--min-time must be >= 0"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("b") + "/bench.json"));
  const auto ok = test::run_dsv4("bench --filter 'rmsnorm/v4-flash' --min-time 0.01 --out " + tmp.file("c"), tmp);
  ASSERT_EQ(ok.status, 0) << ok.out << ok.err;
  const auto derived = boost::json::parse(test::slurp(tmp.file("c") + "/bench_derived.json")).as_object();
  bool ran = false;
  for (const auto& v : derived.at("benchmarks").as_array())
    ran = ran || v.at("name").as_string() == "rmsnorm/v4-flash/rows:4096";
  EXPECT_TRUE(ran) << ok.out;
}

// The overlap rows from the three parts' medians; a mode missing a part gives no row.
TEST(BenchCudaDerive, EngramOverlapFromTheThreeParts) {
  auto bench = [](double copy_ms, double comp_ms, double both_ms, bool with_both) {
    boost::json::array runs;
    const std::string at = "engram_prefetch_cuda/v4-flash/staged,tokens:4096,part:";
    runs.push_back(boost::json::object{{"name", at + "copy/manual_time"}, {"run_type", "iteration"},
                                       {"real_time", copy_ms}, {"cpu_time", copy_ms}, {"time_unit", "ms"},
                                       {"flops_per_iter", 0.0}, {"bytes_per_iter", 1e6}});
    runs.push_back(boost::json::object{{"name", at + "compute/manual_time"}, {"run_type", "iteration"},
                                       {"real_time", comp_ms}, {"cpu_time", comp_ms}, {"time_unit", "ms"},
                                       {"flops_per_iter", 1e12}, {"bytes_per_iter", 0.0}});
    if (with_both)
      runs.push_back(boost::json::object{{"name", at + "both/manual_time"}, {"run_type", "iteration"},
                                         {"real_time", both_ms}, {"cpu_time", both_ms}, {"time_unit", "ms"},
                                         {"flops_per_iter", 1e12}, {"bytes_per_iter", 1e6}});
    return boost::json::value(boost::json::object{{"benchmarks", runs}});
  };
  // copy 1 ms, compute 3 ms, both 3.25 ms: 0.75 ms of the copy hidden.
  const Derived d = derive(bench(1.0, 3.0, 3.25, true));
  ASSERT_EQ(d.engram_overlap.size(), 1u);
  const EngramOverlapRow& r = d.engram_overlap.front();
  EXPECT_EQ(r.model, "v4-flash");
  EXPECT_EQ(r.mode, "staged");
  EXPECT_EQ(r.tokens, 4096);
  EXPECT_NEAR(r.overlap, 0.75, 1e-12);
  EXPECT_NEAR(r.hidden_fraction_of_copy, 0.75, 1e-12);
  // copy 4 ms, compute 2 ms, serial (6 ms): nothing hidden; both = max: the compute fully hidden.
  EXPECT_NEAR(derive(bench(4.0, 2.0, 6.0, true)).engram_overlap.front().overlap, 0.0, 1e-12);
  const EngramOverlapRow full = derive(bench(4.0, 2.0, 4.0, true)).engram_overlap.front();
  EXPECT_NEAR(full.overlap, 1.0, 1e-12);
  EXPECT_NEAR(full.hidden_fraction_of_copy, 0.5, 1e-12);
  EXPECT_TRUE(derive(bench(1.0, 3.0, 3.25, false)).engram_overlap.empty());
  const boost::json::object j = derived_json(d, {});
  EXPECT_NEAR(j.at("engram_overlap").as_array().at(0).at("overlap").as_double(), 0.75, 1e-12);
  EXPECT_NE(derived_table(d).find("Engram prefetch overlap"), std::string::npos);
}

// The GPU lookup rows: per-token time = median / tokens, GB/s = the rows moved / median; other
// benchmarks give no row.
TEST(BenchCudaDerive, EngramLookupPerToken) {
  boost::json::array runs;
  runs.push_back(run("engram_lookup_cuda/v4/staged_bf16,rows:65536,tokens:512/manual_time", 0.512, 0, 1048576.0, 0));
  runs.push_back(run("engram_lookup_cuda/v4/staged_bf16,rows:65536,tokens:512/manual_time", 0.256, 0, 1048576.0, 1));
  runs.push_back(run("engram_lookup_cuda/v4/staged_bf16,rows:65536,tokens:512/manual_time", 1.024, 0, 1048576.0, 2));
  runs.push_back(run("engram_lookup/v4/memory_f32,rows:65536,tokens:512", 0.7, 0, 2097152.0, 0));
  const Derived d = derive(boost::json::object{{"benchmarks", runs}});
  ASSERT_EQ(d.engram_lookup_gpu.size(), 1u);
  const EngramLookupGpuRow& r = d.engram_lookup_gpu.front();
  EXPECT_EQ(r.where, "staged");
  EXPECT_EQ(r.rows, 65536);
  EXPECT_EQ(r.tokens, 512);
  EXPECT_NEAR(r.seconds_per_token, 0.512e-3 / 512, 1e-15) << "the median of the three repetitions, per token";
  EXPECT_NEAR(r.rows_bytes_per_s, 1048576.0 / 0.512e-3, 1e-3);
  EXPECT_EQ(derived_json(d, {}).at("engram_lookup_cuda").as_array().size(), 1u);
  EXPECT_NE(derived_table(d).find("Engram lookup on the GPU per token"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::bench
