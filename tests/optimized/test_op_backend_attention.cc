// `dsv4 op NAME --backend cuda` against `--backend ref` through files (op-contract.md
// "Backends") for attention, indexer, compressor (prefill, decode), engram_hash, engram_lookup and
// engram_mix: the
// same inputs and keys, the metadata naming the backend, the same output names and shapes, and
// values within tolerance. Label gpu: skips without a device (the refusals without a device
// are tests/cli/test_op_cuda_backend.cc's).
//
// Tolerance (FlashAttention-style, cuda-common.md): each file is also run with `--backend ref
// --precision f64` as the oracle; the CUDA output may err against it by at most twice the f32
// reference's worst error, plus a rounding floor of kSafety roundings of the output's
// magnitude (for outputs the f32 reference happens to get exactly). Special values (-inf
// scores, NaN) are compared first and exactly by all_close. engram_hash (integer arithmetic)
// and engram_lookup (copies) are compared bitwise. The kernels' own tests (tests/optimized/test_<op>.cc) cover the
// shapes, edge cases, quantised paths and reruns; these check the runner entries' plumbing
// (uploads, views, keys, output order, host-side value checks).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4::test {
namespace {

struct Input {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<double> real;    // F32 input (when ints is empty)
  std::vector<int64_t> ints;   // I64 input
};

size_t numel(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

Input rnd(std::string name, std::vector<int64_t> shape, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  const size_t n = numel(shape);
  return {std::move(name), std::move(shape), uniform(n, seed, lo, hi), {}};
}

Input ints(std::string name, std::vector<int64_t> shape, std::vector<int64_t> v) {
  return {std::move(name), std::move(shape), {}, std::move(v)};
}

// The outputs of one run: name -> values (integers as doubles) and shape.
struct Outputs {
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, DType> dtypes;
};

// Runs `dsv4 op` with `args` (backend and precision) on the inputs; status 0 expected.
Outputs run_op(const std::string& op, const std::vector<Input>& in, const std::string& sets, const std::string& args,
               const std::string& expect_backend) {
  TempDir t;
  SafetensorsWriter w;
  for (const auto& i : in) {
    if (!i.ints.empty())
      w.add(i.name, DType::I64, i.shape, i.ints.data(), i.ints.size() * sizeof(int64_t));
    else
      w.add_float(i.name, i.shape, i.real.data(), DType::F32);
  }
  w.write(t.file("in.safetensors"));
  const auto r = run_dsv4("op " + op + " " + args + " --in " + t.file("in.safetensors") + " --out " +
                              t.file("out.safetensors") + sets,
                          t);
  Outputs o;
  EXPECT_EQ(r.status, 0) << args << ": " << r.err;
  if (r.status != 0) return o;
  const SafetensorsReader rd(t.file("out.safetensors"));
  EXPECT_EQ(rd.metadata().at("backend"), expect_backend);
  for (const TensorInfo& info : rd.tensors()) {
    o.shapes[info.name] = info.shape;
    o.dtypes[info.name] = info.dtype;
    if (info.dtype == DType::I32 || info.dtype == DType::I64) {
      const std::vector<int64_t> v = rd.read_int(info);
      o.values[info.name].assign(v.begin(), v.end());
    } else {
      o.values[info.name] = rd.read_float<double>(info);
    }
  }
  return o;
}

// The three runs: CUDA, the f32 reference, the f64 reference (the oracle).
struct Runs {
  Outputs cuda, ref, exact;
};

Runs run_three(const std::string& op, const std::vector<Input>& in, const std::string& sets) {
  Runs r;
  r.cuda = run_op(op, in, sets, "--backend cuda", "cuda");
  r.ref = run_op(op, in, sets, "--backend ref", "ref");
  r.exact = run_op(op, in, sets, "--backend ref --precision f64", "ref");
  return r;
}

// Largest finite |a - e| and |e| over the entries where both are finite.
double max_err(const std::vector<double>& a, const std::vector<double>& e) {
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), e.size()); ++i)
    if (std::isfinite(a[i]) && std::isfinite(e[i])) m = std::max(m, std::fabs(a[i] - e[i]));
  return m;
}
double max_abs_finite(const std::vector<double>& v) {
  double m = 0;
  for (double x : v)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

// Output `name`: same shape and dtype on both backends, and the CUDA values within twice the
// f32 reference's error against f64 plus the rounding floor.
void expect_within_twice_ref_error(const Runs& r, const std::string& name) {
  SCOPED_TRACE(name);
  ASSERT_TRUE(r.cuda.values.count(name) && r.ref.values.count(name) && r.exact.values.count(name))
      << "an output '" << name << "' is missing";
  EXPECT_EQ(r.cuda.shapes.at(name), r.ref.shapes.at(name));
  EXPECT_EQ(r.cuda.dtypes.at(name), r.ref.dtypes.at(name));
  const auto& exact = r.exact.values.at(name);
  const double floor = kSafety * unit_roundoff<float>() * max_abs_finite(exact);
  const double tol = 2.0 * max_err(r.ref.values.at(name), exact) + floor;
  EXPECT_TRUE(all_close(r.cuda.values.at(name), exact, tol)) << "tol " << tol;
}

// The output names of both backends, in file order.
std::vector<std::string> names(const Outputs& o) {
  std::vector<std::string> n;
  for (const auto& [k, v] : o.shapes) n.push_back(k);
  return n;
}

// Visible index lists for CSA rows: a few of the N entries, some -1, some not yet visible to
// the early rows (the kernel skips those, as the reference).
std::vector<int64_t> csa_indices(int64_t T, int64_t k, int64_t N, uint64_t seed) {
  const std::vector<double> u = uniform(size_t(T * k), seed, 0.0, 1.0);
  std::vector<int64_t> idx(size_t(T * k));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = u[i] < 0.15 ? -1 : int64_t(u[i] * double(N)) % N;
  return idx;
}

TEST(OpBackendCudaAttention, IndexedAndDenseMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 5, H = 6, d = 128, N = 40, k = 16, window = 8, pos0 = 150;
  const int64_t Tk = T + window - 1;
  const std::vector<Input> common = {rnd("q", {T, H, d}, 11, -0.3, 0.3), rnd("kv", {Tk, d}, 12),
                                     rnd("comp", {N, d}, 13), rnd("sink", {H}, 14)};
  const std::string sets = " --set ratio=4 --set window=8 --set pos0=" + std::to_string(pos0);
  {
    SCOPED_TRACE("indexed (CSA)");
    std::vector<Input> in = common;
    in.push_back(ints("indices", {T, k}, csa_indices(T, k, N, 15)));
    const Runs r = run_three("attention", in, sets);
    EXPECT_EQ(names(r.cuda), names(r.ref));
    expect_within_twice_ref_error(r, "o");
    expect_within_twice_ref_error(r, "lse");
  }
  {
    SCOPED_TRACE("dense (HCA: every visible entry)");
    const Runs r = run_three("attention", common, sets);
    EXPECT_EQ(names(r.cuda), names(r.ref));
    expect_within_twice_ref_error(r, "o");
    expect_within_twice_ref_error(r, "lse");
  }
  {
    SCOPED_TRACE("window only (no comp)");
    const std::vector<Input> in = {common[0], common[1], common[3]};
    const Runs r = run_three("attention", in, sets);
    expect_within_twice_ref_error(r, "o");
    expect_within_twice_ref_error(r, "lse");
  }
}

// An index outside [-1, N): both backends refuse the file with the reference's message (the
// CUDA runner checks the values on the host; the kernel would treat it as -1).
TEST(OpBackendCudaAttention, BadIndexRefusedLikeRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 2, H = 2, d = 64, N = 8, k = 3;
  std::vector<int64_t> idx = {0, 1, -1, 2, 8, 3};  // 8 at [1, 1] is outside [-1, 8)
  const std::vector<Input> in = {rnd("q", {T, H, d}, 21), rnd("kv", {T, d}, 22), rnd("comp", {N, d}, 23),
                                 rnd("sink", {H}, 24), ints("indices", {T, k}, idx)};
  TempDir t;
  SafetensorsWriter w;
  for (const auto& i : in) {
    if (!i.ints.empty())
      w.add(i.name, DType::I64, i.shape, i.ints.data(), i.ints.size() * sizeof(int64_t));
    else
      w.add_float(i.name, i.shape, i.real.data(), DType::F32);
  }
  w.write(t.file("in.safetensors"));
  std::map<std::string, CmdResult> res;
  for (const std::string backend : {"ref", "cuda"})
    res[backend] = run_dsv4("op attention --backend " + backend + " --in " + t.file("in.safetensors") +
                                " --out " + t.file(backend + ".safetensors") + " --set pos0=100",
                            t);
  for (const auto& [backend, r] : res) {
    SCOPED_TRACE(backend);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("tensor 'indices': value 8 at [1, 1] is outside [-1, 8)"), std::string::npos) << r.err;
  }
}

