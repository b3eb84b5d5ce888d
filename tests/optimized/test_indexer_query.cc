// dsv4::cuda::indexer_query (the lightning indexer's query path) against a double-precision
// oracle written from the spec and against its CPU twin ref::indexer_query<float>. Spec:
// docs/v4-architecture.md §2.4, §2.7, §9.4:
//   q = Wq_b c_q (c_q FP8-rounded in 1x128 blocks under act_quant); RoPE on the last 64 dims of
//   every head (the compressed layers' YaRN table) at pos0 + r; quant: normalised Hadamard of
//   each head, then the FP4 round trip in blocks of 32; w = (Wweights x) / sqrt(dI) / sqrt(HI).
// Label gpu: every test that needs a device skips, with the reason, when there is none; the
// validation tests run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/indexer_query.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/indexer.h"
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

struct Case {
  std::string name;
  int64_t T, q_rank, D, HI, dI, pos0;
  int64_t cq_pad = 0, w_pad = 0;  // row strides beyond the widths
};

// Edge sizes (one row, widths off the 128-wide FP8 block, padded strides) and the real
// shapes: HI 64, dI 128; V4-Flash q_rank 1024, D 4096; V4-Pro q_rank 1536, D 7168.
const Case kSmall{"small", 3, 96, 80, 4, 128, 7, 3, 2};
const Case kOne{"one row", 1, 200, 130, 2, 128, 0, 0, 1};
const Case kFlash{"V4-Flash", 2, 1024, 4096, kIndexerHeads, kIndexerDim, 70000};
const Case kPro{"V4-Pro", 1, 1536, 7168, kIndexerHeads, kIndexerDim, 123};

struct Inputs {
  std::vector<float> cq, x, wq_b, wp;
};
std::vector<float> unit_gain(int64_t out, int64_t in, uint64_t seed) {
  const double a = std::sqrt(3.0 / double(in));
  return test::uniform<float>(size_t(out * in), seed, -a, a);
}
Inputs make_inputs(const Case& c, uint64_t seed) {
  return {test::normal<float>(size_t(c.T * c.q_rank), seed), test::normal<float>(size_t(c.T * c.D), seed + 1),
          unit_gain(c.HI * c.dI, c.q_rank, seed + 2), unit_gain(c.HI, c.D, seed + 3)};
}

// The oracle of one run, per element: the value in double and its tolerance for an FP32
// implementation, and (quant) the pre-quantisation value and its block's amax.
//
// Tolerances. A dot product of K float terms computed in FP32 errs by at most ~sqrt(K) u times
// the sum of |terms| (typical-case bound, tolerance.h's reduction_tol with kSafety). RoPE mixes a
// pair of such values with cos/sin (|c| + |s| <= sqrt(2)) and adds a few u of the value; the
// Hadamard sums dI values / sqrt(dI), so its input errors add (at most the sum of the pair
// bounds / sqrt(dI)) plus its own reduction error (reduction_tol over dI of hadamard_magnitude).
// w: one dot product of D terms, then one rounding of the scale product (u |w|).
struct Oracle {
  std::vector<double> q, q_tol, pre, amax;  // [T, HI*dI]
  std::vector<double> w, w_tol;             // [T, HI]
};

