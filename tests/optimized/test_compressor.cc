// dsv4::cuda::compressor_prefill and compressor_ingest (CSA / HCA token-level KV compressor;
// prefill, any chunking, decode, through the device state) against a double-precision oracle
// written from the spec and against the CPU twins ref::compressor_prefill<float> (entries)
// and ref::compressor_ingest<float> (states). Spec: docs/v4-architecture.md §2.3, §2.7, §2.8:
//   a_s = Wkv x_s, z_s = Wgate x_s + ape[s mod m]; entry i, channel ch: softmax over the
//   logits of blk(i) (HCA) or of blk(i-1)'s A half and blk(i)'s B half (CSA) of the values;
//   then RMSNorm, RoPE (last 64 dims, position i*m), the quantisation simulation.
// Oracle pieces: naive::linear, softmax, rmsnorm, v4_compressed_freqs, rope_interleaved
// (tests/support/naive.h). Label gpu: every test that needs a device skips, with the reason,
// when there is none; the host-side validation test runs everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optimized/compressor.cuh"
#include "optimized/device.cuh"
#include "reference/compressor.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/window_kv.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using test::Guarded;
using test::launch_and_sync;

constexpr float kNaN = test::kPoison;

struct Cfg {
  int64_t D, dc, m;
  bool overlap;
  int64_t T;  // tokens
  CompressorQuant quant = CompressorQuant::none;
  int64_t x_pad = 0, e_pad = 0;  // row strides beyond the widths
};
std::string describe(const Cfg& c) {
  const char* q = c.quant == CompressorQuant::none ? "none" : c.quant == CompressorQuant::fp8 ? "fp8" : "fp4_hadamard";
  return std::string(c.overlap ? "CSA" : "HCA") + " D=" + std::to_string(c.D) + " dc=" + std::to_string(c.dc) +
         " m=" + std::to_string(c.m) + " T=" + std::to_string(c.T) + " quant=" + q;
}

// Weights and tokens, every value exactly a float.
struct Model {
  Cfg c;
  int64_t W;                              // c*dc
  std::vector<double> x, wkv, wgate, ape, norm;  // [T, D], [W, D], [W, D], [m, W], [dc]
};

// n values k / denom, k uniform in [-8, 8]: with x in sixteenths and the weights in units of
// 1 / (16 s), every product is a multiple of 2^-8 / s and every partial sum of a projection
// is such a multiple below 2^24 units (|sum| <= D / 2 / s * ... << 2^24 / (256 s)), so the
// projections are exact in FP32 in any summation order.
std::vector<double> dyadic(size_t n, uint64_t seed, double denom) {
  std::vector<double> v = test::uniform(n, seed, -8.5, 8.5);
  for (double& x : v) x = std::round(x) / denom;
  return v;
}

// Random: uniform inputs (unit-scale projections). Exact: dyadic x and weights (exact
// projections, see dyadic()); ape and norm random in both.
Model make_model(const Cfg& c, uint64_t seed, bool exact_projections) {
  Model M{c, (c.overlap ? 2 : 1) * c.dc, {}, {}, {}, {}, {}};
  const double ws = 1.0 / std::sqrt(double(c.D));
  if (exact_projections) {
    const double s = std::ldexp(1.0, int(std::lround(std::log2(std::sqrt(double(c.D))))));
    M.x = dyadic(size_t(c.T * c.D), seed, 16.0);
    M.wkv = dyadic(size_t(M.W * c.D), seed + 1, 16.0 * s);
    M.wgate = dyadic(size_t(M.W * c.D), seed + 2, 8.0 * s);
  } else {
    M.x = test::float_exact(test::uniform(size_t(c.T * c.D), seed));
    M.wkv = test::float_exact(test::uniform(size_t(M.W * c.D), seed + 1, -ws, ws));
    M.wgate = test::float_exact(test::uniform(size_t(M.W * c.D), seed + 2, -2 * ws, 2 * ws));
  }
  M.ape = test::float_exact(test::uniform(size_t(c.m * M.W), seed + 3, -0.5, 0.5));
  M.norm = test::float_exact(test::uniform(size_t(c.dc), seed + 4, 0.5, 1.5));
  return M;
}

