#include "evals/coding/coding_task.h"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "evals/coding/pass_at_k.h"
#include "evals/coding/problems.h"
#include "evals/hash.h"
#include "evals/results.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;

namespace {

constexpr const char* kCellPrefix = "problem=";
// Per-sample metric: 1 for a JavaScript problem, 0 for Python (summarize() splits by it).
constexpr const char* kJavaScriptMetric = "javascript";
constexpr RunClass kClasses[] = {
    RunClass::passed,    RunClass::failed,       RunClass::timeout,      RunClass::memory,
    RunClass::file_size, RunClass::output_limit, RunClass::sandbox_error};

// The problems of a file list, loaded once per process and content (a file rewritten under
// the same name is loaded again: the key holds each file's size and modification time).
std::shared_ptr<const std::vector<Problem>> problems_of(const std::vector<std::string>& files) {
  if (files.empty())
    throw InputError("--problems: the coding suite needs problem files (HumanEval JSONL)");
  std::string key;
  for (const std::string& f : files) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    const auto time = std::filesystem::last_write_time(f, ec).time_since_epoch().count();
    key += fmt::format("{}|{}|{}\n", f, ec ? 0 : size, ec ? 0 : time);
  }
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const std::vector<Problem>>> cache;
  const std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[key];
  if (!slot) slot = std::make_shared<const std::vector<Problem>>(load_problem_files(files));
  return slot;
}

const Problem& find_problem(const std::vector<Problem>& ps, const std::string& task_id) {
  for (const Problem& p : ps)
    if (p.task_id == task_id) return p;
  throw InputError("coding: no problem '" + task_id + "' in the problem files");
}

// The Problem an item carries in task_data (evaluate() has no other way to the files).
Problem problem_of(const Item& it) {
  Problem p;
  p.task_id = it.task_data.at("task_id");
  p.language = parse_language(it.task_data.at("language"), "coding item");
  p.prompt = it.task_data.at("prompt");
  p.entry_point = it.task_data.at("entry_point");
  p.test = it.task_data.at("test");
  return p;
}

// The sandbox limits of an item: the language's defaults with the run's timeout as both the
// wall-clock limit and the CPU-seconds limit (whole seconds, at least 1).
SandboxLimits limits_of(const Item& it, Language l) {
  SandboxLimits s = default_limits(l);
  s.wall_seconds = std::stod(it.task_data.at("timeout_seconds"));
  s.cpu_seconds = std::max<int64_t>(1, int64_t(std::ceil(s.wall_seconds)));
  return s;
}

const char* display_name(Language l) {
  return l == Language::python ? "Python" : "JavaScript";
}

// pass@k as JSON: the number, or null where k > n.
json::value pass_json(std::optional<double> v) {
  return v ? json::value(*v) : json::value(nullptr);
}

// The run class a record's metrics name ("class.<name>" = 1).
std::string class_of(const SampleRecord& r) {
  for (RunClass c : kClasses) {
    const auto it = r.metrics.find(std::string("class.") + run_class_name(c));
    if (it != r.metrics.end() && it->second == 1) return run_class_name(c);
  }
  return "unknown";
}

// pass@k per k and the class counts over a set of problems' (n, c) and records.
json::object aggregate(const std::vector<std::pair<int64_t, int64_t>>& nc,
                       const std::map<std::string, int64_t>& counts) {
  json::object pass;
  for (int64_t k : kPassAtK) pass[fmt::format("pass@{}", k)] = pass_json(mean_pass_at_k(nc, k));
  json::object cls;
  for (RunClass c : kClasses) {
    const auto it = counts.find(run_class_name(c));
    cls[run_class_name(c)] = it == counts.end() ? 0 : it->second;
  }
  const auto count = [&](const char* c) { return cls.at(c).as_int64(); };
  int64_t samples = 0;
  for (const auto& [n, c] : nc) samples += n;
  return {{"problems", int64_t(nc.size())},
          {"samples", samples},
          {"pass_at_k", pass},
          {"classes", cls},
          {"wrong_answers", count("failed")},
          {"timeouts", count("timeout")},
          {"sandbox_kills", count("memory") + count("file_size") + count("output_limit")},
          {"sandbox_errors", count("sandbox_error")}};
}

}  // namespace

std::string coding_instruction(const std::string& language, const std::string& prompt) {
  const Language l = parse_language(language, "coding_instruction");
  std::string code = prompt;
  if (!code.empty() && code.back() != '\n') code += '\n';
  return fmt::format(
      "Complete the following {} function. Reply with the whole function in one ```{} code "
      "block.\n\n```{}\n{}```",
      display_name(l), language_name(l), language_name(l), code);
}

std::string CodingTask::description() const {
  return "functional correctness of generated Python/JavaScript functions: n samples per "
         "problem, hidden tests run in a sandbox, unbiased pass@1/10/100";
}

std::vector<Cell> CodingTask::cells(const GridSpec& g) const {
  const auto problems = problems_of(g.options.problem_files);
  std::vector<Cell> out;
  bool js = false;
  for (const Problem& p : *problems) {
    Cell c;
    c.length = 0;  // no length axis: one bin
    c.geometry = kCellPrefix + p.task_id;
    out.push_back(c);
    js = js || p.language == Language::javascript;
  }
  if (js && interpreter_path(Language::javascript).empty())
    throw InputError(
        "--problems: JavaScript problems need Node.js (node in /usr/bin or /usr/local/bin; "
        "scripts/setup installs nodejs)");
  return out;
}

