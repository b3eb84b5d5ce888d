// model/backend_device.h — the CUDA backend's shell, run on the host: DeviceBackend over
// HostExec (tests/model/host_exec.h: host memory, the reference ops) against the reference
// backend on the tiny preset. The two compose the same ops in the same order, so the logits
// agree bit for bit wherever both run the same rows; where the device backend runs every row
// of the last layer's attention and the reference only the asked ones (Model asks the last
// layer for the logit rows only), GEMMs over more rows may round differently
// (reference/attention_layer.h, forward_rows), and the bound is the chunked-prefill one of
// tests/model/test_model.cc. Covers: prefill with every logit row, chunked prefill + decode,
// official numerics with the FP8 cache, MTP, Engram with tables in executor memory and with
// memory-mapped tables through the prefetch path, and the input errors. Without a device,
// make_cuda_backend refuses with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "model/backend_device.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "reference/errors.h"
#include "tests/model/host_exec.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

const ModelWeights& tiny_weights() {
  static const ModelWeights w = test::tiny_checkpoint_weights(4321, "backend-device");
  return w;
}

std::unique_ptr<Backend> host_device_backend(ModelWeights w, BackendOptions o,
                                             std::shared_ptr<test::HostExecCounts> counts = nullptr) {
  if (!counts) counts = std::make_shared<test::HostExecCounts>();
  return std::make_unique<DeviceBackend<test::HostExec>>("host-device", test::HostExec(counts), std::move(w), o);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

// The chunked-prefill bound of test_model.cc: a few float roundings per reduction, over
// D * layers, at the logits' magnitude, with its safety factor.
double logits_tol(const ModelConfig& c, const std::vector<float>& ref) {
  return test::reduction_tol<float>(double(c.dim * c.n_layers), test::max_abs(ref)) * 16;
}

using test::all_rows;

TEST(DeviceBackendShell, PrefillWithEveryRowIsBitwiseTheReference) {
  for (Numerics num : {Numerics::exact, Numerics::official}) {
    const KvLayout layout = num == Numerics::official ? KvLayout::fp8 : KvLayout::f32;
    Model ref(make_reference_backend(tiny_weights(), {num, layout}));
    Model dev(host_device_backend(tiny_weights(), {num, layout}));
    const auto ids = test::tiny_tokens(200, 5);  // past the 128 window, one HCA block, CSA entries
    Sequence a = ref.new_sequence(), b = dev.new_sequence();
    const auto rows = all_rows(200);
    const auto la = ref.forward(a, ids.data(), 200, rows).logits;
    const auto lb = dev.forward(b, ids.data(), 200, rows).logits;
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_EQ(max_abs_diff(la, lb), 0.0) << (num == Numerics::exact ? "exact" : "official");
    EXPECT_EQ(a.cache_bytes(), b.cache_bytes());
    // MTP module 0 over the same hidden states and the next tokens.
    std::vector<int32_t> next(ids.begin() + 1, ids.end());
    next.push_back(ids[0]);
    const auto ma = ref.mtp_forward(a, 0, next.data(), 200);
    const auto mb = dev.mtp_forward(b, 0, next.data(), 200);
    EXPECT_EQ(max_abs_diff(ma, mb), 0.0) << "MTP";
  }
}

TEST(DeviceBackendShell, ChunkedPrefillAndDecodeMatchTheReference) {
  Model ref(make_reference_backend(tiny_weights(), {Numerics::official, KvLayout::fp8}));
  Model dev(host_device_backend(tiny_weights(), {Numerics::official, KvLayout::fp8}));
  const auto ids = test::tiny_tokens(300, 9);
  Sequence a = ref.new_sequence(), b = dev.new_sequence();
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 290);
  const auto pa = ref.prefill(a, prompt, 64), pb = dev.prefill(b, prompt, 64);
  const double tol = logits_tol(ref.config(), pa);
  EXPECT_LE(max_abs_diff(pa, pb), tol);
  for (size_t t = 290; t < ids.size(); ++t) {
    const auto da = ref.decode(a, ids[t]), db = dev.decode(b, ids[t]);
    EXPECT_EQ(max_abs_diff(da, db), 0.0) << "decode at " << t;  // one row: the same rows run
  }
  EXPECT_EQ(a.pos, b.pos);
  EXPECT_EQ(a.cache_bytes(), b.cache_bytes());
}

