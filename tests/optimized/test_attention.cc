// dsv4::cuda::attention (optimized/attention.cuh) against a double-precision oracle written
// from the spec (docs/v4-architecture.md §2.5, §2.8) and against its CPU twin
// ref::attention<float>.
//
// Oracle (never calls the op): query row r has position p = pos0 + r; window kv row j has
// position pos0 + T - Tk + j and is attended iff that position lies in [p - window + 1, p];
// compressed entry j is visible iff ratio*j + ratio - 1 <= p; without indices every visible
// entry is attended (HCA), with indices the listed ones, skipping -1 and invisible ones, a
// duplicated index counting twice (CSA); then per head the softmax with a sink of
// naive::attend (tests/support/naive.h): s = scale q.e, lse = ln(exp(sink) + sum exp(s)),
// o = sum exp(s - lse) e. Every device run of attention() (automatic tile and split count) is
// rerun bitwise, and the single-pass kernel with each tile forced (attention_with_tile) must
// give one set of bits, equal to attention()'s whenever attention() does not split. Split-K
// (attention_with_split, forced S incl. empty and all-masked splits) meets the same oracle
// bounds with n + S terms, equals the single pass within twice them, reruns bitwise, and is
// bitwise the single pass when only split 0 holds slots. attention_fp8 (the 584-byte FP8
// cache entries) is checked against the f32 kernel on the test's own dequantisation, bitwise,
// with the automatic and forced split counts.
// Harness (skip without a device, NaN-poisoned outputs between canaries, bitwise reruns):
// tests/support/device_harness.h. Label gpu: every test that needs a device skips, with the
// reason, when there is none; the host-side rejections run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "optimized/attention.cuh"
#include "optimized/device.cuh"
#include "reference/attention.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/formats.h"
#include "reference/quant_fp8.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using test::Guarded;
using test::launch_and_sync;

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr int32_t kIndexGap = 0;  // index slots between strided rows: a valid index, so a
                                  // kernel reading the gap would change the result

// Real shapes (docs/v4-architecture.md §1.1): heads and indexer top-k of V4-Flash / V4-Pro.
constexpr int64_t kFlashHeads = 64, kProHeads = 128;
constexpr int64_t kFlashTopk = 512, kProTopk = 1024;
// An 8K-token context: 8192 / 4 = 2048 CSA entries, 8192 / 128 = 64 HCA entries.
constexpr int64_t kCtx = 8192;

// One attention problem, float inputs (the op's precision; the oracle reads the same values).
struct Case {
  int64_t T = 1, Tk = 1, N = 0, H = 2, d = 32, ratio = kCsaRatio, window = kWindow, pos0 = 0;
  double scale = 0;  // 0: 1/sqrt(d)
  std::vector<float> q, kv, comp, sink;
  bool sparse = false;
  int64_t k = 0;
  std::vector<int32_t> idx;  // [T, k] when sparse
  int64_t pad = 0;           // extra elements between rows of every device matrix (ld = cols + pad)
  bool with_lse = true;
};

// q, kv, comp ~ N(0, 1) (scores q.e/sqrt(d) of unit spread: the softmax is far from flat),
// sinks uniform in [-1, 2].
Case make_case(int64_t T, int64_t Tk, int64_t N, int64_t H, int64_t d, int64_t ratio,
               int64_t pos0, uint64_t seed) {
  Case c;
  c.T = T, c.Tk = Tk, c.N = N, c.H = H, c.d = d, c.ratio = ratio, c.pos0 = pos0;
  c.q = test::normal<float>(size_t(T * H * d), seed);
  c.kv = test::normal<float>(size_t(Tk * d), seed + 1);
  c.comp = test::normal<float>(size_t(N * d), seed + 2);
  c.sink = test::uniform<float>(size_t(H), seed + 3, -1.0, 2.0);
  return c;
}

// Random index rows: each slot -1 with probability p_neg, else uniform in [0, N): duplicates
// and entries not yet visible occur. N == 0 gives all -1.
void random_indices(Case& c, int64_t k, uint64_t seed, double p_neg = 0.1) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0, 1);
  c.sparse = true;
  c.k = k;
  c.idx.assign(size_t(c.T * k), -1);
  for (auto& j : c.idx)
    if (c.N > 0 && u(g) >= p_neg)
      j = int32_t(std::uniform_int_distribution<int64_t>(0, c.N - 1)(g));
}

// Index rows of k distinct visible entries (what the indexer's top-k gives once at least k
// entries are visible), in random order.
void topk_like_indices(Case& c, int64_t k, uint64_t seed) {
  std::mt19937_64 g(seed);
  c.sparse = true;
  c.k = k;
  c.idx.assign(size_t(c.T * k), -1);
  for (int64_t r = 0; r < c.T; ++r) {
    const int64_t nvis = std::clamp<int64_t>((c.pos0 + r + 1) / c.ratio, 0, c.N);
    std::vector<int32_t> all(static_cast<size_t>(nvis));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), g);
    for (int64_t i = 0; i < std::min(k, nvis); ++i) c.idx[size_t(r * k + i)] = all[size_t(i)];
  }
}

// ---------------------------------------------------------------------------------------
// The fp64 oracle.

struct Expect {
  std::vector<double> o, lse;  // [T, H*d], [T, H]
  naive::AttendStats st;       // magnitudes for the tolerances
  double lsemax = 0;           // max |lse|
  int64_t nmax = 0;            // most entries attended by one row
};

Expect oracle(const Case& c, int64_t window) {
  const int64_t T = c.T, H = c.H, d = c.d;
  const double scale = c.scale > 0 ? c.scale : 1.0 / std::sqrt(double(d));
  const std::vector<double> q(c.q.begin(), c.q.end()), kv(c.kv.begin(), c.kv.end()),
      comp(c.comp.begin(), c.comp.end());
  Expect x;
  x.o.assign(size_t(T * H * d), 0.0);
  x.lse.assign(size_t(T * H), 0.0);
  for (int64_t r = 0; r < T; ++r) {
    const int64_t p = c.pos0 + r;
    std::vector<const double*> ent;
    for (int64_t j = 0; j < c.Tk; ++j) {
      const int64_t pj = c.pos0 + T - c.Tk + j;
      if (pj >= p - window + 1 && pj <= p) ent.push_back(&kv[size_t(j * d)]);
    }
    auto visible = [&](int64_t j) { return c.ratio * j + c.ratio - 1 <= p; };
    if (!c.sparse) {
      for (int64_t j = 0; j < c.N; ++j)
        if (visible(j)) ent.push_back(&comp[size_t(j * d)]);
    } else {
      for (int64_t s = 0; s < c.k; ++s) {
        const int32_t j = c.idx[size_t(r * c.k + s)];
        if (j >= 0 && visible(j)) ent.push_back(&comp[size_t(j * d)]);
      }
    }
    x.nmax = std::max<int64_t>(x.nmax, int64_t(ent.size()));
    for (int64_t h = 0; h < H; ++h) {
      const double lse = naive::attend(&q[size_t((r * H + h) * d)], ent, d, d, scale,
                                       double(c.sink[size_t(h)]), &x.o[size_t((r * H + h) * d)], &x.st);
      x.lse[size_t(r * H + h)] = lse;
      x.lsemax = std::max(x.lsemax, std::fabs(lse));
    }
  }
  return x;
}
Expect oracle(const Case& c) { return oracle(c, c.window); }

