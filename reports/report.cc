#include "reports/report.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unistd.h>

#include "reference/errors.h"
#include "reports/blocks.h"
#include "reports/section_coding.h"
#include "reports/section_compare.h"
#include "reports/section_cost.h"
#include "reports/section_multirank.h"
#include "reports/section_degradation.h"
#include "reports/svg.h"

namespace dsv4::report {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kTargetShare = 0.75;  // targets.md: >= 75 % of the same-run ceiling

// Display names and a fixed colour per model, so a model has one colour in every chart.
struct ModelStyle {
  const char* key;
  const char* label;
  int color;
};
constexpr ModelStyle kModels[] = {{"v4-flash", "V4-Flash", 0}, {"v4-pro", "V4-Pro", 1}, {"v3.2", "V3.2", 2},
                                  {"v3", "V3", 3},             {"gqa8_bf16", "GQA-8 (BF16)", 4}};

const ModelStyle* style_of(const std::string& key) {
  for (const auto& m : kModels)
    if (key == m.key) return &m;
  return nullptr;
}

std::string pct(double x) { return fmt::format("{:.2f} %", 100 * x); }
std::string fixed(double x, int digits) { return fmt::format("{:.{}f}", x, digits); }

// One line per known model (its label and colour) over the contexts, on log-log axes.
Chart per_model_chart(const std::string& title, const std::string& y_label, const std::vector<double>& contexts,
                      const std::map<std::string, std::vector<double>>& values) {
  Chart c;
  c.title = title;
  c.x = context_axis(contexts);
  c.y.label = y_label;
  c.y.scale = Scale::Log10;
  for (const auto& m : kModels)
    if (const auto it = values.find(m.key); it != values.end())
      c.series.push_back(Series{m.label, contexts, it->second, {}, {}, true, m.color});
  return c;
}

// ---- 1. the paper reproduction ------------------------------------------------------------

Section reproduction(const Inputs& in, json::object& summary) {
  Section s{"reproduction", "Paper reproduction: KV memory and decode compute", {}};
  s.blocks.push_back(text(
      "The DeepSeek-V4 report's efficiency claims at a 1M-token context, recomputed from our analytic models "
      "(`dsv4 kv --table`, `dsv4 flops --table`; `bench/claims.h`). Ours is the figure our counting gives, paper the "
      "figure the report states; a difference is shown, not tuned away."));
  Table t{{"claim", "ours", "paper", "difference", "counting / note"}, {}, {false, true, true, true, false}};
  json::array claims;
  auto add = [&](const std::vector<Claim>& cs) {
    for (const auto& c : cs) {
      t.rows.push_back({c.claim, pct(c.ours), pct(c.paper), fmt::format("{:+.2f} points", 100 * c.difference), c.note});
      claims.push_back(json::object{{"claim", c.claim}, {"ours", c.ours}, {"paper", c.paper}, {"difference", c.difference}});
    }
  };
  if (in.kv) add(in.kv->claims);
  if (in.flops) add(in.flops->claims);
  s.blocks.push_back(table(std::move(t)));
  summary["claims"] = std::move(claims);

  if (in.kv) {
    // Bytes per token x context: the whole sequence's cache, in GiB.
    std::map<std::string, std::vector<double>> gib;
    for (const auto& [model, per_token] : in.kv->bytes_per_token)
      for (size_t i = 0; i < per_token.size(); ++i) gib[model].push_back(per_token[i] * in.kv->contexts[i] / kGiB);
    s.blocks.push_back(figure("kv_per_sequence",
                              "KV cache bytes of one sequence vs context length (" + in.kv->unit + "), log-log.",
                              render_svg(per_model_chart("KV cache of one sequence", "KV cache (GiB)", in.kv->contexts, gib))));
  }
  if (in.flops) {
    std::map<std::string, std::vector<double>> total;
    for (const auto& [model, parts] : in.flops->flops) total[model] = parts.at("total");
    s.blocks.push_back(figure("flops_per_token", "Decode FLOPs per token vs context length, log-log.",
                              render_svg(per_model_chart("Decode compute per token", "FLOPs per token",
                                                         in.flops->contexts, total))));
    s.blocks.push_back(text("Counting convention: " + in.flops->convention + "."));
  }
  return s;
}

// ---- 2. kernels ---------------------------------------------------------------------------

void kernels_of(const BenchRun& b, size_t index, Section& s, json::array& runs) {
  const std::string tag = fmt::format("bench{}", index);
  s.blocks.push_back(text(fmt::format(
      "Run `{}`: same-run ceilings SGEMM {:.1f} GFLOP/s and streaming read {:.1f} GB/s{}. Share = max(FLOPs / SGEMM "
      "rate, bytes / read rate) / time (medians; cpu: from CPU times). Target: share >= 75 %.",
      short_file(b.file), b.sgemm_flops_per_s / 1e9, b.read_bytes_per_s / 1e9,
      b.context.count("host_name") ? " on " + b.context.at("host_name") : "")));
  Table t{{"op", "model", "case", "time (ms)", "GFLOP/s", "GB/s", "bound", "share", "cpu share", "target"},
          {},
          {false, false, false, true, true, true, false, true, true, false}};
  int with_target = 0, met = 0;
  for (const auto& r : b.rows) {
    const std::string target = !r.target ? "-" : r.target_met ? "met" : "**not met**";
    with_target += r.target;
    met += r.target && r.target_met;
    t.rows.push_back({r.op, r.model, r.variant, fixed(r.seconds * 1e3, 3), fixed(r.flops / r.seconds / 1e9, 2),
                      fixed(r.bytes / r.seconds / 1e9, 2), r.bound, r.share < 0 ? "-" : fmt::format("{:.1f} %", 100 * r.share),
                      r.share_cpu < 0 ? "-" : fmt::format("{:.1f} %", 100 * r.share_cpu), target});
  }
  s.blocks.push_back(table(std::move(t)));

  // Roofline: achieved FLOP rate vs arithmetic intensity, with the two measured roofs.
  Chart rf;
  rf.title = "Roofline (same-run ceilings)";
  rf.x.label = "arithmetic intensity (FLOP/byte)";
  rf.x.scale = Scale::Log10;
  rf.y.label = "achieved GFLOP/s";
  rf.y.scale = Scale::Log10;
  std::map<std::string, Series> by_model;
  double imin = 1e30, imax = 0;
  for (const auto& r : b.rows) {
    if (r.flops <= 0 || r.bytes <= 0 || r.op.rfind("ceiling_", 0) == 0) continue;
    const double ai = r.flops / r.bytes;
    imin = std::min(imin, ai), imax = std::max(imax, ai);
    Series& sr = by_model[r.model];
    sr.name = style_of(r.model) ? style_of(r.model)->label : r.model;
    sr.color = style_of(r.model) ? style_of(r.model)->color : 5;
    sr.line = false;
    sr.x.push_back(ai);
    sr.y.push_back(r.flops / r.seconds / 1e9);
  }
  if (imax > 0) {
    for (auto& [m, sr] : by_model) rf.series.push_back(std::move(sr));
    // The memory roof (read rate x intensity) up to the ridge, then the compute roof.
    const double ridge = b.sgemm_flops_per_s / b.read_bytes_per_s;
    Series roof{"roof (read rate x intensity, capped by SGEMM)", {}, {}, {}, {}, true, -1, true};
    const double lo = std::min(imin, ridge) / 2, hi = std::max(imax, ridge) * 2;
    for (double ai : {lo, ridge, hi}) {
      roof.x.push_back(ai);
      roof.y.push_back(std::min(b.read_bytes_per_s * ai, b.sgemm_flops_per_s) / 1e9);
    }
    rf.series.push_back(std::move(roof));
    rf.hlines.push_back({"75 % of SGEMM", kTargetShare * b.sgemm_flops_per_s / 1e9});
    s.blocks.push_back(figure(tag + "_roofline",
                              "Each op case as a point: arithmetic intensity (FLOPs / bytes per iteration, FlashMLA counting) "
                              "vs achieved GFLOP/s; the roof is the same run's streaming-read rate times intensity, capped "
                              "by its SGEMM rate.",
                              render_svg(rf)));
  }

  if (!b.speedups.empty()) {
    Chart sp;
    sp.title = "V4 decode speedup over the predecessors";
    std::set<double> ctx;
    for (const auto& p : b.speedups) ctx.insert(p.context);
    sp.x = context_axis(std::vector<double>(ctx.begin(), ctx.end()));
    sp.y.label = "speedup (x)";
    sp.y.scale = Scale::Log10;
    std::map<std::string, Series> measured, analytic;
    Table st{{"context", "model", "vs", "measured", "analytic (FLOPs)", "measured / analytic"}, {}, {true, false, false, true, true, true}};
    for (const auto& p : b.speedups) {
      const std::string key = p.model + " vs " + p.versus;
      const int col = (style_of(p.model) ? style_of(p.model)->color : 0) + (p.versus == "v3" ? 2 : 0);
      Series& m = measured[key];
      m.name = key + " measured";
      m.color = col;
      m.x.push_back(p.context);
      m.y.push_back(p.measured);
      Series& a = analytic[key];
      a.name = key + " analytic";
      a.color = col;
      a.line = false;
      a.x.push_back(p.context);
      a.y.push_back(p.analytic);
      st.rows.push_back({tokens_label(p.context), p.model, p.versus, fixed(p.measured, 2) + "x", fixed(p.analytic, 2) + "x",
                         fixed(p.ratio, 2)});
    }
    for (auto& [k, v] : measured) sp.series.push_back(std::move(v));
    for (auto& [k, v] : analytic) sp.series.push_back(std::move(v));
    s.blocks.push_back(text(
        "Speedup of one V4 decode step's attention core + indexer path over the predecessor's, all layers, from the same "
        "run's medians (docs/bench.md); analytic = the FLOPs ratio of the same parts."));
    s.blocks.push_back(table(std::move(st)));
    s.blocks.push_back(figure(tag + "_speedups", "Measured speedups (lines) and the analytic FLOPs ratios (points) vs context.",
                              render_svg(sp)));
  }
  if (!b.engram_overlap.empty()) {
    Table et{{"on", "model", "mode", "tokens", "copy ms", "compute ms", "both ms", "overlap", "hidden"},
             {},
             {false, false, false, true, true, true, true, true, true}};
    for (const auto& o : b.engram_overlap)
      et.rows.push_back({o.backend, o.model, o.mode, fixed(o.tokens, 0), fixed(o.copy_seconds * 1e3, 3),
                         fixed(o.compute_seconds * 1e3, 3), fixed(o.both_seconds * 1e3, 3), fixed(o.overlap, 2),
                         fixed(100 * o.hidden, 1) + " %"});
    s.blocks.push_back(text(
        "Engram prefetch overlap (docs/engram.md): a chunk's table lookup run beside compute, the three parts timed in "
        "the same run; overlap = (copy + compute - both) / min(copy, compute), 1 = the shorter hidden; hidden = the share "
        "of the lookup's time hidden behind the compute."));
    s.blocks.push_back(table(std::move(et)));
  }
  json::array sps;
  for (const auto& p : b.speedups)
    sps.push_back(json::object{{"context", p.context}, {"model", p.model}, {"versus", p.versus}, {"measured", p.measured},
                               {"analytic", p.analytic}});
  runs.push_back(json::object{{"file", b.file},
                              {"sgemm_flops_per_s", b.sgemm_flops_per_s},
                              {"read_bytes_per_s", b.read_bytes_per_s},
                              {"benchmarks", b.rows.size()},
                              {"with_target", with_target},
                              {"target_met", met},
                              {"speedups", std::move(sps)}});
}

// The per-op status table from `dsv4 op --list --json`: one row per op, one column per backend
// (ref, cuda, then any other the file names), the statuses as the binary wrote them.
void correctness_status(const OpsList& ops, Section& s, json::object& summary) {
  std::vector<std::string> backends{"ref", "cuda"};
  for (const auto& op : ops.ops)
    for (const auto& [b, status] : op.backends)
      if (std::find(backends.begin(), backends.end(), b) == backends.end()) backends.push_back(b);
  s.blocks.push_back(text(fmt::format(
      "Correctness status per op and backend, as `{}` (`dsv4 op --list --json`) states it. The reference backend is "
      "checked by `ctest -L cpu` against naive fp64 oracles; a CUDA kernel that is compiled has been checked only where "
      "`ctest -L gpu` ran on a device, which this status does not claim.",
      short_file(ops.file))));
  Table t{{"op"}, {}, {false}};
  for (const auto& b : backends) {
    t.header.push_back(b);
    t.numeric.push_back(false);
  }
  t.header.push_back("what it computes");
  t.numeric.push_back(false);
  json::array rows;
  for (const auto& op : ops.ops) {
    std::vector<std::string> row{op.name};
    json::object st;
    for (const auto& b : backends) {
      std::string cell = "-";
      for (const auto& [name, status] : op.backends)
        if (name == b) cell = status;
      row.push_back(cell);
      st[b] = cell;
    }
    row.push_back(op.summary);
    t.rows.push_back(std::move(row));
    rows.push_back(json::object{{"name", op.name}, {"backends", std::move(st)}});
  }
  s.blocks.push_back(table(std::move(t)));
  summary["op_status"] = json::object{{"file", ops.file}, {"ops", std::move(rows)}};
}

Section kernels(const Inputs& in, json::object& summary) {
  Section s{"kernels", "Kernels: correctness status, time, throughput and share of the machine's ceiling", {}};
  s.blocks.push_back(text(
      "Correctness is checked by the test suite (`ctest`: every reference op against a naive oracle; the CUDA kernels "
      "only where a GPU ran them), not by these timings; the inputs here are random and the caches fabricated."));
  if (in.ops) correctness_status(*in.ops, s, summary);
  json::array runs;
  for (size_t i = 0; i < in.bench.size(); ++i) kernels_of(in.bench[i], i, s, runs);
  summary["kernels"] = std::move(runs);
  return s;
}

// ---- 3. recall ------------------------------------------------------------------------------

std::string floor_text(double v) { return v < 0 ? "-" : fmt::format("{:.3f}", v); }

void recall_of(const EvalRun& run, size_t index, Section& s, json::array& out) {
  const bool probe = run.format == "probe";
  s.blocks.push_back(text(fmt::format(
      "Run `{}`: suite {}, model `{}` ({}, checkpoint {}){}.", short_file(run.file), run.suite, run.model_dir, run.backend,
      run.checkpoint_hash,
      probe ? " — **" + run.probe_label + "**; knobs: " + run.probe_knobs : "")));
  json::array tasks;
  for (const auto& t : run.tasks) {
    const std::string tag = fmt::format("eval{}_{}", index, t.name);
    s.blocks.push_back(text(fmt::format("**{}** (version {}, data {}): effective length {}.", t.name, t.version, t.data_hash,
                                        t.effective_length > 0 ? tokens_label(t.effective_length) : "none")));
    Table tb{{"length", "n", "mean", "95 % CI", "chance", "copy a random needle", "copy the first needle", "prefill tok/s"},
             {},
             {true, true, true, true, true, true, true, true}};
    Chart c;
    c.title = t.name + (probe ? " (mechanism probe)" : "");
    std::vector<double> lengths;
    for (const auto& b : t.by_length) lengths.push_back(b.length);
    c.x = context_axis(lengths);
    c.y.label = "mean score";
    c.y.min = 0, c.y.max = 1.05;
    Series sr{"score (95 % CI band)", {}, {}, {}, {}, true, 0};
    double chance = -1, copy_random = -1;
    for (const auto& b : t.by_length) {
      tb.rows.push_back({tokens_label(b.length), fmt::format("{:g}", b.n), fmt::format("{:.3f}", b.mean),
                         fmt::format("[{:.3f}, {:.3f}]", b.lo, b.hi), floor_text(b.chance), floor_text(b.copy_random),
                         floor_text(b.copy_first), b.tokens_per_second < 0 ? "-" : fmt::format("{:.0f}", b.tokens_per_second)});
      sr.x.push_back(b.length);
      sr.y.push_back(b.mean);
      sr.lo.push_back(b.lo);
      sr.hi.push_back(b.hi);
      chance = std::max(chance, b.chance);
      copy_random = std::max(copy_random, b.copy_random);
    }
    s.blocks.push_back(table(std::move(tb)));
    c.series.push_back(std::move(sr));
    if (chance >= 0) c.hlines.push_back({"chance", chance});
    if (copy_random >= 0 && copy_random < 1) c.hlines.push_back({"copy a random needle", copy_random});
    if (!t.by_length.empty())
      s.blocks.push_back(figure(tag + "_length", "Mean score vs prompt length with its bootstrap 95 % interval and the noise floors.",
                                render_svg(c)));
    // Depth x length: the needle-in-a-haystack picture.
    std::vector<double> depths;
    for (const auto& b : t.by_depth)
      if (b.depth >= 0 && std::find(depths.begin(), depths.end(), b.depth) == depths.end()) depths.push_back(b.depth);
    if (!depths.empty() && !lengths.empty()) {
      std::sort(depths.begin(), depths.end());
      Heatmap h;
      h.title = t.name + ": mean score by needle depth and length";
      h.x_label = "prompt length (tokens)";
      h.y_label = "needle depth";
      for (double L : lengths) h.cols.push_back(tokens_label(L));
      for (double dp : depths) h.rows.push_back(fmt::format("{:.0f} %", 100 * dp));
      h.v.assign(depths.size(), std::vector<double>(lengths.size(), NAN));
      for (const auto& b : t.by_depth) {
        const auto r = std::find(depths.begin(), depths.end(), b.depth) - depths.begin();
        const auto k = std::find(lengths.begin(), lengths.end(), b.length) - lengths.begin();
        if (size_t(k) < lengths.size()) h.v[size_t(r)][size_t(k)] = b.mean;
      }
      s.blocks.push_back(figure(tag + "_depth", "Mean score per needle depth (rows) and length (columns).", render_heatmap(h)));
    }
    // Compression geometry: the needle's offset mod 4 and mod 128, inside / outside the window.
    std::vector<std::string> classes;
    for (const auto& b : t.by_class)
      if (std::find(classes.begin(), classes.end(), b.cls) == classes.end()) classes.push_back(b.cls);
    if (!classes.empty()) {
      Table g{{"geometry class"}, {}, {false}};
      for (double L : lengths) {
        g.header.push_back(tokens_label(L));
        g.numeric.push_back(true);
      }
      for (const auto& cl : classes) {
        std::vector<std::string> row{cl};
        for (double L : lengths) {
          std::string cell = "-";
          for (const auto& b : t.by_class)
            if (b.cls == cl && b.length == L) cell = fmt::format("{:.3f} (n {:g})", b.mean, b.n);
          row.push_back(cell);
        }
        g.rows.push_back(std::move(row));
      }
      s.blocks.push_back(text("Mean score by the needle's position relative to the compression geometry (offset mod 4 and "
                              "mod 128, inside or outside the last 128-token window):"));
      s.blocks.push_back(table(std::move(g)));
    }
    json::array bins;
    for (const auto& b : t.by_length)
      bins.push_back(json::object{{"length", b.length}, {"mean", b.mean}, {"ci95", json::array{b.lo, b.hi}}, {"n", b.n}});
    tasks.push_back(json::object{{"task", t.name}, {"effective_length", t.effective_length}, {"by_length", std::move(bins)}});
  }
  out.push_back(json::object{{"file", run.file}, {"format", run.format}, {"probe", probe}, {"tasks", std::move(tasks)}});
}

Section recall(const Inputs& in, json::object& summary) {
  Section s{"recall", "Recall", {}};
  s.blocks.push_back(text(
      "Needles in long contexts (`dsv4 eval --suite recall`, docs/evals.md). Scores with bootstrap 95 % intervals and the "
      "noise floors beside them. Probe runs are mechanism probes (constructed weights): they test compression, selection, "
      "window and quantisation, not language ability, and are never comparable with trained-model NIAH/MRCR numbers."));
  json::array runs;
  for (size_t i = 0; i < in.evals.size(); ++i)
    if (in.evals[i].suite == "recall") recall_of(in.evals[i], i, s, runs);
  summary["recall"] = std::move(runs);
  return s;
}

// ---- 6. regression verdicts ---------------------------------------------------------------

Section regression(const Inputs& in, json::object& summary) {
  Section s{"regression", "Regression verdicts", {}};
  json::array out;
  for (const auto& c : in.compare) {
    std::map<std::string, int> counts;
    for (const auto& r : c.rows) ++counts[r.outcome];
    s.blocks.push_back(text(fmt::format(
        "`{}` against the baseline `{}` (metric {}, threshold {:.0f} %, Mann-Whitney rank test): **{}** — {} slower, {} "
        "faster, {} with no clear difference.",
        c.fresh, c.baseline, c.metric, 100 * c.threshold, c.regression ? "regression" : "no regression", counts["slower"],
        counts["faster"], counts["no clear difference"])));
    Table t{{"benchmark", "new / baseline", "95 % CI", "p", "verdict"}, {}, {false, true, true, true, false}};
    for (const auto& r : c.rows)
      t.rows.push_back({r.name, fixed(r.ratio, 3), fmt::format("[{:.3f}, {:.3f}]", r.lo, r.hi), fmt::format("{:.2g}", r.p),
                        r.outcome == "slower" ? "**slower**" : r.outcome});
    s.blocks.push_back(table(std::move(t)));
    json::object o{{"file", c.file}, {"regression", c.regression}};
    for (const auto& [k, v] : counts) o[k] = v;
    out.push_back(std::move(o));
  }
  summary["regression"] = std::move(out);
  return s;
}

// ---- 7. provenance ------------------------------------------------------------------------

Section provenance(const Inputs& in, const std::string& generated_at, json::object& summary) {
  Section s{"provenance", "Provenance", {}};
  Table t{{"item", "value"}, {}, {false, false}};
  t.rows.push_back({"generated", generated_at});
  t.rows.push_back({"dsv4 revision (report)", build_revision()});
  for (const auto& f : in.used) t.rows.push_back({"input", f});
  for (const auto& b : in.bench)
    for (const char* k : {"date", "host_name", "num_cpus", "mhz_per_cpu", "library_build_type"})
      if (b.context.count(k)) t.rows.push_back({short_file(b.file) + " " + k, b.context.at(k)});
  for (const auto& e : in.evals) {
    t.rows.push_back({short_file(e.file) + " revision", e.revision});
    t.rows.push_back({short_file(e.file) + " machine", e.machine});
    t.rows.push_back({short_file(e.file) + " checkpoint", e.model_dir + " (" + e.checkpoint_hash + ")"});
    for (const auto& tk : e.tasks)
      t.rows.push_back({short_file(e.file) + " " + tk.name, "version " + tk.version + ", data " + tk.data_hash});
  }
  s.blocks.push_back(text("Every number above comes from these files; rerun the commands that wrote them to reproduce it."));
  s.blocks.push_back(table(std::move(t)));
  json::array used, ignored;
  for (const auto& f : in.used) used.push_back(json::value(f));
  for (const auto& f : in.ignored) ignored.push_back(json::value(f));
  summary["provenance"] =
      json::object{{"generated", generated_at}, {"revision", build_revision()}, {"inputs", std::move(used)}, {"ignored", std::move(ignored)}};
  return s;
}

// ---- rendering ----------------------------------------------------------------------------

std::string md_cell(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '|' ? std::string("\\|") : std::string(1, c);
  return o;
}

std::string html_escape(const std::string& s) { return xml_escape(s); }

// The Markdown inline subset used in texts (`code`, **bold**) as HTML.
std::string html_inline(const std::string& s) {
  std::string o, e = html_escape(s);
  bool code = false, bold = false;
  for (size_t i = 0; i < e.size(); ++i) {
    if (e[i] == '`') {
      o += code ? "</code>" : "<code>";
      code = !code;
    } else if (!code && e.compare(i, 2, "**") == 0) {
      o += bold ? "</strong>" : "<strong>";
      bold = !bold;
      ++i;
    } else {
      o += e[i];
    }
  }
  if (code) o += "</code>";
  if (bold) o += "</strong>";
  return o;
}

constexpr const char* kCss = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #444; }
code { background: #f2f2f2; padding: 0 .2rem; border-radius: 3px; }
)";

}  // namespace

