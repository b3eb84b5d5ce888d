// model/backend_sharded: a tensor- and expert-parallel V4 over MPI ranks gives the unsharded
// reference backend's logits, on the tiny preset (4 heads, 2 output groups, 8 experts; window,
// CSA and HCA layers, one hash-routed layer, MTP), for every layout of the world size:
//   np 2: tp 2 (TP only), ep 2 (EP only), tp 2 x ep 2;   np 4: ep 4, tp 2 x ep 2, tp 2 x ep 4.
// Prefill (every row of a 140-token chunk: window, CSA and HCA blocks past the 128 window), the
// MTP module over it, and decode (token by token after it). Every expert of every rank computes at
// least one token.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "model/backend_device.h"
#include "model/backend_sharded.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "reference/errors.h"
#include "tests/model/host_exec.h"
#include "tests/mpi/mpi_main.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using test::world;

constexpr int64_t kPrompt = 140;  // one prefill chunk: past the window (128) and an HCA block (128)
constexpr int64_t kDecode = 4;    // decode steps after it

// Every rank writes and loads the same checkpoint (same seed, same bytes) in its own folder.
const ModelWeights& tiny_weights() {
  static const ModelWeights w =
      test::tiny_checkpoint_weights(4321, "sharded-test-" + std::to_string(world().rank()));
  return w;
}

std::vector<int32_t> tokens(int64_t n, uint64_t seed) { return test::tiny_tokens(n, seed); }
using test::max_abs;

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

// The sharded run differs from the unsharded one by the order of float additions: the TP
// split of wo_b's reduction (partial sums + the all-reduce), and GEMMs over other row sets
// (an expert sees the tokens of every rank that sends to it). The same class of difference
// as chunked vs whole prefill, bounded the same way (tests/model/test_model.cc logits_tol):
// reduction_tol<float>(D * layers, max|logit|) with the safety factor 16.
double logits_tol(const std::vector<float>& ref) {
  const auto& c = config_preset("v4-tiny");
  return test::reduction_tol<float>(double(c.dim * c.n_layers), max_abs(ref)) * 16;
}

struct Logits {
  std::vector<float> prefill;              // [kPrompt, V]: every row
  std::vector<float> mtp;                  // [kPrompt, V]: MTP module 0 after the prefill
  std::vector<std::vector<float>> decode;  // kDecode x [V]
};

Logits run(Model& m) {
  const auto ids = tokens(kPrompt + kDecode, 7);
  Logits r;
  Sequence s = m.new_sequence();
  std::vector<int64_t> rows(static_cast<size_t>(kPrompt));
  for (int64_t i = 0; i < kPrompt; ++i) rows[size_t(i)] = i;
  r.prefill = m.forward(s, ids.data(), kPrompt, rows).logits;
  r.mtp = m.mtp_forward(s, 0, ids.data() + 1, kPrompt);  // its MoE is sharded too
  for (int64_t t = 0; t < kDecode; ++t) r.decode.push_back(m.decode(s, ids[size_t(kPrompt + t)]));
  return r;
}

const Logits& unsharded(Numerics n) {
  static std::map<Numerics, Logits> runs;
  auto it = runs.find(n);
  if (it == runs.end()) {
    Model m(make_reference_backend(tiny_weights(), {n, KvLayout::f32}));
    it = runs.emplace(n, run(m)).first;
  }
  return it->second;
}

struct Case {
  int np, tp, ep;
};

class Sharded : public testing::TestWithParam<Case> {};

TEST_P(Sharded, LogitsEqualTheUnshardedRunInPrefillAndDecode) {
  const Case k = GetParam();
  if (world().size() != k.np)
    GTEST_SKIP() << "layout for " << k.np << " ranks; this run has " << world().size();
  const Logits& ref = unsharded(Numerics::exact);
  auto b =
      make_sharded_backend(tiny_weights(), {Numerics::exact, KvLayout::f32}, world(), {k.tp, k.ep});
  ShardedBackend* sb = b.get();
  Model m(std::move(b));
  const Logits got = run(m);
  const double tol = logits_tol(ref.prefill);
  EXPECT_TRUE(test::all_close(got.prefill, ref.prefill, tol))
      << "prefill, tp " << k.tp << " ep " << k.ep;
  EXPECT_TRUE(test::all_close(got.mtp, ref.mtp, logits_tol(ref.mtp))) << "MTP";
  double worst = std::max(max_diff(got.prefill, ref.prefill), max_diff(got.mtp, ref.mtp));
  for (int64_t t = 0; t < kDecode; ++t) {
    EXPECT_TRUE(test::all_close(got.decode[size_t(t)], ref.decode[size_t(t)], tol))
        << "decode step " << t;
    worst = std::max(worst, max_diff(got.decode[size_t(t)], ref.decode[size_t(t)]));
  }
  if (world().rank() == 0)
    std::printf(
        "tp %d ep %d: max |sharded - unsharded| = %.3g (tolerance %.3g, max |logit| %.3g)\n", k.tp,
        k.ep, worst, tol, max_abs(ref.prefill));
  // Every expert this rank holds computed at least one (token, expert) pair.
  const auto& counts = sb->expert_tokens();
  ASSERT_EQ(int64_t(counts.size()), config_preset("v4-tiny").n_routed_experts / k.ep);
  for (size_t e = 0; e < counts.size(); ++e)
    EXPECT_GT(counts[e], 0) << "expert " << sb->first_expert() + int64_t(e) << " on rank "
                            << world().rank() << " was never reached";
}

