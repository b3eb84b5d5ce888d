// The machine's ceilings, measured in the same run as the kernels they judge
// (shared/docs/targets.md "Ceilings"; engineering.md §4):
//   SGEMM      Eigen float GEMM C = A B, n x n x n (n = 1024): 2 n^3 FLOPs per step; at this
//              size Eigen runs at 83-96 % of the FMA peak on one core, and smaller sizes
//              understate it.
//   streaming  the sum of a 256 MiB float array (far beyond the 32 MiB last-level cache), read
//   read       as four concurrent streams, Eigen-vectorised: bytes per step = the array. One
//              stream reads 10-15 % slower on this machine kind, four ~23-28 GB/s on one core
//              (a hand-unrolled AVX2 loop does no better).
// Both run on the calling thread; the caller sets the Eigen thread count (1 for targets).
#pragma once

#include <cstdint>
#include <memory>

namespace dsv4::bench {

inline constexpr int64_t kSgemmN = 1024;
inline constexpr int64_t kReadMiB = 256;

class SgemmCeiling {
 public:
  explicit SgemmCeiling(int64_t n = kSgemmN);
  ~SgemmCeiling();
  void step();
  double flops() const { return 2.0 * double(n_) * double(n_) * double(n_); }

 private:
  struct Data;
  int64_t n_;
  std::unique_ptr<Data> d_;
};

class ReadCeiling {
 public:
  explicit ReadCeiling(int64_t mib = kReadMiB);
  ~ReadCeiling();
  void step();
  double bytes() const;

 private:
  struct Data;
  std::unique_ptr<Data> d_;
};

}  // namespace dsv4::bench
