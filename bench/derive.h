// From Google Benchmark's JSON (bench.json) to the derived, machine-independent numbers of
// bench_derived.json and the printed table. Conventions: bench/cases.h (counting),
// docs/bench.md (files).
//
//   ceilings        sgemm_flops_per_s = flops_per_iter / seconds of ceiling_sgemm, the median of
//                   all its samples: dsv4 bench runs each ceiling at the start and again at the
//                   end, so one busy moment of a shared machine does not set every share (the
//                   median rather than the best: it does not grow with the sample count, and the
//                   kernels are judged by their medians too); read_bytes_per_s likewise
//   roofline_share  per repetition: max(flops_per_iter / sgemm, bytes_per_iter / read) / seconds
//                   for CPU cases; CUDA cases (<op>_cuda/..., bench/cases.h) use the GPU
//                   ceilings measured in the same run instead: copy_bytes_per_s (ceiling_copy,
//                   read + write) and cublas_flops_per_s (ceiling_cublas, BF16), medians as above
//   targets         CPU: share >= 0.75; CUDA: >= 0.80 when memory-bound, >= 0.60 when
//                   compute-bound (shared/docs/targets.md "CUDA on H200")
//   speedups        per context L and V4 model, the same run's time of the attention core and
//                   indexer path of every layer of one decode step (medians):
//                     V4   = n_CSA (indexer_query_decode + indexer_decode + attention_csa_decode)
//                          + n_HCA attention_hca_decode + n_window attention_window_decode
//                     V3.2 = 61 (dsa_indexer_query_decode + dsa_indexer_decode + mla_sparse_decode)
//                     V3   = 61 mla_dense_decode
//                   measured = t(predecessor) / t(V4); analytic = the FLOPs ratio of the same
//                   parts from bench/flops.h (attention + indexer terms of decode_flops);
//                   analytic_bytes = the ratio of the same parts' bytes_per_iter sums;
//                   ratio = measured / analytic.
// "seconds" is Google Benchmark's real_time (wall clock) per iteration; "cpu_seconds" its
// cpu_time (the process's CPU time): with one thread it does not grow when another process
// takes turns on the same core, so roofline_share_cpu (the CI perf check's metric) is steady
// on a busy machine where the wall-clock share is not. For CUDA cases "seconds" is the device
// time from CUDA events (manual time; the run is named "<name>/manual_time" in bench.json and
// the suffix is dropped here), and they have no CPU-time share (roofline_share_cpu is empty).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsv4::bench {

struct DerivedBenchmark {
  std::string name;
  std::vector<double> seconds;         // per repetition
  std::vector<double> roofline_share;  // per repetition (empty without ceilings)
  std::vector<double> cpu_seconds;     // per repetition: CPU time of the process per iteration
  std::vector<double> roofline_share_cpu;  // the share from CPU times (ceilings from CPU times too)
  double flops_per_iter = 0, bytes_per_iter = 0;
  std::string bound;  // "compute" or "memory": the larger term of the roofline time
  std::string backend = "cpu";  // "cpu" or "cuda" (bench/cases.h backend_of_name)
  bool target = true;  // judged against target_share(*this)
  double median_seconds() const;
  double median_share() const;  // -1 without ceilings
};

struct Speedup {
  int64_t context = 0;
  std::string model, versus;
  double measured = 0, analytic = 0, analytic_bytes = 0, ratio = 0;
  // Per repetition r: the same sums over the r-th repetition of every part (repetitions of
  // one benchmark are independent samples, so pairing them by index gives independent
  // samples of the ratio); from wall-clock and from CPU times. Empty when the parts have
  // different repetition counts.
  std::vector<double> measured_per_repetition, measured_cpu_per_repetition;
};

// An Engram layer against the MoE layer it would replace at the same parameter budget, per
// decode token, from the same run (bench/derive_engram.cc; analytic side: bench/engram_cost.h
// at the budget of the model's MoE layer):
//   engram = engram_hash/v4/tokens:T / T + engram_lookup/v4/<largest table run>/ T
//            + engram_mix_decode/<model>/tokens:1          (the memory_f32 table when run)
//   moe    = moe_decode/<model>/experts:16 (router over 16 experts, top-k + shared of the real
//            width: the same values read per token as the full layer but 2 (n_routed - 16) D
//            router FLOPs, < 1 %)
//   measured = moe / engram; analytic_flops, analytic_bytes = the MoE / Engram ratios of FLOPs
//   and values read per token at that budget.
struct EngramVsMoeRow {
  std::string model, lookup;  // the model (v4-flash, v4-pro) and the lookup case used
  double hash_seconds = 0, lookup_seconds = 0, mix_seconds = 0;  // per token, medians
  double engram_seconds = 0, moe_seconds = 0;
  double measured = 0, analytic_flops = 0, analytic_bytes = 0;
};

