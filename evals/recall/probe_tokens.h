// The token vocabulary of a probe checkpoint, read from DIR/probe.json
// (docs/evals.md "probe.json"; ../shared/docs/probe-models.md):
//   {"kind": "dsv4.probe", "version": 1, "task": "recall", "retrieval": "csa|hca|window",
//    "knobs": {...},
//    "tokens": {"filler": [{"id": N, "text": " word"}, ...], "key": [...], "value": [...]}}
// Only kind/version/task/tokens are required; retrieval and knobs are recorded as given.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::evals {

struct ProbeTokens {
  std::string path;
  std::string retrieval;          // as written ("" when absent)
  std::string knobs_json = "{}";  // the "knobs" object serialised ("{}" when absent)
  std::vector<int32_t> filler, keys, values;
};

// Reads and validates probe.json: every id non-negative, the three sets non-empty and
// disjoint, no duplicates; `vocab_size` > 0 also bounds the ids. Throws InputError naming
// the file and the field.
ProbeTokens read_probe_tokens(const std::string& path, int64_t vocab_size = 0);

}  // namespace dsv4::evals
