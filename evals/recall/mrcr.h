// MRCR-style multi-round coreference (docs/evals.md "mrcr"), natural format only.
//
// A long multi-turn chat in the model's own chat format. Among filler turns (user: grammar
// text of evals/recall/filler.h; assistant: one grammar sentence), the user asks K times
// the same request "Write a short line about <topic>." and each assistant answer is a
// distinct line of our grammar. The last user turn asks:
//   "Prepend <P> to the <i-th> short line about <topic> that you wrote above, and reproduce
//    that line exactly. ..."
// with P a random 10-character alphanumeric string. Score (score()): 0 when the answer
// (leading whitespace dropped) does not start with P; otherwise the sequence-match ratio
// (evals/sequence_ratio.h) between the rest (whitespace-trimmed) and the i-th line.
//
// Cells: length x items K in {2, 4, 8} (Cell::geometry "items=K"). The prompt is exactly
// `length` tokens: the chat is rendered with a marker per message, the rendered template
// pieces and every message's text are tokenized separately and concatenated, and the
// filler user turns share the tokens left over (filler turns: length / 512, halved until
// each gets at least 8 tokens). Item turns sit at uniformly drawn slots among the filler
// turns; the target i is uniform in 1..K (document order).
//
// Item fields: answers = {P, line}, expected = "P line", needle_answers = "P <line j>"
// for every other item j (document order), so the runner's floors are: copy_random = the
// mean ratio of answering with a wrong-index item, copy_first = the first wrong item's,
// chance = the score of the empty answer (P alone). Geometry: the target line's tokens.
// The probe format has no multi-token answers to generate: not supported.
#pragma once

#include <string>
#include <vector>

#include "evals/registry.h"

namespace dsv4::evals {

class MrcrTask final : public Task {
 public:
  std::string name() const override { return "mrcr"; }
  std::string version() const override { return "1"; }
  std::string description() const override;
  bool supports(PromptFormat f) const override { return f == PromptFormat::natural; }
  uint32_t needs(PromptFormat) const override { return kTokens | kChat | kGenerate; }
  std::vector<Cell> cells(const GridSpec& g) const override;
  Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                int64_t index) const override;
  Outcome evaluate(LanguageModel& m, const Item& item) const override;
  double score(const Item& item, const std::string& prediction) const override;
};

// The item counts K of the cells, in report order.
const std::vector<int64_t>& mrcr_item_counts();

// "1st", "2nd", "3rd", "4th", ..., "11th", "12th", "13th", "21st", ...
std::string ordinal(int64_t n);

}  // namespace dsv4::evals
