#include "reports/inputs.h"

#include <fmt/core.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/derive.h"
#include "reference/errors.h"

namespace dsv4::report {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

std::string read_text(const std::string& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw InputError(file + ": cannot read the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Field access with errors naming the file and the field path.
class Doc {
 public:
  Doc(std::string file, const json::value& root) : file_(std::move(file)), root_(root) {}
  const std::string& file() const { return file_; }
  const json::value& root() const { return root_; }

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw InputError(fmt::format("{}: {}: {}", file_, path, what));
  }
  const json::object& object(const json::value& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "expected an object");
    return v.get_object();
  }
  const json::value& at(const json::value& o, const std::string& path, const char* key) const {
    const auto* v = object(o, path.empty() ? "(top level)" : path).if_contains(key);
    if (!v) fail(path.empty() ? key : path + "." + key, "missing");
    return *v;
  }
  const json::array& array(const json::value& o, const std::string& path, const char* key) const {
    const auto& v = at(o, path, key);
    if (!v.is_array()) fail(join(path, key), "expected an array");
    return v.get_array();
  }
  double number(const json::value& o, const std::string& path, const char* key) const {
    const auto& v = at(o, path, key);
    if (!v.is_number()) fail(join(path, key), "expected a number");
    const double x = v.to_number<double>();
    if (!std::isfinite(x)) fail(join(path, key), "not a finite number");
    return x;
  }
  // A number, or -1 when the field is absent or null (optional measurements).
  double optional_number(const json::value& o, const char* key) const {
    const auto* v = o.is_object() ? o.get_object().if_contains(key) : nullptr;
    return v && v->is_number() ? v->to_number<double>() : -1;
  }
  std::string string(const json::value& o, const std::string& path, const char* key) const {
    const auto& v = at(o, path, key);
    if (!v.is_string()) fail(join(path, key), "expected a string");
    return std::string(v.get_string());
  }
  static std::string join(const std::string& path, const char* key) { return path.empty() ? key : path + "." + key; }
  static std::string item(const char* key, size_t i) { return fmt::format("{}[{}]", key, i); }

 private:
  std::string file_;
  const json::value& root_;
};

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<Claim> read_claims(const Doc& d) {
  std::vector<Claim> out;
  const auto& a = d.array(d.root(), "", "claims");
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string p = Doc::item("claims", i);
    Claim c;
    c.claim = d.string(a[i], p, "claim");
    c.ours = d.number(a[i], p, "ours");
    c.paper = d.number(a[i], p, "paper");
    c.difference = d.number(a[i], p, "difference");
    if (const auto* n = a[i].get_object().if_contains("note"); n && n->is_string()) c.note = std::string(n->get_string());
    out.push_back(std::move(c));
  }
  return out;
}

KvClaims read_kv(const Doc& d) {
  KvClaims k;
  k.file = d.file();
  k.unit = d.string(d.root(), "", "unit");
  const auto& curve = d.array(d.root(), "", "curve");
  for (size_t i = 0; i < curve.size(); ++i) {
    const std::string p = Doc::item("curve", i);
    k.contexts.push_back(d.number(curve[i], p, "context"));
    for (const auto& [key, v] : d.object(curve[i], p)) {
      if (key == "context") continue;
      k.bytes_per_token[std::string(key)].push_back(d.number(curve[i], p, std::string(key).c_str()));
    }
  }
  for (const auto& [model, v] : k.bytes_per_token)
    if (v.size() != k.contexts.size()) d.fail("curve", "model '" + model + "' is missing at some contexts");
  k.claims = read_claims(d);
  return k;
}

FlopsClaims read_flops(const Doc& d) {
  FlopsClaims f;
  f.file = d.file();
  f.convention = d.string(d.root(), "", "convention");
  const auto& curve = d.array(d.root(), "", "curve");
  for (size_t i = 0; i < curve.size(); ++i) {
    const std::string p = Doc::item("curve", i);
    f.contexts.push_back(d.number(curve[i], p, "context"));
    for (const auto& [key, v] : d.object(curve[i], p)) {
      if (key == "context") continue;
      const std::string model(key), mp = p + "." + model;
      for (const char* part : {"linear", "attention", "indexer", "compressor", "total"})
        f.flops[model][part].push_back(d.number(v, mp, part));
    }
  }
  for (const auto& [model, parts] : f.flops)
    if (parts.at("total").size() != f.contexts.size()) d.fail("curve", "model '" + model + "' is missing at some contexts");
  f.claims = read_claims(d);
  return f;
}

