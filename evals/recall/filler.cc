#include "evals/recall/filler.h"

#include <algorithm>
#include <array>

#include "reference/errors.h"

namespace dsv4::evals {

namespace {

// The word lists of the filler grammar (written for this project).
constexpr std::array kDeterminers = {"the", "a", "every", "one", "that", "this", "some", "each"};
constexpr std::array kAdjectives = {"quiet",  "old",     "small", "bright", "heavy",   "gentle",
                                    "narrow", "distant", "green", "silver", "patient", "early",
                                    "calm",   "wooden",  "tall",  "careful"};
constexpr std::array kNouns = {"river",    "farmer",  "lantern", "valley", "teacher", "garden",
                               "bridge",   "window",  "sailor",  "forest", "letter",  "market",
                               "mountain", "clock",   "painter", "road",   "village", "orchard",
                               "harbor",   "student", "kitchen", "meadow", "baker",   "engine"};
constexpr std::array kVerbs = {"watches", "carries", "follows",   "repairs",  "visits", "paints",
                               "finds",   "crosses", "remembers", "measures", "opens",  "guards",
                               "passes",  "builds",  "reaches",   "cleans"};
constexpr std::array kPrepositions = {"near",   "behind", "under", "beside",
                                      "across", "beyond", "above", "along"};
constexpr uint64_t kAdjectiveOdds = 2;   // an adjective before a noun with probability 1/2
constexpr uint64_t kPrepPhraseOdds = 3;  // a prepositional phrase with probability 1/3

template <size_t N>
std::string pick(std::mt19937_64& rng, const std::array<const char*, N>& words) {
  return words[uniform_index(rng, N)];
}

}  // namespace

namespace {
constexpr uint64_t kFunctionLo = 10000, kFunctionSpan = 90000;  // 5-digit function ids
constexpr uint64_t kModuleLo = 1000, kModuleSpan = 9000;        // 4-digit module numbers
constexpr int64_t kFunctionsPerFile = 8;
constexpr int64_t kCoefficientSpan = 19;  // a in [2, 20], b in [0, 18]
}  // namespace

const std::vector<std::string>& code_parameter_names() {
  static const std::vector<std::string> k = {"count", "width", "height", "offset", "scale", "limit",
                                             "index", "total", "delta",  "factor", "base",  "step"};
  return k;
}

std::string CodeFunction::name() const { return "f_" + std::to_string(id); }

std::string CodeFunction::text() const {
  return "def " + name() + "(" + p + ", " + q + "):\n    return " + p + " * " + std::to_string(a) + " + " + q +
         " - " + std::to_string(b) + "\n\n";
}

CodeFunction code_function(std::mt19937_64& rng) {
  const auto& names = code_parameter_names();
  CodeFunction f;
  f.id = kFunctionLo + uniform_index(rng, kFunctionSpan);
  const size_t i = uniform_index(rng, names.size());
  size_t j = uniform_index(rng, names.size() - 1);
  if (j >= i) ++j;
  f.p = names[i], f.q = names[j];
  f.a = 2 + int64_t(uniform_index(rng, kCoefficientSpan));
  f.b = int64_t(uniform_index(rng, kCoefficientSpan));
  return f;
}

std::string code_file(uint64_t module) { return "pkg/mod_" + std::to_string(kModuleLo + module % kModuleSpan) + ".py"; }

int32_t CodeFiller::next() {
  while (at_ == pending_.size()) {
    pending_.clear();
    at_ = 0;
    std::string text;
    if (in_file_ == 0) text = "# file: " + code_file(uniform_index(rng_, kModuleSpan)) + "\n";
    CodeFunction f = code_function(rng_);
    while (std::find(reserved_.begin(), reserved_.end(), f.id) != reserved_.end()) f = code_function(rng_);
    text += f.text();
    in_file_ = (in_file_ + 1) % kFunctionsPerFile;
    pending_ = model_.tokenize(text);
    if (pending_.empty()) throw InputError("the tokenizer maps a code line to no tokens");
  }
  return pending_[at_++];
}

int32_t ProbeFiller::next() {
  return ids_[uniform_index(rng_, ids_.size())];
}

std::vector<std::string> GrammarFiller::sentence() {
  std::vector<std::string> w;
  auto noun_phrase = [&] {
    w.push_back(pick(rng_, kDeterminers));
    if (uniform_index(rng_, kAdjectiveOdds) == 0) w.push_back(pick(rng_, kAdjectives));
    w.push_back(pick(rng_, kNouns));
  };
  noun_phrase();
  w.push_back(pick(rng_, kVerbs));
  noun_phrase();
  if (uniform_index(rng_, kPrepPhraseOdds) == 0) {
    w.push_back(pick(rng_, kPrepositions));
    w.push_back(pick(rng_, kDeterminers));
    w.push_back(pick(rng_, kNouns));
  }
  // Pieces: a leading space before every word (the sentence's first word too, so sentences
  // join with one space), the first letter capitalised, the period glued to the last word.
  std::vector<std::string> pieces;
  for (size_t i = 0; i < w.size(); ++i) {
    std::string p = " " + w[i];
    if (i == 0) p[1] = char(p[1] - 'a' + 'A');
    pieces.push_back(p);
  }
  pieces.push_back(".");
  return pieces;
}

const std::vector<int32_t>& GrammarFiller::piece_ids(const std::string& piece) {
  auto it = cache_.find(piece);
  if (it == cache_.end()) {
    std::vector<int32_t> ids = model_.tokenize(piece);
    if (ids.empty())
      throw InputError("the tokenizer maps the filler word '" + piece + "' to no tokens");
    it = cache_.emplace(piece, std::move(ids)).first;
  }
  return it->second;
}

int32_t GrammarFiller::next() {
  while (at_ == pending_.size()) {
    pending_.clear();
    at_ = 0;
    for (const std::string& p : sentence()) {
      const auto& ids = piece_ids(p);
      pending_.insert(pending_.end(), ids.begin(), ids.end());
    }
  }
  return pending_[at_++];
}

}  // namespace dsv4::evals
