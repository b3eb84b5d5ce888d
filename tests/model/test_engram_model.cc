// Engram in the model (docs/engram.md): config fields and `--set` overrides, the canonical-id
// map, the checkpoint tensors (writer, loader checks, memory-mapped tables), and the forward
// on the reference backend: chunked prefill and decode == one prefill (the id and convolution
// histories carry), prefetched == direct lookups, a zero value projection leaves the model
// exactly as without Engram, the fp64 backend agrees to rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/engram_map.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

ModelConfig engram_tiny() { return test::engram_tiny_config(); }

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("dsv4-engram-" + std::to_string(std::random_device{}()));
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// One checkpoint on disk for the suite (the mapped-table tests read it again).
const std::string& engram_dir() {
  static TempDir dir;
  static const bool written = [] {
    WriteOptions o;
    o.force = true;
    write_random_checkpoint(engram_tiny(), 77, dir.path.string(), 0, o);
    return true;
  }();
  (void)written;
  return dir.path.native();
}

const ModelWeights& engram_weights() {
  static const ModelWeights w = load_checkpoint(engram_dir());
  return w;
}

// The same weights with Engram switched off (config and tensors).
ModelWeights without_engram(ModelWeights w) {
  w.config.engram = EngramConfig{};
  for (auto& l : w.layers) l.engram = EngramTensors{};
  w.engram_token_map.clear();
  return w;
}

