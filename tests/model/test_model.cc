// model/model: the V4 forward on the reference backend, from a `dsv4 init` checkpoint of the
// tiny preset (window-only, CSA and HCA layers, hash- and score-routed MoE, MTP).
// One full prefill == prefill in chunks == prefill then decode; sequences are independent;
// generation is deterministic; MTP runs on its own cache.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "model/checkpoint.h"
#include "model/model.h"
#include "model/sampler.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// One random tiny checkpoint for the whole suite.
const ModelWeights& tiny_weights() {
  static const ModelWeights w = test::tiny_checkpoint_weights(1234, "model-test");
  return w;
}

Model tiny_model(Numerics n = Numerics::exact, KvLayout l = KvLayout::f32) {
  return Model(make_reference_backend(tiny_weights(), {n, l}));
}

std::vector<int32_t> tokens(int64_t n, uint64_t seed) { return test::tiny_tokens(n, seed); }
using test::max_abs;

// Chunked and full prefills differ only in GEMM-vs-GEMV rounding: a few float roundings per
// reduction, propagated through 4 layers and the head (a reduction over D = 256). Bound:
// reduction_tol<float>(D * layers, max|logit|) with the usual safety factor.
double logits_tol(const std::vector<float>& ref) {
  const auto& c = config_preset("v4-tiny");
  return test::reduction_tol<float>(double(c.dim * c.n_layers), max_abs(ref)) * 16;
}

TEST(Model, ChunkedPrefillAndDecodeEqualOneFullPrefill) {
  Model m = tiny_model();
  const auto ids = tokens(300, 1);  // 2 HCA blocks + 44, past the 128 window
  Sequence full = m.new_sequence();
  std::vector<int64_t> rows(ids.size());
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(i);
  const auto all = m.forward(full, ids.data(), int64_t(ids.size()), rows).logits;
  const int64_t V = m.config().vocab_size;
  auto row = [&](int64_t r) { return std::vector<float>(all.begin() + r * V, all.begin() + (r + 1) * V); };
  for (int64_t chunk : {1, 7, 64, 129, 300}) {
    Sequence s = m.new_sequence();
    const auto last = m.prefill(s, ids, chunk);
    EXPECT_EQ(s.pos, 300);
    EXPECT_TRUE(test::all_close(last, row(299), logits_tol(last))) << "chunk " << chunk;
  }
  // prefill 200, then decode one by one: every decoded position equals the full prefill's row
  Sequence s = m.new_sequence();
  auto logits = m.prefill(s, std::vector<int32_t>(ids.begin(), ids.begin() + 200), 200);
  EXPECT_TRUE(test::all_close(logits, row(199), logits_tol(logits)));
  for (int64_t t = 200; t < 300; ++t) {
    logits = m.decode(s, ids[size_t(t)]);
    ASSERT_TRUE(test::all_close(logits, row(t), logits_tol(logits))) << "position " << t;
  }
}

TEST(Model, OfficialNumericsChunkingAgreesToQuantisationNoise) {
  // Under FP8/FP4 simulation a rounding difference between chunkings can move a value by one
  // FP8 step (6 %), so the logits agree only to a few percent of their scale; the top token
  // must not change.
  Model m = tiny_model(Numerics::official);
  const auto ids = tokens(260, 2);
  Sequence a = m.new_sequence(), b = m.new_sequence();
  const auto la = m.prefill(a, ids, 260), lb = m.prefill(b, ids, 16);
  EXPECT_TRUE(test::all_close(la, lb, 0.05 * max_abs(la)));
  EXPECT_EQ(std::max_element(la.begin(), la.end()) - la.begin(), std::max_element(lb.begin(), lb.end()) - lb.begin());
}

TEST(Model, SequencesAreIndependent) {
  Model m = tiny_model();
  const auto a = tokens(150, 3), b = tokens(40, 4);
  Sequence sa = m.new_sequence(), sb = m.new_sequence(), alone = m.new_sequence();
  // interleave two sequences of different lengths
  m.prefill(sa, std::vector<int32_t>(a.begin(), a.begin() + 100), 50);
  m.prefill(sb, b, 8);
  const auto la = m.prefill(sa, std::vector<int32_t>(a.begin() + 100, a.end()), 50);
  const auto lalone = m.prefill(alone, a, 50);
  EXPECT_TRUE(test::bitwise_equal(la, lalone));
}

