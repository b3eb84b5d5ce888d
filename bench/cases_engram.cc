// Engram cases (docs/engram.md) at the published shapes: the engram block `dsv4 init --set
// engram=1` gives a preset (model/config.h EngramConfig defaults): orders 2..N with N = 3,
// Hn = 8 hash heads per order, 512 dims per order (de = 64, E = 1024), K = 4, dilation N,
// base table size 5 x vocab per order; S = 4 streams, D = 4096 (Flash) / 7168 (Pro).
//
//   engram_hash/v4/tokens:512      the (N-1) Hn = 16 row addresses of each of 512 tokens
//                                  (random ids over the V4 vocabulary, random canonical map,
//                                  the published table primes); integer work, no FLOPs counted;
//                                  bytes = ids + map entries read + addresses written
//   engram_lookup/v4/<table>,rows:R,tokens:512
//                                  the 16 rows of 512 tokens gathered (ref::engram_lookup) from
//                                  16 tables of ~R rows each (the 16 smallest primes >= R),
//                                  addressed by engram_hash of random ids. <table>: memory_f32
//                                  (float in memory, as the reference backend loads it) or
//                                  mmap_bf16 (BF16 as stored, memory-mapped from a safetensors
//                                  file by SafetensorsReader, rows converted on lookup).
//                                  bytes = rows gathered x row bytes as stored (the brief's
//                                  count; the e written, 4 KiB a token, is not counted).
//                                  Rows are uniform over the tables (random ids): the worst
//                                  case, real text repeats n-grams. Random 128-256 B gathers
//                                  are latency-bound, so the share of the streaming-read
//                                  ceiling is reported but carries no target.
//   engram_mix_decode/<model>/tokens:1, engram_mix_prefill/<model>/tokens:512
//                                  ref::engram_mix (value and key projections, gates, the
//                                  short convolution) of 1 token / a 512-token prefill chunk;
//                                  FLOPs and dense reads as bench/engram_cost.h; bytes = the
//                                  dense parameters + e in + X in + Y out + the Z history in
//                                  and out, floats. Decode steps cold copies (bench/setup.h).
//   engram_prefetch/v4-flash/mmap_bf16,rows:R,tokens:512,part:{copy,compute,both}
//                                  the CPU twin of engram_prefetch_cuda (bench/cases_engram_cuda.cc):
//                                  how much of a prefetched lookup hides behind compute, as the
//                                  reference backend runs it (Backend::engram_prefetch: the
//                                  lookup on another thread while the earlier layers compute).
//                                  copy: the lookup of a 512-token chunk from the memory-mapped
//                                  BF16 table on a thread of its own (std::async, joined);
//                                  compute: a single-threaded Eigen SGEMM n x n x n, n = 640
//                                  (~10 ms on one core: the order of the lookup, so either can
//                                  hide the other); both: the lookup started, the SGEMM, the
//                                  join. bytes / FLOPs: the rows moved / 2 n^3 where the part
//                                  has them. Needs a second core for the lookup thread.
//                                  bench_derived.json engram_overlap (bench/derive.h) derives
//                                  overlap and the hidden share of the lookup from the three.
//
// The mmap table is written once per case set-up to a temporary file (streamed in chunks, so
// no second copy of the table is held), mapped, and unlinked at once: the mapping keeps the
// data alive and nothing is left behind however the process ends. Every page is touched once
// after mapping, so the timing is the steady state of a long run (page-cache resident, pages
// mapped), not the first touches.
#include <unistd.h>

#include <Eigen/Dense>
#include <cmath>
#include <future>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <fmt/core.h>

#include "bench/cases.h"
#include "bench/engram_cost.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "reference/engram.h"
#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4::bench {

namespace {

constexpr int64_t kEngramChunk = 512;        // tokens of the hash, lookup and prefill cases (the model's chunk)
constexpr int kLookupLogRows[] = {10, 11, 12, 13, 14, 16, 18, 20, 22};  // rows per head: cache -> DRAM
constexpr int kQuickLogRowsCache = 10;       // --quick: a table in the last-level cache (4 MiB f32) ...
constexpr int kQuickLogRowsDram = 16;        // ... and one in memory (256 MiB f32, 128 MiB BF16)
constexpr int64_t kPageBytes = 4096;         // touched once each after mapping
constexpr int64_t kWriteChunkValues = 1 << 20;  // values per chunk of the table file
constexpr const char* kTableTensor = "engram.table";

// Random raw ids in [0, vocab) and a random canonical map (surjective enough for timing).
std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  const std::vector<float> u = rand_uniform(size_t(n), seed, 1.0f);
  // uniform on [-sqrt 3, sqrt 3) -> [0, vocab)
  for (size_t i = 0; i < ids.size(); ++i) {
    const double x = (double(u[i]) / std::sqrt(3.0) + 1.0) / 2.0;
    ids[i] = int32_t(std::min<int64_t>(vocab - 1, std::max<int64_t>(0, int64_t(x * double(vocab)))));
  }
  return ids;
}

