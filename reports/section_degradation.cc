#include "reports/section_degradation.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "reports/blocks.h"
#include "reports/svg.h"

namespace dsv4::report {

namespace {

namespace json = boost::json;

// The tasks of the degradation suite whose by_length means are table columns.
constexpr const char* kRecallTask = "niah_multikey";  // mean = recall with distractors
constexpr const char* kTraceTask = "layer_trace";     // mean = top-1 agreement with fp64
// Attention errors get one column per layer up to this many layers, else the last layer only.
constexpr size_t kMaxPerLayerColumns = 4;
// What a probe run is called in its heading and chart titles.
constexpr const char* kProbeLabel = "mechanism probe";
// The probe knobs named in a run's heading (model/probe.h), in this order.
constexpr const char* kHeadingKnobs[] = {"retrieval", "S", "topk", "eps", "gate_spread", "quant"};
// Log-y charts: a CI band whose low end is <= 0 is drawn down to the bottom edge, placed this
// factor below the smallest positive value drawn.
constexpr double kLogFloorFactor = 4;
// Fraction charts (recall, agreement, needle mass) span [0, this]: room above 1 for the markers.
constexpr double kFractionTop = 1.05;

// One table cell: a mean and its 95 % CI. mean NaN: the metric does not apply ("n/a").
struct Value {
  double mean = NAN, lo = NAN, hi = NAN;
  bool has() const { return std::isfinite(mean); }
  bool has_ci() const { return std::isfinite(lo) && std::isfinite(hi); }
};

enum class Format {
  Fraction,    // 0.998 [0.997, 0.999]
  Scientific,  // 2.36e-02 [2.15e-02, 2.58e-02]
  Bytes,       // 3.08 MiB (binary units; the CI only when it is not a point)
  Number,      // 0.01334 (4 significant digits; the CI only when it is not a point)
  Rate,        // 10549 (a whole number; no CI)
  Seconds,     // 0.212 [0.198, 0.227] (milliseconds resolution)
};

// A table column (and a summary.json key): one value per length bin.
struct Column {
  std::string header, key;
  Format format = Format::Fraction;
  std::vector<Value> values;
};

// "1261568" -> "1.20 MiB".
std::string human_bytes(double b) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (u + 1 < std::size(units) && std::abs(b) >= 1024) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

// The binary unit (power of 1024 and its name) in which `max_bytes` is between 1 and 1024.
std::pair<double, std::string> bytes_unit(double max_bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double scale = 1;
  size_t u = 0;
  while (u + 1 < std::size(units) && max_bytes / scale >= 1024) scale *= 1024, ++u;
  return {scale, units[u]};
}

std::string cell_text(const Value& v, Format f) {
  if (!v.has()) return "n/a";
  const bool point = !v.has_ci() || v.lo == v.hi;
  switch (f) {
    case Format::Fraction:
      return v.has_ci() ? fmt::format("{:.3f} [{:.3f}, {:.3f}]", v.mean, v.lo, v.hi) : fmt::format("{:.3f}", v.mean);
    case Format::Scientific:
      return v.has_ci() ? fmt::format("{:.2e} [{:.2e}, {:.2e}]", v.mean, v.lo, v.hi) : fmt::format("{:.2e}", v.mean);
    case Format::Bytes:
      return point ? human_bytes(v.mean) : fmt::format("{} [{}, {}]", human_bytes(v.mean), human_bytes(v.lo), human_bytes(v.hi));
    case Format::Number:
      return point ? fmt::format("{:.4g}", v.mean) : fmt::format("{:.4g} [{:.4g}, {:.4g}]", v.mean, v.lo, v.hi);
    case Format::Rate:
      return fmt::format("{:.0f}", v.mean);
    case Format::Seconds:
      return v.has_ci() ? fmt::format("{:.3f} [{:.3f}, {:.3f}]", v.mean, v.lo, v.hi) : fmt::format("{:.3f}", v.mean);
  }
  return "n/a";
}

json::value value_json(const Value& v) {
  if (!v.has()) return nullptr;
  json::object o{{"mean", v.mean}};
  if (v.has_ci()) o["ci95"] = json::array{v.lo, v.hi};
  return o;
}

// "needle_mass.L12" with prefix "needle_mass" -> 12; -1 when the name is not prefix.L<digits>.
int layer_of(const std::string& metric, const std::string& prefix) {
  const std::string head = prefix + ".L";
  if (metric.rfind(head, 0) != 0 || metric.size() == head.size()) return -1;
  const std::string digits = metric.substr(head.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoi(digits);
}

// One run's numbers, looked up by metric and length bin.
class RunData {
 public:
  explicit RunData(const EvalRun& run) : run_(run) {
    std::set<double> lengths;
    for (const auto& t : run.tasks) {
      for (const auto& b : t.by_length) lengths.insert(b.length);
      for (const auto& m : t.metrics_by_length) {
        lengths.insert(m.length);
        metrics_[m.metric].emplace(m.length, &m);  // the first task that reports a metric wins
      }
    }
    lengths_.assign(lengths.begin(), lengths.end());
  }

  const std::vector<double>& lengths() const { return lengths_; }

  // A metric of metrics_by_length per bin (n/a where absent or null).
  std::vector<Value> metric(const std::string& name) const {
    std::vector<Value> out(lengths_.size());
    const auto it = metrics_.find(name);
    if (it == metrics_.end()) return out;
    for (size_t i = 0; i < lengths_.size(); ++i)
      if (const auto b = it->second.find(lengths_[i]); b != it->second.end())
        out[i] = {b->second->mean, b->second->lo, b->second->hi};
    return out;
  }

  // A task's by_length mean with its CI per bin (n/a where the task or the bin is absent).
  std::vector<Value> task_mean(const std::string& task) const {
    std::vector<Value> out(lengths_.size());
    for (const auto& t : run_.tasks)
      if (t.name == task)
        for (const auto& b : t.by_length) out[index(b.length)] = {b.mean, b.lo, b.hi};
    return out;
  }

  // Prefill tokens/s per bin: the trace task's, else the first task that measured it.
  std::vector<Value> prefill_rate() const {
    std::vector<Value> out(lengths_.size());
    std::vector<const EvalTask*> order;
    for (const auto& t : run_.tasks)
      if (t.name == kTraceTask) order.insert(order.begin(), &t);
      else order.push_back(&t);
    for (const EvalTask* t : order)
      for (const auto& b : t->by_length)
        if (Value& v = out[index(b.length)]; !v.has() && b.tokens_per_second > 0) v.mean = b.tokens_per_second;
    return out;
  }

  // The layers l for which some metric "prefix.L<l>" exists, ascending.
  std::vector<int> layers(const std::string& prefix) const {
    std::set<int> out;
    for (const auto& [name, bins] : metrics_)
      if (const int l = layer_of(name, prefix); l >= 0) out.insert(l);
    return {out.begin(), out.end()};
  }

  // The retrieval layer: the one whose needle mass (fp64 when traced, else the deployment's),
  // averaged over the bins where it applies, is largest; -1 when no layer has one.
  int retrieval_layer() const {
    int best = -1;
    double best_mass = -1;
    for (const char* prefix : {"needle_mass_ref", "needle_mass"}) {
      for (int l : layers(prefix)) {
        double sum = 0;
        int n = 0;
        for (const Value& v : metric(fmt::format("{}.L{}", prefix, l)))
          if (v.has()) sum += v.mean, ++n;
        if (n > 0 && sum / n > best_mass) best = l, best_mass = sum / n;
      }
      if (best >= 0) return best;
    }
    return best;
  }

 private:
  size_t index(double length) const { return size_t(std::lower_bound(lengths_.begin(), lengths_.end(), length) - lengths_.begin()); }

  const EvalRun& run_;
  std::vector<double> lengths_;
  std::map<std::string, std::map<double, const MetricBin*>> metrics_;
};

// A series over the bins where the value applies (and, on a log axis, is positive), with its CI
// as a band. On a log axis, band ends below `floor` are clamped to it (a log axis cannot show 0).
Series series_of(const std::string& name, const std::vector<double>& lengths, const std::vector<Value>& v, int color,
                 bool log_axis = false, double floor = 0) {
  Series s{name, {}, {}, {}, {}, true, color};
  bool band = true;
  for (size_t i = 0; i < v.size(); ++i) band = band && (!v[i].has() || v[i].has_ci());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].has() || (log_axis && v[i].mean <= 0)) continue;
    s.x.push_back(lengths[i]);
    s.y.push_back(v[i].mean);
    if (band) {
      s.lo.push_back(std::max(v[i].lo, floor));
      s.hi.push_back(std::max(v[i].hi, floor));
    }
  }
  return s;
}