TEST(Model, HiddenStatesAndCacheGrowth) {
  Model m = tiny_model(Numerics::official, KvLayout::fp8);
  const auto ids = tokens(130, 5);
  Sequence s = m.new_sequence();
  const auto out = m.forward(s, ids.data(), 130, {129}, true);
  const auto& c = m.config();
  ASSERT_EQ(int64_t(out.hidden.size()), c.n_layers);
  for (const auto& h : out.hidden) {
    EXPECT_EQ(int64_t(h.size()), 130 * c.hc_mult * c.dim);
    for (float v : h) ASSERT_TRUE(std::isfinite(v));
  }
  // the cache holds what kv_bytes_analytic says (main layers) plus the MTP layer's window
  const KvBytes a = kv_bytes_analytic(c, 130, KvLayout::fp8);
  int64_t main = 0;
  for (const auto& l : s.layers) main += l->bytes();
  EXPECT_EQ(main, a.total());
}

TEST(Model, MtpRunsOnItsOwnCache) {
  Model m = tiny_model();
  const auto ids = tokens(20, 6);
  Sequence s = m.new_sequence();
  m.forward(s, ids.data(), 19, {18}, /*want_hidden=*/true);  // MTP reads every row's final state
  const auto logits = m.mtp_forward(s, 0, ids.data() + 1, 19);
  EXPECT_EQ(int64_t(logits.size()), 19 * m.config().vocab_size);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(s.mtp[0]->position(), 19);
  EXPECT_THROW(m.mtp_forward(s, 0, ids.data(), 3), InputError);  // needs the 19 rows
  m.forward(s, ids.data() + 19, 1, {});  // no final rows computed: nothing for MTP to read
  EXPECT_THROW(m.mtp_forward(s, 0, ids.data(), 1), InputError);
}

TEST(Model, GenerationIsDeterministic) {
  Model m = tiny_model(Numerics::official);
  const auto prompt = tokens(37, 7);
  SamplingParams g;
  g.max_tokens = 12;
  const auto a = generate(m, prompt, g), b = generate(m, prompt, g);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens.size(), 12u);
  SamplingParams t = g;
  t.temperature = 0.8;
  t.top_p = 0.9;
  t.seed = 99;
  EXPECT_EQ(generate(m, prompt, t).tokens, generate(m, prompt, t).tokens);
  // a stop token ends generation right after it is emitted
  SamplingParams st = g;
  st.stop_ids = {a.tokens[3]};
  const auto c = generate(m, prompt, st);
  EXPECT_TRUE(c.stopped);
  EXPECT_LE(c.tokens.size(), 4u);
  EXPECT_EQ(c.tokens.back(), a.tokens[3]);
}

// The fp64 backend (make_f64_backend) runs the same ops in double: its logits differ from the
// float backend's (exact numerics) by float rounding only (logits_tol), are not bit-equal
// (it really computes in double), and are deterministic.
TEST(ModelF64, AgreesWithTheFloatBackendToRounding) {
  Model f = tiny_model();
  Model d(make_f64_backend(tiny_weights()));
  EXPECT_EQ(d.backend().name(), "ref-f64");
  const auto ids = tokens(200, 11);
  Sequence sf = f.new_sequence(), sd = d.new_sequence(), sd2 = d.new_sequence();
  const auto lf = f.prefill(sf, ids, 64), ld = d.prefill(sd, ids, 64), ld2 = d.prefill(sd2, ids, 64);
  const double tol = logits_tol(ld);
  double max_diff = 0;
  for (size_t i = 0; i < lf.size(); ++i) max_diff = std::max(max_diff, std::fabs(double(lf[i]) - double(ld[i])));
  EXPECT_LT(max_diff, tol);
  EXPECT_GT(max_diff, 0.0);
  EXPECT_EQ(ld, ld2) << "the fp64 backend is deterministic";
}