// Magnitudes the oracle measures for the tolerance.
struct Stats {
  double mag_a = 0, mag_z = 0;  // max over tokens and channels of sum_d |W_cd x_sd|
  double amax = 0;              // max |a|
  double rms_min = naive::kInf;  // min over entries of rms(C_i) before the norm
};

// §2.3 in double, quant none: entries [nb, dc], nb = T / m; the rows of blocks before
// first_block are left 0 and their tokens not projected (except blk(first_block - 1)'s).
std::vector<double> oracle(const Model& M, Stats& st, int64_t first_block = 0) {
  const Cfg& c = M.c;
  const int64_t nb = c.T / c.m, W = M.W;
  std::vector<double> a(size_t(c.T * W)), z(size_t(c.T * W));
  for (int64_t s = std::max<int64_t>(0, (first_block - 1) * c.m); s < c.T; ++s) {
    double ma = 0, mz = 0;
    const std::vector<double> as = naive::linear(M.wkv.data(), W, c.D, &M.x[size_t(s * c.D)], &ma);
    const std::vector<double> zs = naive::linear(M.wgate.data(), W, c.D, &M.x[size_t(s * c.D)], &mz);
    st.mag_a = std::max(st.mag_a, ma);
    st.mag_z = std::max(st.mag_z, mz);
    for (int64_t ch = 0; ch < W; ++ch) {
      a[size_t(s * W + ch)] = as[size_t(ch)];
      st.amax = std::max(st.amax, std::fabs(as[size_t(ch)]));
      z[size_t(s * W + ch)] = zs[size_t(ch)] + M.ape[size_t((s % c.m) * W + ch)];
    }
  }
  std::vector<double> out(size_t(nb * c.dc));
  for (int64_t i = first_block; i < nb; ++i) {
    double* e = &out[size_t(i * c.dc)];
    for (int64_t ch = 0; ch < c.dc; ++ch) {
      std::vector<double> logit, val;
      if (c.overlap && i > 0)
        for (int64_t k = 0; k < c.m; ++k) {
          logit.push_back(z[size_t(((i - 1) * c.m + k) * W + ch)]);
          val.push_back(a[size_t(((i - 1) * c.m + k) * W + ch)]);
        }
      const int64_t half = c.overlap ? c.dc : 0;
      for (int64_t k = 0; k < c.m; ++k) {
        logit.push_back(z[size_t((i * c.m + k) * W + half + ch)]);
        val.push_back(a[size_t((i * c.m + k) * W + half + ch)]);
      }
      const std::vector<double> p = naive::softmax(logit.data(), int64_t(logit.size()));
      double s = 0;
      for (size_t k = 0; k < p.size(); ++k) s += p[k] * val[k];
      e[ch] = s;
    }
    st.rms_min = std::min(st.rms_min, test::rms_of(e, c.dc));
    naive::rmsnorm(e, c.dc, M.norm.data(), kNormEps);
    naive::rope_interleaved(e + c.dc - naive::kRopeDim, double(i * c.m), naive::v4_compressed_freqs());
  }
  return out;
}

CompressorParams<float> params(const Cfg& c) {
  CompressorParams<float> p;
  p.shape = {c.D, c.dc, c.m, c.overlap};
  p.quant = c.quant;
  return p;
}

std::vector<float> run_ref(const Model& M) {
  const Cfg& c = M.c;
  const std::vector<float> x = test::cast<float>(M.x), wkv = test::cast<float>(M.wkv),
                           wg = test::cast<float>(M.wgate), ape = test::cast<float>(M.ape),
                           norm = test::cast<float>(M.norm);
  CompressorParams<float> p = params(c);
  p.w = {wkv.data(), wg.data(), ape.data(), norm.data()};
  std::vector<float> e(size_t(c.T / c.m * c.dc), kNaN);
  ref::compressor_prefill<float>(p, view2(x.data(), c.T, c.D), view2(e.data(), c.T / c.m, c.dc), nullptr);
  return e;
}

