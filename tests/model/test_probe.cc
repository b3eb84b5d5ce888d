// model/probe: the recall probe checkpoint, run by the real engine (Model on the reference
// backend, loading the written checkpoint directory), against the predictions of the probe
// doc (/work/shared/docs/probe-models.md, "What the probe predicts"):
//   recall exact at every depth with 16 distractor needles (CSA, HCA), window-only recall
//   exact iff the needle is in the last 128 tokens, HCA-collided needles tie, the layer-1
//   needle mass in closed form,
//   the last-position logits against a float64 evaluation of the construction written here,
//   the tokenizer (one token per probe word), probe.json, and bad knobs.
// Longer contexts (16K, 64K) run with DSV4_LONG_TESTS=1.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "model/checkpoint.h"
#include "model/model.h"
#include "model/probe.h"
#include "model/tokenizer.h"
#include "reference/attention_layer.h"
#include "reference/errors.h"
#include "reference/hc_pre.h"
#include "reference/query_path.h"
#include "reference/rmsnorm.h"
#include "reference/rope.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

bool long_tests() {
  const char* e = std::getenv("DSV4_LONG_TESTS");
  return e && std::string(e) == "1";
}

// A probe written to a temporary directory, loaded back, and an engine over it.
struct Probe {
  ProbeModel m;
  fs::path dir;
  ModelWeights weights;  // the loaded checkpoint (for the layer-1 ops of the mass test)
  std::unique_ptr<Model> model;
  ~Probe() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  Numerics numerics() const { return m.knobs.quant ? Numerics::official : Numerics::exact; }
  int32_t key_id(int64_t k) const { return int32_t(m.vocab.key0 + k); }
  int32_t value_id(int64_t v) const { return int32_t(m.vocab.value0 + v); }
};

std::unique_ptr<Probe> make_probe(ProbeKnobs k) {
  auto p = std::make_unique<Probe>();
  p->m = build_probe(k);
  p->dir =
      fs::temp_directory_path() / ("dsv4-probe-test-" + std::to_string(std::random_device{}()));
  write_probe_checkpoint(k, p->dir.string());
  p->weights = load_checkpoint(p->dir.string());
  p->model =
      std::make_unique<Model>(make_reference_backend(p->weights, {p->numerics(), KvLayout::f32}));
  return p;
}

// One probe per set of knobs for the whole suite.
Probe& probe(const ProbeKnobs& k) {
  static std::map<std::string, std::unique_ptr<Probe>> cache;
  auto& slot = cache[probe_knobs_json(k)];
  if (!slot) slot = make_probe(k);
  return *slot;
}
Probe& probe(ProbeRetrieval r, bool quant = true, int64_t topk = ProbeKnobs{}.topk) {
  ProbeKnobs k;
  k.retrieval = r;
  k.quant = quant;
  k.topk = topk;
  return probe(k);
}

struct Needle {
  int64_t pos = 0;             // the key's position; the value sits at pos + 1
  int64_t key = 0, value = 0;  // indices into the key / value lists
};

// A haystack of T - 1 tokens (the prompt without its final key): seeded random fillers with
// the needles written in.
std::vector<int32_t> haystack(const Probe& p, int64_t T, const std::vector<Needle>& needles,
                              uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> ids(size_t(T - 1));
  for (auto& t : ids) t = int32_t(p.m.vocab.filler0 + int64_t(g() % uint64_t(p.m.knobs.fillers)));
  for (const auto& n : needles) {
    ids[size_t(n.pos)] = p.key_id(n.key);
    ids[size_t(n.pos + 1)] = p.value_id(n.value);
  }
  return ids;
}

// The cell a value occupies in layer 1's compressed entries: two values in one HCA block, or
// in CSA blocks less than 2 apart (an entry pools blocks i-1 and i), share an entry.
bool collide(ProbeRetrieval r, int64_t v1, int64_t v2) {
  if (r == ProbeRetrieval::hca) return v1 / kHcaRatio == v2 / kHcaRatio;
  if (r == ProbeRetrieval::csa) return std::abs(v1 / kCsaRatio - v2 / kCsaRatio) < 2;
  return false;
}