struct HashData {
  std::vector<int32_t> map, ids;
  std::vector<int64_t> rows;
  EngramHash hash;
  EngramHashParams p;
};

// The hash of one Engram layer of c whose tables start at `base` rows per head.
std::shared_ptr<HashData> make_hash(const ModelConfig& c, int64_t base, int64_t T, uint64_t seed) {
  const EngramConfig& g = c.engram;
  auto h = std::make_shared<HashData>();
  h->map = random_ids(c.vocab_size, c.vocab_size, seed);
  h->ids = random_ids(T, c.vocab_size, seed + 1);
  const std::vector<int64_t> bases(size_t(g.max_ngram - 1), base);
  h->hash = engram_layer_hash(engram_primes(1, bases, g.heads_per_ngram).front(),
                              engram_multipliers(g.seed, g.layer_ids.front(), g.max_ngram, c.vocab_size), g.max_ngram,
                              g.heads_per_ngram, h->map.data(), c.vocab_size, g.pad_id);
  h->rows.resize(size_t(T * g.slots()));
  h->p = {&h->hash, h->ids.data(), T, nullptr, view2(h->rows.data(), T, g.slots())};
  return h;
}

void add_hash(std::vector<Case>& out) {
  const ModelConfig c = preset_with_engram("v4-flash");  // hash shapes are the same in Flash and Pro
  const int64_t T = kEngramChunk, slots = c.engram.slots();
  Case cs;
  cs.op = "engram_hash";
  cs.model = "v4";
  cs.variant = "tokens:" + std::to_string(T);
  cs.flops = 0;
  cs.bytes = double(T) * (4.0 + 4.0 + 8.0 * double(slots));  // id + map entry in, addresses out
  cs.memory = 4.0 * double(c.vocab_size) + cs.bytes;
  cs.quick = true;
  cs.target = false;  // integer multiply/xor/modulo work: neither ceiling applies
  cs.setup = [c, T] {
    auto h = make_hash(c, c.engram.vocab_size.front(), T, 900);
    return Step([h] { ref::engram_hash(h->p); });
  };
  out.push_back(std::move(cs));
}

// ---- lookup --------------------------------------------------------------------------------

// Writes a safetensors file holding one BF16 tensor [rows, dim] of random values, streamed in
// chunks (the format of model/safetensors.h; SafetensorsReader validates it when it opens it).
void write_bf16_table(const std::string& path, int64_t rows, int64_t dim, uint64_t seed) {
  const uint64_t nbytes = uint64_t(rows) * uint64_t(dim) * 2;
  std::string header = ::fmt::format(R"({{"{}":{{"dtype":"BF16","shape":[{},{}],"data_offsets":[0,{}]}}}})", kTableTensor,
                                   rows, dim, nbytes);
  header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));  // u64 little-endian
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(header.data(), std::streamsize(header.size()));
  std::vector<float> buf(static_cast<size_t>(kWriteChunkValues));
  std::vector<uint16_t> enc(buf.size());
  const int64_t total = rows * dim;
  for (int64_t at = 0, chunk = 0; at < total; at += kWriteChunkValues, ++chunk) {
    const int64_t m = std::min(kWriteChunkValues, total - at);
    fill_uniform(buf.data(), size_t(m), seed + uint64_t(chunk), 1.0f);
    for (int64_t i = 0; i < m; ++i) enc[size_t(i)] = dsv4::fmt::bf16_encode(buf[size_t(i)]);
    f.write(reinterpret_cast<const char*>(enc.data()), std::streamsize(m * 2));
  }
  f.close();
  if (!f) throw std::runtime_error("cannot write the Engram table file " + path);
}

struct LookupData {
  std::shared_ptr<HashData> hash;
  std::vector<float> table;                    // memory_f32
  std::unique_ptr<SafetensorsReader> mapped;   // mmap_bf16 (file already unlinked)
  std::vector<float> e;
  EngramLookupParams<float> p;
  double touched = 0;  // keeps the page-touch loop from being optimised away
};

