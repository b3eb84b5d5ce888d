#include "evals/coding/problems.h"

#include <fmt/core.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;

namespace {

constexpr int64_t kJavaScriptAddressSpace = int64_t(2) << 30;  // see default_limits()
#ifndef DSV4_CODING_PROBLEMS_DIR
#define DSV4_CODING_PROBLEMS_DIR "evals/coding/problems"  // set by evals/CMakeLists.txt
#endif
constexpr const char* kTeamFiles[] = {"python.jsonl", "javascript.jsonl"};

// The string field `key` of line `where`; InputError when absent (and required) or not a
// string. Absent and optional: "" and *present = false.
std::string string_field(const json::object& o, const char* key, const std::string& where,
                         bool required, bool* present = nullptr) {
  const json::value* v = o.if_contains(key);
  if (present) *present = v != nullptr;
  if (!v) {
    if (required) throw InputError(fmt::format("{}: field '{}' is missing", where, key));
    return "";
  }
  if (!v->is_string())
    throw InputError(fmt::format("{}: field '{}' must be a string, found {}", where, key,
                                 json::serialize(*v).substr(0, 40)));
  return std::string(v->as_string());
}

// The last non-empty line of `s` (the exception line of a traceback).
std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of("\n\r ");
  if (end == std::string::npos) return "";
  const size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1,
                  end - (start == std::string::npos ? 0 : start + 1) + 1);
}

std::string check_call(const Problem& p) {
  return "\n\ncheck(" + p.entry_point + ")" + (p.language == Language::javascript ? ";" : "") +
         "\n";
}

}  // namespace

std::vector<Problem> load_problems(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("--problems: cannot open '" + path + "'");
  std::vector<Problem> out;
  std::set<std::string> ids;
  int64_t line_no = 0;
  for (std::string line; std::getline(f, line);) {
    ++line_no;
    const std::string where = fmt::format("{}:{}", path, line_no);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json::value v;
    try {
      v = json::parse(line);
    } catch (const std::exception& e) {
      throw InputError(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!v.is_object()) throw InputError(where + ": expected a JSON object");
    const json::object& o = v.as_object();
    Problem p;
    p.origin = where;
    p.task_id = string_field(o, "task_id", where, true);
    if (p.task_id.empty()) throw InputError(where + ": field 'task_id' is empty");
    bool has_language = false;
    const std::string lang = string_field(o, "language", where, false, &has_language);
    p.language =
        has_language ? parse_language(lang, where + ": field 'language'") : Language::python;
    p.prompt = string_field(o, "prompt", where, true);
    p.entry_point = string_field(o, "entry_point", where, true);
    if (!is_identifier(p.language, p.entry_point))
      throw InputError(fmt::format("{}: field 'entry_point': '{}' is not a {} identifier", where,
                                   p.entry_point, language_name(p.language)));
    p.test = string_field(o, "test", where, true);
    if (p.test.find("check") == std::string::npos)
      throw InputError(where + ": field 'test' does not define check(candidate)");
    p.canonical_solution = string_field(o, "canonical_solution", where, false, &p.has_canonical);
    p.mutant = string_field(o, "mutant", where, false, &p.has_mutant);
    if (!ids.insert(p.task_id).second)
      throw InputError(fmt::format("{}: field 'task_id': '{}' appears twice", where, p.task_id));
    out.push_back(std::move(p));
  }
  if (out.empty()) throw InputError("--problems: '" + path + "' holds no problems");
  return out;
}

std::vector<Problem> load_problem_files(const std::vector<std::string>& paths) {
  if (paths.empty()) throw InputError("--problems: no file given");
  std::vector<Problem> all;
  std::map<std::string, std::string> seen;  // task_id -> origin
  for (const std::string& path : paths)
    for (Problem& p : load_problems(path)) {
      if (auto [it, fresh] = seen.emplace(p.task_id, p.origin); !fresh)
        throw InputError(
            fmt::format("{}: field 'task_id': '{}' also at {}", p.origin, p.task_id, it->second));
      all.push_back(std::move(p));
    }
  return all;
}

std::vector<std::string> team_problem_files() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const char* f : kTeamFiles) {
    const std::string path = std::string(DSV4_CODING_PROBLEMS_DIR) + "/" + f;
    if (std::filesystem::exists(path, ec)) out.push_back(path);
  }
  if (out.empty())
    throw InputError(std::string("--problems: the team's problem set is not in '") +
                     DSV4_CODING_PROBLEMS_DIR + "'; give --problems FILE[,FILE...]");
  return out;
}

std::string assemble_program(const Problem& p, const ExtractedCode& code) {
  std::string program;
  if (code.defines_entry_point) {
    const size_t def = find_definition(p.language, p.prompt, p.entry_point);
    program = (def == std::string::npos ? "" : p.prompt.substr(0, def)) + code.code;
  } else {
    program = p.prompt + code.code;
  }
  return program + "\n\n" + p.test + check_call(p);
}

std::string program_for_completion(const Problem& p, std::string_view completion) {
  return assemble_program(p, extract_code(completion, p.language, p.entry_point));
}

std::string program_for_reference(const Problem& p, const std::string& continuation) {
  const bool whole = find_definition(p.language, continuation, p.entry_point) != std::string::npos;
  return assemble_program(p, {continuation, whole, "reference"});
}

SandboxProgram sandbox_program(const Problem& p, std::string program_text) {
  return {interpreter_argv(p.language), program_file_name(p.language), std::move(program_text)};
}

SandboxLimits default_limits(Language l) {
  SandboxLimits s;
  if (l == Language::javascript) s.memory_bytes = kJavaScriptAddressSpace;
  return s;
}

std::vector<ValidationRow> validate_problems(const std::vector<Problem>& problems, int jobs) {
  require(jobs >= 1, "validate_problems: jobs must be >= 1");
  // The checks, in order: (problem, kind, continuation, must pass).
  struct Check {
    const Problem* p;
    const char* kind;
    const std::string* continuation;
    bool must_pass;
  };
  std::vector<Check> checks;
  for (const Problem& p : problems) {
    if (p.has_canonical) checks.push_back({&p, "canonical", &p.canonical_solution, true});
    if (p.has_mutant) checks.push_back({&p, "mutant", &p.mutant, false});
  }
  std::vector<ValidationRow> rows(checks.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next++) < checks.size();) {
      const Check& c = checks[i];
      const SandboxResult r =
          run_sandboxed(sandbox_program(*c.p, program_for_reference(*c.p, *c.continuation)),
                        default_limits(c.p->language));
      ValidationRow& row = rows[i];
      row = {c.p->task_id, c.kind, r.outcome, false, ""};
      row.ok = c.must_pass ? r.outcome == RunClass::passed
                           : r.outcome != RunClass::passed && r.outcome != RunClass::sandbox_error;
      if (r.outcome == RunClass::sandbox_error || (c.must_pass && !row.ok))
        row.detail = r.outcome == RunClass::sandbox_error ? r.detail : last_line(r.err);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < jobs; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  return rows;
}

}  // namespace dsv4::evals
