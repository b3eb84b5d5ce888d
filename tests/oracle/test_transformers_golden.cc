// Outside oracle: the attention sub-layer of Hugging Face transformers' deepseek_v4 port.
//
// tests/data/transformers_v4_attn.safetensors is written by
// tests/oracle/gen_transformers_goldens.py (docs/oracles.md: versions, probes, every known
// difference from DeepSeek's official code). It holds, for a tiny random V4 model with one
// window-only (ratio 0), one CSA (ratio 4, top-k 16 < visible entries) and one HCA
// (ratio 128) layer and a prefill of T = 302 tokens: each layer's attention input
// `layers.L.attn_in` [T, D] (after attn_norm; float32, exact in both precisions), its output
// `layers.L.attn_out` [T, D] (float64), its weights under the official checkpoint names
// (float32, exact) and the CSA layer's selection `layers.1.attn.topk` [T, k] (-1 = none).
//
// We run ref::attention_layer_prefill with Numerics::exact (transformers simulates no
// quantisation) in float and in double and compare with attn_out, and compare the CSA
// selection as a set per row (the generator guarantees a relative score gap >= 1e-4 at the
// k-th entry, so the set is well defined; the order among selected entries does not change
// the attention output).
//
// Tolerances (derivation), per layer, with ymax = max |golden y| of the layer:
//   tol<T> = reduction_tol<double>(K, ymax) + reduction_tol<T>(K, ymax),
//   K = max(D, q_rank, d, (H/g) d, g r, window + visible compressed entries),
// the rounding of the golden's own float64 evaluation plus ours in T, over the longest
// reduction of the chain. The golden is float64 math: the generator replaces the steps
// transformers keeps in float32 even in a float64 model (RMSNorm, per-head q rsqrt, RoPE
// input, compressor softmax, float32 RoPE angles) by the same functions in float64, after
// checking them against the shipped ones, and checks the golden against the shipped port
// (they agree to ~1e-6 here). Magnitude: the layer's sums have random-sign terms (random
// weights), whose rounding errors grow like a random walk of partial sums of size ~|sum|,
// so the output scale ymax is the magnitude; kSafety covers the chained norm, exp and
// division. Observed: |ref<double> - golden| ~ 10 u64 * ymax, |ref<float> - golden| ~
// 10 u32 * ymax. A semantic difference (a wrong table, mask, half, scale or sink) moves y
// by O(ymax).
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "reference/attention_layer.h"
#include "reference/errors.h"
#include "tests/support/compare.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

const std::string kGolden = DSV4_TEST_DATA_DIR "/transformers_v4_attn.safetensors";

// A missing or unreadable golden is a failure, never a skip.
std::unique_ptr<SafetensorsReader> open_golden() {
  try {
    return std::make_unique<SafetensorsReader>(kGolden);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "cannot read the transformers golden " << kGolden << ": " << e.what()
                  << "\n(regenerate it with tests/oracle/gen_transformers_goldens.py, "
                     "see docs/oracles.md)";
    return nullptr;
  }
}

struct GoldenConfig {
  int64_t dim, heads, head_dim, rope_dim, q_rank, o_groups, o_rank, window;
  int64_t index_heads, index_dim, index_topk, T;
  std::vector<int64_t> ratios;
  double eps, rope_theta, compress_rope_theta, yarn_factor, beta_fast, beta_slow, yarn_attn;
  int64_t yarn_orig;
};

double num(const boost::json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (!v) throw std::runtime_error(std::string("config has no '") + key + "'");
  return boost::json::value_to<double>(*v);
}

int64_t integer(const boost::json::object& o, const char* key) {
  const auto* v = o.if_contains(key);
  if (!v) throw std::runtime_error(std::string("config has no '") + key + "'");
  return boost::json::value_to<int64_t>(*v);
}