// The GPU op on a poisoned, canaried entries matrix (row stride dc + e_pad) from x with row
// stride D + x_pad; checks the canaries and a bitwise rerun. Returns the dense entries.
std::vector<float> run_gpu(const Model& M) {
  const Cfg& c = M.c;
  const int64_t nb = c.T / c.m;
  const Guarded gx{c.T, c.D, c.D + c.x_pad}, ge{nb, c.dc, c.dc + c.e_pad};
  cuda::DeviceBuffer<float> dx(gx.image(test::cast<float>(M.x))), dwkv(test::cast<float>(M.wkv)),
      dwg(test::cast<float>(M.wgate)), dape(test::cast<float>(M.ape)), dnorm(test::cast<float>(M.norm)),
      de(ge.poisoned());
  CompressorParams<float> p = params(c);
  p.w = {dwkv.data(), dwg.data(), dape.data(), dnorm.data()};
  cuda::CompressorWorkspace ws(c.T, p.shape);
  auto launch = [&] { cuda::compressor_prefill(p, gx.view<const float>(dx.data()), ge.view(de.data()), ws); };
  launch_and_sync(launch);
  const std::vector<float> img = de.download();
  EXPECT_TRUE(ge.canaries_intact(img));
  EXPECT_TRUE(test::rerun_bitwise(de, ge.poisoned(), img, launch)) << "rerun differs";
  return ge.extract(img);
}

// The reference's quantisation tail applied on the host to unquantised entries [rows, dc].
std::vector<float> host_quant(const Cfg& c, std::vector<float> e) {
  const int64_t rows = int64_t(e.size()) / c.dc;
  const View2<float> v = view2(e.data(), rows, c.dc);
  const int64_t dr = naive::kRopeDim;
  if (c.quant == CompressorQuant::fp8) {
    ref::quant_fp8<float>({v, v, kFp8KvBlock, c.dc - dr});
    ref::round_bf16_tail(v, c.dc - dr);
  } else if (c.quant == CompressorQuant::fp4_hadamard) {
    ref::hadamard<float>({v, v});
    ref::quant_fp4<float>({v, v, kFp4Block});
  }
  return e;
}

double max_err(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < want.size(); ++i) e = std::max(e, std::fabs(double(got[i]) - want[i]));
  return e;
}

// How an ingest run is driven (cuda::compressor_ingest): tokens [0, start) as one chunk first
// (the state a prefill leaves; upload_prep: the reference's state after them, uploaded), then
// tokens [start, T) in chunks of `chunk` (the last one shorter).
struct Drive {
  int64_t start = 0, chunk = 1;
  bool upload_prep = false;
};

// Tolerances of a state against the reference's (see check()).
struct StateTol {
  double kv = 0, score = 0;
};

// The state against the reference's: pos and shape; where score is -inf, exactly; kv and the
// finite scores within tol (a NaN fails).
void expect_state_near(const CompressorState<float>& got, const CompressorState<float>& want, const StateTol& tol,
                       const std::string& when) {
  SCOPED_TRACE(when);
  ASSERT_EQ(got.pos, want.pos);
  ASSERT_EQ(got.rows, want.rows);
  ASSERT_EQ(got.width, want.width);
  ASSERT_EQ(got.kv.size(), want.kv.size());
  ASSERT_EQ(got.score.size(), want.score.size());
  int64_t bad_inf = 0, bad_kv = 0, bad_score = 0;
  for (size_t i = 0; i < want.kv.size(); ++i) {
    const bool want_inf = std::isinf(want.score[i]) && want.score[i] < 0;
    const bool got_inf = std::isinf(got.score[i]) && got.score[i] < 0;
    if (want_inf != got_inf)
      ++bad_inf;
    else if (!want_inf && !(std::fabs(double(got.score[i]) - want.score[i]) <= tol.score))
      ++bad_score;
    if (!(std::fabs(double(got.kv[i]) - want.kv[i]) <= tol.kv)) ++bad_kv;
  }
  EXPECT_EQ(bad_inf, 0) << "score's -inf (empty slot) pattern differs";
  EXPECT_EQ(bad_kv, 0) << "kv values beyond " << tol.kv;
  EXPECT_EQ(bad_score, 0) << "finite scores beyond " << tol.score;
}

