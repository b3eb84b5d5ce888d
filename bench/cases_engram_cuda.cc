// Engram on the GPU (CUDA builds only; docs/engram.md "Where the tables live", docs/bench.md
// "GPU half"): where the table lives and whether its copy hides behind compute. GPU-only cases
// (no reference twin: the reference has no device or prefetch stream), named <op>_cuda so the
// backend is readable from the name; skipped at run time, with the reason, without a device.
// The table is BF16 as stored in the checkpoint, at the shapes of the CPU Engram cases
// (bench/cases_engram.cc: the `engram=1` preset of V4-Flash, (N-1) Hn = 16 slots of de = 64).
//
//   engram_lookup_cuda/v4/<where>_bf16,rows:R,tokens:512
//       the 16 rows of each of 512 tokens (one model chunk) gathered into e [512, 16*64] FP32
//       from 16 tables of ~R rows each (the 16 smallest primes >= R, R = 2^12 .. 2^20: 8 MiB ..
//       2.1 GB in all), addressed by engram_hash of random ids. <where>:
//         device  the table in device memory: one cuda::engram_lookup launch
//         mapped  the table in pinned, mapped host memory (PinnedHostTable):
//                 EngramPrefetcher mapped mode, i.e. the host check of the rows, their upload
//                 (64 KiB) and engram_lookup reading the rows over the interconnect (zero-copy)
//         staged  the same host table, EngramPrefetcher staged mode: the CPU gathers the rows
//                 into pinned staging, one H2D copy, engram_lookup of the staged rows
//       Timed with CUDA events on an idle stream, so host work between the start event and the
//       last launch (the staged gather, the row checks) counts, as it does in the model.
//       bytes = rows moved = 512 x 16 x 64 x 2 (as stored; e, 4 KiB a token, not counted), so
//       the table's GB/s is the rows' rate; per-token time = time / 512 (the case's time is
//       per chunk). Rows are uniform over the tables (the worst case) and each step
//       uses the next of several row sets, round-robin, so that their rows together exceed 4x
//       the L2 (at most kMaxRowSets): a large table is not timed from L2.
//   engram_prefetch_cuda/v4-flash/<mode>,tokens:4096,part:<part>
//       the prefetch of a 4096-token prefill chunk's rows (<mode>: staged or mapped, as above;
//       the preset's table, base 5 x vocab rows per head, 1.3 GB) beside a compute stand-in of
//       one V4-Flash MoE layer over the same chunk: a cuBLAS BF16 GEMM n x n x n (CublasCeiling,
//       FP32 accumulation) with 2 n^3 = the MoE's FLOPs, 2 T (k + n_shared) 3 D I (routed top-6
//       + shared expert, three D x I matrices each): n = 8960 for T = 4096 (1.4 TFLOP, ~2 ms on
//       an H200). The Engram layer is layer 1, so one layer's compute is what the copy can hide
//       behind. <part>:
//         copy     the prefetch alone (prefetcher stream P; compute stream C waits for it)
//         compute  the GEMM alone on C
//         both     the GEMM enqueued on C, then the prefetch on P, then C waits for the prefetch
//                  (EngramPrefetcher::wait): the model's timeline of docs/engram.md
//       Each step: a start event on C, P waits for it (so nothing of the step starts before it),
//       the work, then the stop event on C after C waited for P. bench_derived.json
//       "engram_overlap" gives, from the medians of the three parts of the same run:
//         overlap = (t_copy + t_comp - t_both) / min(t_copy, t_comp)   1 = the shorter is hidden
//         hidden_fraction_of_copy = (t_copy + t_comp - t_both) / t_copy
//       counters: copy: bytes = rows moved; compute: flops = 2 n^3; both: both.
// None of these carries a roofline target (a host copy and a latency-bound gather are not
// judged against the device-copy ceiling). A case's working set is the same every step (no
// copies beyond the row sets): the table sweep is the point of the lookup cases.
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "bench/cases.h"
#include "bench/cases_cuda.h"
#include "bench/ceilings_cuda.h"
#include "bench/cuda_device.h"
#include "bench/engram_cost.h"
#include "model/config.h"
#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/engram.cuh"
#include "optimized/engram_prefetch.cuh"
#include "reference/engram.h"