Chart fraction_chart(const std::string& title, const std::string& y_label, const std::vector<double>& lengths) {
  Chart c;
  c.title = title;
  c.x = context_axis(lengths);
  c.y.label = y_label;
  c.y.min = 0, c.y.max = kFractionTop;
  return c;
}

// Adds the chart as a figure when at least one series has a point; empty series are dropped.
void add_chart(Section& s, Chart c, const std::string& id, const std::string& caption) {
  std::erase_if(c.series, [](const Series& sr) { return sr.x.empty(); });
  if (c.series.empty()) return;
  s.blocks.push_back(figure(id, caption, render_svg(c)));
}

// The figures' log-y floor: the smallest positive value of `columns` / kLogFloorFactor.
double log_floor(const std::vector<const Column*>& columns) {
  double lo = INFINITY;
  for (const Column* c : columns)
    for (const Value& v : c->values)
      for (double x : {v.mean, v.lo})
        if (std::isfinite(x) && x > 0) lo = std::min(lo, x);
  return std::isfinite(lo) ? lo / kLogFloorFactor : 0;
}

// "Run `dir/results.json`: model `DIR` (backend B, numerics N, checkpoint H)", and for probes
// " — **<the run's probe label, or "mechanism probe">**; knobs: retrieval=csa S=12 ...".
std::string heading(const EvalRun& run, bool probe) {
  std::string probe_text;
  if (probe) {
    const std::string label = run.probe_label.rfind(kProbeLabel, 0) == 0 ? run.probe_label
                              : run.probe_label.empty()                  ? std::string(kProbeLabel)
                                                                         : std::string(kProbeLabel) + ", " + run.probe_label;
    std::string knobs;
    for (const char* k : kHeadingKnobs)
      if (const auto it = run.probe_knob_values.find(k); it != run.probe_knob_values.end())
        knobs += (knobs.empty() ? "" : " ") + std::string(k) + "=" + it->second;
    probe_text = " — **" + label + "**; knobs: " + (knobs.empty() ? std::string("none given") : knobs);
  }
  return fmt::format("Run `{}`: model `{}` (backend {}, numerics {}, checkpoint {}){}.", short_file(run.file), run.model_dir,
                     run.backend, run.numerics.empty() ? "not stated" : run.numerics, run.checkpoint_hash, probe_text);
}

