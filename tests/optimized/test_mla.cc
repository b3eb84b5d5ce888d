// dsv4::cuda::mla (absorbed multi-head latent attention, V3 dense / V3.2 sparse) against a
// double-precision oracle and against its CPU twin ref::mla<float>. Spec:
// docs/v4-architecture.md §1.2, §2.10:
//   query row r at position p = pos0 + r; entries: every kv row j <= p (dense) or the row's
//   indices (skipping -1 and j > p, duplicates counting twice); s_j = scale q_h . kv_j over dk
//   dims; o_h = sum_j softmax(s)_j kv_j[0:dl]; lse_h = ln sum_j exp(s_j); no entry: o = 0,
//   lse = -inf.
// Oracle: naive::attend without a sink and its tolerances attend_tol_o / attend_tol_lse
// (tests/support/naive.h). Label gpu: every test that needs a device skips, with the reason,
// when there is none; the validation tests run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/mla.cuh"
#include "reference/errors.h"
#include "reference/mla.h"
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
  int64_t T, Tk, H, dk, dl;
  int64_t pos0 = -1;   // -1: Tk - T
  int64_t k = 0;       // indices per row; 0: dense
  int64_t q_pad = 0, o_pad = 0;
  int64_t capacity = 0;  // workspace scores; 0: one-off sizing
  int64_t pos(int64_t r) const { return (pos0 < 0 ? Tk - T : pos0) + r; }
};

struct Inputs {
  std::vector<float> q, kv;
  std::vector<int32_t> idx;  // [T, k]
};
// q, kv ~ N(0, 1) with q scaled so that the scores spread over a few units; indices uniform in
// [-1, p + 3] (the future rows and -1 must be skipped; duplicates occur), row 0 all -1 when
// the case has indices and more than one row (nothing to attend to).
Inputs make_inputs(const Case& c, uint64_t seed) {
  Inputs in{test::normal<float>(size_t(c.T * c.H * c.dk), seed, 2.0),
            test::normal<float>(size_t(c.Tk * c.dk), seed + 1), {}};
  if (c.k) {
    const std::vector<double> u = test::uniform(size_t(c.T * c.k), seed + 2);
    for (int64_t r = 0; r < c.T; ++r)
      for (int64_t i = 0; i < c.k; ++i) {
        const int64_t hi = std::min(c.pos(r) + 3, c.Tk - 1);
        int64_t j = -1 + int64_t((u[size_t(r * c.k + i)] + 1) / 2 * double(hi + 2));
        j = std::min(j, hi);
        in.idx.push_back(c.T > 1 && r == 0 ? -1 : int32_t(j));
      }
  }
  return in;
}

struct Expect {
  std::vector<double> o, lse;
  naive::AttendStats st;
  int64_t nmax = 1;
  double lsemax = 0;
};
Expect oracle(const Case& c, const Inputs& in) {
  Expect x;
  const std::vector<double> q(in.q.begin(), in.q.end()), kv(in.kv.begin(), in.kv.end());
  const double scale = 1.0 / std::sqrt(double(c.dk));
  x.o.assign(size_t(c.T * c.H * c.dl), 0.0);
  for (int64_t r = 0; r < c.T; ++r) {
    std::vector<const double*> ent;
    if (c.k) {
      for (int64_t i = 0; i < c.k; ++i) {
        const int32_t j = in.idx[size_t(r * c.k + i)];
        if (j >= 0 && j <= c.pos(r)) ent.push_back(&kv[size_t(j * c.dk)]);
      }
    } else {
      for (int64_t j = 0; j <= c.pos(r); ++j) ent.push_back(&kv[size_t(j * c.dk)]);
    }
    x.nmax = std::max<int64_t>(x.nmax, int64_t(ent.size()));
    for (int64_t h = 0; h < c.H; ++h) {
      const double l = naive::attend(&q[size_t((r * c.H + h) * c.dk)], ent, c.dk, c.dl, scale, -naive::kInf,
                                     &x.o[size_t((r * c.H + h) * c.dl)], &x.st);
      x.lse.push_back(l);
      if (std::isfinite(l)) x.lsemax = std::max(x.lsemax, std::fabs(l));
    }
  }
  return x;
}

MlaParams<float> params(const Case& c) {
  MlaParams<float> p;
  p.heads = c.H;
  p.latent_dim = c.dl;
  p.pos0 = c.pos0;
  return p;
}

struct Out {
  std::vector<float> o, lse;
};

Out run_ref(const Case& c, const Inputs& in) {
  Out out{std::vector<float>(size_t(c.T * c.H * c.dl), test::kPoison), std::vector<float>(size_t(c.T * c.H), test::kPoison)};
  MlaParams<float> p = params(c);
  p.q = view2(in.q.data(), c.T, c.H * c.dk);
  p.kv = view2(in.kv.data(), c.Tk, c.dk);
  if (c.k) p.indices = view2(in.idx.data(), c.T, c.k);
  p.o = view2(out.o.data(), c.T, c.H * c.dl);
  p.lse = view2(out.lse.data(), c.T, c.H);
  ref::mla(p);
  return out;
}

