// The MPI transport (OpenMPI from apt): CPU ranks launched by mpirun, host buffers.
// Built only when CMake finds MPI (DSV4_WITH_MPI); comm/comm.h init_world() picks it.
#pragma once

#include <memory>

#include "comm/comm.h"

namespace dsv4::comm {

class MpiComm final : public Comm {
 public:
  // Initialises MPI (once per process) and returns the communicator of every rank; MPI is
  // finalised when it is destroyed.
  static std::unique_ptr<MpiComm> world();
  ~MpiComm() override;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string transport() const override { return "mpi"; }
  void barrier() override;
  // Reduce to rank 0, then broadcast: every rank gets the same bits (MPI_Allreduce does not
  // promise that across ranks).
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* in, int64_t n, float* out) override;
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override;
  void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(float* data, int64_t n, int root) override;
  [[noreturn]] void abort(const std::string& message, int code) override;
  std::unique_ptr<Comm> split(int color, int key) override;

  // The MPI_Comm handle (an int or a pointer, by implementation) for transports that bootstrap
  // over MPI (comm/nccl_comm.h).
  void* native_handle();

 private:
  struct Impl;
  explicit MpiComm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

}  // namespace dsv4::comm
