// Suites, tasks and the items they generate (docs/evals.md "Tasks").
//
// A task is a generator plus a scorer. generate() is a pure function of
// (task, version, run seed, length bin, cell, sample index) -- the item's own seed is
// sample_seed() of those -- so the same arguments give the same item whatever else runs and
// in whatever order. Each item carries a hash of its prompt ids and expected answer; a task's
// data hash (results.json) combines the item hashes in canonical order.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "evals/model_api.h"

namespace dsv4::evals {

struct ProbeTokens;   // evals/recall/probe_tokens.h
struct SampleRecord;  // evals/results.h

// How prompts are built: `probe` in the probe checkpoint's own token vocabulary (needle =
// [key id, value id], the prompt ends with the query key, answer = argmax over value ids);
// `natural` as text in the model's tokenizer (needle sentence, question in the chat format,
// answer parsed from generated text).
enum class PromptFormat { probe, natural };
const char* format_name(PromptFormat f);

struct TaskOptions {
  int64_t distractors = 16;  // niah_multikey: needles with other keys besides the target
  int64_t values = 4;        // niah_multivalue: values stored under the one key
  int64_t queries = 4;       // niah_multiquery: keys asked at once
  int64_t hops = 4;          // variable_tracking: assignments per chain
  // coding suite (evals/coding/coding_task.h): the problem files (HumanEval JSONL) and how
  // each completion is sampled (n samples per problem at this temperature for pass@k).
  std::vector<std::string> problem_files;
  double coding_temperature = 0.8;
  double coding_top_p = 0.95;
  int64_t coding_max_tokens = 512;
  double coding_timeout_seconds = 10;  // each program's wall-clock and CPU-seconds limit
};

struct GenContext {
  PromptFormat format = PromptFormat::natural;
  const ProbeTokens* probe = nullptr;    // format probe
  const LanguageModel* model = nullptr;  // format natural: tokenize / render_chat
  TaskOptions options;
};

// One cell of a task's grid inside a length bin: a needle depth in [0, 1], or a geometry
// class (niah_geometry: "mod4=1", "mod128=127", "window_in", ...).
// A task without a length axis has cells of its own, named by `tag` (engram_facts:
// "no_context").
struct Cell {
  int64_t length = 0;         // prompt tokens, exact
  double depth = -1;          // >= 0 for depth cells
  std::string geometry;       // non-empty for geometry cells
  std::string tag;            // non-empty for a named cell (then depth -1, geometry empty)
  std::string label() const;  // "depth=0.25", "geometry=mod4=1" or the tag
};

// Where the target needle sits relative to the compression geometry (spec: CSA blocks of 4,
// HCA blocks of 128, a 128-token sliding window). Positions are absolute prompt positions.
struct Geometry {
  int64_t needle_pos = 0;         // first needle token
  int64_t needle_len = 0;         // tokens
  int64_t value_pos = 0;          // first token of the answer inside the needle
  int64_t mod4 = 0, mod128 = 0;   // needle_pos mod 4, mod 128
  bool straddle4 = false;         // the needle's tokens span two 4-token blocks
  bool straddle128 = false;       // ... two 128-token blocks
  bool in_window = false;         // the whole needle lies in the last 128 prompt positions
  int64_t distance_from_end = 0;  // (length - 1) - needle_pos
};
Geometry geometry_of(int64_t needle_pos, int64_t needle_len, int64_t value_pos, int64_t length);

struct Item {
  std::string task, version;
  uint64_t run_seed = 0;
  Cell cell;
  int64_t index = 0;
  PromptFormat format = PromptFormat::natural;
  std::vector<int32_t> prompt;
  std::vector<int32_t> candidates;   // probe: the value ids scored
  std::vector<std::string> answers;  // every answer asked for (probe: value ids in decimal)
  std::string expected;              // the answers joined with ","
  std::vector<std::string>
      needle_answers;  // every needle's answer, document order (target included)
  double chance = 0;   // the score of a uniform guess
  Geometry geometry;
  uint64_t hash = 0;  // of prompt ids, candidates and expected
  // Known values a task compares against, derived from the model's identity (a probe's
  // closed-form needle mass); not part of the hash.
  std::map<std::string, double> known;
  // Task-specific data generate() hands to evaluate() (coding: the problem's test code and
  // the sampling settings); part of the hash only where the task puts it there.
  std::map<std::string, std::string> task_data;
};

// What running one item gave.
struct Outcome {
  std::string prediction;
  double score = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double seconds = 0, prefill_seconds = 0;
  int64_t cached_prompt_tokens = 0, reasoning_tokens = 0;  // from the backend's usage, where reported
  // Further per-sample measurements (name -> value), aggregated per length bin with their
  // own confidence intervals (results.json "metrics_by_length"); NaN: not applicable.
  std::map<std::string, double> metrics;
};

// A greedy generation up to the first newline (or max_tokens), as an Outcome without its
// score: the prediction and the usage counts and timings.
Outcome greedy_line(LanguageModel& m, const std::vector<int32_t>& prompt, int64_t max_tokens);

struct GridSpec {
  std::vector<int64_t> lengths;
  std::vector<double> depths;
  TaskOptions options;  // tasks whose cells come from data (coding: one cell per problem)
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual std::string version() const = 0;  // bump whenever generate() output changes
  virtual std::string description() const = 0;
  virtual bool supports(PromptFormat) const { return true; }
  // false: the cells ignore --lengths (the task fixes its own prompts; engram_facts).
  virtual bool uses_lengths() const { return true; }
  // Why the task cannot run on this model ("": it can). A suite run leaves it out and records
  // the reason (results.json "skipped_tasks"); naming it in --tasks is an error.
  virtual std::string unavailable(const GenContext& ctx) const {
    (void)ctx;
    return "";
  }
  // Items per cell: the run's --samples, unless the task's data fixes the count
  // (engram_facts: one item per fact of the probe).
  virtual int64_t samples_per_cell(const GenContext& ctx, int64_t run_samples) const {
    (void)ctx;
    return run_samples;
  }
  virtual uint32_t needs(PromptFormat f) const = 0;  // Capability bits
  virtual std::vector<Cell> cells(const GridSpec& g) const = 0;
  virtual Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                        int64_t index) const = 0;
  virtual Outcome evaluate(LanguageModel& m, const Item& item) const = 0;
  // The score a prediction earns (also used for the noise floors).
  virtual double score(const Item& item, const std::string& prediction) const = 0;
  // Task-level results beyond the runner's per-group means (results.json tasks[].summary),
  // from the task's finished samples in plan order; null (the default) adds nothing.
  virtual boost::json::value summarize(const std::vector<const SampleRecord*>& records) const {
    (void)records;
    return nullptr;
  }

 protected:
  // An item's identity (task, version, run seed, cell, index, format) for generate(); its
  // content comes from the generator seeded with item_rng().
  Item new_item(const GenContext& ctx, const Cell& cell, uint64_t run_seed, int64_t index) const;
  static std::mt19937_64 item_rng(const Item& it);
};

struct Suite {
  std::string name, description;
  std::vector<std::shared_ptr<const Task>> tasks;
};

// Whether a run of these tasks of the suite (empty: every task) needs --lengths: true when
// one of them uses lengths (unknown names are left to the run to report).
bool tasks_use_lengths(const std::string& suite, const std::vector<std::string>& tasks);

// Every suite, in listing order.
const std::vector<Suite>& suites();
// The suite called `name`; InputError naming the known suites otherwise.
const Suite& find_suite(const std::string& name);

// The per-item seed: a hash of (task, version, run seed, length, cell label, index).
uint64_t sample_seed(const std::string& task, const std::string& version, uint64_t run_seed,
                     const Cell& cell, int64_t index);

}  // namespace dsv4::evals