namespace dsv4::bench {

namespace {

using namespace cuda_twin;

constexpr int64_t kLookupTokens = 512;                // one model chunk, as the CPU lookup cases
// Rows per head: L2 -> HBM / host DRAM. 2^20 is 2.1 GB of tables; 2^22 (8.6 GB) would add
// about a minute of set-up to the GPU check for a point on the same plateau.
constexpr int kGpuLookupLogRows[] = {12, 14, 16, 18, 20};
constexpr int kQuickLogRows = 16;                     // --quick: one table past the L2 (128 MiB BF16)
constexpr int64_t kMaxRowSets = 256;                  // row sets stepped round-robin (64 KiB of rows each)
constexpr int64_t kOverlapTokens = 4096;              // a prefill chunk
constexpr int64_t kOverlapRowSets = 4;                // 8 MiB of rows each: past the CPU's LLC share
constexpr int64_t kGemmMultiple = 128;                // n of the compute stand-in, rounded to a tile
constexpr size_t kUploadChunkValues = size_t(1) << 24;  // device table filled 32 MiB at a time
constexpr uint64_t kEngramCudaSeed = 5000;           // ids: + set; table: + 100
constexpr const char* kOverlapModel = "v4-flash";
constexpr double kBf16Bytes = 2.0;

enum class Where { device, mapped, staged };

const char* where_name(Where w) {
  return w == Where::device ? "device" : w == Where::mapped ? "mapped" : "staged";
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// BF16 bits of a random value, never zero, finite: sign random, exponent 2^-7 .. 2^-1 (biased
// 120..126), mantissa random; |v| in [2^-7, 1).
uint16_t random_bf16(uint64_t seed, uint64_t i) {
  constexpr uint32_t kMinExponent = 120, kExponents = 7, kMantissaBits = 7;
  const uint64_t r = splitmix64(seed ^ (i * 0xD1B54A32D192ED03ull));
  const uint32_t sign = uint32_t(r & 1), mant = uint32_t((r >> 1) & ((1u << kMantissaBits) - 1));
  const uint32_t exp = kMinExponent + uint32_t((r >> 8) % kExponents);
  return uint16_t((sign << 15) | (exp << kMantissaBits) | mant);
}

// dst[i] = random_bf16(seed, first + i), i < n; parallel over the cores (the 2.1 GB table).
void fill_bf16(uint16_t* dst, size_t n, uint64_t seed, size_t first) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); ++i) dst[i] = random_bf16(seed, uint64_t(first) + uint64_t(i));
}

// The hash of one Engram layer of c, tables of `base` rows per head (the 16 smallest primes >=
// base), and `sets` row sets [T, slots] of random ids over the vocabulary (identity map).
struct RowSets {
  EngramHash hash;
  std::vector<std::vector<int64_t>> rows;
};

std::shared_ptr<RowSets> make_row_sets(const ModelConfig& c, int64_t base, int64_t T, int64_t sets) {
  const EngramConfig& g = c.engram;
  auto r = std::make_shared<RowSets>();
  const std::vector<int64_t> bases(size_t(g.max_ngram - 1), base);
  r->hash = engram_layer_hash(engram_primes(1, bases, g.heads_per_ngram).front(),
                              engram_multipliers(g.seed, g.layer_ids.front(), g.max_ngram, c.vocab_size),
                              g.max_ngram, g.heads_per_ngram, nullptr, c.vocab_size, g.pad_id);
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t s = 0; s < sets; ++s) {
    for (int64_t t = 0; t < T; ++t)
      ids[size_t(t)] = int32_t(splitmix64(kEngramCudaSeed + uint64_t(s) * uint64_t(T) + uint64_t(t)) %
                               uint64_t(c.vocab_size));
    std::vector<int64_t> rows(static_cast<size_t>(T * g.slots()));
    ref::engram_hash({&r->hash, ids.data(), T, nullptr, view2(rows.data(), T, g.slots())});
    r->rows.push_back(std::move(rows));
  }
  return r;
}

