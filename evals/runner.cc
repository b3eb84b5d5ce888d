#include "evals/runner.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "evals/hash.h"
#include "evals/recall/probe_tokens.h"
#include "evals/results.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBarWidth = 30;
constexpr int64_t kMaxLength = int64_t(1) << 24;  // 16M tokens: far beyond what any bin needs

struct Planned {
  const Task* task;
  Cell cell;
  int64_t index;
};

// The tasks to run: those named, or every task of the suite that has the run's format.
std::vector<const Task*> resolve_tasks(const RunConfig& cfg) {
  const Suite& suite = find_suite(cfg.suite);
  std::vector<const Task*> out;
  if (cfg.tasks.empty()) {
    for (const auto& t : suite.tasks)
      if (t->supports(cfg.format)) out.push_back(t.get());
    return out;
  }
  for (const std::string& name : cfg.tasks) {
    const auto it = std::find_if(suite.tasks.begin(), suite.tasks.end(),
                                 [&](const auto& t) { return t->name() == name; });
    if (it == suite.tasks.end()) {
      std::string known;
      for (const auto& t : suite.tasks) known += (known.empty() ? "" : ", ") + t->name();
      throw InputError("--tasks: suite '" + cfg.suite + "' has no task '" + name +
                       "' (known: " + known + ")");
    }
    if (std::find(out.begin(), out.end(), it->get()) != out.end())
      throw InputError("--tasks: '" + name + "' given twice");
    if (!(*it)->supports(cfg.format))
      throw InputError("--tasks: '" + name + "' has no " + format_name(cfg.format) + " format");
    out.push_back(it->get());
  }
  return out;
}

// The arguments that define a run's samples and metrics (manifest.json).
json::object canonical_args(const RunConfig& cfg, const std::vector<const Task*>& tasks) {
  json::array t, L, d;
  for (const Task* x : tasks)
    t.push_back(json::object{{"name", x->name()}, {"version", x->version()}});
  for (int64_t x : cfg.lengths) L.push_back(x);
  for (double x : cfg.depths) d.push_back(x);
  json::object args{{"suite", cfg.suite},
          {"tasks", t},
          {"lengths", L},
          {"depths", d},
          {"samples", cfg.samples},
          {"seed", cfg.seed},
          {"format", format_name(cfg.format)},
          {"distractors", cfg.options.distractors},
          {"values", cfg.options.values},
          {"queries", cfg.options.queries},
          {"hops", cfg.options.hops},
          {"effective_threshold", cfg.threshold},
          {"resamples", cfg.resamples},
          {"model_dir", cfg.model_dir},
          {"checkpoint_hash", cfg.checkpoint_hash},
          {"numerics", cfg.numerics},
          {"kv_layout", cfg.kv_layout}};
  if (!cfg.model_name.empty()) args["model_name"] = cfg.model_name;  // http backend only
  if (cfg.shards > 1) args["shard"] = std::to_string(cfg.shard) + "/" + std::to_string(cfg.shards);
  if (!cfg.options.problem_files.empty()) {  // coding suite (evals/coding/coding_task.h)
    json::array files;
    for (const std::string& f : cfg.options.problem_files) files.push_back(json::value(f));
    args["coding"] = json::object{{"problem_files", files},
                                  {"temperature", cfg.options.coding_temperature},
                                  {"top_p", cfg.options.coding_top_p},
                                  {"max_tokens", cfg.options.coding_max_tokens},
                                  {"timeout_seconds", cfg.options.coding_timeout_seconds}};
  }
  return args;
}

// Names the first argument that differs between two canonical argument objects.
std::string first_difference(const json::object& a, const json::object& b) {
  for (const auto& kv : a) {
    const json::value* o = b.if_contains(kv.key());
    if (!o || *o != kv.value())
      return fmt::format("{}: this run {} vs the existing run {}", std::string(kv.key()),
                         compact_json(kv.value()), o ? compact_json(*o) : "(absent)");
  }
  for (const auto& kv : b)
    if (!a.if_contains(kv.key())) return std::string(kv.key()) + " only in the existing run";
  return "";
}