GoldenConfig parse_config(const SafetensorsReader& r) {
  auto it = r.metadata().find("config");
  if (it == r.metadata().end()) throw std::runtime_error("metadata has no 'config'");
  const auto o = boost::json::parse(it->second).as_object();
  GoldenConfig c{};
  c.dim = integer(o, "dim");
  c.heads = integer(o, "heads");
  c.head_dim = integer(o, "head_dim");
  c.rope_dim = integer(o, "rope_dim");
  c.q_rank = integer(o, "q_rank");
  c.o_groups = integer(o, "o_groups");
  c.o_rank = integer(o, "o_rank");
  c.window = integer(o, "window");
  c.index_heads = integer(o, "index_heads");
  c.index_dim = integer(o, "index_dim");
  c.index_topk = integer(o, "index_topk");
  c.T = integer(o, "T");
  c.eps = num(o, "eps");
  c.rope_theta = num(o, "rope_theta");
  c.compress_rope_theta = num(o, "compress_rope_theta");
  c.yarn_factor = num(o, "yarn_factor");
  c.yarn_orig = integer(o, "yarn_orig");
  c.beta_fast = num(o, "beta_fast");
  c.beta_slow = num(o, "beta_slow");
  c.yarn_attn = num(o, "yarn_attn_factor");
  for (const auto& v : o.at("ratios").as_array()) c.ratios.push_back(boost::json::value_to<int64_t>(v));
  return c;
}

// The layer's RoPE table: the spec's (rope_for_ratio), with the file's values; the
// FileAndConfig test checks that they are the spec's.
RopeConfig layer_rope(const GoldenConfig& c, int64_t ratio) {
  RopeConfig rc = rope_for_ratio(ratio);
  rc.rope_dim = c.rope_dim;
  if (ratio > 0) {
    rc.theta = c.compress_rope_theta;
    rc.yarn_factor = c.yarn_factor;
    rc.yarn_orig = c.yarn_orig;
    rc.beta_fast = c.beta_fast;
    rc.beta_slow = c.beta_slow;
    rc.attn_factor = c.yarn_attn;
  } else {
    rc.theta = c.rope_theta;
  }
  return rc;
}

// One layer's tensors, decoded to T, kept alive for the params' pointers (which point into
// the vectors held by the map's nodes; moving the map moves the nodes, not the vectors).
template <class T>
struct LayerData {
  AttentionLayerParams<T> p;
  std::map<std::string, std::vector<T>> w;
  std::vector<T> x;
  std::vector<double> y;            // golden attn_out
  std::vector<int64_t> topk;        // golden selection (CSA)
  int64_t topk_cols = 0;
};

template <class T>
const T* get(const SafetensorsReader& r, LayerData<T>& d, int64_t L, const std::string& name,
             std::vector<int64_t> shape) {
  const std::string full = "layers." + std::to_string(L) + ".attn." + name;
  const TensorInfo* t = r.find(full);
  if (!t) throw std::runtime_error("golden has no tensor '" + full + "'");
  if (t->shape != shape)
    throw std::runtime_error("tensor '" + full + "': shape " + shape_string(t->shape) +
                             ", expected " + shape_string(shape));
  auto& v = d.w[name] = r.read_float<T>(*t);
  return v.data();
}

