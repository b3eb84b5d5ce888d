#include "cli/eval_cmd.h"

#include <fmt/core.h>

#include <chrono>

#include <cctype>
#include <filesystem>
#include <sstream>
#include <algorithm>
#include <thread>

#include "evals/coding/problems.h"
#include "evals/compare.h"
#include "comm/comm.h"
#include "evals/engine_backend.h"
#include "evals/multi_rank.h"
#include "evals/http_backend.h"
#include "evals/numerics.h"
#include "evals/recall/probe_tokens.h"
#include "evals/registry.h"
#include "evals/results.h"
#include "evals/runner.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace {

namespace fs = std::filesystem;
using namespace dsv4::evals;

void print_list() {
  for (const Suite& s : suites()) {
    fmt::print("suite {}: {}\n", s.name, s.description);
    for (const auto& t : s.tasks)
      fmt::print("  {:<18} v{}  {}\n  {:<18}      needs: probe {}; natural {}\n", t->name(),
                 t->version(), t->description(), "",
                 t->supports(PromptFormat::probe) ? capability_names(t->needs(PromptFormat::probe))
                                                  : "(no probe format)",
                 capability_names(t->needs(PromptFormat::natural)));
  }
}

std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) {
    if (x.empty()) throw InputError("--tasks: empty task name in '" + s + "'");
    out.push_back(x);
  }
  return out;
}

// A table of mean [CI] per length for each task, with the chance floor.
void print_table(const boost::json::object& r) {
  for (const auto& tv : r.at("tasks").as_array()) {
    const auto& t = tv.as_object();
    fmt::print("{} (v{}, data {}), effective length {}\n", std::string(t.at("name").as_string()),
               std::string(t.at("version").as_string()), std::string(t.at("data_hash").as_string()),
               t.at("effective_length").as_int64());
    fmt::print("  {:>9} {:>4} {:>7} {:>17} {:>8} {:>9} {:>9} {:>12}\n", "length", "n", "mean",
               "95% CI", "chance", "copy_rnd", "copy_1st", "prefill t/s");
    for (const auto& bv : t.at("by_length").as_array()) {
      const auto& b = bv.as_object();
      const auto& ci = b.at("ci95").as_array();
      const auto& fl = b.at("floors").as_object();
      fmt::print("  {:>9} {:>4} {:>7.3f}   [{:.3f}, {:.3f}] {:>8.4f} {:>9.3f} {:>9.3f} {:>12.1f}\n",
                 b.at("length").as_int64(), b.at("n").as_int64(), b.at("mean").to_number<double>(),
                 ci[0].to_number<double>(), ci[1].to_number<double>(),
                 fl.at("chance").to_number<double>(), fl.at("copy_random").to_number<double>(),
                 fl.at("copy_first").to_number<double>(),
                 b.at("prefill_tokens_per_second").to_number<double>());
    }
    // The task's further metrics (degradation): mean [95% CI] per metric and length.
    const auto* mb = t.if_contains("metrics_by_length");
    if (!mb || mb->as_array().empty()) continue;
    fmt::print("  {:<24} {:>9} {:>4} {:>12} {:>27}\n", "metric", "length", "n", "mean", "95% CI");
    for (const auto& mv : mb->as_array()) {
      const auto& m = mv.as_object();
      const std::string name(m.at("metric").as_string());
      if (m.at("mean").is_null()) {
        fmt::print("  {:<24} {:>9} {:>4} {:>12}\n", name, m.at("length").as_int64(), 0, "n/a");
        continue;
      }
      const auto& ci = m.at("ci95").as_array();
      fmt::print("  {:<24} {:>9} {:>4} {:>12.6g}   [{:>11.6g}, {:>11.6g}]\n", name, m.at("length").as_int64(),
                 m.at("n").as_int64(), m.at("mean").to_number<double>(), ci[0].to_number<double>(),
                 ci[1].to_number<double>());
    }
  }
}