// Google Benchmark's context block of the bench.json beside a bench_derived.json.
std::map<std::string, std::string> bench_context(const fs::path& derived) {
  std::map<std::string, std::string> out;
  const fs::path raw = derived.parent_path() / "bench.json";
  if (!fs::exists(raw)) return out;
  json::value v;
  try {
    v = bench::parse_benchmark_json(read_text(raw.string()));
  } catch (const std::exception&) {
    return out;  // the context is provenance only: a damaged bench.json contributes nothing
  }
  if (!v.is_object()) return out;
  if (const auto* c = v.get_object().if_contains("context"); c && c->is_object())
    for (const auto& [k, x] : c->get_object()) {
      if (x.is_string()) out[std::string(k)] = std::string(x.get_string());
      else if (x.is_number()) out[std::string(k)] = fmt::format("{}", x.to_number<double>());
    }
  return out;
}

BenchRun read_bench(const Doc& d) {
  BenchRun b;
  b.file = d.file();
  const auto& ceil = d.at(d.root(), "", "ceilings");
  b.sgemm_flops_per_s = d.number(ceil, "ceilings", "sgemm_flops_per_s");
  b.read_bytes_per_s = d.number(ceil, "ceilings", "read_bytes_per_s");
  const auto& rows = d.array(d.root(), "", "benchmarks");
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string p = Doc::item("benchmarks", i);
    BenchRow r;
    r.name = d.string(rows[i], p, "name");
    const size_t a = r.name.find('/'), c = a == std::string::npos ? a : r.name.find('/', a + 1);
    if (c == std::string::npos) d.fail(p + ".name", "'" + r.name + "' is not <op>/<model>/<case>");
    r.op = r.name.substr(0, a);
    r.model = r.name.substr(a + 1, c - a - 1);
    r.variant = r.name.substr(c + 1);
    r.flops = d.number(rows[i], p, "flops_per_iter");
    r.bytes = d.number(rows[i], p, "bytes_per_iter");
    auto samples = [&](const char* key, bool required) {
      std::vector<double> s;
      const auto* v = rows[i].get_object().if_contains(key);
      if (!v) {
        if (required) d.fail(p + "." + key, "missing");
        return s;
      }
      if (!v->is_array()) d.fail(p + "." + key, "expected an array");
      for (size_t k = 0; k < v->get_array().size(); ++k) {
        const auto& x = v->get_array()[k];
        if (!x.is_number() || !(x.to_number<double>() > 0))
          d.fail(fmt::format("{}.{}[{}]", p, key, k), "expected a positive number");
        s.push_back(x.to_number<double>());
      }
      return s;
    };
    r.seconds = median(samples("seconds", true));
    if (r.seconds <= 0) d.fail(p + ".seconds", "no repetitions");
    r.share = median(samples("roofline_share", true));
    r.share_cpu = median(samples("roofline_share_cpu", false));
    if (const auto* v = rows[i].get_object().if_contains("bound"); v && v->is_string()) r.bound = std::string(v->get_string());
    if (const auto* v = rows[i].get_object().if_contains("target"); v && v->is_bool()) r.target = v->get_bool();
    if (const auto* v = rows[i].get_object().if_contains("target_met"); v && v->is_bool()) r.target_met = v->get_bool();
    b.rows.push_back(std::move(r));
  }
  if (const auto* sp = d.root().get_object().if_contains("speedups")) {
    if (!sp->is_array()) d.fail("speedups", "expected an array");
    for (size_t i = 0; i < sp->get_array().size(); ++i) {
      const auto& e = sp->get_array()[i];
      const std::string p = Doc::item("speedups", i);
      BenchSpeedup s;
      s.context = d.number(e, p, "context");
      s.model = d.string(e, p, "model");
      s.versus = d.string(e, p, "versus");
      s.measured = d.number(e, p, "measured");
      s.analytic = d.number(e, p, "analytic");
      s.ratio = d.number(e, p, "ratio");
      b.speedups.push_back(std::move(s));
    }
  }
  if (const auto* eo = d.root().get_object().if_contains("engram_overlap")) {
    if (!eo->is_array()) d.fail("engram_overlap", "expected an array");
    for (size_t i = 0; i < eo->get_array().size(); ++i) {
      const auto& e = eo->get_array()[i];
      const std::string p = Doc::item("engram_overlap", i);
      BenchEngramOverlap o;
      // "backend" is absent in files written before the CPU cases existed: those were GPU rows
      const auto* be = e.is_object() ? e.get_object().if_contains("backend") : nullptr;
      o.backend = be && be->is_string() ? std::string(be->get_string()) : "gpu";
      o.model = d.string(e, p, "model");
      o.mode = d.string(e, p, "mode");
      o.tokens = d.number(e, p, "tokens");
      o.copy_seconds = d.number(e, p, "copy_seconds");
      o.compute_seconds = d.number(e, p, "compute_seconds");
      o.both_seconds = d.number(e, p, "both_seconds");
      o.overlap = d.number(e, p, "overlap");
      o.hidden = d.number(e, p, "hidden_fraction_of_copy");
      b.engram_overlap.push_back(std::move(o));
    }
  }
  b.context = bench_context(fs::path(d.file()));
  return b;
}

