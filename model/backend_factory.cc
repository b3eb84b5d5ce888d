#include "model/backend_factory.h"

#include "reference/errors.h"

#if defined(DSV4_WITH_NCCL)
#include "comm/mpi_comm.h"
#include "comm/nccl_comm.h"
#include "comm/timing_comm.h"
#endif

namespace dsv4 {

void check_backend_name(const std::string& backend) {
  if (backend != "ref" && backend != "cuda")
    throw InputError("--backend: expected ref or cuda, found '" + backend + "'");
  if (backend == "cuda") {  // before anyone loads a checkpoint it cannot run
    const std::string problem = cuda_backend_problem();
    if (!problem.empty()) throw InputError("--backend cuda: " + problem);
  }
}

std::unique_ptr<Backend> make_named_backend(const std::string& backend, ModelWeights weights, BackendOptions options,
                                            comm::Comm* world, ParallelLayout layout) {
  check_backend_name(backend);
  const bool cuda = backend == "cuda";
  if ((!world || world->size() == 1) && layout.tp == 1 && layout.ep == 1)
    return cuda ? make_cuda_backend(std::move(weights), options) : make_reference_backend(std::move(weights), options);
  if (!world) throw InputError("--tp/--ep above 1 need ranks: run under mpirun -np N");
  ShardedOptions so;
  comm::Comm* groups = world;  // what the sharded backend splits its TP and EP groups from
  if (cuda) {
    const int device = cuda_bind_rank(world->rank());
    so.inner = [device](ModelWeights w, BackendOptions o) {
      cuda_bind_rank(device);
      return make_cuda_backend(std::move(w), o);
    };
#if defined(DSV4_WITH_NCCL)
    // GPU ranks talk over NCCL, bootstrapped over the MPI world (a TimingComm around it is
    // unwrapped, and the NCCL communicator timed into the same counters).
    auto* timing = dynamic_cast<comm::TimingComm*>(world);
    auto* mpi = dynamic_cast<comm::MpiComm*>(timing ? &timing->inner() : world);
    if (mpi) {
      std::unique_ptr<comm::Comm> nccl = comm::NcclComm::create(*mpi, device);
      if (timing) nccl = std::make_unique<comm::TimingComm>(std::move(nccl), timing->shared_stats());
      so.keep = std::shared_ptr<comm::Comm>(std::move(nccl));
      groups = so.keep.get();
    }
#endif
  }
  return make_sharded_backend(std::move(weights), options, *groups, layout, so);
}

}  // namespace dsv4
