// comm/: the one-rank transport (what every unsharded run uses) and the count checks.
#include <gtest/gtest.h>

#include "comm/comm.h"
#include "reference/errors.h"

namespace dsv4 {
namespace {

TEST(LocalComm, CollectivesOfOneRankCopy) {
  comm::LocalComm c;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.size(), 1);
  std::vector<float> v{1.f, 2.f};
  c.all_reduce_sum(v.data(), 2);
  EXPECT_EQ(v, (std::vector<float>{1.f, 2.f}));
  std::vector<float> out(2);
  c.all_gather(v.data(), 2, out.data());
  EXPECT_EQ(out, v);
  std::vector<float> recv;
  EXPECT_EQ(comm::all_to_all_v(c, v, {2}, recv), (std::vector<int64_t>{2}));
  EXPECT_EQ(recv, v);
  EXPECT_EQ(comm::all_to_all_v(c, {}, {0}, recv), (std::vector<int64_t>{0}));
  EXPECT_TRUE(recv.empty());
  c.broadcast(v.data(), 2, 0);
  EXPECT_THROW(c.broadcast(v.data(), 2, 1), InputError);
  EXPECT_EQ(c.split(3, 0)->size(), 1);
}

TEST(LocalComm, BadCountsNameTheProblem) {
  comm::LocalComm c;
  std::vector<float> recv;
  try {
    comm::all_to_all_v(c, {1.f, 2.f}, {1}, recv);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("counts sum to 1, the buffer holds 2"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(comm::all_to_all_v(c, {}, {0, 0}, recv), InputError);
  EXPECT_THROW(comm::all_to_all_v(c, {}, {-1}, recv), InputError);
}

TEST(LocalComm, WorldIsLocalWithoutMpirun) {
  // ctest does not run this binary under mpirun (and the variables are unset here).
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE"))
    GTEST_SKIP() << "launched by an MPI launcher";
  EXPECT_EQ(comm::init_world()->transport(), "local");
}

TEST(LocalComm, AbortEndsTheProcessWithTheMessage) {
  EXPECT_EXIT(comm::LocalComm().abort("cannot read the checkpoint", 3), testing::ExitedWithCode(3),
              "rank 0 of 1: cannot read the checkpoint");
}

}  // namespace
}  // namespace dsv4
