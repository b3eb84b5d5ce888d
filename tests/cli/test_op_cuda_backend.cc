// `dsv4 op --backend cuda` without a GPU (op-contract.md "Backends", cli/op_cuda.h): every way
// it is refused exits non-zero with one line naming the problem and writes no output file. In
// a build without CUDA: "built without CUDA" (status 2); in a CUDA build on a machine without
// a device: the device problem from cuda::device_summary() (status 1). On a machine with a
// device the run succeeds and tests/optimized/test_op_backend.cc (label gpu) compares its
// output with --backend ref.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/safetensors.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/random.h"

namespace dsv4::test {
namespace {

// x [4, 32] uniform in [-1, 1): a valid input of rmsnorm, hadamard and the quantisers.
std::string write_x(const TempDir& t) {
  const std::vector<double> x = uniform(4 * 32, 11);
  SafetensorsWriter w;
  w.add_float("x", {4, 32}, x.data(), DType::F32);
  const std::string path = t.file("in.safetensors");
  w.write(path);
  return path;
}

std::string op_cmd(const std::string& op, const TempDir& t, const std::string& extra = "") {
  return "op " + op + " --backend cuda --in " + write_x(t) + " --out " + t.file("out.safetensors") + extra;
}

// One line on stderr, and the input file is all that is left in the directory.
void expect_refused(const CmdResult& r, int status, const std::string& needle, const TempDir& t) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_EQ(t.entries(), std::vector<std::string>{"in.safetensors"}) << "an output was written";
}

TEST(OpCudaBackend, UnknownBackendIsRefused) {
  TempDir t;
  const auto r = run_dsv4("op rmsnorm --backend cudnn --in " + write_x(t) + " --out " + t.file("out.safetensors"), t);
  expect_refused(r, 2, "--backend: expected ref or cuda, found 'cudnn'", t);
}

// Without CUDA every op is refused before anything is read; with CUDA, f64 is refused (the
// kernels are f32) before the device is looked at.
TEST(OpCudaBackend, BuiltWithoutCudaOrF64IsRefused) {
  for (const std::string op : {"rmsnorm", "hadamard", "layernorm", "rope", "quant_fp8", "quant_fp4"}) {
    SCOPED_TRACE(op);
    TempDir t;
    if (!DSV4_TEST_HAVE_CUDA) {
      expect_refused(run_dsv4(op_cmd(op, t), t), 2, "built without CUDA", t);
    } else {
      expect_refused(run_dsv4(op_cmd(op, t, " --precision f64"), t), 2,
                     "--backend cuda: op '" + op + "': the CUDA kernels compute in f32 only, found --precision f64", t);
    }
  }
}

// A CUDA build: no device -> status 1 naming the device problem, nothing written; a device ->
// the output file, marked backend cuda.
TEST(OpCudaBackend, CudaBuildNeedsADevice) {
  if (!DSV4_TEST_HAVE_CUDA) GTEST_SKIP() << "built without CUDA (BuiltWithoutCudaOrF64IsRefused covers it)";
  TempDir t;
  const auto r = run_dsv4(op_cmd("rmsnorm", t), t);
  if (r.status == 0) {
    const SafetensorsReader out(t.file("out.safetensors"));
    EXPECT_EQ(out.metadata().at("backend"), "cuda");
    GTEST_SKIP() << "a CUDA device is present: the run succeeded (tests/optimized/test_op_backend.cc compares it)";
  }
  expect_refused(r, 1, "dsv4 op: error: --backend cuda: op 'rmsnorm': cannot run on the GPU: no CUDA device available", t);
}

}  // namespace
}  // namespace dsv4::test