CompareRun read_compare(const Doc& d) {
  CompareRun c;
  c.file = d.file();
  c.baseline = d.string(d.root(), "", "baseline");
  c.fresh = d.string(d.root(), "", "new");
  c.metric = d.string(d.root(), "", "metric");
  c.threshold = d.number(d.root(), "", "threshold");
  const auto& rows = d.array(d.root(), "", "results");
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string p = Doc::item("results", i);
    CompareRow r;
    r.name = d.string(rows[i], p, "name");
    r.outcome = d.string(rows[i], p, "outcome");
    r.ratio = d.number(rows[i], p, "ratio");
    r.p = d.number(rows[i], p, "p_value");
    const auto& ci = d.array(rows[i], p, "ratio_ci");
    if (ci.size() != 2 || !ci[0].is_number() || !ci[1].is_number()) d.fail(p + ".ratio_ci", "expected [lo, hi]");
    r.lo = ci[0].to_number<double>();
    r.hi = ci[1].to_number<double>();
    c.rows.push_back(std::move(r));
  }
  const auto& reg = d.at(d.root(), "", "regression");
  if (!reg.is_bool()) d.fail("regression", "expected true or false");
  c.regression = reg.get_bool();
  return c;
}

EvalBin read_bin(const Doc& d, const json::value& b, const std::string& p) {
  EvalBin e;
  e.length = d.number(b, p, "length");
  e.n = d.number(b, p, "n");
  e.mean = d.number(b, p, "mean");
  const auto& ci = d.array(b, p, "ci95");
  if (ci.size() != 2 || !ci[0].is_number() || !ci[1].is_number()) d.fail(p + ".ci95", "expected [lo, hi]");
  e.lo = ci[0].to_number<double>();
  e.hi = ci[1].to_number<double>();
  if (const auto* f = b.get_object().if_contains("floors"); f && f->is_object()) {
    e.chance = d.optional_number(*f, "chance");
    e.copy_random = d.optional_number(*f, "copy_random");
    e.copy_first = d.optional_number(*f, "copy_first");
  }
  e.tokens_per_second = d.optional_number(b, "prefill_tokens_per_second");
  if (const auto* v = b.get_object().if_contains("depth"); v && v->is_number()) e.depth = v->to_number<double>();
  if (const auto* v = b.get_object().if_contains("class"); v && v->is_string()) e.cls = std::string(v->get_string());
  return e;
}

