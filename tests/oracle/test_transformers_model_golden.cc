// Outside oracle for the WHOLE model: Hugging Face transformers' DeepseekV4ForCausalLM.
//
// tests/data/transformers_v4_model/ is written by tests/oracle/gen_transformers_model_golden.py
// (docs/oracles.md, "Whole-model golden": versions, probes, every difference from DeepSeek's
// official code that matters for logits and how the golden avoids it):
//   ckpt/               a tiny random DeepseekV4ForCausalLM saved by save_pretrained
//                       (transformers' names and config.json; float32 weights)
//   golden.safetensors  prompt [T] (T > 300), tokens [G = 20] (the port's greedy continuation),
//                       logits [T + G - 1, V] F64 (row t: the logits after token t of
//                       prompt ++ tokens[:G-1], from the port run in float64)
// Layers: window-only, CSA (top-k < visible entries), HCA (2 complete blocks in the prompt, the
// third completes during decode), CSA; layers 0-1 hash-routed, 2-3 score-routed; SwiGLU clamp
// engaged in routed and shared experts.
//
// We load ckpt/ through load_checkpoint (the transformers name map), run Model on the
// reference backend with Numerics::exact (no quantisation simulation, as transformers) in
// float32 and check: every prompt row of one full prefill, a chunked prefill + decode path
// (every row), and greedy generation of 20 tokens (exact).
//
// Tolerance (derivation). The golden is float64 math (the generator replaces the steps the port
// keeps in float32, checks the replacements against the shipped ones, and checks the golden
// against the shipped port); its own error is negligible (reduction_tol<double> terms below).
// Ours is float32. A length-K reduction errs by <= kSafety sqrt(K) u32 relative to the scale
// of its result (tests/support/tolerance.h: random-sign terms, kSafety covers the norm / exp /
// division that follow it). The logits are the end of a chain of such reductions: per block
// two sub-layers (attention, MoE), each entered through an mHC pre-mix and left through a
// post-mix, then hc_head -> norm -> head. Every stage passes the relative error of its input
// on at most unchanged (RMSNorms renormalise, the softmaxes and Sinkhorn map to convex
// combinations, the post-mix is a convex combination plus the sub-layer output) and adds its
// own; so after the chain the relative error is <= n_stages * kSafety sqrt(K) u32, with
//   n_stages = 2 L (sub-layers) + 1 (head),
//   K        = the longest reduction anywhere: max(hc_mult D [the mHC projection and RMS over
//              the flattened streams], H d / g [grouped wo_a], window + top-k [attention],
//              D [projections, the head's dot product]),
// and the scale is max |logit| of the golden. So
//   tol = n_stages * (reduction_tol<float>(K, max|logit|) + reduction_tol<double>(K, max|logit|)).
// For this golden: L = 4, K = 256, max|logit| = 4.4: tol = 9 * 8 * 16 * 2^-24 * 4.4 = 3.0e-4.
// The port's own float32 islands move its logits by 5.3e-6 (shipped port vs golden); our
// measured error is 3.5e-6 (printed by the tests); a semantic difference (routing, clamp,
// route scale, hash layers, window, top-k, YaRN, an epsilon) moves logits by 0.06 .. 2.
// Selections are stable: the generator requires relative CSA score gaps >= 1e-4 at the k-th
// entry and router gaps >= 1e-4, far above the float32 perturbation of the scores.
// Greedy: the golden's top-1 / top-2 margin on every greedy step must exceed kMarginFactor *
// tol (checked below), so exact agreement of the tokens is implied by the logit tolerance,
// not luck.
// A missing golden or checkpoint fails every test (never a skip).
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/sampler.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

const std::string kDir = DSV4_TEST_DATA_DIR "/transformers_v4_model";
const std::string kGoldenFile = kDir + "/golden.safetensors";
const std::string kCkpt = kDir + "/ckpt";
constexpr double kMarginFactor = 10.0;  // greedy margin must exceed this many tolerances