// The hash of T random tokens over tables of ~R rows per head, and the table: F32 in memory, or
// BF16 in a temporary safetensors file, memory-mapped (every page touched once) and unlinked.
std::shared_ptr<LookupData> make_lookup_data(const ModelConfig& c, int64_t R, int64_t T, bool mmap, uint64_t seed) {
  const EngramConfig& g = c.engram;
  const int64_t slots = g.slots(), de = g.head_dim();
  auto a = std::make_shared<LookupData>();
  a->hash = make_hash(c, R, T, seed);
  ref::engram_hash(a->hash->p);
  const int64_t rows = a->hash->hash.table_rows;
  EngramTableView tb{nullptr, mmap ? TableDType::bf16 : TableDType::f32, rows, de};
  if (mmap) {
    static int serial = 0;
    const std::string path = (std::filesystem::temp_directory_path() /
                              ::fmt::format("dsv4-bench-engram-{}-{}.safetensors", ::getpid(), serial++))
                                 .string();
    try {
      write_bf16_table(path, rows, de, 920);
      a->mapped = std::make_unique<SafetensorsReader>(path);
    } catch (...) {
      std::filesystem::remove(path);
      throw;
    }
    std::filesystem::remove(path);  // the mapping keeps the data
    const TensorInfo* t = a->mapped->find(kTableTensor);
    if (!t || t->dtype != DType::BF16 || t->shape != std::vector<int64_t>{rows, de})
      throw InputError("engram_lookup bench: the table file does not hold " + std::string(kTableTensor) + " [rows, de] BF16");
    const auto bytes = a->mapped->bytes(*t);
    tb.data = bytes.data();
    volatile unsigned char sink = 0;  // map every page once (steady state, not first touches)
    for (size_t at = 0; at < bytes.size(); at += size_t(kPageBytes)) sink = sink + static_cast<unsigned char>(bytes[at]);
    a->touched = double(sink);
  } else {
    a->table = rand_uniform(size_t(rows * de), 920, 1.0f);
    tb.data = a->table.data();
  }
  a->e.resize(size_t(T * slots * de));
  a->p = {tb, view2<const int64_t>(a->hash->rows.data(), T, slots), view2(a->e.data(), T, slots * de)};
  return a;
}

void add_lookup(std::vector<Case>& out, int log_rows, bool mmap) {
  const ModelConfig c = preset_with_engram("v4-flash");  // lookup shapes are the same in Flash and Pro
  const EngramConfig& g = c.engram;
  const int64_t R = int64_t(1) << log_rows, T = kEngramChunk, slots = g.slots(), de = g.head_dim();
  const double value_bytes = mmap ? 2.0 : 4.0;
  double table_rows = 0;  // the 16 smallest primes >= R: ~5 % over 16 R at 2^10, < 0.1 % from 2^16 on
  const auto primes = engram_primes(1, std::vector<int64_t>(size_t(g.max_ngram - 1), R), g.heads_per_ngram);
  for (int64_t p : primes.front()) table_rows += double(p);
  Case cs;
  cs.op = "engram_lookup";
  cs.model = "v4";
  cs.variant = ::fmt::format("{},rows:{},tokens:{}", mmap ? "mmap_bf16" : "memory_f32", R, T);
  cs.flops = 0;
  cs.bytes = double(T * slots) * double(de) * value_bytes;
  cs.memory = table_rows * double(de) * value_bytes + double(T * slots) * 8.0 + double(T * slots * de) * 4.0;
  cs.quick = (log_rows == kQuickLogRowsCache && !mmap) || log_rows == kQuickLogRowsDram;
  cs.target = false;  // latency-bound random gathers, judged against a streaming ceiling
  cs.setup = [c, R, T, mmap, log_rows] {
    auto a = make_lookup_data(c, R, T, mmap, 910 + uint64_t(log_rows));
    return Step([a] { ref::engram_lookup(a->p); });
  };
  out.push_back(std::move(cs));
}

// ---- prefetch overlap ----------------------------------------------------------------------

constexpr int64_t kOverlapGemmN = 640;  // the compute stand-in: 2 n^3 = 0.52 GFLOP, ~10 ms on one core
constexpr int kOverlapLogRows = 16;     // rows per head: the quick DRAM table (128 MiB BF16)

enum class Part { copy, compute, both };
const char* part_name(Part p) { return p == Part::copy ? "copy" : p == Part::compute ? "compute" : "both"; }

struct OverlapData {
  std::shared_ptr<LookupData> lookup;
  Eigen::MatrixXf a, b, c;
};

