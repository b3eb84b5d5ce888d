// comm/: the MPI transport's collectives under mpirun -np 2 and -np 4
// (tests/mpi/mpi_tests.cmake). Values are small integers, exact in float, so every expected
// result is exact; the one inexact sum checks that all ranks get the same bits.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>

#include "comm/comm.h"
#include "reference/errors.h"
#include "tests/mpi/mpi_main.h"

namespace dsv4 {
namespace {

using test::world;

TEST(MpiCollectives, RunsUnderMpiWithMoreThanOneRank) {
  // Run directly (a bundle of test executables, scripts/gpu-check) the suite checks the
  // one-rank transport only; ctest launches it with mpirun -np 2 and 4.
  if (world().size() == 1) GTEST_SKIP() << "not launched by mpirun: one local rank";
  EXPECT_EQ(world().transport(), "mpi");
}

TEST(MpiCollectives, AllReduceSumsEveryRank) {
  auto& c = world();
  const int N = c.size(), r = c.rank();
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(1000)}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(r * 1000 + i);
    c.all_reduce_sum(v.data(), n);
    for (int64_t i = 0; i < n; ++i)  // sum_r (1000 r + i) = 1000 N(N-1)/2 + N i
      ASSERT_EQ(v[size_t(i)], float(1000 * N * (N - 1) / 2 + N * i)) << "n " << n << " i " << i;
  }
}

TEST(MpiCollectives, AllReduceGivesTheSameBitsOnEveryRank) {
  // Inexact sums (random floats of mixed magnitude): rounding may depend on the order, but
  // every rank must hold the same result, or replicated state would drift apart.
  auto& c = world();
  std::mt19937 g(uint32_t(1234 + c.rank()));
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  const int64_t n = 4096;
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(g) * std::ldexp(1.f, int(g() % 40) - 20);
  c.all_reduce_sum(v.data(), n);
  std::vector<float> all(size_t(n * c.size()));
  c.all_gather(v.data(), n, all.data());
  for (int q = 0; q < c.size(); ++q)
    EXPECT_EQ(std::memcmp(all.data() + q * n, v.data(), size_t(n) * sizeof(float)), 0)
        << "rank " << q << " differs";
}

TEST(MpiCollectives, AllGatherConcatenatesInRankOrder) {
  auto& c = world();
  const int64_t n = 5;
  std::vector<float> in(static_cast<size_t>(n)), out(size_t(n * c.size()), -1.f);
  for (int64_t i = 0; i < n; ++i) in[size_t(i)] = float(c.rank() * 100 + i);
  c.all_gather(in.data(), n, out.data());
  for (int q = 0; q < c.size(); ++q)
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[size_t(q * n + i)], float(q * 100 + i));
}

// Rank r sends count(r, q) values to rank q: uneven, with zeros (every third pair, and rank 0
// sends nothing at all in the second pattern).
int64_t count(int pattern, int r, int q) {
  if (pattern == 0) return (r + 2 * q) % 3;  // 0, 1 or 2
  return r == 0 ? 0 : 7 * q + r;             // rank 0 silent; the rest uneven
}
float value(int r, int q, int64_t j) {
  return float(r * 10000 + q * 100 + j);
}

TEST(MpiCollectives, AllToAllVMovesUnevenAndZeroCounts) {
  auto& c = world();
  const int N = c.size(), r = c.rank();
  for (int pattern : {0, 1}) {
    std::vector<int64_t> send_counts(static_cast<size_t>(N));
    std::vector<float> send;
    for (int q = 0; q < N; ++q) {
      send_counts[size_t(q)] = count(pattern, r, q);
      for (int64_t j = 0; j < send_counts[size_t(q)]; ++j) send.push_back(value(r, q, j));
    }
    std::vector<float> recv{-1.f};  // resized by the call
    const auto recv_counts = comm::all_to_all_v(c, send, send_counts, recv);
    ASSERT_EQ(int64_t(recv_counts.size()), N);
    size_t at = 0;
    for (int q = 0; q < N; ++q) {
      ASSERT_EQ(recv_counts[size_t(q)], count(pattern, q, r))
          << "pattern " << pattern << " from rank " << q;
      for (int64_t j = 0; j < recv_counts[size_t(q)]; ++j, ++at)
        ASSERT_EQ(recv[at], value(q, r, j))
            << "pattern " << pattern << " from rank " << q << " element " << j;
    }
    EXPECT_EQ(at, recv.size());
  }
}

TEST(MpiCollectives, AllToAllVRejectsBadCounts) {
  auto& c = world();
  std::vector<float> recv;
  // Checked before any message moves, on every rank alike: no rank is left waiting.
  EXPECT_THROW(comm::all_to_all_v(c, {1.f}, std::vector<int64_t>(size_t(c.size() + 1), 0), recv),
               InputError);
  std::vector<int64_t> neg(size_t(c.size()), 0);
  neg[0] = -1;
  EXPECT_THROW(comm::all_to_all_v(c, {}, neg, recv), InputError);
  std::vector<int64_t> wrong_sum(size_t(c.size()),
                                 2);  // counts sum to 2 size(); the buffer holds 1
  EXPECT_THROW(comm::all_to_all_v(c, {1.f}, wrong_sum, recv), InputError);
}

TEST(MpiCollectives, BroadcastFromTheLastRank) {
  auto& c = world();
  const int root = c.size() - 1;
  std::vector<float> v(3, float(c.rank()));
  if (c.rank() == root) v = {1.5f, -2.f, 3.25f};
  c.broadcast(v.data(), 3, root);
  EXPECT_EQ(v, (std::vector<float>{1.5f, -2.f, 3.25f}));
  EXPECT_THROW(c.broadcast(v.data(), 3, c.size()), InputError);
}

TEST(MpiCollectives, SplitMakesGroupsOrderedByKey) {
  // color = rank % 2, key = -rank: each group holds the ranks of one parity, in reverse order.
  auto& c = world();
  auto g = c.split(c.rank() % 2, -c.rank());
  const int members = (c.size() - c.rank() % 2 + 1) / 2;
  ASSERT_EQ(g->size(), members);
  EXPECT_EQ(g->rank(), members - 1 - c.rank() / 2);
  float v = float(c.rank());
  g->all_reduce_sum(&v, 1);
  float expect = 0;
  for (int q = c.rank() % 2; q < c.size(); q += 2) expect += float(q);
  EXPECT_EQ(v, expect);
  g->barrier();
}

}  // namespace
}  // namespace dsv4