// One "metrics_by_length" entry. mean is a number, or null when no sample had the metric
// (then n must be 0 and ci95 / min / max may be absent); n and n_na are counts.
MetricBin read_metric_bin(const Doc& d, const json::value& b, const std::string& p) {
  MetricBin m;
  m.metric = d.string(b, p, "metric");
  if (m.metric.empty()) d.fail(p + ".metric", "empty name");
  m.length = d.number(b, p, "length");
  // 0: a suite without a length axis (coding: one bin 0); negative is malformed.
  if (!(m.length >= 0)) d.fail(p + ".length", "expected a non-negative number of tokens");
  auto count = [&](const char* key) {
    const double x = d.number(b, p, key);
    if (x < 0 || x != std::floor(x)) d.fail(Doc::join(p, key), "expected a count (a non-negative integer)");
    return x;
  };
  m.n = count("n");
  m.n_na = count("n_na");
  const auto& mean = d.at(b, p, "mean");
  if (mean.is_null()) {
    if (m.n != 0) d.fail(p + ".mean", fmt::format("null, but n = {:g} samples had the metric", m.n));
    m.mean = m.lo = m.hi = m.min = m.max = NAN;
    return m;
  }
  m.mean = d.number(b, p, "mean");
  if (m.n == 0) d.fail(p + ".mean", "a number, but n = 0 samples had the metric");
  const auto& ci = d.array(b, p, "ci95");
  if (ci.size() != 2 || !ci[0].is_number() || !ci[1].is_number()) d.fail(p + ".ci95", "expected [lo, hi]");
  m.lo = ci[0].to_number<double>();
  m.hi = ci[1].to_number<double>();
  if (!(m.lo <= m.hi)) d.fail(p + ".ci95", "lo > hi");
  m.min = d.number(b, p, "min");
  m.max = d.number(b, p, "max");
  return m;
}

std::string text_of(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_bool()) return v.get_bool() ? "on" : "off";
  if (v.is_number()) return fmt::format("{:g}", v.to_number<double>());
  return json::serialize(v);
}

PassAtK read_pass(const Doc& d, const json::value& o, const std::string& p) {
  PassAtK k;
  double* out[] = {&k.pass1, &k.pass10, &k.pass100};
  const char* keys[] = {"pass@1", "pass@10", "pass@100"};
  for (int i = 0; i < 3; ++i) {
    const auto& v = d.at(o, p, keys[i]);
    if (v.is_null()) continue;
    if (!v.is_number()) d.fail(Doc::join(p, keys[i]), "expected a number or null");
    *out[i] = v.to_number<double>();
  }
  return k;
}

CodingSummary read_coding(const Doc& d, const json::value& s, const std::string& p) {
  CodingSummary c;
  auto aggregate = [&](const std::string& scope, const json::value& a, const std::string& ap) {
    CodingAggregate g;
    g.scope = scope;
    g.problems = d.number(a, ap, "problems");
    g.samples = d.number(a, ap, "samples");
    g.wrong = d.number(a, ap, "wrong_answers");
    g.timeouts = d.number(a, ap, "timeouts");
    g.kills = d.number(a, ap, "sandbox_kills");
    g.errors = d.number(a, ap, "sandbox_errors");
    g.pass = read_pass(d, d.at(a, ap, "pass_at_k"), ap + ".pass_at_k");
    c.aggregates.push_back(std::move(g));
  };
  aggregate("overall", d.at(s, p, "overall"), p + ".overall");
  const auto& langs = d.at(s, p, "by_language");
  for (const auto& [lang, a] : d.object(langs, p + ".by_language"))
    aggregate(std::string(lang), a, p + ".by_language." + std::string(lang));
  const auto& probs = d.array(s, p, "problems");
  for (size_t i = 0; i < probs.size(); ++i) {
    const std::string q = p + "." + Doc::item("problems", i);
    CodingProblem pr;
    pr.task_id = d.string(probs[i], q, "task_id");
    pr.language = d.string(probs[i], q, "language");
    pr.n = d.number(probs[i], q, "n");
    pr.c = d.number(probs[i], q, "c");
    pr.pass = read_pass(d, probs[i], q);
    for (const auto& [cls, v] : d.object(d.at(probs[i], q, "classes"), q + ".classes")) {
      if (!v.is_number()) d.fail(q + ".classes." + std::string(cls), "expected a count");
      pr.classes.push_back({std::string(cls), v.to_number<double>()});
    }
    c.problems.push_back(std::move(pr));
  }
  return c;
}

