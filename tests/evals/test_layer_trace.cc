// evals/degradation/layer_trace and the engine's trace path (EngineModel::trace, the fp64
// reference backend, Model::forward's trace), against the recall probe's predictions
// (/work/shared/docs/probe-models.md):
//   the traced needle mass of the retrieval layer equals the closed form (exact numerics,
//   both paths; FP8 bound with official numerics), the indexer keeps both needle entries and
//   its top-k recall against fp64 is 1 on a clean haystack, the fp32 path agrees with fp64
//   to rounding while the FP8/FP4 simulation shows a visible drift;
//   topk_recall / relative_error / needle_mass on hand-made inputs;
//   a degradation run killed midway resumes to the same metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "evals/degradation/layer_trace.h"
#include "evals/engine_backend.h"
#include "evals/recall/probe_tokens.h"
#include "evals/runner.h"
#include "model/probe.h"
#include "reference/constants.h"
#include "tests/support/tolerance.h"

namespace dsv4::evals {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- the metric helpers ------------------------------------------------------------------

TEST(TopkRecall, CountsTiesAndIgnoresPads) {
  // scores of entries 0..5; entry 4 is not visible
  const std::vector<double> exact{5, 1, 3, 3, -INFINITY, 0};
  EXPECT_EQ(topk_recall({0, 2}, exact), 1.0);      // the exact top-2 (0, then a tie at 3)
  EXPECT_EQ(topk_recall({0, 3}, exact), 1.0);      // the other member of the tie also counts
  EXPECT_EQ(topk_recall({0, 1}, exact), 0.5);      // 1 scores below the 2nd best (3)
  EXPECT_EQ(topk_recall({2, 3, -1}, exact), 1.0);  // pads ignored: k = 2 picks
  EXPECT_EQ(topk_recall({4, 5}, exact), 0.0);      // invisible and low
  EXPECT_TRUE(std::isnan(topk_recall({-1, -1}, exact)));
  EXPECT_TRUE(std::isnan(topk_recall({0}, {})));
}

TEST(RelativeError, DefinedOnlyAboveTheZeroFloor) {
  EXPECT_NEAR(relative_error({1.1f, 2.0f}, {1.0f, 2.0f}, 0), 0.1 / std::sqrt(5.0), 1e-7);
  EXPECT_EQ(relative_error({3.0f}, {3.0f}, 0), 0.0);
  EXPECT_TRUE(std::isnan(relative_error({1e-3f}, {1e-9f}, kZeroOutputRms)));
  EXPECT_NEAR(rms_difference({1, 2}, {0, 0}), std::sqrt(2.5), 1e-12);
}

TEST(NeedleMass, CountsTheRowsThatHoldThePosition) {
  LayerTrace l;
  l.ratio = kCsaRatio;
  l.heads = 2;
  l.window = {200, 201};
  l.entries = {3, 24, 25};  // position 97 is in block 24: entries 24 and 25 pool it
  l.weights = {0.1, 0.0, 0.2, 0.3, 0.1,   // head 0: entries 24 + 25 = 0.4
               0.0, 0.0, 0.0, 0.05, 0.6};  // head 1: 0.65
  EXPECT_NEAR(needle_mass(l, 97), 0.65, 1e-15);
  EXPECT_NEAR(needle_mass(l, 200), 0.1, 1e-15);  // the window row only
  l.ratio = kHcaRatio;
  l.entries = {0, 1, 2};  // position 300 is in entry 2
  EXPECT_NEAR(needle_mass(l, 300), 0.6, 1e-15);
  l.weights.pop_back();
  EXPECT_TRUE(std::isnan(needle_mass(l, 300)));
}

// ---- the engine's trace on probes -----------------------------------------------------------

struct ProbeDir {
  ProbeKnobs knobs;
  ProbeModel m;
  std::string dir;
  ProbeDir(ProbeRetrieval r, bool quant, int64_t topk) {
    knobs.retrieval = r;
    knobs.quant = quant;
    knobs.topk = topk;
    m = build_probe(knobs);
    dir = (fs::temp_directory_path() /
           ("dsv4-trace-" + probe_retrieval_name(r) + std::to_string(quant) + "-" + std::to_string(topk) + "-" +
            std::to_string(std::random_device{}())))
              .string();
    WriteOptions o;
    o.force = true;
    write_probe_checkpoint(knobs, dir, o);
  }
  ~ProbeDir() { fs::remove_all(dir); }
  EngineModel engine() const {
    EngineOptions o;
    o.numerics = knobs.quant ? "official" : "exact";
    o.chunk = 256;  // the trace crosses chunks
    return EngineModel(dir, o);
  }
  // A clean haystack of T tokens ending with key 7; its value (value 9) at vpos.
  std::vector<int32_t> prompt(int64_t T, int64_t vpos) const {
    std::mt19937_64 g(99);
    std::vector<int32_t> ids(static_cast<size_t>(T));
    for (auto& t : ids) t = int32_t(m.vocab.filler0 + int64_t(g() % uint64_t(knobs.fillers)));
    ids[size_t(vpos - 1)] = int32_t(m.vocab.key0 + 7);
    ids[size_t(vpos)] = int32_t(m.vocab.value0 + 9);
    ids.back() = int32_t(m.vocab.key0 + 7);
    return ids;
  }
};

// Exact numerics: the traced mass differs from the closed form only through the RMSNorm eps
// terms and rounding (the bound of tests/model/test_probe.cc: 1e-3 relative on 1 - pi). The
// fp32 and fp64 paths then run the same math: their logits differ by float rounding through
// two layers and the head, bounded by reduction_tol<float> over the longest reduction (the
// head's D = 256 products, each from attention over <= T rows), relative to the logit norm.
TEST(LayerTraceEngine, ExactProbeMatchesTheClosedFormOnBothPaths) {
  constexpr double kComplementTol = 1e-3;
  constexpr int64_t T = 512, vpos = T / 3 + 1;
  struct Case {
    ProbeRetrieval r;
    int64_t topk;
  };
  for (const Case& c : {Case{ProbeRetrieval::csa, 64}, Case{ProbeRetrieval::hca, 512}}) {
    const ProbeDir p(c.r, /*quant=*/false, c.topk);
    EngineModel e = p.engine();
    const auto ids = p.prompt(T, vpos);
    const PromptTrace dep = e.trace(ids, TracePath::deployment), ref = e.trace(ids, TracePath::reference);
    ASSERT_EQ(dep.layers.size(), 2u);
    ASSERT_EQ(ref.layers.size(), 2u);
    const double want = probe_needle_mass(c.r, p.knobs.S, T, c.topk);
    for (const PromptTrace* t : {&dep, &ref}) {
      const LayerTrace& l1 = t->layers[1];
      EXPECT_EQ(int64_t(l1.window.size()), kWindow);
      const double got = needle_mass(l1, vpos);
      EXPECT_NEAR((1 - got) / (1 - want), 1.0, kComplementTol) << probe_retrieval_name(c.r) << " mass " << got;
      for (int64_t h = 0; h < l1.heads; ++h) {  // weights are a distribution minus the sink's share
        double sum = 0;
        const size_t n = l1.window.size() + l1.entries.size();
        for (size_t i = 0; i < n; ++i) sum += l1.weights[size_t(h) * n + i];
        EXPECT_LE(sum, 1.0 + 1e-12);
        EXPECT_GT(sum, 0.0);
      }
    }
    if (c.r == ProbeRetrieval::csa) {
      const LayerTrace& l1 = dep.layers[1];
      EXPECT_EQ(int64_t(l1.index_scores.size()), T / kCsaRatio);
      EXPECT_EQ(int64_t(l1.selected.size()), c.topk);
      for (int32_t j : {int32_t(vpos / kCsaRatio), int32_t(vpos / kCsaRatio + 1)})
        EXPECT_NE(std::find(l1.selected.begin(), l1.selected.end(), j), l1.selected.end()) << "entry " << j;
      EXPECT_EQ(topk_recall(l1.selected, ref.layers[1].index_scores), 1.0);
    } else {
      EXPECT_EQ(int64_t(dep.layers[1].entries.size()), T / kHcaRatio);  // HCA: every visible entry
    }
    double norm = 0;
    for (float v : ref.logits) norm += double(v) * v;
    const double tol = test::reduction_tol<float>(double(kProbeDim) * double(T)) * 16;
    const double err = relative_error(dep.logits, ref.logits, 0);
    EXPECT_LT(err, tol) << "fp32 vs fp64, " << probe_retrieval_name(c.r);
    EXPECT_GT(err, 0.0) << "the reference must not be the float path itself";
    EXPECT_GT(norm, 0.0);
    EXPECT_EQ(dep.kv_bytes > 0, true);
    EXPECT_GT(dep.decode_flops, 0.0);
  }
}

// Official numerics: FP8 weights, activations and entries, FP4 indexer keys. The needle score
// S <a, a> has two FP8-rounded factors (relative <= 2^-4 each), so the mass lies between the
// closed forms at S -+ 2 * 2^-4 * S; and the deployment logits now differ from fp64 by far
// more than rounding: each logit is <b_v, y> with y carrying FP8-rounded payload (relative
// error up to 2^-4 per element, ~2^-4 / sqrt(3) RMS), so the relative error is well above
// 1e-3 and below 2^-4 * 2 (two FP8 factors).
TEST(LayerTraceEngine, OfficialNumericsShowTheQuantisationDrift) {
  constexpr int64_t T = 512, vpos = T / 3 + 1;
  const ProbeDir p(ProbeRetrieval::csa, /*quant=*/true, 512);
  EngineModel e = p.engine();
  const auto ids = p.prompt(T, vpos);
  const PromptTrace dep = e.trace(ids, TracePath::deployment), ref = e.trace(ids, TracePath::reference);
  const double S = p.knobs.S, dS = 2 * std::ldexp(1.0, -4) * S;
  const double got = needle_mass(dep.layers[1], vpos);
  EXPECT_GE(got, probe_needle_mass(ProbeRetrieval::csa, S - dS, T, 512));
  EXPECT_LE(got, probe_needle_mass(ProbeRetrieval::csa, S + dS, T, 512));
  const double err = relative_error(dep.logits, ref.logits, 0);
  EXPECT_GT(err, 1e-3);
  EXPECT_LT(err, 2 * std::ldexp(1.0, -4));
  EXPECT_EQ(topk_recall(dep.layers[1].selected, ref.layers[1].index_scores), 1.0);  // 128 entries < k
}

// ---- a degradation run: metrics in results.json, resume after a kill ------------------------

// metrics_by_length without the timing metric (wall time differs between runs).
json::array deterministic_metrics(const json::object& results) {
  json::array out;
  for (const auto& t : results.at("tasks").as_array())
    for (const auto& m : t.as_object().at("metrics_by_length").as_array())
      if (m.as_object().at("metric").as_string() != "reference_seconds") out.push_back(m);
  return out;
}

TEST(LayerTraceRun, MetricsAggregateAndAKilledRunResumes) {
  const ProbeDir p(ProbeRetrieval::hca, /*quant=*/false, 512);
  EngineModel e = p.engine();
  const ProbeTokens tokens = read_probe_tokens(p.dir + "/probe.json");
  const std::string base = p.dir + "-runs";
  RunConfig c;
  c.suite = "degradation";
  c.tasks = {"layer_trace"};
  c.lengths = {512};
  c.depths = {0.25, 1.0};  // 1.0: the needle in the window (no closed form there)
  c.samples = 1;
  c.format = PromptFormat::probe;
  c.model_dir = p.dir;
  c.checkpoint_hash = "0";
  c.progress = RunConfig::Progress::none;
  c.out = base + "/whole";
  const RunSummary whole = run_eval(c, e, &tokens);
  ASSERT_TRUE(whole.complete);
  const json::array wm = deterministic_metrics(whole.results);
  bool saw_predicted = false;
  for (const auto& mv : wm) {
    const auto& m = mv.as_object();
    if (m.at("metric").as_string() == "needle_mass_predicted") {
      saw_predicted = true;
      EXPECT_EQ(m.at("n").as_int64(), 1);  // only the depth-0.25 sample
    }
    if (m.at("metric").as_string() == "attn_rel_err.L0") {  // a key token: structurally zero
      EXPECT_EQ(m.at("n_na").as_int64(), 2);
      EXPECT_TRUE(m.at("mean").is_null());
    }
    if (m.at("metric").as_string() == "recall") {
      EXPECT_EQ(m.at("mean").to_number<double>(), 1.0);
    }
  }
  EXPECT_TRUE(saw_predicted);

  c.out = base + "/cut";
  c.stop_after = 1;
  EXPECT_FALSE(run_eval(c, e, &tokens).complete);
  c.stop_after = -1;
  const RunSummary resumed = run_eval(c, e, &tokens);
  ASSERT_TRUE(resumed.complete);
  EXPECT_EQ(resumed.resumed, 1);
  EXPECT_EQ(deterministic_metrics(resumed.results), wm);
  fs::remove_all(base);
}

}  // namespace
}  // namespace dsv4::evals