TEST(DeviceBackendShell, AskedRowsAgreeWithTheReferenceWithinChunkRounding) {
  Model ref(make_reference_backend(tiny_weights(), {Numerics::exact, KvLayout::f32}));
  Model dev(host_device_backend(tiny_weights(), {Numerics::exact, KvLayout::f32}));
  const auto ids = test::tiny_tokens(150, 13);
  Sequence a = ref.new_sequence(), b = dev.new_sequence();
  const std::vector<int64_t> rows = {149, 3, 77, 3};
  const auto la = ref.forward(a, ids.data(), 150, rows).logits;
  const auto lb = dev.forward(b, ids.data(), 150, rows).logits;
  EXPECT_LE(max_abs_diff(la, lb), logits_tol(ref.config(), la));
}

ModelConfig engram_tiny() { return test::engram_tiny_config(); }

struct EngramDir {
  fs::path path = fs::temp_directory_path() / ("dsv4-engram-dev-" + std::to_string(std::random_device{}()));
  EngramDir() {
    WriteOptions o;
    o.force = true;
    write_random_checkpoint(engram_tiny(), 91, path.string(), 0, o);
  }
  ~EngramDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

TEST(DeviceBackendShell, EngramInExecutorMemoryAndPrefetchedFromMappedTables) {
  EngramDir dir;
  const ModelWeights w = load_checkpoint(dir.path.string());
  const auto ids = test::tiny_tokens(140, 17);
  Model ref(make_reference_backend(w, {Numerics::exact, KvLayout::f32}));
  Sequence a = ref.new_sequence();
  const auto rows = all_rows(100);
  const auto la = ref.forward(a, ids.data(), 100, rows).logits;
  std::vector<std::vector<float>> da;
  for (size_t t = 100; t < ids.size(); ++t) da.push_back(ref.decode(a, ids[t]));

  for (bool mapped : {false, true}) {
    LoadOptions lo;
    lo.map_engram_tables = mapped;
    auto counts = std::make_shared<test::HostExecCounts>();
    Model dev(host_device_backend(load_checkpoint(dir.path.string(), lo), {Numerics::exact, KvLayout::f32}, counts));
    Sequence b = dev.new_sequence();
    const auto lb = dev.forward(b, ids.data(), 100, rows).logits;
    EXPECT_EQ(max_abs_diff(la, lb), 0.0) << (mapped ? "mapped" : "in memory");
    for (size_t t = 100; t < ids.size(); ++t)
      EXPECT_EQ(max_abs_diff(da[t - 100], dev.decode(b, ids[t])), 0.0) << "decode at " << t;
    const int64_t calls = 2 * int64_t(1 + ids.size() - 100);  // 2 Engram layers, prefill + decodes
    // Every row movement launches one block per row: at most 100 tokens times the mHC streams
    // (the Engram residual add h += y is [100, S*D], not 100*S*D rows of one element).
    EXPECT_LE(counts->max_spread_rows, 100 * dev.config().hc_mult);
    if (mapped) {  // host-resident: every call prefetched ahead, waited for and released
      EXPECT_EQ(counts->prefetches, calls);
      EXPECT_EQ(counts->waits, calls);
      EXPECT_EQ(counts->releases, calls);
      EXPECT_EQ(counts->device_hashes, 0);
    } else {  // in executor memory: hashed and looked up there, nothing prefetched
      EXPECT_EQ(counts->device_hashes, calls);
      EXPECT_EQ(counts->prefetches, 0);
    }
    // A backend destroyed with a prefetch possibly in flight (here: one that never ran) waits
    // for each host-resident layer's copies before its e buffers are freed.
    auto gone = std::make_shared<test::HostExecCounts>();
    {
      Model m(host_device_backend(load_checkpoint(dir.path.string(), lo),
                                  {Numerics::exact, KvLayout::f32}, gone));
    }
    EXPECT_EQ(gone->drains, mapped ? 2 : 0);
  }
}

TEST(DeviceBackendShell, BadInputsAreRefusedWithTheirReason) {
  auto b = host_device_backend(tiny_weights(), {});
  const int32_t bad[2] = {5, int32_t(b->config().vocab_size)};
  auto x = b->alloc(2, b->config().dim);
  try {
    b->embed(bad, 2, *x);
    ADD_FAILURE() << "an id outside the vocabulary was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
  auto cache = b->new_cache(0);
  auto f = b->alloc(2, b->config().dim);
  EXPECT_THROW(b->attention(0, *x, {1, 0}, *f, *cache), InputError);  // rows not increasing
  EXPECT_THROW(b->new_cache(b->config().n_layers + b->config().n_mtp_layers), InputError);
  std::vector<float> logits(size_t(b->config().vocab_size));
  auto h = b->alloc(2, b->config().dim * b->config().hc_mult);
  EXPECT_THROW(b->head(*h, {2}, -1, logits.data()), InputError);  // row outside the chunk
  EXPECT_THROW(b->head(*h, {0}, 5, logits.data()), InputError);   // no MTP module 5
}

// Backend::expert (the expert-parallel owner's work): routed expert e over some rows with their
// weights, and the shared expert added to y; the shell equals the reference bit for bit, in
// both numerics, and an expert outside the backend's experts is refused.
TEST(DeviceBackendShell, SingleExpertsEqualTheReference) {
  for (Numerics num : {Numerics::exact, Numerics::official}) {
    auto ref = make_reference_backend(tiny_weights(), {num, KvLayout::f32});
    auto dev = host_device_backend(tiny_weights(), {num, KvLayout::f32});
    const auto& c = ref->config();
    const int64_t m = 5, D = c.dim;
    std::vector<float> x(size_t(m * D)), y0(size_t(m * D)), w = {0.5f, -1.25f, 2.0f, 0.0f, 1.0f};
    std::mt19937 g(3);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(g);
    for (auto& v : y0) v = nd(g);
    for (int64_t e : {int64_t(0), c.n_routed_experts - 1, int64_t(-1)}) {
      std::vector<float> out[2];
      int k = 0;
      for (Backend* b : {ref.get(), dev.get()}) {
        auto xb = b->alloc(m, D), yb = b->alloc(m, D);
        b->upload(*xb, x.data());
        b->upload(*yb, y0.data());  // the shared expert adds to it; a routed one overwrites it
        b->expert(1, e, *xb, w.data(), *yb);
        out[k].resize(x.size());
        b->download(*yb, out[k++].data());
      }
      EXPECT_EQ(out[0], out[1]) << "expert " << e;
      EXPECT_NE(out[0], y0) << "expert " << e;
    }
    auto xb = ref->alloc(m, D), yb = ref->alloc(m, D);
    EXPECT_THROW(ref->expert(1, c.n_routed_experts, *xb, w.data(), *yb), InputError);
    auto xd = dev->alloc(m, D), yd = dev->alloc(m, D);
    EXPECT_THROW(dev->expert(1, c.n_routed_experts, *xd, w.data(), *yd), InputError);
  }
}

TEST(CudaBackend, RefusesWithTheReasonWhenItCannotRun) {
  const std::string problem = cuda_backend_problem();
  if (problem.empty()) GTEST_SKIP() << "a CUDA device is available: tests/optimized/test_backend_cuda.cc runs the backend";
  try {
    make_cuda_backend(tiny_weights(), {});
    ADD_FAILURE() << "make_cuda_backend ran without a device";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(problem), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4
