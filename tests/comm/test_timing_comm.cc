// comm/timing_comm: every collective passes through unchanged and is counted (calls, elements
// this rank sent, seconds), communicators from split() add to the same counters, reset()
// clears them.
#include <gtest/gtest.h>

#include <vector>

#include "comm/timing_comm.h"

namespace dsv4::comm {
namespace {

TEST(TimingComm, CountsEveryCollectiveAndPassesTheDataThrough) {
  TimingComm c(std::make_unique<LocalComm>());
  EXPECT_EQ(c.size(), 1);
  EXPECT_EQ(c.transport(), "local");
  std::vector<float> x = {1, 2, 3}, y(3);
  c.all_reduce_sum(x.data(), 3);
  c.all_gather(x.data(), 3, y.data());
  EXPECT_EQ(y, x) << "one rank: all_gather copies";
  const auto recv = c.exchange_counts({3});
  ASSERT_EQ(recv, std::vector<int64_t>{3});
  std::vector<float> z(3);
  c.all_to_all_v(x.data(), {3}, z.data(), recv);
  EXPECT_EQ(z, x);
  c.broadcast(x.data(), 3, 0);
  c.barrier();
  const CommStats& s = c.stats();
  EXPECT_EQ(s.ops.at("all_reduce_sum").calls, 1);
  EXPECT_EQ(s.ops.at("all_reduce_sum").elements, 3);
  EXPECT_EQ(s.ops.at("all_gather").elements, 3);
  EXPECT_EQ(s.ops.at("all_to_all_v").elements, 3);
  EXPECT_EQ(s.ops.at("exchange_counts").elements, 1);
  EXPECT_EQ(s.ops.at("broadcast").elements, 3) << "the root sends";
  EXPECT_EQ(s.ops.at("barrier").calls, 1);
  EXPECT_EQ(s.calls(), 6);
  EXPECT_GE(s.seconds(), 0.0);
}

TEST(TimingComm, SplitCommunicatorsShareTheCountersAndResetClears) {
  TimingComm c(std::make_unique<LocalComm>());
  auto sub = c.split(0, 0);
  std::vector<float> x(8, 1.0f);
  sub->all_reduce_sum(x.data(), 8);
  auto subsub = sub->split(0, 0);
  subsub->all_reduce_sum(x.data(), 8);
  EXPECT_EQ(c.stats().ops.at("all_reduce_sum").calls, 2);
  EXPECT_EQ(c.stats().ops.at("all_reduce_sum").elements, 16);
  c.reset();
  EXPECT_EQ(c.stats().calls(), 0);
  sub->barrier();
  EXPECT_EQ(c.stats().calls(), 1) << "a split communicator still counts after reset";
}

}  // namespace
}  // namespace dsv4::comm