// Tolerances against the oracle: naive::attend_tol_o / attend_tol_lse (derivation in
// tests/support/naive.h: a d-long FP32 score error turned into relative weight errors by exp,
// doubled by the normalisation, plus the n-long FP32 P.V sum; Z has nmax + 1 terms with the
// sink). They bound any FP32 implementation of the formula, so both the float reference
// (tests/reference/test_attention.cc checks it against the same bounds) and this kernel must
// meet them; the kernel against ref::attention<float>: twice (each errs by at most one bound).
// Split-K with S splits (attention.cuh): the same bounds with nmax + S terms (the combine adds
// S partials; splits = 1 is the single pass).
double tol_o(const Expect& x, int64_t d, int64_t splits = 1) {
  return naive::attend_tol_o<float>(x.st.smag, x.st.omag, d, x.nmax + (splits > 1 ? splits : 0));
}
double tol_lse(const Expect& x, int64_t d, int64_t splits = 1) {
  return naive::attend_tol_lse<float>(x.st.smag, x.lsemax, d, x.nmax + 1 + (splits > 1 ? splits : 0));
}
constexpr double kTwoImpls = 2.0;

// ---------------------------------------------------------------------------------------
// Running the op on the device and the reference on the host.

struct Out {
  std::vector<float> o, lse;  // dense [T, H*d], [T, H]
};

// Device copies of a case's inputs (strided by pad, sentinels in the gaps: a kernel reading
// a gap sees -7.25e30 and fails the comparison).
struct DeviceCase {
  Guarded gq, gkv, gcomp, go, glse;
  cuda::DeviceBuffer<float> q, kv, comp, sink, o, lse;
  cuda::DeviceBuffer<int32_t> idx;
  int64_t idx_ld = 0;

  explicit DeviceCase(const Case& c)
      : gq{c.T, c.H * c.d, c.H * c.d + c.pad},
        gkv{c.Tk, c.d, c.d + c.pad},
        gcomp{c.N, c.d, c.d + c.pad},
        go{c.T, c.H * c.d, c.H * c.d + c.pad},
        glse{c.T, c.H, c.H + c.pad},
        q(gq.image(c.q)),
        kv(gkv.image(c.kv)),
        comp(gcomp.image(c.comp)),
        sink(c.sink),
        o(go.poisoned()),
        lse(glse.poisoned()) {
    if (c.sparse) {
      idx_ld = c.k + c.pad;
      std::vector<int32_t> img(size_t(std::max<int64_t>(1, c.T * idx_ld)), kIndexGap);
      for (int64_t r = 0; r < c.T; ++r)
        std::copy_n(&c.idx[size_t(r * c.k)], c.k, &img[size_t(r * idx_ld)]);
      idx = cuda::DeviceBuffer<int32_t>(img);
    }
  }

  AttentionParams<float> params(const Case& c) {
    AttentionParams<float> p;
    p.q = gq.view<const float>(q.data());
    p.kv = gkv.view<const float>(kv.data());
    p.comp = gcomp.view<const float>(comp.data());
    p.sink = sink.data();
    if (c.sparse) p.indices = {idx.data(), c.T, c.k, idx_ld};
    p.heads = c.H;
    p.ratio = c.ratio;
    p.window = c.window;
    p.scale = c.scale;
    p.pos0 = c.pos0;
    p.o = go.view(o.data());
    if (c.with_lse) p.lse = glse.view(lse.data());
    return p;
  }
};

Out run_ref(const Case& c) {
  Out out;
  out.o.assign(size_t(c.T * c.H * c.d), test::kPoison);
  out.lse.assign(size_t(c.T * c.H), test::kPoison);
  AttentionParams<float> p;
  p.q = view2(c.q.data(), c.T, c.H * c.d);
  p.kv = view2(c.kv.data(), c.Tk, c.d);
  p.comp = view2(c.comp.data(), c.N, c.d);
  p.sink = c.sink.data();
  if (c.sparse) p.indices = view2(c.idx.data(), c.T, c.k);
  p.heads = c.H;
  p.ratio = c.ratio;
  p.window = c.window;
  p.scale = c.scale;
  p.pos0 = c.pos0;
  p.o = view2(out.o.data(), c.T, c.H * c.d);
  p.lse = view2(out.lse.data(), c.T, c.H);
  ref::attention(p);
  return out;
}

// The split count attention() picks for case c on this device (attention.cuh's rule).
int64_t auto_splits(const Case& c) {
  int device = 0, sms = 0;
  DSV4_CUDA_CHECK(cudaGetDevice(&device));
  DSV4_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t wide = c.T * ((c.H + cuda::kAttentionPrefillHeads - 1) / cuda::kAttentionPrefillHeads);
  if (wide >= 2 * int64_t(sms)) return 1;  // the prefill tile never splits
  const int64_t slots = std::min(c.window, c.Tk) + (c.sparse ? c.k : c.N);
  return cuda::attention_auto_splits(c.T, c.H, slots, sms);
}

struct GpuRun {
  Out automatic;  // attention(): the automatic tile and split count
  Out single;     // attention_with_tile(automatic): the single-pass kernel
  int64_t splits;  // what attention() used
};

