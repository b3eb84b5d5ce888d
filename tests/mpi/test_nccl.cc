// comm/nccl_comm: the NCCL transport under mpirun, one rank per CUDA device, buffers in device
// memory (tests/mpi/mpi_tests.cmake registers np 1, the GPU check's one-rank run through the
// NCCL path, and np 2, which needs two devices). Skips with the reason without a device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "comm/nccl_comm.h"
#include "tests/mpi/mpi_main.h"

namespace dsv4 {
namespace {

using test::world;

// The NCCL communicator of the test's world, made once (nullptr + reason when it cannot be).
comm::NcclComm* nccl(std::string* why) {
  static std::unique_ptr<comm::NcclComm> c;
  static std::string reason;
  static bool tried = false;
  if (!tried) {
    tried = true;
    int devices = 0;
    if (world().transport() != "mpi") {
      reason = "not launched by mpirun (NCCL bootstraps over MPI)";
    } else if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      reason = "no CUDA device";
    } else if (devices < world().size()) {
      reason = std::to_string(world().size()) + " ranks need as many devices; this machine has " +
               std::to_string(devices);
    } else {
      c = comm::NcclComm::create(dynamic_cast<comm::MpiComm&>(world()), world().rank());
    }
  }
  *why = reason;
  return c.get();
}

struct Device {
  explicit Device(const std::vector<float>& h) : n(h.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(float)),
              cudaSuccess);
    if (n) {
      EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~Device() { cudaFree(p); }
  std::vector<float> host() const {
    std::vector<float> h(n);
    if (n) {
      EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return h;
  }
  float* p = nullptr;
  size_t n;
};

#define NCCL_OR_SKIP(c)           \
  std::string why;                \
  comm::NcclComm* c = nccl(&why); \
  if (!c) GTEST_SKIP() << why

TEST(NcclCollectives, AllReduceAllGatherBroadcast) {
  NCCL_OR_SKIP(c);
  const int N = c->size(), r = c->rank();
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(r * 1000 + int(i));
  Device d(v);
  c->all_reduce_sum(d.p, 1000);
  const auto s = d.host();
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(s[size_t(i)], float(1000 * N * (N - 1) / 2 + N * i));
  Device in(std::vector<float>(5, float(r))), out(std::vector<float>(size_t(5 * N), -1.f));
  c->all_gather(in.p, 5, out.p);
  const auto g = out.host();
  for (int q = 0; q < N; ++q) EXPECT_EQ(g[size_t(q * 5)], float(q));
  Device b(std::vector<float>{float(r), float(r)});
  c->broadcast(b.p, 2, N - 1);
  EXPECT_EQ(b.host(), (std::vector<float>{float(N - 1), float(N - 1)}));
}

TEST(NcclCollectives, AllToAllVWithUnevenAndZeroCounts) {
  NCCL_OR_SKIP(c);
  const int N = c->size(), r = c->rank();
  auto count = [](int from, int to) { return int64_t((from + 2 * to) % 3); };  // 0, 1 or 2
  std::vector<int64_t> sc(static_cast<size_t>(N));
  std::vector<float> send;
  for (int q = 0; q < N; ++q) {
    sc[size_t(q)] = count(r, q);
    for (int64_t j = 0; j < sc[size_t(q)]; ++j) send.push_back(float(r * 100 + q * 10 + j));
  }
  const auto rc = c->exchange_counts(sc);
  int64_t total = 0;
  for (int q = 0; q < N; ++q) {
    EXPECT_EQ(rc[size_t(q)], count(q, r));
    total += rc[size_t(q)];
  }
  Device ds(send), dr(std::vector<float>(size_t(total), -1.f));
  c->all_to_all_v(ds.p, sc, dr.p, rc);
  const auto got = dr.host();
  size_t at = 0;
  for (int q = 0; q < N; ++q)
    for (int64_t j = 0; j < rc[size_t(q)]; ++j) EXPECT_EQ(got[at++], float(q * 100 + r * 10 + j));
}

// The CUDA backend writes the buffers on the legacy default stream, asynchronously; the
// communicator's stream is non-blocking, so each collective must wait for that work itself.
// Here the input is written by a memset queued behind ~2 GiB of other memsets (a few ms of
// device time): a collective that did not wait would read the old zeros.
TEST(NcclCollectives, CollectivesWaitForWorkQueuedOnTheLegacyStream) {
  NCCL_OR_SKIP(c);
  const int N = c->size();
  constexpr size_t kBusyBytes = size_t(1) << 30;  // each busy memset: 1 GiB
  constexpr int kBusyMemsets = 2;
  constexpr size_t kCount = size_t(1) << 16;  // floats per rank
  constexpr int kByte = 0x40;                 // every byte of the new input
  float want = 0.f;
  const uint32_t bits = 0x40404040u;
  std::memcpy(&want, &bits, sizeof(want));
  void* busy = nullptr;
  ASSERT_EQ(cudaMalloc(&busy, kBusyBytes), cudaSuccess);
  Device in(std::vector<float>(kCount, 0.f)), out(std::vector<float>(kCount * size_t(N), 0.f));
  auto write_late = [&] {  // legacy stream: busy work, then the input
    for (int i = 0; i < kBusyMemsets; ++i)
      ASSERT_EQ(cudaMemsetAsync(busy, i, kBusyBytes, 0), cudaSuccess);
    ASSERT_EQ(cudaMemsetAsync(in.p, kByte, kCount * sizeof(float), 0), cudaSuccess);
  };
  write_late();
  c->all_gather(in.p, int64_t(kCount), out.p);
  for (float v : out.host())
    ASSERT_EQ(v, want) << "all_gather read the input before it was written";
  ASSERT_EQ(cudaMemset(in.p, 0, kCount * sizeof(float)), cudaSuccess);
  write_late();
  c->all_reduce_sum(in.p, int64_t(kCount));
  for (float v : in.host())
    ASSERT_EQ(v, want * float(N)) << "all_reduce_sum read the input before it was written";
  cudaFree(busy);
}

}  // namespace
}  // namespace dsv4
