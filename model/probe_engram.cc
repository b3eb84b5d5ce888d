// Engram facts of the recall probe (model/probe_engram.h: the construction and its closed form).
#include "model/probe_engram.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "reference/errors.h"

namespace dsv4 {

void probe_engram_config(const ProbeKnobs& k, ModelConfig& c) {
  if (k.engram_facts <= 0) return;
  EngramConfig& g = c.engram;
  g.layer_ids = {kProbeEngramLayer};
  g.vocab_size = {k.engram_table};
  g.max_ngram = kProbeEngramOrder;
  g.heads_per_ngram = k.engram_heads;
  g.embed_per_ngram = k.engram_heads * kProbeValDims;  // de = r_V: a head's row is a VAL vector
  g.kernel_size = kProbeEngramKernel;
  g.pad_id = kProbeEngramPadId;
  g.seed = k.seed;
}

ProbeEngramHasher::ProbeEngramHasher(const ModelConfig& c) {
  const EngramConfig& g = c.engram;
  require(g.index_of(kProbeEngramLayer) == 0, "probe: Engram is not on at layer 0");
  const int64_t V = c.vocab_size;
  map_.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) map_[size_t(i)] = int32_t(i);
  // The probe's Engram layer is the first (and only) one in config order: primes index 0.
  const auto primes = engram_primes(int64_t(g.layer_ids.size()), g.vocab_size, g.heads_per_ngram);
  hash_ = engram_layer_hash(primes[0], engram_multipliers(g.seed, kProbeEngramLayer, g.max_ngram, V),
                            g.max_ngram, g.heads_per_ngram, map_.data(), V, g.pad_id);
}

std::vector<int64_t> ProbeEngramHasher::rows(const std::vector<int32_t>& ids) const {
  const int64_t n = int64_t(ids.size()), H = hash_.slots();  // order 2 only: slots = heads
  std::vector<int64_t> out(size_t(n * H));
  ref::engram_hash({&hash_, ids.data(), n, nullptr, view2(out.data(), n, H)});
  return out;
}

namespace {

// b_v of value id v: its LM head row's VAL block (build_embeddings writes b_v there).
std::vector<double> value_vector(const ProbeModel& m, int64_t v) {
  const std::vector<float>& head = m.tensors.at("head.weight");
  const int64_t D = m.config.dim, at = v * D + m.layout.val;
  return std::vector<double>(head.begin() + at, head.begin() + at + m.layout.r_V);
}

}  // namespace

void build_probe_engram(ProbeModel& m) {
  const ModelConfig& c = m.config;
  const ProbeLayout& L = m.layout;
  const int64_t D = c.dim, S = c.hc_mult, H = c.engram.heads_per_ngram, de = c.engram.head_dim();
  const int64_t E = c.engram.width();
  require(de == L.r_V, "probe: Engram rows must be r_V wide");
  const ProbeEngramHasher hasher(c);
  const std::string p = "layers." + std::to_string(kProbeEngramLayer) + ".engram.";
  // Table: every fact's 2-gram row in every head += b_v (shared rows add up).
  std::vector<float> table(size_t(hasher.table_rows() * de), 0.0f);
  for (const ProbeFact& f : m.facts) {
    const std::vector<int64_t> rows = hasher.rows({f.key_a, f.key_b});
    const std::vector<double> b = value_vector(m, f.value);
    for (int64_t j = 0; j < H; ++j) {
      const int64_t r = rows[size_t(H + j)];  // position 1: the 2-gram (key_a, key_b)
      for (int64_t i = 0; i < de; ++i) table[size_t(r * de + i)] += float(b[size_t(i)]);
    }
  }
  m.tensors[p + "table.weight"] = std::move(table);
  // value_proj: the mean of the heads' rows into VAL (bias 0 by default).
  std::vector<float> wv(size_t(D * E), 0.0f);
  for (int64_t j = 0; j < H; ++j)
    for (int64_t i = 0; i < de; ++i) wv[size_t((L.val + i) * E + j * de + i)] = float(1.0 / double(H));
  m.tensors[p + "value_proj.weight"] = std::move(wv);
  // The gate, open for every token: key_proj weight 0 (default), bias 1_c; key_norm G on c.
  for (int64_t s = 0; s < S; ++s) {
    const std::string k = std::to_string(s);
    std::vector<float> bias(size_t(D), 0.0f), norm(size_t(D), 1.0f);
    bias[size_t(L.c)] = 1.0f;
    norm[size_t(L.c)] = float(kEngramGateGain);
    m.tensors[p + "key_proj." + k + ".bias"] = std::move(bias);
    m.tensors[p + "key_norm." + k + ".weight"] = std::move(norm);
  }
  // conv.weight 0, conv_norm / query_norm 1: the defaults of ProbeModel::values.
}

