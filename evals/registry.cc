#include "evals/registry.h"

#include <fmt/core.h>

#include <algorithm>

#include "evals/coding/coding_task.h"
#include "evals/degradation/layer_trace.h"
#include "evals/hash.h"
#include "evals/recall/engram_facts.h"
#include "evals/recall/mrcr.h"
#include "evals/recall/niah.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {
constexpr int64_t kWindow = 128;    // spec §2: sliding window
constexpr int64_t kCsaBlock = 4;    // spec §2: CSA compression ratio
constexpr int64_t kHcaBlock = 128;  // spec §2: HCA compression ratio
}  // namespace

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

const char* format_name(PromptFormat f) {
  return f == PromptFormat::probe ? "probe" : "natural";
}

std::string Cell::label() const {
  if (!tag.empty()) return tag;
  if (!geometry.empty()) return "geometry=" + geometry;
  return fmt::format("depth={:g}", depth);
}

Geometry geometry_of(int64_t needle_pos, int64_t needle_len, int64_t value_pos, int64_t length) {
  Geometry g;
  g.needle_pos = needle_pos;
  g.needle_len = needle_len;
  g.value_pos = value_pos;
  g.mod4 = needle_pos % kCsaBlock;
  g.mod128 = needle_pos % kHcaBlock;
  const int64_t last = needle_pos + needle_len - 1;
  g.straddle4 = needle_pos / kCsaBlock != last / kCsaBlock;
  g.straddle128 = needle_pos / kHcaBlock != last / kHcaBlock;
  g.in_window = needle_pos >= length - kWindow;
  g.distance_from_end = length - 1 - needle_pos;
  return g;
}

uint64_t sample_seed(const std::string& task, const std::string& version, uint64_t run_seed,
                     const Cell& cell, int64_t index) {
  return Hasher()
      .str("dsv4.evals.sample")
      .str(task)
      .str(version)
      .u64(run_seed)
      .i64(cell.length)
      .str(cell.label())
      .i64(index)
      .digest();
}

const std::vector<Suite>& suites() {
  static const std::vector<Suite> k = {
      Suite{"recall",
            "needle-in-a-haystack recall in token space (probe checkpoints: argmax over value "
            "tokens; real models: generation)",
            {std::make_shared<NiahTask>(NiahKind::single),
             std::make_shared<NiahTask>(NiahKind::multikey),
             std::make_shared<NiahTask>(NiahKind::multivalue),
             std::make_shared<NiahTask>(NiahKind::multiquery),
             std::make_shared<NiahTask>(NiahKind::variables),
             std::make_shared<NiahTask>(NiahKind::geometry),
             std::make_shared<MrcrTask>(),
             std::make_shared<EngramFactsTask>()}},
      Suite{"longcode",
            "long-context code: a synthetic Python repository up to 1M tokens, questions whose "
            "answer needs one definition far away (return value, defining file, parameters); exact "
            "match (probe checkpoints: key -> value recall)",
            {std::make_shared<NiahTask>(NiahKind::repo_return), std::make_shared<NiahTask>(NiahKind::repo_file),
             std::make_shared<NiahTask>(NiahKind::repo_params)}},
      Suite{"degradation",
            "what changes with context length: recall with distractors, and per layer at the last "
            "position the deployment path against the fp64 reference (drift, needle mass, indexer "
            "top-k recall) beside KV bytes, FLOPs and time",
            {std::make_shared<NiahTask>(NiahKind::multikey), std::make_shared<LayerTraceTask>()}},
      Suite{"coding",
            "functional correctness of generated Python and JavaScript functions (HumanEval "
            "JSONL problems, --problems): n samples per problem run against hidden tests in a "
            "sandbox, unbiased pass@1/10/100",
            {std::make_shared<CodingTask>()}},
  };
  return k;
}

const Suite& find_suite(const std::string& name) {
  std::string known;
  for (const Suite& s : suites()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  throw InputError("--suite: unknown suite '" + name + "' (known: " + known + ")");
}

bool tasks_use_lengths(const std::string& suite, const std::vector<std::string>& tasks) {
  for (const auto& t : find_suite(suite).tasks)
    if (t->uses_lengths() && (tasks.empty() || std::find(tasks.begin(), tasks.end(), t->name()) != tasks.end()))
      return true;
  return false;
}

Outcome greedy_line(LanguageModel& m, const std::vector<int32_t>& prompt, int64_t max_tokens) {
  SamplingParams p;
  p.max_tokens = max_tokens;
  p.temperature = 0;
  p.stop = {"\n"};
  const Completion c = m.generate(prompt, p);
  Outcome o;
  o.prediction = c.text;
  o.prompt_tokens = c.usage.prompt_tokens;
  o.completion_tokens = c.usage.completion_tokens;
  o.cached_prompt_tokens = c.usage.cached_prompt_tokens;
  o.reasoning_tokens = c.usage.reasoning_tokens;
  o.prefill_seconds = c.usage.prefill_seconds;
  o.seconds = c.usage.prefill_seconds + c.usage.decode_seconds;
  return o;
}

Item Task::new_item(const GenContext& ctx, const Cell& cell, uint64_t run_seed, int64_t index) const {
  Item it;
  it.task = name();
  it.version = version();
  it.run_seed = run_seed;
  it.cell = cell;
  it.index = index;
  it.format = ctx.format;
  return it;
}

std::mt19937_64 Task::item_rng(const Item& it) {
  return std::mt19937_64(sample_seed(it.task, it.version, it.run_seed, it.cell, it.index));
}

}  // namespace dsv4::evals