// Runs the op with the automatic tile and split count, checks canaries, the inputs left
// untouched and a bitwise rerun; then the single-pass kernel with each tile (both tiles give
// the same bits: one warp per head computes the same chunks in the same order whatever the
// tile), equal to attention()'s bits when attention() did not split. Returns both (dense).
GpuRun run_gpu(const Case& c) {
  DeviceCase dc(c);
  const AttentionParams<float> p = dc.params(c);
  launch_and_sync([&] { cuda::attention(p); });
  const std::vector<float> o_img = dc.o.download(), lse_img = dc.lse.download();
  EXPECT_TRUE(dc.go.canaries_intact(o_img)) << "o";
  EXPECT_TRUE(dc.glse.canaries_intact(lse_img)) << "lse";
  if (!c.with_lse) {
    EXPECT_TRUE(test::bitwise_equal(lse_img, dc.glse.poisoned())) << "lse written though absent";
  }
  EXPECT_TRUE(test::bitwise_equal(dc.q.download(), dc.gq.image(c.q))) << "the op wrote into q";
  EXPECT_TRUE(test::bitwise_equal(dc.kv.download(), dc.gkv.image(c.kv))) << "the op wrote into kv";
  EXPECT_TRUE(test::bitwise_equal(dc.comp.download(), dc.gcomp.image(c.comp))) << "the op wrote into comp";
  dc.lse.upload(dc.glse.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dc.o, dc.go.poisoned(), o_img, [&] { cuda::attention(p); }))
      << "o of attention() differs from its first run";
  EXPECT_TRUE(test::bitwise_equal(dc.lse.download(), lse_img)) << "lse of attention() differs from its first run";

  dc.lse.upload(dc.glse.poisoned());
  dc.o.upload(dc.go.poisoned());
  launch_and_sync([&] { cuda::attention_with_tile(p, cuda::AttentionTile::automatic); });
  const std::vector<float> o1_img = dc.o.download(), lse1_img = dc.lse.download();
  EXPECT_TRUE(dc.go.canaries_intact(o1_img)) << "single-pass o";
  EXPECT_TRUE(dc.glse.canaries_intact(lse1_img)) << "single-pass lse";
  for (const cuda::AttentionTile tile : {cuda::AttentionTile::decode, cuda::AttentionTile::prefill}) {
    SCOPED_TRACE("rerun with tile " + std::to_string(int(tile)));
    dc.lse.upload(dc.glse.poisoned());
    EXPECT_TRUE(test::rerun_bitwise(dc.o, dc.go.poisoned(), o1_img,
                                    [&] { cuda::attention_with_tile(p, tile); }))
        << "o differs from the single pass with the automatic tile";
    EXPECT_TRUE(test::bitwise_equal(dc.lse.download(), lse1_img)) << "lse differs from the single pass";
  }
  const int64_t splits = auto_splits(c);
  if (splits == 1) {
    EXPECT_TRUE(test::bitwise_equal(o1_img, o_img)) << "attention() did not split: single-pass bits expected";
    EXPECT_TRUE(test::bitwise_equal(lse1_img, lse_img)) << "attention() did not split: single-pass bits expected";
  }
  return {{dc.go.extract(o_img), dc.glse.extract(lse_img)}, {dc.go.extract(o1_img), dc.glse.extract(lse1_img)}, splits};
}

// The full check of one case: the device result against the fp64 oracle and against
// ref::attention<float>; special values (NaN poison, +-inf) are compared exactly first by
// all_close. Returns the device result.
Out check(const Case& c) {
  SCOPED_TRACE(::testing::Message() << "T " << c.T << " Tk " << c.Tk << " N " << c.N << " H "
                                    << c.H << " d " << c.d << " ratio " << c.ratio << " window "
                                    << c.window << " pos0 " << c.pos0 << " k "
                                    << (c.sparse ? c.k : -1) << " pad " << c.pad);
  const Expect x = oracle(c);
  const GpuRun run = run_gpu(c);
  const Out ref = run_ref(c);
  EXPECT_TRUE(test::all_close(ref.o, x.o, tol_o(x, c.d))) << "test setup: ref::attention<float> outside the bound";
  for (const auto& [got, splits, what] : {std::tuple{&run.automatic, run.splits, "attention()"},
                                          std::tuple{&run.single, int64_t(1), "single pass"}}) {
    SCOPED_TRACE(std::string(what) + ", splits " + std::to_string(splits));
    const double to = tol_o(x, c.d, splits), tl = tol_lse(x, c.d, splits);
    EXPECT_TRUE(test::all_close(got->o, x.o, to)) << "o against the fp64 oracle";
    EXPECT_TRUE(test::all_close(got->o, ref.o, kTwoImpls * to)) << "o against ref::attention<float>";
    if (c.with_lse) {
      EXPECT_TRUE(test::all_close(got->lse, x.lse, tl)) << "lse against the fp64 oracle";
      EXPECT_TRUE(test::all_close(got->lse, ref.lse, kTwoImpls * tl)) << "lse against ref::attention<float>";
    }
  }
  return run.automatic;
}

// ---------------------------------------------------------------------------------------
// Split-K forced (attention_with_split): poisoned outputs between canaries, a bitwise rerun.

Out run_split(const Case& c, int64_t splits) {
  DeviceCase dc(c);
  const AttentionParams<float> p = dc.params(c);
  launch_and_sync([&] { cuda::attention_with_split(p, splits); });
  const std::vector<float> o_img = dc.o.download(), lse_img = dc.lse.download();
  EXPECT_TRUE(dc.go.canaries_intact(o_img)) << "split o";
  EXPECT_TRUE(dc.glse.canaries_intact(lse_img)) << "split lse";
  if (!c.with_lse) {
    EXPECT_TRUE(test::bitwise_equal(lse_img, dc.glse.poisoned())) << "lse written though absent";
  }
  dc.lse.upload(dc.glse.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dc.o, dc.go.poisoned(), o_img, [&] { cuda::attention_with_split(p, splits); }))
      << "split o differs from its first run";
  EXPECT_TRUE(test::bitwise_equal(dc.lse.download(), lse_img)) << "split lse differs from its first run";
  return {dc.go.extract(o_img), dc.glse.extract(lse_img)};
}

// Slots of each split (attention.cuh): ceil(ceil(n_max / 32) / S) chunks of 32, n_max the
// most slots of any row; and the most slots any row of c actually has.
int64_t split_len(const Case& c, int64_t splits) {
  const int64_t n_max = std::min(c.window, c.Tk) + (c.sparse ? c.k : c.N);
  const int64_t chunks = (n_max + cuda::kAttentionChunk - 1) / cuda::kAttentionChunk;
  return (chunks + splits - 1) / splits * cuda::kAttentionChunk;
}
int64_t most_slots(const Case& c) {
  int64_t n = 0;
  for (int64_t r = 0; r < c.T; ++r) {
    const int64_t p = c.pos0 + r, base = c.pos0 + c.T - c.Tk;
    const int64_t nw = p - base - std::max<int64_t>(0, p - c.window + 1 - base) + 1;
    n = std::max(n, nw + (c.sparse ? c.k : std::clamp<int64_t>((p + 1) / c.ratio, 0, c.N)));
  }
  return n;
}