EvalRun read_eval(const Doc& d) {
  EvalRun r;
  r.file = d.file();
  r.suite = d.string(d.root(), "", "suite");
  r.format = d.string(d.root(), "", "format");
  if (const auto* v = d.root().get_object().if_contains("probe_label"); v && v->is_string()) r.probe_label = std::string(v->get_string());
  const auto& m = d.at(d.root(), "", "model");
  r.model_dir = d.string(m, "model", "dir");
  r.backend = d.string(m, "model", "backend");
  r.checkpoint_hash = d.string(m, "model", "checkpoint_hash");
  if (const auto* v = m.get_object().if_contains("numerics"); v && v->is_string()) r.numerics = std::string(v->get_string());
  if (const auto* pr = m.get_object().if_contains("probe"); pr && pr->is_object())
    if (const auto* k = pr->get_object().if_contains("knobs"); k && k->is_object())
      for (const auto& [key, v] : k->get_object()) {
        r.probe_knobs += (r.probe_knobs.empty() ? "" : " ") + std::string(key) + "=" + text_of(v);
        r.probe_knob_values[std::string(key)] = text_of(v);
      }
  if (const auto* g = d.root().get_object().if_contains("git"); g && g->is_object())
    if (const auto* v = g->get_object().if_contains("revision"); v && v->is_string()) r.revision = std::string(v->get_string());
  if (const auto* mc = d.root().get_object().if_contains("machine"); mc && mc->is_object())
    if (const auto* v = mc->get_object().if_contains("cpu"); v && v->is_string()) r.machine = std::string(v->get_string());
  const auto& tasks = d.array(d.root(), "", "tasks");
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string p = Doc::item("tasks", i);
    EvalTask t;
    t.name = d.string(tasks[i], p, "name");
    t.version = d.string(tasks[i], p, "version");
    t.data_hash = d.string(tasks[i], p, "data_hash");
    t.effective_length = d.number(tasks[i], p, "effective_length");
    auto bins = [&](const char* key, bool required, std::vector<EvalBin>& out) {
      if (!required && !tasks[i].get_object().contains(key)) return;
      const auto& a = d.array(tasks[i], p, key);
      for (size_t k = 0; k < a.size(); ++k) out.push_back(read_bin(d, a[k], fmt::format("{}.{}[{}]", p, key, k)));
    };
    bins("by_length", true, t.by_length);
    bins("by_length_depth", false, t.by_depth);
    bins("by_length_class", false, t.by_class);
    if (tasks[i].get_object().contains("metrics_by_length")) {
      const auto& a = d.array(tasks[i], p, "metrics_by_length");
      for (size_t k = 0; k < a.size(); ++k) {
        const std::string mp = fmt::format("{}.metrics_by_length[{}]", p, k);
        MetricBin mb = read_metric_bin(d, a[k], mp);
        for (const auto& seen : t.metrics_by_length)
          if (seen.metric == mb.metric && seen.length == mb.length)
            d.fail(mp, fmt::format("a second entry for metric '{}' at length {:g}", mb.metric, mb.length));
        t.metrics_by_length.push_back(std::move(mb));
      }
    }
    if (r.suite == "coding" && tasks[i].get_object().contains("summary"))
      t.coding = read_coding(d, d.at(tasks[i], p, "summary"), p + ".summary");
    r.tasks.push_back(std::move(t));
  }
  return r;
}

// The schema version of dsv4.ops this reader understands (cli/op_status.h writes it).
constexpr double kOpsSchemaVersion = 1;

OpsList read_ops(const Doc& d) {
  OpsList o;
  o.file = d.file();
  const double version = d.number(d.root(), "", "schema_version");
  if (version != kOpsSchemaVersion)
    d.fail("schema_version", fmt::format("expected {:g}, found {:g}", kOpsSchemaVersion, version));
  const auto& ops = d.array(d.root(), "", "ops");
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::string p = Doc::item("ops", i);
    OpStatus s;
    s.name = d.string(ops[i], p, "name");
    s.summary = d.string(ops[i], p, "summary");
    const auto& b = d.object(d.at(ops[i], p, "backends"), p + ".backends");
    for (const char* required : {"ref", "cuda"})
      if (!b.contains(required)) d.fail(fmt::format("{}.backends.{}", p, required), "missing");
    for (const auto& [backend, status] : b) {
      if (!status.is_string()) d.fail(fmt::format("{}.backends.{}", p, std::string(backend)), "expected a string");
      s.backends.emplace_back(std::string(backend), std::string(status.get_string()));
    }
    o.ops.push_back(std::move(s));
  }
  return o;
}