// Sum of the 16 table sizes for a base of R rows (the listing's memory estimate).
double table_rows_for(const EngramConfig& g, int64_t R) {
  double rows = 0;
  // (the outer vector named: a range-for over .front() of a temporary would dangle in C++20)
  const auto primes = engram_primes(1, std::vector<int64_t>(size_t(g.max_ngram - 1), R), g.heads_per_ngram);
  for (int64_t p : primes.front()) rows += double(p);
  return rows;
}

// One table and the device side of one lookup/prefetch case: the table (device memory, or
// pinned and mapped host memory with its prefetcher), the row sets (host; on the device too
// for the device table), e, and the timer. `begin` is recorded on the timer's stream at the
// start of every step; the prefetch stream waits for it.
struct EngramGpuData {
  std::shared_ptr<RowSets> sets;
  int64_t tokens = 0, slots = 0, de = 0;
  cuda::DeviceBuffer<uint16_t> table_dev;
  std::unique_ptr<cuda::PinnedHostTable> table_host;
  std::unique_ptr<cuda::EngramPrefetcher> prefetcher;
  std::vector<cuda::DeviceBuffer<int64_t>> rows_dev;
  cuda::DeviceBuffer<float> e;
  DeviceTimer timer;
  cudaEvent_t begin = nullptr;
  size_t next = 0;
  ~EngramGpuData() {
    if (begin) (void)cudaEventDestroy(begin);  // must not throw
  }
};

std::shared_ptr<EngramGpuData> engram_gpu_data(const ModelConfig& c, Where where, int64_t base, int64_t T,
                                               int64_t sets) {
  const EngramConfig& g = c.engram;
  auto d = std::make_shared<EngramGpuData>();
  d->tokens = T;
  d->slots = g.slots();
  d->de = g.head_dim();
  d->sets = make_row_sets(c, base, T, sets);
  const int64_t rows = d->sets->hash.table_rows;
  const size_t values = size_t(rows) * size_t(d->de);
  const uint64_t seed = kEngramCudaSeed + 100;
  if (where == Where::device) {
    d->table_dev = cuda::DeviceBuffer<uint16_t>(values);
    std::vector<uint16_t> chunk(std::min<size_t>(values, kUploadChunkValues));
    for (size_t at = 0; at < values; at += chunk.size()) {
      const size_t m = std::min(chunk.size(), values - at);
      fill_bf16(chunk.data(), m, seed, at);
      DSV4_CUDA_CHECK(cudaMemcpy(d->table_dev.data() + at, chunk.data(), m * sizeof(uint16_t),
                                 cudaMemcpyHostToDevice));
    }
    for (const auto& r : d->sets->rows) d->rows_dev.emplace_back(r);
  } else {
    d->table_host = std::make_unique<cuda::PinnedHostTable>(TableDType::bf16, rows, d->de);
    fill_bf16(static_cast<uint16_t*>(d->table_host->data()), values, seed, 0);
    d->prefetcher = std::make_unique<cuda::EngramPrefetcher>(
        d->table_host->host_view(), where == Where::mapped ? cuda::EngramPrefetchMode::mapped
                                                           : cuda::EngramPrefetchMode::staged,
        d->slots, T);
  }
  d->e = cuda::DeviceBuffer<float>(size_t(T) * size_t(d->slots * d->de));
  DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&d->begin, cudaEventDisableTiming));
  // Pageable uploads may still be in flight when cudaMemcpy returns; the timer's stream does
  // not wait for the legacy default stream.
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