// Each forced S against the fp64 oracle and ref::attention<float> (bounds with n + S terms),
// against the single pass (within twice the bound: each meets it), and bitwise the single
// pass when every row's slots fit in split 0 (the later splits empty: the combine is exact).
void check_splits(const Case& c, std::initializer_list<int64_t> splits) {
  SCOPED_TRACE(::testing::Message() << "split T " << c.T << " Tk " << c.Tk << " N " << c.N << " H "
                                    << c.H << " d " << c.d << " pos0 " << c.pos0 << " k "
                                    << (c.sparse ? c.k : -1) << " pad " << c.pad);
  const Expect x = oracle(c);
  const Out ref = run_ref(c);
  const Out single = run_gpu(c).single;
  for (const int64_t S : splits) {
    SCOPED_TRACE("forced splits " + std::to_string(S));
    const Out got = run_split(c, S);
    const double to = tol_o(x, c.d, S), tl = tol_lse(x, c.d, S);
    EXPECT_TRUE(test::all_close(got.o, x.o, to)) << "o against the fp64 oracle";
    EXPECT_TRUE(test::all_close(got.o, ref.o, kTwoImpls * to)) << "o against ref::attention<float>";
    EXPECT_TRUE(test::all_close(got.o, single.o, kTwoImpls * to)) << "o against the single pass";
    if (c.with_lse) {
      EXPECT_TRUE(test::all_close(got.lse, x.lse, tl)) << "lse against the fp64 oracle";
      EXPECT_TRUE(test::all_close(got.lse, ref.lse, kTwoImpls * tl)) << "lse against ref::attention<float>";
      EXPECT_TRUE(test::all_close(got.lse, single.lse, kTwoImpls * tl)) << "lse against the single pass";
    }
    if (most_slots(c) <= split_len(c, S)) {
      EXPECT_TRUE(test::bitwise_equal(got.o, single.o)) << "only split 0 holds slots: single-pass bits";
      EXPECT_TRUE(test::bitwise_equal(got.lse, single.lse)) << "only split 0 holds slots: single-pass bits";
    }
  }
}

// ---------------------------------------------------------------------------------------
// Layer kinds on small shapes (H = 5: a partial head tile in both tiles).

TEST(AttentionCuda, DenseHca) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // Prefill from 0 over 300 tokens: 2 complete 128-blocks, the first visible from row 127.
  check(make_case(300, 300, 2, 5, 64, kHcaRatio, 0, 100));
  // A chunk at pos0 = 1400 with kv reaching back past the window; entries 10, 11 invisible.
  check(make_case(3, 140, 12, 5, 64, kHcaRatio, 1400, 110));
}

TEST(AttentionCuda, IndexedCsa) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // -1 padding, duplicates and not-yet-visible indices from random_indices.
  Case c = make_case(150, 150, 37, 5, 64, kCsaRatio, 0, 200);
  random_indices(c, 40, 201);
  check(c);
  // Every slot the same visible entry, or -1: a duplicate counts every time.
  Case dup = make_case(4, 130, 20, 5, 64, kCsaRatio, 300, 210);
  dup.sparse = true;
  dup.k = 9;
  dup.idx.assign(size_t(dup.T * dup.k), 7);
  for (size_t i = 0; i < dup.idx.size(); i += 3) dup.idx[i] = -1;
  check(dup);
}

TEST(AttentionCuda, WindowOnly) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(make_case(200, 200, 0, 5, 64, kCsaRatio, 0, 300));  // dense, N = 0
  Case c = make_case(20, 20, 0, 5, 64, kCsaRatio, 0, 310);  // indices given, all -1 (N = 0)
  random_indices(c, 6, 311);
  check(c);
}

TEST(AttentionCuda, DecodeLatePosition) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // T = 1 at pos0 = 5000: kv = the last 128 window entries.
  check(make_case(1, kWindow, 39, 5, 64, kHcaRatio, 5000, 400));  // HCA: (5001)/128 = 39
  Case c = make_case(1, kWindow, 1260, 5, 64, kCsaRatio, 5000, 410);  // 1250 visible of 1260
  random_indices(c, 64, 411);
  check(c);
}

TEST(AttentionCuda, PrefillLongerThanWindow) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case c = make_case(200, 330, 90, 5, 64, kCsaRatio, 130, 500);  // chunk after 130 tokens
  random_indices(c, 24, 501);
  check(c);
  check(make_case(300, 300, 2, 5, 64, kHcaRatio, 0, 510));
}

// Explicit scale, a small window, sink = -inf (no sink), no lse output.
TEST(AttentionCuda, ScaleWindowNoSinkNoLse) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case c = make_case(40, 40, 10, 5, 64, kCsaRatio, 0, 600);
  c.scale = 0.3;
  c.window = 5;
  check(c);
  Case ns = make_case(60, 60, 15, 5, 64, kCsaRatio, 0, 610);
  random_indices(ns, 6, 611);
  std::fill(ns.sink.begin(), ns.sink.end(), -kInfF);
  check(ns);
  ns.with_lse = false;
  check(ns);
}

// Edge lengths: Tk < window, one entry, k = 1, N = 1, one head; head dims around the float4
// and 128-column steps (1, 20 and 36: scalar loads; 130: a partial second step; 512).
TEST(AttentionCuda, EdgeLengths) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(make_case(1, 1, 0, 1, 32, kCsaRatio, 0, 700));        // one entry in all
  check(make_case(1, 6, 1, 3, 32, kCsaRatio, 5, 710));        // Tk < window, N = 1 visible
  check(make_case(2, 6, 3, 3, 32, kCsaRatio, 4, 720));        // N = 3, entries 1, 2 invisible
  Case k1 = make_case(9, 9, 2, 3, 32, kCsaRatio, 0, 730);     // k = 1
  random_indices(k1, 1, 731, 0.0);
  check(k1);
  for (int64_t d : {1, 20, 36, 130, 512}) check(make_case(33, 40, 9, 3, d, kCsaRatio, 7, 740 + uint64_t(d)));
}

// Strided rows: pad 4 keeps the float4 path (16-byte rows), pad 3 forces the scalar loads.
TEST(AttentionCuda, StridedViews) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t pad : {3, 4}) {
    Case c = make_case(70, 80, 20, 5, 64, kCsaRatio, 10, 800 + uint64_t(pad));
    random_indices(c, 12, 801);
    c.pad = pad;
    check(c);
  }
}

