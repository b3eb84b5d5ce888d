// The recall probe's construction (model/probe.h; the probe doc section named beside each
// weight). Matrices are [out, in] row-major, as in the checkpoint.
#include "model/probe.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>

#include "model/probe_engram.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/rope.h"

namespace dsv4 {

namespace json = boost::json;

std::string probe_retrieval_name(ProbeRetrieval r) {
  return r == ProbeRetrieval::csa ? "csa" : r == ProbeRetrieval::hca ? "hca" : "window";
}

// ---- knobs --------------------------------------------------------------------------------

namespace {

InputError knob_error(const std::string& knob, const std::string& what) {
  return InputError("probe knob '" + knob + "': " + what);
}

double parse_double(const std::string& knob, const std::string& v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || !std::isfinite(x))
    throw knob_error(knob, "expected a number, found '" + v + "'");
  return x;
}

int64_t parse_int(const std::string& knob, const std::string& v) {
  size_t used = 0;
  long long x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size())
    throw knob_error(knob, "expected an integer, found '" + v + "'");
  return int64_t(x);
}

std::string lower(std::string s) {
  for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

void probe_set_knob(ProbeKnobs& k, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError("probe knob: expected KNOB=VALUE, found '" + assignment + "'");
  const std::string name = assignment.substr(0, eq), key = lower(name),
                    v = assignment.substr(eq + 1);
  if (key == "retrieval") {
    const std::string r = lower(v);
    if (r == "csa")
      k.retrieval = ProbeRetrieval::csa;
    else if (r == "hca")
      k.retrieval = ProbeRetrieval::hca;
    else if (r == "window")
      k.retrieval = ProbeRetrieval::window;
    else
      throw knob_error(name, "expected csa, hca or window, found '" + v + "'");
  } else if (key == "s") {
    k.S = parse_double(name, v);
  } else if (key == "r_k") {
    k.r_K = parse_int(name, v);
  } else if (key == "topk") {
    k.topk = parse_int(name, v);
  } else if (key == "eps") {
    k.eps = parse_double(name, v);
  } else if (key == "gate_spread") {
    k.gate_spread = parse_double(name, v);
  } else if (key == "quant") {
    const std::string q = lower(v);
    if (q == "on" || q == "true" || q == "1")
      k.quant = true;
    else if (q == "off" || q == "false" || q == "0")
      k.quant = false;
    else
      throw knob_error(name, "expected on or off, found '" + v + "'");
  } else if (key == "fillers") {
    k.fillers = parse_int(name, v);
  } else if (key == "keys") {
    k.keys = parse_int(name, v);
  } else if (key == "values") {
    k.values = parse_int(name, v);
  } else if (key == "seed") {
    const int64_t s = parse_int(name, v);
    if (s < 0) throw knob_error(name, "must be >= 0, found " + v);
    k.seed = uint64_t(s);
  } else if (key == "engram_facts") {
    k.engram_facts = parse_int(name, v);
  } else if (key == "engram_table") {
    k.engram_table = parse_int(name, v);
  } else if (key == "engram_heads") {
    k.engram_heads = parse_int(name, v);
  } else {
    throw knob_error(
        name,
        "unknown knob (knobs: retrieval, S, r_K, topk, eps, gate_spread, quant, fillers, keys, "
        "values, seed, engram_facts, engram_table, engram_heads)");
  }
  probe_validate(k);
}

void probe_validate(const ProbeKnobs& k) {
  constexpr double kMaxS = 60.0;       // e^S stays far inside float range
  constexpr double kMaxEps = 0.7;      // the filler's FIL part keeps norm sqrt(1 - 2 eps^2) > 0
  constexpr double kMaxSpread = 30.0;  // at most the value gate itself
  constexpr int64_t kMaxWords = 1000000;
  if (!(k.S > 0 && k.S <= kMaxS))
    throw knob_error("S", "must be in (0, 60], found " + std::to_string(k.S));
  if (k.r_K < 1 || k.r_K > kProbeMaxKeyDims)
    throw knob_error("r_K", "must be in [1, 62] (the indexer anchor sits at dim 63), found " +
                                std::to_string(k.r_K));
  if (k.topk < 1) throw knob_error("topk", "must be >= 1, found " + std::to_string(k.topk));
  if (!(k.eps >= 0 && k.eps <= kMaxEps))
    throw knob_error("eps", "must be in [0, 0.7], found " + std::to_string(k.eps));
  if (!(k.gate_spread >= 0 && k.gate_spread <= kMaxSpread))
    throw knob_error("gate_spread", "must be in [0, 30], found " + std::to_string(k.gate_spread));
  if (k.fillers < 1 || k.fillers > kMaxWords)
    throw knob_error("fillers", "must be in [1, 1000000]");
  if (k.keys < 1 || k.keys > kMaxWords) throw knob_error("keys", "must be in [1, 1000000]");
  if (k.values < 2 || k.values > kMaxWords) throw knob_error("values", "must be in [2, 1000000]");
  // Engram facts: distinct ordered pairs of two different keys, so at most keys (keys - 1).
  const int64_t max_facts = std::min(kMaxWords, k.keys * (k.keys - 1));
  if (k.engram_facts < 0 || k.engram_facts > max_facts)
    throw knob_error("engram_facts", "must be in [0, " + std::to_string(max_facts) +
                                         "] (distinct ordered pairs of two different keys), found " +
                                         std::to_string(k.engram_facts));
  if (k.engram_table < 2 || k.engram_table > kProbeEngramMaxTable)
    throw knob_error("engram_table", "must be in [2, " + std::to_string(kProbeEngramMaxTable) +
                                         "], found " + std::to_string(k.engram_table));
  if (k.engram_heads < 1 || k.engram_heads > kProbeEngramMaxHeads)
    throw knob_error("engram_heads", "must be in [1, " + std::to_string(kProbeEngramMaxHeads) +
                                         "], found " + std::to_string(k.engram_heads));
}

std::string probe_knobs_json(const ProbeKnobs& k) {
  json::object o{{"retrieval", probe_retrieval_name(k.retrieval)},
                 {"S", k.S},
                 {"r_K", k.r_K},
                 {"topk", k.topk},
                 {"eps", k.eps},
                 {"gate_spread", k.gate_spread},
                 {"quant", k.quant},
                 {"fillers", k.fillers},
                 {"keys", k.keys},
                 {"values", k.values},
                 {"seed", k.seed}};
  if (k.engram_facts > 0) {  // absent when off: such probes are written byte for byte as before
    o["engram_facts"] = k.engram_facts;
    o["engram_table"] = k.engram_table;
    o["engram_heads"] = k.engram_heads;
  }
  return json::serialize(o);
}

// ---- layout, vocabulary, config -------------------------------------------------------------

ProbeLayout probe_layout(const ProbeKnobs& k) {
  ProbeLayout L;
  L.r_K = k.r_K;
  L.sp = L.key + k.r_K;
  L.val = L.sp + k.r_K;
  L.fil = L.val + L.r_V;
  L.n_fil = kProbeDim - L.fil;  // >= 32 for r_K <= 62
  return L;
}

namespace {

constexpr int64_t kSpecialIds = 2;  // bos 0, eos 1
constexpr int64_t kByteIds = 256;   // the byte-level alphabet
constexpr const char* kConsonants = "bdfghlmnprst";
constexpr const char* kVowels = "aeiou";

// Word i of a class: prefix + w syllables (base-60 digits of i), w = max(2, digits of n-1).
std::vector<std::string> words(const std::string& prefix, int64_t n) {
  const int64_t nc = int64_t(std::char_traits<char>::length(kConsonants)), nv = 5, base = nc * nv;
  int64_t w = 2;
  for (int64_t cap = base * base; cap < n; cap *= base) ++w;
  std::vector<std::string> out;
  out.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    std::string s;
    int64_t x = i;
    for (int64_t j = 0; j < w; ++j, x /= base)
      s = std::string{kConsonants[(x % base) / nv], kVowels[(x % base) % nv]} + s;
    out.push_back(prefix + s);
  }
  return out;
}

ProbeVocab make_vocab(const ProbeKnobs& k) {
  ProbeVocab v;
  v.filler = words("", k.fillers);
  v.key = words("k", k.keys);
  v.value = words("v", k.values);
  v.filler0 = kSpecialIds + kByteIds;
  v.key0 = v.filler0 + k.fillers;
  v.value0 = v.key0 + k.keys;
  v.size = v.value0 + k.values;
  return v;
}

// GPT-2's byte-level alphabet: printable bytes map to themselves, the others to U+0100.. in
// byte order. Returns the UTF-8 text of byte b's symbol.
std::string byte_symbol(int b) {
  auto printable = [](int x) {
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int x = 0; x < b; ++x) cp += !printable(x);
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {  // < 0x800 here
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

ModelConfig probe_config(const ProbeKnobs& k) {
  probe_validate(k);
  ModelConfig c = config_preset("v4-tiny");  // V4 structure, real head_dim / window / RoPE
  c.name = "probe-recall-" + probe_retrieval_name(k.retrieval);
  c.vocab_size = make_vocab(k).size;
  c.dim = kProbeDim;
  c.n_layers = 2;
  c.n_mtp_layers = 0;
  c.n_heads = kProbeHeads;
  c.head_dim = kHeadDim;
  c.q_lora_rank = kProbeQRank;
  c.o_groups = kProbeGroups;
  c.o_lora_rank = kProbeORank;
  c.window = kWindow;
  const int64_t ratio = k.retrieval == ProbeRetrieval::csa   ? kCsaRatio
                        : k.retrieval == ProbeRetrieval::hca ? kHcaRatio
                                                             : 0;
  c.compress_ratios = {0, ratio};
  c.index_n_heads = kProbeIndexHeads;
  c.index_head_dim = kIndexerDim;
  c.index_topk = k.topk;
  c.hc_mult = kHcMult;
  c.hc_sinkhorn_iters = kSinkhornIters;
  // Hash-routed MoE whose experts (and shared expert) are all zero: it adds exactly 0.
  c.n_routed_experts = 4;
  c.experts_per_token = 2;
  c.moe_inter_dim = 32;
  c.n_shared_experts = 1;
  c.n_hash_layers = 2;
  c.route_scale = 1.0;
  c.fp8_weights = k.quant;
  c.expert_dtype = k.quant ? "fp4" : "";
  probe_engram_config(k, c);  // Engram at layer 0 when engram_facts > 0
  config_validate(c);
  return c;
}

// ---- the construction -----------------------------------------------------------------------

namespace {

// Deterministic random numbers (splitmix64; Box-Muller), independent of the standard library.
class ProbeRng {
 public:
  ProbeRng(uint64_t seed, uint64_t stream)
      : s_(seed * 0x9E3779B97F4A7C15ull ^ (stream + 0x632BE59BD9B4E019ull)) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  double normal() {
    return std::sqrt(-2.0 * std::log(1.0 - uniform())) * std::cos(2.0 * M_PI * uniform());
  }
  // A uniformly random unit vector of n dims.
  std::vector<double> unit(int64_t n) {
    std::vector<double> v(static_cast<size_t>(n));
    double ss = 0;
    for (auto& x : v) {
      x = normal();
      ss += x * x;
    }
    for (auto& x : v) x /= std::sqrt(ss);
    return v;
  }

 private:
  uint64_t s_;
};

enum Stream : uint64_t {
  kStreamKey = 1,
  kStreamValue,
  kStreamFiller,
  kStreamNoise,
  kStreamGate,
  kStreamIndexGate,
  kStreamFacts  // appended: the other streams' draws do not move
};

// max_p min_delta sum_i p_i (1 - cos(f_i delta)) over the simplex (probe doc, layer 0
// "Sharpness"), as the LP  max t  s.t.  t - sum_i A[delta][i] p_i <= 0,  sum_i p_i <= 1,
// p, t >= 0, solved by a dense tableau simplex with Bland's rule (the origin is feasible;
// Bland's rule terminates on this degenerate problem). Returns p (32 values) and t.
std::vector<double> layer0_weights(const std::vector<double>& freq, int64_t window, double* gap) {
  const int64_t n = int64_t(freq.size());  // variables p_0..p_{n-1}, t = column n
  std::vector<int64_t> deltas{-1};
  for (int64_t d = 1; d <= window - 2; ++d) deltas.push_back(d);
  const int64_t m = int64_t(deltas.size()) + 1, cols = n + 1 + m + 1;  // + slacks + rhs
  std::vector<std::vector<double>> T(size_t(m + 1), std::vector<double>(size_t(cols), 0.0));
  for (int64_t r = 0; r < m - 1; ++r) {
    for (int64_t i = 0; i < n; ++i)
      T[size_t(r)][size_t(i)] = -(1.0 - std::cos(freq[size_t(i)] * double(deltas[size_t(r)])));
    T[size_t(r)][size_t(n)] = 1.0;
  }
  for (int64_t i = 0; i < n; ++i) T[size_t(m - 1)][size_t(i)] = 1.0;
  for (int64_t r = 0; r < m; ++r) T[size_t(r)][size_t(n + 1 + r)] = 1.0;
  T[size_t(m - 1)][size_t(cols - 1)] = 1.0;
  T[size_t(m)][size_t(n)] = -1.0;  // objective row: -t
  std::vector<int64_t> basis(static_cast<size_t>(m));
  for (int64_t r = 0; r < m; ++r) basis[size_t(r)] = n + 1 + r;
  constexpr double kTol = 1e-12;
  constexpr int kMaxPivots = 100000;
  for (int it = 0;; ++it) {
    require(it < kMaxPivots, "probe: the layer-0 LP did not converge");
    int64_t e = -1;
    for (int64_t j = 0; j < cols - 1 && e < 0; ++j)
      if (T[size_t(m)][size_t(j)] < -kTol) e = j;
    if (e < 0) break;
    int64_t leave = -1;
    double best = std::numeric_limits<double>::infinity();
    for (int64_t r = 0; r < m; ++r) {
      const double a = T[size_t(r)][size_t(e)];
      if (a <= kTol) continue;
      const double ratio = T[size_t(r)][size_t(cols - 1)] / a;
      if (ratio < best - kTol ||
          (ratio <= best + kTol && leave >= 0 && basis[size_t(r)] < basis[size_t(leave)])) {
        best = ratio;
        leave = r;
      }
    }
    require(leave >= 0, "probe: the layer-0 LP is unbounded");
    const double piv = T[size_t(leave)][size_t(e)];
    for (auto& x : T[size_t(leave)]) x /= piv;
    for (int64_t r = 0; r <= m; ++r) {
      if (r == leave) continue;
      const double f = T[size_t(r)][size_t(e)];
      if (f == 0.0) continue;
      for (int64_t j = 0; j < cols; ++j) T[size_t(r)][size_t(j)] -= f * T[size_t(leave)][size_t(j)];
    }
    basis[size_t(leave)] = e;
  }
  std::vector<double> p(size_t(n), 0.0);
  for (int64_t r = 0; r < m; ++r)
    if (basis[size_t(r)] < n) p[size_t(basis[size_t(r)])] = T[size_t(r)][size_t(cols - 1)];
  double sum = 0;
  for (double x : p) sum += x;
  for (double& x : p) x /= sum;
  // The achieved gap, recomputed from p.
  double g = std::numeric_limits<double>::infinity();
  for (int64_t d : deltas) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
      s += p[size_t(i)] * (1.0 - std::cos(freq[size_t(i)] * double(d)));
    g = std::min(g, s);
  }
  *gap = g;
  return p;
}

// A [rows, cols] matrix being filled.
struct Mat {
  int64_t rows, cols;
  std::vector<float> v;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), v(size_t(r * c), 0.0f) {}
  void set(int64_t r, int64_t c, double x) { v[size_t(r * cols + c)] = float(x); }
};

}  // namespace

std::vector<float> ProbeModel::values(const TensorSpec& s) const {
  if (auto it = tensors.find(s.name); it != tensors.end()) return it->second;
  const int64_t n = s.numel(), hc = config.hc_mult;
  // Defaults: norm weights and mHC scales 1; mHC bases pre = -ln(n-1) (sigmoid -> 1/n),
  // post 0 (2 sigmoid(0) = 1), comb 0 (Sinkhorn -> uniform 1/n); everything else 0.
  const double pre = -std::log(double(hc - 1));
  std::vector<float> v(size_t(n), 0.0f);
  switch (s.init) {
    case InitKind::norm:
    case InitKind::hc_scale:
      std::fill(v.begin(), v.end(), 1.0f);
      break;
    case InitKind::hc_base:
      std::fill(v.begin(), v.begin() + hc, float(pre));
      break;
    case InitKind::hc_head_base:
      std::fill(v.begin(), v.end(), float(pre));
      break;
    default:
      break;
  }
  return v;
}

std::vector<int64_t> ProbeModel::indices(const TensorSpec& s) const {
  if (s.init == InitKind::token_map) {  // Engram canonical ids: the identity (probe_engram.h)
    std::vector<int64_t> map(size_t(s.shape[0]));
    for (size_t i = 0; i < map.size(); ++i) map[i] = int64_t(i);
    return map;
  }
  // tid2eid [V, k]: k distinct experts per token (they are all zero anyway).
  const int64_t rows = s.shape[0], k = s.shape[1], E = config.n_routed_experts;
  std::vector<int64_t> out(size_t(rows * k));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < k; ++j) out[size_t(r * k + j)] = (r + j) % E;
  return out;
}