// Scores within the rule above (-inf where not visible, compared exactly); the CUDA indices
// are exactly the top-k rule (descending score, ties to the lower index, -1 padding) applied
// to the CUDA scores, which is the kernel's promise (optimized/indexer.cuh).
TEST(OpBackendCudaIndexer, ScoresMatchRefAndIndicesFollowTheRule) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 4, HI = 8, dI = 32, N = 70, topk = 12, ratio = 4, pos0 = 90;
  const std::vector<Input> in = {rnd("q", {T, HI, dI}, 31), rnd("k", {N, dI}, 32), rnd("w", {T, HI}, 33, 0.1, 1.0)};
  const std::string sets = " --set ratio=4 --set topk=12 --set pos0=" + std::to_string(pos0);
  const Runs r = run_three("indexer", in, sets);
  EXPECT_EQ(names(r.cuda), names(r.ref));
  expect_within_twice_ref_error(r, "scores");
  ASSERT_TRUE(r.cuda.values.count("indices") && r.cuda.values.count("scores"));
  EXPECT_EQ(r.cuda.shapes.at("indices"), (std::vector<int64_t>{T, topk}));
  EXPECT_EQ(r.cuda.dtypes.at("indices"), r.ref.dtypes.at("indices"));
  const auto visible = [&](int64_t row, int64_t j) { return ratio * j + ratio - 1 <= pos0 + row; };
  const std::vector<int32_t> rule = naive::index_topk(T, N, topk, visible, r.cuda.values.at("scores"));
  const std::vector<double> want(rule.begin(), rule.end());
  EXPECT_TRUE(bitwise_equal(r.cuda.values.at("indices"), want));
}