// The coding suite's problem files: --problems (comma-separated, made absolute so the
// run's arguments name them wherever it resumes from) or the team's set.
std::vector<std::string> coding_problem_files(const EvalArgs& a) {
  if (a.problems.empty()) return team_problem_files();
  std::vector<std::string> out;
  std::stringstream ss(a.problems);
  for (std::string f; std::getline(ss, f, ',');) {
    if (f.empty()) throw InputError("--problems: empty file name in '" + a.problems + "'");
    if (!fs::is_regular_file(f)) throw InputError("--problems: '" + f + "' is not a file");
    out.push_back(fs::weakly_canonical(f).string());
  }
  return out;
}

void set_coding_options(const EvalArgs& a, TaskOptions& o) {
  if (!(a.temperature >= 0)) throw InputError("--temperature must be >= 0");
  if (!(a.top_p > 0 && a.top_p <= 1)) throw InputError("--top-p must be in (0, 1]");
  if (a.max_tokens < 1) throw InputError("--max-tokens must be >= 1");
  if (!(a.code_timeout > 0)) throw InputError("--code-timeout must be positive");
  o.problem_files = coding_problem_files(a);
  o.coding_temperature = a.temperature;
  o.coding_top_p = a.top_p;
  o.coding_max_tokens = a.max_tokens;
  o.coding_timeout_seconds = a.code_timeout;
}

// dsv4 eval --suite coding --validate: every reference solution must pass and every mutant
// fail. Prints one line per failure and a total; exit 0 when all hold, 1 otherwise.
int validate_problem_set(const EvalArgs& a) {
  if (a.suite != "coding") throw InputError("--validate: only the coding suite has a problem set");
  const std::vector<Problem> problems = load_problem_files(coding_problem_files(a));
  int64_t ok = 0, bad = 0;
  const int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  for (const ValidationRow& r : validate_problems(problems, jobs)) {
    if (r.ok) {
      ++ok;
      continue;
    }
    ++bad;
    fmt::print("FAIL {} {}: {} {}\n", r.task_id, r.kind, run_class_name(r.outcome), r.detail);
  }
  fmt::print("dsv4 eval --validate: {} problems, {} checks passed, {} failed\n", problems.size(),
             ok, bad);
  return bad == 0 ? 0 : 1;
}

// The coding suite's pass@k and run classes (results.json tasks[].summary.overall).
void print_coding_summary(const boost::json::object& r) {
  for (const auto& tv : r.at("tasks").as_array()) {
    const auto* sum = tv.as_object().if_contains("summary");
    if (!sum || !sum->as_object().contains("overall")) continue;
    const auto& o = sum->as_object().at("overall").as_object();
    std::string pass;
    for (const auto& [k, v] : o.at("pass_at_k").as_object())
      pass += fmt::format("  {} {}", std::string(k),
                          v.is_null() ? std::string("n/a") : fmt::format("{:.4f}", v.to_number<double>()));
    fmt::print("{}: {} problems, {} samples;{}\n", std::string(tv.at("name").as_string()),
               o.at("problems").as_int64(), o.at("samples").as_int64(), pass);
    fmt::print("  wrong answers {}, timeouts {}, sandbox kills {}, sandbox errors {}\n",
               o.at("wrong_answers").as_int64(), o.at("timeouts").as_int64(),
               o.at("sandbox_kills").as_int64(), o.at("sandbox_errors").as_int64());
    if (const auto* langs = sum->as_object().if_contains("by_language"))
      for (const auto& [lang, lv] : langs->as_object()) {
        const auto& p1 = lv.at("pass_at_k").at("pass@1");
        fmt::print("  {}: {} problems, pass@1 {}\n", std::string(lang), lv.at("problems").as_int64(),
                   p1.is_null() ? std::string("n/a") : fmt::format("{:.4f}", p1.to_number<double>()));
      }
  }
}

// dsv4 eval --endpoint: the same run through the http backend (no numerics: the server's).
// A model name as a directory name: [A-Za-z0-9._-] kept, anything else '_'.
std::string dir_name(const std::string& name) {
  std::string s;
  for (char ch : name) s += std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == '_' ? ch : '_';
  return s.empty() || s == "." || s == ".." ? "model" : s;
}

