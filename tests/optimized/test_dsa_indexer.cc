// dsv4::cuda::dsa_indexer_query / dsa_indexer_keys / dsa_indexer (the DeepSeek-V3.2 DSA indexer,
// token-level) against double-precision oracles written from the spec and against the CPU twins
// of reference/dsa_indexer.h. Spec: docs/v4-architecture.md §2.10:
//   q = Wq_b c_q per head, RoPE half_split on the FIRST 64 dims (V3 YaRN table) at pos0 + r,
//   normalised Hadamard, quant: FP8 round trip in blocks of 128; w = Wweights x HI^-1/2 dI^-1/2;
//   k = LayerNorm_{w,b}(Wk x), the same RoPE at pos0 + j, Hadamard, quant;
//   scores[r][j] = sum_h w_h ReLU(q_h . k_j) for j <= pos0 + r, -inf otherwise; top-k by
//   descending score, ties to the lower j, -1 padding.
// Oracle pieces: tests/optimized/path_oracle.h (projections), naive::layernorm, rope_half_split,
// v3_freqs, hadamard, quant_blocks, and the selection checks of tests/support/selection.h.
// Label gpu: every test that needs a device skips, with the reason, when there is none; the
// validation tests run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/dsa_indexer.cuh"
#include "reference/constants.h"
#include "reference/dsa_indexer.h"
#include "reference/errors.h"
#include "reference/quant_fp8.h"
#include "tests/optimized/path_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/selection.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
namespace paths = test::paths;
using test::ErrModel;
using test::Guarded;
using test::launch_and_sync;

// ---------------------------------------------------------------------------------------
// Queries and keys.

struct ProjCase {
  std::string name;
  int64_t T, D, q_rank, HI, dI, pos0;
  int64_t in_pad = 0;  // row stride of cq and x beyond their widths
};
// Edge (one row, small heads) and the V3.2 shapes (HI 64, dI 128, q_rank 1536, D 7168).
const ProjCase kSmallProj{"small T=1", 1, 96, 64, 2, 64, 0, 3};
const ProjCase kMidProj{"T=6 HI=4 dI=128", 6, 256, 128, 4, 128, 5000, 1};
const ProjCase kV32Proj{"V3.2", 3, 7168, 1536, kIndexerHeads, kIndexerDim, 100000};

struct ProjInputs {
  std::vector<float> cq, x, wq_b, wproj, wk, nw, nb;
};
ProjInputs make_proj(const ProjCase& c, uint64_t s) {
  return {test::normal<float>(size_t(c.T * c.q_rank), s),
          test::normal<float>(size_t(c.T * c.D), s + 1),
          paths::unit_gain(c.HI * c.dI, c.q_rank, s + 2),
          paths::unit_gain(c.HI, c.D, s + 3),
          paths::unit_gain(c.dI, c.D, s + 4),
          test::uniform<float>(size_t(c.dI), s + 5, 0.5, 1.5),
          test::uniform<float>(size_t(c.dI), s + 6, -0.5, 0.5)};
}

// RoPE (first 64 dims, half_split, V3 table) and Hadamard of one head row in place.
void rope_hadamard(double* v, int64_t dI, double pos) {
  naive::rope_half_split(v, pos, naive::v3_freqs());
  naive::hadamard(v, dI);
}

struct QOracle {
  std::vector<double> q, w;
  ErrModel em_q, em_w;
};
QOracle query_oracle(const ProjCase& c, const ProjInputs& in) {
  QOracle o;
  const double scale = 1.0 / std::sqrt(double(c.HI)) / std::sqrt(double(c.dI));
  for (int64_t t = 0; t < c.T; ++t) {
    const std::vector<double> cq(in.cq.begin() + t * c.q_rank, in.cq.begin() + (t + 1) * c.q_rank);
    std::vector<double> q = paths::linear(in.wq_b, c.HI * c.dI, c.q_rank, cq.data(), o.em_q, "wq_b");
    for (int64_t h = 0; h < c.HI; ++h) rope_hadamard(&q[size_t(h * c.dI)], c.dI, double(c.pos0 + t));
    o.q.insert(o.q.end(), q.begin(), q.end());
    const std::vector<double> x(in.x.begin() + t * c.D, in.x.begin() + (t + 1) * c.D);
    for (double v : paths::linear(in.wproj, c.HI, c.D, x.data(), o.em_w, "weights_proj")) o.w.push_back(v * scale);
  }
  return o;
}