// True when `out` holds nothing but data-parallel shard directories (dp-<r>).
bool only_shard_dirs(const fs::path& out) {
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string n = e.path().filename().string();
    if (!e.is_directory() || n.size() < 4 || n.compare(0, 3, "dp-") != 0 ||
        n.find_first_not_of("0123456789", 3) != std::string::npos)
      return false;
  }
  return true;
}

void prepare_out_dir(const RunConfig& cfg, const json::object& args) {
  if (cfg.out.empty()) throw InputError("--out is required");
  if (cfg.force && cfg.fresh)
    throw InputError("--new and --force: give one (--new keeps the old run, --force deletes it)");
  const fs::path out(cfg.out), manifest = out / "manifest.json";
  if (fs::exists(out) && !fs::is_directory(out))
    throw InputError("--out: '" + cfg.out + "' exists and is not a directory");
  if (cfg.fresh && fs::exists(out) && !fs::is_empty(out)) {
    const std::string old = move_run_aside(cfg.out);
    fmt::print(stderr, "dsv4 eval: --new: moved the previous contents of '{}' to '{}'\n", cfg.out,
               old);
  }
  if (cfg.force) {
    for (const char* f : {"manifest.json", "samples.jsonl", "results.json"}) fs::remove(out / f);
  } else if (fs::exists(manifest)) {
    std::ifstream f(manifest);
    std::stringstream ss;
    ss << f.rdbuf();
    json::value old;
    try {
      old = json::parse(ss.str());
    } catch (const std::exception&) {
      throw InputError("--out: '" + manifest.string() +
                       "' is not valid JSON; use --force to start over");
    }
    const json::value* a = old.is_object() ? old.as_object().if_contains("arguments") : nullptr;
    if (!a || !a->is_object())
      throw InputError("--out: '" + manifest.string() +
                       "' has no \"arguments\"; use --force to start over");
    // Compare as both were written: numbers in our text form ("0", not a double 0E0).
    const std::string diff =
        first_difference(json::parse(compact_json(args)).as_object(), a->as_object());
    if (!diff.empty())
      throw InputError("--out: '" + cfg.out + "' holds a run with different arguments (" + diff +
                       "); use another --out, or --force to discard it");
    return;  // resume
  } else if (fs::exists(out) && !only_shard_dirs(out)) {
    throw InputError(
        "--out: '" + cfg.out +
        "' is not empty and holds no eval run (manifest.json); use another --out or --force");
  }
  fs::create_directories(out);
  write_file_atomic(manifest.string(),
                    pretty_json(json::object{
                        {"kind", "dsv4.eval.manifest"}, {"version", 1}, {"arguments", args}}));
}

// A bar with ETA on a terminal, one plain line per sample otherwise. The ETA scales the
// time so far by prompt tokens (a sample's cost grows with its length), not by sample count.
class Progress {
 public:
  Progress(RunConfig::Progress mode, int64_t total, int64_t done, int64_t total_tokens,
           int64_t done_tokens)
      : total_(total),
        done_(done),
        total_tokens_(total_tokens),
        done_tokens0_(done_tokens),
        done_tokens_(done_tokens) {
    bar_ = mode == RunConfig::Progress::bar ||
           (mode == RunConfig::Progress::automatic && ::isatty(STDERR_FILENO));
    quiet_ = mode == RunConfig::Progress::none;
    if (!quiet_ && done > 0)
      fmt::print(stderr, "dsv4 eval: resuming, {} of {} samples already done\n", done, total);
  }
  void step(const SampleRecord& r) {
    ++done_;
    done_tokens_ += r.length;
    if (quiet_) return;
    const double el = std::chrono::duration<double>(Clock::now() - t0_).count();
    const int64_t ran = done_tokens_ - done_tokens0_;
    const double eta = ran > 0 ? el / double(ran) * double(total_tokens_ - done_tokens_) : 0;
    if (bar_) {
      const int fill =
          int(double(kBarWidth) * double(done_) / double(std::max<int64_t>(total_, 1)));
      fmt::print(stderr, "\r[{}{}] {}/{} {} L={} eta {}   ", std::string(size_t(fill), '#'),
                 std::string(size_t(kBarWidth - fill), ' '), done_, total_, r.task, r.length,
                 duration(eta));
      if (done_ == total_) fmt::print(stderr, "\n");
    } else {
      fmt::print(stderr, "dsv4 eval: {}/{} {} L={} {} #{} score {} ({:.2f} s) eta {}\n", done_,
                 total_, r.task, r.length, r.cell, r.index, r.score, r.seconds, duration(eta));
    }
  }

