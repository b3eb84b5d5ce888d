// model/plan: per-rank memory of sharded layouts. The parts add back up to the whole stored
// checkpoint (checkpoint_size), each sharded part shrinks by exactly its degree, the KV of a
// replica follows ceil(batch / dp), invalid layouts are refused naming the constraint, the
// suggestion is the smallest tp that fits, and sizes parse in both unit systems.
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/plan.h"
#include "reference/errors.h"

namespace dsv4 {
namespace {

constexpr int64_t kGiB = int64_t(1) << 30;

PlanRequest request(int64_t gpus, int64_t batch = 1) {
  PlanRequest r;
  r.gpus = gpus;
  r.gpu_bytes = 141 * kGiB;
  r.context = 1 << 20;
  r.batch = batch;
  return r;
}

TEST(Plan, OneRankHoldsTheWholeStoredCheckpoint) {
  for (const char* p : {"v4-flash", "v4-pro", "v4-tiny"}) {
    const ModelConfig c = config_preset(p);
    const RankMemory m = plan_layout(c, request(1), 1, 1);
    EXPECT_EQ(m.weights, checkpoint_size(c).stored_bytes) << p;
    EXPECT_EQ(m.kv, kv_bytes_analytic(c, 1 << 20, KvLayout::fp8).total()) << p;
  }
}

TEST(Plan, ShardedPartsAddBackUp) {
  const ModelConfig c = config_preset("v4-flash");
  const RankMemory one = plan_layout(c, request(8), 1, 1);
  const RankMemory m = plan_layout(c, request(8), 4, 8);
  EXPECT_EQ(m.weights_replicated, one.weights_replicated);
  EXPECT_EQ(m.weights_ep * 8, one.weights_ep);  // 256 experts of equal size, 32 per rank
  // tp parts are ceil(bytes / tp) per tensor: at most tp - 1 bytes of rounding each
  const int64_t tensors = int64_t(expected_tensors(c).size());
  EXPECT_GE(m.weights_tp * 4, one.weights_tp);
  EXPECT_LE(m.weights_tp * 4, one.weights_tp + 3 * tensors);
  EXPECT_EQ(m.dp, 2);
}

TEST(Plan, KvFollowsTheSequencesOfAReplica) {
  const ModelConfig c = config_preset("v4-pro");
  const int64_t one = kv_bytes_analytic(c, 1 << 20, KvLayout::fp8).total();
  EXPECT_EQ(plan_layout(c, request(16, 3), 8, 16).kv, 2 * one);   // dp 2: ceil(3 / 2)
  EXPECT_EQ(plan_layout(c, request(16, 3), 16, 16).kv, 3 * one);  // dp 1
  EXPECT_EQ(plan_layout(c, request(16, 3), 1, 16).kv, one);       // dp 16
}

TEST(Plan, InvalidLayoutsAreRefusedNamingTheConstraint) {
  const ModelConfig c = config_preset("v4-flash");
  auto message = [&](int64_t gpus, int64_t tp, int64_t ep) {
    try {
      plan_layout(c, request(gpus), tp, ep);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(8, 3, 8).find("tp must divide the number of GPUs"), std::string::npos);
  EXPECT_NE(message(6, 6, 1).find("query heads"), std::string::npos);  // 64 heads
  EXPECT_NE(message(6, 1, 6).find("routed experts"), std::string::npos);  // 256 experts
  EXPECT_THROW(plan_layout(config_preset("v3.2"), request(8), 1, 8), InputError);
}

TEST(Plan, SuggestionIsTheSmallestTpThatFits) {
  const auto ls = plan_layouts(config_preset("v4-pro"), request(8));
  ASSERT_FALSE(ls.empty());
  EXPECT_TRUE(ls.front().fits);
  for (const RankMemory& m : ls)
    if (m.fits) {
      EXPECT_GE(m.tp, ls.front().tp);
    }
  // V4-Pro's experts (FP4) do not fit 8 GPUs unless split 8 ways
  for (const RankMemory& m : ls) EXPECT_EQ(m.fits, m.ep == 8) << m.tp << "x" << m.ep;
  PlanRequest tiny = request(8);
  tiny.gpu_bytes = kGiB;
  EXPECT_FALSE(plan_layouts(config_preset("v4-pro"), tiny).front().fits);
}

TEST(Plan, ParsesSizes) {
  EXPECT_EQ(parse_bytes("141GiB"), 141 * kGiB);
  EXPECT_EQ(parse_bytes("141G"), 141 * kGiB);
  EXPECT_EQ(parse_bytes("80GB"), int64_t(80e9));
  EXPECT_EQ(parse_bytes("1.5TiB"), 1536 * kGiB);
  EXPECT_EQ(parse_bytes("4096"), 4096);
  for (const char* bad : {"", "12XB", "-1GiB", "GiB", "0"}) EXPECT_THROW(parse_bytes(bad), InputError) << bad;
}

}  // namespace
}  // namespace dsv4
