#include "comm/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "reference/errors.h"

#ifdef DSV4_WITH_MPI
#include "comm/mpi_comm.h"
#endif

namespace dsv4::comm {

void check_counts(const Comm& c, const std::vector<int64_t>& counts, int64_t total,
                  const char* what) {
  require(int64_t(counts.size()) == c.size(),
          std::string(what) + ": expected " + std::to_string(c.size()) +
              " counts (one per rank), found " + std::to_string(counts.size()));
  int64_t sum = 0;
  for (size_t q = 0; q < counts.size(); ++q) {
    require(counts[q] >= 0, std::string(what) + ": count for rank " + std::to_string(q) +
                                " is negative (" + std::to_string(counts[q]) + ")");
    sum += counts[q];
  }
  require(total < 0 || sum == total, std::string(what) + ": counts sum to " + std::to_string(sum) +
                                         ", the buffer holds " + std::to_string(total));
}

std::vector<int64_t> all_to_all_v(Comm& c, const std::vector<float>& send,
                                  const std::vector<int64_t>& send_counts,
                                  std::vector<float>& recv) {
  check_counts(c, send_counts, int64_t(send.size()), "all_to_all_v");
  std::vector<int64_t> recv_counts = c.exchange_counts(send_counts);
  recv.resize(size_t(std::accumulate(recv_counts.begin(), recv_counts.end(), int64_t(0))));
  c.all_to_all_v(send.data(), send_counts, recv.data(), recv_counts);
  return recv_counts;
}

// ---- LocalComm ----------------------------------------------------------------------------

void LocalComm::all_gather(const float* in, int64_t n, float* out) {
  if (in != out) std::copy_n(in, n, out);
}

std::vector<int64_t> LocalComm::exchange_counts(const std::vector<int64_t>& send_counts) {
  check_counts(*this, send_counts, -1, "exchange_counts");
  return send_counts;
}

void LocalComm::all_to_all_v(const float* send, const std::vector<int64_t>& send_counts,
                             float* recv, const std::vector<int64_t>& recv_counts) {
  check_counts(*this, send_counts, -1, "all_to_all_v");
  require(recv_counts == send_counts, "all_to_all_v: one rank receives what it sends");
  if (send != recv) std::copy_n(send, send_counts[0], recv);
}

void LocalComm::broadcast(float*, int64_t, int root) {
  require(root == 0,
          "broadcast: root " + std::to_string(root) + " is not a rank of a 1-rank communicator");
}

void LocalComm::abort(const std::string& message, int code) {
  std::fprintf(stderr, "dsv4: rank 0 of 1: %s\n", message.c_str());
  std::fflush(stderr);
  std::exit(code);
}

std::unique_ptr<Comm> LocalComm::split(int, int) {
  return std::make_unique<LocalComm>();
}

// ---- the world ------------------------------------------------------------------------------

namespace {

// Set by OpenMPI's mpirun (OMPI_*) or any PMIx launcher for every rank it starts.
bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace

bool mpi_available() {
#ifdef DSV4_WITH_MPI
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Comm> init_world() {
  if (!launched_by_mpirun()) return std::make_unique<LocalComm>();
#ifdef DSV4_WITH_MPI
  return MpiComm::world();
#else
  throw InputError(
      "this process was launched by mpirun, but this dsv4 was built without MPI "
      "(install libopenmpi-dev and rebuild)");
#endif
}

}  // namespace dsv4::comm