// Needles whose values sit at `value_pos` (the queried ones, each in a cell of its own),
// plus distractors (other keys, other values) up to `total` needles, at seeded random places
// that share no cell with a queried needle (distractors may share cells among themselves).
std::vector<Needle> place_needles(ProbeRetrieval r, int64_t T,
                                  const std::vector<int64_t>& value_pos, int64_t total,
                                  uint64_t seed, const ProbeKnobs& k) {
  std::mt19937_64 g(seed);
  std::vector<Needle> out;
  std::set<int64_t> used;
  std::vector<int64_t> keys(size_t(k.keys)), values(size_t(k.values));
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = int64_t(i);
  for (size_t i = 0; i < values.size(); ++i) values[i] = int64_t(i);
  std::shuffle(keys.begin(), keys.end(), g);
  std::shuffle(values.begin(), values.end(), g);
  for (int64_t v : value_pos) {
    out.push_back({v - 1, keys[out.size()], values[out.size()]});
    used.insert(v - 1);
    used.insert(v);
  }
  for (const auto& a : out)
    for (const auto& b : out)
      if (&a != &b && (std::abs(a.pos - b.pos) < 2 || collide(r, a.pos + 1, b.pos + 1)))
        ADD_FAILURE() << "queried needles overlap or share an entry";
  int64_t tries = 0;
  while (int64_t(out.size()) < total) {
    if (++tries > 100000) {
      ADD_FAILURE() << "cannot place " << total << " needles in " << T << " tokens";
      break;
    }
    const int64_t kp = int64_t(g() % uint64_t(T - 2));  // key at kp, value at kp + 1 <= T - 2
    if (used.count(kp) || used.count(kp + 1) || used.count(kp - 1) || used.count(kp + 2)) continue;
    bool ok = true;
    for (int64_t v : value_pos) ok = ok && !collide(r, kp + 1, v);
    if (!ok) continue;
    out.push_back({kp, keys[out.size()], values[out.size()]});
    used.insert(kp);
    used.insert(kp + 1);
  }
  return out;
}

Sequence clone(const Sequence& s) {
  Sequence c;
  for (const auto& l : s.layers) c.layers.push_back(l->clone());
  c.pos = s.pos;
  return c;
}

// The value argmax of a logits row [V].
int64_t answer(const Probe& p, const std::vector<float>& logits) {
  const auto b = logits.begin() + p.m.vocab.value0;
  return int64_t(std::max_element(b, b + p.m.knobs.values) - b);
}

struct Query {
  Needle needle;
  int64_t got = -1;
  std::vector<float> logits;
};

// Prefills the haystack once, then for each queried needle decodes its key on a copy of the
// caches: the last position's logits of "haystack + k*" (T tokens), one prefill for all.
std::vector<Query> ask(Probe& p, int64_t T, const std::vector<Needle>& needles, size_t queried,
                       uint64_t seed) {
  const auto ids = haystack(p, T, needles, seed);
  Sequence s = p.model->new_sequence();
  p.model->prefill(s, ids, 1024);
  std::vector<Query> out;
  for (size_t i = 0; i < queried; ++i) {
    Sequence q = clone(s);
    Query r;
    r.needle = needles[i];
    r.logits = p.model->decode(q, p.key_id(needles[i].key));
    r.got = answer(p, r.logits);
    out.push_back(std::move(r));
  }
  return out;
}

// Depth cases at length T (value positions): the first token pair, the last value outside
// the window, the first one inside it (its key outside), a needle across a 128 boundary (key
// 127 mod 128, value 0 mod 128), a value at 127 mod 128, values at 1, 2 and 3 mod 4, and the
// needle right before the final key.
std::vector<int64_t> depth_cases(int64_t T) {
  const int64_t w = kWindow, last = T - 1;  // the final key's position
  return {1, last - w, last - w + 1, 128, 255, T / 4 + 1, T / 2 + 2, 3 * T / 4 + 3, last - 1};
}

// Two queried needles conflict when they overlap (a value is the other's key) or share an entry.
bool conflict(ProbeRetrieval r, int64_t v1, int64_t v2) {
  return std::abs(v1 - v2) < 2 || collide(r, v1, v2);
}

// Recall of every depth case at length T with 16 distractor needles each. Cases that conflict
// go to separate haystacks (greedy grouping); each haystack is prefilled once.
void expect_recall(ProbeRetrieval r, int64_t T, const std::vector<int64_t>& cases) {
  Probe& p = probe(r);
  std::vector<std::vector<int64_t>> groups;
  for (int64_t v : cases) {
    auto g = std::find_if(groups.begin(), groups.end(), [&](const std::vector<int64_t>& grp) {
      return std::none_of(grp.begin(), grp.end(), [&](int64_t u) { return conflict(r, u, v); });
    });
    if (g == groups.end())
      groups.push_back({v});
    else
      g->push_back(v);
  }
  constexpr int64_t kNeedles = 17;  // each query has 16 distractor needles
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const auto needles = place_needles(r, T, groups[gi], kNeedles, uint64_t(T) * 7 + gi, p.m.knobs);
    const auto res = ask(p, T, needles, groups[gi].size(), uint64_t(T) + 3 + gi);
    for (const auto& q : res)
      EXPECT_EQ(q.got, q.needle.value)
          << probe_retrieval_name(r) << " T=" << T << " needle value at " << q.needle.pos + 1;
  }
}

