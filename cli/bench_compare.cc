#include "cli/bench_compare.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <boost/json.hpp>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <stdexcept>

#include "bench/compare.h"

namespace dsv4::cli {

namespace {

namespace json = boost::json;
namespace cmp = dsv4::bench::cmp;
using cmp::Better;
using cmp::Series;

// Bad input: the message names the file and the field.
struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What --metric compares: a per-repetition field of every benchmark, and whether the
// speedups (machine-independent, higher is better) are compared too.
struct Metric {
  const char* option;  // --metric value
  const char* field;   // benchmarks[i].<field>, one value per repetition
  Better better;
  bool speedups;
};
constexpr Metric kMetrics[] = {
    {"share", "roofline_share", Better::Higher, true},          // wall-clock share of the same-run ceiling
    {"cpu_share", "roofline_share_cpu", Better::Higher, true},  // the same from CPU time
    {"seconds", "seconds", Better::Lower, false},               // absolute wall-clock times
    {"cpu_seconds", "cpu_seconds", Better::Lower, false},       // absolute CPU times
};

const Metric& metric_of(const std::string& option) {
  for (const auto& m : kMetrics)
    if (option == m.option || option == m.field) return m;
  return kMetrics[0];  // CLI11 checked the value
}

struct Loaded {
  std::vector<Series> series;
  double sgemm = NAN, read = NAN;  // ceilings, when present
};

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw BadInput(fmt::format("{}: {}{}{}", file_, field, field.empty() ? "" : ": ", what));
  }

  json::value parse() const {
    std::ifstream f(file_, std::ios::binary);
    if (!f) fail("", "cannot read the file");
    std::stringstream ss;
    ss << f.rdbuf();
    boost::system::error_code ec;
    json::value v = json::parse(ss.str(), ec);
    if (ec) fail("", "not valid JSON (" + ec.message() + ")");
    return v;
  }

  const json::value& member(const json::object& o, const std::string& path, const char* key) const {
    const auto* v = o.if_contains(key);
    if (!v) fail(path.empty() ? key : path + "." + key, "missing");
    return *v;
  }