// Index values outside [-1, N) (which the reference rejects and the kernel cannot check on the
// host) are skipped like -1, never read: the same bits as with -1 in their place.
TEST(AttentionCuda, OutOfRangeIndicesAreSkipped) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case c = make_case(8, 8, 2, 3, 32, kCsaRatio, 0, 900);
  random_indices(c, 5, 901);
  Case bad = c;
  for (size_t i = 0; i < bad.idx.size(); i += 2) bad.idx[i] = (i % 4 == 0) ? int32_t(c.N + 5) : -7;
  Case minus = bad;
  for (auto& j : minus.idx)
    if (j < -1 || j >= c.N) j = -1;
  const GpuRun a = run_gpu(bad), b = run_gpu(minus);
  EXPECT_TRUE(test::bitwise_equal(a.automatic.o, b.automatic.o));
  EXPECT_TRUE(test::bitwise_equal(a.automatic.lse, b.automatic.lse));
  EXPECT_TRUE(test::bitwise_equal(a.single.o, b.single.o));
  EXPECT_TRUE(test::bitwise_equal(a.single.lse, b.single.lse));
  const Out sa = run_split(bad, 3), sb = run_split(minus, 3);  // split-K skips them too
  EXPECT_TRUE(test::bitwise_equal(sa.o, sb.o));
  EXPECT_TRUE(test::bitwise_equal(sa.lse, sb.lse));
}

// Non-vacuity: the oracle with a window one shorter disagrees with the kernel by more than
// the tolerance, and so does the oracle with duplicates removed.
TEST(AttentionCuda, ToleranceDetectsOffByOne) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case c = make_case(150, 150, 30, 4, 64, kCsaRatio, 0, 1000);
  c.sparse = true;
  c.k = 4;
  c.idx.assign(size_t(c.T * c.k), 0);  // entry 0 four times (visible from row 3)
  const Expect good = oracle(c), bad = oracle(c, c.window - 1);
  Case single = c;
  for (int64_t r = 0; r < c.T; ++r)
    for (int64_t s = 1; s < c.k; ++s) single.idx[size_t(r * c.k + s)] = -1;
  const Expect dedup = oracle(single);
  const GpuRun run = run_gpu(c);
  const int64_t forced = 3;
  for (const auto& [got, splits] : {std::pair{run.single, int64_t(1)}, std::pair{run.automatic, run.splits},
                                    std::pair{run_split(c, forced), forced}}) {
    SCOPED_TRACE("splits " + std::to_string(splits));
    EXPECT_TRUE(test::all_close(got.o, good.o, tol_o(good, c.d, splits)));
    EXPECT_FALSE(test::all_close(got.o, bad.o, tol_o(good, c.d, splits)));
    EXPECT_FALSE(test::all_close(got.o, dedup.o, tol_o(good, c.d, splits)));
  }
}

// ---------------------------------------------------------------------------------------
// Real V4 shapes at an 8K context (d = 512, window 128): N = 2048 CSA entries with the
// indexer's top-k, N = 64 HCA entries dense, and window-only; decode (T = 1) and a prefill
// chunk of 8 rows at the end of the context.

Case real_case(int64_t T, int64_t H, int64_t ratio, int64_t topk, uint64_t seed) {
  const int64_t pos0 = kCtx - T;  // the last row sits at position 8191
  const int64_t N = ratio > 0 ? kCtx / ratio : 0;
  Case c = make_case(T, T + kWindow - 1, N, H, kHeadDim, ratio > 0 ? ratio : kCsaRatio, pos0, seed);
  if (topk > 0) topk_like_indices(c, topk, seed + 7);
  return c;
}

TEST(AttentionCudaRealShape, FlashDecode) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(real_case(1, kFlashHeads, kCsaRatio, kFlashTopk, 1100));
  check(real_case(1, kFlashHeads, kHcaRatio, 0, 1110));
  check(real_case(1, kFlashHeads, 0, 0, 1120));
}

TEST(AttentionCudaRealShape, ProDecode) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(real_case(1, kProHeads, kCsaRatio, kProTopk, 1200));
  check(real_case(1, kProHeads, kHcaRatio, 0, 1210));
}

TEST(AttentionCudaRealShape, FlashAndProPrefillChunk) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(real_case(8, kFlashHeads, kCsaRatio, kFlashTopk, 1300));
  check(real_case(8, kProHeads, kHcaRatio, 0, 1310));
}

// ---------------------------------------------------------------------------------------
// Split-K forced (attention_with_split) on small shapes, H = 5 (a partial head tile): every
// layer kind, S from 2 to past the chunk count (trailing splits empty), rows of different
// list lengths, whole splits of masked slots, sink = -inf, no lse, strided views.

TEST(AttentionCudaSplit, LayerKinds) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // HCA decode at 30000: 234 of 240 entries visible; n_max = 128 + 240 slots = 12 chunks.
  check_splits(make_case(1, kWindow, 240, 5, 64, kHcaRatio, 30000, 2000), {2, 3, 5, 12, 13, 40});
  Case csa = make_case(1, kWindow, 400, 5, 64, kCsaRatio, 1500, 2010);  // -1, duplicates, invisible
  random_indices(csa, 300, 2011);
  check_splits(csa, {2, 4, 7, 14, 30});
  check_splits(make_case(1, kWindow, 0, 5, 64, kCsaRatio, 900, 2020), {2, 4, 9});  // window only
  Case pre = make_case(6, 140, 90, 5, 64, kCsaRatio, 300, 2030);  // 6 rows, lists of 4 lengths
  random_indices(pre, 70, 2031);
  check_splits(pre, {2, 3, 8});
  // Fewer slots than one chunk (and rows from position 0): every split but 0 empty, so the
  // result must be the single pass's bits (check_splits tests that).
  check_splits(make_case(1, 20, 0, 5, 64, kCsaRatio, 19, 2040), {2, 3, 8});
  check_splits(make_case(12, 12, 3, 5, 36, kCsaRatio, 0, 2050), {2, 5});
}

TEST(AttentionCudaSplit, MaskedSplitsNoSinkStrided) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // 128 window + 256 index slots = 12 chunks; slots 168..327 are -1, so chunks 6..9 (slots
  // 192..319) attend nothing: whole splits with m = -inf for S = 4, 6, 12.
  Case c = make_case(2, kWindow + 1, 300, 5, 64, kCsaRatio, 1400, 2100);
  random_indices(c, 256, 2101, 0.0);
  for (int64_t r = 0; r < c.T; ++r)
    for (int64_t s = 40; s < 200; ++s) c.idx[size_t(r * c.k + s)] = -1;
  check_splits(c, {2, 4, 6, 12});
  std::fill(c.sink.begin(), c.sink.end(), -kInfF);  // no sink
  check_splits(c, {3, 12});
  c.with_lse = false;
  c.pad = 3;  // scalar loads, strided rows and index rows
  check_splits(c, {4, 7});
  check_splits(make_case(1, kWindow, 100, 3, 130, kCsaRatio, 900, 2110), {2, 4, 9});  // d = 130
}

