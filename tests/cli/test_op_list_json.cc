// `dsv4 op --list --json` (cli/op_status.h): every op of `dsv4 op --list`, each with its status
// per backend; the cuda status agrees with the source tree (an op that names a CUDA twin names a
// file that exists, and every CUDA kernel in optimized/ is some op's twin), nothing claims to be
// verified, and the file feeds the report's kernels section.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <set>
#include <sstream>

#include "tests/cli/cli_harness.h"

namespace dsv4::test {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

const fs::path kSource = fs::path(DSV4_TEST_DATA_DIR) / ".." / "..";

// optimized/ sources that are infrastructure, not an op's kernel (engram_prefetch: the
// host-resident tables' prefetch stream, which runs engram_lookup; linear: the cuBLAS linear
// layers of the attention paths' twins; kv_pack: the fp8 KV layout's row codec inside the
// attention_layer twin's state; rows: the CUDA model backend's row gathers and spreads;
// compact_weights: the FP4 / FP8 expert weight stores moe_compact dequantises).
const std::set<std::string> kNotOpKernels = {"device", "engram_prefetch", "linear", "kv_pack", "rows",
                                             "compact_weights"};

// Op names in `dsv4 op --list` order: the lines that do not start with a space.
std::vector<std::string> listed_ops(const std::string& text) {
  std::vector<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != ' ') names.push_back(line.substr(0, line.find(' ')));
  return names;
}

TEST(OpListJson, EveryOpWithItsStatusPerBackend) {
  TempDir t;
  const auto plain = run_dsv4("op --list", t);
  ASSERT_EQ(plain.status, 0) << plain.err;
  const auto r = run_dsv4("op --list --json", t);
  ASSERT_EQ(r.status, 0) << r.err;
  const json::object doc = json::parse(r.out).as_object();
  EXPECT_EQ(doc.at("kind").as_string(), "dsv4.ops");
  EXPECT_EQ(doc.at("schema_version").as_int64(), 1);
  std::vector<std::string> names;
  std::set<std::string> claimed;
  for (const auto& v : doc.at("ops").as_array()) {
    const auto& op = v.as_object();
    const std::string name(op.at("name").as_string());
    names.push_back(name);
    EXPECT_FALSE(op.at("summary").as_string().empty()) << name;
    const auto& b = op.at("backends").as_object();
    EXPECT_EQ(b.at("ref").as_string(), "available (CPU reference)") << name;
    const std::string cuda(b.at("cuda").as_string());
    EXPECT_EQ(r.out.find("verified"), std::string::npos) << "nothing has run on a GPU";
    if (op.at("cuda_kernel").is_null()) {
      EXPECT_EQ(cuda, "no kernel yet") << name;
      continue;
    }
    const std::string twin(op.at("cuda_kernel").as_string());
    // With CUDA: "kernel, runs in dsv4 op" when cli/ops_cuda.cc has the op's runner, else
    // "compiled, not run" (tests/cli/test_op_cuda_backend.cc runs the former through dsv4 op).
    if (DSV4_TEST_HAVE_CUDA)
      EXPECT_TRUE(cuda == "kernel, runs in dsv4 op" || cuda == "compiled, not run") << name << ": " << cuda;
    else
      EXPECT_EQ(cuda, "not in this build") << name;
    EXPECT_TRUE(fs::exists(kSource / twin)) << name << " names " << twin << ", which does not exist";
    claimed.insert(fs::path(twin).stem().string());
  }
  EXPECT_EQ(names, listed_ops(plain.out)) << "the same ops, in the same order, as dsv4 op --list";
  // Every CUDA kernel in the tree is some op's twin: a new kernel cannot be missing from the list.
  for (const auto& e : fs::directory_iterator(kSource / "optimized")) {
    const std::string stem = e.path().stem().string();
    if (e.path().extension() == ".cu" && !kNotOpKernels.count(stem)) {
      EXPECT_TRUE(claimed.count(stem)) << e.path() << " is no op's cuda_kernel (cli/ops_*.cc)";
    }
  }
  EXPECT_GE(claimed.size(), 2u) << "rmsnorm and hadamard have CUDA twins today";
  // Issue 4: every op of the contract has a CUDA twin, and a CUDA build runs each through dsv4 op.
  for (const auto& v : doc.at("ops").as_array()) {
    const auto& op = v.as_object();
    EXPECT_FALSE(op.at("cuda_kernel").is_null()) << op.at("name").as_string() << " has no CUDA twin";
    if (DSV4_TEST_HAVE_CUDA) {
      EXPECT_EQ(op.at("backends").at("cuda").as_string(), "kernel, runs in dsv4 op") << op.at("name").as_string();
    }
  }
}

TEST(OpListJson, FeedsTheReportsKernelSection) {
  TempDir t;
  const auto r = run_dsv4("op --list --json", t);
  ASSERT_EQ(r.status, 0) << r.err;
  fs::create_directories(t.file("in"));
  std::ofstream(t.file("in/ops.json")) << r.out;
  const auto rep = run_dsv4("report " + t.file("in") + " --out " + t.file("out"), t);
  ASSERT_EQ(rep.status, 0) << rep.err;
  EXPECT_NE(rep.out.find("sections: kernels, provenance"), std::string::npos) << rep.out;
  const std::string md = slurp(t.file("out/report.md"));
  EXPECT_NE(md.find("| op | ref | cuda | what it computes |"), std::string::npos) << md;
  const std::string status = DSV4_TEST_HAVE_CUDA ? "kernel, runs in dsv4 op" : "not in this build";
  EXPECT_NE(md.find("| attention_layer | available (CPU reference) | " + status + " |"), std::string::npos) << md;
}

TEST(OpListJson, JsonWithoutListIsRefused) {
  TempDir t;
  const auto r = run_dsv4("op --json", t);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--json goes with --list"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace dsv4::test