 private:
  static std::string duration(double s) {
    const int64_t t = int64_t(s + 0.5);
    return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60)
                     : fmt::format("{}m{:02}s", t / 60, t % 60);
  }
  int64_t total_, done_, total_tokens_, done_tokens0_, done_tokens_;
  bool bar_ = false, quiet_ = false;
  Clock::time_point t0_ = Clock::now();
};

json::object metric_json(const Metric& m) {
  return {{"n", m.n},
          {"mean", m.mean},
          {"ci95", json::array{m.ci.lo, m.ci.hi}},
          {"floors",
           json::object{
               {"chance", m.chance}, {"copy_random", m.copy_random}, {"copy_first", m.copy_first}}},
          {"model_seconds", m.seconds},
          {"prefill_tokens_per_second", m.prefill_tokens_per_second}};
}

ScoredSample scored(const SampleRecord& r) {
  return {r.score,
          r.chance,
          r.copy_random,
          r.copy_first,
          r.prompt_tokens + r.completion_tokens,
          r.seconds,
          r.prefill_seconds,
          r.prompt_tokens};
}

// The geometry breakdowns: (dimension, class of a record).
std::vector<std::pair<std::string, std::string>> geometry_classes_of(const SampleRecord& r) {
  const Geometry& g = r.geometry;
  const std::string m128 = g.mod128 == 0 ? "0" : g.mod128 == 127 ? "127" : "other";
  return {{"mod4", std::to_string(g.mod4)},
          {"mod128", m128},
          {"straddle4", g.straddle4 ? "yes" : "no"},
          {"straddle128", g.straddle128 ? "yes" : "no"},
          {"window", g.in_window ? "in" : "out"}};
}

json::object task_results(const Task& t, const std::vector<const SampleRecord*>& recs,
                          uint64_t data_hash, const RunConfig& cfg) {
  auto seed_of = [&](const std::string& group) {
    return Hasher().str("dsv4.evals.bootstrap").u64(cfg.seed).str(t.name()).str(group).digest();
  };
  std::map<int64_t, std::vector<ScoredSample>> by_len;
  std::map<std::pair<int64_t, double>, std::vector<ScoredSample>> by_depth;
  std::map<std::pair<int64_t, std::string>, std::vector<ScoredSample>> by_class;
  std::map<std::tuple<int64_t, std::string, std::string>, std::vector<ScoredSample>> by_geo;
  for (const SampleRecord* r : recs) {
    by_len[r->length].push_back(scored(*r));
    if (r->depth >= 0) by_depth[{r->length, r->depth}].push_back(scored(*r));
    if (!r->geometry_class.empty()) by_class[{r->length, r->geometry_class}].push_back(scored(*r));
    for (const auto& [dim, cls] : geometry_classes_of(*r))
      by_geo[{r->length, dim, cls}].push_back(scored(*r));
  }
  std::map<int64_t, Metric> len_metrics;
  json::array jl, jd, jc, jg;
  for (const auto& [L, v] : by_len) {
    const Metric m = summarize(v, seed_of(fmt::format("length={}", L)), cfg.resamples);
    len_metrics[L] = m;
    json::object o = metric_json(m);
    o["length"] = L;
    jl.push_back(o);
  }
  for (const auto& [k, v] : by_depth) {
    json::object o = metric_json(summarize(
        v, seed_of(fmt::format("length={}/depth={:g}", k.first, k.second)), cfg.resamples));
    o["length"] = k.first;
    o["depth"] = k.second;
    jd.push_back(o);
  }
  for (const auto& [k, v] : by_class) {
    json::object o = metric_json(
        summarize(v, seed_of(fmt::format("length={}/class={}", k.first, k.second)), cfg.resamples));
    o["length"] = k.first;
    o["class"] = k.second;
    jc.push_back(o);
  }
  for (const auto& [k, v] : by_geo) {
    const auto& [L, dim, cls] = k;
    json::object o = metric_json(
        summarize(v, seed_of(fmt::format("length={}/{}={}", L, dim, cls)), cfg.resamples));
    o["length"] = L;
    o["dimension"] = dim;
    o["class"] = cls;
    jg.push_back(o);
  }
  // Outcome::metrics per length bin: mean and bootstrap interval over the samples where the
  // metric applies (NaN ones are left out and counted as n_na).
  std::map<std::pair<std::string, int64_t>, std::vector<double>> by_metric;
  std::map<std::pair<std::string, int64_t>, int64_t> na;
  for (const SampleRecord* r : recs)
    for (const auto& [name, v] : r->metrics) {
      by_metric[{name, r->length}];
      if (std::isfinite(v))
        by_metric[{name, r->length}].push_back(v);
      else
        ++na[{name, r->length}];
    }
  json::array jm;
  for (const auto& [k, v] : by_metric) {
    const auto& [name, L] = k;
    json::object o{{"metric", name}, {"length", L}, {"n", int64_t(v.size())}, {"n_na", na[k]}};
    if (!v.empty()) {
      double sum = 0;
      for (double x : v) sum += x;
      const Interval ci = bootstrap_ci(v, seed_of(fmt::format("length={}/metric={}", L, name)), cfg.resamples);
      o["mean"] = sum / double(v.size());
      o["ci95"] = json::array{ci.lo, ci.hi};
      o["min"] = *std::min_element(v.begin(), v.end());
      o["max"] = *std::max_element(v.begin(), v.end());
    } else {
      o["mean"] = nullptr;
    }
    jm.push_back(std::move(o));
  }
  return {{"name", t.name()},
          {"version", t.version()},
          {"description", t.description()},
          {"data_hash", hex64(data_hash)},
          {"samples", int64_t(recs.size())},
          {"effective_length", effective_length(len_metrics, cfg.threshold)},
          {"by_length", jl},
          {"by_length_depth", jd},
          {"by_length_class", jc},
          {"by_length_geometry", jg},
          {"metrics_by_length", jm}};
}

}  // namespace

