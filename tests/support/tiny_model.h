// Shared by the whole-model tests (tests/model, tests/mpi): a random v4-tiny checkpoint written
// with `dsv4 init`'s writer and loaded back, random in-vocabulary token ids, and max |x|.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/config.h"

namespace dsv4::test {

// The weights of a v4-tiny checkpoint from `seed`, written to a temporary folder (named with
// `tag`) and loaded back through the real loader; the folder is removed.
// `config` (default v4-tiny) may be the tiny preset with changes (e.g. Engram layers).
inline ModelWeights tiny_checkpoint_weights(uint64_t seed, const std::string& tag,
                                            const ModelConfig& config = config_preset("v4-tiny")) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("dsv4-" + tag + "-" + std::to_string(std::random_device{}()));
  WriteOptions o;
  o.force = true;
  write_random_checkpoint(config, seed, dir.string(), 0, o);
  ModelWeights loaded = load_checkpoint(dir.string());
  fs::remove_all(dir);
  return loaded;
}

// n token ids in [16, 4016): inside v4-tiny's vocabulary, clear of the special ids.
inline std::vector<int32_t> tiny_tokens(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = int32_t(g() % 4000) + 16;
  return v;
}

// v4-tiny with Engram at layers 0 and 2 (window-only and HCA) and small tables, so that a short
// prompt revisits rows: orders 2..3, 4 heads of 16 dims, tables from 61 / 67 rows.
inline ModelConfig engram_tiny_config() {
  ModelConfig c = config_preset("v4-tiny");
  config_set_engram(c, "engram=0,2");
  config_set_engram(c, "engram.vocab_size=61,67");
  config_set_engram(c, "engram.n_head_per_ngram=4");
  config_set_engram(c, "engram.n_embed_per_ngram=64");
  config_validate(c);
  return c;
}

// Rows 0..n-1 (every logit row of an n-token chunk).
inline std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[size_t(i)] = i;
  return r;
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}

}  // namespace dsv4::test