// Real shapes at decode (d = 512): HCA dense over the 8192 entries of a 1M-token context
// (n = 8320 slots, 260 chunks; attention() picks S = 17 / 9 on an H200) and CSA top-k at 8K
// (20 / 36 chunks); forced S up to kAttentionMaxSplits, past the chunk count of CSA.
Case hca_1m(int64_t H, uint64_t seed) {
  const int64_t ctx = int64_t(1) << 20;
  return make_case(1, kWindow, ctx / kHcaRatio, H, kHeadDim, kHcaRatio, ctx - 1, seed);
}

TEST(AttentionCudaSplit, RealShapesDecode) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(hca_1m(kFlashHeads, 2200));  // the automatic path against the oracle
  check_splits(hca_1m(kFlashHeads, 2201), {2, 17, 64, cuda::kAttentionMaxSplits});
  check_splits(hca_1m(kProHeads, 2210), {9, 200});
  check_splits(real_case(1, kFlashHeads, kCsaRatio, kFlashTopk, 2220), {10, 21, 40});
  check_splits(real_case(1, kProHeads, kCsaRatio, kProTopk, 2230), {9, 37});
}

// ---------------------------------------------------------------------------------------
// FP8 entries (attention_fp8): rows in the 584-byte cache layout. Oracle: dequantise in the
// test (formats.h scalar decoders: code * 2^(scale - 127), BF16 -> float), then the fp64
// oracle and ref::attention<float> on the dequantised rows; and the f32 kernel on those rows
// must give the same bits (the FP8 kernel only changes how rows are staged).

// Encodes entry x[0, 512) into the layout: ref::fp8_encode_block per 64-block of dims 0..447
// (codes at [64b, 64b + 64), scale byte at 448 + b), a zero pad byte at 455, BF16 dims
// 448..511 at 456 + 2i (little-endian).
void encode_fp8_entry(const float* x, uint8_t* out) {
  for (int64_t b = 0; b < kNopeDim / kFp8KvBlock; ++b)
    out[kNopeDim + b] = ref::fp8_encode_block(x + b * kFp8KvBlock, kFp8KvBlock, out + b * kFp8KvBlock);
  for (int64_t b = kNopeDim / kFp8KvBlock; b < cuda::kFp8EntryScaleBytes; ++b) out[kNopeDim + b] = 0;
  for (int64_t i = 0; i < kRopeDim; ++i) {
    const uint16_t h = fmt::bf16_encode(x[kNopeDim + i]);
    out[cuda::kFp8EntryRopeOffset + 2 * i] = uint8_t(h & 0xFF);
    out[cuda::kFp8EntryRopeOffset + 2 * i + 1] = uint8_t(h >> 8);
  }
}
// The test's own dequantisation of one entry.
void decode_fp8_entry(const uint8_t* in, float* y) {
  for (int64_t i = 0; i < kNopeDim; ++i)
    y[i] = float(double(fmt::e4m3_decode(in[i])) * fmt::ue8m0_decode(in[kNopeDim + i / kFp8KvBlock]));
  for (int64_t i = 0; i < kRopeDim; ++i)
    y[kNopeDim + i] = fmt::bf16_decode(uint16_t(in[cuda::kFp8EntryRopeOffset + 2 * i] |
                                                (in[cuda::kFp8EntryRopeOffset + 2 * i + 1] << 8)));
}

// Rows x [n, 512] -> entries [n, ld] bytes (ld >= 584; gap bytes 0xA5), and x replaced by its
// dequantisation. Block b of row j is scaled by 2^((j + b) % 9 - 6) first, so the scale bytes
// vary and small blocks reach the e4m3 subnormals.
std::vector<uint8_t> to_fp8_entries(std::vector<float>& x, int64_t n, int64_t ld) {
  std::vector<uint8_t> bytes(size_t(std::max<int64_t>(1, n * ld)), 0xA5);
  for (int64_t j = 0; j < n; ++j) {
    float* row = &x[size_t(j * kHeadDim)];
    for (int64_t i = 0; i < kNopeDim; ++i) row[i] = std::ldexp(row[i], int((j + i / kFp8KvBlock) % 9) - 6);
    encode_fp8_entry(row, &bytes[size_t(j * ld)]);
    decode_fp8_entry(&bytes[size_t(j * ld)], row);
  }
  return bytes;
}

// splits: forced split counts, each run by attention_fp8_with_split and by
// attention_with_split on the dequantised rows, which must agree bitwise.
void check_fp8(Case c, int64_t ld = cuda::kFp8EntryBytes, std::initializer_list<int64_t> splits = {}) {
  ASSERT_EQ(c.d, kHeadDim) << "test setup: the FP8 layout has d = 512";
  SCOPED_TRACE(::testing::Message() << "fp8 T " << c.T << " Tk " << c.Tk << " N " << c.N
                                    << " H " << c.H << " k " << (c.sparse ? c.k : -1) << " ld " << ld);
  const std::vector<uint8_t> kv8 = to_fp8_entries(c.kv, c.Tk, ld);
  const std::vector<uint8_t> comp8 = to_fp8_entries(c.comp, c.N, ld);
  const Out f32 = check(c);  // the f32 kernel on the dequantised rows against the oracles

  DeviceCase dc(c);  // q, sink, indices, poisoned outputs; kv / comp replaced by the bytes
  cuda::DeviceBuffer<uint8_t> dkv(kv8), dcomp(comp8);
  const AttentionParams<float> pf = dc.params(c);
  cuda::AttentionFp8Params p;
  p.q = pf.q;
  p.kv = {dkv.data(), c.Tk, cuda::kFp8EntryBytes, ld};
  p.comp = {dcomp.data(), c.N, cuda::kFp8EntryBytes, ld};
  p.sink = pf.sink;
  p.indices = pf.indices;
  p.heads = c.H;
  p.ratio = c.ratio;
  p.window = c.window;
  p.scale = c.scale;
  p.pos0 = c.pos0;
  p.o = pf.o;
  p.lse = pf.lse;
  launch_and_sync([&] { cuda::attention_fp8(p); });
  const std::vector<float> o_img = dc.o.download(), lse_img = dc.lse.download();
  EXPECT_TRUE(dc.go.canaries_intact(o_img));
  EXPECT_TRUE(dc.glse.canaries_intact(lse_img));
  EXPECT_TRUE(test::bitwise_equal(dc.go.extract(o_img), f32.o)) << "fp8 o != f32 kernel on dequantised rows";
  EXPECT_TRUE(test::bitwise_equal(dc.glse.extract(lse_img), f32.lse)) << "fp8 lse != f32 kernel";
  dc.lse.upload(dc.glse.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dc.o, dc.go.poisoned(), o_img, [&] { cuda::attention_fp8(p); }))
      << "fp8 rerun differs";
  for (const int64_t S : splits) {
    SCOPED_TRACE("forced splits " + std::to_string(S));
    const Out f32s = run_split(c, S);
    dc.o.upload(dc.go.poisoned());
    dc.lse.upload(dc.glse.poisoned());
    launch_and_sync([&] { cuda::attention_fp8_with_split(p, S); });
    const std::vector<float> os = dc.o.download(), ls = dc.lse.download();
    EXPECT_TRUE(dc.go.canaries_intact(os));
    EXPECT_TRUE(dc.glse.canaries_intact(ls));
    EXPECT_TRUE(test::bitwise_equal(dc.go.extract(os), f32s.o)) << "fp8 split o != f32 split on dequantised rows";
    EXPECT_TRUE(test::bitwise_equal(dc.glse.extract(ls), f32s.lse)) << "fp8 split lse != f32 split";
    dc.lse.upload(dc.glse.poisoned());
    EXPECT_TRUE(test::rerun_bitwise(dc.o, dc.go.poisoned(), os, [&] { cuda::attention_fp8_with_split(p, S); }))
        << "fp8 split rerun differs";
  }
}

