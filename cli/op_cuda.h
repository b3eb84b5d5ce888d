// The CUDA backend of `dsv4 op` (`--backend cuda`, op-contract.md "Backends"). Two
// implementations, one per build: cli/ops_cuda.cc (CUDA builds: the runner table, the device
// check) and cli/ops_cuda_off.cc (builds without CUDA: no runners, "built without CUDA").
#pragma once

#include <string>
#include <vector>

#include "cli/op_spec.h"

namespace dsv4::cli {

// Sets OpSpec::run_cuda on every op of `ops` that has an entry in the CUDA runner table
// (nothing without CUDA). Called once by op_registry().
void attach_cuda_runners(std::vector<OpSpec>& ops);

// Why `--backend cuda` cannot run in this process: "" when it can; otherwise one sentence,
// "built without CUDA" or the device problem (cuda::device_summary(), e.g. "no CUDA device
// available: ...").
std::string cuda_backend_problem();

}  // namespace dsv4::cli