  const json::object& object(const json::value& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "expected an object");
    return v.get_object();
  }

  const json::array& array(const json::value& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "expected an array");
    return v.get_array();
  }

  std::string string(const json::value& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string");
    return std::string(v.get_string());
  }

  double number(const json::value& v, const std::string& path) const {
    if (!v.is_number()) fail(path, "expected a number");
    return v.to_number<double>();
  }

  double positive(const json::value& v, const std::string& path) const {
    const double x = number(v, path);
    if (!std::isfinite(x) || x <= 0) fail(path, fmt::format("{} is not a positive finite number", x));
    return x;
  }

  // A number or an array of numbers (one per repetition), all positive and finite.
  std::vector<double> samples(const json::value& v, const std::string& path) const {
    std::vector<double> s;
    if (v.is_number()) {
      s.push_back(positive(v, path));
      return s;
    }
    const auto& a = array(v, path);
    for (size_t i = 0; i < a.size(); ++i) s.push_back(positive(a[i], fmt::format("{}[{}]", path, i)));
    return s;
  }

  void add(Loaded& L, Series s, const std::string& path) const {
    for (const auto& t : L.series)
      if (t.name == s.name) fail(path, fmt::format("duplicate name '{}'", s.name));
    L.series.push_back(std::move(s));
  }

  Loaded load(const Metric& m) const {
    const json::value root = parse();
    const auto& o = object(root, "(top level)");
    const std::string kind = string(member(o, "", "kind"), "kind");
    if (kind != "dsv4.bench") fail("kind", fmt::format("expected \"dsv4.bench\", got \"{}\"", kind));
    Loaded L;
    if (const auto* c = o.if_contains("ceilings")) {
      const auto& co = object(*c, "ceilings");
      // 0: not measured in that run (informational only: the shares already divide by them)
      const double sg = number(member(co, "ceilings", "sgemm_flops_per_s"), "ceilings.sgemm_flops_per_s");
      const double rd = number(member(co, "ceilings", "read_bytes_per_s"), "ceilings.read_bytes_per_s");
      if (sg > 0 && rd > 0) L.sgemm = sg, L.read = rd;
    }
    const std::string metric = m.field;
    const auto& benches = array(member(o, "", "benchmarks"), "benchmarks");
    for (size_t i = 0; i < benches.size(); ++i) {
      const std::string path = fmt::format("benchmarks[{}]", i);
      const auto& b = object(benches[i], path);
      Series s;
      s.name = string(member(b, path, "name"), path + ".name");
      s.values = samples(member(b, path, m.field), path + "." + metric);
      s.better = m.better;
      add(L, std::move(s), path + ".name");
    }
    // Speedups (V4 over its predecessor, measured in one run) are machine-independent too.
    if (m.speedups) {
      if (const auto* sp = o.if_contains("speedups")) {
        const auto& a = array(*sp, "speedups");
        for (size_t i = 0; i < a.size(); ++i) {
          const std::string path = fmt::format("speedups[{}]", i);
          const auto& e = object(a[i], path);
          const std::string model = string(member(e, path, "model"), path + ".model");
          const std::string versus = string(member(e, path, "versus"), path + ".versus");
          const auto& ctx = member(e, path, "context");
          if (!ctx.is_number()) fail(path + ".context", "expected a number");
          Series s;
          s.name = fmt::format("speedup/{}/vs:{}/ctx:{}", model, versus, ctx.to_number<double>());
          // One value per repetition when the run gives them; a single median-based
          // `measured` is shown but is insufficient data for the rank test.
          const char* per_key = std::string(m.field) == "roofline_share_cpu"
                                    ? "measured_cpu_per_repetition"
                                    : "measured_per_repetition";
          if (const auto* per = e.if_contains(per_key))
            s.values = samples(*per, path + "." + per_key);
          else
            s.values = samples(member(e, path, "measured"), path + ".measured");
          s.better = Better::Higher;
          add(L, std::move(s), path);
        }
      }
    }
    return L;
  }

 private:
  std::string file_;
};

json::value finite_or_null(double x) { return std::isfinite(x) ? json::value(x) : json::value(nullptr); }

std::string ceilings_text(const Loaded& L) {
  if (!std::isfinite(L.sgemm)) return "no ceilings";
  return fmt::format("ceilings: SGEMM {:.1f} GFLOP/s, read {:.1f} GB/s", L.sgemm / 1e9, L.read / 1e9);
}

json::object to_json(const cmp::Comparison& c, const BenchCompareArgs& a, const Loaded& b, const Loaded& n) {
  json::object o;
  o["kind"] = "dsv4.bench.compare";
  o["baseline"] = a.baseline;
  o["new"] = a.fresh;
  o["metric"] = c.metric;
  o["alpha"] = c.options.alpha;
  o["threshold"] = c.options.threshold;
  o["min_repetitions"] = c.options.min_repetitions;
  auto ceil = [](const Loaded& L) {
    json::object x;
    x["sgemm_flops_per_s"] = finite_or_null(L.sgemm);
    x["read_bytes_per_s"] = finite_or_null(L.read);
    return x;
  };
  o["baseline_ceilings"] = ceil(b);
  o["new_ceilings"] = ceil(n);
  json::array results;
  for (const auto& r : c.results) {
    json::object x;
    x["name"] = r.name;
    x["better"] = r.better == Better::Higher ? "higher" : "lower";
    x["n_baseline"] = r.n_baseline;
    x["n_new"] = r.n_new;
    x["baseline_median"] = finite_or_null(r.baseline_median);
    x["new_median"] = finite_or_null(r.new_median);
    x["ratio"] = r.shift.ratio;
    x["ratio_ci"] = json::array{r.shift.lo, r.shift.hi};
    x["slowdown"] = r.slowdown;
    x["u"] = r.test.u;
    x["p_value"] = r.test.p;
    x["exact"] = r.test.exact;
    x["outcome"] = cmp::outcome_name(r.outcome);
    results.push_back(std::move(x));
  }
  o["results"] = std::move(results);
  json::array ob, on;
  for (const auto& s : c.only_baseline) ob.push_back(json::value(s));
  for (const auto& s : c.only_new) on.push_back(json::value(s));
  o["only_in_baseline"] = std::move(ob);
  o["only_in_new"] = std::move(on);
  json::object counts;
  for (auto out : {cmp::Outcome::Slower, cmp::Outcome::Faster, cmp::Outcome::NoClearDifference,
                   cmp::Outcome::InsufficientData})
    counts[cmp::outcome_name(out)] = c.count(out);
  o["counts"] = std::move(counts);
  o["regression"] = c.regression();
  return o;
}

}  // namespace