namespace {

// Embedding rows of every token class and the LM head (Residual layout; Layer 1, Output).
void build_embeddings(ProbeModel& m) {
  const ProbeKnobs& k = m.knobs;
  const ProbeLayout& L = m.layout;
  const int64_t D = m.config.dim, V = m.config.vocab_size, rK = L.r_K, rV = L.r_V;
  auto& T = m.tensors;
  auto put = [&T](const std::string& name, Mat&& x) { T[name] = std::move(x.v); };

  // ---- embeddings (Residual layout) ----
  Mat embed(V, D);
  ProbeRng rk(k.seed, kStreamKey), rv(k.seed, kStreamValue), rf(k.seed, kStreamFiller),
      rn(k.seed, kStreamNoise);
  std::vector<std::vector<double>> a(size_t(k.keys)), b(size_t(k.values));
  for (auto& x : a) x = rk.unit(rK);
  for (auto& x : b) x = rv.unit(rV);
  const double fil_norm = std::sqrt(1.0 - 2.0 * k.eps * k.eps);
  for (int64_t t = 0; t < V; ++t) {
    embed.set(t, L.c, 1.0);
    if (t >= m.vocab.key0 && t < m.vocab.value0) {
      embed.set(t, L.muK, 1.0);
      for (int64_t i = 0; i < rK; ++i)
        embed.set(t, L.key + i, a[size_t(t - m.vocab.key0)][size_t(i)]);
    } else if (t >= m.vocab.value0) {
      embed.set(t, L.muV, 1.0);
      for (int64_t i = 0; i < rV; ++i)
        embed.set(t, L.val + i, b[size_t(t - m.vocab.value0)][size_t(i)]);
    } else {  // fillers, and the byte / special ids embedded as fillers
      embed.set(t, L.muF, 1.0);
      const auto f = rf.unit(L.n_fil);
      for (int64_t i = 0; i < L.n_fil; ++i) embed.set(t, L.fil + i, fil_norm * f[size_t(i)]);
      if (k.eps > 0) {
        const auto ns = rn.unit(rK), nv = rn.unit(rV);
        for (int64_t i = 0; i < rK; ++i) embed.set(t, L.sp + i, k.eps * ns[size_t(i)]);
        for (int64_t i = 0; i < rV; ++i) embed.set(t, L.val + i, k.eps * nv[size_t(i)]);
      }
    }
  }
  put("embed.weight", std::move(embed));
  // LM head: rows b_v for value tokens, 0 elsewhere (Layer 1, Output).
  Mat head(V, D);
  for (int64_t j = 0; j < k.values; ++j)
    for (int64_t i = 0; i < rV; ++i)
      head.set(m.vocab.value0 + j, L.val + i, b[size_t(j)][size_t(i)]);
  put("head.weight", std::move(head));
}

// Layer 0: the previous-token head that fires only on value tokens (the doc's Layer 0).
void build_layer0(ProbeModel& m) {
  const ModelConfig& c = m.config;
  const ProbeLayout& L = m.layout;
  const int64_t D = c.dim, d = c.head_dim, H = c.n_heads, q = c.q_lora_rank;
  const int64_t dr = c.rope_dim, nope = d - dr, rK = L.r_K;
  auto& T = m.tensors;
  auto put = [&T](const std::string& name, Mat&& x) { T[name] = std::move(x.v); };

  // ---- layer 0: previous-token head on value tokens ----
  const std::string l0 = "layers.0.attn.";
  const std::vector<double> freq = rope_inv_freq(c.rope_for_layer(0));
  m.layer0_p = layer0_weights(freq, c.window, &m.layer0_gap);
  // Peak ~kLayer0Peak, raised so that every other window logit is kLayer0MinGap below it.
  require(m.layer0_gap > 0, "probe: the layer-0 LP found no separating RoPE weights");
  m.layer0_peak = std::max(kLayer0Peak, kLayer0MinGap / m.layer0_gap);
  // Query: c_q dim 0 = "value token", dim 1 = "anything else" (wq_a reads only the markers).
  Mat wq_a0(q, D);
  wq_a0.set(0, L.muV, 1.0);
  wq_a0.set(1, L.muK, 1.0);
  wq_a0.set(1, L.muF, 1.0);
  put(l0 + "wq_a.weight", std::move(wq_a0));
  // wq_b: head 0 maps the value direction onto the RoPE pairs (sqrt(p_i), 0), the other
  // direction onto the null dim; heads 1.. always point at the null dim.
  Mat wq_b0(H * d, q);
  for (int64_t i = 0; i < dr / 2; ++i) wq_b0.set(nope + 2 * i, 0, std::sqrt(m.layer0_p[size_t(i)]));
  wq_b0.set(kProbeNullDim, 1, 1.0);
  for (int64_t h = 1; h < H; ++h) {
    wq_b0.set(h * d + kProbeNullDim, 0, 1.0);
    wq_b0.set(h * d + kProbeNullDim, 1, 1.0);
  }
  put(l0 + "wq_b.weight", std::move(wq_b0));
  // kv = [unit content | r]: content a_k (dims 0..r_K-1) for keys, fixed unit vectors for
  // values and fillers; r's pair i = sqrt(p_i)(cos f_i, sin f_i), pre-rotated by one position.
  const int64_t value_content = kProbePayloadDim, filler_content = kProbePayloadDim + 1;
  Mat wkv0(d, D);
  for (int64_t i = 0; i < rK; ++i) wkv0.set(i, L.key + i, 1.0);
  wkv0.set(value_content, L.muV, 1.0);
  wkv0.set(filler_content, L.muF, 1.0);
  for (int64_t i = 0; i < dr / 2; ++i) {
    const double sp = std::sqrt(m.layer0_p[size_t(i)]);
    wkv0.set(nope + 2 * i, L.c, sp * std::cos(freq[size_t(i)]));
    wkv0.set(nope + 2 * i + 1, L.c, sp * std::sin(freq[size_t(i)]));
  }
  put(l0 + "wkv.weight", std::move(wkv0));
  // kv_norm: RMSNorm makes content and r norm sqrt(d/2) each; the RoPE dims' weight G makes
  // the predecessor's logit sqrt(d/2) * G = layer0_peak (the query is a unit direction after
  // the per-head norm and the 1/sqrt(d) scale).
  const double kv0_scale = std::sqrt(double(d) / 2.0);
  m.layer0_rope_gain = m.layer0_peak / kv0_scale;
  std::vector<float> kv_norm0(size_t(d), 1.0f);
  for (int64_t i = nope; i < d; ++i) kv_norm0[size_t(i)] = float(m.layer0_rope_gain);
  T[l0 + "kv_norm.weight"] = kv_norm0;
  // Output: head-0 content dims -> SP, scaled back to unit (a value token's SP = a_k).
  Mat wo_a0(c.o_groups * c.o_lora_rank, (H / c.o_groups) * d);
  for (int64_t i = 0; i < rK; ++i) wo_a0.set(i, i, 1.0);
  put(l0 + "wo_a.weight", std::move(wo_a0));
  Mat wo_b0(D, c.o_groups * c.o_lora_rank);
  for (int64_t i = 0; i < rK; ++i) wo_b0.set(L.sp + i, i, 1.0 / kv0_scale);
  put(l0 + "wo_b.weight", std::move(wo_b0));
  T[l0 + "attn_sink"] = std::vector<float>(size_t(H), float(kLayer0Sink));
}

// Compressor gate [rows, D]: every channel reads muV so that z = kGateValue for a needle
// value token (its layer-1 input is sqrt(D/4) h, |h| = 2: embedding plus SP), 0 for fillers;
// plus the gate-spread knob: a random FIL direction per channel giving fillers
// z ~ N(0, spread^2) (their input is sqrt(D/3) times an FIL part of norm sqrt(1 - 2 eps^2)).
Mat gate_weights(const ProbeModel& m, int64_t rows, uint64_t stream) {
  const ProbeKnobs& k = m.knobs;
  const ProbeLayout& L = m.layout;
  const int64_t D = m.config.dim;
  const double fil_norm = std::sqrt(1.0 - 2.0 * k.eps * k.eps);
  const double value_u = std::sqrt(double(D) / 4.0), filler_u = std::sqrt(double(D) / 3.0);
  const double spread = k.gate_spread * std::sqrt(double(L.n_fil)) / (filler_u * fil_norm);
  Mat g(rows, D);
  ProbeRng rg(k.seed, stream);
  for (int64_t r = 0; r < rows; ++r) {
    g.set(r, L.muV, kGateValue / value_u);
    if (k.gate_spread > 0) {
      const auto w = rg.unit(L.n_fil);
      for (int64_t i = 0; i < L.n_fil; ++i) g.set(r, L.fil + i, spread * w[size_t(i)]);
    }
  }
  return g;
}

// Layer 1: the retrieval head (entry map, gate, norms, query, indexer, output).
void build_layer1(ProbeModel& m) {
  const ProbeKnobs& k = m.knobs;
  const ModelConfig& c = m.config;
  const ProbeLayout& L = m.layout;
  const int64_t D = c.dim, d = c.head_dim, H = c.n_heads, q = c.q_lora_rank;
  const int64_t rK = L.r_K, rV = L.r_V, ratio1 = c.ratio(1);
  auto& T = m.tensors;
  auto put = [&T](const std::string& name, Mat&& x) { T[name] = std::move(x.v); };

  // ---- layer 1: the retrieval head ----
  const std::string l1 = "layers.1.attn.";
  // Entry map M: SP -> match dims 0..r_K-1, VAL -> payload dims 64.., c -> anchor 447.
  Mat M(d, D);
  for (int64_t i = 0; i < rK; ++i) M.set(i, L.sp + i, 1.0);
  for (int64_t i = 0; i < rV; ++i) M.set(kProbePayloadDim + i, L.val + i, 1.0);
  M.set(kProbeAnchorDim, L.c, 1.0);
  // Entry weights: a needle entry pools one value token: M u = s [a_k | b_v | 1] (norm^2 3 s^2),
  // RMSNorm -> sqrt(d/3) [a_k | b_v | 1]; S / sqrt(d/3) on the match dims -> S a_k.
  const double entry_scale = std::sqrt(double(d) / 3.0);
  std::vector<float> entry_norm(size_t(d), 1.0f);
  for (int64_t i = 0; i < rK; ++i) entry_norm[size_t(i)] = float(k.S / entry_scale);
  T[l1 + "wkv.weight"] = M.v;
  T[l1 + "kv_norm.weight"] = entry_norm;
  // Query of the final key: KEY -> c_q (unit a_k after q_norm's RMS), c_q -> head 0 match dims.
  Mat wq_a1(q, D);
  for (int64_t i = 0; i < rK; ++i) wq_a1.set(i, L.key + i, 1.0);
  put(l1 + "wq_a.weight", std::move(wq_a1));
  Mat wq_b1(H * d, q);
  for (int64_t i = 0; i < rK; ++i) wq_b1.set(i, i, 1.0);
  put(l1 + "wq_b.weight", std::move(wq_b1));
  // Output: head-0 payload -> VAL.
  Mat wo_a1(c.o_groups * c.o_lora_rank, (H / c.o_groups) * d);
  for (int64_t i = 0; i < rV; ++i) wo_a1.set(i, kProbePayloadDim + i, 1.0);
  put(l1 + "wo_a.weight", std::move(wo_a1));
  Mat wo_b1(D, c.o_groups * c.o_lora_rank);
  for (int64_t i = 0; i < rV; ++i) wo_b1.set(L.val + i, i, kPayloadGain);
  put(l1 + "wo_b.weight", std::move(wo_b1));
  T[l1 + "attn_sink"] = std::vector<float>(size_t(H), float(kLayer1Sink));

  if (ratio1 > 0) {
    const int64_t cc = ratio1 == kCsaRatio ? 2 : 1;  // CSA: both halves carry the same content
    Mat wkv(cc * d, D);
    for (int64_t h = 0; h < cc; ++h) std::copy(M.v.begin(), M.v.end(), wkv.v.begin() + h * d * D);
    put(l1 + "compressor.wkv.weight", std::move(wkv));
    put(l1 + "compressor.wgate.weight", gate_weights(m, cc * d, kStreamGate));
    T[l1 + "compressor.norm.weight"] = entry_norm;
  }
  if (ratio1 == kCsaRatio) {
    const int64_t HI = c.index_n_heads, dI = c.index_head_dim;
    // Indexer compressor: SP -> dims 0..r_K-1, c -> anchor 63, nothing on its RoPE dims.
    Mat iwkv(2 * dI, D);
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < rK; ++i) iwkv.set(h * dI + i, L.sp + i, 1.0);
      iwkv.set(h * dI + kProbeIndexAnchorDim, L.c, 1.0);
    }
    put(l1 + "indexer.compressor.wkv.weight", std::move(iwkv));
    put(l1 + "indexer.compressor.wgate.weight", gate_weights(m, 2 * dI, kStreamIndexGate));
    // Index query = SI c_q on every head; weights_proj reads c: every head weight positive.
    Mat iq(HI * dI, q);
    for (int64_t h = 0; h < HI; ++h)
      for (int64_t i = 0; i < rK; ++i) iq.set(h * dI + i, i, kIndexScale);
    put(l1 + "indexer.wq_b.weight", std::move(iq));
    Mat iw(HI, D);
    for (int64_t h = 0; h < HI; ++h) iw.set(h, L.c, 1.0);
    put(l1 + "indexer.weights_proj.weight", std::move(iw));
  }
}