Report build_report(const Inputs& in, const std::string& generated_at) {
  Report r;
  r.title = "dsv4 report";
  json::object summary{{"kind", "dsv4.report"}, {"version", 1}};
  if (in.kv || in.flops) r.sections.push_back(reproduction(in, summary));
  if (!in.bench.empty() || in.ops) r.sections.push_back(kernels(in, summary));
  if (std::any_of(in.evals.begin(), in.evals.end(), [](const EvalRun& e) { return e.suite == "recall"; }))
    r.sections.push_back(recall(in, summary));
  if (std::any_of(in.evals.begin(), in.evals.end(), has_degradation)) r.sections.push_back(degradation(in, summary));
  if (std::any_of(in.evals.begin(), in.evals.end(), has_coding)) r.sections.push_back(coding(in, summary));
  if (!in.comparisons.empty()) r.sections.push_back(comparison(in, summary));
  if (!in.costs.empty()) r.sections.push_back(cost(in, summary));
  if (!in.model_bench.empty()) r.sections.push_back(multirank(in, summary));
  if (!in.compare.empty()) r.sections.push_back(regression(in, summary));
  r.sections.push_back(provenance(in, generated_at, summary));
  json::array ids;
  for (const auto& s : r.sections) ids.push_back(json::value(s.id));
  summary["sections"] = std::move(ids);
  r.summary = std::move(summary);
  return r;
}