// The GPU ingest driven as `d` says, each chunk's entries written to a poisoned, canaried
// matrix (row stride dc + e_pad) from x with row stride D + x_pad; after every chunk the state
// (download_state) against ref::compressor_ingest<float>'s after the same chunks. Returns the
// dense entries emitted after the prefill, blocks floor(start/m) .. T/m - 1. The whole run
// is repeated on a new state: entries and final state bitwise identical.
std::vector<float> run_gpu_ingest(const Model& M, const Drive& d, const StateTol& tol) {
  const Cfg& c = M.c;
  const std::vector<float> x = test::cast<float>(M.x), wkv = test::cast<float>(M.wkv),
                           wg = test::cast<float>(M.wgate), ape = test::cast<float>(M.ape),
                           norm = test::cast<float>(M.norm);
  const Guarded gx{c.T, c.D, c.D + c.x_pad};
  cuda::DeviceBuffer<float> dx(gx.image(x)), dwkv(wkv), dwg(wg), dape(ape), dnorm(norm);
  CompressorParams<float> hp = params(c), p = params(c);
  hp.w = {wkv.data(), wg.data(), ape.data(), norm.data()};
  p.w = {dwkv.data(), dwg.data(), dape.data(), dnorm.data()};
  const View2<const float> xd = gx.view<const float>(dx.data());
  cuda::CompressorWorkspace ws(std::max(d.start, d.chunk), p.shape);

  struct Result {
    std::vector<float> entries;
    CompressorState<float> state;
  };
  auto once = [&](bool check_states) {
    CompressorState<float> rs = ref::compressor_state_init<float>(p.shape);
    std::vector<float> re;
    // One GPU chunk [t, t + n): its entries (poisoned, canaried), the count, the canaries.
    auto ingest = [&](cuda::DeviceCompressorState& st, int64_t t, int64_t n) {
      const int64_t E = cuda::compressor_entries_emitted(t, n, c.m);
      const Guarded ge{E, c.dc, c.dc + c.e_pad};
      cuda::DeviceBuffer<float> de(ge.poisoned());
      int64_t emitted = -1;
      launch_and_sync([&] { emitted = cuda::compressor_ingest(p, xd.slice_rows(t, n), st, ge.view(de.data()), ws); });
      EXPECT_EQ(emitted, E) << "tokens [" << t << ", " << t + n << ")";
      const std::vector<float> img = de.download();
      EXPECT_TRUE(ge.canaries_intact(img));
      return ge.extract(img);
    };
    if (d.start > 0) ref::compressor_ingest(hp, view2(x.data(), d.start, c.D), rs, re);
    std::unique_ptr<cuda::DeviceCompressorState> st =
        d.upload_prep && d.start > 0 ? std::make_unique<cuda::DeviceCompressorState>(rs)
                                     : std::make_unique<cuda::DeviceCompressorState>(p.shape);
    if (d.start > 0 && !d.upload_prep) {
      (void)ingest(*st, 0, d.start);
      if (check_states) expect_state_near(cuda::download_state(*st), rs, tol, "after the prefill chunk");
    }
    Result r;
    for (int64_t t = d.start; t < c.T; t += d.chunk) {
      const int64_t n = std::min(d.chunk, c.T - t);
      const std::vector<float> e = ingest(*st, t, n);
      r.entries.insert(r.entries.end(), e.begin(), e.end());
      if (check_states) {
        ref::compressor_ingest(hp, view2(x.data() + t * c.D, n, c.D), rs, re);
        expect_state_near(cuda::download_state(*st), rs, tol,
                          "after tokens [" + std::to_string(t) + ", " + std::to_string(t + n) + ")");
      }
    }
    r.state = cuda::download_state(*st);
    return r;
  };
  const Result first = once(true), again = once(false);
  EXPECT_TRUE(test::bitwise_equal(again.entries, first.entries)) << "rerun entries differ";
  EXPECT_TRUE(test::bitwise_equal(again.state.kv, first.state.kv)) << "rerun state kv differs";
  EXPECT_TRUE(test::bitwise_equal(again.state.score, first.state.score)) << "rerun state score differs";
  return first.entries;
}