INSTANTIATE_TEST_SUITE_P(Layouts, Sharded,
                         testing::Values(Case{2, 2, 1}, Case{2, 1, 2}, Case{2, 2, 2}, Case{4, 1, 4},
                                         Case{4, 2, 2}, Case{4, 2, 4}),
                         [](const testing::TestParamInfo<Case>& i) {
                           return "np" + std::to_string(i.param.np) + "_tp" +
                                  std::to_string(i.param.tp) + "_ep" + std::to_string(i.param.ep);
                         });

// Engram layers (docs/engram.md) are replicated on every rank: the sharded run with Engram at
// layers 0 and 2 equals the unsharded one (prefill, MTP and decode) to the same tolerance.
TEST(ShardedEngram, ReplicatedEngramLayersGiveTheUnshardedLogits) {
  if (world().size() != 2) GTEST_SKIP() << "runs in the np 2 job (tp 2 x ep 2)";
  const ModelConfig c = test::engram_tiny_config();
  const ModelWeights w = test::tiny_checkpoint_weights(99, "sharded-engram-" + std::to_string(world().rank()), c);
  Model plain(make_reference_backend(w, {Numerics::exact, KvLayout::f32}));
  const Logits ref = run(plain);
  Model m(make_sharded_backend(w, {Numerics::exact, KvLayout::f32}, world(), {2, 2}));
  const Logits got = run(m);
  EXPECT_TRUE(test::all_close(got.prefill, ref.prefill, logits_tol(ref.prefill))) << "prefill";
  EXPECT_TRUE(test::all_close(got.mtp, ref.mtp, logits_tol(ref.mtp))) << "MTP";
  for (int64_t t = 0; t < kDecode; ++t)
    EXPECT_TRUE(test::all_close(got.decode[size_t(t)], ref.decode[size_t(t)], logits_tol(ref.prefill)))
        << "decode step " << t;
}

// The GPU ranks' path (model/backend_factory.h): the sharded backend over a device-style inner
// backend (model/backend_device.h, here over HostExec: host memory standing in for device
// memory), its collectives run on the inner backend's buffers (Backend::device_data) as over
// NCCL; MPI carries them here. The same ops in the same order as the reference inner backend
// with host collectives, so the logits are bitwise equal; and a backend with no device memory
// is refused for buffer collectives.
TEST(ShardedOnBackendBuffers, DeviceStyleInnerBackendGivesTheHostCollectivesLogits) {
  if (world().size() != 2) GTEST_SKIP() << "runs in the np 2 job (tp 2 x ep 2)";
  const BackendOptions o{Numerics::exact, KvLayout::f32};
  Model host(make_sharded_backend(tiny_weights(), o, world(), {2, 2}));
  const Logits ref = run(host);
  ShardedOptions so;
  so.inner = [](ModelWeights w, BackendOptions bo) -> std::unique_ptr<Backend> {
    return std::make_unique<DeviceBackend<test::HostExec>>("host-device", test::HostExec(), std::move(w), bo);
  };
  so.on_backend_buffers = true;
  Model dev(make_sharded_backend(tiny_weights(), o, world(), {2, 2}, so));
  EXPECT_EQ(dev.backend().name(), "host-device-sharded(tp=2,ep=2)");
  const Logits got = run(dev);
  EXPECT_EQ(max_diff(got.prefill, ref.prefill), 0.0) << "prefill";
  EXPECT_EQ(max_diff(got.mtp, ref.mtp), 0.0) << "MTP";
  for (int64_t t = 0; t < kDecode; ++t) EXPECT_EQ(max_diff(got.decode[size_t(t)], ref.decode[size_t(t)]), 0.0) << t;
  ShardedOptions on_host;
  on_host.on_backend_buffers = true;  // the reference backend keeps its buffers on the host
  try {
    make_sharded_backend(tiny_weights(), o, world(), {2, 2}, on_host);
    ADD_FAILURE() << "buffer collectives over a host backend were accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no device memory"), std::string::npos) << e.what();
  }
}

TEST(ShardedOfficial, QuantisedNumericsAgreeToQuantisationNoise) {
  // Under the FP8/FP4 simulation a reordered sum can move a value across an FP8 rounding step
  // (6 %), so, as for chunking (tests/model/test_model.cc), the logits agree to a few percent
  // of their scale and the top token does not change.
  if (world().size() != 2) GTEST_SKIP() << "runs in the np 2 job (tp 2 x ep 2), to keep the np 4 job short";
  const int tp = 2, ep = 2;
  const Logits& ref = unsharded(Numerics::official);
  Model m(
      make_sharded_backend(tiny_weights(), {Numerics::official, KvLayout::f32}, world(), {tp, ep}));
  const Logits got = run(m);
  EXPECT_TRUE(test::all_close(got.prefill, ref.prefill, 0.05 * max_abs(ref.prefill)));
  for (int64_t t = 0; t < kDecode; ++t) {
    const auto &a = got.decode[size_t(t)], &b = ref.decode[size_t(t)];
    EXPECT_EQ(std::max_element(a.begin(), a.end()) - a.begin(),
              std::max_element(b.begin(), b.end()) - b.begin())
        << "decode step " << t;
  }
}

TEST(ShardedLayout, BadLayoutsNameTheConstraint) {
  const ModelConfig c = config_preset("v4-tiny");
  auto message = [&](int n, int tp, int ep) {
    try {
      check_layout(c, n, {tp, ep});
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message(4, 2, 4), "accepted");
  EXPECT_NE(message(4, 4, 1).find("output groups"), std::string::npos)
      << message(4, 4, 1);  // 2 groups
  EXPECT_NE(message(2, 1, 4).find("divide the number of ranks"), std::string::npos);
  EXPECT_NE(message(6, 1, 3).find("routed experts"), std::string::npos);
  EXPECT_NE(message(2, 0, 1).find(">= 1"), std::string::npos);
}

}  // namespace
}  // namespace dsv4
