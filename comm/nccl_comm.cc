#include "comm/nccl_comm.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <stdexcept>

#include "reference/errors.h"

namespace dsv4::comm {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + ncclGetErrorString(r));
}

}  // namespace

struct NcclComm::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // non-blocking: no implicit ordering with the legacy stream
  cudaEvent_t queued = nullptr;   // the legacy default stream's work so far (after_legacy)
  int64_t* counts = nullptr;  // device [2 * size]: the counts exchange_counts sends and receives
  void sync() { check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }
  // The buffers come from the CUDA backend, whose kernels, stream-ordered allocations and
  // uploads run on the legacy default stream and may still be in flight when a collective is
  // called (a kernel launch is asynchronous; even cudaMemcpy from pageable memory may return
  // before its DMA lands). `stream` is non-blocking, so it must wait for that work explicitly
  // before NCCL reads or writes the buffers.
  void after_legacy() {
    check_cuda(cudaEventRecord(queued, cudaStreamLegacy), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream, queued, 0), "cudaStreamWaitEvent");
  }
};

NcclComm::NcclComm(MpiComm* bootstrap, std::unique_ptr<Comm> owned, int device)
    : bootstrap_(bootstrap),
      owned_(std::move(owned)),
      device_(device),
      impl_(std::make_unique<Impl>()) {
  int devices = 0;
  check_cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  require(device >= 0 && device < devices, "NcclComm: device " + std::to_string(device) +
                                               " is not one of the " + std::to_string(devices) +
                                               " CUDA devices");
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  ncclUniqueId id;
  if (bootstrap_->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  MPI_Comm mc = *static_cast<MPI_Comm*>(bootstrap_->native_handle());
  if (MPI_Bcast(&id, int(sizeof(id)), MPI_BYTE, 0, mc) != MPI_SUCCESS)
    throw std::runtime_error("NcclComm: broadcasting the NCCL unique id over MPI failed");
  check_nccl(ncclCommInitRank(&impl_->comm, bootstrap_->size(), id, bootstrap_->rank()),
             "ncclCommInitRank");
  check_cuda(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaEventCreateWithFlags(&impl_->queued, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaMalloc(reinterpret_cast<void**>(&impl_->counts),
                        2 * size_t(bootstrap_->size()) * sizeof(int64_t)),
             "cudaMalloc");
}

std::unique_ptr<NcclComm> NcclComm::create(MpiComm& bootstrap, int device) {
  return std::unique_ptr<NcclComm>(new NcclComm(&bootstrap, nullptr, device));
}

NcclComm::~NcclComm() {
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->counts) cudaFree(impl_->counts);
  if (impl_->queued) cudaEventDestroy(impl_->queued);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

void NcclComm::barrier() {
  impl_->sync();
  bootstrap_->barrier();
}

void NcclComm::all_reduce_sum(float* data, int64_t n) {
  require(n >= 0, "all_reduce_sum: negative count");
  impl_->after_legacy();
  check_nccl(ncclReduce(data, data, size_t(n), ncclFloat, ncclSum, 0, impl_->comm, impl_->stream),
             "ncclReduce");
  check_nccl(ncclBroadcast(data, data, size_t(n), ncclFloat, 0, impl_->comm, impl_->stream),
             "ncclBroadcast");
  impl_->sync();
}

void NcclComm::all_gather(const float* in, int64_t n, float* out) {
  require(n >= 0, "all_gather: negative count");
  impl_->after_legacy();
  check_nccl(ncclAllGather(in, out, size_t(n), ncclFloat, impl_->comm, impl_->stream),
             "ncclAllGather");
  impl_->sync();
}

std::vector<int64_t> NcclComm::exchange_counts(const std::vector<int64_t>& send_counts) {
  check_counts(*this, send_counts, -1, "exchange_counts");
  const size_t N = size_t(size());
  int64_t* d_send = impl_->counts;
  int64_t* d_recv = impl_->counts + N;
  check_cuda(cudaMemcpyAsync(d_send, send_counts.data(), N * sizeof(int64_t),
                             cudaMemcpyHostToDevice, impl_->stream),
             "cudaMemcpyAsync");
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (size_t q = 0; q < N; ++q) {
    check_nccl(ncclSend(d_send + q, 1, ncclInt64, int(q), impl_->comm, impl_->stream), "ncclSend");
    check_nccl(ncclRecv(d_recv + q, 1, ncclInt64, int(q), impl_->comm, impl_->stream), "ncclRecv");
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  std::vector<int64_t> recv(N);
  check_cuda(cudaMemcpyAsync(recv.data(), d_recv, N * sizeof(int64_t), cudaMemcpyDeviceToHost,
                             impl_->stream),
             "cudaMemcpyAsync");
  impl_->sync();
  return recv;
}

void NcclComm::all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                            const std::vector<int64_t>& recv_counts) {
  check_counts(*this, send_counts, -1, "all_to_all_v (send)");
  check_counts(*this, recv_counts, -1, "all_to_all_v (receive)");
  impl_->after_legacy();
  int64_t so = 0, ro = 0;
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (size_t q = 0; q < send_counts.size(); ++q) {
    if (send_counts[q] > 0)
      check_nccl(ncclSend(send + so, size_t(send_counts[q]), ncclFloat, int(q), impl_->comm,
                          impl_->stream),
                 "ncclSend");
    if (recv_counts[q] > 0)
      check_nccl(ncclRecv(recv + ro, size_t(recv_counts[q]), ncclFloat, int(q), impl_->comm,
                          impl_->stream),
                 "ncclRecv");
    so += send_counts[q], ro += recv_counts[q];
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  impl_->sync();
}

void NcclComm::broadcast(float* data, int64_t n, int root) {
  require(root >= 0 && root < size(), "broadcast: root " + std::to_string(root) +
                                          " is not a rank in [0, " + std::to_string(size()) + ")");
  require(n >= 0, "broadcast: negative count");
  impl_->after_legacy();
  check_nccl(ncclBroadcast(data, data, size_t(n), ncclFloat, root, impl_->comm, impl_->stream),
             "ncclBroadcast");
  impl_->sync();
}

void NcclComm::abort(const std::string& message, int code) {
  if (impl_->comm) ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
  bootstrap_->abort(message, code);
}

std::unique_ptr<Comm> NcclComm::split(int color, int key) {
  std::unique_ptr<Comm> part = bootstrap_->split(color, key);
  auto* mpi = static_cast<MpiComm*>(part.get());  // MpiComm::split makes MpiComms
  return std::unique_ptr<NcclComm>(new NcclComm(mpi, std::move(part), device_));
}

}  // namespace dsv4::comm