// Prompts that repeat n-grams (so rows are shared) over the tiny vocabulary.
std::vector<int32_t> prompt(int64_t n, uint64_t seed) {
  std::vector<int32_t> ids = test::tiny_tokens(n, seed);
  for (int64_t t = 40; t < n; t += 37) ids[size_t(t)] = ids[size_t(t - 30)], ids[size_t(t - 1)] = ids[size_t(t - 31)];
  return ids;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

double logits_tol(const std::vector<float>& ref) {
  const auto& c = engram_weights().config;
  return test::reduction_tol<float>(double(c.dim * c.n_layers), test::max_abs(ref)) * 16;
}

// ---- config ---------------------------------------------------------------------------------

TEST(EngramConfig, OffByDefaultInEveryPreset) {
  for (const auto& n : config_preset_names()) EXPECT_FALSE(config_preset(n).engram.enabled()) << n;
}

TEST(EngramConfig, JsonRoundTripAndDerivedSizes) {
  const ModelConfig c = engram_tiny();
  const ModelConfig back = config_from_json(config_to_json(c), "round-trip");
  EXPECT_EQ(back.engram.layer_ids, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(back.engram.vocab_size, (std::vector<int64_t>{61, 67}));
  EXPECT_EQ(back.engram.max_ngram, 3);
  EXPECT_EQ(back.engram.heads_per_ngram, 4);
  EXPECT_EQ(back.engram.embed_per_ngram, 64);
  EXPECT_EQ(back.engram.head_dim(), 16);
  EXPECT_EQ(back.engram.width(), 128);
  EXPECT_EQ(back.engram.slots(), 8);
  EXPECT_EQ(back.engram.history_rows(), 9);  // (K-1) * N
  EXPECT_EQ(back.engram.index_of(2), 1);
  EXPECT_EQ(back.engram.index_of(1), -1);
}

TEST(EngramConfig, DefaultTablesAreFiveTimesTheVocabulary) {
  ModelConfig c = config_preset("v4-tiny");
  config_set_engram(c, "engram=1");
  EXPECT_EQ(c.engram.vocab_size, (std::vector<int64_t>(2, 5 * c.vocab_size)));
  config_set_engram(c, "engram=none");
  EXPECT_FALSE(c.engram.enabled());
}

TEST(EngramConfig, BadFieldsAreNamed) {
  auto expect_bad = [](const std::string& set, const std::string& field) {
    ModelConfig c = engram_tiny();
    try {
      config_set_engram(c, set);
      config_validate(c);
      ADD_FAILURE() << set << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_bad("engram=0,9", "engram.layer_ids");
  expect_bad("engram=2,0", "engram.layer_ids");
  expect_bad("engram.vocab_size=61", "engram.vocab_size");
  expect_bad("engram.vocab_size=1,67", "engram.vocab_size");
  expect_bad("engram.n_embed_per_ngram=66", "engram.n_embed_per_ngram");
  expect_bad("engram.kernel_size=0", "engram.kernel_size");
  expect_bad("engram.pad_id=4096", "engram.pad_id");
  expect_bad("engram.max_ngram_size=1", "engram.max_ngram_size");
  expect_bad("engram=a,b", "engram");
  expect_bad("engram.nope=1", "unknown key");
}

TEST(EngramConfig, JsonErrorsNameTheField) {
  std::string j = config_to_json(engram_tiny());
  const std::string from = "\"n_head_per_ngram\":4";
  ASSERT_NE(j.find(from), std::string::npos) << j;
  j.replace(j.find(from), from.size(), "\"n_head_per_ngram\":\"four\"");
  try {
    config_from_json(j, "bad.json");
    ADD_FAILURE() << "a string head count was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("n_head_per_ngram"), std::string::npos) << e.what();
  }
}

// ---- the canonical-id map ---------------------------------------------------------------------

TEST(EngramTokenMap, KeysFoldCaseAndWhitespace) {
  EXPECT_EQ(engram_token_key("Hello"), "hello");
  EXPECT_EQ(engram_token_key(" hello"), "hello");
  EXPECT_EQ(engram_token_key("HELLO  \n"), "hello");
  EXPECT_EQ(engram_token_key("a \t\r\n b"), "a b");
  EXPECT_EQ(engram_token_key("\n\n"), " ");
  EXPECT_EQ(engram_token_key("\xc3\xa9T"), "\xc3\xa9t");  // non-ASCII kept, ASCII folded
  EXPECT_EQ(engram_token_key("\xc3"), "");                // a partial UTF-8 byte keys to itself
  EXPECT_EQ(engram_token_key(""), "");
}

TEST(EngramTokenMap, TinyTokenizerMapIsOntoAndFollowsTheKeys) {
  const std::string path = default_tokenizer_asset();
  if (!fs::exists(path)) GTEST_SKIP() << "no tokenizer asset at " << path;
  const Tokenizer tok(path);
  const int64_t V = 4096;
  const std::vector<int64_t> map = engram_token_map(tok, V);
  ASSERT_EQ(int64_t(map.size()), V);
  std::set<int64_t> used(map.begin(), map.end());
  EXPECT_EQ(*used.begin(), 0);
  EXPECT_EQ(*used.rbegin(), int64_t(used.size()) - 1) << "onto [0, #keys)";
  EXPECT_LT(int64_t(used.size()), V) << "some tokens must share a canonical id";
  std::map<std::string, int64_t> by_key;
  for (int64_t id = 0; id < V; ++id) {
    const std::string key = id < tok.vocab_size() ? engram_token_key(tok.token_bytes(int32_t(id))) : "";
    if (key.empty()) continue;
    auto [it, fresh] = by_key.emplace(key, map[size_t(id)]);
    EXPECT_TRUE(fresh || it->second == map[size_t(id)]) << "id " << id << " key '" << key << "'";
  }
  // distinct keys never share an id
  std::set<int64_t> key_ids;
  for (const auto& [k, v] : by_key) EXPECT_TRUE(key_ids.insert(v).second) << k;
}

// ---- checkpoint -----------------------------------------------------------------------------

TEST(EngramCheckpoint, TensorsLoadWithTheirShapes) {
  const ModelWeights& w = engram_weights();
  const ModelConfig& c = w.config;
  const auto& g = c.engram;
  const auto primes = engram_primes(2, g.vocab_size, g.heads_per_ngram);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto& e = w.layers[size_t(l)].engram;
    const int64_t i = g.index_of(l);
    if (i < 0) {
      EXPECT_FALSE(e.present()) << "layer " << l;
      continue;
    }
    int64_t rows = 0;
    for (int64_t p : primes[size_t(i)]) rows += p;
    const int64_t D = c.dim, S = c.hc_mult, E = g.width();
    EXPECT_EQ(int64_t(e.table.size()), rows * g.head_dim());
    EXPECT_EQ(int64_t(e.value_w.size()), D * E);
    EXPECT_EQ(int64_t(e.key_w.size()), S * D * E);
    EXPECT_EQ(int64_t(e.key_norm.size()), S * D);
    EXPECT_EQ(int64_t(e.conv_w.size()), S * D * g.kernel_size);
    EXPECT_EQ(e.table_view(g.head_dim()).rows, rows);
  }
  EXPECT_EQ(int64_t(w.engram_token_map.size()), c.vocab_size);
  // the writer built the map from the tokenizer it copied: not the identity
  bool identity = true;
  for (size_t i = 0; i < w.engram_token_map.size(); ++i) identity = identity && w.engram_token_map[i] == int64_t(i);
  if (fs::exists(default_tokenizer_asset())) {
    EXPECT_FALSE(identity);
  }
}

TEST(EngramCheckpoint, MappedTablesStayInTheShardAndGiveTheSameLogits) {
  LoadOptions o;
  o.map_engram_tables = true;
  LoadInfo info;
  const ModelWeights mapped = load_checkpoint(engram_dir(), o, &info);
  for (int64_t l : mapped.config.engram.layer_ids) {
    const auto& e = mapped.layers[size_t(l)].engram;
    EXPECT_TRUE(e.table.empty());
    EXPECT_NE(e.mapped.data, nullptr);
    EXPECT_EQ(e.mapped.dtype, TableDType::bf16);  // as the release stores it
  }
  EXPECT_LT(mapped.bytes(), engram_weights().bytes());
  const auto ids = prompt(90, 3);
  Model a(make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32}));
  Model b(make_reference_backend(mapped, {Numerics::exact, KvLayout::f32}));
  Sequence sa = a.new_sequence(), sb = b.new_sequence();
  EXPECT_EQ(a.prefill(sa, ids, 32), b.prefill(sb, ids, 32)) << "bf16 widening is exact either way";
}

TEST(EngramCheckpoint, BadTokenMapIsRejected) {
  const ModelConfig c = engram_tiny();
  for (const std::string bad : {"range", "gap"}) {
    TempDir dir;
    CheckpointContents contents;
    contents.values = [](const TensorSpec& s) { return std::vector<float>(size_t(s.numel()), 0.5f); };
    contents.indices = [&](const TensorSpec& s) {
      std::vector<int64_t> v(size_t(s.numel()), 0);
      if (s.init == InitKind::token_map) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(i);
        v[7] = bad == "range" ? c.vocab_size : 9;  // out of range / canonical id 7 unused
      } else {
        for (size_t i = 0; i < v.size(); ++i) v[i] = int64_t(i % size_t(s.shape[1]));
      }
      return v;
    };
    WriteOptions wo;
    wo.force = true;
    write_checkpoint(c, contents, dir.path.string(), 0, wo);
    try {
      load_checkpoint(dir.path.string());
      ADD_FAILURE() << bad << ": loaded";
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("engram.token_map"), std::string::npos) << m;
      EXPECT_NE(m.find(bad == "range" ? "outside [0, vocab_size" : "canonical id 7 is never used"), std::string::npos) << m;
    }
  }
}