// The start of a step on stream s (the timer's, right after its start event): the prefetch
// stream P waits for `begin`, recorded on s now, so none of the step's prefetch work starts
// before the start event. Nothing to do for the device table (everything runs on s).
void begin_step(EngramGpuData& d, cudaStream_t s) {
  if (!d.prefetcher) return;
  DSV4_CUDA_CHECK(cudaEventRecord(d.begin, s));
  DSV4_CUDA_CHECK(cudaStreamWaitEvent(d.prefetcher->stream(), d.begin, 0));
}

// Enqueues the lookup of row set i into e so that stream s has waited for it: device:
// engram_lookup on s; mapped / staged: prefetch on P (staged: the CPU gather runs here, on this
// thread, while s runs whatever was enqueued on it before), then s waits for it.
void enqueue_lookup(EngramGpuData& d, size_t i, cudaStream_t s) {
  const View2<float> e = view2(d.e.data(), d.tokens, d.slots * d.de);
  if (!d.prefetcher) {
    const EngramTableView tb{d.table_dev.data(), TableDType::bf16, d.sets->hash.table_rows, d.de};
    cuda::engram_lookup({tb, view2<const int64_t>(d.rows_dev[i].data(), d.tokens, d.slots), e}, s);
    return;
  }
  d.prefetcher->prefetch(view2<const int64_t>(d.sets->rows[i].data(), d.tokens, d.slots), e);
  d.prefetcher->wait(s);
}

// After a step: the work on s so far is the last to read e (the next prefetch may overwrite it).
void release_lookup(EngramGpuData& d, cudaStream_t s) {
  if (d.prefetcher) d.prefetcher->release(s);
}

Case gpu_only_case(const std::string& op, const std::string& model, const std::string& variant) {
  Case c;
  c.op = op + kCudaOpSuffix;
  c.model = model;
  c.variant = variant;
  c.target = false;
  c.backend = Backend::cuda;
  c.unavailable = cuda_unavailable;
  return c;
}

// ---- lookup vs table size ------------------------------------------------------------------

void add_lookup(std::vector<Case>& out, Where where, int log_rows) {
  const ModelConfig c = preset_with_engram(kOverlapModel);  // lookup shapes are the same in Flash and Pro
  const EngramConfig& g = c.engram;
  const int64_t R = int64_t(1) << log_rows, T = kLookupTokens, slots = g.slots(), de = g.head_dim();
  Case cs = gpu_only_case("engram_lookup", "v4", fmt::format("{}_bf16,rows:{},tokens:{}", where_name(where), R, T));
  cs.bytes = double(T * slots * de) * kBf16Bytes;  // rows moved, as stored
  const double table_bytes = table_rows_for(g, R) * double(de) * kBf16Bytes;
  const double rows_bytes = double(kMaxRowSets) * double(T * slots) * 8.0, e_bytes = double(T * slots * de) * 4.0;
  cs.memory = (where == Where::device ? double(kUploadChunkValues) * kBf16Bytes : table_bytes) + rows_bytes;
  cs.device_memory = (where == Where::device ? table_bytes + rows_bytes : cs.bytes) + e_bytes;
  cs.quick = log_rows == kQuickLogRows;
  cs.timed_setup = [c, where, R, T, bytes = cs.bytes] {
    const int64_t sets = gpu_cold_steps(bytes, kMaxRowSets);
    auto d = engram_gpu_data(c, where, R, T, sets);
    return warmed_up([d] {
      const size_t i = d->next;
      d->next = (i + 1) % d->sets->rows.size();
      const double s = d->timer.seconds([&](cudaStream_t st) {
        begin_step(*d, st);
        enqueue_lookup(*d, i, st);
      });
      release_lookup(*d, d->timer.stream());
      return s;
    });
  };
  out.push_back(std::move(cs));
}

// ---- prefetch overlap ----------------------------------------------------------------------

enum class Part { copy, compute, both };

const char* part_name(Part p) { return p == Part::copy ? "copy" : p == Part::compute ? "compute" : "both"; }