struct Golden {
  std::vector<int32_t> prompt, tokens;
  std::vector<double> logits;  // [rows, V]
  int64_t T = 0, G = 0, rows = 0, V = 0;
  boost::json::object config, probes, checks, versions;
  double max_logit = 0;
};

// Loaded once; a missing or malformed file is reported by every test that needs it.
struct Loaded {
  std::unique_ptr<Golden> golden;
  std::unique_ptr<ModelWeights> weights;
  LoadInfo info;
  std::string error;
};

std::vector<int32_t> to_i32(const std::vector<int64_t>& v) {
  return std::vector<int32_t>(v.begin(), v.end());
}

const Loaded& loaded() {
  static const Loaded L = [] {
    Loaded l;
    try {
      SafetensorsReader r(kGoldenFile);
      auto g = std::make_unique<Golden>();
      const TensorInfo* p = r.find("prompt");
      const TensorInfo* t = r.find("tokens");
      const TensorInfo* lg = r.find("logits");
      if (!p || !t || !lg) throw std::runtime_error("golden lacks prompt / tokens / logits");
      g->prompt = to_i32(r.read_int(*p));
      g->tokens = to_i32(r.read_int(*t));
      g->T = int64_t(g->prompt.size());
      g->G = int64_t(g->tokens.size());
      if (lg->shape.size() != 2 || lg->shape[0] != g->T + g->G - 1)
        throw std::runtime_error("logits have shape " + shape_string(lg->shape) + ", expected [T + G - 1, V]");
      g->rows = lg->shape[0];
      g->V = lg->shape[1];
      g->logits = r.read_float<double>(*lg);
      for (double v : g->logits) g->max_logit = std::max(g->max_logit, std::fabs(v));
      const auto& m = r.metadata();
      for (const char* k : {"config", "probes", "checks", "versions"})
        if (!m.count(k)) throw std::runtime_error(std::string("golden metadata has no '") + k + "'");
      g->config = boost::json::parse(m.at("config")).as_object();
      g->probes = boost::json::parse(m.at("probes")).as_object();
      g->checks = boost::json::parse(m.at("checks")).as_object();
      g->versions = boost::json::parse(m.at("versions")).as_object();
      l.golden = std::move(g);
      l.weights = std::make_unique<ModelWeights>(load_checkpoint(kCkpt, {}, &l.info));
    } catch (const std::exception& e) {
      l.error = e.what();
    }
    return l;
  }();
  return L;
}

// ASSERT-style access: fails the test (never skips) when the files are missing.
#define REQUIRE_GOLDEN()                                                                        \
  const Loaded& L = loaded();                                                                   \
  ASSERT_TRUE(L.error.empty() && L.golden && L.weights)                                         \
      << "cannot load the whole-model golden (" << kDir << "): " << L.error                     \
      << "\n(regenerate with tests/oracle/gen_transformers_model_golden.py, see docs/oracles.md)"; \
  const Golden& g = *L.golden;                                                                  \
  (void)g

Model make_model(const ModelWeights& w) {
  return Model(make_reference_backend(w, {Numerics::exact, KvLayout::f32}));
}

// The derivation is at the top of the file.
double logits_tol(const ModelConfig& c, const Golden& g) {
  const double stages = 2.0 * double(c.n_layers) + 1.0;
  const double K = std::max({double(c.hc_mult * c.dim), double(c.n_heads * c.head_dim / c.o_groups),
                             double(c.window + c.index_topk), double(c.dim)});
  return stages * (test::reduction_tol<float>(K, g.max_logit) + test::reduction_tol<double>(K, g.max_logit));
}

