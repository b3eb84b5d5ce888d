// The backend a command names (`--backend ref | cuda`), one rank or sharded: the one place
// generate / forward / eval / serve / bench --model turn their options into a Backend.
//
//   one rank, tp = ep = 1:  make_reference_backend or make_cuda_backend (model/backend.h)
//   otherwise:              this rank's shard (model/backend_sharded.h) over `world`, whose
//                           inner backend (the attention, norms, mHC, head) is the named one;
//                           with cuda, rank r uses device r mod (devices on its node), and in a
//                           build with NCCL the ranks' collectives run over an NcclComm
//                           bootstrapped over the MPI world, on device memory (without NCCL:
//                           over the world's MPI, through host copies)
#pragma once

#include <memory>
#include <string>

#include "comm/comm.h"
#include "model/backend.h"
#include "model/backend_sharded.h"

namespace dsv4 {

// InputError unless `backend` is "ref" or "cuda", or for cuda when it cannot run here
// (cuda_backend_problem(): built without CUDA, no device): called before a checkpoint loads.
void check_backend_name(const std::string& backend);

// world == nullptr: one rank. InputError for a layout above 1 without ranks to run it.
std::unique_ptr<Backend> make_named_backend(const std::string& backend, ModelWeights weights, BackendOptions options,
                                            comm::Comm* world, ParallelLayout layout);

}  // namespace dsv4
