// Code from a model's completion (docs/evals.md "Coding suite: extraction").
//
// Rules, in order:
//   1. Fenced blocks (a line starting with ``` opens one, with an optional tag after the
//      backticks; a line that is ``` closes it; a block left open runs to the end of the text,
//      as when generation hit max_tokens). Candidates: blocks tagged with the language
//      (```python, ```py, ```javascript, ```js, ...) or untagged; blocks with other tags
//      (```bash, ```text) are skipped. Of the candidates, the first one that defines the
//      entry point at top level wins, else the first candidate.
//      Exception: when the first fence line is untagged, follows some text, and the last
//      block is left open (an odd number of fence lines), the first fence closes the block the
//      prompt opened: the text before it is the code, as in rule 2.
//   2. No candidate block: the text is a plain continuation of the prompt, cut at the first
//      stop sequence of the language ("\ndef ", "\nclass ", "\nif ", "\nprint(", ...; see
//      language.h).
// The result says whether the code defines the entry point itself (a whole function, to be
// placed after the prompt's preamble) or continues the prompt (to be appended to it):
// problems.h assembles the program from that.
#pragma once

#include <string>
#include <string_view>

#include "evals/coding/language.h"

namespace dsv4::evals {

struct ExtractedCode {
  std::string code;
  bool defines_entry_point = false;  // the code holds a top-level definition of the entry point
  // "fence:<tag>" ("fence:" for an untagged block) or "continuation".
  std::string source;
};

ExtractedCode extract_code(std::string_view completion, Language lang,
                           std::string_view entry_point);

}  // namespace dsv4::evals