// Several endpoints: the same items on every server, interleaved (evals/runner.h run_evals),
// each run in OUT/<model name>/, then the paired comparison of the first with each other one
// in OUT/compare.json (evals/compare.h).
int run_http_evals(const EvalArgs& a, const RunConfig& base, const ProbeTokens* probe) {
  std::vector<std::unique_ptr<HttpModel>> models;
  std::vector<RunConfig> cfgs;
  std::vector<LanguageModel*> ptrs;
  for (size_t i = 0; i < a.http.endpoints.size(); ++i) {
    models.push_back(std::make_unique<HttpModel>(http_backend_options(a.http, a.model, i)));
    RunConfig c = base;
    c.endpoint = models.back()->base_url();
    c.model_name = models.back()->model_name();
    c.out = (fs::path(a.out) / dir_name(c.model_name)).string();
    for (const RunConfig& o : cfgs)
      if (o.out == c.out) throw InputError("--model-name: two endpoints share the name '" + c.model_name + "'");
    cfgs.push_back(std::move(c));
    ptrs.push_back(models.back().get());
  }
  fs::create_directories(a.out);
  const std::vector<RunSummary> sums = run_evals(cfgs, ptrs, probe);
  std::vector<RunOnDisk> runs;
  for (size_t i = 0; i < sums.size(); ++i) {
    fmt::print("{} ({}):\n", cfgs[i].model_name, cfgs[i].endpoint);
    print_table(sums[i].results);
    runs.push_back(read_run(cfgs[i].out));
  }
  const boost::json::object doc = compare_runs(runs, CompareOptions{});
  write_file_atomic((fs::path(a.out) / "compare.json").string(), pretty_json(doc));
  fmt::print("{}", compare_table(doc));
  fmt::print(stderr, "dsv4 eval: {} servers, {} samples each -> {}/<model name>/results.json, {}/compare.json\n",
             sums.size(), sums.front().planned, a.out, a.out);
  return 0;
}

int run_http_eval(const EvalArgs& a, RunConfig& cfg, const fs::path& probe_json) {
  std::unique_ptr<ProbeTokens> probe;
  if (cfg.format == PromptFormat::probe) {
    if (probe_json.empty() || !fs::exists(probe_json))
      throw InputError("--format probe: needs --model DIR with DIR/probe.json (the probe's token sets)");
    probe = std::make_unique<ProbeTokens>(read_probe_tokens(probe_json.string()));
  }
  if (a.http.endpoints.size() > 1) return run_http_evals(a, cfg, probe.get());
  HttpModel model(http_backend_options(a.http, a.model));
  cfg.endpoint = model.base_url();
  cfg.model_name = model.model_name();
  const RunSummary s = run_eval(cfg, model, probe.get());
  print_table(s.results);
  print_coding_summary(s.results);
  fmt::print(stderr, "dsv4 eval: {} samples ({} resumed) via {} -> {}/results.json\n", s.planned, s.resumed,
             model.spec(), a.out);
  return 0;
}

}  // namespace

