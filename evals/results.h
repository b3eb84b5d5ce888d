// Result files of one eval run (docs/evals.md "Results"):
//   OUT/manifest.json   the run's arguments, written when the run starts; a rerun with the
//                       same arguments resumes, different ones are refused
//   OUT/samples.jsonl   append-only, one line per finished sample (SampleRecord)
//   OUT/results.json    the aggregate (runner.cc), rewritten atomically at the end
// Every whole-file write goes through write_file_atomic (temp file + rename).
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "evals/registry.h"

namespace dsv4::evals {

struct SampleRecord {
  std::string task, version;
  int64_t length = 0;
  std::string cell;            // Cell::label()
  double depth = -1;           // -1 for geometry cells
  std::string geometry_class;  // "" for depth cells
  Geometry geometry;
  uint64_t seed = 0;  // the run seed
  int64_t index = 0;
  uint64_t item_hash = 0;
  std::string prediction, expected;
  double score = 0, chance = 0, copy_random = 0, copy_first = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  double seconds = 0, prefill_seconds = 0;
  int64_t cached_prompt_tokens = 0;  // of prompt_tokens, served from a server's prompt cache
  int64_t reasoning_tokens = 0;      // of completion_tokens, spent on reasoning (where reported)
  std::map<std::string, double> metrics;  // Outcome::metrics; NaN is written as null

  // "task|version|length|cell|index": identifies the sample within a run.
  std::string key() const;
};
std::string sample_key(const std::string& task, const std::string& version, int64_t length,
                       const std::string& cell, int64_t index);

boost::json::object to_json(const SampleRecord& r);
SampleRecord sample_from_json(const boost::json::value& v);  // throws InputError on a bad record

// Reads OUT/samples.jsonl for a resume. A last line without its newline, or that does not
// parse, is a write cut short by a kill: it is dropped and the file truncated to the last
// complete line. A bad line before the last is an InputError (the file is not ours, or it
// was edited). A missing file gives no records.
std::vector<SampleRecord> read_samples_for_resume(const std::string& path);

// Appends one line (and flushes) to samples.jsonl.
class SampleWriter {
 public:
  explicit SampleWriter(const std::string& path);
  ~SampleWriter();
  void append(const SampleRecord& r);

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

// Writes `text` to `path` through path.tmp-PID and a rename.
void write_file_atomic(const std::string& path, const std::string& text);
// Pretty-printed JSON (2-space indent), newline-terminated.
std::string pretty_json(const boost::json::value& v);
// The same on one line (samples.jsonl).
std::string compact_json(const boost::json::value& v);
// `s` with every byte sequence that is not well-formed UTF-8 replaced by U+FFFD, so that
// model output (which may end mid-character) is always valid JSON text.
std::string valid_utf8(std::string_view s);

// The git revision of the source tree: `git rev-parse HEAD` in the source directory at run
// time when that works ("runtime", with a dirty flag), else the revision recorded when CMake
// configured the build ("configure"), else "unknown".
boost::json::object git_info();
// CPU model, logical cores, physical memory (Linux /proc; "unknown"/0 elsewhere).
boost::json::object machine_info();

// A cheap fingerprint of a checkpoint directory: for every regular file named *.safetensors
// or *.json in DIR (sorted by name): its name, its size, its first and its last MiB, hashed
// together (evals/hash.h). Reading 2 MiB per file keeps it O(files), not O(bytes): it
// detects a different or rewritten checkpoint, not a single flipped byte in the middle.
struct Fingerprint {
  std::string hash;
  std::string method;
};
Fingerprint checkpoint_fingerprint(const std::string& dir);

}  // namespace dsv4::evals