// Tolerance of the unquantised entries against fp64 (random inputs), from the stages:
// the projections err by ta = reduction_tol<float>(D, mag_a) and tz (same for z); an absolute
// logit error tz is a relative weight error <= 2 tz after the normalisation, so the pooled
// value errs by dC <= ta + 2 tz amax + reduction_tol<float>(2m, amax); RMSNorm divides by
// rms(C) (itself off by <= dC), dy <= 2 dC / rms_min * max|norm|; RMSNorm and RoPE round a few
// times more: + 2 kSafety u max|y|.
double derived_tol(const Cfg& c, const Stats& st, double ymax, double wmax) {
  const double ta = test::reduction_tol<float>(double(c.D), st.mag_a);
  const double tz = test::reduction_tol<float>(double(c.D), st.mag_z);
  const double dC = ta + 2 * tz * st.amax + test::reduction_tol<float>(double(2 * c.m), st.amax);
  return 2 * dC / st.rms_min * wmax + 2 * test::kSafety * test::unit_roundoff<float>() * ymax;
}

// Unquantised entries: random inputs within derived_tol of fp64 (and within 2 of it of the
// float reference). Exact projections (dyadic inputs: a and z exact in both ops, the
// reference's blocked GEMM and cuBLAS alike): the GPU's error against fp64 at most 2x the
// float reference's plus a rounding floor of kSafety u max|entry| (pooling, norm and RoPE
// round a few times), and against the reference the sum of the two.
// Quantised: exactly the reference's quantisers applied to the GPU's own unquantised entries
// (quant_fp8 / quant_fp4 / hadamard are bitwise twins; the BF16 rounding is exact).
// With a Drive the GPU op is compressor_ingest (run_gpu_ingest), compared on the entries
// emitted after its prefill (blocks floor(start/m) ..) with the same rows of the fp64 oracle
// and of ref::compressor_prefill<float> of the whole sequence, and its states with the
// reference's: bitwise with exact projections (a and z exact; score = z + ape is one FP32 add
// in both), else within twice one side's projection error (kv: ta; score: tz plus the add's
// rounding u max|z + ape|).
void check(const Cfg& cfg, uint64_t seed, bool exact_projections, const Drive* drive = nullptr) {
  SCOPED_TRACE(describe(cfg) + (exact_projections ? " (exact projections)" : " (random)") +
               (drive ? " ingest from " + std::to_string(drive->start) + " in chunks of " +
                            std::to_string(drive->chunk) + (drive->upload_prep ? " (uploaded state)" : "")
                      : std::string()));
  Cfg plain = cfg;
  plain.quant = CompressorQuant::none;
  const Model M = make_model(plain, seed, exact_projections);
  Stats st;
  const int64_t b0 = drive ? drive->start / cfg.m : 0;  // first block compared
  std::vector<double> want = oracle(M, st, b0);
  want.erase(want.begin(), want.begin() + b0 * cfg.dc);
  StateTol stol;
  if (!exact_projections) {
    const double u = test::unit_roundoff<float>();
    stol.kv = 2 * test::reduction_tol<float>(double(cfg.D), st.mag_a);
    stol.score = 2 * (test::reduction_tol<float>(double(cfg.D), st.mag_z) + u * (st.mag_z + test::max_abs(M.ape)));
  }
  auto gpu = [&](const Model& m) { return drive ? run_gpu_ingest(m, *drive, stol) : run_gpu(m); };
  const std::vector<float> got = gpu(M);
  std::vector<float> ref = run_ref(M);
  ref.erase(ref.begin(), ref.begin() + b0 * cfg.dc);
  ASSERT_EQ(got.size(), want.size());
  for (float v : got) ASSERT_TRUE(std::isfinite(v)) << "non-finite entry";
  const double ymax = test::max_abs(want);
  if (exact_projections) {
    const double e_gpu = max_err(got, want), e_ref = max_err(ref, want);
    const double floor = test::kSafety * test::unit_roundoff<float>() * ymax;
    EXPECT_LE(e_gpu, 2.0 * e_ref + floor) << "GPU error " << e_gpu << " vs float reference " << e_ref;
    EXPECT_TRUE(test::all_close(got, ref, 3.0 * e_ref + floor)) << "against ref::compressor_prefill<float>";
  } else if (!want.empty()) {
    const double tol = derived_tol(plain, st, ymax, test::max_abs(M.norm));
    EXPECT_TRUE(test::all_close(got, want, tol)) << "against the fp64 oracle";
    EXPECT_TRUE(test::all_close(got, ref, 2 * tol)) << "against ref::compressor_prefill<float>";
  }
  if (cfg.quant != CompressorQuant::none) {
    Model Q = M;
    Q.c.quant = cfg.quant;
    EXPECT_TRUE(test::bitwise_equal(gpu(Q), host_quant(cfg, got)))
        << "quantised entries differ from the reference quantisers on the GPU's entries";
  }
}