CLI::App* add_eval_command(CLI::App& app, EvalArgs& a) {
  auto* c = app.add_subcommand("eval", "run an eval suite on a model (dsv4 eval --list)");
  c->add_flag("--list", a.list, "list suites and tasks with their versions");
  c->add_option("--suite", a.suite, "recall | degradation | coding | longcode (dsv4 eval --list)")->default_str(a.suite);
  c->add_option("--model", a.model, "checkpoint directory (with probe.json: probe format)");
  c->add_option("--backend", a.backend, "ref | cuda")->default_str(a.backend);
  c->add_option("--numerics", a.numerics,
                "official (FP8/FP4 simulation) | exact; default: from probe.json knobs.quant "
                "(true: official, false: exact), else official");
  c->add_option("--kv-layout", a.kv_layout,
                "auto (fp8, the deployment layout, with official numerics; f32 with exact) | f32 | bf16 | fp8")
      ->default_str(a.kv_layout);
  c->add_option("--chunk", a.chunk, "prefill chunk, tokens")->default_str(std::to_string(a.chunk));
  c->add_option("--engram-tables", a.engram_tables, "memory | mmap: Engram tables decoded, or mapped from the shards")
      ->default_str(a.engram_tables);
  c->add_option("--tp", a.tp, "tensor-parallel ranks (under mpirun; docs/parallel.md)")->default_str("1");
  c->add_option("--ep", a.ep, "expert-parallel ranks (under mpirun; docs/parallel.md)")->default_str("1");
  c->add_option("--dp", a.dp,
                "data-parallel replicas under mpirun: the ranks split into DP groups of N/DP (each with "
                "its --tp x --ep layout), each runs every DP-th sample into OUT/dp-R; rank 0 merges")
      ->default_str("1");
  c->add_option("--lengths", a.lengths,
                "prompt lengths in tokens, e.g. 4k,16k,64k,256k,1m (k = 1024)");
  c->add_option("--depths", a.depths, "needle depths in [0, 1]")->default_str(a.depths);
  c->add_option("--tasks", a.tasks,
                "comma-separated task names (default: every task of the suite)");
  c->add_option("--format", a.format, "auto (probe when DIR/probe.json exists) | probe | natural")
      ->default_str(a.format);
  c->add_option("--samples", a.samples, "samples per cell (length x depth or class)")
      ->default_str(std::to_string(a.samples));
  c->add_option("--seed", a.seed, "run seed (items are a function of it)")->default_str("0");
  c->add_option("--distractors", a.distractors, "niah_multikey: distractor needles")
      ->default_str(std::to_string(a.distractors));
  c->add_option("--values", a.values, "niah_multivalue: values under the one key")
      ->default_str(std::to_string(a.values));
  c->add_option("--queries", a.queries, "niah_multiquery: keys asked at once")
      ->default_str(std::to_string(a.queries));
  c->add_option("--hops", a.hops, "variable_tracking: assignments per chain")
      ->default_str(std::to_string(a.hops));
  c->add_option("--threshold", a.threshold, "effective length: longest bin with mean >= this")
      ->default_str("0.9");
  c->add_option("--resamples", a.resamples, "bootstrap resamples")
      ->default_str(std::to_string(a.resamples));
  c->add_option("--out", a.out, "run directory (manifest.json, samples.jsonl, results.json)");
  c->add_flag("--force", a.force, "discard a run with different arguments in --out and start over");
  c->add_flag("--new", a.fresh,
              "start a fresh run: move an existing --out aside to OUT.old-<UTC time> (kept)");
  c->add_option("--progress", a.progress, "auto | bar | lines | none")->default_str(a.progress);
  add_http_options(c, a.http);
  c->add_option("--problems", a.problems,
                "coding: HumanEval-style JSONL problem files, comma-separated (default: the "
                "team's set, evals/coding/problems/)");
  c->add_flag("--validate", a.validate,
              "coding: run every reference solution (must pass) and mutant (must fail) of the "
              "problem set in the sandbox, without a model");
  c->add_option("--temperature", a.temperature, "coding: sampling temperature of each completion")
      ->default_str("0.8");
  c->add_option("--top-p", a.top_p, "coding: nucleus sampling mass")->default_str("0.95");
  c->add_option("--max-tokens", a.max_tokens, "coding: tokens generated per completion")
      ->default_str(std::to_string(a.max_tokens));
  c->add_option("--code-timeout", a.code_timeout,
                "coding: wall-clock and CPU-seconds limit of each program, seconds")
      ->default_str("10");
  return c;
}

namespace {

// The model of a data-parallel merge: every sample ran on a replica, so the merge must not run
// one (the replicas' other ranks have gone home); the calls that do not run the model pass on.
class NoModelCalls final : public LanguageModel {
 public:
  explicit NoModelCalls(const LanguageModel& m) : m_(m) {}
  std::string spec() const override { return m_.spec(); }
  uint32_t capabilities() const override { return m_.capabilities(); }
  std::vector<int32_t> tokenize(std::string_view t) const override { return m_.tokenize(t); }
  std::string detokenize(const std::vector<int32_t>& ids) const override { return m_.detokenize(ids); }
  std::string render_chat(const std::vector<ChatMessage>& msgs) const override { return m_.render_chat(msgs); }
  Completion generate(const std::vector<int32_t>&, const SamplingParams&) override { missing(); }
  Loglik loglik(const std::vector<int32_t>&, const std::vector<int32_t>&) override { missing(); }
  CandidateScores score_candidates(const std::vector<int32_t>&, const std::vector<int32_t>&) override { missing(); }
  PromptTrace trace(const std::vector<int32_t>&, TracePath) override { missing(); }