int64_t parse_length(const std::string& s) {
  constexpr int64_t kKi = 1024, kMi = 1024 * 1024;
  if (s.empty()) throw InputError("--lengths: empty length");
  int64_t mult = 1;
  std::string digits = s;
  const char last = char(std::tolower(static_cast<unsigned char>(s.back())));
  if (last == 'k' || last == 'm') {
    mult = last == 'k' ? kKi : kMi;
    digits.pop_back();
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
      digits.size() > 9)
    throw InputError(
        "--lengths: '" + s +
        "' is not a length (a positive integer with an optional k or m suffix, k = 1024)");
  const int64_t v = std::stoll(digits) * mult;
  if (v <= 0 || v > kMaxLength)
    throw InputError(fmt::format("--lengths: '{}' must be in [1, {}]", s, kMaxLength));
  return v;
}

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    const int64_t v = parse_length(item);
    if (std::find(out.begin(), out.end(), v) != out.end())
      throw InputError("--lengths: '" + item + "' given twice");
    out.push_back(v);
  }
  if (out.empty() || s.back() == ',')
    throw InputError("--lengths: expected a comma-separated list such as 4k,16k");
  return out;
}

std::vector<double> parse_depths(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !(v >= 0 && v <= 1))
      throw InputError("--depths: '" + item + "' is not a depth in [0, 1]");
    if (std::find(out.begin(), out.end(), v) != out.end())
      throw InputError("--depths: '" + item + "' given twice");
    out.push_back(v);
  }
  if (out.empty() || s.back() == ',')
    throw InputError("--depths: expected a comma-separated list such as 0,0.5,1");
  return out;
}