// Both paths (prefill: one chunk; decode: token by token through the device state) without
// quantisation (the FP8 / FP4 paths are bitwise twins of the reference quantisers after the
// same float entries: tests/optimized/test_compressor.cc): entries and the state after T
// tokens (the score's -inf slots exactly). CSA (overlapping, m = 4) and HCA-like (m = 8, no
// overlap), a trailing partial block.
TEST(OpBackendCudaCompressor, PrefillAndDecodeMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 19, D = 96, dc = 64;
  for (const char* path : {"prefill", "decode"})
    for (const int64_t m : {int64_t(4), int64_t(8)}) {
      SCOPED_TRACE(std::string(path) + ", m = " + std::to_string(m));
      const int64_t c = m == 4 ? 2 : 1;
      const std::vector<Input> in = {rnd("x", {T, D}, 41), rnd("wkv", {c * dc, D}, 42, -0.2, 0.2),
                                     rnd("wgate", {c * dc, D}, 43, -0.2, 0.2), rnd("ape", {m, c * dc}, 44, -0.5, 0.5),
                                     rnd("norm", {dc}, 45, 0.5, 1.5)};
      const Runs r = run_three("compressor", in,
                               " --set ratio=" + std::to_string(m) + " --set quant=none --set path=" + path);
      EXPECT_EQ(names(r.cuda), names(r.ref));
      for (const std::string name : {"entries", "state_kv", "state_score"}) expect_within_twice_ref_error(r, name);
      EXPECT_EQ(r.cuda.shapes.at("entries"), (std::vector<int64_t>{T / m, dc}));
    }
}