TEST(ProbeRecall, CsaExactAtEveryDepth1K) {
  expect_recall(ProbeRetrieval::csa, 1024, depth_cases(1024));
}
TEST(ProbeRecall, HcaExactAtEveryDepth1K) {
  expect_recall(ProbeRetrieval::hca, 1024, depth_cases(1024));
}
TEST(ProbeRecall, CsaExactAtEveryDepth4K) {
  expect_recall(ProbeRetrieval::csa, 4096, depth_cases(4096));
}
TEST(ProbeRecall, HcaExactAtEveryDepth4K) {
  expect_recall(ProbeRetrieval::hca, 4096, depth_cases(4096));
}

TEST(ProbeRecall, LongContexts) {
  if (!long_tests()) GTEST_SKIP() << "16K and 64K prompts: set DSV4_LONG_TESTS=1";
  for (int64_t T : {16384, 65536}) {
    expect_recall(ProbeRetrieval::csa, T, depth_cases(T));
    expect_recall(ProbeRetrieval::hca, T, depth_cases(T));
  }
}

// 1M tokens (DSV4_1M_TESTS=1; ~2 min per haystack on 2 cores): the first pair, the middle,
// the last value outside the window and the needle before the final key, 16 distractors each.
TEST(ProbeRecall, OneMillionTokens) {
  const char* e = std::getenv("DSV4_1M_TESTS");
  if (!e || std::string(e) != "1") GTEST_SKIP() << "1M-token prompts: set DSV4_1M_TESTS=1";
  constexpr int64_t T = int64_t(1) << 20;
  const std::vector<int64_t> cases{1, T / 2 + 2, T - 1 - kWindow, T - 2};
  expect_recall(ProbeRetrieval::csa, T, cases);
  expect_recall(ProbeRetrieval::hca, T, cases);
}

// ---- window-only: exact iff the needle is in the last 128 tokens ----------------------------

TEST(ProbeRecall, WindowOnlyExactIffInTheLastWindow) {
  Probe& p = probe(ProbeRetrieval::window);
  constexpr int64_t T = 1024, last = T - 1;
  // Inside: the first position of the window (its key outside), the middle, right before k*.
  const std::vector<int64_t> inside{last - kWindow + 1, last - 64, last - 1};
  for (const auto& q :
       ask(p, T, place_needles(ProbeRetrieval::window, T, inside, 17, 11, p.m.knobs), inside.size(),
           12))
    EXPECT_EQ(q.got, q.needle.value) << "window-only, needle value at " << q.needle.pos + 1;
  // Outside (the last position before the window, and deep): no value token is in the window,
  // so nothing tells the values apart: every value logit is the same.
  const std::vector<int64_t> outside{last - kWindow, 1, 500};
  std::vector<Needle> needles;
  for (size_t i = 0; i < outside.size(); ++i)
    needles.push_back({outside[i] - 1, int64_t(i), int64_t(i)});
  for (const auto& q : ask(p, T, needles, needles.size(), 13)) {
    const auto b = q.logits.begin() + p.m.vocab.value0;
    const auto [mn, mx] = std::minmax_element(b, b + p.m.knobs.values);
    EXPECT_LT(*mx - *mn, 1e-6) << "window-only, needle value at " << q.needle.pos + 1
                               << " (outside the window)";
  }
}

// HCA block collisions (the doc: a collided target is recalled with probability 1/(c+1)):
// two needles in one 128-block pool into one entry whose match and payload are the averages,
// so the two values' logits tie (<b1 - b2, b1 + b2> = 0 for unit b) and beat every other
// value. The tie is exact in the construction; float rounding (exact numerics) leaves
// ~sqrt(96) 2^-24 * max |logit|, bounded here by 1e-4.
TEST(ProbeRecall, HcaCollidedNeedlesTie) {
  Probe& p = probe(ProbeRetrieval::hca, /*quant=*/false);
  constexpr int64_t T = 1024;
  const std::vector<Needle> needles{{300, 4, 40}, {340, 5, 50}};  // both in block 2
  const auto res = ask(p, T, needles, 2, 31);
  for (const auto& q : res) {
    const auto b = q.logits.begin() + p.m.vocab.value0;
    const double l1 = b[40], l2 = b[50];
    double others = -1e30;
    for (int64_t v = 0; v < p.m.knobs.values; ++v)
      if (v != 40 && v != 50) others = std::max(others, double(b[v]));
    std::printf("[probe] hca collision, query key %lld: logits %.7f %.7f, best other %.4f\n",
                (long long)q.needle.key, l1, l2, others);
    EXPECT_NEAR(l1, l2, 1e-4) << "query key " << q.needle.key;
    EXPECT_GT(std::min(l1, l2), others + 1.0) << "query key " << q.needle.key;
  }
}

// ---- layer-1 needle mass against the closed form ---------------------------------------------