// "dir (backend, numerics)" of runs[i] of a dsv4.eval.compare document.
std::string run_label(const Doc& d, const json::array& runs, const std::string& dir) {
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string p = Doc::item("runs", i);
    if (d.string(runs[i], p, "dir") != dir) continue;
    std::string extra;
    if (const auto* v = runs[i].is_object() ? runs[i].get_object().if_contains("model_dir") : nullptr; v && v->is_string())
      extra = "model " + std::string(v->get_string());
    for (const char* k : {"backend", "numerics"})
      if (const auto* v = runs[i].is_object() ? runs[i].get_object().if_contains(k) : nullptr; v && v->is_string())
        extra += (extra.empty() ? "" : ", ") + std::string(v->get_string());
    return extra.empty() ? dir : dir + " (" + extra + ")";
  }
  d.fail("runs", "no entry for the compared run '" + dir + "'");
}

std::vector<EvalComparison> read_eval_compare(const Doc& d) {
  std::vector<EvalComparison> out;
  const auto& runs = d.array(d.root(), "", "runs");
  const auto& cs = d.array(d.root(), "", "comparisons");
  for (size_t i = 0; i < cs.size(); ++i) {
    const std::string p = Doc::item("comparisons", i);
    EvalComparison c;
    c.file = d.file();
    c.a = d.string(cs[i], p, "a");
    c.b = d.string(cs[i], p, "b");
    c.a_model = run_label(d, runs, c.a);
    c.b_model = run_label(d, runs, c.b);
    const auto& rows = d.array(cs[i], p, "by_length");
    for (size_t j = 0; j < rows.size(); ++j) {
      const std::string q = p + "." + Doc::item("by_length", j);
      PairedRow r;
      r.task = d.string(rows[j], q, "task");
      r.length = d.number(rows[j], q, "length");
      r.n = d.number(rows[j], q, "n");
      r.verdict = d.string(rows[j], q, "verdict");
      auto mean_ci = [&](const char* key, double& m, double& lo, double& hi) {
        const std::string k = q + "." + key;
        const auto& o = d.at(rows[j], q, key);
        m = d.number(o, k, "mean");
        const auto& ci = d.array(o, k, "ci95");
        if (ci.size() != 2 || !ci[0].is_number() || !ci[1].is_number()) d.fail(k + ".ci95", "expected [lo, hi]");
        lo = ci[0].to_number<double>();
        hi = ci[1].to_number<double>();
      };
      mean_ci("a", r.a, r.a_lo, r.a_hi);
      mean_ci("b", r.b, r.b_lo, r.b_hi);
      mean_ci("diff", r.diff, r.diff_lo, r.diff_hi);
      const auto& t = d.at(rows[j], q, "test");
      r.test = d.string(t, q + ".test", "name");
      r.p = d.number(t, q + ".test", "p");
      c.rows.push_back(std::move(r));
    }
    out.push_back(std::move(c));
  }
  return out;
}

RunCost read_cost(const Doc& d) {
  RunCost c;
  c.file = d.file();
  c.run = d.string(d.root(), "", "run");
  const auto& price = d.at(d.root(), "", "price");
  c.price = d.string(price, "price", "name");
  c.date = d.string(price, "price", "date");
  c.source = d.string(price, "price", "source");
  c.currency = d.string(price, "price", "currency");
  c.total = d.number(d.root(), "", "total");
  const auto& tasks = d.array(d.root(), "", "tasks");
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string p = Doc::item("tasks", i);
    const std::string task = d.string(tasks[i], p, "name");
    const auto& rows = d.array(tasks[i], p, "by_length");
    for (size_t j = 0; j < rows.size(); ++j) {
      const std::string q = p + "." + Doc::item("by_length", j);
      CostRow r;
      r.task = task;
      r.length = d.number(rows[j], q, "length");
      r.n = d.number(rows[j], q, "n");
      r.cost_per_sample = d.number(rows[j], q, "cost_per_sample");
      r.mean_score = d.number(rows[j], q, "mean_score");
      if (r.n <= 0 || r.cost_per_sample < 0) d.fail(q, "n must be positive and cost_per_sample non-negative");
      c.rows.push_back(std::move(r));
    }
  }
  return c;
}

