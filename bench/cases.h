// The one case list of the microbenchmarks: every op x model x case, with the work each
// iteration does (FLOPs, bytes), the memory its set-up needs, and the set-up itself.
// `dsv4 bench` registers these with Google Benchmark (bench/runner.h); tests/bench checks
// the list (coverage, counters, consistency with bench/flops.h).
//
// Names: <op>/<model>/<case>, e.g. attention_csa_decode/v4-flash/ctx:131072,
// indexer_decode/v4-pro/ctx:1048576, mla_dense_decode/v3/ctx:32768, ceiling_sgemm/cpu/n:1024.
// Models: v4-flash, v4-pro, v3.2, v3 (real shapes, model/config.h presets); v4 for ops whose
// shapes are the same in Flash and Pro; cpu / gpu for the ceilings. Cases: ctx:L (a decode step,
// or the last prefill chunk, at context L), tokens:T (context-independent ops over T tokens),
// rows:R (elementwise ops over R rows), experts:E, csa / csa_indexer / hca (compressors).
//
// Counting (per iteration; multiply-add = 2 FLOPs; the reference's storage is float, so an
// element is 4 bytes):
//   attention (V4 and MLA), the FlashMLA convention:
//     FLOPs = 2 * heads * attended * (d_qk + d_v)      summed over query rows
//     bytes = unique entries read * entry bytes + Q + O
//     V4: d_qk = d_v = 512 (K = V, the window entries and the compressed ones); MLA:
//     d_qk = 576 (latent 512 + RoPE 64), d_v = 512.
//   indexer scores + top-k: FLOPs = keys * (2 HI dI + 2 HI) per query row (bench/flops.h);
//     bytes = keys * dI * 4 + the queries, head weights and indices.
//   projections (query path, window KV, compressor, indexer query, output, MoE experts):
//     FLOPs = 2 * matrix elements * tokens (+ 4 per pooled value in the compressor, as
//     bench/flops.h); bytes = matrix elements * 4 + activations in and out.
//   mHC: FLOPs of the mixes GEMV/GEMM, the stream reduction and the post-mix; bytes = Phi,
//     the residual streams in and out, u and f. Sinkhorn's 4x4 work is not counted.
//   elementwise (rmsnorm, rope, hadamard, quant_fp8, quant_fp4): bytes = values read +
//     values written (rope: only the 64 rotated dims); FLOPs as noted at each case; the
//     FP8/FP4 format conversions count 0 FLOPs.
//   whole-layer decode step: 2 * matrix elements + indexer + attention + pooling FLOPs;
//     bytes = weights + indexer keys + attended entries.
// Norms, RoPE, softmax and top-k are not counted where an op contains them (as flops.h).
//
// Roofline share (computed by dsv4 bench from the same run's ceilings of the case's backend):
//   CPU:  max(flops / sgemm_rate, bytes / read_rate) / seconds
//   CUDA: max(flops / cublas_bf16_rate, bytes / copy_rate) / seconds (seconds from CUDA events)
// Targets (targets.md): CPU >= 0.75 for every op with `target` set; CUDA >= 0.80 when
// memory-bound, >= 0.60 when compute-bound (bench/derive.h). The whole-layer steps mix a
// memory-bound half (weights) and a
// compute-bound half (indexer, attention) run one after the other, so max() caps their share
// near max/(sum) and they carry no target.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bench/setup.h"

namespace dsv4::bench {

inline constexpr int64_t kContexts[] = {4096, 32768, 131072, 1048576};
inline constexpr int64_t kPrefillChunk = 64;        // query rows of a prefill-attention case
inline constexpr int64_t kIndexerPrefillChunk = 16;  // query rows of an indexer-prefill case
inline constexpr int64_t kProjectionTokens = 256;   // tokens of a projection-prefill case (the model prefills 512 a chunk)
inline constexpr int64_t kCompressorTokens = 256;   // tokens of a compressor-prefill case
inline constexpr int64_t kMoeBenchExperts = 16;     // experts allocated by the MoE cases
inline constexpr int64_t kMoePrefillTokens = 16;
inline constexpr double kMemoryLimit = 16.0 * 1024 * 1024 * 1024;  // bytes; larger cases are skipped

// Where a case runs. CUDA cases (built only when nvcc is found: bench/cases_cuda.cc) are the
// twins of reference cases, named <op>_cuda/<model>/<case> with the twin's model, case and
// counters; their ceilings are ceiling_copy/gpu/... and ceiling_cublas/gpu/... . The backend
// is readable from the name alone (backend_of_name), so that bench.json from any build derives.
enum class Backend { cpu, cuda };
inline constexpr const char* kCudaOpSuffix = "_cuda";
inline constexpr const char* kGpuCeilingModel = "gpu";
Backend backend_of_name(const std::string& name);  // <op>_cuda/... or ceiling_*/gpu/...: cuda
const char* backend_string(Backend b);             // "cpu", "cuda"

// One timed iteration that measures itself (device work: CUDA events around it) and returns
// its seconds; Google Benchmark takes them as manual time.
using TimedStep = std::function<double()>;

struct Case {
  std::string op, model, variant;
  int64_t context = 0;   // tokens of context (0: none)
  double flops = 0;      // per iteration
  double bytes = 0;      // per iteration
  double memory = 0;     // bytes the set-up allocates on the host (estimate)
  double device_memory = 0;  // bytes the set-up allocates on the GPU (CUDA cases; estimate)
  bool quick = false;    // in the --quick subset
  bool target = true;    // judged against the roofline target of its backend
  Backend backend = Backend::cpu;
  std::string skip;      // non-empty: not run, and why
  std::function<Step()> setup;  // allocates the inputs; the step owns them (CPU cases)
  std::function<TimedStep()> timed_setup;  // the same for cases timed by the device (CUDA)
  // Checked when the run starts: non-empty means not runnable on this machine, and why
  // (CUDA cases: "no CUDA device: ..."). Empty function: always runnable.
  std::function<std::string()> unavailable;
  std::string name() const { return op + "/" + model + "/" + variant; }
};

// Every case. Those needing more than memory_limit bytes carry a skip reason.
std::vector<Case> case_list(double memory_limit = kMemoryLimit);

// Families, one per source file (bench/cases_*.cc); case_list() concatenates them.
void add_v4_attention_cases(std::vector<Case>& out);   // attention, indexer
void add_v4_layer_cases(std::vector<Case>& out);       // projections, compressor, layer step
void add_v4_block_cases(std::vector<Case>& out);       // mHC, MoE, elementwise
void add_predecessor_cases(std::vector<Case>& out);    // V3.2 DSA, V3 dense MLA
void add_engram_cases(std::vector<Case>& out);       // Engram hash, lookup, mix (docs/engram.md)
void add_ceiling_cases(std::vector<Case>& out);
// CUDA builds only: a <op>_cuda twin of every reference case of an op with a CUDA kernel
// (today rmsnorm, hadamard) already in `out`, and the GPU ceilings (bench/cases_cuda.cc).
void add_cuda_cases(std::vector<Case>& out);

std::string ctx_variant(int64_t L);  // "ctx:L"

}  // namespace dsv4::bench