TEST(AttentionCudaFp8, SmallShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case csa = make_case(20, 140, 40, 5, kHeadDim, kCsaRatio, 130, 1400);  // CSA chunk
  random_indices(csa, 16, 1401);
  check_fp8(csa);
  check_fp8(make_case(3, 6, 1, 3, kHeadDim, kHcaRatio, 200, 1410), cuda::kFp8EntryBytes + 8);  // strided rows
  check_fp8(make_case(1, 1, 0, 2, kHeadDim, kCsaRatio, 0, 1420));  // one entry, N = 0
}

TEST(AttentionCudaFp8, RealShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_fp8(real_case(1, kFlashHeads, kCsaRatio, kFlashTopk, 1500));
  check_fp8(real_case(4, kProHeads, kHcaRatio, 0, 1510));
}

// Split-K on FP8 entries: the automatic S (check_fp8's attention_fp8 run) and forced ones.
TEST(AttentionCudaFp8, SplitK) {
  DSV4_SKIP_WITHOUT_DEVICE();
  Case csa = make_case(2, kWindow + 1, 400, 5, kHeadDim, kCsaRatio, 1500, 1600);
  random_indices(csa, 300, 1601);
  check_fp8(csa, cuda::kFp8EntryBytes, {2, 7, 30});
  check_fp8(hca_1m(kFlashHeads, 1610), cuda::kFp8EntryBytes + 8, {17, cuda::kAttentionMaxSplits});
}

// ---------------------------------------------------------------------------------------
// Host-side validation, before any device work: needs no device, so it runs everywhere. The
// pointers are host dummies; a launch would fail, so each throw proves the check came first.

struct HostShapes {
  std::vector<float> buf = std::vector<float>(1 << 16, 1.0f);
  std::vector<int32_t> ibuf = std::vector<int32_t>(64, -1);
  // T = 2, Tk = 4, N = 3, H = 2, d = 8, pos0 = 10: valid.
  AttentionParams<float> valid() {
    AttentionParams<float> p;
    p.q = view2<const float>(buf.data(), 2, 16);
    p.kv = view2<const float>(buf.data(), 4, 8);
    p.comp = view2<const float>(buf.data(), 3, 8);
    p.sink = buf.data();
    p.heads = 2;
    p.pos0 = 10;
    p.o = view2(buf.data(), 2, 16);
    p.lse = view2(buf.data(), 2, 2);
    return p;
  }
};

TEST(AttentionCuda, RejectsBadShapesBeforeLaunch) {
  HostShapes s;
  auto rejects = [&](auto&& edit, const char* what) {
    AttentionParams<float> p = s.valid();
    edit(p);
    EXPECT_THROW(cuda::attention(p), InputError) << what;
  };
  rejects([](auto& p) { p.q.cols = 15; }, "q columns != H*d");
  rejects([](auto& p) { p.heads = 0; }, "no heads");
  rejects([](auto& p) { p.kv.rows = 1; p.pos0 = 1; }, "Tk < T");
  rejects([](auto& p) { p.comp.cols = 7; }, "comp width != d");
  rejects([](auto& p) { p.o.cols = 8; }, "o columns");
  rejects([](auto& p) { p.o.rows = 3; }, "o rows");
  rejects([](auto& p) { p.lse.cols = 3; }, "lse shape");
  rejects([](auto& p) { p.window = 0; }, "window 0");
  rejects([](auto& p) { p.ratio = 0; }, "ratio 0");
  rejects([](auto& p) { p.pos0 = 1; }, "kv before position 0");
  rejects([&](auto& p) { p.indices = view2<const int32_t>(s.ibuf.data(), 3, 4); }, "indices rows");
  rejects([](auto& p) { p.sink = nullptr; }, "no sink pointer");
  rejects(
      [&](auto& p) {
        p.kv = view2<const float>(s.buf.data(), 4, 520);  // d above the GPU limit
        p.comp = view2<const float>(s.buf.data(), 3, 520);
        p.q = view2<const float>(s.buf.data(), 2, 1040);
        p.o = view2(s.buf.data(), 2, 1040);
      },
      "d > kAttentionMaxDim");
  rejects([](auto& p) { p.q.cols = 2 * 8 + 1; p.o.cols = 17; }, "q and o agree but not with H*d");
  // The messages are the reference's.
  AttentionParams<float> p = s.valid();
  p.q.cols = 15;
  try {
    cuda::attention(p);
    ADD_FAILURE() << "no throw";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("attention: tensor 'q': expected shape"), std::string::npos)
        << e.what();
  }
  // No rows: valid shapes and nothing to launch, so no device is needed either.
  AttentionParams<float> empty = s.valid();
  empty.q.rows = 0;
  empty.o.rows = 0;
  empty.lse.rows = 0;
  EXPECT_NO_THROW(cuda::attention(empty));
}