Item CodingTask::generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                          int64_t index) const {
  if (!ctx.model) throw InputError("coding: the natural format needs a model (tokenizer, chat)");
  const auto problems = problems_of(ctx.options.problem_files);
  if (cell.geometry.rfind(kCellPrefix, 0) != 0)
    throw InputError("coding: cell '" + cell.label() + "' is not a problem cell");
  const Problem& p = find_problem(*problems, cell.geometry.substr(std::string(kCellPrefix).size()));
  Item it = new_item(ctx, cell, run_seed, index);
  it.prompt = ctx.model->tokenize(
      ctx.model->render_chat({{"user", coding_instruction(language_name(p.language), p.prompt)}}));
  it.expected = p.task_id;
  it.answers = {p.task_id};
  it.chance = 0;
  it.task_data = {{"task_id", p.task_id},
                  {"language", language_name(p.language)},
                  {"prompt", p.prompt},
                  {"entry_point", p.entry_point},
                  {"test", p.test},
                  {"temperature", fmt::format("{:.17g}", ctx.options.coding_temperature)},
                  {"top_p", fmt::format("{:.17g}", ctx.options.coding_top_p)},
                  {"max_tokens", std::to_string(ctx.options.coding_max_tokens)},
                  {"timeout_seconds", fmt::format("{:.17g}", ctx.options.coding_timeout_seconds)},
                  {"seed", std::to_string(item_rng(it)() >> 1)}};
  // The tests are part of the item: a resume after the tests changed is refused.
  Hasher h;
  h.ids(it.prompt).str(it.expected);
  for (const auto& [k, v] : it.task_data) h.str(k).str(v);
  it.hash = h.digest();
  return it;
}

Outcome CodingTask::evaluate(LanguageModel& m, const Item& item) const {
  const Problem p = problem_of(item);
  SamplingParams sp;
  sp.temperature = std::stod(item.task_data.at("temperature"));
  sp.top_p = std::stod(item.task_data.at("top_p"));
  sp.max_tokens = std::stoll(item.task_data.at("max_tokens"));
  sp.seed = std::stoull(item.task_data.at("seed"));
  const Completion c = m.generate(item.prompt, sp);
  const SandboxResult r = run_sandboxed(sandbox_program(p, program_for_completion(p, c.text)),
                                        limits_of(item, p.language));
  Outcome o;
  o.prediction = c.text;
  o.score = r.outcome == RunClass::passed ? 1 : 0;
  o.prompt_tokens = c.usage.prompt_tokens;
  o.completion_tokens = c.usage.completion_tokens;
  o.cached_prompt_tokens = c.usage.cached_prompt_tokens;
  o.reasoning_tokens = c.usage.reasoning_tokens;
  o.prefill_seconds = c.usage.prefill_seconds;
  o.seconds = c.usage.prefill_seconds + c.usage.decode_seconds;
  for (RunClass k : kClasses)
    o.metrics[std::string("class.") + run_class_name(k)] = r.outcome == k ? 1 : 0;
  o.metrics["sandbox_seconds"] = r.wall_seconds;
  o.metrics["sandbox_cpu_seconds"] = r.cpu_seconds;
  o.metrics[kJavaScriptMetric] = p.language == Language::javascript ? 1 : 0;
  return o;
}

double CodingTask::score(const Item& item, const std::string& prediction) const {
  const Problem p = problem_of(item);
  return run_sandboxed(sandbox_program(p, program_for_completion(p, prediction)),
                       limits_of(item, p.language))
                     .outcome == RunClass::passed
             ? 1
             : 0;
}

json::value CodingTask::summarize(const std::vector<const SampleRecord*>& records) const {
  // Per problem (cell) in plan order: n, c and the class counts.
  struct PerProblem {
    std::string task_id, language;
    int64_t n = 0, c = 0;
    std::map<std::string, int64_t> counts;
  };
  std::vector<PerProblem> problems;
  std::map<std::string, size_t> at;
  for (const SampleRecord* r : records) {
    auto [it, fresh] = at.emplace(r->geometry_class, problems.size());
    if (fresh) {
      const auto js = r->metrics.find(kJavaScriptMetric);
      const bool is_js = js != r->metrics.end() && js->second == 1;
      problems.push_back({r->geometry_class.substr(std::string(kCellPrefix).size()),
                          language_name(is_js ? Language::javascript : Language::python)});
    }
    PerProblem& p = problems[it->second];
    ++p.n;
    p.c += r->score == 1 ? 1 : 0;
    ++p.counts[class_of(*r)];
  }
  json::array per;
  std::vector<std::pair<int64_t, int64_t>> nc_all;
  std::map<std::string, int64_t> counts_all;
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> nc_lang;
  std::map<std::string, std::map<std::string, int64_t>> counts_lang;
  for (const PerProblem& p : problems) {
    json::object o{{"task_id", p.task_id}, {"language", p.language}, {"n", p.n}, {"c", p.c}};
    for (int64_t k : kPassAtK) o[fmt::format("pass@{}", k)] = pass_json(pass_at_k(p.n, p.c, k));
    json::object cls;
    for (const auto& [name, n] : p.counts) cls[name] = n;
    o["classes"] = cls;
    per.push_back(o);
    nc_all.push_back({p.n, p.c});
    nc_lang[p.language].push_back({p.n, p.c});
    for (const auto& [name, n] : p.counts)
      counts_all[name] += n, counts_lang[p.language][name] += n;
  }
  json::object by_language;
  for (const auto& [lang, nc] : nc_lang) by_language[lang] = aggregate(nc, counts_lang[lang]);
  return json::object{{"estimator",
                       "unbiased pass@k = 1 - C(n-c,k)/C(n,k), product form; null "
                       "where k > n"},
                      {"overall", aggregate(nc_all, counts_all)},
                      {"by_language", by_language},
                      {"problems", per}};
}

}  // namespace dsv4::evals
