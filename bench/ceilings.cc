#include "bench/ceilings.h"

#include <Eigen/Dense>
#include <vector>

namespace dsv4::bench {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct SgemmCeiling::Data {
  Mat a, b, r;
};

SgemmCeiling::SgemmCeiling(int64_t n) : n_(n), d_(std::make_unique<Data>()) {
  d_->a = Mat::Random(n, n);
  d_->b = Mat::Random(n, n);
  d_->r.resize(n, n);
}
SgemmCeiling::~SgemmCeiling() = default;
void SgemmCeiling::step() { d_->r.noalias() = d_->a * d_->b; }

struct ReadCeiling::Data {
  std::vector<float> v;
  volatile float sink = 0;
};

ReadCeiling::ReadCeiling(int64_t mib) : d_(std::make_unique<Data>()) {
  d_->v.assign(size_t(mib) << 18, 1.0f);  // mib * 2^20 bytes / 4
}
ReadCeiling::~ReadCeiling() = default;
// Four concurrent streams (the quarters of the array, summed in lockstep): the access pattern
// of a GEMV over several weight rows. One stream reads 10-15 % slower here.
void ReadCeiling::step() {
  const Eigen::Index q = Eigen::Index(d_->v.size() / 4);
  const Eigen::Map<const Eigen::VectorXf> a(d_->v.data(), 4 * q);
  d_->sink = ((a.segment(0, q) + a.segment(q, q)) + (a.segment(2 * q, q) + a.segment(3 * q, q))).sum();
}
double ReadCeiling::bytes() const { return double(d_->v.size()) * sizeof(float); }

}  // namespace dsv4::bench
