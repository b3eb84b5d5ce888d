// Needle-in-a-haystack recall tasks, in token space (docs/evals.md "Recall tasks").
//   niah_single    one needle; cells: length x depth
//   niah_multikey  the target plus D distractor needles with other keys (and other values);
//                  cells: length x depth of the target, distractors at seeded positions
//   niah_multivalue  V needles (default 4) with the same key and different values, the
//                  first at the depth, the others at seeded positions; probe: correct when the
//                  argmax is any of them; natural: the fraction of the V values in the answer
//   niah_multiquery  (natural only) Q needles (default 4) with different keys, the first at
//                  the depth; the question asks for all Q; score: the fraction found
//   variable_tracking  (natural only) two chains " VAR A = 12345." " VAR B = VAR A." ... of H
//                  statements (default 4) in document order, the target chain's first at the
//                  depth; the question asks for every variable holding the target's value;
//                  score: the fraction of the chain's names in the answer
//   niah_geometry  one needle placed by its position relative to the compression geometry;
//                  cells: length x class:
//                    mod4=r       needle_pos = r mod 4, outside the 128-token window
//                                 (mod4=3 puts a probe needle [k v] across a 4-block boundary)
//                    mod128=0     needle at the start of a 128-block, outside the window
//                    mod128=127   needle across a 128-block boundary, outside the window
//                    window_in    the whole needle in the last 128 positions
//                    window_out   just outside: its last token 129..256 positions from the end
//   repo_return / repo_file / repo_params  long-context code (the `longcode` suite): the
//                  haystack is a synthetic Python repository (filler.h CodeFiller), the needle one
//                  function under its file header; the question asks what the function returns
//                  for given arguments, which file defines it, or its parameter names in order;
//                  exact match of the answer's first line (params: ", "-separated, spacing
//                  ignored). Cells: length x depth. Probe format: the question reduces to the
//                  probe's key -> value recall (the niah_single construction).
// Prompt = prefix | body (filler with needles at exact positions) | suffix, exactly
// `length` tokens:
//   probe    prefix = (none), needle = [key id, value id], suffix = [query key id];
//            answer = argmax of score_candidates over the value ids
//   natural  prefix = the chat rendering up to the user text, needle = " The secret value for
//            key K is V." (K six digits, V seven digits), suffix = the question and the chat
//            rendering after the user text; answer = greedy generation, score 1 when the
//            expected value appears in it (substring), else 0
#pragma once

#include "evals/registry.h"

namespace dsv4::evals {

enum class NiahKind {
  single, multikey, multivalue, multiquery, variables, geometry,
  repo_return, repo_file, repo_params  // long-context code
};
// The kind is one of the repo_* code tasks.
bool is_code_kind(NiahKind k);

class NiahTask final : public Task {
 public:
  explicit NiahTask(NiahKind k) : kind_(k) {}
  std::string name() const override;
  std::string version() const override;
  std::string description() const override;
  bool supports(PromptFormat f) const override;
  uint32_t needs(PromptFormat f) const override;
  std::vector<Cell> cells(const GridSpec& g) const override;
  Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                int64_t index) const override;
  Outcome evaluate(LanguageModel& m, const Item& item) const override;
  double score(const Item& item, const std::string& prediction) const override;

 private:
  NiahKind kind_;
};

// The geometry classes of niah_geometry, in report order.
const std::vector<std::string>& geometry_classes();

// Tokens that a natural answer may take (greedy generation stops there or at a newline).
inline constexpr int64_t kNaturalAnswerTokens = 24;

}  // namespace dsv4::evals
