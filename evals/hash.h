// A small, stable 64-bit hash for data hashes, item hashes and checkpoint fingerprints.
// FNV-1a over bytes, then a final avalanche (splitmix64's finaliser) so that nearby inputs
// give unrelated outputs. Not cryptographic: it identifies generated data and files, it
// does not defend against anyone. Stable across runs, machines and compilers (bytes are fed
// in a fixed little-endian order).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::evals {

class Hasher {
 public:
  Hasher& bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ b[i]) * kPrime;
    return *this;
  }
  Hasher& u64(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    return bytes(b, 8);
  }
  Hasher& i64(int64_t v) { return u64(static_cast<uint64_t>(v)); }
  // Length-prefixed, so ("ab","c") and ("a","bc") differ.
  Hasher& str(std::string_view s) {
    u64(s.size());
    return bytes(s.data(), s.size());
  }
  Hasher& ids(const std::vector<int32_t>& v) {
    u64(v.size());
    for (int32_t x : v) u64(static_cast<uint32_t>(x));
    return *this;
  }
  uint64_t digest() const {
    uint64_t z = h_ + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  static constexpr uint64_t kOffset = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  static constexpr uint64_t kPrime = 0x100000001b3ull;        // FNV-1a 64 prime
  uint64_t h_ = kOffset;
};

// "0123456789abcdef": 16 lowercase hex digits.
std::string hex64(uint64_t v);

}  // namespace dsv4::evals