namespace {

// The record of one finished sample, with its noise floors: copy_random = the mean score of
// answering with each needle's answer; copy_first = the first needle's.
SampleRecord make_record(const Task& task, const Item& item, const Outcome& o, uint64_t seed) {
  SampleRecord r;
  r.task = item.task;
  r.version = item.version;
  r.length = item.cell.length;
  r.cell = item.cell.label();
  r.depth = item.cell.depth;
  r.geometry_class = item.cell.geometry;
  r.geometry = item.geometry;
  r.seed = seed;
  r.index = item.index;
  r.item_hash = item.hash;
  r.prediction = valid_utf8(o.prediction);  // scored already, on the raw text
  r.expected = item.expected;
  r.score = o.score;
  r.chance = item.chance;
  for (const std::string& a : item.needle_answers) r.copy_random += task.score(item, a);
  r.copy_random /= double(std::max<size_t>(item.needle_answers.size(), 1));
  r.copy_first = item.needle_answers.empty() ? 0 : task.score(item, item.needle_answers.front());
  r.prompt_tokens = o.prompt_tokens;
  r.completion_tokens = o.completion_tokens;
  r.cached_prompt_tokens = o.cached_prompt_tokens;
  r.reasoning_tokens = o.reasoning_tokens;
  r.seconds = o.seconds;
  r.prefill_seconds = o.prefill_seconds;
  r.metrics = o.metrics;
  return r;
}

std::string planned_key(const Planned& p) {
  return sample_key(p.task->name(), p.task->version(), p.cell.length, p.cell.label(), p.index);
}

// The finished samples of a resumed run, by key; every one must belong to the plan.
std::map<std::string, SampleRecord> load_finished(const std::string& samples_path,
                                                  const std::vector<Planned>& plan) {
  std::map<std::string, SampleRecord> done;
  for (SampleRecord& r : read_samples_for_resume(samples_path)) {
    const std::string k = r.key();
    if (!done.emplace(k, std::move(r)).second)
      throw InputError(samples_path + ": sample " + k + " recorded twice");
  }
  std::set<std::string> planned_keys;
  for (const Planned& p : plan) planned_keys.insert(planned_key(p));
  for (const auto& [k, r] : done)
    if (!planned_keys.count(k))
      throw InputError(samples_path + ": sample " + k + " is not part of this run; use --force");
  return done;
}

// results.json: the metrics of every task aggregated in plan order (the same order
// whatever was resumed), the run's identity and the machine.
json::object results_json(const RunConfig& cfg, const LanguageModel& model,
                          const ProbeTokens* probe, const json::object& args,
                          const std::vector<const Task*>& tasks, const std::vector<Planned>& plan,
                          const std::map<std::string, SampleRecord>& done,
                          std::map<const Task*, Hasher>& data_hash, const RunSummary& sum,
                          double wall_seconds) {
  json::array task_json;
  double model_seconds = 0;
  for (const Task* t : tasks) {
    std::vector<const SampleRecord*> recs;
    for (const Planned& p : plan)
      if (p.task == t) {
        const SampleRecord& r = done.at(planned_key(p));
        recs.push_back(&r);
        model_seconds += r.seconds;
      }
    json::object tr = task_results(*t, recs, data_hash[t].digest(), cfg);
    if (json::value extra = t->summarize(recs); !extra.is_null()) tr["summary"] = extra;
    task_json.push_back(std::move(tr));
  }
  json::object model_j{{"dir", cfg.model_dir},
                       {"backend", model.spec()},
                       {"checkpoint_hash", cfg.checkpoint_hash},
                       {"checkpoint_hash_method", cfg.checkpoint_hash_method},
                       {"numerics", cfg.numerics},
                       {"numerics_source", cfg.numerics_source},
                       {"kv_layout", cfg.kv_layout}};
  if (probe)
    model_j["probe"] = json::object{{"path", probe->path},
                                    {"retrieval", probe->retrieval},
                                    {"knobs", json::parse(probe->knobs_json)}};
  if (!cfg.endpoint.empty()) {  // http backend: where and which model (never the API key)
    model_j["endpoint"] = cfg.endpoint;
    model_j["model_name"] = cfg.model_name;
  }
  return {
      {"kind", "dsv4.eval.results"},
      {"schema_version", 1},
      {"suite", cfg.suite},
      {"format", format_name(cfg.format)},
      {"probe_label", cfg.format == PromptFormat::probe
                          ? "mechanism probe (constructed weights): not comparable with "
                            "trained-model NIAH/MRCR numbers"
                          : ""},
      {"arguments", args},
      {"model", model_j},
      {"seeds", json::object{{"run", cfg.seed},
                             {"item", "hash64(task, version, run seed, length, cell, index)"},
                             {"bootstrap", "hash64(run seed, task, group)"}}},
      {"statistics", json::object{{"ci", "percentile bootstrap of the mean"},
                                  {"level", kConfidence},
                                  {"resamples", cfg.resamples}}},
      {"effective_length_rule",
       fmt::format("longest length bin with mean >= {:g} (0: none)", cfg.threshold)},
      {"tasks", task_json},
      {"git", git_info()},
      {"machine", machine_info()},
      {"samples_total", sum.planned},
      {"samples_resumed", sum.resumed},
      {"model_seconds", model_seconds},
      {"wall_seconds_this_invocation", wall_seconds},
  };
}

}  // namespace

