// The languages the coding suite runs, and what differs between them (docs/evals.md
// "Coding suite"): how a program file is named and run, which code-fence tags name the
// language, where a plain continuation of a prompt stops, and what a top-level definition
// of the entry point looks like.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dsv4::evals {

enum class Language { python, javascript };

const char* language_name(Language l);  // "python" | "javascript"
// "python" | "javascript"; InputError naming `what` (e.g. "file:3: field 'language'") else.
Language parse_language(const std::string& s, const std::string& what);

// The program file inside the sandbox directory: "main.py" | "main.js".
std::string program_file_name(Language l);
// The interpreter's absolute path: /usr/bin/python3; node from /usr/bin or /usr/local/bin.
// "" when it is not installed.
std::string interpreter_path(Language l);
// argv for the sandbox: {"/usr/bin/python3", "-I", "-B", "main.py"} (isolated mode: no
// user site, no PYTHON* variables; no .pyc files) | {node, "main.js"}.
std::vector<std::string> interpreter_argv(Language l);

// Code-fence tags (lower case) that name the language: ```python, ```py, ```js, ...
bool is_fence_tag(Language l, std::string_view tag);

// Where a plain continuation of a prompt ends: the first of these (a new top-level
// statement that is not part of the function: "\ndef ", "\nclass ", "\nif ", "\nprint(",
// "\n#", a closing fence; JavaScript: "\nfunction ", "\nconsole.", "\nmodule.exports", ...).
const std::vector<std::string>& stop_sequences(Language l);

// The offset of the first top-level (column 0) definition of `entry_point` in `code`
// ("def NAME(" | "async def NAME("; "function NAME(" | "async function NAME(" |
// "const|let|var NAME ="), or std::string::npos.
size_t find_definition(Language l, std::string_view code, std::string_view entry_point);

// `name` is an identifier of the language (letters, digits, '_' and, for JavaScript, '$';
// not starting with a digit).
bool is_identifier(Language l, std::string_view name);

}  // namespace dsv4::evals