std::string render_markdown(const Report& r) {
  std::string o = "# " + r.title + "\n\n";
  for (const auto& s : r.sections) {
    o += "## " + s.title + "\n\n";
    for (const auto& b : s.blocks) {
      if (b.kind == Block::Text) {
        o += b.text + "\n\n";
      } else if (b.kind == Block::TableBlock) {
        const Table& t = b.table;
        o += "|";
        for (const auto& h : t.header) o += " " + md_cell(h) + " |";
        o += "\n|";
        for (size_t k = 0; k < t.header.size(); ++k) o += k < t.numeric.size() && t.numeric[k] ? "---:|" : "---|";
        o += "\n";
        for (const auto& row : t.rows) {
          o += "|";
          for (const auto& c : row) o += " " + md_cell(c) + " |";
          o += "\n";
        }
        o += "\n";
      } else {
        o += "![" + b.figure.caption + "](figures/" + b.figure.id + ".svg)\n\n*" + b.figure.caption + "*\n\n";
      }
    }
  }
  return o;
}

std::string render_html(const Report& r) {
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
                  html_escape(r.title) + "</title>\n<style>" + kCss + "</style>\n</head>\n<body>\n<h1>" +
                  html_escape(r.title) + "</h1>\n<nav>";
  for (const auto& s : r.sections) o += "<a href=\"#" + s.id + "\">" + html_escape(s.title) + "</a>";
  o += "</nav>\n";
  for (const auto& s : r.sections) {
    o += "<section id=\"" + s.id + "\">\n<h2>" + html_escape(s.title) + "</h2>\n";
    for (const auto& b : s.blocks) {
      if (b.kind == Block::Text) {
        o += "<p>" + html_inline(b.text) + "</p>\n";
      } else if (b.kind == Block::TableBlock) {
        const Table& t = b.table;
        o += "<table>\n<thead><tr>";
        for (const auto& h : t.header) o += "<th>" + html_escape(h) + "</th>";
        o += "</tr></thead>\n<tbody>\n";
        for (const auto& row : t.rows) {
          o += "<tr>";
          for (size_t k = 0; k < row.size(); ++k)
            o += std::string(k < t.numeric.size() && t.numeric[k] ? "<td class=\"num\">" : "<td>") + html_inline(row[k]) + "</td>";
          o += "</tr>\n";
        }
        o += "</tbody>\n</table>\n";
      } else {
        o += "<figure id=\"fig-" + b.figure.id + "\">\n" + b.figure.svg + "<figcaption>" + html_escape(b.figure.caption) +
             "</figcaption>\n</figure>\n";
      }
    }
    o += "</section>\n";
  }
  o += "</body>\n</html>\n";
  return o;
}

