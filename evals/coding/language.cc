#include "evals/coding/language.h"

#include <filesystem>
#include <regex>

#include "reference/errors.h"

namespace dsv4::evals {

namespace {
constexpr const char* kPython = "/usr/bin/python3";
// Debian's nodejs package installs /usr/bin/node; NodeSource and tarballs /usr/local/bin.
constexpr const char* kNodePaths[] = {"/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"};
}  // namespace

const char* language_name(Language l) {
  return l == Language::python ? "python" : "javascript";
}

Language parse_language(const std::string& s, const std::string& what) {
  if (s == "python") return Language::python;
  if (s == "javascript") return Language::javascript;
  throw InputError(what + ": language '" + s + "' (expected \"python\" or \"javascript\")");
}

std::string program_file_name(Language l) {
  return l == Language::python ? "main.py" : "main.js";
}

std::string interpreter_path(Language l) {
  std::error_code ec;
  if (l == Language::python) return std::filesystem::exists(kPython, ec) ? kPython : "";
  for (const char* p : kNodePaths)
    if (std::filesystem::exists(p, ec)) return p;
  return "";
}

std::vector<std::string> interpreter_argv(Language l) {
  if (l == Language::python) return {kPython, "-I", "-B", program_file_name(l)};
  return {interpreter_path(l), program_file_name(l)};
}

bool is_fence_tag(Language l, std::string_view tag) {
  if (l == Language::python) return tag == "python" || tag == "py" || tag == "python3";
  return tag == "javascript" || tag == "js" || tag == "node" || tag == "nodejs" || tag == "mjs";
}

const std::vector<std::string>& stop_sequences(Language l) {
  static const std::vector<std::string> py = {"\ndef ", "\nclass ",  "\nif ", "\nprint(",
                                              "\n#",    "\nassert ", "\n```"};
  static const std::vector<std::string> js = {"\nfunction ", "\nconsole.", "\nmodule.exports",
                                              "\n//",        "\nclass ",   "\nconst ",
                                              "\nlet ",      "\nvar ",     "\n```"};
  return l == Language::python ? py : js;
}

bool is_identifier(Language l, std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || (c == '$' && l == Language::javascript);
    if (!ok) return false;
  }
  return true;
}

size_t find_definition(Language l, std::string_view code, std::string_view entry_point) {
  if (!is_identifier(l, entry_point)) return std::string::npos;
  std::string name;  // '$' is the one identifier character a regex needs escaped
  for (char c : entry_point) name += c == '$' ? std::string("\\$") : std::string(1, c);
  const std::string pattern = l == Language::python
                                  ? "(^|\\n)((async[ \\t]+)?def[ \\t]+" + name + "[ \\t]*\\()"
                                  : "(^|\\n)((async[ \\t]+)?function[ \\t]*\\*?[ \\t]*" + name +
                                        "[ \\t]*\\(|(const|let|var)[ \\t]+" + name + "[ \\t]*=)";
  const std::regex re(pattern);
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_search(code.begin(), code.end(), m, re)) return std::string::npos;
  return size_t(m.position(2));
}

}  // namespace dsv4::evals
