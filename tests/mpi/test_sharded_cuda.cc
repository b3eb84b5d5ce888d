// The sharded model on GPU ranks over NCCL (model/backend_factory.h, docs/parallel.md "GPU
// ranks"): the sharded backend with the CUDA backend inside, its collectives on device memory
// over an NcclComm bootstrapped over MPI. Registered at np 1 (the GPU check's one-rank run of the
// model through the NCCL path: layout 1 x 1, every MoE dispatch and combine through NCCL) and
// np 2 (tp 2 x ep 2; needs two devices). Labels mpi and gpu; skips with the reason without
// devices. Against the unsharded reference backend on the tiny preset, exact numerics: the
// distance to the fp64 reference within twice the float reference's plus the rounding of the
// split reductions (the bound of tests/mpi/test_sharded.cc).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>

#include "comm/mpi_comm.h"
#include "comm/nccl_comm.h"
#include "model/backend.h"
#include "model/backend_sharded.h"
#include "model/model.h"
#include "tests/mpi/mpi_main.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

using test::world;

constexpr int64_t kPrompt = 140;  // past the window (128) and an HCA block (128)
constexpr int64_t kDecode = 3;

const ModelWeights& tiny_weights() {
  static const ModelWeights w =
      test::tiny_checkpoint_weights(4321, "sharded-cuda-test-" + std::to_string(world().rank()));
  return w;
}

struct Logits {
  std::vector<float> prefill;
  std::vector<std::vector<float>> decode;
};

Logits run(Model& m) {
  const auto ids = test::tiny_tokens(kPrompt + kDecode, 7);
  Logits r;
  Sequence s = m.new_sequence();
  std::vector<int64_t> rows(static_cast<size_t>(kPrompt));
  for (int64_t i = 0; i < kPrompt; ++i) rows[size_t(i)] = i;
  r.prefill = m.forward(s, ids.data(), kPrompt, rows).logits;
  for (int64_t t = 0; t < kDecode; ++t) r.decode.push_back(m.decode(s, ids[size_t(kPrompt + t)]));
  return r;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  }
  return a.size() == b.size() ? m : INFINITY;
}

// Why this run cannot go on GPUs ("" when it can).
std::string skip_reason() {
  int devices = 0;
  if (world().transport() != "mpi") return "not launched by mpirun (NCCL bootstraps over MPI)";
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) return "no CUDA device";
  if (devices < world().size())
    return std::to_string(world().size()) + " ranks need as many devices; this machine has " + std::to_string(devices);
  return "";
}

TEST(ShardedCuda, NcclRanksGiveTheUnshardedLogits) {
  const std::string why = skip_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const int n = world().size(), device = world().rank();
  const BackendOptions o{Numerics::exact, KvLayout::f32};
  Model f64(make_f64_backend(tiny_weights()));
  Model ref(make_reference_backend(tiny_weights(), o));
  const Logits e = run(f64), r = run(ref);
  auto nccl = std::shared_ptr<comm::Comm>(comm::NcclComm::create(dynamic_cast<comm::MpiComm&>(world()), device));
  ShardedOptions so;
  so.inner = [device](ModelWeights w, BackendOptions bo) {
    cuda_bind_rank(device);
    return make_cuda_backend(std::move(w), bo);
  };
  so.keep = nccl;
  const ParallelLayout layout{n, n};  // np 1: 1 x 1 through NCCL; np 2: tp 2 x ep 2
  Model gpu(make_sharded_backend(tiny_weights(), o, *nccl, layout, so));
  const Logits g = run(gpu);
  const auto& c = tiny_weights().config;
  auto bound = [&](const std::vector<float>& ref32, const std::vector<float>& exact) {
    return 2 * max_diff(ref32, exact) + test::reduction_tol<float>(double(c.dim * c.n_layers), test::max_abs(exact)) * 16;
  };
  EXPECT_LE(max_diff(g.prefill, e.prefill), bound(r.prefill, e.prefill)) << "prefill, " << n << " ranks";
  for (int64_t t = 0; t < kDecode; ++t)
    EXPECT_LE(max_diff(g.decode[size_t(t)], e.decode[size_t(t)]), bound(r.decode[size_t(t)], e.decode[size_t(t)]))
        << "decode " << t;
}

}  // namespace
}  // namespace dsv4
