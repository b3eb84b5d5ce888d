// The communication layer: one interface for every transport the sharded model runs over.
//
//   LocalComm  one rank (size 1): every collective is a copy; what an unsharded run uses.
//   MpiComm    CPU ranks launched by mpirun (comm/mpi_comm.h; built when MPI is found).
//   NcclComm   GPU ranks, one per device, bootstrapped over MPI (comm/nccl_comm.h; built when
//              CUDA, NCCL and MPI are all found). Its buffers are device pointers.
//
// The model code (model/backend_sharded.h) calls this interface and never knows which
// transport is behind it. Buffers live where the backend keeps its activations: host memory
// for the reference backend and MPI, device memory for NCCL.
//
// Collectives are called by every rank of the communicator, in the same order, with matching
// sizes (the usual SPMD contract); a rank that cannot go on calls abort(), which ends every
// rank of the job instead of leaving them waiting in the next collective.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsv4::comm {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "local", "mpi", "nccl"
  virtual std::string transport() const = 0;

  virtual void barrier() = 0;
  // data[n] <- sum over ranks of data[n], the same bits on every rank (so replicated state
  // computed from it stays identical across ranks).
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // out[size * n] <- in[n] of rank 0, then rank 1, ... (equal parts).
  virtual void all_gather(const float* in, int64_t n, float* out) = 0;
  // recv_counts[q] = the send_counts[rank()] of rank q: how many elements each rank will send
  // here in the all_to_all_v that follows. send_counts has size() entries, each >= 0.
  virtual std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) = 0;
  // Uneven all-to-all: send holds send_counts[0] elements for rank 0, then send_counts[1] for
  // rank 1, ...; recv receives recv_counts[0] elements from rank 0, then from rank 1, ...
  // (recv_counts from exchange_counts). Zero counts are allowed anywhere.
  virtual void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                            const std::vector<int64_t>& recv_counts) = 0;
  // data[n] of rank `root` to every rank.
  virtual void broadcast(float* data, int64_t n, int root) = 0;
  // Prints "dsv4: rank R of N: message" on stderr and ends every rank of the job with
  // exit status `code`. Never returns.
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;
  // A communicator of the ranks that pass the same color, ordered by key (then by rank):
  // the tensor- and expert-parallel groups. Called by every rank.
  virtual std::unique_ptr<Comm> split(int color, int key) = 0;
};

// Host-side convenience for all_to_all_v: exchanges the counts, sizes recv to their sum, moves
// the data; returns the counts received from each rank.
std::vector<int64_t> all_to_all_v(Comm& c, const std::vector<float>& send,
                                  const std::vector<int64_t>& send_counts,
                                  std::vector<float>& recv);

// Checks a counts vector for size() entries >= 0 summing to `total` (total < 0: any sum);
// InputError naming the entry otherwise.
void check_counts(const Comm& c, const std::vector<int64_t>& counts, int64_t total,
                  const char* what);

// One rank, no other process: every collective copies or does nothing.
class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string transport() const override { return "local"; }
  void barrier() override {}
  void all_reduce_sum(float*, int64_t) override {}
  void all_gather(const float* in, int64_t n, float* out) override;
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override;
  void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(float*, int64_t, int root) override;
  [[noreturn]] void abort(const std::string& message, int code) override;
  std::unique_ptr<Comm> split(int color, int key) override;
};

// The communicator of this process: an MpiComm over every rank when the process was launched
// by mpirun/mpiexec (OpenMPI's or PMIx's environment is set) and MPI is built in; a LocalComm
// otherwise. The first call initialises MPI; MPI is finalised when the returned world is
// destroyed (destroy split communicators first). InputError when launched by mpirun in a build
// without MPI.
std::unique_ptr<Comm> init_world();

// True when this build has the MPI transport.
bool mpi_available();

}  // namespace dsv4::comm