// The table's columns in order, with the positions the figures draw from.
struct RunColumns {
  std::vector<Column> cols;
  size_t indexer_end = 0;             // [0, indexer_end): recall, agreement, indexer recall
  size_t logits = 0;                  // logits relative error
  size_t attn_begin = 0, attn_end = 0;  // attention relative error per shown layer
  size_t needle = 0;                  // needle mass: deployment, fp64, predicted
  size_t kv = 0, prefill = 0;
  int retrieval = -1;                 // the retrieval layer, -1: no needle mass traced
};

// A column per metric of the layers in `layers` ("indexer recall L1", ...), or one "n/a" column
// named `header` when there is none.
void per_layer(const RunData& d, std::vector<Column>& cols, const std::vector<int>& layers, const std::string& header,
               const std::string& prefix, Format f) {
  for (int l : layers) {
    const std::string key = fmt::format("{}.L{}", prefix, l);
    cols.push_back({fmt::format("{} L{}", header, l), key, f, d.metric(key)});
  }
  if (layers.empty()) cols.push_back({header, prefix, f, d.metric("")});
}

RunColumns columns_of(const RunData& d) {
  RunColumns c;
  auto& cols = c.cols;
  cols.push_back({"recall (niah_multikey)", "recall_niah_multikey", Format::Fraction, d.task_mean(kRecallTask)});
  cols.push_back({"top-1 agreement", "top1_agreement", Format::Fraction, d.task_mean(kTraceTask)});
  per_layer(d, cols, d.layers("indexer_recall"), "indexer recall", "indexer_recall", Format::Fraction);
  c.indexer_end = c.logits = cols.size();
  cols.push_back({"logits rel. error", "logits_rel_err", Format::Scientific, d.metric("logits_rel_err")});
  std::vector<int> attn = d.layers("attn_rel_err");
  if (attn.size() > kMaxPerLayerColumns) attn = {attn.back()};
  c.attn_begin = cols.size();
  per_layer(d, cols, attn, "attention rel. error", "attn_rel_err", Format::Scientific);
  c.attn_end = c.needle = cols.size();
  c.retrieval = d.retrieval_layer();
  const std::string rl = c.retrieval >= 0 ? fmt::format(" L{}", c.retrieval) : "";
  for (const char* prefix : {"needle_mass", "needle_mass_ref"}) {
    const std::string key = c.retrieval >= 0 ? fmt::format("{}.L{}", prefix, c.retrieval) : prefix;
    cols.push_back({"needle mass" + rl + (key.rfind("needle_mass_ref", 0) == 0 ? " fp64" : ""), key, Format::Fraction,
                    d.metric(c.retrieval >= 0 ? key : "")});
  }
  cols.push_back({"needle mass predicted", "needle_mass_predicted", Format::Fraction, d.metric("needle_mass_predicted")});
  c.kv = cols.size();
  cols.push_back({"KV cache", "kv_bytes", Format::Bytes, d.metric("kv_bytes")});
  cols.push_back({"decode GFLOP/token", "decode_gflop", Format::Number, d.metric("decode_gflop")});
  c.prefill = cols.size();
  cols.push_back({"prefill tok/s", "prefill_tokens_per_second", Format::Rate, d.prefill_rate()});
  cols.push_back({"fp64 reference (s)", "reference_seconds", Format::Seconds, d.metric("reference_seconds")});
  return c;
}