// F facts: distinct ordered pairs (key_a != key_b) of key ids, each with a uniform value id,
// drawn from their own stream (the embeddings' draws do not move).
std::vector<ProbeFact> draw_facts(const ProbeKnobs& k, const ProbeVocab& v) {
  ProbeRng r(k.seed, kStreamFacts);
  auto pick = [&r](int64_t n) { return std::min(n - 1, int64_t(r.uniform() * double(n))); };
  std::set<std::pair<int64_t, int64_t>> seen;
  std::vector<ProbeFact> facts;
  while (int64_t(facts.size()) < k.engram_facts) {
    const int64_t a = pick(k.keys), b = pick(k.keys);
    if (a == b || !seen.insert({a, b}).second) continue;
    facts.push_back({int32_t(v.key0 + a), int32_t(v.key0 + b), int32_t(v.value0 + pick(k.values))});
  }
  return facts;
}

}  // namespace

ProbeModel build_probe(const ProbeKnobs& k) {
  ProbeModel m;
  m.knobs = k;
  m.config = probe_config(k);
  m.layout = probe_layout(k);
  m.vocab = make_vocab(k);
  build_embeddings(m);
  build_layer0(m);
  build_layer1(m);
  if (k.engram_facts > 0) {
    m.facts = draw_facts(k, m.vocab);
    build_probe_engram(m);
  }
  return m;
}