std::vector<ProbeFactPrediction> probe_predict_facts(const ProbeModel& m) {
  const ModelConfig& c = m.config;
  const ProbeLayout& L = m.layout;
  const int64_t D = c.dim, d = c.head_dim, H = c.engram.heads_per_ngram, rV = L.r_V;
  const double eps = c.norm_eps;
  const ProbeEngramHasher hasher(c);
  const std::string p = "layers." + std::to_string(kProbeEngramLayer) + ".engram.";
  const std::vector<float>& table = m.tensors.at(p + "table.weight");
  const std::vector<float>& embed = m.tensors.at("embed.weight");
  // Facts per (head, row): a row "is shared" when more than one fact wrote it.
  std::map<int64_t, int64_t> writers;
  for (const ProbeFact& f : m.facts) {
    const auto rows = hasher.rows({f.key_a, f.key_b});
    for (int64_t j = 0; j < H; ++j) ++writers[rows[size_t(H + j)]];
  }
  // u: the mean of the H rows of position t (as value_proj computes it).
  auto mean_row = [&](const std::vector<int64_t>& rows, int64_t t) {
    std::vector<double> u(size_t(rV), 0.0);
    for (int64_t j = 0; j < H; ++j)
      for (int64_t i = 0; i < rV; ++i) u[size_t(i)] += double(table[size_t(rows[size_t(t * H + j)] * rV + i)]) / double(H);
    return u;
  };
  // The gate of token `id` at layer 0: q_c = x_c / rms(x), k_c = G / rms(1_c) (eps inside
  // both roots), a = q_c k_c / sqrt(D), g = sigmoid(sqrt(a)) (a > 0 here).
  auto gate = [&](int32_t id) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += std::pow(double(embed[size_t(id * D + i)]), 2);
    const double q_c = double(embed[size_t(id * D + L.c)]) / std::sqrt(ss / double(D) + eps);
    const double k_c = kEngramGateGain / std::sqrt(1.0 / double(D) + eps);
    const double a = q_c * k_c / std::sqrt(double(D));
    return 1.0 / (1.0 + std::exp(-std::sqrt(std::max(a, kEngramGateFloor))));
  };
  // Layer 1's payload of a row whose VAL is g u: the window entry RMSNorm([0 | g u | 1]) over
  // d dims (its match dims read SP, ~0 for key tokens; its anchor reads c = 1).
  auto payload = [&](const std::vector<double>& u, double g) {
    double uu = 0;
    for (double x : u) uu += x * x;
    const double scale = std::sqrt(double(d)) * g / std::sqrt(g * g * uu + 1.0);
    std::vector<double> out(u);
    for (double& x : out) x *= scale;
    return out;
  };
  // Layer 1 head 0 at the last position: two window rows of score 0 and the sink (logit 0):
  // weight 1/3 each, the sink carries nothing.
  constexpr double kRowWeight = 1.0 / 3.0;
  std::vector<std::vector<double>> b(size_t(m.knobs.values));
  for (int64_t v = 0; v < m.knobs.values; ++v) b[size_t(v)] = value_vector(m, m.vocab.value0 + v);
  std::vector<ProbeFactPrediction> out;
  for (const ProbeFact& f : m.facts) {
    const std::vector<int64_t> rows = hasher.rows({f.key_a, f.key_b});
    const double g0 = gate(f.key_a), g1 = gate(f.key_b);
    const std::vector<double> u0 = mean_row(rows, 0), u1 = mean_row(rows, 1);
    const std::vector<double> p0 = payload(u0, g0), p1 = payload(u1, g1);
    std::vector<double> w(static_cast<size_t>(rV), 0.0);
    for (int64_t i = 0; i < rV; ++i)
      w[size_t(i)] = g1 * u1[size_t(i)] + kPayloadGain * kRowWeight * (p0[size_t(i)] + p1[size_t(i)]);
    ProbeFactPrediction pr;
    std::vector<double> logit(size_t(m.knobs.values), 0.0);
    double best = -1e300, own = 0, other = -1e300, ww = 0;
    for (double x : w) ww += x * x;
    for (int64_t v = 0; v < m.knobs.values; ++v) {
      double& s = logit[size_t(v)];
      for (int64_t i = 0; i < rV; ++i) s += b[size_t(v)][size_t(i)] * w[size_t(i)];
      const int32_t id = int32_t(m.vocab.value0 + v);
      if (s > best) best = s, pr.predicted = id;
      if (id == f.value)
        own = s;
      else
        other = std::max(other, s);
    }
    const double tie = (m.knobs.quant ? kFactTieBf16 : kFactTieF32) * std::sqrt(ww);
    pr.top = {pr.predicted};
    for (int64_t v = 0; v < m.knobs.values; ++v)
      if (int32_t(m.vocab.value0 + v) != pr.predicted && logit[size_t(v)] >= best - tie)
        pr.top.push_back(int32_t(m.vocab.value0 + v));
    pr.tie = pr.top.size() > 1;
    pr.correct = pr.predicted == f.value && !pr.tie;
    pr.margin = own - other;
    for (int64_t j = 0; j < H; ++j) pr.shared_heads += writers[rows[size_t(H + j)]] > 1;
    for (double x : u0) pr.pad_row_hit = pr.pad_row_hit || x != 0.0;
    out.push_back(pr);
  }
  return out;
}

}  // namespace dsv4
