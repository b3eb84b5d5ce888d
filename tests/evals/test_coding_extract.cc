// Code extraction from completions (evals/coding/extract.h) and the language rules it uses.
#include <gtest/gtest.h>

#include "evals/coding/extract.h"

namespace dsv4::evals {
namespace {

// `s` without trailing newlines (where a cut falls between blank lines does not matter).
std::string rtrim_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

TEST(CodingExtract, TaggedPythonFence) {
  const ExtractedCode e = extract_code(
      "Here is the function:\n\n```python\ndef add(a, b):\n    return a + b\n```\nIt adds.",
      Language::python, "add");
  EXPECT_EQ(e.code, "def add(a, b):\n    return a + b\n");
  EXPECT_TRUE(e.defines_entry_point);
  EXPECT_EQ(e.source, "fence:python");
}

TEST(CodingExtract, ShortTagsAndUntaggedFences) {
  EXPECT_EQ(extract_code("```py\ndef f():\n    pass\n```", Language::python, "f").source,
            "fence:py");
  EXPECT_EQ(extract_code("```js\nfunction f() {}\n```", Language::javascript, "f").source,
            "fence:js");
  EXPECT_EQ(extract_code("```JavaScript\nconst f = () => 1;\n```", Language::javascript, "f").code,
            "const f = () => 1;\n");
  const ExtractedCode u = extract_code("```\nreturn 1\n```", Language::python, "f");
  EXPECT_EQ(u.code, "return 1\n");
  EXPECT_FALSE(u.defines_entry_point);
  EXPECT_EQ(u.source, "fence:");
}

TEST(CodingExtract, PicksTheBlockThatDefinesTheEntryPoint) {
  const std::string text =
      "Usage:\n```python\nprint(solve(3))\n```\nImplementation:\n```python\ndef helper(x):\n"
      "    return x\n\ndef solve(n):\n    return helper(n) * 2\n```\n";
  const ExtractedCode e = extract_code(text, Language::python, "solve");
  EXPECT_EQ(e.code, "def helper(x):\n    return x\n\ndef solve(n):\n    return helper(n) * 2\n");
  EXPECT_TRUE(e.defines_entry_point);
  // No block defines it: the first candidate.
  EXPECT_EQ(extract_code(text, Language::python, "other").code, "print(solve(3))\n");
}

TEST(CodingExtract, OtherLanguagesBlocksAreSkipped) {
  const ExtractedCode e =
      extract_code("```bash\npip install x\n```\n```javascript\nfunction go() { return 1; }\n```",
                   Language::javascript, "go");
  EXPECT_EQ(e.code, "function go() { return 1; }\n");
  // Only a foreign block: the text is treated as a continuation.
  EXPECT_EQ(extract_code("```bash\nls\n```", Language::python, "f").source, "continuation");
}

TEST(CodingExtract, UnclosedFenceRunsToTheEnd) {
  const ExtractedCode e =
      extract_code("```python\ndef f(x):\n    return x + 1", Language::python, "f");
  EXPECT_EQ(e.code, "def f(x):\n    return x + 1\n");
  EXPECT_TRUE(e.defines_entry_point);
}

TEST(CodingExtract, PythonContinuationStopsAtTopLevelStatements) {
  const std::string body = "    return sorted(xs)\n";
  for (const char* tail : {"\ndef other():\n    pass\n", "\nclass X:\n    pass\n",
                           "\nif __name__ == '__main__':\n    main()\n", "\nprint(f([2, 1]))\n",
                           "\n# tests\n", "\n```\nDone."}) {
    const ExtractedCode e = extract_code(body + tail, Language::python, "f");
    EXPECT_EQ(rtrim_newlines(e.code), rtrim_newlines(body)) << tail;
    EXPECT_FALSE(e.defines_entry_point);
    EXPECT_EQ(e.source, "continuation");
  }
  // Nested definitions and indented ifs are part of the body.
  const std::string nested = "    def inner(y):\n        return y\n    if xs:\n        return 1\n";
  EXPECT_EQ(extract_code(nested, Language::python, "f").code, nested);
}

TEST(CodingExtract, JavaScriptContinuationStopsAtTopLevelStatements) {
  const std::string body = "  return a + b;\n}\n";
  for (const char* tail : {"\nfunction main() {}\n", "\nconsole.log(add(1, 2));\n",
                           "\nmodule.exports = add;\n", "\n// usage\n", "\nconst x = 1;\n"}) {
    EXPECT_EQ(extract_code(body + tail, Language::javascript, "add").code, body) << tail;
  }
}

TEST(CodingExtract, UnfencedWholeDefinitionIsADefinition) {
  const ExtractedCode e = extract_code("\ndef f(x):\n    return x\n\ndef unrelated():\n    pass\n",
                                       Language::python, "f");
  EXPECT_EQ(e.code, "def f(x):\n    return x\n");
  EXPECT_TRUE(e.defines_entry_point);
  const ExtractedCode j = extract_code("function f(x) {\n  return x;\n}\nconsole.log(f(1));",
                                       Language::javascript, "f");
  EXPECT_EQ(j.code, "function f(x) {\n  return x;\n}");
  EXPECT_TRUE(j.defines_entry_point);
}

TEST(CodingExtract, FindDefinitionIsTopLevelAndExact) {
  EXPECT_EQ(find_definition(Language::python, "import x\ndef f(a):\n", "f"), 9u);
  EXPECT_EQ(find_definition(Language::python, "async def f(a):\n", "f"), 0u);
  EXPECT_EQ(find_definition(Language::python, "class A:\n    def f(self):\n", "f"),
            std::string::npos);  // a method, not top level
  EXPECT_EQ(find_definition(Language::python, "def ff(a):\n", "f"), std::string::npos);
  EXPECT_EQ(find_definition(Language::javascript, "/** doc */\nfunction $f(a) {\n", "$f"), 11u);
  EXPECT_EQ(find_definition(Language::javascript, "let g = 1;\nconst f = (a) => a;\n", "f"), 11u);
  EXPECT_EQ(find_definition(Language::javascript, "f(1);\n", "f"), std::string::npos);
}

}  // namespace
}  // namespace dsv4::evals