// The GPU op on poisoned, canaried o (row stride H*dl + o_pad) and lse from q with row stride
// H*dk + q_pad; canaries and a bitwise rerun.
Out run_gpu(const Case& c, const Inputs& in) {
  const Guarded gq{c.T, c.H * c.dk, c.H * c.dk + c.q_pad}, go{c.T, c.H * c.dl, c.H * c.dl + c.o_pad},
      gl{c.T, c.H, c.H + 1};
  cuda::DeviceBuffer<float> dq(gq.image(in.q)), dkv(in.kv), d_o(go.poisoned()), dl(gl.poisoned());
  cuda::DeviceBuffer<int32_t> didx(in.idx);
  MlaParams<float> p = params(c);
  p.q = gq.view<const float>(dq.data());
  p.kv = view2<const float>(dkv.data(), c.Tk, c.dk);
  if (c.k) p.indices = view2<const int32_t>(didx.data(), c.T, c.k);
  p.o = go.view(d_o.data());
  p.lse = gl.view(dl.data());
  cuda::MlaWorkspace ws(c.capacity ? c.capacity : c.T * c.H * c.Tk);
  auto launch = [&] { cuda::mla(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> o_img = d_o.download(), l_img = dl.download();
  EXPECT_TRUE(go.canaries_intact(o_img)) << "o";
  EXPECT_TRUE(gl.canaries_intact(l_img)) << "lse";
  dl.upload(gl.poisoned());
  EXPECT_TRUE(test::rerun_bitwise(d_o, go.poisoned(), o_img, launch)) << "rerun differs (o)";
  EXPECT_TRUE(test::bitwise_equal(dl.download(), l_img)) << "rerun differs (lse)";
  return {go.extract(o_img), gl.extract(l_img)};
}

// o and lse within naive::attend_tol_o / attend_tol_lse of fp64 (the score is a length-dk dot
// product, the weights' relative error at most doubled by the normalisation, the value sum a
// length-n reduction), lse's -inf (rows with nothing to attend to) exactly; and within twice
// those of the float reference (both within them of the exact values).
void check(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const Inputs in = make_inputs(c, seed);
  const Expect x = oracle(c, in);
  const double to = naive::attend_tol_o<float>(x.st.smag, x.st.omag, c.dk, x.nmax);
  const double tl = naive::attend_tol_lse<float>(x.st.smag, x.lsemax, c.dk, x.nmax);
  const Out got = run_gpu(c, in), ref = run_ref(c, in);
  EXPECT_TRUE(test::all_close(got.o, x.o, to)) << "o against fp64";
  EXPECT_TRUE(test::all_close(got.lse, x.lse, tl)) << "lse against fp64";
  EXPECT_TRUE(test::all_close(got.o, ref.o, 2 * to)) << "o against ref::mla<float>";
  EXPECT_TRUE(test::all_close(got.lse, ref.lse, 2 * tl)) << "lse against ref::mla<float>";
}

TEST(CudaMla, DenseEdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({"T=1 Tk=1", 1, 1, 1, 48, 32}, 10);
  check({"prefill from 0, padded", 5, 5, 3, 48, 32, -1, 0, 3, 2}, 20);
  check({"explicit pos0, chunks of 2 rows", 5, 40, 4, 72, 64, 20, 0, 0, 0, 2 * 4 * 40}, 30);
}

TEST(CudaMla, SparseEdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check({"indices: -1, future rows, duplicates, an empty row", 4, 30, 2, 48, 32, -1, 12}, 40);
  check({"indices, one row per chunk", 3, 50, 3, 48, 32, 10, 20, 1, 1, 3 * 50}, 50);
}

TEST(CudaMla, V3Shapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  // V3 / V3.2: 128 heads, dk = 512 latent + 64 rope; decode rows.
  check({"V3 dense decode", 1, 3000, 128, 576, 512}, 60);
  check({"V3.2 sparse decode, k 2048", 2, 5000, 128, 576, 512, -1, kDsaTopk}, 70);
}

// ---------------------------------------------------------------------------------------
// Host-side validation (no device needed: the one-off call checks before it allocates).

TEST(CudaMla, RejectsBadShapesOnHost) {
  float buf[4] = {1, 2, 3, 4};  // never dereferenced: every call fails validation first
  int32_t ibuf[4] = {0, 0, 0, 0};
  const auto good = [&] {
    MlaParams<float> p;
    p.q = view2<const float>(buf, 2, 2 * 48);
    p.kv = view2<const float>(buf, 10, 48);
    p.heads = 2;
    p.latent_dim = 32;
    p.o = view2(buf, 2, 2 * 32);
    return p;
  };
  const auto expect = [](const MlaParams<float>& p, const std::string& fragment) {
    try {
      cuda::mla(p);
      ADD_FAILURE() << "accepted; expected an InputError containing '" << fragment << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  MlaParams<float> p = good();
  p.latent_dim = 49;
  expect(p, "mla: latent_dim 49 must be in [1, 48]");
  p = good();
  p.q = view2<const float>(buf, 2, 2 * 48 + 1);
  expect(p, "mla: tensor 'q': expected shape");
  p = good();
  p.pos0 = 9;
  expect(p, "mla: key 'pos0' (9) + T (2) must not exceed the kv rows (10)");
  p = good();
  p.o = view2(buf, 2, 2 * 48);
  expect(p, "mla: output 'o' has the wrong shape");
  p = good();
  p.indices = view2<const int32_t>(ibuf, 1, 4);
  expect(p, "mla: tensor 'indices': expected 2 rows");
  p = good();
  p.lse = view2(buf, 2, 3);
  expect(p, "mla: output 'lse': expected shape");
  cuda::MlaWorkspace ws(0);  // below H * Tk (and no device memory)
  try {
    cuda::mla(good(), ws);
    ADD_FAILURE() << "accepted a workspace below H * Tk";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("holds 0 scores; one query row needs H * Tk = 20"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace dsv4