TEST(AttentionCudaFp8, RejectsBadEntriesBeforeLaunch) {
  std::vector<float> fbuf(size_t(4 * kHeadDim), 1.0f);
  std::vector<uint8_t> bytes(size_t(8 * 600), 0);
  const int64_t E = cuda::kFp8EntryBytes;
  auto valid = [&] {  // T = 2, Tk = 3, N = 2, H = 2, pos0 = 5
    cuda::AttentionFp8Params p;
    p.q = view2<const float>(fbuf.data(), 2, 2 * kHeadDim);
    p.kv = view2<const uint8_t>(bytes.data(), 3, E);
    p.comp = view2<const uint8_t>(bytes.data(), 2, E);
    p.sink = fbuf.data();
    p.heads = 2;
    p.pos0 = 5;
    p.o = view2(fbuf.data(), 2, 2 * kHeadDim);
    return p;
  };
  auto rejects = [&](auto&& edit, const char* what) {
    cuda::AttentionFp8Params p = valid();
    edit(p);
    EXPECT_THROW(cuda::attention_fp8(p), InputError) << what;
  };
  rejects([&](auto& p) { p.kv.cols = E - 1; }, "kv rows not 584 bytes");
  rejects([&](auto& p) { p.comp.cols = 512; }, "comp rows not 584 bytes");
  rejects([&](auto& p) { p.kv.ld = E + 1; }, "kv stride not a multiple of 8");
  rejects([&](auto& p) { p.comp.data = bytes.data() + 4; }, "comp not 8-byte aligned");
  rejects([&](auto& p) { p.q.cols = 2 * kHeadDim - 1; }, "q columns != H*512");
  rejects([&](auto& p) { p.pos0 = 0; }, "kv before position 0");
  rejects([&](auto& p) { p.sink = nullptr; }, "no sink");
  EXPECT_THROW(cuda::attention_fp8_with_split(valid(), -1), InputError) << "negative splits";
  EXPECT_THROW(cuda::attention_fp8_with_split(valid(), cuda::kAttentionMaxSplits + 1), InputError)
      << "splits above the limit";
  cuda::AttentionFp8Params empty = valid();  // no rows: nothing to launch, no device needed
  empty.q.rows = 0;
  empty.o.rows = 0;
  EXPECT_NO_THROW(cuda::attention_fp8(empty));
}

// The automatic split count (attention.cuh): the header's H200 numbers; no split once the
// decode tile has two blocks per SM or a split would stream fewer than two chunks; and every
// automatic S within the limits, with whole chunks per split and no empty split.
TEST(AttentionCudaSplit, AutomaticCount) {
  constexpr int64_t kH200Sms = 132, kHca1m = kWindow + (int64_t(1) << 20) / kHcaRatio;
  EXPECT_EQ(cuda::attention_auto_splits(1, kFlashHeads, kHca1m, kH200Sms), 17);
  EXPECT_EQ(cuda::attention_auto_splits(1, kProHeads, kHca1m, kH200Sms), 9);
  EXPECT_EQ(cuda::attention_auto_splits(1, kFlashHeads, kWindow + kFlashTopk, kH200Sms), 10);
  EXPECT_EQ(cuda::attention_auto_splits(1, kProHeads, kWindow + kProTopk, kH200Sms), 9);
  EXPECT_EQ(cuda::attention_auto_splits(1, kFlashHeads, kWindow, kH200Sms), 2);
  EXPECT_EQ(cuda::attention_auto_splits(1, kFlashHeads, 3 * cuda::kAttentionChunk, kH200Sms), 1);
  EXPECT_EQ(cuda::attention_auto_splits(16, kFlashHeads, kHca1m, kH200Sms), 2);  // 256 blocks
  EXPECT_EQ(cuda::attention_auto_splits(17, kFlashHeads, kHca1m, kH200Sms), 1);  // 272 blocks
  using Sizes = std::initializer_list<int64_t>;
  for (int64_t rows : Sizes{1, 2, 7, 40})
    for (int64_t heads : Sizes{1, 5, kFlashHeads, kProHeads})
      for (int64_t slots : Sizes{1, 33, 200, 1000, kHca1m, int64_t(1) << 20})
        for (int64_t sms : Sizes{1, 78, kH200Sms}) {
          const int64_t S = cuda::attention_auto_splits(rows, heads, slots, sms);
          SCOPED_TRACE(::testing::Message() << rows << " rows " << heads << " heads " << slots
                                            << " slots " << sms << " SMs: S " << S);
          ASSERT_GE(S, 1);
          ASSERT_LE(S, cuda::kAttentionMaxSplits);
          if (S == 1) continue;
          const int64_t chunks = (slots + cuda::kAttentionChunk - 1) / cuda::kAttentionChunk;
          const int64_t per = (chunks + S - 1) / S;
          EXPECT_GE(per, cuda::kAttentionMinSplitChunks);
          EXPECT_LT((S - 1) * per, chunks) << "an empty split";
          EXPECT_LT(rows * ((heads + 3) / 4), cuda::kAttentionSplitWaves * sms) << "split though full";
        }
}

// A forced split count outside [0, kAttentionMaxSplits], or partials above
// kAttentionSplitScratchFloats, is refused on the host before any device work.
TEST(AttentionCudaSplit, RejectsBadSplitsBeforeLaunch) {
  HostShapes s;
  const AttentionParams<float> p = s.valid();
  for (const int64_t bad : {int64_t(-1), cuda::kAttentionMaxSplits + 1}) {
    EXPECT_THROW(cuda::attention_with_split(p, bad), InputError) << bad;
    try {
      cuda::attention_with_split(p, bad);
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("attention: splits must be in [0, "), std::string::npos) << e.what();
    }
  }
  // 1100 rows x 2 heads x 256 splits x (128 + 2) floats = 73.2M > 2^26.
  const int64_t T = 1100;
  AttentionParams<float> big = p;
  big.q = view2<const float>(s.buf.data(), T, 16);
  big.kv = view2<const float>(s.buf.data(), T, 8);
  big.pos0 = 0;
  big.o = view2(s.buf.data(), T, 16);
  big.lse = view2(s.buf.data(), T, 2);
  try {
    cuda::attention_with_split(big, cuda::kAttentionMaxSplits);
    ADD_FAILURE() << "no throw for partials above the limit";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("floats of partials, above the limit"), std::string::npos) << e.what();
  }
  AttentionParams<float> empty = p;  // no rows: nothing to launch, whatever S
  empty.q.rows = 0;
  empty.o.rows = 0;
  empty.lse.rows = 0;
  for (const int64_t S : {int64_t(0), int64_t(1), int64_t(5)}) EXPECT_NO_THROW(cuda::attention_with_split(empty, S));
}

}  // namespace
}  // namespace dsv4
