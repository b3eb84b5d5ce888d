// Filler token streams for haystacks. Both are seeded and endless; a haystack takes the
// tokens it needs and the stream is cut wherever a needle goes.
//   ProbeFiller    uniform draws from the probe's filler ids
//   GrammarFiller  English-like sentences from a small grammar of our own over word lists
//                  written here (no borrowed text):
//                    S  -> Det Adj? Noun Verb Det Adj? Noun (Prep Det Noun)? "."
//                  Each word is tokenized on its own, with its leading space (" fox"), and the
//                  ids are concatenated, so a haystack's length is exact and no decode /
//                  re-encode can shift a needle.
//   CodeFiller     a synthetic Python repository: file headers "# file: pkg/mod_NNNN.py" every
//                  kFunctionsPerFile functions, each "def f_NNNNN(p, q):" returning an
//                  arithmetic expression of its parameters (code_function()); function ids in
//                  `reserved` never appear (the task's target keeps a unique name). Tokenized a
//                  line at a time, so lengths are exact as above.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "evals/model_api.h"
#include "evals/rng.h"

namespace dsv4::evals {

class FillerStream {
 public:
  virtual ~FillerStream() = default;
  virtual int32_t next() = 0;
};

class ProbeFiller final : public FillerStream {
 public:
  ProbeFiller(const std::vector<int32_t>& ids, uint64_t seed) : ids_(ids), rng_(seed) {}
  int32_t next() override;

 private:
  const std::vector<int32_t>& ids_;
  std::mt19937_64 rng_;
};

// The parameter names code functions draw from (a 2-parameter function uses two distinct ones).
const std::vector<std::string>& code_parameter_names();

// One synthetic function: `def f_<id>(p, q):\n    return p * a + q - b\n` and what it computes.
struct CodeFunction {
  uint64_t id = 0;  // 5 digits: f_10000 .. f_99999
  std::string p, q;
  int64_t a = 0, b = 0;
  std::string name() const;
  std::string text() const;  // the definition, ending with a blank line
  int64_t call(int64_t x, int64_t y) const { return x * a + y - b; }
};
CodeFunction code_function(std::mt19937_64& rng);
// "pkg/mod_NNNN.py" for a module number.
std::string code_file(uint64_t module);

class CodeFiller final : public FillerStream {
 public:
  CodeFiller(const LanguageModel& m, uint64_t seed, std::vector<uint64_t> reserved)
      : model_(m), rng_(seed), reserved_(std::move(reserved)) {}
  int32_t next() override;

 private:
  const LanguageModel& model_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> reserved_;
  std::vector<int32_t> pending_;
  size_t at_ = 0;
  int64_t in_file_ = 0;  // functions written in the current file
};

class GrammarFiller final : public FillerStream {
 public:
  GrammarFiller(const LanguageModel& m, uint64_t seed) : model_(m), rng_(seed) {}
  int32_t next() override;
  // The next sentence as its pieces ("The", " old", " fox", ..., "."): for tests and docs.
  std::vector<std::string> sentence();

 private:
  const std::vector<int32_t>& piece_ids(const std::string& piece);

  const LanguageModel& model_;
  std::mt19937_64 rng_;
  std::unordered_map<std::string, std::vector<int32_t>> cache_;
  std::vector<int32_t> pending_;
  size_t at_ = 0;
};

}  // namespace dsv4::evals