// Edge lengths: no complete block, exactly one, a trailing partial block; CSA's first entry
// (no previous block) and HCA's 128-token blocks; strided x and entries.
TEST(CompressorCuda, EdgeLengthsCsaAndHca) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (bool exact : {false, true}) {
    for (int64_t T : {int64_t(3), int64_t(4), int64_t(13), int64_t(64)})
      check({64, 128, kCsaRatio, true, T, CompressorQuant::none, 5, 3}, 10 + uint64_t(T), exact);
    for (int64_t T : {int64_t(127), int64_t(128), int64_t(300)})
      check({64, 128, kHcaRatio, false, T, CompressorQuant::none, 0, 7}, 20 + uint64_t(T), exact);
  }
}

TEST(CompressorCuda, QuantisedEntriesMatchTheReferenceQuantisers) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({64, 512, kCsaRatio, true, 40, CompressorQuant::fp8}, 31, true);
  check({64, 512, kHcaRatio, false, 256, CompressorQuant::fp8}, 32, false);
  check({64, kIndexerDim, kCsaRatio, true, 40, CompressorQuant::fp4_hadamard}, 33, true);
}

// V4-Flash (D = 4096) CSA main entries (dc 512, fp8), indexer keys (dc 128, fp4_hadamard),
// HCA main entries (m 128); V4-Pro (D = 7168) CSA main entries.
TEST(CompressorCuda, RealShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({4096, kHeadDim, kCsaRatio, true, 64, CompressorQuant::fp8}, 41, true);
  check({4096, kIndexerDim, kCsaRatio, true, 64, CompressorQuant::fp4_hadamard}, 42, false);
  check({4096, kHeadDim, kHcaRatio, false, 256, CompressorQuant::fp8}, 43, false);
  check({7168, kHeadDim, kCsaRatio, true, 32, CompressorQuant::fp8}, 44, true);
}

// compressor_ingest under every chunking: whole, one token at a time (decode), 3, m - 1,
// m + 1, 2m + 3 (chunks starting mid-block, spanning several blocks, CSA's overlap reading the
// previous block from the state), CSA and HCA, each quantisation; entries against the whole
// sequence's prefill and the state after every chunk against the reference's (exact
// projections: bitwise states); one random-input run per kind for the tolerance path.
TEST(CompressorCuda, IngestAnyChunkingMatchesPrefillAndReferenceState) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (bool overlap : {true, false}) {
    const int64_t m = overlap ? kCsaRatio : kHcaRatio, T = 3 * m + 5;
    for (int64_t chunk : {T, int64_t(1), int64_t(3), m - 1, m + 1, 2 * m + 3}) {
      const Drive d{0, chunk, false};
      for (CompressorQuant q : {CompressorQuant::none, CompressorQuant::fp8, CompressorQuant::fp4_hadamard})
        check({64, kIndexerDim, m, overlap, T, q, 3, 5}, 60 + uint64_t(chunk), true, &d);
    }
    const Drive d{0, 3, false};
    check({64, kIndexerDim, m, overlap, T, CompressorQuant::none, 0, 0}, 70, false, &d);
  }
}

