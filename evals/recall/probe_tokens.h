// The token vocabulary of a probe checkpoint, read from DIR/probe.json
// (docs/evals.md "probe.json"; ../shared/docs/probe-models.md):
//   {"kind": "dsv4.probe", "version": 1, "task": "recall", "retrieval": "csa|hca|window",
//    "knobs": {...},
//    "tokens": {"filler": [{"id": N, "text": " word"}, ...], "key": [...], "value": [...]},
//    "engram_facts": [{"key": [id_a, id_b], "value": id_v}, ...]}   (optional: Engram probes)
// Only kind/version/task/tokens are required; retrieval and knobs are recorded as given.
// engram_facts (model/probe_engram.h): facts stored in the model's Engram table; the prompt
// [id_a, id_b] alone (no context) answers id_v. Keys must be key ids, values value ids, and
// no key pair may appear twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::evals {

// One Engram fact of a probe (token ids).
struct ProbeFactIds {
  int32_t key_a = 0, key_b = 0, value = 0;
};

struct ProbeTokens {
  std::string path;
  std::string retrieval;          // as written ("" when absent)
  std::string knobs_json = "{}";  // the "knobs" object serialised ("{}" when absent)
  std::vector<int32_t> filler, keys, values;
  std::vector<ProbeFactIds> engram_facts;  // empty when the probe has none
};

// Reads and validates probe.json: every id non-negative, the three sets non-empty and
// disjoint, no duplicates; `vocab_size` > 0 also bounds the ids. Throws InputError naming
// the file and the field.
ProbeTokens read_probe_tokens(const std::string& path, int64_t vocab_size = 0);

}  // namespace dsv4::evals
