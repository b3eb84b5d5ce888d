// Sparse output rows: the last layer computes its attention, MoE and head only for the rows
// whose logits are asked for, while every cache still advances by every token
// (model/model.h, ref::attention_layer_forward_rows in reference/attention_layer.h).
//
// What must hold, against the computation of every row:
//   - the caches are bit for bit the same (window ring, compressed entries, indexer keys,
//     both compressor states): they are made by the same code on the same inputs;
//   - so everything after a sparse call (decode steps, a next chunk) is bit for bit the same;
//   - an asked row's output is the same up to the rounding of GEMMs over fewer rows (the
//     linears take other kernels for fewer rows, and the MoE groups other tokens per expert):
//     a row attends to exactly its own causal set even though later rows of its chunk were
//     ingested into the state. Under exact numerics the indexer's selection is identical.
// Chunks of 37 and 67 tokens split the CSA blocks (4) and HCA blocks (128) at odd places;
// 300 tokens pass the 128-token window and complete two HCA blocks.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>

#include "model/checkpoint.h"
#include "model/model.h"
#include "reference/attention_layer.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kTokens = 300;  // 2 HCA blocks + 44, past the 128-token window

// v4-tiny (layers: window, CSA, HCA, CSA) with the last layer's kind replaced: the kind of
// the last layer decides which attention is skipped.
ModelConfig tiny_with_last(int64_t ratio) {
  ModelConfig c = config_preset("v4-tiny");
  c.compress_ratios[size_t(c.n_layers - 1)] = ratio;
  c.name = "v4-tiny-last-" + std::to_string(ratio);
  config_validate(c);
  return c;
}

// One random checkpoint per last-layer kind for the whole suite.
const ModelWeights& weights(int64_t last_ratio) {
  static std::map<int64_t, ModelWeights> cache;
  auto it = cache.find(last_ratio);
  if (it == cache.end()) {
    const fs::path dir = fs::temp_directory_path() / ("dsv4-sparse-rows-" + std::to_string(std::random_device{}()));
    WriteOptions o;
    o.force = true;
    write_random_checkpoint(tiny_with_last(last_ratio), 4321, dir.string(), 0, o);
    it = cache.emplace(last_ratio, load_checkpoint(dir.string())).first;
    fs::remove_all(dir);
  }
  return it->second;
}

std::vector<int32_t> tokens(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = int32_t(g() % 4000) + 16;
  return v;
}

std::vector<int64_t> every_row(int64_t n) {
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = i;
  return r;
}

double max_abs(const float* v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(v[i])));
  return m;
}

// Asked rows of chunk number `k` of n rows: the patterns a caller uses (none, the last, one
// in the middle, several with a run of consecutive rows, unsorted with a repeat).
// Rows past a short chunk's end are dropped.
std::vector<int64_t> asked_rows(int64_t k, int64_t n) {
  std::vector<int64_t> r;
  switch (k % 5) {
    case 0: break;
    case 1: r = {n - 1}; break;
    case 2: r = {n / 2}; break;
    case 3: r = {0, 3, n / 2, n / 2 + 1, n / 2 + 2, n - 1}; break;
    default: r = {n - 2, 1, n - 2};
  }
  r.erase(std::remove_if(r.begin(), r.end(), [n](int64_t i) { return i < 0 || i >= n; }), r.end());
  return r;
}

// Only the last layer differs, by float rounding in GEMMs over fewer rows; its longest
// reduction is wo_a's (H/g)*d = 1024 terms, and a rounding difference passes through about
// eight such reductions (wq_a, wq_b, wo_a, wo_b, MoE w1/w3/w2, head) before the logits.
// Bound: reduction_tol<float>(8 * 1024, max|logit|), whose kSafety covers the norms and the
// softmax in between.
double sparse_logits_tol(const ModelConfig& c, double max_logit) {
  const double longest = double(c.n_heads / c.o_groups * c.head_dim);
  return test::reduction_tol<float>(8 * longest, max_logit);
}

