#include "comm/mpi_comm.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "reference/errors.h"

namespace dsv4::comm {

struct MpiComm::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owns_world = false;  // the world: finalise MPI on destruction; else free the handle
};

namespace {

// Throws with MPI's own description of error code `rc` from call `what`.
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw std::runtime_error(std::string(what) + " failed: " + std::string(text, size_t(len)));
}

// MPI counts are int: larger messages are refused with the size rather than truncated.
int mpi_count(int64_t n, const char* what) {
  require(n >= 0 && n <= INT_MAX, std::string(what) + ": " + std::to_string(n) +
                                      " elements does not fit an MPI count (at most " +
                                      std::to_string(INT_MAX) + ")");
  return int(n);
}

}  // namespace

MpiComm::MpiComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  check(MPI_Comm_rank(impl_->comm, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(impl_->comm, &size_), "MPI_Comm_size");
}

std::unique_ptr<MpiComm> MpiComm::world() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  require(!initialised,
          "MpiComm::world: MPI is already initialised in this process (one world per process)");
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  // Errors come back as return codes (and become exceptions) instead of ending the job
  // silently; a rank that cannot recover calls abort() with its reason.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  auto impl = std::make_unique<Impl>();
  impl->comm = MPI_COMM_WORLD;
  impl->owns_world = true;
  return std::unique_ptr<MpiComm>(new MpiComm(std::move(impl)));
}

MpiComm::~MpiComm() {
  if (impl_->owns_world) {
    MPI_Finalize();
  } else if (impl_->comm != MPI_COMM_NULL) {
    MPI_Comm_free(&impl_->comm);
  }
}

void MpiComm::barrier() {
  check(MPI_Barrier(impl_->comm), "MPI_Barrier");
}

void MpiComm::all_reduce_sum(float* data, int64_t n) {
  const int count = mpi_count(n, "all_reduce_sum");
  if (rank_ == 0)
    check(MPI_Reduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, 0, impl_->comm), "MPI_Reduce");
  else
    check(MPI_Reduce(data, nullptr, count, MPI_FLOAT, MPI_SUM, 0, impl_->comm), "MPI_Reduce");
  check(MPI_Bcast(data, count, MPI_FLOAT, 0, impl_->comm), "MPI_Bcast");
}

void MpiComm::all_gather(const float* in, int64_t n, float* out) {
  const int count = mpi_count(n, "all_gather");
  mpi_count(n * size_, "all_gather (the gathered buffer)");
  check(MPI_Allgather(in, count, MPI_FLOAT, out, count, MPI_FLOAT, impl_->comm), "MPI_Allgather");
}

std::vector<int64_t> MpiComm::exchange_counts(const std::vector<int64_t>& send_counts) {
  check_counts(*this, send_counts, -1, "exchange_counts");
  std::vector<int64_t> recv(size_t(size_), 0);
  check(MPI_Alltoall(send_counts.data(), 1, MPI_INT64_T, recv.data(), 1, MPI_INT64_T, impl_->comm),
        "MPI_Alltoall");
  return recv;
}

void MpiComm::all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                           const std::vector<int64_t>& recv_counts) {
  check_counts(*this, send_counts, -1, "all_to_all_v (send)");
  check_counts(*this, recv_counts, -1, "all_to_all_v (receive)");
  const size_t N = size_t(size_);
  std::vector<int> sc(N), sd(N), rc(N), rd(N);  // counts and offsets as MPI wants them
  int64_t so = 0, ro = 0;
  for (size_t q = 0; q < N; ++q) {
    sc[q] = mpi_count(send_counts[q], "all_to_all_v"),
    sd[q] = mpi_count(so, "all_to_all_v (offset)");
    rc[q] = mpi_count(recv_counts[q], "all_to_all_v"),
    rd[q] = mpi_count(ro, "all_to_all_v (offset)");
    so += send_counts[q], ro += recv_counts[q];
  }
  check(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(), MPI_FLOAT,
                      impl_->comm),
        "MPI_Alltoallv");
}

void MpiComm::broadcast(float* data, int64_t n, int root) {
  require(root >= 0 && root < size_, "broadcast: root " + std::to_string(root) +
                                         " is not a rank in [0, " + std::to_string(size_) + ")");
  check(MPI_Bcast(data, mpi_count(n, "broadcast"), MPI_FLOAT, root, impl_->comm), "MPI_Bcast");
}

void MpiComm::abort(const std::string& message, int code) {
  int world_rank = 0, world_size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  std::fprintf(stderr, "dsv4: rank %d of %d: %s\n", world_rank, world_size, message.c_str());
  std::fflush(stderr);
  // The whole job, not only this communicator: a TP or EP group's peers outside it would
  // otherwise wait forever in their next world collective.
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

std::unique_ptr<Comm> MpiComm::split(int color, int key) {
  require(color >= 0, "split: color must be >= 0, found " + std::to_string(color));
  auto impl = std::make_unique<Impl>();
  check(MPI_Comm_split(impl_->comm, color, key, &impl->comm), "MPI_Comm_split");
  MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiComm>(new MpiComm(std::move(impl)));
}

void* MpiComm::native_handle() {
  return &impl_->comm;
}

}  // namespace dsv4::comm