// Compares `got` [n, V] with golden rows [row0, row0 + n); returns the max |diff|.
double compare_rows(const std::vector<float>& got, const Golden& g, int64_t row0, int64_t n, double tol,
                    const std::string& what) {
  EXPECT_EQ(int64_t(got.size()), n * g.V) << what;
  if (int64_t(got.size()) != n * g.V) return std::numeric_limits<double>::infinity();
  const double* want = g.logits.data() + row0 * g.V;
  EXPECT_TRUE(test::all_close(got.data(), want, size_t(n * g.V), tol)) << what << ", rows " << row0 << ".."
                                                                        << row0 + n - 1 << ", tol " << tol;
  double worst = 0;
  for (int64_t i = 0; i < n * g.V; ++i) worst = std::max(worst, std::fabs(double(got[size_t(i)]) - want[i]));
  return worst;
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = i;
  return r;
}

int64_t num(const boost::json::object& o, const char* k) { return boost::json::value_to<int64_t>(o.at(k)); }

TEST(TransformersModelGolden, FileCheckpointAndProvenance) {
  REQUIRE_GOLDEN();
  const ModelConfig& c = L.weights->config;
  EXPECT_EQ(L.info.naming, "transformers") << "the checkpoint must be read through the transformers name map";
  EXPECT_EQ(c.n_mtp_layers, 0);
  // What the golden must cover.
  EXPECT_GT(g.T, 300);
  EXPECT_EQ(g.G, 20);
  EXPECT_EQ(g.V, c.vocab_size);
  EXPECT_EQ(c.compress_ratios, (std::vector<int64_t>{0, 4, 128, 4}));
  EXPECT_GE(g.T, 2 * 128) << "HCA needs two complete blocks in the prompt";
  EXPECT_LT(c.index_topk, g.T / 4) << "CSA selection must matter";
  EXPECT_GE(c.n_hash_layers, 1);
  EXPECT_LT(c.n_hash_layers, c.n_layers) << "score-routed layers must be covered too";
  EXPECT_EQ(c.score_func, ScoreFunc::sqrt_softplus);
  for (const auto& l : L.weights->layers)  // official semantics: no duplicated expert in a row
    for (int64_t v = 0; v < c.vocab_size && !l.tid2eid.empty(); ++v)
      for (int64_t a = 0; a < c.experts_per_token; ++a)
        for (int64_t b = a + 1; b < c.experts_per_token; ++b)
          ASSERT_NE(l.tid2eid[size_t(v * c.experts_per_token + a)], l.tid2eid[size_t(v * c.experts_per_token + b)]);
  // The file's config is the checkpoint's.
  EXPECT_EQ(num(g.config, "dim"), c.dim);
  EXPECT_EQ(num(g.config, "vocab"), c.vocab_size);
  EXPECT_EQ(num(g.config, "T"), g.T);
  EXPECT_EQ(num(g.config, "n_generate"), g.G);
  EXPECT_EQ(int64_t(g.config.at("ratios").as_array().size()), c.n_layers);
  EXPECT_EQ(num(g.config, "n_hash"), c.n_hash_layers);
  EXPECT_EQ(boost::json::value_to<double>(g.config.at("swiglu_limit")), c.swiglu_limit);
  // Provenance: pinned versions, probes passed.
  EXPECT_FALSE(g.versions.at("forced").as_bool()) << "golden generated with unpinned versions";
  for (const char* k : {"torch", "transformers", "safetensors"}) EXPECT_TRUE(g.versions.contains(k)) << k;
  EXPECT_TRUE(g.probes.at("all_ok").as_bool());
  EXPECT_TRUE(g.checks.at("port_generate_equals_manual_argmax").as_bool());
  EXPECT_TRUE(g.checks.at("shipped_port_greedy_tokens_equal").as_bool());
  // Golden tokens are the argmax of the golden logits (ties to the lower id).
  for (int64_t i = 0; i < g.G; ++i) {
    const double* row = g.logits.data() + (g.T - 1 + i) * g.V;
    EXPECT_EQ(std::max_element(row, row + g.V) - row, g.tokens[size_t(i)]) << "step " << i;
  }
}