ModelBenchRun read_model_bench(const Doc& d) {
  ModelBenchRun m;
  const json::value& r = d.root();
  m.file = d.file();
  m.config = d.string(r, "", "config");
  m.transport = d.string(r, "", "transport");
  m.numerics = d.string(r, "", "numerics");
  m.kv_layout = d.string(r, "", "kv_layout");
  m.ranks = d.number(r, "", "ranks");
  m.tp = d.number(r, "", "tp");
  m.ep = d.number(r, "", "ep");
  m.prompt = d.number(r, "", "prompt_tokens");
  m.decode = d.number(r, "", "decode_tokens");
  const auto& p = d.at(r, "", "prefill");
  m.prefill_seconds = d.number(p, "prefill", "seconds");
  m.prefill_tokens_per_s = d.number(p, "prefill", "tokens_per_second");
  m.prefill_comm_share = d.number(p, "prefill", "comm_share");
  const auto& q = d.at(r, "", "decode");
  m.decode_seconds = d.number(q, "decode", "seconds");
  m.decode_ms_per_token = d.number(q, "decode", "ms_per_token");
  m.decode_comm_share = d.number(q, "decode", "comm_share");
  if (m.ranks < 1 || m.prefill_seconds <= 0) d.fail("ranks", "expected at least one rank and a positive prefill time");
  return m;
}

void collect(const fs::path& p, int depth, std::vector<fs::path>& out) {
  if (fs::is_regular_file(p)) {
    if (p.extension() == ".json") out.push_back(p);
    return;
  }
  if (!fs::is_directory(p) || depth > kMaxDepth) return;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(p)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());  // a stable order, whatever the filesystem's
  for (const auto& e : entries) collect(e, depth + 1, out);
}

}  // namespace

Inputs load_inputs(const std::vector<std::string>& paths) {
  Inputs in;
  std::vector<fs::path> files;
  for (const auto& p : paths) {
    if (!fs::exists(p)) throw InputError(p + ": no such file or directory");
    if (fs::is_regular_file(p) && fs::path(p).extension() != ".json") throw InputError(p + ": not a .json file");
    collect(p, 0, files);
  }
  for (const auto& f : files) {
    const std::string name = f.string();
    const std::string text = read_text(name);
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
      // Google Benchmark's own bench.json may hold bare NaN counters: read it leniently.
      try {
        v = bench::parse_benchmark_json(text);
      } catch (const std::exception&) {
        throw InputError(name + ": not valid JSON (" + ec.message() + "): a truncated or damaged result file?");
      }
    }
    const json::value* kind = v.is_object() ? v.get_object().if_contains("kind") : nullptr;
    if (!kind || !kind->is_string()) {
      in.ignored.push_back(name);  // not ours (e.g. Google Benchmark's bench.json, read beside its derived file)
      continue;
    }
    const std::string k(kind->get_string());
    const Doc d(name, v);
    if (k == "dsv4.kv_claims") {
      if (in.kv) throw InputError(name + ": a second dsv4.kv_claims file (the first: " + in.kv->file + ")");
      in.kv = read_kv(d);
    } else if (k == "dsv4.flops_claims") {
      if (in.flops) throw InputError(name + ": a second dsv4.flops_claims file (the first: " + in.flops->file + ")");
      in.flops = read_flops(d);
    } else if (k == "dsv4.bench") {
      in.bench.push_back(read_bench(d));
    } else if (k == "dsv4.bench.compare") {
      in.compare.push_back(read_compare(d));
    } else if (k == "dsv4.eval.results") {
      in.evals.push_back(read_eval(d));
    } else if (k == "dsv4.eval.cost") {
      in.costs.push_back(read_cost(d));
    } else if (k == "dsv4.bench.model") {
      in.model_bench.push_back(read_model_bench(d));
    } else if (k == "dsv4.eval.compare") {
      for (auto& c : read_eval_compare(d)) in.comparisons.push_back(std::move(c));
    } else if (k == "dsv4.ops") {
      if (in.ops) throw InputError(name + ": a second dsv4.ops file (the first: " + in.ops->file + ")");
      in.ops = read_ops(d);
    } else {
      in.ignored.push_back(name);
      continue;
    }
    in.used.push_back(name);
  }
  return in;
}

}  // namespace dsv4::report