// The Engram prefetch overlap, from the medians of the three parts of the same run:
// engram_prefetch_cuda/<model>/<mode>,tokens:T,part:{copy,compute,both} (GPU,
// bench/cases_engram_cuda.cc) and engram_prefetch/<model>/mmap_bf16,rows:R,tokens:T,part:...
// (CPU, bench/cases_engram.cc):
//   overlap = (t_copy + t_compute - t_both) / min(t_copy, t_compute)   (1: the shorter is hidden)
//   hidden_fraction_of_copy = (t_copy + t_compute - t_both) / t_copy
struct EngramOverlapRow {
  std::string backend;      // cpu (engram_prefetch/...) or gpu (engram_prefetch_cuda/...)
  std::string model, mode;  // mode: staged or mapped (gpu), mmap_bf16 (cpu)
  int64_t tokens = 0;
  double copy_seconds = 0, compute_seconds = 0, both_seconds = 0;
  double overlap = 0, hidden_fraction_of_copy = 0;
};

// The GPU Engram lookup per token (bench/cases_engram_cuda.cc), one row per case
// engram_lookup_cuda/v4/<where>_bf16,rows:R,tokens:T that ran: seconds_per_token = median / T;
// rows_bytes_per_s = the BF16 rows moved (bytes_per_iter) / median.
struct EngramLookupGpuRow {
  std::string where;  // device, mapped, staged
  int64_t rows = 0, tokens = 0;  // R (rows per head), T
  double seconds_per_token = 0, rows_bytes_per_s = 0;
};

struct Derived {
  double sgemm_flops_per_s = 0, read_bytes_per_s = 0;  // 0: not measured
  double sgemm_flops_per_cpu_s = 0, read_bytes_per_cpu_s = 0;  // the same from CPU times
  double copy_bytes_per_s = 0, cublas_flops_per_s = 0;  // GPU ceilings (device time); 0: not measured
  std::vector<DerivedBenchmark> benchmarks;            // in the order of bench.json
  std::vector<Speedup> speedups;
  std::vector<EngramVsMoeRow> engram_vs_moe;           // models whose parts all ran
  std::vector<EngramOverlapRow> engram_overlap;        // modes whose three parts all ran
  std::vector<EngramLookupGpuRow> engram_lookup_gpu;   // the GPU lookup cases that ran
  std::map<std::string, std::string> errors;           // benchmarks that failed: message
};

inline constexpr double kTargetShare = 0.75;  // targets.md: >= 75 % of the same-run ceiling
inline constexpr double kCudaMemoryTargetShare = 0.80;   // targets.md: memory-bound CUDA, of the copy rate
inline constexpr double kCudaComputeTargetShare = 0.60;  // targets.md: compute-bound CUDA, of the cuBLAS rate

// The share a benchmark must reach: kTargetShare on the CPU; on the GPU by its bound.
double target_share(const DerivedBenchmark& b);

// Parses Google Benchmark's JSON text. Its writer prints non-finite counters (the cv of a
// counter that is 0, e.g. the SGEMM ceiling's bytes) as bare NaN / Infinity, which is not
// JSON; those values are read as null. Throws on anything else that is not JSON.
boost::json::value parse_benchmark_json(const std::string& text);

// `bench` is Google Benchmark's JSON output. Target flags come from the case list.
Derived derive(const boost::json::value& bench);

// The rows of every model whose parts are among `b` (bench/derive_engram.cc), their JSON
// (bench_derived.json "engram_vs_moe") and their table.
std::vector<EngramVsMoeRow> derive_engram_vs_moe(const std::vector<DerivedBenchmark>& b);
boost::json::array engram_vs_moe_json(const std::vector<EngramVsMoeRow>& rows);
std::string engram_vs_moe_table(const std::vector<EngramVsMoeRow>& rows);
// The overlap rows of every (model, mode, tokens) whose three parts are among `b` with positive
// medians, their JSON (bench_derived.json "engram_overlap") and their table.
std::vector<EngramOverlapRow> derive_engram_overlap(const std::vector<DerivedBenchmark>& b);
boost::json::array engram_overlap_json(const std::vector<EngramOverlapRow>& rows);
std::string engram_overlap_table(const std::vector<EngramOverlapRow>& rows);
// The GPU lookup rows (in the order of `b`), their JSON (bench_derived.json
// "engram_lookup_cuda") and their table.
std::vector<EngramLookupGpuRow> derive_engram_lookup_gpu(const std::vector<DerivedBenchmark>& b);
boost::json::array engram_lookup_gpu_json(const std::vector<EngramLookupGpuRow>& rows);
std::string engram_lookup_gpu_table(const std::vector<EngramLookupGpuRow>& rows);

// bench_derived.json ("kind": "dsv4.bench"). `skipped`: name -> reason, listed as such.
boost::json::object derived_json(const Derived& d, const std::map<std::string, std::string>& skipped);

// The human-readable table (every benchmark, then the speedups).
// (Re-deriving an existing run: dsv4 bench --rederive DIR, bench/runner.h.)
std::string derived_table(const Derived& d);

}  // namespace dsv4::bench
