#include "evals/compare.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "evals/hash.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;
namespace fs = std::filesystem;

double binomial_two_sided_p(int64_t k, int64_t n) {
  require(n >= 0 && k >= 0 && k <= n, "binomial_two_sided_p: need 0 <= k <= n");
  if (n == 0) return 1.0;
  // P(X = i) = C(n, i) / 2^n in log space (n may be thousands).
  auto log_pmf = [n](int64_t i) {
    return std::lgamma(double(n) + 1) - std::lgamma(double(i) + 1) - std::lgamma(double(n - i) + 1) -
           double(n) * std::log(2.0);
  };
  double lo = 0, hi = 0;  // P(X <= k), P(X >= k)
  for (int64_t i = 0; i <= k; ++i) lo += std::exp(log_pmf(i));
  for (int64_t i = k; i <= n; ++i) hi += std::exp(log_pmf(i));
  return std::min(1.0, 2 * std::min(lo, hi));
}

PairedTest paired_test(const std::vector<double>& a, const std::vector<double>& b) {
  require(a.size() == b.size(), "paired_test: the two score lists differ in length");
  PairedTest t;
  bool binary = true;
  for (size_t i = 0; i < a.size(); ++i) {
    binary = binary && (a[i] == 0 || a[i] == 1) && (b[i] == 0 || b[i] == 1);
    if (a[i] > b[i])
      ++t.a_wins;
    else if (a[i] < b[i])
      ++t.b_wins;
    else
      ++t.ties;
  }
  t.n = int64_t(a.size());
  // Both tests condition on the pairs that differ: McNemar's discordant pairs (binary scores)
  // and the sign test's non-zero differences are the same count; only the name differs.
  t.test = binary ? "mcnemar" : "sign";
  t.p = binomial_two_sided_p(t.a_wins, t.a_wins + t.b_wins);
  return t;
}

namespace {

json::object read_json_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object()) throw InputError("'" + path + "' is not a JSON object");
  return std::move(v.as_object());
}

const json::value& need(const json::object& o, const char* key, const std::string& where) {
  const json::value* v = o.if_contains(key);
  if (!v) throw InputError(where + ": field \"" + key + "\" is missing");
  return *v;
}

// The fields two runs must share to be compared, and the per-task data hashes.
json::object identity(const RunOnDisk& r) {
  const std::string where = r.dir + "/results.json";
  const auto& args = need(r.results, "arguments", where);
  if (!args.is_object()) throw InputError(where + ": field \"arguments\" is not an object");
  json::object id;
  id["suite"] = need(r.results, "suite", where);
  for (const char* k : {"tasks", "lengths", "depths", "samples", "seed", "format", "distractors", "values",
                        "queries", "hops"})
    if (const auto* v = args.as_object().if_contains(k)) id[k] = *v;
  json::object hashes;
  const auto& tasks = need(r.results, "tasks", where);
  if (!tasks.is_array()) throw InputError(where + ": field \"tasks\" is not an array");
  for (const auto& t : tasks.as_array()) {
    if (!t.is_object()) throw InputError(where + ": an entry of \"tasks\" is not an object");
    const auto& name = need(t.as_object(), "name", where + " tasks[]");
    const auto& hash = need(t.as_object(), "data_hash", where + " tasks[]");
    if (!name.is_string()) throw InputError(where + ": tasks[].name is not a string");
    hashes[name.as_string()] = hash;
  }
  id["data_hashes"] = std::move(hashes);
  return id;
}