// The probability mass that head 0 of layer 1 puts on the needle's entries at the last
// position of `ids` (T tokens, the needle's value at vpos outside the window). The engine runs
// layer 0 (Model::forward, hidden states after layer 0); the test then runs the reference
// layer-1 ops itself (mHC pre-mix, attn_norm, attention_layer_prefill for the entries and the
// indexer's selection, query_path for the last query) and forms the softmax in float64.
double needle_mass(Probe& p, const std::vector<int32_t>& ids, int64_t vpos) {
  const ModelConfig& c = p.m.config;
  const int64_t T = int64_t(ids.size()), D = c.dim, n = c.hc_mult, d = c.head_dim, H = c.n_heads;
  Sequence s = p.model->new_sequence();
  const auto out = p.model->forward(s, ids.data(), T, {T - 1}, /*want_hidden=*/true);
  const std::vector<float>& h0 = out.hidden.at(0);  // [T, n*D] after layer 0
  const LayerTensors& L = p.weights.layers[1];
  std::vector<float> u(size_t(T * D)), post(size_t(T * n)), comb(size_t(T * n * n)),
      y(size_t(T * D));
  HcPreParams<float> hp;
  hp.x = view2<const float>(h0.data(), T, n * D);
  hp.fn = L.hc_attn_fn.data();
  hp.base = L.hc_attn_base.data();
  hp.scale = L.hc_attn_scale.data();
  hp.n = n;
  hp.iters = c.hc_sinkhorn_iters;
  hp.eps = c.hc_eps;
  hp.norm_eps = c.norm_eps;
  hp.u = view2(u.data(), T, D);
  hp.post = view2(post.data(), T, n);
  hp.comb = view2(comb.data(), T, n * n);
  ref::hc_pre(hp);
  ref::rmsnorm<float>(
      {view2<const float>(u.data(), T, D), L.attn_norm.data(), view2(u.data(), T, D), c.norm_eps});

  AttentionLayerParams<float> ap;
  ap.shape = c.attention_shape(1);
  ap.w = L.attention();
  ap.numerics = p.numerics();
  AttentionLayerState<float> st;
  std::vector<int32_t> topk;
  ref::attention_layer_prefill(ap, view2<const float>(u.data(), T, D), view2(y.data(), T, D), &st,
                               &topk);
  std::vector<float> cq(size_t(c.q_lora_rank)), q(size_t(H * d));
  ref::query_path<float>({view2<const float>(u.data() + (T - 1) * D, 1, D), L.wq_a.data(),
                          L.q_norm.data(), L.wq_b.data(), c.q_lora_rank, H, d, T - 1, ap.shape.rope,
                          c.norm_eps, p.m.knobs.quant, view2(cq.data(), 1, c.q_lora_rank),
                          view2(q.data(), 1, H * d)});

  // Head 0's index set: the window rows (positions T-128 .. T-1) and the compressed entries
  // (HCA: every visible one; CSA: the last query's selection), each with "is the needle".
  std::vector<std::pair<std::vector<float>, bool>> rows;
  std::vector<float> e(static_cast<size_t>(d));
  for (int64_t t = std::max<int64_t>(0, T - c.window); t < T; ++t) {
    st.window->read(t % c.window, 1, e.data());
    rows.push_back({e, t == vpos});
  }
  const int64_t m = ap.shape.ratio;
  if (m == kHcaRatio) {
    EXPECT_EQ(st.comp->rows(), T / m);
    for (int64_t j = 0; j < st.comp->rows(); ++j) {
      st.comp->read(j, 1, e.data());
      rows.push_back({e, j == vpos / m});
    }
  } else if (m == kCsaRatio) {
    const int64_t k = c.index_topk;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t j = topk[size_t((T - 1) * k + i)];
      if (j < 0) continue;
      st.comp->read(j, 1, e.data());
      rows.push_back(
          {e, j == vpos / m || j == vpos / m + 1});  // the two entries that pool its block
    }
  }
  std::vector<double> sc;
  double mx = L.attn_sink[0];
  for (const auto& [row, is_needle] : rows) {
    double v = 0;
    for (int64_t i = 0; i < d; ++i) v += double(q[size_t(i)]) * double(row[size_t(i)]);
    sc.push_back(v / std::sqrt(double(d)));
    mx = std::max(mx, sc.back());
  }
  double z = std::exp(double(L.attn_sink[0]) - mx), needle = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    z += std::exp(sc[i] - mx);
    if (rows[i].second) needle += std::exp(sc[i] - mx);
  }
  return needle / z;
}

// The doc's closed forms (needle outside the window, clean haystack, layer-1 sink 0).
double closed_form_mass(ProbeRetrieval r, double S, int64_t T, int64_t k) { return probe_needle_mass(r, S, T, k); }

// One clean haystack of T tokens (the last one the key) with one needle at value position v.
std::vector<int32_t> single_needle_prompt(const Probe& p, int64_t T, int64_t v) {
  auto ids = haystack(p, T, {{v - 1, 7, 9}}, 99);
  ids.push_back(p.key_id(7));
  return ids;
}

