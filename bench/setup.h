// Shared set-up of the timing harnesses (dsv4 run, cli/run.cc, and the Google Benchmark
// cases of bench/cases.h): random inputs at real shapes, random V4 attention-layer weights,
// and a fabricated layer state (KV cache) at a long context.
//
// Two generators:
//   normal   std::normal_distribution over std::mt19937_64 (the stream `dsv4 run` has
//            always used; ~20 M values/s)
//   uniform  a counter-based hash (splitmix64), uniform with the requested standard
//            deviation; ~0.5-1 G values/s, for the gigabytes of weights and caches of the
//            1M-context benchmarks. Benchmarks time the ops, not the numbers; both are
//            random and never zero.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "reference/attention_layer.h"

namespace dsv4::bench {

enum class Fill { normal, uniform };

// n values with standard deviation sigma and mean 0.
std::vector<float> randn(size_t n, uint64_t seed, float sigma = 1.0f);  // Fill::normal
std::vector<float> rand_uniform(size_t n, uint64_t seed, float sigma = 1.0f);
std::vector<float> random_vector(size_t n, uint64_t seed, float sigma, Fill fill);
void fill_uniform(float* p, size_t n, uint64_t seed, float sigma);

// k distinct values of [0, n), in random order (k <= n).
std::vector<int32_t> distinct_indices(int64_t k, int64_t n, uint64_t seed);

// The weights of one V4 attention layer (§2, §7 shapes), owned. Matrices have standard
// deviation `matrix_sigma`; norm weights and the sink 1, compressor position biases 0.1.
// Seeds seed .. seed + 17 in the order of the members below (cli/run.cc's historical
// stream with seed 50 and Fill::normal).
struct LayerWeightData {
  AttentionLayerShape shape;
  std::vector<float> wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  std::vector<float> cw, cg, ca, cn;        // main compressor (ratio > 0)
  std::vector<float> iw, ig, ia, in;        // indexer compressor (CSA)
  std::vector<float> iqb, iwp;              // indexer query projections (CSA)
  AttentionLayerWeights<float> weights() const;
  // Elements of every matrix one decode token passes through (norms, sink and position
  // biases excluded): 2 x this is the layer's linear FLOPs per token.
  double matrix_elements() const;
};
LayerWeightData random_layer_weights(const AttentionLayerShape& s, uint64_t seed, Fill fill,
                                     float matrix_sigma = 0.02f);
// Bytes the weights of a layer of this shape occupy in float (for memory estimates).
double layer_weight_bytes(const AttentionLayerShape& s);

// A fabricated layer state at position L (a multiple of the ratio: no partial block):
// a full window ring, floor(L/m) random compressed entries and, for CSA, as many random
// indexer keys, as if L tokens had been prefilled. Seeds seed, seed + 1, seed + 2 (window,
// entries, keys); entries have sigma 0.05, keys 0.1.
AttentionLayerState<float> synthetic_layer_state(const AttentionLayerShape& s, int64_t L,
                                                 uint64_t seed, Fill fill);

// Decode benchmarks of ops whose working set fits in the last-level cache would time the
// cache, not memory: a real decode step reads each layer's weights from DRAM. `copies`
// instances are stepped round-robin so that together they exceed kColdBytes.
inline constexpr double kColdBytes = 128.0 * 1024 * 1024;  // 4x the 32 MiB L3 here
int64_t cold_copies(double working_set_bytes);

// One timed iteration of a benchmark; it owns its inputs (they are freed with it).
using Step = std::function<void()>;

// Steps instances made by `make(i)`, i = 0 .. copies-1, round-robin.
Step round_robin(int64_t copies, const std::function<Step(int64_t)>& make);

}  // namespace dsv4::bench