void add_overlap(std::vector<Case>& out, Part part) {
  const ModelConfig c = preset_with_engram("v4-flash");
  const EngramConfig& g = c.engram;
  const int64_t R = int64_t(1) << kOverlapLogRows, T = kEngramChunk, slots = g.slots(), de = g.head_dim(),
                n = kOverlapGemmN;
  const bool copy = part != Part::compute, compute = part != Part::copy;
  Case cs;
  cs.op = "engram_prefetch";
  cs.model = "v4-flash";
  cs.variant = ::fmt::format("mmap_bf16,rows:{},tokens:{},part:{}", R, T, part_name(part));
  cs.bytes = copy ? double(T * slots * de) * 2.0 : 0.0;
  cs.flops = compute ? 2.0 * double(n) * double(n) * double(n) : 0.0;
  cs.memory = (copy ? double(16 * R * de) * 2.0 + double(T * slots) * (8.0 + 4.0 * double(de)) : 0.0) +
              (compute ? 3.0 * double(n * n) * 4.0 : 0.0);
  cs.quick = true;
  cs.target = false;  // a measurement of concurrency, not of an op against a ceiling
  cs.setup = [c, R, T, n, copy, compute] {
    auto d = std::make_shared<OverlapData>();
    if (copy) d->lookup = make_lookup_data(c, R, T, true, 960);
    if (compute) {
      d->a = Eigen::MatrixXf::Random(n, n);
      d->b = Eigen::MatrixXf::Random(n, n);
      d->c = Eigen::MatrixXf::Zero(n, n);
    }
    return Step([d, copy, compute] {
      std::future<void> f;
      if (copy) f = std::async(std::launch::async, [l = d->lookup] { ref::engram_lookup(l->p); });
      if (compute) d->c.noalias() = d->a * d->b;
      if (copy) f.get();
    });
  };
  out.push_back(std::move(cs));
}

// ---- mix -----------------------------------------------------------------------------------

struct MixData {
  std::vector<float> x, e, vw, vb, kw, kb, kn, qn, cw, cn, hist, y;
  EngramMixParams<float> p;
};

void add_mix(std::vector<Case>& out, const std::string& model, int64_t T) {
  const ModelConfig c = preset_with_engram(model);
  const EngramConfig& g = c.engram;
  const EngramLayerCost l = engram_layer_cost(c);
  const int64_t D = c.dim, S = c.hc_mult, E = g.width(), K = g.kernel_size, dil = g.max_ngram,
                H = g.history_rows();
  Case cs;
  cs.op = T == 1 ? "engram_mix_decode" : "engram_mix_prefill";
  cs.model = model;
  cs.variant = "tokens:" + std::to_string(T);
  cs.flops = double(T) * l.flops;
  cs.bytes = 4.0 * (l.dense + double(T) * double(E + 2 * S * D) + 2.0 * double(H * S * D));
  const int64_t copies = T == 1 ? cold_copies(cs.bytes) : 1;
  cs.memory = double(copies) * cs.bytes;
  cs.quick = model == "v4-flash";
  cs.setup = [=] {
    return round_robin(copies, [&](int64_t i) {
      auto a = std::make_shared<MixData>();
      const uint64_t seed = 940 + 20 * uint64_t(i);
      a->x = rand_uniform(size_t(T * S * D), seed, 1.0f);
      a->e = rand_uniform(size_t(T * E), seed + 1, 1.0f);
      a->vw = rand_uniform(size_t(D * E), seed + 2, 0.02f);
      a->vb = rand_uniform(size_t(D), seed + 3, 0.1f);
      a->kw = rand_uniform(size_t(S * D * E), seed + 4, 0.02f);
      a->kb = rand_uniform(size_t(S * D), seed + 5, 0.1f);
      a->kn = rand_uniform(size_t(S * D), seed + 6, 1.0f);
      a->qn = rand_uniform(size_t(S * D), seed + 7, 1.0f);
      a->cw = rand_uniform(size_t(S * D * K), seed + 8, 0.5f);
      a->cn = rand_uniform(size_t(S * D), seed + 9, 1.0f);
      a->hist = rand_uniform(size_t(H * S * D), seed + 10, 1.0f);
      a->y.resize(size_t(T * S * D));
      EngramMixWeights<float> w{a->vw.data(), a->vb.data(), a->kw.data(), a->kb.data(),
                                a->kn.data(), a->qn.data(), a->cw.data(), a->cn.data()};
      a->p = {view2<const float>(a->x.data(), T, S * D), view2<const float>(a->e.data(), T, E), w, S, K, dil, c.norm_eps,
              view2(a->hist.data(), H, S * D), view2(a->y.data(), T, S * D)};
      return Step([a] { ref::engram_mix(a->p); });
    });
  };
  out.push_back(std::move(cs));
}

}  // namespace

void add_engram_cases(std::vector<Case>& out) {
  add_hash(out);
  for (bool mmap : {false, true})
    for (int lr : kLookupLogRows) add_lookup(out, lr, mmap);
  for (Part p : {Part::copy, Part::compute, Part::both}) add_overlap(out, p);
  for (const char* m : {"v4-flash", "v4-pro"}) {
    add_mix(out, m, 1);
    add_mix(out, m, kEngramChunk);
  }
}

}  // namespace dsv4::bench