json::array ci_json(const Interval& ci) { return {ci.lo, ci.hi}; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

json::object run_summary(const RunOnDisk& r) {
  json::object m;
  m["dir"] = r.dir;
  if (const auto* model = r.results.if_contains("model"); model && model->is_object()) {
    if (const auto* v = model->as_object().if_contains("dir")) m["model_dir"] = *v;
    for (const char* k : {"backend", "checkpoint_hash", "numerics", "kv_layout", "endpoint", "model_name"})
      if (const auto* v = model->as_object().if_contains(k)) m[k] = *v;
    if (const auto* p = model->as_object().if_contains("probe")) m["probe"] = *p;
  }
  return m;
}

struct Pairs {
  std::vector<double> a, b;
};

json::object row(const std::string& task, int64_t length, const std::string& cell, const Pairs& p,
                 const CompareOptions& o, const std::string& group) {
  auto seed = [&](const char* which) {
    return Hasher().str("dsv4.evals.compare").u64(o.seed).str(group).str(which).digest();
  };
  std::vector<double> d(p.a.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = p.a[i] - p.b[i];
  const PairedTest t = paired_test(p.a, p.b);
  const double md = mean_of(d);
  std::string verdict = "no clear difference";
  if (t.p < o.alpha && md > 0) verdict = "A better";
  if (t.p < o.alpha && md < 0) verdict = "B better";
  json::object r{{"task", task},
                 {"length", length},
                 {"n", int64_t(d.size())},
                 {"a", json::object{{"mean", mean_of(p.a)}, {"ci95", ci_json(bootstrap_ci(p.a, seed("a"), o.resamples))}}},
                 {"b", json::object{{"mean", mean_of(p.b)}, {"ci95", ci_json(bootstrap_ci(p.b, seed("b"), o.resamples))}}},
                 {"diff", json::object{{"mean", md}, {"ci95", ci_json(bootstrap_ci(d, seed("d"), o.resamples))}}},
                 {"test", json::object{{"name", t.test},
                                       {"n", t.n},
                                       {"a_wins", t.a_wins},
                                       {"b_wins", t.b_wins},
                                       {"ties", t.ties},
                                       {"p", t.p}}},
                 {"verdict", verdict}};
  if (!cell.empty()) r["cell"] = cell;
  return r;
}

json::object compare_two(const RunOnDisk& A, const RunOnDisk& B, const CompareOptions& o) {
  const json::object ia = identity(A), ib = identity(B);
  for (const auto& [k, v] : ia) {
    const json::value* w = ib.if_contains(k);
    if (!w || *w != v)
      throw InputError(fmt::format("runs '{}' and '{}' are not comparable: \"{}\" differs ({} vs {})", A.dir, B.dir,
                                   std::string(k), json::serialize(v), w ? json::serialize(*w) : "missing"));
  }
  std::map<std::string, const SampleRecord*> in_b;
  for (const SampleRecord& r : B.samples) in_b[r.key()] = &r;
  if (A.samples.size() != B.samples.size())
    throw InputError(fmt::format("runs '{}' and '{}' hold {} and {} samples", A.dir, B.dir, A.samples.size(),
                                 B.samples.size()));
  std::map<std::pair<std::string, int64_t>, Pairs> bins;
  std::map<std::tuple<std::string, int64_t, std::string>, Pairs> cells;
  for (const SampleRecord& a : A.samples) {
    const auto it = in_b.find(a.key());
    if (it == in_b.end()) throw InputError("run '" + B.dir + "' has no sample " + a.key());
    if (it->second->item_hash != a.item_hash)
      throw InputError("sample " + a.key() + " has different items in '" + A.dir + "' and '" + B.dir + "'");
    for (Pairs* p : {&bins[{a.task, a.length}], &cells[{a.task, a.length, a.cell}]}) {
      p->a.push_back(a.score);
      p->b.push_back(it->second->score);
    }
  }
  json::array jb, jc;
  for (const auto& [k, p] : bins)
    jb.push_back(row(k.first, k.second, "", p, o, fmt::format("{}|{}|{}", B.dir, k.first, k.second)));
  for (const auto& [k, p] : cells) {
    const auto& [task, L, cell] = k;
    jc.push_back(row(task, L, cell, p, o, fmt::format("{}|{}|{}|{}", B.dir, task, L, cell)));
  }
  return {{"a", A.dir}, {"b", B.dir}, {"by_length", jb}, {"by_length_cell", jc}};
}

}  // namespace

RunOnDisk read_run(const std::string& dir) {
  RunOnDisk r;
  r.dir = dir;
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw InputError("'" + dir + "' is not a run directory");
  const std::string results = (d / "results.json").string();
  if (!fs::exists(results))
    throw InputError("'" + dir + "' has no results.json (the run is unfinished: rerun it to complete it)");
  r.results = read_json_file(results);
  const json::value* kind = r.results.if_contains("kind");
  if (!kind || !kind->is_string() || kind->as_string() != "dsv4.eval.results")
    throw InputError(results + ": \"kind\" is not \"dsv4.eval.results\"");
  r.samples = read_samples_for_resume((d / "samples.jsonl").string());
  if (r.samples.empty()) throw InputError("'" + dir + "/samples.jsonl' holds no samples");
  return r;
}

boost::json::object compare_runs(const std::vector<RunOnDisk>& runs, const CompareOptions& o) {
  if (runs.size() < 2) throw InputError("compare: give at least two run directories");
  if (!(o.alpha > 0 && o.alpha < 1)) throw InputError("compare: --alpha must be in (0, 1)");
  json::array rs, cs;
  for (const RunOnDisk& r : runs) rs.push_back(run_summary(r));
  for (size_t i = 1; i < runs.size(); ++i) cs.push_back(compare_two(runs[0], runs[i], o));
  return {{"kind", "dsv4.eval.compare"},
          {"schema_version", 1},
          {"alpha", o.alpha},
          {"statistics",
           json::object{{"ci", "percentile bootstrap (pairs resampled for the difference)"},
                        {"level", kConfidence},
                        {"resamples", o.resamples},
                        {"test", "exact two-sided binomial on the pairs that differ (McNemar for 0/1 scores, else "
                                 "the sign test)"}}},
          {"runs", rs},
          {"comparisons", cs}};
}

std::string compare_table(const boost::json::object& doc) {
  std::string s;
  for (const auto& cv : doc.at("comparisons").as_array()) {
    const auto& c = cv.as_object();
    s += fmt::format("A = {}\nB = {}\n", std::string(c.at("a").as_string()), std::string(c.at("b").as_string()));
    s += fmt::format("  {:<16} {:>8} {:>4} {:>24} {:>24} {:>26} {:>8} {:>9}  {}\n", "task", "length", "n", "A mean [95% CI]",
                     "B mean [95% CI]", "A - B [95% CI]", "test", "p", "verdict");
    for (const auto& rv : c.at("by_length").as_array()) {
      const auto& r = rv.as_object();
      auto cell = [](const json::value& v) {
        const auto& o = v.as_object();
        const auto& ci = o.at("ci95").as_array();
        return fmt::format("{:.3f} [{:.3f}, {:.3f}]", o.at("mean").to_number<double>(), ci[0].to_number<double>(),
                           ci[1].to_number<double>());
      };
      const auto& t = r.at("test").as_object();
      s += fmt::format("  {:<16} {:>8} {:>4} {:>24} {:>24} {:>26} {:>8} {:>9.3g}  {}\n",
                       std::string(r.at("task").as_string()), r.at("length").as_int64(), r.at("n").as_int64(),
                       cell(r.at("a")), cell(r.at("b")), cell(r.at("diff")), std::string(t.at("name").as_string()),
                       t.at("p").to_number<double>(), std::string(r.at("verdict").as_string()));
    }
  }
  return s;
}

}  // namespace dsv4::evals