// A full run (every row of every chunk) and a sparse run (asked_rows) of the same chunking;
// checks the asked rows' logits, then that both sequences continue identically.
void check_model(int64_t last_ratio, Numerics numerics, KvLayout layout, int64_t chunk) {
  SCOPED_TRACE("last layer ratio " + std::to_string(last_ratio) + ", chunk " + std::to_string(chunk));
  Model m(make_reference_backend(weights(last_ratio), {numerics, layout}));
  const auto& c = m.config();
  const int64_t V = c.vocab_size;
  const auto ids = tokens(kTokens + 40, 11);
  Sequence full = m.new_sequence(), sparse = m.new_sequence();
  int64_t asked_total = 0;
  for (int64_t i = 0, k = 0; i < kTokens; i += chunk, ++k) {
    const int64_t n = std::min(chunk, kTokens - i);
    const auto all = m.forward(full, ids.data() + i, n, every_row(n)).logits;
    const auto rows = asked_rows(k, n);
    const auto got = m.forward(sparse, ids.data() + i, n, rows).logits;
    ASSERT_EQ(got.size(), rows.size() * size_t(V));
    for (size_t j = 0; j < rows.size(); ++j) {
      const float* want = all.data() + rows[j] * V;
      const double scale = max_abs(want, size_t(V));
      // Official numerics: a rounding difference can move a value across an FP8 step (6 %)
      // in the last layer, so the rows agree only to a few percent of their scale
      // (as chunkings do, tests/model/test_model.cc) and must keep their top token.
      const double tol = numerics == Numerics::exact ? sparse_logits_tol(c, scale) : 0.05 * scale;
      ASSERT_TRUE(test::all_close(got.data() + j * size_t(V), want, size_t(V), tol))
          << "chunk " << k << " (rows " << i << "..), asked row " << rows[j];
      if (numerics == Numerics::official) {
        EXPECT_EQ(std::max_element(got.data() + j * V, got.data() + (j + 1) * V) - (got.data() + j * V),
                  std::max_element(want, want + V) - want);
      }
    }
    asked_total += int64_t(rows.size());
  }
  EXPECT_GT(asked_total, 0);
  ASSERT_EQ(sparse.pos, full.pos);
  EXPECT_EQ(sparse.cache_bytes(), full.cache_bytes());
  // The state is complete: a next chunk (every row) and decode steps match bit for bit.
  const auto next_full = m.forward(full, ids.data() + kTokens, 37, every_row(37)).logits;
  const auto next_sparse = m.forward(sparse, ids.data() + kTokens, 37, every_row(37)).logits;
  EXPECT_TRUE(test::bitwise_equal(next_sparse, next_full));
  for (int64_t t = kTokens + 37; t < kTokens + 40; ++t)
    ASSERT_TRUE(test::bitwise_equal(m.decode(sparse, ids[size_t(t)]), m.decode(full, ids[size_t(t)])))
        << "decode at " << t;
}

TEST(ModelSparseRows, CsaLastLayerMatchesTheFullForward) {
  for (int64_t chunk : {37, 67}) check_model(kCsaRatio, Numerics::exact, KvLayout::f32, chunk);
}

TEST(ModelSparseRows, HcaLastLayerMatchesTheFullForward) {
  check_model(kHcaRatio, Numerics::exact, KvLayout::f32, 67);
}

TEST(ModelSparseRows, WindowOnlyLastLayerMatchesTheFullForward) {
  check_model(0, Numerics::exact, KvLayout::f32, 67);
}

TEST(ModelSparseRows, DeploymentLayoutAndOfficialNumerics) {
  check_model(kCsaRatio, Numerics::official, KvLayout::fp8, 67);
}

// A whole prefill asking for the last row only (what prefill() does) equals the full
// forward's last row, and leaves the same state.
TEST(ModelSparseRows, PrefillOfTheLastRowOnly) {
  Model m(make_reference_backend(weights(kCsaRatio), {Numerics::exact, KvLayout::f32}));
  const int64_t V = m.config().vocab_size;
  const auto ids = tokens(kTokens + 1, 12);
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + kTokens);
  Sequence full = m.new_sequence(), last = m.new_sequence();
  const auto all = m.forward(full, prompt.data(), kTokens, every_row(kTokens)).logits;
  PrefillStats stats;
  const auto got = m.prefill(last, prompt, kTokens, &stats);
  EXPECT_EQ(stats.tokens, kTokens);
  EXPECT_GT(stats.tokens_per_s(), 0);
  const float* want = all.data() + (kTokens - 1) * V;
  EXPECT_TRUE(test::all_close(got.data(), want, size_t(V), sparse_logits_tol(m.config(), max_abs(want, size_t(V)))));
  EXPECT_TRUE(last.last_hidden == nullptr);  // MTP needs every row's final state
  EXPECT_THROW(m.mtp_forward(last, 0, ids.data() + 1, kTokens), InputError);
  EXPECT_TRUE(test::bitwise_equal(m.decode(last, ids[kTokens]), m.decode(full, ids[kTokens])));
}

// ---- the attention layer itself: states compared field by field ----------------------