 private:
  [[noreturn]] static void missing() {
    throw InputError("data-parallel merge: a sample is missing from every replica's shard (a replica stopped early?); "
                     "rerun the same command to resume");
  }
  const LanguageModel& m_;
};

}  // namespace

int eval_command(const EvalArgs& a) {
  std::unique_ptr<comm::Comm> world;  // multi-rank: rank 0 leads, the rest follow (evals/multi_rank.h)
  // A failing rank of several ends them all (none waits in a collective); one rank returns.
  auto fail = [&](const std::string& line, int code) {
    if (world && world->size() > 1) world->abort(line, code);
    fmt::print(stderr, "{}\n", line);
    return code;
  };
  try {
    world = comm::init_world();
    if (world->size() > 1 && (a.list || a.validate || !a.http.endpoints.empty()))
      throw InputError("under mpirun only the engine eval runs (not --list, --validate or --endpoint)");
    if (a.list) {
      print_list();
      return 0;
    }
    if (a.validate) return validate_problem_set(a);
    RunConfig cfg;
    cfg.suite = a.suite;
    (void)find_suite(a.suite);  // an unknown suite fails before the model loads
    const bool http = !a.http.endpoints.empty();  // the http backend (cli/http_options.h)
    if (a.model.empty() && !http) throw InputError("--model is required (or --endpoint URL --model-name NAME)");
    if (!a.model.empty() && !fs::is_directory(a.model))
      throw InputError("--model: '" + a.model + "' is not a directory");
    const bool coding = a.suite == "coding";  // no length axis (evals/coding/coding_task.h)
    // Tasks with cells of their own (engram_facts) need no --lengths.
    const bool lengthless = !coding && !tasks_use_lengths(a.suite, a.tasks.empty() ? std::vector<std::string>{} : split_names(a.tasks));
    if (a.lengths.empty() && !coding && !lengthless) throw InputError("--lengths is required (e.g. 4k,16k)");
    if (!a.lengths.empty() && coding)
      throw InputError("--lengths: the coding suite has no length axis (one bin, 0)");
    if (a.out.empty()) throw InputError("--out is required");
    if (a.force && a.fresh)
      throw InputError("--new and --force: give one (--new keeps the old run, --force deletes it)");
    cfg.lengths = coding ? std::vector<int64_t>{0} : a.lengths.empty() ? std::vector<int64_t>{} : parse_lengths(a.lengths);
    cfg.depths = parse_depths(a.depths);
    if (!a.tasks.empty()) cfg.tasks = split_names(a.tasks);
    cfg.samples = a.samples;
    cfg.seed = a.seed;
    cfg.options.distractors = a.distractors;
    if (a.distractors < 0) throw InputError("--distractors must be >= 0");
    if (a.values < 1) throw InputError("--values must be >= 1");
    if (a.queries < 1) throw InputError("--queries must be >= 1");
    cfg.options.values = a.values;
    cfg.options.queries = a.queries;
    if (a.hops < 1) throw InputError("--hops must be >= 1");
    cfg.options.hops = a.hops;
    if (coding) set_coding_options(a, cfg.options);
    if (!coding && !a.problems.empty()) throw InputError("--problems: only the coding suite reads problems");
    cfg.threshold = a.threshold;
    cfg.resamples = a.resamples;
    cfg.out = a.out;
    cfg.force = a.force;
    cfg.fresh = a.fresh;
    if (a.progress == "auto")
      cfg.progress = RunConfig::Progress::automatic;
    else if (a.progress == "bar")
      cfg.progress = RunConfig::Progress::bar;
    else if (a.progress == "lines")
      cfg.progress = RunConfig::Progress::lines;
    else if (a.progress == "none")
      cfg.progress = RunConfig::Progress::none;
    else
      throw InputError("--progress: expected auto, bar, lines or none, found '" + a.progress + "'");
    const fs::path probe_json = a.model.empty() ? fs::path() : fs::path(a.model) / "probe.json";
    if (a.format == "auto")
      cfg.format = fs::exists(probe_json) ? PromptFormat::probe : PromptFormat::natural;
    else if (a.format == "probe")
      cfg.format = PromptFormat::probe;
    else if (a.format == "natural")
      cfg.format = PromptFormat::natural;
    else
      throw InputError("--format: expected auto, probe or natural, found '" + a.format + "'");
    if (!a.model.empty()) {  // with --endpoint: the local copy (probe.json, tokenizer.json)
      cfg.model_dir = fs::weakly_canonical(a.model).string();
      const Fingerprint fp = checkpoint_fingerprint(a.model);
      cfg.checkpoint_hash = fp.hash;
      cfg.checkpoint_hash_method = fp.method;
    }
    if (http) return run_http_eval(a, cfg, probe_json);
    const NumericsChoice numerics = choose_numerics(a.numerics, a.model);
    cfg.numerics = numerics.numerics;
    cfg.numerics_source = numerics.source;
    cfg.kv_layout = a.kv_layout != "auto" ? a.kv_layout : numerics.numerics == "official" ? "fp8" : "f32";
    // Data parallel (docs/parallel.md): DP groups of N/DP consecutive ranks, one model replica
    // each (its own tp x ep layout); replica r runs samples i % DP == r into OUT/dp-r.
    if (a.dp < 1 || world->size() % a.dp != 0)
      throw InputError("--dp " + std::to_string(a.dp) + ": must divide the " + std::to_string(world->size()) +
                       " ranks");
    std::unique_ptr<comm::Comm> replica;
    if (a.dp > 1) replica = world->split(world->rank() / (world->size() / a.dp), world->rank());
    comm::Comm& group = replica ? *replica : *world;
    const int64_t dp_index = replica ? world->rank() / (world->size() / a.dp) : 0;
    EngineOptions eo{a.backend, numerics.numerics, cfg.kv_layout, a.chunk};
    eo.world = &group, eo.tp = a.tp, eo.ep = a.ep, eo.engram_tables = a.engram_tables;
    EngineModel model(a.model, eo);
    std::unique_ptr<LeaderModel> leader;
    if (group.size() > 1) {
      if (group.rank() != 0) {
        follow(model, group);
        if (replica) world->barrier();  // rank 0 merges once every replica has finished
        return 0;
      }
      leader = std::make_unique<LeaderModel>(model, group);
    }
    std::unique_ptr<ProbeTokens> probe;
    if (cfg.format == PromptFormat::probe) {
      if (!fs::exists(probe_json))
        throw InputError("--format probe: '" + probe_json.string() + "' does not exist");
      probe =
          std::make_unique<ProbeTokens>(read_probe_tokens(probe_json.string(), model.vocab_size()));
    }
    LanguageModel& runner_model = leader ? static_cast<LanguageModel&>(*leader) : model;
    if (replica) {
      const auto t0 = std::chrono::steady_clock::now();
      RunConfig mine = cfg;
      mine.shard = dp_index, mine.shards = a.dp, mine.out = shard_dir(cfg.out, dp_index);
      if (dp_index != 0) mine.progress = RunConfig::Progress::none;  // rank 0's bar only
      run_eval(mine, runner_model, probe.get());
      if (leader) leader->finish();
      world->barrier();
      if (world->rank() != 0) return 0;
      std::vector<std::string> dirs;
      for (int r = 0; r < a.dp; ++r) dirs.push_back(shard_dir(cfg.out, r));
      NoModelCalls merged(model);
      const RunSummary s = merge_shards(cfg, merged, probe.get(), dirs,
                                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      print_table(s.results);
      print_coding_summary(s.results);
      fmt::print(stderr, "dsv4 eval: {} samples on {} data-parallel replicas -> {}/results.json (shards in {}/dp-*)\n",
                 s.planned, a.dp, a.out, a.out);
      return 0;
    }
    const RunSummary s = run_eval(cfg, runner_model, probe.get());
    if (leader) leader->finish();
    print_table(s.results);
    print_coding_summary(s.results);
    fmt::print(stderr, "dsv4 eval: {} samples ({} resumed) -> {}/results.json\n", s.planned,
               s.resumed, a.out);
    return 0;
  } catch (const InputError& e) {
    return fail(fmt::format("dsv4 eval: {}", e.what()), 2);
  } catch (const std::exception& e) {
    return fail(fmt::format("dsv4 eval: error: {}", e.what()), 1);
  }
}

}  // namespace dsv4::cli