// Exact greedy agreement is only meaningful if every greedy step's top-1 / top-2 margin is far
// above the logit tolerance.
TEST(TransformersModelGolden, GreedyMarginsExceedTheTolerance) {
  REQUIRE_GOLDEN();
  const double tol = logits_tol(L.weights->config, g);
  double worst = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < g.G; ++i) {
    std::vector<double> row(g.logits.begin() + (g.T - 1 + i) * g.V, g.logits.begin() + (g.T + i) * g.V);
    std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<>());
    worst = std::min(worst, row[0] - row[1]);
  }
  std::cout << "greedy min top-1/top-2 margin " << worst << ", tolerance " << tol << " (ratio " << worst / tol
            << ")\n";
  RecordProperty("greedy_margin_min", std::to_string(worst));
  EXPECT_GT(worst, kMarginFactor * tol);
}

TEST(TransformersModelGolden, FullPrefillMatchesEveryPromptRow) {
  REQUIRE_GOLDEN();
  const double tol = logits_tol(L.weights->config, g);
  Model m = make_model(*L.weights);
  Sequence s = m.new_sequence();
  const auto out = m.forward(s, g.prompt.data(), g.T, all_rows(g.T));
  const double worst = compare_rows(out.logits, g, 0, g.T, tol, "full prefill");
  std::cout << "full prefill: max |logit diff| " << worst << " over " << g.T << " rows, tol " << tol
            << ", max |logit| " << g.max_logit << "\n";
  RecordProperty("max_abs_diff", std::to_string(worst));
  RecordProperty("tolerance", std::to_string(tol));
}

// Prefill in uneven chunks (the CSA blocks, HCA blocks and the 128 window straddle chunk
// borders), every row's logits, then decode the golden tokens one at a time: every decode step
// (including t = 383, where the third HCA block completes) matches the golden row.
TEST(TransformersModelGolden, ChunkedPrefillAndDecodeMatchEveryRow) {
  REQUIRE_GOLDEN();
  const double tol = logits_tol(L.weights->config, g);
  Model m = make_model(*L.weights);
  Sequence s = m.new_sequence();
  double worst = 0;
  int64_t pos = 0;
  for (int64_t chunk : {1, 62, 129, 3, 100}) {
    const int64_t n = std::min(chunk, g.T - pos);
    const auto out = m.forward(s, g.prompt.data() + pos, n, all_rows(n));
    worst = std::max(worst, compare_rows(out.logits, g, pos, n, tol, "chunk at " + std::to_string(pos)));
    pos += n;
  }
  ASSERT_LT(pos, g.T);
  const std::vector<int32_t> rest(g.prompt.begin() + pos, g.prompt.end());
  const auto last = m.prefill(s, rest, 50);  // the rest of the prompt, chunks of 50: last row only
  worst = std::max(worst, compare_rows(last, g, g.T - 1, 1, tol, "prefill tail"));
  ASSERT_EQ(s.pos, g.T);
  for (int64_t i = 0; i + 1 < g.G; ++i) {
    const auto lg = m.decode(s, g.tokens[size_t(i)]);
    worst = std::max(worst, compare_rows(lg, g, g.T + i, 1, tol, "decode step " + std::to_string(i)));
  }
  std::cout << "chunked prefill + decode: max |logit diff| " << worst << ", tol " << tol << "\n";
  RecordProperty("max_abs_diff", std::to_string(worst));
}

TEST(TransformersModelGolden, GreedyGenerationMatchesExactly) {
  REQUIRE_GOLDEN();
  Model m = make_model(*L.weights);
  for (int64_t chunk : {512, 64}) {
    SamplingParams p;
    p.temperature = 0.0;
    p.max_tokens = g.G;
    p.prefill_chunk = chunk;
    const Generation gen = generate(m, g.prompt, p);
    EXPECT_EQ(gen.tokens, g.tokens) << "greedy generation with prefill chunk " << chunk;
    EXPECT_FALSE(gen.stopped);
  }
}

}  // namespace
}  // namespace dsv4
