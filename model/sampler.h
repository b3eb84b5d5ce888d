// Token sampling and generation. Greedy (temperature 0: argmax, ties to the lower id),
// or temperature + top-p (nucleus) sampling from a seeded generator: the same seed, prompt
// and model give the same tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "model/model.h"

namespace dsv4 {

struct SamplingParams {
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;        // keep the smallest set of tokens whose probability reaches top_p
  uint64_t seed = 0;
  int64_t max_tokens = 32;
  std::vector<int32_t> stop_ids;  // generation stops after emitting one of these
  int64_t prefill_chunk = 512;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  int32_t sample(const float* logits, int64_t vocab);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

struct Generation {
  std::vector<int32_t> tokens;   // generated (stop token included when hit)
  bool stopped = false;          // a stop token ended it
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prefills `prompt` into a fresh sequence and samples up to max_tokens tokens. on_token is
// called after each (return false to stop early).
Generation generate(Model& m, const std::vector<int32_t>& prompt, const SamplingParams& p,
                    const std::function<bool(int32_t)>& on_token = {});

}  // namespace dsv4