// ---- files ----------------------------------------------------------------------------------

std::string probe_tokenizer_json(const ProbeModel& m) {
  json::object vocab;
  for (int b = 0; b < kByteIds; ++b) vocab[byte_symbol(b)] = kSpecialIds + b;
  const std::string space = byte_symbol(' ');  // "Ġ"
  auto add = [&](const std::vector<std::string>& w, int64_t id0) {
    for (size_t i = 0; i < w.size(); ++i) vocab[space + w[i]] = id0 + int64_t(i);
  };
  add(m.vocab.filler, m.vocab.filler0);
  add(m.vocab.key, m.vocab.key0);
  add(m.vocab.value, m.vocab.value0);
  auto special = [](int64_t id, const char* text) {
    return json::object{{"id", id},        {"content", text}, {"single_word", false},
                        {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                        {"special", true}};
  };
  json::object model{{"type", "BPE"},
                     {"dropout", nullptr},
                     {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr},
                     {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false},
                     {"byte_fallback", false},
                     {"ignore_merges", true},
                     {"vocab", std::move(vocab)},
                     {"merges", json::array{}}};
  json::object root{{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", json::array{special(0, "<｜begin▁of▁sentence｜>"),
                                                 special(1, "<｜end▁of▁sentence｜>")}},
                    {"normalizer", nullptr},
                    {"pre_tokenizer", json::object{{"type", "ByteLevel"},
                                                   {"add_prefix_space", false},
                                                   {"trim_offsets", true},
                                                   {"use_regex", true}}},
                    {"post_processor", nullptr},
                    {"decoder", json::object{{"type", "ByteLevel"},
                                             {"add_prefix_space", true},
                                             {"trim_offsets", true},
                                             {"use_regex", true}}},
                    {"model", std::move(model)}};
  return json::serialize(root) + "\n";
}