// The length table, and its rows for summary.json ({length, <column key>: {mean, ci95} | null}).
Table length_table(const std::vector<double>& L, const RunColumns& c, json::array& rows) {
  Table t{{"length"}, {}, {true}};
  for (const auto& col : c.cols) {
    t.header.push_back(col.header);
    t.numeric.push_back(true);
  }
  for (size_t i = 0; i < L.size(); ++i) {
    std::vector<std::string> row{tokens_label(L[i])};
    json::object o{{"length", L[i]}};
    for (const auto& col : c.cols) {
      row.push_back(cell_text(col.values[i], col.format));
      o[col.key] = value_json(col.values[i]);
    }
    t.rows.push_back(std::move(row));
    rows.push_back(std::move(o));
  }
  return t;
}

// (b) the logits' and attention outputs' relative error on a log axis.
Chart drift_chart(const std::vector<double>& L, const RunColumns& c, const std::string& suffix) {
  std::vector<const Column*> drift{&c.cols[c.logits]};
  for (size_t k = c.attn_begin; k < c.attn_end; ++k) drift.push_back(&c.cols[k]);
  Chart b;
  b.title = "Numerical drift vs the fp64 reference" + suffix;
  b.x = context_axis(L);
  b.y.label = "relative error";
  b.y.scale = Scale::Log10;
  const double floor = log_floor(drift);
  bool clamped = false;  // a band end <= 0: pin the axis bottom to the floor it was clamped to
  for (size_t k = 0; k < drift.size(); ++k) {
    b.series.push_back(series_of(drift[k]->header, L, drift[k]->values, int(k), true, floor));
    for (const Value& v : drift[k]->values) clamped = clamped || (v.has() && v.mean > 0 && v.lo <= 0);
  }
  if (clamped) {
    double top = 0;
    for (const auto& sr : b.series)
      for (double y : sr.hi.empty() ? sr.y : sr.hi) top = std::max(top, y);
    b.y.min = floor, b.y.max = std::pow(10.0, std::ceil(std::log10(top) * 4) / 4);  // the next quarter decade
  }
  return b;
}

// (c) the retrieval layer's needle mass: deployment and fp64 with bands, the closed form as points.
Chart needle_chart(const std::vector<double>& L, const RunColumns& c, const std::string& suffix) {
  const std::string rl = c.retrieval >= 0 ? fmt::format(" L{}", c.retrieval) : "";
  Chart n = fraction_chart("Needle mass of the retrieval layer" + rl + suffix, "attention weight on the needle", L);
  n.series.push_back(series_of("deployment" + rl, L, c.cols[c.needle].values, 0));
  n.series.push_back(series_of("fp64 reference" + rl, L, c.cols[c.needle + 1].values, 1));
  Series predicted = series_of("predicted (closed form)", L, c.cols[c.needle + 2].values, 2);
  predicted.line = false;
  predicted.lo.clear(), predicted.hi.clear();
  n.series.push_back(std::move(predicted));
  return n;
}

// (d) KV bytes in the binary unit that fits the largest, log-log; returns the unit too.
std::pair<Chart, std::string> kv_chart(const std::vector<double>& L, const RunColumns& c, const std::string& suffix) {
  double kv_max = 0;
  for (const Value& v : c.cols[c.kv].values)
    if (v.has()) kv_max = std::max(kv_max, v.mean);
  const auto [scale, unit] = bytes_unit(kv_max);
  std::vector<Value> scaled = c.cols[c.kv].values;
  for (Value& v : scaled) v.mean /= scale, v.lo /= scale, v.hi /= scale;
  Chart k;
  k.title = "KV cache after the prompt" + suffix;
  k.x = context_axis(L);
  k.y.label = "KV cache (" + unit + ")";
  k.y.scale = Scale::Log10;
  k.series.push_back(series_of("KV cache", L, scaled, 0, true));
  k.series.back().lo.clear(), k.series.back().hi.clear();
  return {std::move(k), unit};
}

