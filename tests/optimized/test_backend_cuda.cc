// The CUDA model backend (model/backend_cuda.cc) against the reference backend on the tiny
// preset: prefill with every logit row, chunked prefill + decode, MTP, Engram (tables in device
// memory and host-resident through the prefetcher), both KV layouts (f32, fp8 deployment).
// Skips without a device. The composition itself is tested bit for bit on the host by
// tests/model/test_backend_device.cc; this suite checks the device arithmetic.
//
// Tolerances (FlashAttention-style, engineering.md §3):
//   exact numerics:    max|cuda - fp64| <= 2 max|ref32 - fp64| + floor, with fp64 the float64
//                      reference backend and floor the rounding of one D*layers reduction at
//                      the logits' magnitude: the CUDA path may be at most twice as far from
//                      the exact answer as the float reference is.
//   official numerics: the quantisation (FP8 activations, FP8 / FP4 cache) amplifies a one-ulp
//                      difference into a one-FP8-step flip, so elementwise bounds do not hold;
//                      the relative L2 distance cuda-vs-ref must stay below the quantisation
//                      noise itself (ref-official vs fp64-exact) and the argmax must agree.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "reference/errors.h"
#include "tests/support/device_harness.h"
#include "tests/support/tiny_model.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

const ModelWeights& tiny_weights() {
  static const ModelWeights w = test::tiny_checkpoint_weights(2468, "backend-cuda");
  return w;
}

using test::all_rows;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  }
  return m;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

int64_t argmax(const std::vector<float>& v, size_t row, size_t V) {
  return int64_t(std::max_element(v.begin() + row * V, v.begin() + (row + 1) * V) - (v.begin() + row * V));
}

double floor_tol(const ModelConfig& c, const std::vector<float>& ref) {
  return test::reduction_tol<float>(double(c.dim * c.n_layers), test::max_abs(ref));
}

TEST(CudaBackend, ExactPrefillDecodeAndMtpWithinTwiceTheFloatReferenceError) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto ids = test::tiny_tokens(260, 3);
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 250);
  Model f64(make_f64_backend(tiny_weights()));
  Model ref(make_reference_backend(tiny_weights(), {Numerics::exact, KvLayout::f32}));
  Model gpu(make_cuda_backend(tiny_weights(), {Numerics::exact, KvLayout::f32}));
  EXPECT_EQ(gpu.backend().name(), "cuda");
  Sequence s64 = f64.new_sequence(), sr = ref.new_sequence(), sg = gpu.new_sequence();
  const auto rows = all_rows(250);
  const auto l64 = f64.forward(s64, prompt.data(), 250, rows).logits;
  const auto lr = ref.forward(sr, prompt.data(), 250, rows).logits;
  const auto lg = gpu.forward(sg, prompt.data(), 250, rows).logits;
  const double bound = 2 * max_abs_diff(lr, l64) + floor_tol(ref.config(), l64);
  EXPECT_LE(max_abs_diff(lg, l64), bound) << "prefill";
  EXPECT_EQ(sg.cache_bytes(), sr.cache_bytes());
  // MTP over the prefill's hidden states.
  std::vector<int32_t> next(prompt.begin() + 1, prompt.end());
  next.push_back(ids[250]);
  const auto m64 = f64.mtp_forward(s64, 0, next.data(), 250), mr = ref.mtp_forward(sr, 0, next.data(), 250),
             mg = gpu.mtp_forward(sg, 0, next.data(), 250);
  EXPECT_LE(max_abs_diff(mg, m64), 2 * max_abs_diff(mr, m64) + floor_tol(ref.config(), m64)) << "MTP";
  for (size_t t = 250; t < ids.size(); ++t) {
    const auto d64 = f64.decode(s64, ids[t]), dr = ref.decode(sr, ids[t]), dg = gpu.decode(sg, ids[t]);
    EXPECT_LE(max_abs_diff(dg, d64), 2 * max_abs_diff(dr, d64) + floor_tol(ref.config(), d64)) << "decode " << t;
  }
}

