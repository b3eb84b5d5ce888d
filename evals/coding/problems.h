// Coding problems in the HumanEval JSONL format, and the programs the sandbox runs for them
// (docs/evals.md "Coding suite: problems").
//
// One JSON object per line:
//   task_id             string, unique within the files loaded ("dsv4/py/001", "HumanEval/0")
//   prompt              string: the code the model continues (signature + docstring; for
//                       JavaScript up to and including the function's opening brace)
//   entry_point         string: the function's name (an identifier)
//   test                string: code that defines check(candidate), raising / throwing on a
//                       wrong answer
//   canonical_solution  string, optional: a right continuation of the prompt
//   mutant              string, optional: a wrong continuation (its tests must fail)
//   language            "python" | "javascript", optional (absent: "python", as HumanEval)
// Other fields are ignored. Blank lines are skipped. Any other problem (bad JSON, a missing
// or mistyped field, a duplicate task_id) is an InputError naming the file, the line and
// the field.
//
// Program assembly (assemble_program):
//   continuation code    prompt + code
//   a whole definition   the prompt's preamble (everything before its top-level definition
//                        of the entry point: imports, helpers, doc comments) + code
// then, for both: "\n\n" + test + "\n\ncheck(<entry_point>)" (";" in JavaScript) + "\n".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "evals/coding/extract.h"
#include "evals/coding/language.h"
#include "evals/coding/sandbox.h"

namespace dsv4::evals {

struct Problem {
  std::string task_id;
  Language language = Language::python;
  std::string prompt, entry_point, test;
  std::string canonical_solution, mutant;  // "" when absent
  bool has_canonical = false, has_mutant = false;
  std::string origin;  // "FILE:LINE", for messages
};

// The problems of one JSONL file, in file order.
std::vector<Problem> load_problems(const std::string& path);
// Several files concatenated; a task_id twice (in one file or across files) is an InputError.
std::vector<Problem> load_problem_files(const std::vector<std::string>& paths);
// The team's problem set (evals/coding/problems/{python,javascript}.jsonl in the source tree
// this binary was built from): the files that exist; InputError when neither does.
std::vector<std::string> team_problem_files();

// The program that tests `code` on the problem (rules above).
std::string assemble_program(const Problem& p, const ExtractedCode& code);
// The program for a model's raw completion: extract_code, then assemble_program.
std::string program_for_completion(const Problem& p, std::string_view completion);
// The program for a reference continuation (canonical_solution or mutant): used as is,
// never cut at stop sequences.
std::string program_for_reference(const Problem& p, const std::string& continuation);

// What the sandbox runs for a program of the problem's language.
SandboxProgram sandbox_program(const Problem& p, std::string program_text);
// The limits a problem's program runs under: SandboxLimits' defaults, with 2 GiB of address
// space for JavaScript (V8 reserves ~0.7-1 GiB of address space before running anything).
SandboxLimits default_limits(Language l);

// The problem-set check (`dsv4 eval --suite coding --validate`): every canonical solution
// must pass its tests and every mutant must fail them (so no test is vacuous).
struct ValidationRow {
  std::string task_id;
  std::string kind;  // "canonical" | "mutant"
  RunClass outcome = RunClass::sandbox_error;
  bool ok = false;     // canonical: passed; mutant: anything but passed or sandbox_error
  std::string detail;  // the last stderr line on a failure, or the sandbox's reason
};
// `jobs` sandboxes run at once (threads; >= 1); the rows come in problem order either way.
std::vector<ValidationRow> validate_problems(const std::vector<Problem>& problems, int jobs = 1);

}  // namespace dsv4::evals
