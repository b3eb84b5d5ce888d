// One eval run: plan the samples, resume what OUT already holds, run the rest through the
// model, write samples.jsonl as it goes and results.json at the end (docs/evals.md "Runs").
//
// Resume: OUT/manifest.json holds the run's arguments (canonical JSON). A rerun with the
// same arguments reads samples.jsonl, regenerates every planned item (checking that its
// hash matches the recorded one), skips the finished ones and ends with the same
// results.json metrics as an uninterrupted run. Different arguments: InputError, unless
// `force` (which deletes manifest.json, samples.jsonl and results.json first) or `fresh`
// (--new: which moves a non-empty OUT aside to OUT.old-<UTC timestamp> and starts over in
// an empty OUT; nothing is deleted).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "evals/model_api.h"
#include "evals/registry.h"
#include "evals/stats.h"

namespace dsv4::evals {

struct ProbeTokens;

struct RunConfig {
  std::string suite = "recall";
  std::vector<std::string> tasks;  // empty: every task of the suite
  std::vector<int64_t> lengths;
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  int64_t samples = 5;  // per cell
  uint64_t seed = 0;
  std::string out;
  PromptFormat format = PromptFormat::natural;
  TaskOptions options;
  double threshold = kDefaultEffectiveThreshold;
  int resamples = kDefaultResamples;
  bool force = false;
  bool fresh = false;  // --new: move an existing OUT aside (move_run_aside) and start over
  // Identity of the model, recorded and compared on resume.
  std::string model_dir;
  std::string checkpoint_hash, checkpoint_hash_method;
  // The numerics the model runs with and why (evals/numerics.h); "" for non-engine models.
  std::string numerics, numerics_source;
  // The engine's KV cache layout (f32 | bf16 | fp8); "" for non-engine models.
  std::string kv_layout;
  // The http backend (evals/http_backend.h), "" otherwise: the server's base URL (results.json
  // only: a run may resume against the same model at another address) and the server's model
  // name (results.json and the run's arguments: a resume against another model is refused).
  std::string endpoint, model_name;
  // Data parallelism (dsv4 eval --dp R under mpirun; docs/parallel.md): a shard run executes
  // only the planned samples i with i % shards == shard and writes them to its own OUT (its
  // manifest records "shard": "r/R"); it writes no results.json. merge_shards() assembles the
  // shards into the whole run. shards == 1: the whole run.
  int64_t shard = 0, shards = 1;
  // Testing aid: stop (as if killed) after this many newly finished samples; < 0: never.
  int64_t stop_after = -1;
  enum class Progress { automatic, bar, lines, none } progress = Progress::automatic;
};

struct RunSummary {
  int64_t planned = 0, resumed = 0, ran = 0;
  bool complete = false;        // every planned sample finished (results.json written)
  boost::json::object results;  // what results.json holds (when complete)
};

// Runs (or resumes) the eval. `probe` is required for format probe. Throws InputError on
// bad arguments (exit 2 at the CLI) before any model call.
RunSummary run_eval(const RunConfig& cfg, LanguageModel& model, const ProbeTokens* probe);

// Several runs of the same plan (suite, tasks, lengths, depths, samples, seed, generator
// options), one model each, each with its own OUT, interleaved: sample i goes to every model
// before sample i + 1 to any (`dsv4 eval --endpoint A --endpoint B`: a comparison fair in
// time). Each run resumes on its own. InputError when the plans differ or two runs share an OUT.
std::vector<RunSummary> run_evals(const std::vector<RunConfig>& cfgs, const std::vector<LanguageModel*>& models,
                                  const ProbeTokens* probe);

// The whole run of `cfg` (shards == 1) from data-parallel shard runs: checks that every
// directory of `shard_outs` holds shard r of R = shard_outs.size() of this same run, copies
// their finished samples into cfg.out/samples.jsonl (resuming what cfg.out already holds) and
// finishes like run_eval. A sample no shard finished is run on `model` (the caller's replica).
// cfg.out may contain the shard directories (named dp-<r>).
// `shard_seconds`: wall time the shard runs took (added to results.json's wall time).
RunSummary merge_shards(const RunConfig& cfg, LanguageModel& model, const ProbeTokens* probe,
                        const std::vector<std::string>& shard_outs, double shard_seconds = 0.0);
// The directory of shard r inside OUT: OUT/dp-<r>.
std::string shard_dir(const std::string& out, int64_t r);

// Renames the directory `out` to `out`.old-YYYYmmddTHHMMSSZ (UTC now; -2, -3, ... appended
// when that name is taken) and returns the new path. InputError when the rename fails.
std::string move_run_aside(const std::string& out);

// "4k" -> 4096, "1m" -> 1048576, "512" -> 512 (k = 1024); InputError otherwise.
int64_t parse_length(const std::string& s);
// "4k,16k" -> {4096, 16384}; rejects empty items, duplicates and non-positive values.
std::vector<int64_t> parse_lengths(const std::string& s);
// "0,0.5,1" -> depths in [0, 1].
std::vector<double> parse_depths(const std::string& s);

}  // namespace dsv4::evals