TEST(EngramCheckpoint, TableSizedForOtherPrimesIsRejected) {
  TempDir dir;
  WriteOptions wo;
  wo.force = true;
  write_random_checkpoint(engram_tiny(), 5, dir.path.string(), 0, wo);
  // The config now asks for tables from 71 rows: every prime, and so every table shape, moves.
  const fs::path cfg = dir.path / "config.json";
  std::stringstream text;
  text << std::ifstream(cfg).rdbuf();
  std::string j = text.str();
  const std::string from = "\"vocab_size\":[61,67]";
  ASSERT_NE(j.find(from), std::string::npos) << j;
  j.replace(j.find(from), from.size(), "\"vocab_size\":[71,67]");
  std::ofstream(cfg) << j;
  try {
    load_checkpoint(dir.path.string());
    ADD_FAILURE() << "loaded";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("engram.table.weight"), std::string::npos) << m;
    EXPECT_NE(m.find("expected shape"), std::string::npos) << m;
  }
}

// ---- forward --------------------------------------------------------------------------------

TEST(EngramModel, ChunkedPrefillAndDecodeEqualOneFullPrefill) {
  Model m(make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32}));
  const auto ids = prompt(150, 1);
  Sequence full = m.new_sequence();
  std::vector<int64_t> rows(ids.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i);
  const auto all = m.forward(full, ids.data(), int64_t(ids.size()), rows).logits;
  const int64_t V = m.config().vocab_size;
  auto row = [&](int64_t r) { return std::vector<float>(all.begin() + r * V, all.begin() + (r + 1) * V); };
  for (int64_t chunk : {1, 2, 5, 64}) {
    Sequence s = m.new_sequence();
    const auto last = m.prefill(s, ids, chunk);
    EXPECT_TRUE(test::all_close(last, row(149), logits_tol(last))) << "chunk " << chunk;
  }
  Sequence s = m.new_sequence();
  auto logits = m.prefill(s, std::vector<int32_t>(ids.begin(), ids.begin() + 100), 100);
  for (int64_t t = 100; t < 150; ++t) {
    logits = m.decode(s, ids[size_t(t)]);
    ASSERT_TRUE(test::all_close(logits, row(t), logits_tol(logits))) << "position " << t;
  }
}

TEST(EngramModel, ChangesTheLogitsAndAZeroValueProjectionRemovesIt) {
  const auto ids = prompt(60, 2);
  auto run = [&](ModelWeights w) {
    Model m(make_reference_backend(std::move(w), {Numerics::exact, KvLayout::f32}));
    Sequence s = m.new_sequence();
    return m.prefill(s, ids, 16);
  };
  const auto with = run(engram_weights());
  const auto without = run(without_engram(engram_weights()));
  EXPECT_GT(max_abs_diff(with, without), 1e-3 * test::max_abs(without)) << "Engram has no effect";
  // v = 0 -> V = 0 -> Z = RMSNorm(0) = 0 -> SiLU(0) = 0: Y = 0, the model without Engram exactly.
  ModelWeights zero = engram_weights();
  for (int64_t l : zero.config.engram.layer_ids) {
    auto& e = zero.layers[size_t(l)].engram;
    std::fill(e.value_w.begin(), e.value_w.end(), 0.0f);
    std::fill(e.value_b.begin(), e.value_b.end(), 0.0f);
  }
  EXPECT_EQ(run(std::move(zero)), without);
}