// Exact numerics: the mass differs from the closed form only through float rounding and the
// RMSNorm eps terms the closed form leaves out (eps / mean-square <= 1e-6 / 0.125 = 8e-6 per
// norm, relative), which move the needle score S by |dS| <~ S * 3e-5 ~ 4e-4. Since
// 1 - pi = rest / Z, dS moves (1 - pi) by the relative amount pi* dS: compare the complement
// with a relative bound kScoreTol = 1e-3.
// Cases: HCA at 1K and 2K; CSA at 1K with top-k 512 (every entry selected) and top-k 64 (the
// indexer's selection decides: 256 visible entries).
struct MassCase {
  ProbeRetrieval r;
  int64_t T, topk;
};
const std::vector<MassCase> kMassCases{{ProbeRetrieval::hca, 1024, 512},
                                       {ProbeRetrieval::hca, 2048, 512},
                                       {ProbeRetrieval::csa, 1024, 512},
                                       {ProbeRetrieval::csa, 1024, 64}};

TEST(ProbeMass, MatchesClosedFormExactNumerics) {
  constexpr double kScoreTol = 1e-3;
  for (const auto& [r, T, topk] : kMassCases) {
    Probe& p = probe(r, /*quant=*/false, topk);
    {
      const int64_t v = T / 3 + 1;
      const double got = needle_mass(p, single_needle_prompt(p, T, v), v);
      const double want = closed_form_mass(r, p.m.knobs.S, T, p.m.knobs.topk);
      EXPECT_NEAR((1 - got) / (1 - want), 1.0, kScoreTol)
          << probe_retrieval_name(r) << " T=" << T << ": mass " << got << ", closed form " << want;
      std::printf(
          "[probe] %s exact T=%lld topk %lld: mass %.9f closed form %.9f (1-pi ratio - 1: %.3e)\n",
          probe_retrieval_name(r).c_str(), (long long)T, (long long)topk, got, want,
          (1 - got) / (1 - want) - 1);
    }
  }
}

// Official numerics (FP8 weights and entries, FP8 activations before wq_a / wq_b / wkv): each
// of the two factors of the needle score S <a, a> (query and match dims) is rounded per
// element to e4m3 (relative <= 2^-4), so |dS| <= 2 * 2^-4 * S; the mass lies between the
// closed forms at S - dS and S + dS.
TEST(ProbeMass, WithinTheFp8BoundOfficialNumerics) {
  for (const auto& [r, T, topk] : kMassCases) {
    Probe& p = probe(r, /*quant=*/true, topk);
    const double S = p.m.knobs.S, dS = 2 * std::ldexp(1.0, -4) * S;
    {
      const int64_t v = T / 3 + 1;
      const double got = needle_mass(p, single_needle_prompt(p, T, v), v);
      const double lo = closed_form_mass(r, S - dS, T, p.m.knobs.topk),
                   hi = closed_form_mass(r, S + dS, T, p.m.knobs.topk);
      EXPECT_GE(got, lo) << probe_retrieval_name(r) << " T=" << T;
      EXPECT_LE(got, hi) << probe_retrieval_name(r) << " T=" << T;
      std::printf(
          "[probe] %s official T=%lld topk %lld: mass %.9f closed form %.9f bound [%.9f, %.9f]\n",
          probe_retrieval_name(r).c_str(), (long long)T, (long long)topk, got,
          closed_form_mass(r, S, T, topk), lo, hi);
    }
  }
}

// ---- last-position logits against a float64 evaluation of the construction ------------------

using Vec = std::vector<double>;

// x / sqrt(mean(x^2) + eps) (spec §2.1: every RMSNorm of the model; weights applied apart).
Vec rms_normed(const Vec& x, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v;
  ms /= double(x.size());
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + eps);
  return y;
}