TEST(CudaBackend, OfficialNumericsWithTheFp8CacheWithinQuantisationNoise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto ids = test::tiny_tokens(300, 7);
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + 290);
  const int64_t V = tiny_weights().config.vocab_size;
  Model f64(make_f64_backend(tiny_weights()));
  Model ref(make_reference_backend(tiny_weights(), {Numerics::official, KvLayout::fp8}));
  Model gpu(make_cuda_backend(tiny_weights(), {Numerics::official, KvLayout::fp8}));
  Sequence s64 = f64.new_sequence(), sr = ref.new_sequence(), sg = gpu.new_sequence();
  const auto p64 = f64.prefill(s64, prompt, 96), pr = ref.prefill(sr, prompt, 96), pg = gpu.prefill(sg, prompt, 96);
  EXPECT_LE(rel_l2(pg, pr), rel_l2(pr, p64)) << "chunked prefill";
  EXPECT_EQ(argmax(pg, 0, size_t(V)), argmax(pr, 0, size_t(V)));
  EXPECT_EQ(sg.cache_bytes(), sr.cache_bytes()) << "the fp8 layout holds the reference's bytes";
  for (size_t t = 290; t < ids.size(); ++t) {
    const auto d64 = f64.decode(s64, ids[t]), dr = ref.decode(sr, ids[t]), dg = gpu.decode(sg, ids[t]);
    EXPECT_LE(rel_l2(dg, dr), rel_l2(dr, d64)) << "decode " << t;
    EXPECT_EQ(argmax(dg, 0, size_t(V)), argmax(dr, 0, size_t(V))) << "decode " << t;
  }
}

TEST(CudaBackend, RerunsAreBitwiseIdentical) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto ids = test::tiny_tokens(140, 11);
  Model gpu(make_cuda_backend(tiny_weights(), {Numerics::official, KvLayout::fp8}));
  Sequence a = gpu.new_sequence(), b = gpu.new_sequence();
  const auto la = gpu.forward(a, ids.data(), 140, all_rows(140)).logits;
  const auto lb = gpu.forward(b, ids.data(), 140, all_rows(140)).logits;
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0);
}

ModelConfig engram_tiny() { return test::engram_tiny_config(); }

TEST(CudaBackend, EngramTablesOnTheDeviceAndPrefetchedFromHostMemory) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const fs::path dir = fs::temp_directory_path() / ("dsv4-engram-cuda-" + std::to_string(std::random_device{}()));
  WriteOptions wo;
  wo.force = true;
  write_random_checkpoint(engram_tiny(), 29, dir.string(), 0, wo);
  const ModelWeights w = load_checkpoint(dir.string());
  const auto ids = test::tiny_tokens(120, 23);
  Model f64(make_f64_backend(w));
  Model ref(make_reference_backend(w, {Numerics::exact, KvLayout::f32}));
  Sequence s64 = f64.new_sequence(), sr = ref.new_sequence();
  const auto rows = all_rows(100);
  const auto l64 = f64.forward(s64, ids.data(), 100, rows).logits, lr = ref.forward(sr, ids.data(), 100, rows).logits;
  std::vector<std::vector<float>> d64, dr;
  for (size_t t = 100; t < ids.size(); ++t) d64.push_back(f64.decode(s64, ids[t])), dr.push_back(ref.decode(sr, ids[t]));
  for (bool mapped : {false, true}) {
    LoadOptions lo;
    lo.map_engram_tables = mapped;
    Model gpu(make_cuda_backend(load_checkpoint(dir.string(), lo), {Numerics::exact, KvLayout::f32}));
    Sequence sg = gpu.new_sequence();
    const auto lg = gpu.forward(sg, ids.data(), 100, rows).logits;
    EXPECT_LE(max_abs_diff(lg, l64), 2 * max_abs_diff(lr, l64) + floor_tol(w.config, l64)) << "mapped " << mapped;
    for (size_t t = 100; t < ids.size(); ++t) {
      const auto dg = gpu.decode(sg, ids[t]);
      const size_t i = t - 100;
      EXPECT_LE(max_abs_diff(dg, d64[i]), 2 * max_abs_diff(dr[i], d64[i]) + floor_tol(w.config, d64[i]))
          << "mapped " << mapped << " decode " << t;
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(CudaBackend, RefusesTheBf16CacheAndNamesIt) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Model gpu(make_cuda_backend(tiny_weights(), {Numerics::exact, KvLayout::bf16}));
  try {
    gpu.new_sequence();
    ADD_FAILURE() << "a bf16 device cache was made";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4
