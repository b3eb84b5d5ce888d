// The shared main of the tests run under mpirun (tests/mpi/mpi_tests.cmake): MPI is
// initialised once (comm::init_world) before GoogleTest runs and finalised after it. Every
// rank runs every test in the same order, so the collectives inside them match up; a test
// that fails on any rank makes that rank, and so mpirun, exit non-zero.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "comm/comm.h"

namespace dsv4::test {

// The world communicator of this test process (valid inside tests).
inline comm::Comm*& world_slot() {
  static comm::Comm* w = nullptr;
  return w;
}
inline comm::Comm& world() {
  return *world_slot();
}

}  // namespace dsv4::test

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::unique_ptr<dsv4::comm::Comm> w = dsv4::comm::init_world();
  dsv4::test::world_slot() = w.get();
  // Ranks other than 0 report failures only (the summary would repeat N times otherwise).
  if (w->rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  // A failure on one rank fails the job: every rank exits with the worst status.
  float worst = float(rc);
  std::vector<float> all(size_t(w->size()));
  w->all_gather(&worst, 1, all.data());
  for (float v : all) worst = std::max(worst, v);
  if (rc && w->rank() != 0) std::fprintf(stderr, "rank %d: tests failed\n", w->rank());
  dsv4::test::world_slot() = nullptr;
  w.reset();
  return int(worst);
}