void expect_same_store(const EntryStore<float>* a, const EntryStore<float>* b, const char* what) {
  ASSERT_EQ(a == nullptr, b == nullptr) << what;
  if (!a) return;
  ASSERT_EQ(a->rows(), b->rows()) << what;
  std::vector<float> va(size_t(a->rows() * a->width())), vb(va.size());
  a->read(0, a->rows(), va.data());
  b->read(0, b->rows(), vb.data());
  EXPECT_TRUE(test::bitwise_equal(va, vb)) << what;
}

void expect_same_state(const AttentionLayerState<float>& a, const AttentionLayerState<float>& b) {
  EXPECT_EQ(a.pos, b.pos);
  expect_same_store(a.window.get(), b.window.get(), "window ring");
  expect_same_store(a.comp.get(), b.comp.get(), "compressed entries");
  expect_same_store(a.index_keys.get(), b.index_keys.get(), "indexer keys");
  for (const auto* s : {&a.comp_state, &a.index_state}) {
    const auto* t = s == &a.comp_state ? &b.comp_state : &b.index_state;
    EXPECT_EQ(s->pos, t->pos);
    EXPECT_TRUE(test::bitwise_equal(s->kv, t->kv)) << "compressor pooling state";
    EXPECT_TRUE(test::bitwise_equal(s->score, t->score)) << "compressor score state";
  }
}

// Layer 1 (CSA) and 2 (HCA) and 0 (window) of v4-tiny on random inputs, chunks of 37
// (partial CSA blocks at every boundary), rows asked as in asked_rows: after every chunk the
// states are identical, the asked outputs agree, and (exact numerics) so do the selections.
TEST(ModelSparseRows, AttentionLayerRowsAgainstEveryRow) {
  const ModelWeights& w = weights(kCsaRatio);
  const auto& c = w.config;
  constexpr int64_t kChunk = 37;
  for (int64_t layer : {0, 1, 2}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    AttentionLayerParams<float> p;
    p.shape = c.attention_shape(layer);
    p.w = w.layers[size_t(layer)].attention();
    p.numerics = Numerics::exact;
    auto a = ref::attention_layer_state_init<float>(p.shape), b = ref::attention_layer_state_init<float>(p.shape);
    std::mt19937_64 g(uint64_t(layer) + 5);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0, k = 0; i < kTokens; i += kChunk, ++k) {
      const int64_t n = std::min(kChunk, kTokens - i), D = c.dim;
      std::vector<float> x(size_t(n * D)), ya(size_t(n * D));
      for (auto& v : x) v = nd(g);
      std::vector<int64_t> rows = asked_rows(k, n);  // strictly increasing here
      std::sort(rows.begin(), rows.end());
      rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
      std::vector<float> yb(rows.size() * size_t(D));
      std::vector<int32_t> ta, tb;
      ref::attention_layer_forward(p, view2<const float>(x.data(), n, D), view2(ya.data(), n, D), a, &ta);
      ref::attention_layer_forward_rows(p, view2<const float>(x.data(), n, D), rows,
                                        view2(yb.data(), int64_t(rows.size()), D), b, &tb);
      expect_same_state(a, b);
      for (size_t j = 0; j < rows.size(); ++j) {
        const float* want = ya.data() + rows[j] * D;
        // the layer alone: wo_a's 1024-term reduction, a few chained GEMMs
        const double tol = test::reduction_tol<float>(4.0 * double(p.shape.heads / p.shape.groups * p.shape.head_dim),
                                                      max_abs(want, size_t(D)));
        ASSERT_TRUE(test::all_close(yb.data() + j * size_t(D), want, size_t(D), tol)) << "chunk " << k << " row " << rows[j];
        if (p.shape.ratio == kCsaRatio) {
          const auto K = size_t(p.shape.index_topk);
          EXPECT_TRUE(std::equal(tb.begin() + long(j * K), tb.begin() + long((j + 1) * K), ta.begin() + long(rows[j] * int64_t(K))))
              << "selection of chunk " << k << " row " << rows[j];
        }
      }
    }
  }
}

TEST(ModelSparseRows, BadRowsAreRejected) {
  const ModelWeights& w = weights(kCsaRatio);
  AttentionLayerParams<float> p;
  p.shape = w.config.attention_shape(1);
  p.w = w.layers[1].attention();
  auto st = ref::attention_layer_state_init<float>(p.shape);
  const int64_t D = w.config.dim;
  std::vector<float> x(size_t(4 * D)), y(size_t(2 * D));
  const auto xv = view2<const float>(x.data(), 4, D);
  EXPECT_THROW(ref::attention_layer_forward_rows(p, xv, {2, 1}, view2(y.data(), 2, D), st), InputError);
  EXPECT_THROW(ref::attention_layer_forward_rows(p, xv, {1, 4}, view2(y.data(), 2, D), st), InputError);
  EXPECT_THROW(ref::attention_layer_forward_rows(p, xv, {1}, view2(y.data(), 2, D), st), InputError);
  EXPECT_EQ(st.pos, 0);  // nothing was ingested
}

