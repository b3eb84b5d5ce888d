#include "evals/degradation/layer_trace.h"

#include <fmt/core.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <limits>

#include "evals/recall/niah.h"
#include "evals/recall/probe_tokens.h"
#include "model/probe.h"
#include "reference/constants.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

const NiahTask& items_source() {
  static const NiahTask k(NiahKind::single);
  return k;
}

// The argmax of `logits` over `ids` (every id when empty), ties to the first.
int64_t argmax_over(const std::vector<float>& logits, const std::vector<int32_t>& ids) {
  if (ids.empty()) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  int32_t best = ids.front();
  for (int32_t id : ids)
    if (logits[size_t(id)] > logits[size_t(best)]) best = id;
  return best;
}

// Does attended row i of a layer (window rows first, then entries) hold position `pos`?
bool holds(const LayerTrace& l, size_t i, int64_t pos) {
  if (i < l.window.size()) return l.window[i] == pos;
  const int64_t j = l.entries[i - l.window.size()];
  if (l.ratio == kCsaRatio) return j == pos / kCsaRatio || j == pos / kCsaRatio + 1;  // blocks j-1, j
  return l.ratio > 0 && j == pos / l.ratio;
}

}  // namespace

double needle_mass(const LayerTrace& l, int64_t pos) {
  const size_t n = l.window.size() + l.entries.size();
  if (l.heads <= 0 || l.weights.size() != size_t(l.heads) * n) return kNaN;
  double best = 0;
  for (int64_t h = 0; h < l.heads; ++h) {
    double m = 0;
    for (size_t i = 0; i < n; ++i)
      if (holds(l, i, pos)) m += l.weights[size_t(h) * n + i];
    best = std::max(best, m);
  }
  return best;
}

namespace {

// The probe's knobs that the closed-form mass needs, from probe.json's "knobs" text.
struct ProbeMassKnobs {
  bool ok = false;
  ProbeRetrieval retrieval = ProbeRetrieval::csa;
  double S = 0;
  int64_t topk = 0;
};

ProbeMassKnobs mass_knobs(const ProbeTokens& p) {
  ProbeMassKnobs k;
  if (p.retrieval != "csa" && p.retrieval != "hca") return k;
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(p.knobs_json, ec);
  if (ec || !v.is_object()) return k;
  const auto& o = v.as_object();
  auto num = [&](const char* key, double fallback) {
    const auto* x = o.if_contains(key);
    return x && x->is_number() ? x->to_number<double>() : fallback;
  };
  // Only the clean construction has the closed form.
  if (num("eps", 0) != 0 || num("gate_spread", 0) != 0 || !o.contains("S") || !o.contains("topk")) return k;
  k.ok = true;
  k.retrieval = p.retrieval == "csa" ? ProbeRetrieval::csa : ProbeRetrieval::hca;
  k.S = num("S", 0);
  k.topk = int64_t(num("topk", 0));
  return k;
}

}  // namespace

std::string LayerTraceTask::version() const { return "1+" + items_source().version(); }

std::string LayerTraceTask::description() const {
  return "per-layer trace of the last position (deployment vs fp64 reference): top-1 agreement, logit and "
         "attention drift, needle mass, indexer top-k recall, KV bytes, FLOPs";
}

uint32_t LayerTraceTask::needs(PromptFormat f) const { return items_source().needs(f) | kTrace; }

std::vector<Cell> LayerTraceTask::cells(const GridSpec& g) const { return items_source().cells(g); }

Item LayerTraceTask::generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed, int64_t index) const {
  Item it = items_source().generate(ctx, cell, run_seed, index);  // niah_single's item, seeds included
  it.task = name();
  it.version = version();
  if (ctx.format == PromptFormat::probe && ctx.probe) {
    const ProbeMassKnobs k = mass_knobs(*ctx.probe);
    const int64_t T = cell.length;
    if (k.ok && it.geometry.value_pos < T - kWindow)
      it.known["needle_mass_predicted"] = probe_needle_mass(k.retrieval, k.S, T, k.topk);
  }
  return it;
}