CLI::App* add_bench_compare(CLI::App* bench, BenchCompareArgs& a) {
  auto* c = bench->add_subcommand(
      "compare",
      "compare two bench_derived.json files: a rank test per benchmark; exit 1 only on a confirmed regression");
  c->add_option("baseline", a.baseline, "baseline bench_derived.json (e.g. bench/baselines/cpu-quick.json)")->required();
  c->add_option("new", a.fresh, "new bench_derived.json")->required();
  c->add_option("--metric", a.metric,
                "share: roofline share (wall clock) and V4/V3.2 speedups, machine-independent | cpu_share: the "
                "share from CPU time (robust to a busy machine; needs roofline_share_cpu) | seconds | cpu_seconds: "
                "absolute times (same machine only)")
      ->default_str(a.metric)
      ->check(CLI::IsMember({"share", "roofline_share", "cpu_share", "roofline_share_cpu", "seconds", "cpu_seconds"}));
  c->add_option("--alpha", a.alpha, "significance level of the rank test")
      ->default_str(fmt::format("{:g}", a.alpha))
      ->check(CLI::Range(1e-9, 0.5));
  c->add_option("--threshold", a.threshold, "relative shift that counts (0.25 = 25 %)")
      ->default_str(fmt::format("{:g}", a.threshold))
      ->check(CLI::Range(0.0, 100.0));
  c->add_flag("--json", a.json, "one machine-readable object instead of the table");
  return c;
}

int bench_compare(const BenchCompareArgs& a) {
  const Metric& m = metric_of(a.metric);
  const bool seconds = m.better == Better::Lower;
  Loaded b, n;
  cmp::Comparison c;
  try {
    b = Reader(a.baseline).load(m);
    n = Reader(a.fresh).load(m);
    cmp::CompareOptions opt;
    opt.alpha = a.alpha;
    opt.threshold = a.threshold;
    opt.min_repetitions = a.min_repetitions;
    c = cmp::compare(b.series, n.series, m.field, opt);
  } catch (const BadInput& e) {
    fmt::print(stderr, "dsv4 bench compare: {}\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "dsv4 bench compare: {}\n", e.what());
    return 2;
  }
  if (a.json) {
    fmt::print("{}\n", json::serialize(to_json(c, a, b, n)));
  } else {
    fmt::print("baseline: {} ({} series; {})\n", a.baseline, b.series.size(), ceilings_text(b));
    fmt::print("new:      {} ({} series; {})\n", a.fresh, n.series.size(), ceilings_text(n));
    if (seconds && std::isfinite(b.sgemm) && std::isfinite(n.sgemm))
      fmt::print("absolute times: meaningful on the same machine only (ceilings new/baseline: SGEMM {:.2f}x, read {:.2f}x)\n",
                 n.sgemm / b.sgemm, n.read / b.read);
    fmt::print("{}", cmp::comparison_table(c));
  }
  return c.regression() ? 1 : 0;
}

}  // namespace dsv4::cli
