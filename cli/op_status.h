// Each op's status per backend: `dsv4 op --list --json` (kind dsv4.ops), read by `dsv4 report`
// for the kernels section's correctness table (docs/report.md).
//
//   ref    "available (CPU reference)": every op of the registry runs on the reference.
//   cuda   derived from the op's spec (OpSpec::cuda_kernel, the optimized/ twin; OpSpec::run_cuda,
//          set by cli/ops_cuda.cc) and this binary's build: "kernel, runs in dsv4 op" (built
//          with CUDA and `dsv4 op --backend cuda` runs the twin; nothing in this status says a
//          GPU ran it), "compiled, not run" (the twin is compiled here; dsv4 op does not run it
//          and nothing has run it on a GPU for this status), "not in this build" (the op has a
//          twin but this binary was built without CUDA), "no kernel yet".
// Nothing here claims a kernel is verified: that takes `ctest -L gpu` on a device.
#pragma once

#include <string>

#include "cli/op_spec.h"

namespace dsv4::cli {

inline constexpr const char* kOpsKind = "dsv4.ops";
inline constexpr int kOpsSchemaVersion = 1;  // reports/inputs.cc reads this version

inline constexpr const char* kRefAvailable = "available (CPU reference)";
inline constexpr const char* kCudaRunsInOp = "kernel, runs in dsv4 op";
inline constexpr const char* kCudaCompiled = "compiled, not run";
inline constexpr const char* kCudaNotBuilt = "not in this build";
inline constexpr const char* kCudaNoKernel = "no kernel yet";

// Whether this binary's build compiled optimized/ (nvcc found, DSV4_CUDA on).
bool built_with_cuda();

std::string cuda_status(const OpSpec& op);

// {"kind": "dsv4.ops", "schema_version": 1, "ops": [{"name", "summary", "cuda_kernel",
//  "backends": {"ref", "cuda"}}]} on stdout, ops in --list order.
void print_op_list_json();

}  // namespace dsv4::cli
