#include "evals/recall/engram_facts.h"

#include <algorithm>

#include "evals/hash.h"
#include "evals/recall/probe_tokens.h"
#include "reference/errors.h"

namespace dsv4::evals {

std::string EngramFactsTask::description() const {
  return "facts stored in an Engram table (probe with engram_facts): the prompt is a fact's two key "
         "tokens and nothing else; one item per fact (probe format only)";
}

std::string EngramFactsTask::unavailable(const GenContext& ctx) const {
  if (ctx.format != PromptFormat::probe) return "probe format only";
  if (!ctx.probe || ctx.probe->engram_facts.empty())
    return "the probe has no Engram facts (probe.json \"engram_facts\"; write one with dsv4 init --probe recall "
           "--set engram_facts=N)";
  return "";
}

int64_t EngramFactsTask::samples_per_cell(const GenContext& ctx, int64_t run_samples) const {
  (void)run_samples;  // one item per fact, whatever --samples says
  return ctx.probe ? int64_t(ctx.probe->engram_facts.size()) : 0;
}

uint32_t EngramFactsTask::needs(PromptFormat f) const {
  (void)f;
  return uint32_t(kCandidates);
}

std::vector<Cell> EngramFactsTask::cells(const GridSpec& g) const {
  (void)g;  // no length or depth axis
  Cell c;
  c.length = kEngramFactPromptTokens;
  c.tag = kEngramFactsCell;
  return {c};
}

Item EngramFactsTask::generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed, int64_t index) const {
  Item it = new_item(ctx, cell, run_seed, index);
  if (const std::string why = unavailable(ctx); !why.empty()) throw InputError(it.task + ": " + why);
  const auto& facts = ctx.probe->engram_facts;
  if (index < 0 || index >= int64_t(facts.size()))
    throw InputError(it.task + ": item " + std::to_string(index) + " but the probe lists " +
                     std::to_string(facts.size()) + " facts");
  const ProbeFactIds& f = facts[size_t(index)];
  it.prompt = {f.key_a, f.key_b};
  it.candidates = ctx.probe->values;
  it.answers = {std::to_string(f.value)};
  it.expected = it.answers[0];
  // No needle in a context: the copy floors stay 0 (needle_answers empty).
  it.chance = 1.0 / double(ctx.probe->values.size());
  // The fact's 2-gram is the whole prompt: positions 0..1, inside the window.
  it.geometry = geometry_of(0, kEngramFactPromptTokens, kEngramFactPromptTokens - 1, kEngramFactPromptTokens);
  it.hash = Hasher().ids(it.prompt).ids(it.candidates).str(it.expected).digest();
  return it;
}

Outcome EngramFactsTask::evaluate(LanguageModel& m, const Item& item) const {
  const CandidateScores s = m.score_candidates(item.prompt, item.candidates);
  // Argmax, ties to the first candidate (as the other probe tasks).
  const size_t best = size_t(std::max_element(s.logprob.begin(), s.logprob.end()) - s.logprob.begin());
  Outcome o;
  o.prediction = std::to_string(item.candidates[best]);
  o.prompt_tokens = s.usage.prompt_tokens;
  o.cached_prompt_tokens = s.usage.cached_prompt_tokens;
  o.prefill_seconds = s.usage.prefill_seconds;
  o.seconds = s.usage.prefill_seconds + s.usage.decode_seconds;
  o.score = score(item, o.prediction);
  return o;
}

double EngramFactsTask::score(const Item& item, const std::string& prediction) const {
  return !item.answers.empty() && prediction == item.answers[0] ? 1.0 : 0.0;
}

}  // namespace dsv4::evals