// The construction evaluated in float64 from its definition (the probe doc and probe.cc's
// comments), not by the engine's ops: the last-position value logits of a prompt of T tokens
// ending with key `qkey`, whose needles all sit outside the window, each alone in its
// compressed entry (no value token in the window), in a clean filler haystack (eps = 0).
// Neglected: layer-0 attention off the predecessor / on the sink (weights <= e^-50) and the
// gate weight of fillers in a needle's entry (<= 127 e^-30 ~ 1e-11): far below float rounding.
Vec oracle_logits(const Probe& p, int64_t T, const std::vector<Needle>& needles, int64_t qkey) {
  const ProbeModel& m = p.m;
  const ModelConfig& c = m.config;
  const ProbeLayout& L = m.layout;
  const int64_t D = c.dim, d = c.head_dim, rK = L.r_K, rV = L.r_V, nope = d - c.rope_dim,
                n = c.hc_mult;
  const double eps = c.norm_eps;
  const auto& E = m.tensors.at("embed.weight");
  auto embed = [&](int64_t id) { return Vec(E.begin() + id * D, E.begin() + (id + 1) * D); };

  // mHC with hc_*_fn = 0: pre_j = sigmoid(-ln(n-1)) + eps_hc, post = 2 sigmoid(0) = 1, and the
  // Sinkhorn of zero logits (§3.1 step 5) — every stream equal, X' = f + colsum * X.
  const double pre = 1.0 / (1.0 + double(n - 1)) + c.hc_eps, pre_sum = double(n) * pre;
  std::vector<Vec> Mx(size_t(n), Vec(size_t(n), 1.0 / double(n) + c.hc_eps));  // row softmax + eps
  auto col_norm = [&] {
    for (int64_t k = 0; k < n; ++k) {
      double cs = 0;
      for (int64_t j = 0; j < n; ++j) cs += Mx[size_t(j)][size_t(k)];
      for (int64_t j = 0; j < n; ++j) Mx[size_t(j)][size_t(k)] /= cs + c.hc_eps;
    }
  };
  col_norm();
  for (int64_t it = 1; it < c.hc_sinkhorn_iters; ++it) {
    for (int64_t j = 0; j < n; ++j) {
      double rs = 0;
      for (double v : Mx[size_t(j)]) rs += v;
      for (double& v : Mx[size_t(j)]) v /= rs + c.hc_eps;
    }
    col_norm();
  }
  double colsum = 0;
  for (int64_t j = 0; j < n; ++j) colsum += Mx[size_t(j)][0];
  auto site_input = [&](const Vec& X) {  // RMSNorm(sum_j pre_j X_j), weight 1
    Vec u(X);
    for (double& v : u) v *= pre_sum;
    return rms_normed(u, eps);
  };

  // Layer 0 on a value token whose predecessor is key k: it attends that key's window entry
  // kv = RMSNorm([a_k | 0 | r]) * kv_norm (content weight 1), and wo_b (1/sqrt(d/2)) writes
  // the content into SP.
  auto sp_of_key = [&](int64_t k) {
    const Vec u = site_input(embed(p.key_id(k)));
    Vec kv(size_t(d), 0.0);
    for (int64_t i = 0; i < rK; ++i) kv[size_t(i)] = u[size_t(L.key + i)];
    const auto freq = rope_inv_freq(c.rope_for_layer(0));
    for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
      const double sp = std::sqrt(m.layer0_p[size_t(i)]);
      kv[size_t(nope + 2 * i)] = u[size_t(L.c)] * sp * std::cos(freq[size_t(i)]);
      kv[size_t(nope + 2 * i + 1)] = u[size_t(L.c)] * sp * std::sin(freq[size_t(i)]);
    }
    kv = rms_normed(kv, eps);
    return Vec(kv.begin(), kv.begin() + rK);  // / sqrt(d/2) below
  };
  // A needle's entry: the value token's layer-1 input u = site_input(X), X = colsum (f0 +
  // colsum e_v) after layer 0 (attention, then a zero MoE); entry = RMSNorm(M u) * norm weight
  // with M: SP -> match, VAL -> payload, c -> anchor.
  const auto& normw = m.tensors.at("layers.1.attn.kv_norm.weight");
  struct Entry {
    Vec match, payload;
  };
  auto entry_of = [&](const Needle& nd) {
    const Vec sp = sp_of_key(nd.key);
    Vec X = embed(p.value_id(nd.value));
    for (double& v : X) v *= colsum;
    for (int64_t i = 0; i < rK; ++i)
      X[size_t(L.sp + i)] += sp[size_t(i)] / std::sqrt(double(d) / 2.0);
    for (double& v : X) v *= colsum;
    const Vec u = site_input(X);
    Vec e(size_t(d), 0.0);
    for (int64_t i = 0; i < rK; ++i) e[size_t(i)] = u[size_t(L.sp + i)];
    for (int64_t i = 0; i < rV; ++i) e[size_t(kProbePayloadDim + i)] = u[size_t(L.val + i)];
    e[size_t(kProbeAnchorDim)] = u[size_t(L.c)];
    e = rms_normed(e, eps);
    Entry out;
    for (int64_t i = 0; i < rK; ++i) out.match.push_back(e[size_t(i)] * normw[size_t(i)]);
    for (int64_t i = 0; i < rV; ++i) out.payload.push_back(e[size_t(kProbePayloadDim + i)]);
    return out;
  };

  // The final key: layer 0 leaves it alone (its query hits the null dim: sink), so X = colsum^2
  // e_k; its query c_q = RMSNorm(KEY part) (64 dims), head 0 = per-head RMS of c_q (512 dims).
  Vec Xk = embed(p.key_id(qkey));
  for (double& v : Xk) v *= colsum * colsum;
  const Vec uk = site_input(Xk);
  Vec cq(size_t(c.q_lora_rank), 0.0);
  for (int64_t i = 0; i < rK; ++i) cq[size_t(i)] = uk[size_t(L.key + i)];
  cq = rms_normed(cq, eps);
  Vec q0(size_t(d), 0.0);
  for (int64_t i = 0; i < rK; ++i) q0[size_t(i)] = cq[size_t(i)];
  q0 = rms_normed(q0, eps);

  // Softmax over the sink (0), the 128 window rows and the filler entries (score 0 each: no
  // match component), and the needle entries (HCA: one each; CSA: the two that pool its block).
  const int64_t ratio = c.ratio(1);
  const int64_t visible =
      ratio == kHcaRatio ? T / kHcaRatio : std::min(T / kCsaRatio, c.index_topk);
  const int64_t mult = ratio == kCsaRatio ? 2 : 1;
  double z = std::exp(kLayer1Sink) + double(std::min<int64_t>(T, c.window)) +
             double(visible - mult * int64_t(needles.size()));
  Vec payload(size_t(rV), 0.0);
  for (const auto& nd : needles) {
    const Entry e = entry_of(nd);
    double s = 0;
    for (int64_t i = 0; i < rK; ++i) s += q0[size_t(i)] * e.match[size_t(i)];
    const double w = double(mult) * std::exp(s / std::sqrt(double(d)));  // s_j = q . e_j / sqrt(d)
    z += w;
    for (int64_t i = 0; i < rV; ++i) payload[size_t(i)] += w * e.payload[size_t(i)];
  }
  // y = wo_b wo_a o: payload -> VAL with gain kPayloadGain; then the last post-mixes and the
  // head: hc_head (pre as above) -> RMSNorm (weight 1) -> logits = <b_v, u[VAL]>.
  Vec X = Xk;
  for (double& v : X) v *= colsum;
  for (int64_t i = 0; i < rV; ++i) X[size_t(L.val + i)] += kPayloadGain * payload[size_t(i)] / z;
  for (double& v : X) v *= colsum;
  const Vec uf = site_input(X);
  const auto& Hd = m.tensors.at("head.weight");
  Vec logits(size_t(m.knobs.values));
  for (int64_t v = 0; v < m.knobs.values; ++v)
    for (int64_t i = 0; i < rV; ++i)
      logits[size_t(v)] +=
          double(Hd[size_t((p.value_id(v)) * D + L.val + i)]) * uf[size_t(L.val + i)];
  return logits;
}