// ---- opt-in measurement ---------------------------------------------------------------

// Wall and CPU seconds of this thread (with one Eigen thread all the work runs on it; CPU
// time is the steadier number on a shared machine).
struct Clock {
  std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
  double cpu = thread_cpu();
  static double thread_cpu() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  }
  double wall_s() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count(); }
  double cpu_s() const { return thread_cpu() - cpu; }
};

std::vector<int64_t> env_lengths(const char* name, std::vector<int64_t> fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  std::vector<int64_t> out;
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoll(item));
  return out;
}

// Resident set now (VmRSS of /proc/self/status), MiB; 0 where there is no /proc.
double rss_now_mib() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;  // "VmRSS:  1234 kB"
  return 0;
}

// DSV4_LONG_TESTS=1: prefill of v4-tiny (official numerics, FP8 deployment cache) at
// DSV4_SPARSE_LENGTHS tokens (default 16384,65536) in chunks of 512, computing the last
// layer for every row (want_hidden: what forward did before sparse rows, plus a copy of the
// hidden states) and for the last position only (prefill()); prints tokens/s of both, the
// cache bytes and the process's peak RSS, and checks the two last-position logits agree.
// DSV4_SPARSE_MODES=sparse skips the full run (for measuring the peak RSS of one).
TEST(ModelSparseRowsLong, PrefillTokensPerSecond) {
  if (!std::getenv("DSV4_LONG_TESTS")) GTEST_SKIP() << "set DSV4_LONG_TESTS=1 to run";
  const char* modes = std::getenv("DSV4_SPARSE_MODES");
  const bool run_full = !modes || std::string(modes).find("full") != std::string::npos;
  Model m(make_reference_backend(weights(kCsaRatio), {Numerics::official, KvLayout::fp8}));
  constexpr int64_t kChunk = 512;
  for (int64_t L : env_lengths("DSV4_SPARSE_LENGTHS", {16384, 65536})) {
    const auto ids = tokens(L, 13);
    std::vector<float> full_logits;
    double full_wall = 0, full_cpu = 0;
    if (run_full) {
      Sequence s = m.new_sequence();
      const Clock t;
      for (int64_t i = 0; i < L; i += kChunk) {
        const int64_t n = std::min(kChunk, L - i);
        auto o = m.forward(s, ids.data() + i, n, {n - 1}, /*want_hidden=*/true);
        if (i + n == L) full_logits = std::move(o.logits);
      }
      full_wall = t.wall_s(), full_cpu = t.cpu_s();
    }
    const double rss_before = rss_now_mib();
    Sequence s = m.new_sequence();
    const Clock t;
    const auto sparse_logits = m.prefill(s, ids, kChunk);
    const double sparse_wall = t.wall_s(), sparse_cpu = t.cpu_s();
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double Ld = double(L);
    std::printf("v4-tiny prefill of %lld tokens (chunks of %lld, official numerics, fp8 cache %.1f MiB), tokens/s "
                "per CPU second (per wall second):",
                static_cast<long long>(L), static_cast<long long>(kChunk), double(s.cache_bytes()) / (1 << 20));
    if (run_full) std::printf(" every row %.1f (%.1f),", Ld / full_cpu, Ld / full_wall);
    std::printf(" last row only %.1f (%.1f); RSS before the last-row-only prefill %.1f MiB, after %.1f MiB, "
                "process peak %.1f MiB\n",
                Ld / sparse_cpu, Ld / sparse_wall, rss_before, rss_now_mib(), double(ru.ru_maxrss) / 1024);
    std::fflush(stdout);
    RecordProperty("prefill_" + std::to_string(L) + "_sparse_tokens_per_cpu_s", std::to_string(Ld / sparse_cpu));
    if (run_full) {
      RecordProperty("prefill_" + std::to_string(L) + "_full_tokens_per_cpu_s", std::to_string(Ld / full_cpu));
      const double scale = max_abs(full_logits.data(), full_logits.size());
      EXPECT_TRUE(test::all_close(sparse_logits, full_logits, 0.05 * scale));  // as in check_model
    }
  }
}

}  // namespace
}  // namespace dsv4