// Decode (one token per ingest) at a late position: the state left by a prefill of 5001
// tokens (mid-block), by the GPU's own ingest and uploaded from the reference, then tokens
// up to and past two more block boundaries.
TEST(CompressorCuda, DecodeAtALatePosition) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t kStart = 5001;
  for (bool overlap : {true, false}) {
    const int64_t m = overlap ? kCsaRatio : kHcaRatio;
    const int64_t T = (kStart / m + 2) * m + 1;
    for (bool upload : {false, true}) {
      const Drive d{kStart, 1, upload};
      check({64, kIndexerDim, m, overlap, T, upload ? CompressorQuant::none : CompressorQuant::fp8}, 80, true, &d);
    }
  }
}

// One decode step at V4-Flash shapes (D = 4096) that completes a block: CSA main entries
// (dc 512, fp8) and indexer keys (dc 128, fp4_hadamard) at token 7 (block 1, block 0 read
// from the state), HCA main entries (m 128, fp8) at token 127; states uploaded from the
// reference's prefill.
TEST(CompressorCuda, RealFlashShapesOneDecodeStep) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Drive csa{2 * kCsaRatio - 1, 1, true}, hca{kHcaRatio - 1, 1, true};
  check({4096, kHeadDim, kCsaRatio, true, 2 * kCsaRatio, CompressorQuant::fp8}, 91, true, &csa);
  check({4096, kIndexerDim, kCsaRatio, true, 2 * kCsaRatio, CompressorQuant::fp4_hadamard}, 92, false, &csa);
  check({4096, kHeadDim, kHcaRatio, false, kHcaRatio, CompressorQuant::fp8}, 93, false, &hca);
}