std::string move_run_aside(const std::string& out) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &utc);
  // Strip trailing separators so "run/" becomes "run.old-...", not "run/.old-...".
  std::string base = out;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string target = base + ".old-" + stamp;
  for (int n = 2; fs::exists(target); ++n)
    target = base + ".old-" + stamp + "-" + std::to_string(n);
  std::error_code ec;
  fs::rename(base, target, ec);
  if (ec)
    throw InputError("--new: could not move '" + base + "' to '" + target + "': " + ec.message());
  return target;
}

namespace {

// Planned sample i belongs to this (shard) run.
bool in_shard(const RunConfig& cfg, size_t i) { return int64_t(i % size_t(cfg.shards)) == cfg.shard; }

// One run of run_evals: its arguments, model, plan state and output files.
struct RunState {
  const RunConfig* cfg = nullptr;
  LanguageModel* model = nullptr;
  std::vector<const Task*> tasks;
  json::object args;
  GenContext ctx;
  std::vector<Planned> plan;
  std::map<std::string, SampleRecord> done;
  std::string samples_path;
  std::unique_ptr<SampleWriter> writer;
  std::unique_ptr<Progress> progress;
  std::map<const Task*, Hasher> data_hash;
  RunSummary sum;
  bool stopped = false;  // stop_after reached (a simulated kill)
  std::vector<std::pair<std::string, std::string>> skipped;  // tasks left out: (name, reason)
};

// Checks the arguments and the model's capabilities, plans, prepares OUT and reads what a
// previous invocation finished. Nothing is written before every check has passed.
void start_run(RunState& s, const ProbeTokens* probe) {
  const RunConfig& cfg = *s.cfg;
  if (cfg.samples <= 0) throw InputError("--samples must be positive");
  if (cfg.depths.empty()) throw InputError("--depths: at least one depth");
  if (!(cfg.threshold > 0 && cfg.threshold <= 1)) throw InputError("--threshold must be in (0, 1]");
  if (cfg.resamples <= 0) throw InputError("--resamples must be positive");
  if (cfg.shards <= 0 || cfg.shard < 0 || cfg.shard >= cfg.shards)
    throw InputError("shard " + std::to_string(cfg.shard) + " of " + std::to_string(cfg.shards) + " does not exist");
  if (cfg.format == PromptFormat::probe && !probe)
    throw InputError("--format probe: the model directory has no probe.json");
  s.ctx = GenContext{cfg.format, probe, s.model, cfg.options};
  // Tasks this model cannot run: an error when named, else left out with the reason.
  std::vector<const Task*> runnable;
  for (const Task* t : resolve_tasks(cfg)) {
    const std::string why = t->unavailable(s.ctx);
    if (why.empty()) {
      runnable.push_back(t);
    } else if (!cfg.tasks.empty()) {
      throw InputError("--tasks: '" + t->name() + "' cannot run on this model: " + why);
    } else {
      s.skipped.push_back({t->name(), why});
      if (cfg.progress != RunConfig::Progress::none)
        fmt::print(stderr, "dsv4 eval: skipping task {}: {}\n", t->name(), why);
    }
  }
  s.tasks = runnable;
  for (const Task* t : s.tasks)
    if (t->uses_lengths() && cfg.lengths.empty()) throw InputError("--lengths is required (task " + t->name() + ")");
  for (const Task* t : s.tasks) {
    const uint32_t need = t->needs(cfg.format), have = s.model->capabilities();
    if ((need & have) != need)
      throw InputError(fmt::format("task {} (format {}) needs {}; backend {} has {}", t->name(),
                                   format_name(cfg.format), capability_names(need), s.model->spec(),
                                   capability_names(have)));
  }
  s.args = canonical_args(cfg, s.tasks);
  GridSpec grid{cfg.lengths, cfg.depths, cfg.options};
  for (const Task* t : s.tasks)
    for (const Cell& c : t->cells(grid))
      for (int64_t i = 0; i < t->samples_per_cell(s.ctx, cfg.samples); ++i) s.plan.push_back({t, c, i});
  // Items are generated one at a time below (a 1M prompt is 4 MB); generating sample 0 of
  // every cell first makes a length too short for a task fail before anything is written.
  for (const Task* t : s.tasks)
    for (const Cell& c : t->cells(grid))
      if (t->samples_per_cell(s.ctx, cfg.samples) > 0) (void)t->generate(s.ctx, c, cfg.seed, 0);
}

void open_run(RunState& s) {
  const RunConfig& cfg = *s.cfg;
  prepare_out_dir(cfg, s.args);
  s.samples_path = (fs::path(cfg.out) / "samples.jsonl").string();
  s.done = load_finished(s.samples_path, s.plan);
  s.sum.planned = 0;
  int64_t total_tokens = 0, done_tokens = 0;
  for (size_t i = 0; i < s.plan.size(); ++i)
    if (in_shard(cfg, i)) ++s.sum.planned, total_tokens += s.plan[i].cell.length;
  s.sum.resumed = int64_t(s.done.size());
  for (const auto& [k, r] : s.done) done_tokens += r.length;
  s.progress = std::make_unique<Progress>(cfg.progress, s.sum.planned, s.sum.resumed, total_tokens, done_tokens);
  s.writer = std::make_unique<SampleWriter>(s.samples_path);
}

// Planned sample i of run s: skipped when finished before (its item must be unchanged), else
// run, recorded and appended to samples.jsonl.
void step_run(RunState& s, size_t i) {
  if (s.stopped || !in_shard(*s.cfg, i)) return;
  const RunConfig& cfg = *s.cfg;
  const Planned& p = s.plan[i];
  const Item item = p.task->generate(s.ctx, p.cell, cfg.seed, p.index);
  s.data_hash[p.task].u64(item.hash);
  const std::string key = planned_key(p);
  if (auto it = s.done.find(key); it != s.done.end()) {
    if (it->second.item_hash != item.hash)
      throw InputError(
          fmt::format("{}: sample {} was generated with different data (hash {} recorded, {} "
                      "now); use --force",
                      s.samples_path, key, hex64(it->second.item_hash), hex64(item.hash)));
    return;
  }
  if (cfg.stop_after >= 0 && s.sum.ran >= cfg.stop_after) {  // simulated kill
    s.stopped = true;
    return;
  }
  const SampleRecord r = make_record(*p.task, item, p.task->evaluate(*s.model, item), cfg.seed);
  s.writer->append(r);
  s.progress->step(r);
  s.done.emplace(key, r);
  ++s.sum.ran;
}

void finish_run(RunState& s, const ProbeTokens* probe, double wall_seconds) {
  if (s.stopped) return;
  if (s.cfg->shards > 1) {  // a shard: its samples only; merge_shards writes results.json
    s.sum.complete = true;
    return;
  }
  s.sum.results = results_json(*s.cfg, *s.model, probe, s.args, s.tasks, s.plan, s.done, s.data_hash, s.sum,
                               wall_seconds);
  if (!s.skipped.empty()) {  // tasks of the suite this model cannot run, with the reason
    json::array skipped;
    for (const auto& [name, why] : s.skipped) skipped.push_back(json::object{{"name", name}, {"reason", why}});
    s.sum.results["skipped_tasks"] = std::move(skipped);
  }
  write_file_atomic((fs::path(s.cfg->out) / "results.json").string(), pretty_json(s.sum.results));
  s.sum.complete = true;
}

// The arguments that decide a run's plan (and its items, for the same tokenizer).
json::object plan_identity(const json::object& args) {
  json::object id;
  for (const char* k : {"suite", "tasks", "lengths", "depths", "samples", "seed", "format", "distractors", "values",
                        "queries", "hops", "coding"})
    if (const auto* v = args.if_contains(k)) id[k] = *v;
  return id;
}

}  // namespace