template <class T>
LayerData<T> load_layer(const SafetensorsReader& r, const GoldenConfig& c, int64_t L) {
  LayerData<T> d;
  const int64_t ratio = c.ratios.at(L);
  auto& s = d.p.shape;
  s.dim = c.dim;
  s.heads = c.heads;
  s.head_dim = c.head_dim;
  s.q_rank = c.q_rank;
  s.groups = c.o_groups;
  s.o_rank = c.o_rank;
  s.window = c.window;
  s.ratio = ratio;
  s.index_heads = c.index_heads;
  s.index_dim = c.index_dim;
  s.index_topk = c.index_topk;
  s.eps = c.eps;
  s.rope = layer_rope(c, ratio);
  d.p.numerics = Numerics::exact;  // transformers has no quantisation simulation

  const int64_t D = c.dim, H = c.heads, hd = c.head_dim, qr = c.q_rank;
  const int64_t gr = c.o_groups * c.o_rank;
  auto& w = d.p.w;
  w.wq_a = get(r, d, L, "wq_a.weight", {qr, D});
  w.q_norm = get(r, d, L, "q_norm.weight", {qr});
  w.wq_b = get(r, d, L, "wq_b.weight", {H * hd, qr});
  w.wkv = get(r, d, L, "wkv.weight", {hd, D});
  w.kv_norm = get(r, d, L, "kv_norm.weight", {hd});
  w.wo_a = get(r, d, L, "wo_a.weight", {gr, H * hd / c.o_groups});
  w.wo_b = get(r, d, L, "wo_b.weight", {D, gr});
  w.attn_sink = get(r, d, L, "attn_sink", {H});
  if (ratio > 0) {
    const int64_t cw = (ratio == 4 ? 2 : 1) * hd;
    w.compressor = {get(r, d, L, "compressor.wkv.weight", {cw, D}),
                    get(r, d, L, "compressor.wgate.weight", {cw, D}),
                    get(r, d, L, "compressor.ape", {ratio, cw}),
                    get(r, d, L, "compressor.norm.weight", {hd})};
  }
  if (ratio == 4) {
    const int64_t HI = c.index_heads, dI = c.index_dim;
    w.indexer_compressor = {get(r, d, L, "indexer.compressor.wkv.weight", {2 * dI, D}),
                            get(r, d, L, "indexer.compressor.wgate.weight", {2 * dI, D}),
                            get(r, d, L, "indexer.compressor.ape", {ratio, 2 * dI}),
                            get(r, d, L, "indexer.compressor.norm.weight", {dI})};
    w.indexer_wq_b = get(r, d, L, "indexer.wq_b.weight", {HI * dI, qr});
    w.indexer_weights_proj = get(r, d, L, "indexer.weights_proj.weight", {HI, D});
    const TensorInfo* t = r.find("layers." + std::to_string(L) + ".attn.topk");
    if (!t) throw std::runtime_error("golden has no CSA top-k for layer " + std::to_string(L));
    if (t->shape != std::vector<int64_t>{c.T, c.index_topk})
      throw std::runtime_error("top-k has shape " + shape_string(t->shape));
    d.topk = r.read_int(*t);
    d.topk_cols = t->shape[1];
  }
  const std::string pre = "layers." + std::to_string(L) + ".";
  const TensorInfo* xi = r.find(pre + "attn_in");
  const TensorInfo* yi = r.find(pre + "attn_out");
  if (!xi || !yi) throw std::runtime_error("golden lacks attn_in/attn_out of layer " + pre);
  if (xi->shape != std::vector<int64_t>{c.T, D} || yi->shape != std::vector<int64_t>{c.T, D})
    throw std::runtime_error("attn_in/attn_out of " + pre + " have the wrong shape");
  d.x = r.read_float<T>(*xi);
  d.y = r.read_float<double>(*yi);
  return d;
}

template <class T>
double max_abs(const T* a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i])));
  return m;
}

// See the derivation at the top of the file.
template <class T>
double layer_tolerance(const LayerData<T>& d, double ymax) {
  const auto& s = d.p.shape;
  const double in_a = double(s.heads * s.head_dim / s.groups), gr = double(s.groups * s.o_rank);
  const double compressed = s.ratio == 4 ? double(s.index_topk) : s.ratio > 0 ? 3.0 : 0.0;
  const double K = std::max({double(s.dim), double(s.q_rank), double(s.head_dim), in_a, gr,
                             double(s.window) + compressed});
  return test::reduction_tol<double>(K, ymax) + test::reduction_tol<T>(K, ymax);
}

TEST(TransformersGolden, FileAndConfig) {
  auto r = open_golden();
  ASSERT_TRUE(r);
  GoldenConfig c;
  ASSERT_NO_THROW(c = parse_config(*r));
  // The layer kinds the golden must cover.
  EXPECT_EQ(c.ratios, (std::vector<int64_t>{0, 4, 128}));
  EXPECT_GE(c.T, 2 * 128) << "HCA needs two complete blocks";
  EXPECT_LT(c.index_topk, c.T / 4) << "CSA selection must matter";
  // The file's RoPE tables are the spec's (§2.7): window-only plain theta 10000,
  // compressed layers theta 160000 with YaRN 16 / 65536 / 32 / 1 and no magnitude factor.
  const RopeConfig swa = rope_for_ratio(0), comp = rope_for_ratio(4);
  EXPECT_EQ(c.rope_dim, swa.rope_dim);
  EXPECT_EQ(c.rope_theta, swa.theta);
  EXPECT_EQ(c.compress_rope_theta, comp.theta);
  EXPECT_EQ(c.yarn_factor, comp.yarn_factor);
  EXPECT_EQ(c.yarn_orig, comp.yarn_orig);
  EXPECT_EQ(c.beta_fast, comp.beta_fast);
  EXPECT_EQ(c.beta_slow, comp.beta_slow);
  EXPECT_EQ(c.yarn_attn, comp.attn_factor);
  EXPECT_EQ(c.eps, kNormEps);
  // Provenance: the probes passed and the versions are recorded.
  const auto& meta = r->metadata();
  ASSERT_TRUE(meta.count("probes") && meta.count("versions") && meta.count("pinned"));
  const auto probes = boost::json::parse(meta.at("probes")).as_object();
  EXPECT_TRUE(probes.at("all_ok").as_bool());
  const auto versions = boost::json::parse(meta.at("versions")).as_object();
  EXPECT_FALSE(versions.at("forced").as_bool()) << "golden generated with unpinned versions";
  for (const char* k : {"torch", "transformers", "safetensors"})
    EXPECT_TRUE(versions.contains(k)) << k;
}

