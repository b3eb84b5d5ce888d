// Filler token streams for haystacks. Both are seeded and endless; a haystack takes the
// tokens it needs and the stream is cut wherever a needle goes.
//   ProbeFiller    uniform draws from the probe's filler ids
//   GrammarFiller  English-like sentences from a small grammar of our own over word lists
//                  written here (no borrowed text):
//                    S  -> Det Adj? Noun Verb Det Adj? Noun (Prep Det Noun)? "."
//                  Each word is tokenized on its own, with its leading space (" fox"), and the
//                  ids are concatenated, so a haystack's length is exact and no decode /
//                  re-encode can shift a needle.
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