RunSummary run_eval(const RunConfig& cfg, LanguageModel& model, const ProbeTokens* probe) {
  return run_evals({cfg}, {&model}, probe).front();
}

std::string shard_dir(const std::string& out, int64_t r) { return (fs::path(out) / ("dp-" + std::to_string(r))).string(); }

RunSummary merge_shards(const RunConfig& cfg, LanguageModel& model, const ProbeTokens* probe,
                        const std::vector<std::string>& shard_outs, double shard_seconds) {
  const auto t_start = Clock::now();
  if (cfg.shards != 1) throw InputError("merge_shards: the merged run is the whole run (shards = 1)");
  RunState s;
  s.cfg = &cfg;
  s.model = &model;
  start_run(s, probe);
  // Every shard must be shard r of this very run: its manifest is ours plus "shard": "r/R".
  const int64_t R = int64_t(shard_outs.size());
  std::vector<std::map<std::string, SampleRecord>> shards;
  for (int64_t r = 0; r < R; ++r) {
    const fs::path manifest = fs::path(shard_outs[size_t(r)]) / "manifest.json";
    std::ifstream f(manifest);
    if (!f) throw InputError("data-parallel merge: '" + manifest.string() + "' does not exist");
    std::stringstream ss;
    ss << f.rdbuf();
    json::object want = s.args;
    want["shard"] = std::to_string(r) + "/" + std::to_string(R);
    json::value got;
    try {
      got = json::parse(ss.str());
    } catch (const std::exception&) {
      throw InputError("data-parallel merge: '" + manifest.string() + "' is not valid JSON");
    }
    const json::value* a = got.is_object() ? got.as_object().if_contains("arguments") : nullptr;
    const std::string diff = a && a->is_object() ? first_difference(json::parse(compact_json(want)).as_object(), a->as_object())
                                                 : "no \"arguments\"";
    if (!diff.empty()) throw InputError("data-parallel merge: '" + manifest.string() + "' is not shard " +
                                        std::to_string(r) + " of this run (" + diff + ")");
    shards.push_back(load_finished((fs::path(shard_outs[size_t(r)]) / "samples.jsonl").string(), s.plan));
  }
  open_run(s);
  for (auto& shard : shards) {
    for (auto& [key, rec] : shard) {
      if (s.done.count(key)) continue;
      s.writer->append(rec);
      s.done.emplace(key, std::move(rec));
      ++s.sum.resumed;
    }
  }
  for (size_t i = 0; i < s.plan.size(); ++i) step_run(s, i);  // checks item hashes; runs what is missing
  finish_run(s, probe, shard_seconds + std::chrono::duration<double>(Clock::now() - t_start).count());
  return std::move(s.sum);
}