// Exact numerics (F32 weights): the engine's logits equal the float64 evaluation up to float
// rounding. A length-k float reduction errs ~sqrt(k) 2^-24 relative (engineering.md §3); the
// logit passes through ~8 chained reductions of length <= 512 (RMSNorms, projections, the
// score, the softmax sum, the head): bound = 8 * sqrt(512) * 2^-24 * max |logit|. Score
// errors ds (~S sqrt(512) 2^-24 ~ 2e-5) move the needle weight only by pi (1 - pi) ds, and
// 1 - pi < 3e-3 here, so they stay far inside that bound.
TEST(ProbeLogits, MatchFloat64EvaluationOfTheConstruction) {
  constexpr int64_t T = 2048, kNeedles = 15;  // 15 HCA blocks outside the window
  for (ProbeRetrieval r : {ProbeRetrieval::hca, ProbeRetrieval::csa}) {
    Probe& p = probe(r, /*quant=*/false);
    std::vector<Needle> needles;
    for (int64_t i = 0; i < kNeedles; ++i)
      needles.push_back({kHcaRatio * i + 60 + i % 4, 3 * i + 1, 5 * i + 2});
    const auto ids = haystack(p, T, needles, 5);
    Sequence s = p.model->new_sequence();
    p.model->prefill(s, ids, 1024);
    for (size_t qi : {size_t(0), size_t(7), size_t(14)}) {
      Sequence sq = clone(s);
      const auto got = p.model->decode(sq, p.key_id(needles[qi].key));
      const Vec want = oracle_logits(p, T, needles, needles[qi].key);
      double mx = 0, err = 0, other = 0;
      for (int64_t v = 0; v < p.m.knobs.values; ++v) {
        mx = std::max(mx, std::fabs(want[size_t(v)]));
        err = std::max(err, std::fabs(double(got[size_t(p.value_id(v))]) - want[size_t(v)]));
      }
      for (int64_t t = 0; t < p.m.vocab.value0; ++t)
        other = std::max(other, std::fabs(double(got[size_t(t)])));
      const double tol = 8 * std::sqrt(512.0) * std::ldexp(1.0, -24) * mx;
      EXPECT_LE(err, tol) << probe_retrieval_name(r) << " query " << qi;
      EXPECT_EQ(other, 0.0) << "non-value logits must be exactly 0 (head rows are 0)";
      EXPECT_EQ(answer(p, got), needles[qi].value);
      std::printf("[probe] %s logits vs float64: max |err| %.3e (tol %.3e, max |logit| %.3f)\n",
                  probe_retrieval_name(r).c_str(), err, tol, mx);
    }
  }
}

// ---- knobs, tokenizer, probe.json -----------------------------------------------------------