// The n-gram rows are integer arithmetic: all three outputs bitwise the reference's, with a
// token map and a history (some -1: before the sequence).
TEST(OpBackendCudaEngram, HashMatchesRefBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t V = 50, T = 9;
  std::vector<int64_t> map(V), ids(T);
  for (int64_t i = 0; i < V; ++i) map[size_t(i)] = (7 * i + 3) % V;
  for (int64_t t = 0; t < T; ++t) ids[size_t(t)] = (11 * t + 5) % V;
  const std::vector<Input> in = {ints("ids", {T}, ids), ints("token_map", {V}, map), ints("history", {3}, {-1, 4, 17})};
  const std::string sets = " --set max_ngram=4 --set heads=2 --set vocab_size=101,103,107 --set layer=3"
                           " --set layer_index=1 --set n_layers=2 --set seed=9 --set pad_id=2";
  const Outputs cuda = run_op("engram_hash", in, sets, "--backend cuda", "cuda");
  const Outputs ref = run_op("engram_hash", in, sets, "--backend ref", "ref");
  EXPECT_EQ(names(cuda), names(ref));
  for (const std::string name : {"rows", "history", "primes"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(cuda.values.count(name) && ref.values.count(name));
    EXPECT_EQ(cuda.shapes.at(name), ref.shapes.at(name));
    EXPECT_TRUE(bitwise_equal(cuda.values.at(name), ref.values.at(name)));
  }
  EXPECT_EQ(cuda.shapes.at("rows"), (std::vector<int64_t>{T, 3 * 2}));
}

// A raw id outside the vocabulary: both backends refuse it with the same message (the CUDA
// runner shares the reference run's host-side checks, cli/op_engram.h).
TEST(OpBackendCudaEngram, HashBadIdRefusedLikeRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  TempDir t;
  SafetensorsWriter w;
  const std::vector<int64_t> ids = {1, 2, 60};
  w.add("ids", DType::I64, {3}, ids.data(), ids.size() * sizeof(int64_t));
  w.write(t.file("in.safetensors"));
  for (const std::string backend : {"ref", "cuda"}) {
    SCOPED_TRACE(backend);
    const auto r = run_dsv4("op engram_hash --backend " + backend + " --in " + t.file("in.safetensors") + " --out " +
                                t.file(backend + ".safetensors") + " --set heads=1 --set vocab_size=11,13 --set vocab=50",
                            t);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("tensor 'ids': value 60 at flat index 2 is outside the vocabulary [0, 50)"), std::string::npos)
        << r.err;
  }
}

// Lookup copies table rows: bitwise the reference's.
TEST(OpBackendCudaEngram, LookupMatchesRefBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t R = 37, de = 24, T = 6, slots = 4;
  std::vector<int64_t> rows(size_t(T * slots));
  const std::vector<double> u = uniform(rows.size(), 51, 0.0, 1.0);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = int64_t(u[i] * R) % R;
  const std::vector<Input> in = {rnd("table", {R, de}, 52), ints("rows", {T, slots}, rows)};
  const Outputs cuda = run_op("engram_lookup", in, "", "--backend cuda", "cuda");
  const Outputs ref = run_op("engram_lookup", in, "", "--backend ref", "ref");
  ASSERT_TRUE(cuda.values.count("e") && ref.values.count("e"));
  EXPECT_EQ(cuda.shapes.at("e"), (std::vector<int64_t>{T, slots * de}));
  EXPECT_TRUE(bitwise_equal(cuda.values.at("e"), ref.values.at("e")));
}