void figures_of(const std::vector<double>& L, const RunColumns& c, const std::string& tag, const std::string& suffix,
                Section& s) {
  Chart a = fraction_chart("Recall, top-1 agreement and indexer recall" + suffix, "share (0..1)", L);
  for (size_t k = 0; k < c.indexer_end; ++k) a.series.push_back(series_of(c.cols[k].header, L, c.cols[k].values, int(k)));
  add_chart(s, std::move(a), tag + "_agreement",
            "Recall with distractors, top-1 agreement of the deployment path with the fp64 reference, and the indexer's "
            "top-k recall per CSA layer vs context, with 95 % CI bands.");
  add_chart(s, drift_chart(L, c, suffix), tag + "_drift",
            "Relative L2 error of the last logits and of the attention outputs vs context (log scale), 95 % CI bands; a "
            "band reaching the bottom edge includes 0, and exact zeros are not drawn (the table has them).");
  add_chart(s, needle_chart(L, c, suffix), tag + "_needle_mass",
            "The largest softmax weight over heads on the needle's rows at the last position, deployment and fp64, with "
            "95 % CI bands, and the probe's closed-form prediction (points).");
  auto [kv, unit] = kv_chart(L, c, suffix);
  add_chart(s, std::move(kv), tag + "_kv", "Bytes of the deployment KV cache after the prompt vs context (" + unit + ", log-log).");
  Chart p;
  p.title = "Prefill throughput" + suffix;
  p.x = context_axis(L);
  p.y.label = "prefill tokens/s";
  p.y.include_zero = true;
  p.series.push_back(series_of("prefill", L, c.cols[c.prefill].values, 1));
  add_chart(s, std::move(p), tag + "_prefill", "Prefill throughput of the deployment path vs context (tokens/s).");
}

void degradation_of(const EvalRun& run, size_t index, Section& s, json::array& out) {
  const bool probe = run.format == "probe" || !run.probe_knob_values.empty();
  const RunData d(run);
  const RunColumns c = columns_of(d);
  s.blocks.push_back(text(heading(run, probe)));
  json::array rows;
  s.blocks.push_back(table(length_table(d.lengths(), c, rows)));
  s.blocks.push_back(text(fmt::format(
      "Each cell: the bin's mean over its samples [bootstrap 95 % CI]; n/a: no sample of the bin had the metric. Needle "
      "mass is shown for the retrieval layer ({}), the layer with the largest fp64 needle mass; predicted is the probe's "
      "closed form (clean haystacks only).",
      c.retrieval >= 0 ? fmt::format("L{}", c.retrieval) : "none traced")));
  figures_of(d.lengths(), c, fmt::format("deg{}", index), probe ? std::string(" (") + kProbeLabel + ")" : "", s);

  json::object knobs;
  for (const auto& [key, v] : run.probe_knob_values) knobs[key] = v;
  out.push_back(json::object{{"file", run.file},
                             {"model_dir", run.model_dir},
                             {"backend", run.backend},
                             {"numerics", run.numerics},
                             {"checkpoint_hash", run.checkpoint_hash},
                             {"probe", probe},
                             {"probe_knobs", std::move(knobs)},
                             {"retrieval_layer", c.retrieval >= 0 ? json::value(c.retrieval) : json::value(nullptr)},
                             {"rows", std::move(rows)}});
}

}  // namespace

bool has_degradation(const EvalRun& run) {
  if (run.suite == "coding") return false;  // its per-sample metrics are run classes (section_coding.h)
  return run.suite == "degradation" ||
         std::any_of(run.tasks.begin(), run.tasks.end(), [](const EvalTask& t) { return !t.metrics_by_length.empty(); });
}

Section degradation(const Inputs& in, json::object& summary) {
  Section s{"degradation", "Degradation with context length", {}};
  s.blocks.push_back(text(
      "What happens inside the model as the context grows (`dsv4 eval --suite degradation`, docs/evals.md): recall with "
      "distractors, and a per-layer trace of the last position on the deployment path against an fp64 reference of the "
      "same weights (evals/degradation/layer_trace.h). One table and one set of figures per run: probe results and "
      "real-model results are never drawn on the same axes."));
  json::array runs;
  for (size_t i = 0; i < in.evals.size(); ++i)
    if (has_degradation(in.evals[i])) degradation_of(in.evals[i], i, s, runs);
  summary["degradation"] = std::move(runs);
  return s;
}

}  // namespace dsv4::report
