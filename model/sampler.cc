#include "model/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "reference/errors.h"

namespace dsv4 {

int32_t Sampler::sample(const float* logits, int64_t vocab) {
  require(vocab > 0, "sample: empty vocabulary");
  if (p_.temperature <= 0) {
    int32_t best = 0;
    for (int64_t v = 1; v < vocab; ++v)
      if (logits[v] > logits[best]) best = int32_t(v);
    return best;
  }
  // Softmax at temperature T, sorted by probability (ties to the lower id), cut at top_p.
  float mx = logits[0];
  for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, logits[v]);
  scratch_.resize(size_t(vocab));
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const float pv = float(std::exp(double(logits[v] - mx) / p_.temperature));
    scratch_[size_t(v)] = {pv, int32_t(v)};
    sum += pv;
  }
  std::sort(scratch_.begin(), scratch_.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  const double keep = std::clamp(p_.top_p, 0.0, 1.0) * sum;
  size_t n = 0;
  double acc = 0;
  while (n < scratch_.size() && (n == 0 || acc < keep)) acc += scratch_[n++].first;
  std::uniform_real_distribution<double> u(0.0, acc);
  double r = u(rng_);
  for (size_t i = 0; i < n; ++i) {
    r -= scratch_[i].first;
    if (r < 0) return scratch_[i].second;
  }
  return scratch_[n - 1].second;
}

Generation generate(Model& m, const std::vector<int32_t>& prompt, const SamplingParams& p,
                    const std::function<bool(int32_t)>& on_token) {
  using Clock = std::chrono::steady_clock;
  require(!prompt.empty(), "generate: empty prompt");
  require(p.max_tokens >= 0, "generate: max_tokens must be >= 0");
  Generation g;
  Sampler sampler(p);
  Sequence s = m.new_sequence();
  auto t0 = Clock::now();
  std::vector<float> logits = m.prefill(s, prompt, p.prefill_chunk);
  g.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t0 = Clock::now();
  const int64_t V = m.config().vocab_size;
  for (int64_t i = 0; i < p.max_tokens; ++i) {
    const int32_t tok = sampler.sample(logits.data(), V);
    g.tokens.push_back(tok);
    const bool stop = std::find(p.stop_ids.begin(), p.stop_ids.end(), tok) != p.stop_ids.end();
    if (on_token && !on_token(tok)) break;
    if (stop) {
      g.stopped = true;
      break;
    }
    if (i + 1 < p.max_tokens) logits = m.decode(s, tok);
  }
  g.decode_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return g;
}

}  // namespace dsv4