std::vector<double> key_oracle(const ProjCase& c, const ProjInputs& in, ErrModel& em) {
  std::vector<double> out;
  const std::vector<double> nw(in.nw.begin(), in.nw.end()), nb(in.nb.begin(), in.nb.end());
  for (int64_t t = 0; t < c.T; ++t) {
    const std::vector<double> x(in.x.begin() + t * c.D, in.x.begin() + (t + 1) * c.D);
    std::vector<double> k = paths::linear(in.wk, c.dI, c.D, x.data(), em, "wk");
    naive::layernorm(k.data(), c.dI, nw.data(), nb.data(), kNormEps);
    rope_hadamard(k.data(), c.dI, double(c.pos0 + t));
    out.insert(out.end(), k.begin(), k.end());
  }
  return out;
}

struct QOut {
  std::vector<float> q, w;
};

// The GPU projections on poisoned, canaried outputs from inputs with padded row strides;
// canaries, a bitwise rerun. keys: k [T, dI]; otherwise q [T, HI*dI] and w [T, HI].
QOut run_gpu_query(const ProjCase& c, const ProjInputs& in, bool quant) {
  const Guarded gcq{c.T, c.q_rank, c.q_rank + c.in_pad}, gx{c.T, c.D, c.D + c.in_pad},
      gq{c.T, c.HI * c.dI, c.HI * c.dI}, gw{c.T, c.HI, c.HI + 3};
  cuda::DeviceBuffer<float> dcq(gcq.image(in.cq)), dx(gx.image(in.x)), dwb(in.wq_b), dwp(in.wproj),
      dq(gq.poisoned()), dw(gw.poisoned());
  DsaQueryParams<float> p;
  p.cq = gcq.view<const float>(dcq.data());
  p.x = gx.view<const float>(dx.data());
  p.wq_b = dwb.data();
  p.weights_proj = dwp.data();
  p.heads = c.HI;
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.quant = quant;
  p.q = gq.view(dq.data());
  p.w = gw.view(dw.data());
  cuda::DsaIndexerWorkspace ws;
  auto launch = [&] { cuda::dsa_indexer_query(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> q_img = dq.download(), w_img = dw.download();
  EXPECT_TRUE(gq.canaries_intact(q_img)) << "q";
  EXPECT_TRUE(gw.canaries_intact(w_img)) << "w";
  dw.upload(gw.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(dq, gq.poisoned(), q_img, launch)) << "rerun differs (q)";
  EXPECT_TRUE(test::bitwise_equal(dw.download(), w_img)) << "rerun differs (w)";
  return {gq.extract(q_img), gw.extract(w_img)};
}

std::vector<float> run_gpu_keys(const ProjCase& c, const ProjInputs& in, bool quant) {
  const Guarded gx{c.T, c.D, c.D + c.in_pad}, gk{c.T, c.dI, c.dI};
  cuda::DeviceBuffer<float> dx(gx.image(in.x)), dwk(in.wk), dnw(in.nw), dnb(in.nb), dk(gk.poisoned());
  DsaKeyParams<float> p;
  p.x = gx.view<const float>(dx.data());
  p.wk = dwk.data();
  p.norm_w = dnw.data();
  p.norm_b = dnb.data();
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.quant = quant;
  p.k = gk.view(dk.data());
  cuda::DsaIndexerWorkspace ws;
  auto launch = [&] { cuda::dsa_indexer_keys(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> img = dk.download();
  EXPECT_TRUE(gk.canaries_intact(img));
  EXPECT_TRUE(test::rerun_bitwise(dk, gk.poisoned(), img, launch)) << "rerun differs";
  return gk.extract(img);
}

QOut run_ref_query(const ProjCase& c, const ProjInputs& in) {
  QOut o{std::vector<float>(size_t(c.T * c.HI * c.dI), test::kPoison), std::vector<float>(size_t(c.T * c.HI), test::kPoison)};
  DsaQueryParams<float> p;
  p.cq = view2(in.cq.data(), c.T, c.q_rank);
  p.x = view2(in.x.data(), c.T, c.D);
  p.wq_b = in.wq_b.data();
  p.weights_proj = in.wproj.data();
  p.heads = c.HI;
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.q = view2(o.q.data(), c.T, c.HI * c.dI);
  p.w = view2(o.w.data(), c.T, c.HI);
  ref::dsa_indexer_query(p);
  return o;
}

std::vector<float> run_ref_keys(const ProjCase& c, const ProjInputs& in) {
  std::vector<float> k(size_t(c.T * c.dI), test::kPoison);
  DsaKeyParams<float> p;
  p.x = view2(in.x.data(), c.T, c.D);
  p.wk = in.wk.data();
  p.norm_w = in.nw.data();
  p.norm_b = in.nb.data();
  p.head_dim = c.dI;
  p.pos0 = c.pos0;
  p.k = view2(k.data(), c.T, c.dI);
  ref::dsa_indexer_keys(p);
  return k;
}

// The host FP8 round trip (blocks of 128 per row of dI) of unquantised rows.
std::vector<float> host_quant(std::vector<float> v, int64_t dI) {
  const View2<float> rows = view2(v.data(), int64_t(v.size()) / dI, dI);
  ref::quant_fp8<float>({rows, rows, kActBlock, 0});
  return v;
}

// Unquantised q, w, k within the error model's tolerance of fp64 (one projection stage each,
// error_model.h; RoPE and the orthonormal Hadamard are well-conditioned; LayerNorm divides by
// the row's standard deviation, which for these zero-mean random projections is its rms, the
// model's reference) and within twice that of the float reference. Quantised: exactly the
// reference quantiser applied to the GPU's own unquantised rows (the FP8 rounding is a step
// function; the device quantiser is a bitwise twin), and visibly different from them.
void check_proj(const ProjCase& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const ProjInputs in = make_proj(c, seed);
  const QOracle qo = query_oracle(c, in);
  const QOut got = run_gpu_query(c, in, false), ref = run_ref_query(c, in);
  const double tol_q = qo.em_q.rel<float>() * test::max_abs(qo.q), tol_w = qo.em_w.rel<float>() * test::max_abs(qo.w);
  EXPECT_TRUE(test::all_close(got.q, qo.q, tol_q)) << "q against fp64";
  EXPECT_TRUE(test::all_close(got.w, qo.w, tol_w)) << "w against fp64";
  EXPECT_TRUE(test::all_close(got.q, ref.q, 2 * tol_q)) << "q against ref::dsa_indexer_query<float>";
  EXPECT_TRUE(test::all_close(got.w, ref.w, 2 * tol_w)) << "w against ref::dsa_indexer_query<float>";
  const QOut got_q = run_gpu_query(c, in, true);
  EXPECT_TRUE(test::bitwise_equal(got_q.q, host_quant(got.q, c.dI))) << "quantised q";
  EXPECT_TRUE(test::bitwise_equal(got_q.w, got.w)) << "w does not depend on quant";
  EXPECT_GT(test::max_abs_diff(std::vector<double>(got_q.q.begin(), got_q.q.end()), qo.q), 10 * tol_q);

  ErrModel em;
  const std::vector<double> k = key_oracle(c, in, em);
  const double tol_k = em.rel<float>() * test::max_abs(k);
  const std::vector<float> got_k = run_gpu_keys(c, in, false);
  EXPECT_TRUE(test::all_close(got_k, k, tol_k)) << "k against fp64";
  EXPECT_TRUE(test::all_close(got_k, run_ref_keys(c, in), 2 * tol_k)) << "k against ref::dsa_indexer_keys<float>";
  const std::vector<float> got_kq = run_gpu_keys(c, in, true);
  EXPECT_TRUE(test::bitwise_equal(got_kq, host_quant(got_k, c.dI))) << "quantised k";
  EXPECT_GT(test::max_abs_diff(std::vector<double>(got_kq.begin(), got_kq.end()), k), 10 * tol_k);
}

TEST(CudaDsaIndexer, QueriesAndKeys) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_proj(kSmallProj, 10);
  check_proj(kMidProj, 20);
  check_proj(kV32Proj, 30);
}

// ---------------------------------------------------------------------------------------
// Scores and top-k (ratio 1: key j is token j).

struct SelCase {
  int64_t T, N, HI, dI, topk, pos0;
  int64_t ratio_given = 1;  // the params' ratio, which the op must ignore
  bool visible(int64_t r, int64_t j) const { return j <= pos0 + r; }
};

void check_select(const SelCase& c, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "T " << c.T << " N " << c.N << " HI " << c.HI << " dI " << c.dI
                                    << " topk " << c.topk << " pos0 " << c.pos0 << " ratio " << c.ratio_given);
  const std::vector<float> q = test::normal<float>(size_t(c.T * c.HI * c.dI), seed),
                           k = test::normal<float>(size_t(c.N * c.dI), seed + 1),
                           w = test::uniform<float>(size_t(c.T * c.HI), seed + 2, -1.0, 1.0);
  std::vector<double> oscores, mag;
  test::oracle_scores(c, std::vector<double>(q.begin(), q.end()), std::vector<double>(k.begin(), k.end()),
                      std::vector<double>(w.begin(), w.end()), oscores, mag);
  std::vector<double> tol(size_t(c.T));
  for (int64_t r = 0; r < c.T; ++r) tol[size_t(r)] = test::score_tol<float>(c, mag[size_t(r)]);

  cuda::DeviceBuffer<float> dq(q), dk(k), dw(w), ds(size_t(c.T * c.N));
  cuda::DeviceBuffer<int32_t> di(size_t(c.T * c.topk));
  IndexerParams<float> p;
  p.q = view2<const float>(dq.data(), c.T, c.HI * c.dI);
  p.k = view2<const float>(dk.data(), c.N, c.dI);
  p.w = view2<const float>(dw.data(), c.T, c.HI);
  p.heads = c.HI;
  p.ratio = c.ratio_given;
  p.topk = c.topk;
  p.pos0 = c.pos0;
  p.scores = view2(ds.data(), c.T, c.N);
  p.indices = view2(di.data(), c.T, c.topk);
  launch_and_sync([&] { cuda::dsa_indexer(p); });
  const std::vector<float> scores = ds.download();
  const std::vector<int32_t> idx = di.download();

  for (int64_t r = 0; r < c.T; ++r)  // -inf exactly where invisible (all_close compares infinities first)
    EXPECT_TRUE(test::all_close(&scores[size_t(r * c.N)], &oscores[size_t(r * c.N)], size_t(c.N), tol[size_t(r)]))
        << "row " << r;
  EXPECT_TRUE(test::selection_invariants(c, idx));
  EXPECT_TRUE(test::selection_within_tol(c, idx, oscores, tol));

  std::vector<float> rscores(size_t(c.T * c.N));
  std::vector<int32_t> ridx(size_t(c.T * c.topk));
  IndexerParams<float> rp = p;
  rp.q = view2(q.data(), c.T, c.HI * c.dI);
  rp.k = view2(k.data(), c.N, c.dI);
  rp.w = view2(w.data(), c.T, c.HI);
  rp.scores = view2(rscores.data(), c.T, c.N);
  rp.indices = view2(ridx.data(), c.T, c.topk);
  ref::dsa_indexer(rp);
  for (int64_t r = 0; r < c.T; ++r)
    EXPECT_TRUE(test::all_close(&scores[size_t(r * c.N)], &rscores[size_t(r * c.N)], size_t(c.N), 2 * tol[size_t(r)]))
        << "row " << r << " against ref::dsa_indexer<float>";
}

TEST(CudaDsaIndexer, ScoresAndTopk) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_select({3, 40, 4, 32, 8, 37}, 40);           // prefill tail: rows see 38..40 keys
  check_select({5, 300, 64, 128, 2048, 295, 4}, 50);  // V3.2 heads, topk beyond the keys, ratio 4 ignored
  check_select({1, 5000, 64, 128, 2048, 4999}, 60);  // decode at V3.2's topk
  check_select({2, 10, 2, 16, 4, 0}, 70);            // row 0 sees one key
}

// ---------------------------------------------------------------------------------------
// Host-side validation (no device needed: the one-off calls check before they allocate).

TEST(CudaDsaIndexer, RejectsBadShapesOnHost) {
  float buf[4] = {1, 2, 3, 4};  // never dereferenced: every call fails validation first
  const auto query = [&] {
    DsaQueryParams<float> p;
    p.cq = view2<const float>(buf, 2, 64);
    p.x = view2<const float>(buf, 2, 96);
    p.wq_b = p.weights_proj = buf;
    p.heads = 2;
    p.head_dim = 64;
    p.q = view2(buf, 2, 128);
    p.w = view2(buf, 2, 2);
    return p;
  };
  const auto expect = [](auto&& call, const std::string& fragment) {
    try {
      call();
      ADD_FAILURE() << "accepted; expected an InputError containing '" << fragment << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  DsaQueryParams<float> p = query();
  p.q = view2(buf, 2, 127);
  expect([&] { cuda::dsa_indexer_query(p); }, "dsa_indexer_query: output 'q': expected shape");
  p = query();
  p.w = view2(buf, 2, 3);
  expect([&] { cuda::dsa_indexer_query(p); }, "dsa_indexer_query: output 'w': expected shape");
  p = query();
  p.q = {buf, 2, 128, 130};
  expect([&] { cuda::dsa_indexer_query(p); }, "dsa_indexer: outputs must be dense");
  p = query();
  p.head_dim = 96;  // >= rope_dim, not a power of two
  p.q = view2(buf, 2, 192);
  expect([&] { cuda::dsa_indexer_query(p); }, "power of two");
  p = query();
  p.x = view2<const float>(buf, 3, 96);
  expect([&] { cuda::dsa_indexer_query(p); }, "tensor 'x'");

  DsaKeyParams<float> kp;
  kp.x = view2<const float>(buf, 2, 96);
  kp.wk = buf;
  kp.head_dim = 64;
  kp.k = view2(buf, 2, 63);
  expect([&] { cuda::dsa_indexer_keys(kp); }, "dsa_indexer_keys: output 'k': expected shape");
  kp.k = view2(buf, 2, 64);
  kp.rope.rope_dim = 128;
  expect([&] { cuda::dsa_indexer_keys(kp); }, "exceeds head_dim");
}

}  // namespace
}  // namespace dsv4