TEST(EngramModel, PrefetchedAndDirectLookupsAgreeBitwise) {
  auto backend = make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32});
  const auto& c = backend->config();
  const auto ids = prompt(20, 4);
  const int64_t n = int64_t(ids.size()), W = c.hc_mult * c.dim;
  std::vector<float> x(size_t(n * W));
  std::mt19937 g(9);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(g);
  auto h1 = backend->alloc(n, W), h2 = backend->alloc(n, W);
  backend->upload(*h1, x.data());
  backend->upload(*h2, x.data());
  auto c1 = backend->new_cache(2), c2 = backend->new_cache(2);
  backend->engram_prefetch(2, ids.data(), n, *c1);
  backend->engram(2, ids.data(), n, *h1, *c1);
  backend->engram(2, ids.data(), n, *h2, *c2);
  std::vector<float> y1(x.size()), y2(x.size());
  backend->download(*h1, y1.data());
  backend->download(*h2, y2.data());
  EXPECT_EQ(y1, y2);
  EXPECT_NE(y1, x);
  // A prefetch for other ids is not used.
  auto h3 = backend->alloc(n, W);
  backend->upload(*h3, x.data());
  auto c3 = backend->new_cache(2);
  std::vector<int32_t> other = ids;
  other[0] = other[0] + 1;
  backend->engram_prefetch(2, other.data(), n, *c3);
  backend->engram(2, ids.data(), n, *h3, *c3);
  std::vector<float> y3(x.size());
  backend->download(*h3, y3.data());
  EXPECT_EQ(y3, y1);
  EXPECT_THROW(backend->engram(1, ids.data(), n, *h3, *c3), InputError) << "layer 1 has no Engram";
  // The first prefetch ran on its own thread and was consumed; the mismatched one was not.
  const EngramPrefetchStats st = backend->engram_prefetch_stats();
  EXPECT_EQ(st.lookups, 1);
  EXPECT_GT(st.lookup_seconds, 0.0);
  EXPECT_GE(st.wait_seconds, 0.0);
}

// The model prefetches every Engram layer's lookup before layer 0 runs: each forward consumes
// one prefetched lookup per Engram layer, and the logits are those of direct lookups.
TEST(EngramModel, ForwardsConsumeOnePrefetchPerEngramLayer) {
  Model m(make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32}));
  const auto ids = prompt(90, 12);
  Sequence s = m.new_sequence();
  const std::vector<int32_t> head(ids.begin(), ids.begin() + 80);
  m.prefill(s, head, 32);  // 3 chunks
  for (size_t t = 80; t < ids.size(); ++t) m.decode(s, ids[t]);
  const int64_t forwards = 3 + int64_t(ids.size() - 80);
  const EngramPrefetchStats st = m.backend().engram_prefetch_stats();
  EXPECT_EQ(st.lookups, forwards * int64_t(m.config().engram.layer_ids.size()));
  EXPECT_GT(st.lookup_seconds, 0.0);
  EXPECT_LE(st.hidden_fraction(), 1.0);
}

TEST(EngramModel, F64BackendAgreesToRounding) {
  Model f(make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32}));
  Model d(make_f64_backend(engram_weights()));
  const auto ids = prompt(80, 6);
  Sequence sf = f.new_sequence(), sd = d.new_sequence();
  const auto lf = f.prefill(sf, ids, 32), ld = d.prefill(sd, ids, 32);
  const double diff = max_abs_diff(lf, ld);
  EXPECT_LT(diff, logits_tol(ld));
  EXPECT_GT(diff, 0.0);
}

TEST(EngramModel, CacheBytesCountTheHistories) {
  Model m(make_reference_backend(engram_weights(), {Numerics::exact, KvLayout::f32}));
  Model plain(make_reference_backend(without_engram(engram_weights()), {Numerics::exact, KvLayout::f32}));
  const Sequence a = m.new_sequence(), b = plain.new_sequence();
  const auto& g = m.config().engram;
  const int64_t per_layer = (g.max_ngram - 1) * int64_t(sizeof(int32_t)) +
                            g.history_rows() * m.config().hc_mult * m.config().dim * int64_t(sizeof(float));
  EXPECT_EQ(a.cache_bytes() - b.cache_bytes(), int64_t(g.layer_ids.size()) * per_layer);
}

}  // namespace
}  // namespace dsv4