Oracle oracle(const Case& c, const Inputs& in, bool act_quant, bool quant) {
  const double u = test::unit_roundoff<float>();
  const int64_t HI = c.HI, dI = c.dI;
  Oracle o;
  for (int64_t t = 0; t < c.T; ++t) {
    std::vector<double> cq(in.cq.begin() + t * c.q_rank, in.cq.begin() + (t + 1) * c.q_rank);
    if (act_quant) naive::quant_blocks(naive::Fmt::fp8, cq.data(), c.q_rank, kActBlock);
    std::vector<double> q(size_t(HI * dI)), tol(size_t(HI * dI));
    for (int64_t i = 0; i < HI * dI; ++i) {
      double s = 0, a = 0;
      for (int64_t j = 0; j < c.q_rank; ++j) {
        const double term = double(in.wq_b[size_t(i * c.q_rank + j)]) * cq[size_t(j)];
        s += term, a += std::fabs(term);
      }
      q[size_t(i)] = s;
      tol[size_t(i)] = test::reduction_tol<float>(double(c.q_rank), a);
    }
    for (int64_t h = 0; h < HI; ++h) {
      double* head = &q[size_t(h * dI)];
      double* ht = &tol[size_t(h * dI)];
      for (int64_t k = dI - naive::kRopeDim; k < dI; k += 2) {  // pairs mix under the rotation
        const double e = std::sqrt(2.0) * std::max(ht[k], ht[k + 1]);
        ht[k] = e + 4 * u * (std::fabs(head[k]) + std::fabs(head[k + 1]));
        ht[k + 1] = ht[k];
      }
      naive::rope_interleaved(head + dI - naive::kRopeDim, double(c.pos0 + t), naive::v4_compressed_freqs());
      if (quant) {
        double sum_tol = 0;
        for (int64_t k = 0; k < dI; ++k) sum_tol += ht[k];
        const double mag = naive::hadamard_magnitude(head, dI);
        naive::hadamard(head, dI);
        const double e = sum_tol / std::sqrt(double(dI)) + test::reduction_tol<float>(double(dI), mag);
        for (int64_t k = 0; k < dI; ++k) ht[k] = e;
        for (int64_t b = 0; b < dI; b += kFp4Block) {
          const double am = naive::block_amax(head + b, kFp4Block);
          for (int64_t k = b; k < b + kFp4Block; ++k) o.pre.push_back(head[k]), o.amax.push_back(am);
          naive::quant_blocks(naive::Fmt::fp4, head + b, kFp4Block, kFp4Block);
        }
      }
    }
    o.q.insert(o.q.end(), q.begin(), q.end());
    o.q_tol.insert(o.q_tol.end(), tol.begin(), tol.end());
    const double scale = 1.0 / std::sqrt(double(dI)) / std::sqrt(double(HI));
    for (int64_t h = 0; h < HI; ++h) {
      double s = 0, a = 0;
      for (int64_t j = 0; j < c.D; ++j) {
        const double term = double(in.wp[size_t(h * c.D + j)]) * double(in.x[size_t(t * c.D + j)]);
        s += term, a += std::fabs(term);
      }
      o.w.push_back(s * scale);
      o.w_tol.push_back(test::reduction_tol<float>(double(c.D), a) * scale + 2 * u * std::fabs(s * scale));
    }
  }
  return o;
}

IndexerQueryParams<float> params(const Case& c, bool act_quant, bool quant) {
  IndexerQueryParams<float> p;
  p.heads = c.HI;
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.rope = rope_v4_compressed();
  p.act_quant = act_quant;
  p.quant = quant;
  return p;
}

struct Out {
  std::vector<float> q, w;
};

Out run_ref(const Case& c, const Inputs& in, bool act_quant, bool quant) {
  Out o{std::vector<float>(size_t(c.T * c.HI * c.dI), test::kPoison), std::vector<float>(size_t(c.T * c.HI), test::kPoison)};
  IndexerQueryParams<float> p = params(c, act_quant, quant);
  p.cq = view2(in.cq.data(), c.T, c.q_rank);
  p.x = view2(in.x.data(), c.T, c.D);
  p.wq_b = in.wq_b.data();
  p.weights_proj = in.wp.data();
  p.q = view2(o.q.data(), c.T, c.HI * c.dI);
  p.w = view2(o.w.data(), c.T, c.HI);
  ref::indexer_query(p);
  return o;
}

// The GPU op on poisoned, canaried outputs; checks the canaries, that the inputs are untouched
// and a bitwise rerun.
Out run_gpu(const Case& c, const Inputs& in, bool act_quant, bool quant) {
  const Guarded gcq{c.T, c.q_rank, c.q_rank + c.cq_pad}, gx{c.T, c.D, c.D}, gq{c.T, c.HI * c.dI, c.HI * c.dI},
      gw{c.T, c.HI, c.HI + c.w_pad};
  cuda::DeviceBuffer<float> dcq(gcq.image(in.cq)), dx(gx.image(in.x)), dwb(in.wq_b), dwp(in.wp), dq(gq.poisoned()),
      dw(gw.poisoned());
  IndexerQueryParams<float> p = params(c, act_quant, quant);
  p.cq = gcq.view<const float>(dcq.data());
  p.x = gx.view<const float>(dx.data());
  p.wq_b = dwb.data();
  p.weights_proj = dwp.data();
  p.q = gq.view(dq.data());
  p.w = gw.view(dw.data());
  cuda::IndexerQueryWorkspace ws(c.T, c.q_rank);
  launch_and_sync([&] { cuda::indexer_query(p, ws); });
  const std::vector<float> q_img = dq.download(), w_img = dw.download();
  EXPECT_TRUE(gq.canaries_intact(q_img));
  EXPECT_TRUE(gw.canaries_intact(w_img));
  EXPECT_TRUE(test::bitwise_equal(dcq.download(), gcq.image(in.cq))) << "the op wrote into cq";
  EXPECT_TRUE(test::rerun_bitwise(dq, gq.poisoned(), q_img, [&] { cuda::indexer_query(p, ws); })) << "q rerun differs";
  return {gq.extract(q_img), gw.extract(w_img)};
}

