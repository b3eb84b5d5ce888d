// Seeded randomness that is identical on every compiler: std::mt19937_64 is fully specified
// by the standard, the standard distributions are not, so draws go through uniform_index.
#pragma once

#include <cstdint>
#include <random>

namespace dsv4::evals {

// Uniform index in [0, n), n > 0. Rejection removes the modulo bias: draws at or above the
// largest multiple of n below 2^64 are redrawn.
inline uint64_t uniform_index(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng();
  while (x >= limit);
  return x % n;
}

}  // namespace dsv4::evals