double LayerTraceTask::score(const Item&, const std::string& prediction) const { return prediction == "1" ? 1 : 0; }

double topk_recall(const std::vector<int32_t>& selected, const std::vector<double>& exact) {
  std::vector<double> vis;
  for (double s : exact)
    if (std::isfinite(s)) vis.push_back(s);
  std::vector<int32_t> sel;
  for (int32_t j : selected)
    if (j >= 0) sel.push_back(j);
  if (sel.empty() || vis.empty()) return kNaN;
  const size_t k = std::min(sel.size(), vis.size());
  std::nth_element(vis.begin(), vis.begin() + int64_t(k - 1), vis.end(), std::greater<double>());
  const double kth = vis[k - 1];
  const auto [lo, hi] = std::minmax_element(vis.begin(), vis.end());
  const double tol = kTieTolerance * std::max(*hi - *lo, std::abs(*hi));
  int64_t hit = 0;
  for (int32_t j : sel) hit += size_t(j) < exact.size() && exact[size_t(j)] >= kth - tol;
  return double(hit) / double(sel.size());
}

double rms_difference(const std::vector<float>& a, const std::vector<float>& b) {
  require(a.size() == b.size() && !a.empty(), "rms_difference: sizes differ or are zero");
  double num = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
  return std::sqrt(num / double(a.size()));
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b, double min_rms) {
  require(a.size() == b.size() && !a.empty(), "relative_error: sizes differ or are zero");
  double den = 0;
  for (float v : b) den += double(v) * double(v);
  const double rms = std::sqrt(den / double(b.size()));
  if (rms <= min_rms) return kNaN;
  return rms_difference(a, b) / rms;
}

Outcome LayerTraceTask::evaluate(LanguageModel& m, const Item& item) const {
  using Clock = std::chrono::steady_clock;
  const PromptTrace dep = m.trace(item.prompt, TracePath::deployment);
  const auto t0 = Clock::now();
  const PromptTrace ref = m.trace(item.prompt, TracePath::reference);
  const double ref_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  require(dep.layers.size() == ref.layers.size() && dep.logits.size() == ref.logits.size(),
          "layer_trace: the deployment and reference traces differ in shape");
  Outcome o;
  const int64_t a = argmax_over(dep.logits, item.candidates), b = argmax_over(ref.logits, item.candidates);
  o.prediction = a == b ? "1" : "0";
  o.score = score(item, o.prediction);
  o.prompt_tokens = dep.usage.prompt_tokens;
  o.prefill_seconds = dep.usage.prefill_seconds;
  o.seconds = dep.usage.prefill_seconds + ref_seconds;
  auto& x = o.metrics;
  x["recall"] = item.format == PromptFormat::probe
                    ? double(std::find(item.answers.begin(), item.answers.end(), std::to_string(a)) != item.answers.end())
                    : kNaN;
  x["logits_rel_err"] = relative_error(dep.logits, ref.logits, 0);
  const int64_t vpos = item.geometry.value_pos;
  for (size_t i = 0; i < dep.layers.size(); ++i) {
    const LayerTrace &d = dep.layers[i], &r = ref.layers[i];
    const std::string L = fmt::format(".L{}", d.layer);
    x["attn_rel_err" + L] = relative_error(d.output, r.output, kZeroOutputRms);
    x["attn_rms_err" + L] = rms_difference(d.output, r.output);
    x["needle_mass" + L] = needle_mass(d, vpos);
    x["needle_mass_ref" + L] = needle_mass(r, vpos);
    if (d.ratio == kCsaRatio) x["indexer_recall" + L] = topk_recall(d.selected, r.index_scores);
  }
  for (const auto& [k, v] : item.known) x[k] = v;
  x["kv_bytes"] = double(dep.kv_bytes);
  x["decode_gflop"] = dep.decode_flops / 1e9;
  x["reference_seconds"] = ref_seconds;
  return o;
}

}  // namespace dsv4::evals