std::string probe_sidecar_json(const ProbeModel& m) {
  auto list = [](const std::vector<std::string>& w, int64_t id0) {
    json::array a;
    for (size_t i = 0; i < w.size(); ++i)
      a.push_back(json::object{{"id", id0 + int64_t(i)}, {"text", " " + w[i]}});
    return a;
  };
  json::object o{{"kind", "dsv4.probe"},
                 {"version", 1},
                 {"task", "recall"},
                 {"retrieval", probe_retrieval_name(m.knobs.retrieval)},
                 {"knobs", json::parse(probe_knobs_json(m.knobs))},
                 {"tokens", json::object{{"filler", list(m.vocab.filler, m.vocab.filler0)},
                                         {"key", list(m.vocab.key, m.vocab.key0)},
                                         {"value", list(m.vocab.value, m.vocab.value0)}}},
                 {"needle", "key value (two adjacent tokens)"},
                 {"query", "the prompt ends with the key token"},
                 {"answer", "argmax of the logits over the value token ids"},
                 {"note", "mechanism probe, constructed weights: not a language model"}};
  if (!m.facts.empty()) {  // absent when off: such probes are written byte for byte as before
    json::array facts;
    for (const ProbeFact& f : m.facts)
      facts.push_back(json::object{{"key", json::array{f.key_a, f.key_b}}, {"value", f.value}});
    o["engram_facts"] = std::move(facts);
    o["engram_query"] = "the prompt is the fact's two key tokens only (no context)";
    o["engram_token_map"] = "identity";
  }
  return json::serialize(o) + "\n";
}

WriteSummary write_probe_checkpoint(const ProbeKnobs& k, const std::string& dir,
                                    const WriteOptions& opts) {
  const ProbeModel m = build_probe(k);
  CheckpointContents contents;
  contents.values = [&m](const TensorSpec& s) { return m.values(s); };
  contents.indices = [&m](const TensorSpec& s) { return m.indices(s); };
  contents.exact_float = !k.quant;
  contents.files = {{"tokenizer.json", probe_tokenizer_json(m)},
                    {"probe.json", probe_sidecar_json(m)}};
  contents.seed = k.seed;
  contents.generator = "dsv4 init --probe recall";
  return write_checkpoint(m.config, contents, dir, 0, opts);
}

double probe_needle_mass(ProbeRetrieval r, double S, int64_t T, int64_t topk) {
  const double es = std::exp(S);
  if (r == ProbeRetrieval::hca) return es / (es + double(kWindow) + double(T / kHcaRatio));
  if (r == ProbeRetrieval::csa)
    return 2 * es / (2 * es + double(kWindow) + double(std::min(T / kCsaRatio, topk)) - 1);
  return std::nan("");
}

}  // namespace dsv4