// forward(..., trace): every layer at every distinct logit row, without changing the logits;
// the indexer's scores cover every key at the chunk's end (invisible ones -inf), the window
// and the compressed entries are exactly the row's visible set.
TEST(ModelTrace, RecordsEveryLayerAtTheLogitRows) {
  Model m = tiny_model();
  const auto& c = m.config();
  const int64_t n = 300;
  const auto ids = tokens(n, 12);
  Sequence s1 = m.new_sequence(), s2 = m.new_sequence();
  const auto plain = m.forward(s1, ids.data(), n, {299, 150});
  const auto traced = m.forward(s2, ids.data(), n, {299, 150}, false, /*trace=*/true);
  EXPECT_EQ(plain.logits, traced.logits);
  ASSERT_EQ(int64_t(traced.trace.size()), 2 * c.n_layers);
  for (const AttentionTrace& t : traced.trace) {
    const auto sh = c.attention_shape(t.layer);
    EXPECT_TRUE(t.traced);
    EXPECT_EQ(int64_t(t.output.size()), c.dim);
    EXPECT_TRUE(t.row == 150 || t.row == 299);
    const int64_t pos = t.row;
    EXPECT_EQ(int64_t(t.detail.window.size()), std::min<int64_t>(pos + 1, sh.window));
    EXPECT_EQ(t.detail.window.back(), pos);
    const size_t rows = t.detail.window.size() + t.detail.entries.size();
    EXPECT_EQ(t.detail.weights.size(), size_t(sh.heads) * rows);
    if (sh.ratio == kHcaRatio) {
      EXPECT_EQ(int64_t(t.detail.entries.size()), (pos + 1) / kHcaRatio);
    }
    if (sh.ratio == kCsaRatio) {
      EXPECT_EQ(int64_t(t.detail.index_scores.size()), n / kCsaRatio);  // keys at the chunk's end
      int64_t finite = 0;
      for (double v : t.detail.index_scores) finite += std::isfinite(v);
      EXPECT_EQ(finite, (pos + 1) / kCsaRatio);  // visible: 4 j + 3 <= pos
      EXPECT_EQ(int64_t(t.detail.selected.size()), sh.index_topk);
      for (int64_t e : t.detail.entries) EXPECT_LE(kCsaRatio * e + kCsaRatio - 1, pos);
    }
    if (sh.ratio == 0) {
      EXPECT_TRUE(t.detail.entries.empty());
    }
  }
}

TEST(Model, BadTokenIdsAreRejected) {
  Model m = tiny_model();
  Sequence s = m.new_sequence();
  const int32_t bad[] = {5, 4096};
  EXPECT_THROW(m.forward(s, bad, 2, {1}), InputError);
}

TEST(Model, DecodeSpeedOnTheTinyPreset) {
  Model m = tiny_model(Numerics::official, KvLayout::fp8);
  Sequence s = m.new_sequence();
  m.prefill(s, tokens(256, 8), 256);
  const auto t0 = std::chrono::steady_clock::now();
  const int n = 32;
  for (int i = 0; i < n; ++i) m.decode(s, 100 + i);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("v4-tiny decode at context 256..288: %.1f tokens/s (reference backend, 1 thread)\n", n / sec);
  RecordProperty("decode_tokens_per_s", std::to_string(n / sec));
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// Under official numerics every cached value is on the FP8 (main entries, dims 0:448) or
// FP4 (indexer keys) grid, and both grids are exactly representable in BF16. So the BF16
// layout and the 584 B / 68 B deployment layout hold the same values, bit for bit: the FP8
// encodings lose nothing. Against the f32 layout they differ only by the BF16 rounding of
// the 64 RoPE dims of each entry (the official code keeps them in BF16 too).
TEST(ModelKvLayouts, DeploymentLayoutReproducesTheSimulation) {
  const auto ids = tokens(300, 9);
  auto run = [&](KvLayout l) {
    Model m = tiny_model(Numerics::official, l);
    Sequence s = m.new_sequence();
    m.prefill(s, std::vector<int32_t>(ids.begin(), ids.begin() + 260), 64);
    std::vector<float> all;
    for (size_t t = 260; t < ids.size(); ++t) {
      const auto lg = m.decode(s, ids[t]);
      all.insert(all.end(), lg.begin(), lg.end());
    }
    return all;
  };
  const auto fp8 = run(KvLayout::fp8), bf16 = run(KvLayout::bf16), f32 = run(KvLayout::f32);
  EXPECT_TRUE(test::bitwise_equal(fp8, bf16));
  // BF16 rounding of RoPE dims moves scores by ~2^-9 relative; allow 2 % of the logit scale.
  EXPECT_TRUE(test::all_close(fp8, f32, 0.02 * max_abs(f32)));
}

}  // namespace
}  // namespace dsv4