// Every element of `out` within its tolerance of the oracle (quant: a round trip consistent
// with the oracle's pre-quantisation value and block amax, naive::quant_consistent).
void expect_within(const Out& out, const Oracle& o, bool quant, const char* who) {
  int64_t bad = 0;
  for (size_t i = 0; i < o.q.size(); ++i) {
    const double got = out.q[i];
    const bool ok = quant ? naive::quant_consistent(naive::Fmt::fp4, got, o.pre[i], o.amax[i], o.q_tol[i], o.q[i])
                          : std::fabs(got - o.q[i]) <= o.q_tol[i];
    if (!ok && bad++ < 5) ADD_FAILURE() << who << " q[" << i << "] = " << got << ", oracle " << o.q[i] << " +- " << o.q_tol[i];
  }
  EXPECT_EQ(bad, 0) << who;
  for (size_t i = 0; i < o.w.size(); ++i) EXPECT_LE(std::fabs(out.w[i] - o.w[i]), o.w_tol[i]) << who << " w[" << i << "]";
}

// The GPU op and the float reference against the oracle with the same bound (the reference
// meeting it shows the bound is not loose for the GPU alone).
void check(const Case& c, bool act_quant, bool quant, uint64_t seed) {
  SCOPED_TRACE(c.name + (act_quant ? " act_quant" : "") + (quant ? " quant" : ""));
  const Inputs in = make_inputs(c, seed);
  const Oracle o = oracle(c, in, act_quant, quant);
  expect_within(run_gpu(c, in, act_quant, quant), o, quant, "cuda");
  expect_within(run_ref(c, in, act_quant, quant), o, quant, "ref<float>");
}

// The oracle and its bounds against the float reference alone: needs no device, so the
// tolerances the GPU tests use are checked on every machine.
TEST(IndexerQueryOracle, FloatReferenceWithinTheBounds) {
  for (const Case& c : {kSmall, kOne, kFlash})
    for (bool act_quant : {false, true})
      for (bool quant : {false, true}) {
        SCOPED_TRACE(c.name + (act_quant ? " act_quant" : "") + (quant ? " quant" : ""));
        const Inputs in = make_inputs(c, 5);
        expect_within(run_ref(c, in, act_quant, quant), oracle(c, in, act_quant, quant), quant, "ref<float>");
      }
}

// The bound is tight enough to see a wrong position (pos0 off by one) or a wrong scale.
TEST(IndexerQueryOracle, BoundsCatchAnOffByOnePositionAndAWrongScale) {
  const Case c = kSmall;
  const Inputs in = make_inputs(c, 9);
  const Oracle o = oracle(c, in, false, false);
  Case shifted = c;
  shifted.pos0 += 1;
  const Out off = run_ref(shifted, in, false, false);
  int64_t bad = 0;
  for (size_t i = 0; i < o.q.size(); ++i) bad += std::fabs(off.q[i] - o.q[i]) > o.q_tol[i];
  EXPECT_GT(bad, 0) << "pos0 + 1 passed";
  Out scaled = run_ref(c, in, false, false);
  int64_t wbad = 0;
  for (size_t i = 0; i < o.w.size(); ++i) wbad += std::fabs(scaled.w[i] * 1.001f - o.w[i]) > o.w_tol[i];
  EXPECT_GT(wbad, 0) << "w x 1.001 passed";
}

TEST(IndexerQueryCuda, EdgeSizesEveryNumericsMode) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (const Case& c : {kSmall, kOne})
    for (bool act_quant : {false, true})
      for (bool quant : {false, true}) check(c, act_quant, quant, 11);
}

TEST(IndexerQueryCuda, FlashAndProShapesOfficialNumerics) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check(kFlash, true, true, 21);
  check(kPro, true, true, 31);
  check(kFlash, false, false, 41);
}

// Host-side validation before any device work: runs everywhere.
TEST(IndexerQueryCuda, RejectsBadShapesBeforeLaunch) {
  IndexerQueryParams<float> p = params(kSmall, false, false);
  float dummy = 0;
  p.cq = {&dummy, 3, 96, 96};
  p.x = {&dummy, 2, 80, 80};  // 2 rows, cq has 3
  p.wq_b = &dummy;
  p.weights_proj = &dummy;
  p.q = {&dummy, 3, 4 * 128, 4 * 128};
  p.w = {&dummy, 3, 4, 4};
  try {
    cuda::indexer_query(p);
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("indexer_query: tensor 'x'"), std::string::npos) << e.what();
  }
  p.x.rows = 3;
  p.q.ld = 4 * 128 + 1;  // not dense
  EXPECT_THROW(cuda::indexer_query(p), InputError);
  p.q.ld = 4 * 128;
  p.head_dim = 96, p.q = {&dummy, 3, 4 * 96, 4 * 96}, p.quant = true;  // Hadamard needs a power of two
  try {
    cuda::indexer_query(p);
    ADD_FAILURE() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("power of two"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4
