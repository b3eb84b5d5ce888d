// The NCCL transport: GPU ranks, one per device, launched by mpirun and bootstrapped over MPI
// (rank 0 of the MPI communicator makes the NCCL unique id and broadcasts it; every rank
// then joins with ncclCommInitRank). Built when CUDA, NCCL and MPI are all found
// (DSV4_WITH_NCCL); comm/comm.h is its interface.
//
// Every buffer argument is a device pointer (the CUDA backend's activations); counts stay on
// the host. Each collective runs on this communicator's (non-blocking) stream, starts after the
// work queued so far on the legacy default stream (where the CUDA backend writes the buffers:
// kernels, stream-ordered allocations, uploads), and is complete when the call returns (the
// simple contract of comm.h; overlapping it with compute is the CUDA backend's business later).
#pragma once

#include <memory>

#include "comm/comm.h"
#include "comm/mpi_comm.h"

namespace dsv4::comm {

class NcclComm final : public Comm {
 public:
  // Called by every rank of `bootstrap` (which must outlive the result): binds this rank to
  // CUDA device `device` and joins an NCCL communicator of the same ranks in the same order.
  static std::unique_ptr<NcclComm> create(MpiComm& bootstrap, int device);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  std::string transport() const override { return "nccl"; }
  void barrier() override;
  // Reduce to rank 0, then broadcast: the same bits on every rank, whatever algorithm NCCL
  // picks for the reduction.
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* in, int64_t n, float* out) override;
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override;
  // Grouped ncclSend/ncclRecv, one pair per peer with a nonzero count.
  void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(float* data, int64_t n, int root) override;
  // Aborts the NCCL communicator (no kernel left waiting), then the MPI job.
  [[noreturn]] void abort(const std::string& message, int code) override;
  // The MPI bootstrap is split, and the part joins a new NCCL communicator on the same device.
  std::unique_ptr<Comm> split(int color, int key) override;

  int device() const { return device_; }

 private:
  struct Impl;
  NcclComm(MpiComm* bootstrap, std::unique_ptr<Comm> owned, int device);
  MpiComm* bootstrap_;           // ranks, MPI bootstrap, abort
  std::unique_ptr<Comm> owned_;  // the split MPI communicator this one was made from
  int device_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::comm