class TransformersGoldenLayer : public ::testing::TestWithParam<int64_t> {
 protected:
  template <class T>
  void run_layer() {
    auto r = open_golden();
    ASSERT_TRUE(r);
    GoldenConfig c;
    ASSERT_NO_THROW(c = parse_config(*r));
    const int64_t L = GetParam();
    ASSERT_LT(L, int64_t(c.ratios.size()));
    LayerData<T> d;
    try {
      d = load_layer<T>(*r, c, L);
    } catch (const std::exception& e) {
      FAIL() << "layer " << L << ": " << e.what();
    }
    const int64_t T_ = c.T, D = c.dim;
    std::vector<T> y(T_ * D, std::numeric_limits<T>::quiet_NaN());  // poison
    std::vector<int32_t> topk;
    ref::attention_layer_prefill<T>(d.p, view2<const T>(d.x.data(), T_, D), view2(y.data(), T_, D),
                                    nullptr, &topk);

    const double ymax = max_abs(d.y.data(), int64_t(d.y.size()));
    const double tol = layer_tolerance(d, ymax);
    ASSERT_GT(ymax, 0.1) << "vacuous golden";
    EXPECT_TRUE(test::all_close(y.data(), d.y.data(), y.size(), tol))
        << "layer " << L << " (ratio " << c.ratios[L] << "), tol " << tol << ", max |y| " << ymax;
    double worst = 0;
    for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(double(y[i]) - d.y[i]));
    RecordProperty("max_abs_diff", std::to_string(worst));
    RecordProperty("tolerance", std::to_string(tol));
    std::cout << "layer " << L << " (ratio " << c.ratios[L] << "): max |diff| " << worst
              << ", tol " << tol << ", max |y| " << ymax << "\n";

    if (c.ratios[L] == 4) {
      ASSERT_EQ(int64_t(topk.size()), T_ * c.index_topk);
      int64_t mismatched = 0, first = -1;
      for (int64_t t = 0; t < T_; ++t) {
        std::set<int64_t> got, want;
        for (int64_t k = 0; k < c.index_topk; ++k) {
          if (topk[t * c.index_topk + k] >= 0) got.insert(topk[t * c.index_topk + k]);
          if (d.topk[t * d.topk_cols + k] >= 0) want.insert(d.topk[t * d.topk_cols + k]);
        }
        if (got != want && mismatched++ == 0) first = t;
      }
      EXPECT_EQ(mismatched, 0) << "CSA selection differs from transformers in " << mismatched
                               << " rows, first at t = " << first;
    }
  }
};

TEST_P(TransformersGoldenLayer, MatchesInFloat) { run_layer<float>(); }
TEST_P(TransformersGoldenLayer, MatchesInDouble) { run_layer<double>(); }

std::string layer_name(const ::testing::TestParamInfo<int64_t>& info) {
  switch (info.param) {
    case 0: return "L0_window";
    case 1: return "L1_csa";
    case 2: return "L2_hca";
    default: return "L" + std::to_string(info.param);
  }
}

INSTANTIATE_TEST_SUITE_P(Layers, TransformersGoldenLayer, ::testing::Values(0, 1, 2), layer_name);

}  // namespace
}  // namespace dsv4