// Host side of the ingest, without a device: the count of entries, the reference's
// messages, a fresh state's download, an empty chunk, bad states and workspaces.
TEST(CompressorCuda, IngestHostSideWithoutDevice) {
  for (int64_t m : {int64_t(1), kCsaRatio, kHcaRatio})
    for (int64_t pos : {int64_t(0), int64_t(1), m - 1, m, 3 * m + 2})
      for (int64_t n : {int64_t(0), int64_t(1), m - 1, m, 2 * m + 3}) {
        int64_t want = 0;
        for (int64_t t = pos; t < pos + n; ++t) want += (t + 1) % m == 0;
        EXPECT_EQ(cuda::compressor_entries_emitted(pos, n, m), want) << "pos " << pos << " n " << n << " m " << m;
      }
  float dummy[64] = {};
  const CompressorShape shape{16, 64, kCsaRatio, true};
  CompressorParams<float> p;
  p.shape = shape;
  p.w = {dummy, dummy, dummy, dummy};
  cuda::CompressorWorkspace ws(0, shape);
  cuda::DeviceCompressorState st(shape);
  const CompressorState<float> fresh = cuda::download_state(st), want = ref::compressor_state_init<float>(shape);
  EXPECT_EQ(fresh.pos, 0);
  EXPECT_EQ(fresh.rows, want.rows);
  EXPECT_EQ(fresh.width, want.width);
  EXPECT_TRUE(test::bitwise_equal(fresh.kv, want.kv));
  EXPECT_TRUE(test::bitwise_equal(fresh.score, want.score));
  EXPECT_EQ(cuda::compressor_ingest(p, view2<const float>(dummy, 0, 16), st, view2(dummy, 0, 64), ws), 0);
  EXPECT_EQ(st.pos(), 0);

  auto same_error = [&](CompressorParams<float> q, View2<const float> x, const CompressorShape& state_shape,
                        const char* what) {
    SCOPED_TRACE(what);
    std::string ref_msg, gpu_msg;
    CompressorState<float> rs = ref::compressor_state_init<float>(state_shape);
    std::vector<float> re;
    try {
      ref::compressor_ingest<float>(q, x, rs, re);
    } catch (const InputError& err) {
      ref_msg = err.what();
    }
    cuda::DeviceCompressorState ds(state_shape);
    try {
      cuda::compressor_ingest(q, x, ds, view2(dummy, 0, 64), ws);
    } catch (const InputError& err) {
      gpu_msg = err.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
    EXPECT_EQ(ds.pos(), 0);
  };
  same_error(p, view2<const float>(dummy, 1, 15), shape, "x cols");
  same_error(p, view2<const float>(dummy, 1, 16), CompressorShape{16, 64, kCsaRatio, false}, "state shape");
  CompressorParams<float> q = p;
  q.shape.head_dim = 32;  // rope_dim 64 > head_dim
  same_error(q, view2<const float>(dummy, 1, 16), q.shape, "rope_dim > head_dim");
  // Entries rows other than the count (4 tokens from 0 emit one), the workspace's capacity
  // (0 tokens), a host state whose vectors do not match its shape.
  EXPECT_THROW(cuda::compressor_ingest(p, view2<const float>(dummy, 4, 16), st, view2(dummy, 0, 64), ws), InputError);
  EXPECT_THROW(cuda::compressor_ingest(p, view2<const float>(dummy, 4, 16), st, view2(dummy, 2, 64), ws), InputError);
  EXPECT_THROW(cuda::compressor_ingest(p, view2<const float>(dummy, 4, 16), st, view2(dummy, 1, 64), ws), InputError);
  EXPECT_THROW(cuda::compressor_ingest(p, view2<const float>(dummy, 1, 16), st, view2(dummy, 0, 64), ws), InputError);
  EXPECT_EQ(st.pos(), 0);
  CompressorState<float> bad = ref::compressor_state_init<float>(shape);
  bad.kv.pop_back();
  EXPECT_THROW(cuda::DeviceCompressorState{bad}, InputError);
}

// Host-side validation before any device work (a workspace of 0 tokens needs no device).
TEST(CompressorCuda, RejectsBadParamsBeforeLaunch) {
  float dummy[64] = {};
  const CompressorShape shape{16, 64, kCsaRatio, true};
  cuda::CompressorWorkspace ws(0, shape);
  auto same_error = [&](CompressorParams<float> p, View2<const float> x, View2<float> e, const char* what) {
    SCOPED_TRACE(what);
    std::string ref_msg, gpu_msg;
    try {
      ref::compressor_prefill<float>(p, x, e, nullptr);
    } catch (const InputError& err) {
      ref_msg = err.what();
    }
    try {
      cuda::compressor_prefill(p, x, e, ws);
    } catch (const InputError& err) {
      gpu_msg = err.what();
    }
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
  };
  CompressorParams<float> p;
  p.shape = shape;
  p.w = {dummy, dummy, dummy, dummy};
  const View2<const float> x = view2<const float>(dummy, 8, 16);
  same_error(p, x, view2(dummy, 3, 64), "entries rows");
  same_error(p, x, view2(dummy, 2, 32), "entries cols");
  same_error(p, view2<const float>(dummy, 8, 15), view2(dummy, 2, 64), "x cols");
  CompressorParams<float> q = p;
  q.shape.head_dim = 32;  // rope_dim 64 > head_dim
  same_error(q, x, view2(dummy, 2, 32), "rope_dim > head_dim");
  q = p;
  q.shape.dim = 0;
  same_error(q, view2<const float>(dummy, 8, 0), view2(dummy, 2, 64), "dim 0");
  // The workspace's capacity (0 tokens here) and the GPU's Hadamard limit.
  EXPECT_THROW(cuda::compressor_prefill(p, x, view2(dummy, 2, 64), ws), InputError);
  q = p;
  q.quant = CompressorQuant::fp4_hadamard;
  q.shape.head_dim = 96;
  EXPECT_THROW(cuda::compressor_prefill(q, x, view2(dummy, 2, 96), ws), InputError);
}

}  // namespace
}  // namespace dsv4