std::vector<RunSummary> run_evals(const std::vector<RunConfig>& cfgs, const std::vector<LanguageModel*>& models,
                                  const ProbeTokens* probe) {
  const auto t_start = Clock::now();
  if (cfgs.empty() || cfgs.size() != models.size()) throw InputError("run_evals: one model per run");
  std::vector<RunState> runs(cfgs.size());
  for (size_t r = 0; r < runs.size(); ++r) {
    runs[r].cfg = &cfgs[r];
    runs[r].model = models[r];
    start_run(runs[r], probe);
    for (size_t q = 0; q < r; ++q) {
      if (cfgs[q].out == cfgs[r].out) throw InputError("runs " + std::to_string(q) + " and " + std::to_string(r) +
                                                       " write to the same directory '" + cfgs[r].out + "'");
      if (plan_identity(runs[q].args) != plan_identity(runs[r].args))
        throw InputError("interleaved runs must share suite, tasks, lengths, depths, samples, seed and options");
    }
  }
  for (RunState& s : runs) open_run(s);
  // Interleaved: sample i of every run before sample i + 1 of any, so the models see the same
  // items at the same time (a fair comparison under drifting server load).
  for (size_t i = 0; i < runs.front().plan.size(); ++i)
    for (RunState& s : runs) step_run(s, i);
  const double wall = std::chrono::duration<double>(Clock::now() - t_start).count();
  std::vector<RunSummary> out;
  for (RunState& s : runs) {
    finish_run(s, probe, wall);
    out.push_back(std::move(s.sum));
  }
  return out;
}

}  // namespace dsv4::evals