void write_report(const Report& r, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw InputError(dir + ": cannot create the output folder (" + ec.message() + ")");
  const fs::path tmp = fs::path(dir) / fmt::format(".report-tmp-{}", ::getpid());
  fs::remove_all(tmp, ec);
  try {
    fs::create_directories(tmp / "figures");
    auto put = [&](const fs::path& p, const std::string& text) {
      std::ofstream f(p, std::ios::binary);
      f << text;
      f.flush();
      if (!f) throw InputError(p.string() + ": write failed");
    };
    put(tmp / "report.md", render_markdown(r));
    put(tmp / "index.html", render_html(r));
    put(tmp / "summary.json", json::serialize(r.summary) + "\n");
    for (const auto& s : r.sections)
      for (const auto& b : s.blocks)
        if (b.kind == Block::FigureBlock) put(tmp / "figures" / (b.figure.id + ".svg"), b.figure.svg);
    // Everything is written: move it into place (renames within one filesystem).
    fs::remove_all(fs::path(dir) / "figures");
    fs::rename(tmp / "figures", fs::path(dir) / "figures");
    for (const char* f : {"report.md", "index.html", "summary.json"}) fs::rename(tmp / f, fs::path(dir) / f);
    fs::remove_all(tmp);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw InputError(dir + ": cannot write the report (" + e.what() + ")");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

std::string build_revision() {
#ifdef DSV4_SOURCE_DIR
  // The checkout's HEAD now (the binary may be older than the last commit), else the revision
  // at configure time.
  if (FILE* p = ::popen("git -C \"" DSV4_SOURCE_DIR "\" rev-parse HEAD 2>/dev/null", "r")) {
    char buf[64] = {};
    const bool ok = std::fgets(buf, sizeof buf, p) != nullptr;
    if (::pclose(p) == 0 && ok) {
      std::string s(buf);
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
      if (s.size() >= 7) return s;
    }
  }
#endif
#ifdef DSV4_CONFIGURE_GIT_REV
  return DSV4_CONFIGURE_GIT_REV;
#else
  return "unknown";
#endif
}

}  // namespace dsv4::report