// n of the compute stand-in: 2 n^3 = the MoE layer's FLOPs over T tokens, 2 T (k + n_shared)
// 3 D I, rounded to kGemmMultiple (V4-Flash, T = 4096: n = 8960).
int64_t compute_gemm_n(const ModelConfig& c, int64_t T) {
  const double flops = 2.0 * double(T) * double(c.experts_per_token + c.n_shared_experts) * 3.0 * double(c.dim) *
                       double(c.moe_inter_dim);
  const double n = std::cbrt(flops / 2.0);
  return std::max<int64_t>(kGemmMultiple, int64_t(std::llround(n / double(kGemmMultiple))) * kGemmMultiple);
}

struct OverlapData {
  std::shared_ptr<EngramGpuData> lookup;  // null for the compute part
  std::unique_ptr<CublasCeiling> gemm;    // null for the copy part
  DeviceTimer timer;
};

void add_overlap(std::vector<Case>& out, Where where, Part part) {
  const ModelConfig c = preset_with_engram(kOverlapModel);
  const EngramConfig& g = c.engram;
  const int64_t T = kOverlapTokens, slots = g.slots(), de = g.head_dim(), base = g.vocab_size.front();
  const int64_t n = compute_gemm_n(c, T);
  Case cs = gpu_only_case("engram_prefetch", kOverlapModel,
                          fmt::format("{},tokens:{},part:{}", where_name(where), T, part_name(part)));
  const double rows_moved = double(T * slots * de) * kBf16Bytes, gemm_flops = 2.0 * double(n) * double(n) * double(n);
  const bool copy = part != Part::compute, compute = part != Part::copy;
  cs.bytes = copy ? rows_moved : 0.0;
  cs.flops = compute ? gemm_flops : 0.0;
  const double table_bytes = table_rows_for(g, base) * double(de) * kBf16Bytes;
  const double gemm_device = 3.0 * double(n) * double(n) * kBf16Bytes;  // A, B, C
  const double gemm_host = double(n) * double(n) * (4.0 + kBf16Bytes);  // CublasCeiling's staging
  cs.memory = (copy ? table_bytes + rows_moved + double(kOverlapRowSets * T * slots) * 8.0 : 0.0) +
              (compute ? gemm_host : 0.0);
  cs.device_memory = (copy ? rows_moved + double(T * slots * de) * 4.0 : 0.0) + (compute ? gemm_device : 0.0);
  cs.quick = where == Where::staged;
  cs.timed_setup = [c, where, T, base, n, copy, compute] {
    auto d = std::make_shared<OverlapData>();
    if (copy) d->lookup = engram_gpu_data(c, where, base, T, kOverlapRowSets);
    if (compute) d->gemm = std::make_unique<CublasCeiling>(n);
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());
    return warmed_up([d] {
      EngramGpuData* l = d->lookup.get();
      const size_t i = l ? l->next : 0;
      if (l) l->next = (i + 1) % l->sets->rows.size();
      // C: [start] GEMM ............ [wait ready] [stop];  P: [wait begin] prefetch (copy, lookup)
      const double s = d->timer.seconds([&](cudaStream_t C) {
        if (l) begin_step(*l, C);       // before the GEMM: P must not wait for it
        if (d->gemm) d->gemm->step(C);  // enqueued first: the staged CPU gather below overlaps it
        if (l) enqueue_lookup(*l, i, C);
      });
      if (l) release_lookup(*l, d->timer.stream());
      return s;
    });
  };
  out.push_back(std::move(cs));
}

}  // namespace

void add_engram_cuda_cases(std::vector<Case>& out) {
  for (Where w : {Where::device, Where::mapped, Where::staged})
    for (int lr : kGpuLookupLogRows) add_lookup(out, w, lr);
  for (Where w : {Where::staged, Where::mapped})
    for (Part p : {Part::copy, Part::compute, Part::both}) add_overlap(out, w, p);
}

}  // namespace dsv4::bench