TEST(ProbeKnobs, BadKnobsAreRejectedNamingTheKnob) {
  auto rejects = [](const std::string& a, const std::string& knob) {
    ProbeKnobs k;
    try {
      probe_set_knob(k, a);
      ADD_FAILURE() << "'" << a << "' was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(knob), std::string::npos) << e.what();
    }
  };
  rejects("bogus=1", "bogus");
  rejects("S=abc", "S");
  rejects("S=0", "S");
  rejects("S=nan", "S");
  rejects("r_K=63", "r_K");
  rejects("r_K=1.5", "r_K");
  rejects("topk=0", "topk");
  rejects("eps=0.8", "eps");
  rejects("gate_spread=-1", "gate_spread");
  rejects("quant=maybe", "quant");
  rejects("retrieval=dense", "retrieval");
  rejects("values=1", "values");
  rejects("seed=-3", "seed");
  rejects("S", "KNOB=VALUE");
  rejects("=3", "KNOB=VALUE");
  // Good ones, case-insensitive names; every knob lands where it should.
  ProbeKnobs k;
  for (const char* a : {"retrieval=HCA", "s=6.5", "R_K=16", "topk=64", "eps=0.6", "gate_spread=3",
                        "quant=off", "fillers=100", "keys=20", "values=30", "seed=7"})
    probe_set_knob(k, a);
  EXPECT_EQ(k.retrieval, ProbeRetrieval::hca);
  EXPECT_EQ(k.S, 6.5);
  EXPECT_EQ(k.r_K, 16);
  EXPECT_EQ(k.topk, 64);
  EXPECT_EQ(k.eps, 0.6);
  EXPECT_EQ(k.gate_spread, 3.0);
  EXPECT_FALSE(k.quant);
  EXPECT_EQ(k.fillers, 100);
  EXPECT_EQ(k.keys, 20);
  EXPECT_EQ(k.values, 30);
  EXPECT_EQ(k.seed, 7u);
}

TEST(ProbeFiles, TokenizerMakesEveryWordOneTokenAndProbeJsonListsThem) {
  Probe& p = probe(ProbeRetrieval::hca);
  const Tokenizer tok((p.dir / "tokenizer.json").string());
  std::ifstream in(p.dir / "probe.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const boost::json::object o = boost::json::parse(ss.str()).as_object();
  EXPECT_EQ(o.at("kind").as_string(), "dsv4.probe");
  EXPECT_EQ(o.at("version").as_int64(), 1);
  EXPECT_EQ(o.at("task").as_string(), "recall");
  EXPECT_EQ(o.at("retrieval").as_string(), "hca");
  for (const char* f : {"needle", "query", "answer", "note"}) EXPECT_TRUE(o.at(f).is_string()) << f;
  EXPECT_EQ(boost::json::serialize(o.at("knobs")), probe_knobs_json(p.m.knobs));
  std::set<int64_t> seen;
  std::set<std::string> texts;
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  for (const auto& [cls, n, id0] : {std::tuple{"filler", p.m.knobs.fillers, p.m.vocab.filler0},
                                    std::tuple{"key", p.m.knobs.keys, p.m.vocab.key0},
                                    std::tuple{"value", p.m.knobs.values, p.m.vocab.value0}}) {
    const auto& list = o.at("tokens").at(cls).as_array();
    ASSERT_EQ(int64_t(list.size()), n) << cls;
    for (size_t i = 0; i < list.size(); ++i) {
      const int64_t id = list[i].at("id").as_int64();
      const std::string text(list[i].at("text").as_string());
      EXPECT_EQ(id, id0 + int64_t(i)) << cls;
      EXPECT_TRUE(seen.insert(id).second && texts.insert(text).second) << "duplicate " << text;
      const auto ids = tok.encode(text);
      ASSERT_EQ(ids.size(), 1u) << cls << " '" << text << "' is not one token";
      EXPECT_EQ(ids[0], id) << text;
      EXPECT_EQ(tok.decode(ids), text);
      if (i % 97 == 0) {
        prompt += text;
        prompt_ids.push_back(int32_t(id));
      }
    }
  }
  EXPECT_EQ(tok.encode(prompt), prompt_ids) << "a prompt of probe words is the words' ids";
  EXPECT_EQ(tok.vocab_size(), p.m.config.vocab_size);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
}

// The noise knobs give a checkpoint that loads and still recalls a needle at 1K (the doc's
// noise curves fail only at 256K and beyond).
TEST(ProbeKnobs, NoisyProbeLoadsAndRecallsAt1K) {
  ProbeKnobs k;
  k.retrieval = ProbeRetrieval::csa;
  k.S = 6;
  k.eps = 0.6;
  k.gate_spread = 3;
  k.topk = 64;
  Probe& p = probe(k);
  const auto res = ask(p, 1024, place_needles(k.retrieval, 1024, {300, 700}, 17, 21, k), 2, 22);
  for (const auto& q : res)
    EXPECT_EQ(q.got, q.needle.value) << "needle value at " << q.needle.pos + 1;
}
}  // namespace
}  // namespace dsv4