// The gated value, its norms and the causal convolution over a given history; the updated
// history is an output too.
TEST(OpBackendCudaEngram, MixMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 7, S = 2, D = 48, E = 40, K = 4, dil = 2, Hr = (K - 1) * dil;
  const std::vector<Input> in = {
      rnd("x", {T, S * D}, 61),        rnd("e", {T, E}, 62),
      rnd("value_w", {D, E}, 63, -0.2, 0.2), rnd("value_b", {D}, 64, -0.1, 0.1),
      rnd("key_w", {S, D, E}, 65, -0.2, 0.2), rnd("key_b", {S, D}, 66, -0.1, 0.1),
      rnd("key_norm", {S, D}, 67, 0.5, 1.5),  rnd("query_norm", {S, D}, 68, 0.5, 1.5),
      rnd("conv_w", {S * D, K}, 69, -0.5, 0.5), rnd("conv_norm", {S, D}, 70, 0.5, 1.5),
      rnd("history", {Hr, S * D}, 71)};
  const Runs r = run_three("engram_mix", in, " --set streams=2 --set kernel=4 --set dilation=2");
  EXPECT_EQ(names(r.cuda), names(r.ref));
  expect_within_twice_ref_error(r, "y");
  expect_within_twice_ref_error(r, "history");
}

}  // namespace
}  // namespace dsv4::test

namespace dsv4::test {
namespace {

// The whole sub-layer through dsv4 op (prefill from position 0; catl): a window-only and an HCA
// layer (the CSA selection can differ on near-tied scores, and FP8 rounding can flip near a grid
// boundary: tests/optimized/test_attention_layer.cc covers CSA and official numerics against the
// reference), exact numerics; y within twice the f32 reference's error of the f64 one. T = 140 passes the 128 window and completes one HCA block.
std::vector<Input> attention_layer_inputs(int64_t ratio) {
  constexpr int64_t T = 140, D = 64, H = 2, d = 128, q = 32, R = 32;
  std::vector<Input> in = {rnd("x", {T, D}, 51),
                           rnd("attn.attn_sink", {H}, 52, -1.0, 1.0),
                           rnd("attn.wq_a.weight", {q, D}, 53, -0.2, 0.2),
                           rnd("attn.q_norm.weight", {q}, 54, 0.5, 1.5),
                           rnd("attn.wq_b.weight", {H * d, q}, 55, -0.2, 0.2),
                           rnd("attn.wkv.weight", {d, D}, 56, -0.2, 0.2),
                           rnd("attn.kv_norm.weight", {d}, 57, 0.5, 1.5),
                           rnd("attn.wo_a.weight", {R, H * d}, 58, -0.1, 0.1),
                           rnd("attn.wo_b.weight", {D, R}, 59, -0.2, 0.2)};
  if (ratio > 0) {
    in.push_back(rnd("attn.compressor.wkv.weight", {d, D}, 60, -0.2, 0.2));
    in.push_back(rnd("attn.compressor.wgate.weight", {d, D}, 61, -0.2, 0.2));
    in.push_back(rnd("attn.compressor.ape", {ratio, d}, 62, -0.5, 0.5));
    in.push_back(rnd("attn.compressor.norm.weight", {d}, 63, 0.5, 1.5));
  }
  return in;
}

std::string attention_layer_sets(int64_t ratio, const std::string& numerics) {
  return " --set ratio=" + std::to_string(ratio) + " --set heads=2 --set head_dim=128 --set groups=1 --set numerics=" +
         numerics;
}

TEST(OpBackendCudaAttentionLayer, WindowOnlyAndHcaMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (const int64_t ratio : {int64_t(0), int64_t(128)}) {
    SCOPED_TRACE("ratio " + std::to_string(ratio));
    expect_within_twice_ref_error(
        run_three("attention_layer", attention_layer_inputs(ratio), attention_layer_sets(ratio, "exact")), "y");
  }
}

// The inputs above are a valid reference run (checked on every machine: no device needed).
TEST(OpBackendCudaAttentionLayer, InputsRunOnTheReference) {
  for (const int64_t ratio : {int64_t(0), int64_t(128)}) {
    const Outputs o = run_op("attention_layer", attention_layer_inputs(ratio), attention_layer_sets(ratio, "exact"),
                             "--backend ref", "ref");
    ASSERT_TRUE(o.values.count("y")) << "ratio " << ratio;
    EXPECT_EQ(o.shapes.at("y"), (std::vector<int64_t>{140, 64}));
  }
}

}  // namespace
}  // namespace dsv4::test
