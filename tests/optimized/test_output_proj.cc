// dsv4::cuda::output_proj (the output path of a V4 attention layer) against a double-precision
// oracle written from the spec and against its CPU twin ref::output_proj<float>. Spec:
// docs/v4-architecture.md §2.6, §2.7, §9.4:
//   inverse RoPE (angle -p) on the last 64 dims of every head; u_k = Wo_a^(k) applied to the
//   concatenated heads of group k (rows [k*r, (k+1)*r) of wo_a); y = Wo_b [u_0; ...; u_{g-1}];
//   act_quant: FP8 (1x128) round trip of u before Wo_b.
// Oracle pieces: tests/optimized/path_oracle.h (projections), the RoPE tables and rotation,
// naive::quant_blocks (tests/support/naive.h). Label gpu: every test that needs a device skips,
// with the reason, when there is none; the validation tests run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/output_proj.cuh"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/output_proj.h"
#include "reference/quant_fp8.h"
#include "reference/rope.h"
#include "tests/optimized/path_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/expect_error.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
namespace paths = test::paths;
using test::ErrModel;
using test::Guarded;
using test::launch_and_sync;

struct Case {
  std::string name;
  int64_t T, H, d, g, r, D;
  bool compressed;  // §2.7 table: YaRN (CSA / HCA layers) or theta 1e4 (window-only)
  int64_t pos0;
  int64_t o_pad = 0, y_pad = 0;  // row strides beyond the widths
  // Rows [64, 128) of wo_a (u's columns [64, 128)) scaled by 1e-4: FP8 is a floating format, so
  // the act_quant block's power-of-two scale shows only on values far below the block's amax;
  // in the 128-wide block these u values fall on the subnormal grid, in a block of 64 they
  // would not.
  bool tiny_block = false;
  int64_t Hd() const { return H * d; }
  int64_t gw() const { return H / g * d; }
  int64_t gr() const { return g * r; }
};

// Edge lengths (one row; g*r not a multiple of the 128-wide FP8 block; one group; padded
// strides) and the real shapes: V4-Flash H 64, g 8, D 4096; V4-Pro H 128, g 16, D 7168; d 512,
// o_rank 1024 (§1.1).
const Case kSmall{"small T=1", 1, 4, 128, 2, 64, 256, false, 0, 3, 5};
const Case kOdd{"T=5 g*r=288 D=200", 5, 6, 128, 3, 96, 200, true, 70000, 0, 2, true};
const Case kOneGroup{"one group", 2, 2, 128, 1, 128, 128, false, 17};
const Case kFlash{"V4-Flash", 3, 64, kHeadDim, 8, 1024, 4096, true, 5000};
const Case kPro{"V4-Pro", 2, 128, kHeadDim, 16, 1024, 7168, false, 123};

struct Inputs {
  std::vector<float> o, wo_a, wo_b;
};
Inputs make_inputs(const Case& c, uint64_t seed) {
  Inputs in{test::normal<float>(size_t(c.T * c.Hd()), seed), paths::unit_gain(c.gr(), c.gw(), seed + 1),
            paths::unit_gain(c.D, c.gr(), seed + 2)};
  if (c.tiny_block)
    for (size_t i = size_t(64 * c.gw()); i < size_t(128 * c.gw()); ++i) in.wo_a[i] *= 1e-4f;
  return in;
}
// wo_b = the identity [g*r, g*r]: y = u exactly (one non-zero term per output), which makes
// the op's internal u observable.
std::vector<float> identity(int64_t n) {
  std::vector<float> w(size_t(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) w[size_t(i * n + i)] = 1.0f;
  return w;
}

RopeConfig table(const Case& c) { return c.compressed ? rope_v4_compressed() : rope_v4_swa(); }

// §2.6 up to u in double: u [T, g*r].
std::vector<double> oracle_u(const Case& c, const Inputs& in, ErrModel& em) {
  const std::vector<double>& f = c.compressed ? naive::v4_compressed_freqs() : naive::v4_window_freqs();
  std::vector<double> out;
  for (int64_t t = 0; t < c.T; ++t) {
    std::vector<double> o(in.o.begin() + t * c.Hd(), in.o.begin() + (t + 1) * c.Hd());
    for (int64_t h = 0; h < c.H; ++h)
      naive::rope_interleaved(&o[size_t(h * c.d + c.d - naive::kRopeDim)], double(c.pos0 + t), f, -1.0);
    for (int64_t k = 0; k < c.g; ++k) {
      const std::vector<double> u =
          paths::linear(in.wo_a, c.r, c.gw(), o.data() + k * c.gw(), em, "wo_a", k * c.r * c.gw());
      out.insert(out.end(), u.begin(), u.end());
    }
  }
  return out;
}

// §2.6 last step in double from u [T, g*r] (FP8-rounded first when act_quant): y [T, D].
std::vector<double> oracle_y(const Case& c, const Inputs& in, std::vector<double> u, bool act_quant, ErrModel& em) {
  std::vector<double> out;
  for (int64_t t = 0; t < c.T; ++t) {
    double* ut = u.data() + t * c.gr();
    if (act_quant) naive::quant_blocks(naive::Fmt::fp8, ut, c.gr(), kActBlock);
    const std::vector<double> y = paths::linear(in.wo_b, c.D, c.gr(), ut, em, "wo_b");
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

OutputProjParams<float> params(const Case& c, bool act_quant) {
  OutputProjParams<float> p;
  p.heads = c.H;
  p.head_dim = c.d;
  p.groups = c.g;
  p.o_rank = c.r;
  p.pos0 = c.pos0;
  p.rope = table(c);
  p.act_quant = act_quant;
  return p;
}

std::vector<float> run_ref(const Case& c, const Inputs& in, bool act_quant) {
  std::vector<float> y(size_t(c.T * c.D), test::kPoison);
  OutputProjParams<float> p = params(c, act_quant);
  p.o = view2(in.o.data(), c.T, c.Hd());
  p.wo_a = in.wo_a.data();
  p.wo_b = in.wo_b.data();
  p.y = view2(y.data(), c.T, c.D);
  ref::output_proj(p);
  return y;
}

// The GPU op on a poisoned, canaried y (row stride D + y_pad; D = wo_b's rows) from o with row
// stride H*d + o_pad; checks the canaries, that o is untouched, and a bitwise rerun.
std::vector<float> run_gpu(const Case& c, const Inputs& in, bool act_quant) {
  const int64_t D = int64_t(in.wo_b.size()) / c.gr();
  const Guarded go{c.T, c.Hd(), c.Hd() + c.o_pad}, gy{c.T, D, D + c.y_pad};
  const std::vector<float> o_img = go.image(in.o);
  cuda::DeviceBuffer<float> d_o(o_img), dwa(in.wo_a), dwb(in.wo_b), dy(gy.poisoned());
  OutputProjParams<float> p = params(c, act_quant);
  p.o = go.view<const float>(d_o.data());
  p.wo_a = dwa.data();
  p.wo_b = dwb.data();
  p.y = gy.view(dy.data());
  cuda::OutputProjWorkspace ws(c.T, c.Hd(), c.gr());
  auto launch = [&] { cuda::output_proj(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> img = dy.download();
  EXPECT_TRUE(gy.canaries_intact(img));
  EXPECT_TRUE(test::bitwise_equal(d_o.download(), o_img)) << "the input o was modified";
  EXPECT_TRUE(test::rerun_bitwise(dy, gy.poisoned(), img, launch)) << "rerun differs";
  return gy.extract(img);
}

// Without act_quant: y within the error model's tolerance of fp64 (stages wo_a and wo_b,
// error_model.h; the inverse RoPE is well-conditioned) and within twice that of the float
// reference (both within it of the exact values).
void check_plain(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.name);
  const Inputs in = make_inputs(c, seed);
  ErrModel em;
  const std::vector<double> y = oracle_y(c, in, oracle_u(c, in, em), false, em);
  const double tol = em.rel<float>() * test::max_abs(y);
  const std::vector<float> got = run_gpu(c, in, false);
  EXPECT_TRUE(test::all_close(got, y, tol)) << "against fp64";
  EXPECT_TRUE(test::all_close(got, run_ref(c, in, false), 2 * tol)) << "against ref::output_proj<float>";
}

// With act_quant. The FP8 rounding of u is a step function (a u within the GEMM error of a
// rounding boundary may round either way), so it is checked on the op's own u: with wo_b the
// identity, y = u; the act_quant run must then give exactly the reference quantiser
// (ref::quant_fp8, blocks of 128) of the plain run's u (the device quantiser is a bitwise twin
// and the wo_a SGEMM is deterministic); u itself within the wo_a stage's tolerance of fp64.
// Then with the real wo_b: y within the wo_b stage's tolerance of the fp64 product of wo_b and
// the quantised GPU u, and far from the unquantised y (non-vacuity: beyond 2 tol, and 10 times
// the measured error; with K = g*r = 8192 the model's tol is within 10x of the FP8 effect).
void check_act_quant(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.name + " act_quant");
  const Inputs in = make_inputs(c, seed);
  Inputs id = in;
  id.wo_b = identity(c.gr());
  ErrModel em_u;
  const std::vector<double> u_want = oracle_u(c, in, em_u);
  const std::vector<float> u = run_gpu(c, id, false);
  EXPECT_TRUE(test::all_close(u, u_want, em_u.rel<float>() * test::max_abs(u_want))) << "u against fp64";
  std::vector<float> uq = u;
  ref::quant_fp8<float>({view2<const float>(u.data(), c.T, c.gr()), view2(uq.data(), c.T, c.gr()), kActBlock, 0});
  // Equal values (atol 0), not bits: the identity product turns a quantised -0 into +0.
  EXPECT_TRUE(test::all_close(run_gpu(c, id, true), uq, 0.0)) << "u: not the reference quantiser of the GPU's u";

  ErrModel em_y;
  const std::vector<double> y = oracle_y(c, in, std::vector<double>(u.begin(), u.end()), true, em_y);
  const double tol = em_y.rel<float>() * test::max_abs(y);
  const std::vector<float> got = run_gpu(c, in, true);
  EXPECT_TRUE(test::all_close(got, y, tol)) << "y against fp64 from the GPU's u";
  ErrModel unused;
  const std::vector<double> y_plain = oracle_y(c, in, u_want, false, unused);
  const double effect = test::max_abs_diff(std::vector<double>(got.begin(), got.end()), y_plain);
  EXPECT_GT(effect, 2 * tol) << "act_quant had no visible effect";
  EXPECT_GT(effect, 10 * paths::max_err(got, y)) << "act_quant's effect is not far above the GPU's error";
}

TEST(CudaOutputProj, EdgeShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_plain(kSmall, 10);
  check_plain(kOdd, 20);
  check_plain(kOneGroup, 30);
}

TEST(CudaOutputProj, RealShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_plain(kFlash, 40);
}

// V4-Pro's weights are ~10^8 values (seconds of host-side generation and fp64 oracle on CI's
// two cores): run with DSV4_LONG_TESTS=1. V4-Flash (above) has the same code paths.
TEST(CudaOutputProj, RealShapesPro) {
  DSV4_SKIP_WITHOUT_DEVICE();
  if (!std::getenv("DSV4_LONG_TESTS")) GTEST_SKIP() << "V4-Pro shapes: set DSV4_LONG_TESTS=1";
  check_plain(kPro, 50);
}

TEST(CudaOutputProj, ActQuant) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_act_quant(kSmall, 60);
  check_act_quant(kOdd, 70);
  check_act_quant(kFlash, 80);
}

TEST(CudaOutputProj, NoRows) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Case c{"T=0", 0, 4, 128, 2, 64, 256, false, 0};
  EXPECT_TRUE(run_gpu(c, make_inputs(c, 90), true).empty());
}

// ---------------------------------------------------------------------------------------
// Host-side validation: bad shapes are rejected before any device work (no device needed: the
// one-off call checks before it allocates, so a missed check would surface as CudaError).

OutputProjParams<float> fake_params(float* buf) {
  OutputProjParams<float> p = params(kSmall, true);
  p.o = view2<const float>(buf, 2, 4 * 128);
  p.wo_a = p.wo_b = buf;
  p.y = view2(buf, 2, 256);
  return p;
}

void expect_input_error(const OutputProjParams<float>& p, const std::string& fragment) {
  test::expect_input_error([&] { cuda::output_proj(p); }, {fragment});
}

TEST(CudaOutputProj, RejectsBadShapesOnHost) {
  float buf[4] = {1, 2, 3, 4};  // never dereferenced: every call fails validation first
  OutputProjParams<float> p = fake_params(buf);
  p.o = view2<const float>(buf, 2, 4 * 128 - 1);
  expect_input_error(p, "output_proj: tensor 'o': expected 512 columns");
  p = fake_params(buf);
  p.groups = 3;
  expect_input_error(p, "output_proj: key 'groups' (3) must divide the head count 4");
  p = fake_params(buf);
  p.groups = 0;
  expect_input_error(p, "must divide the head count");
  p = fake_params(buf);
  p.y = view2(buf, 3, 256);
  expect_input_error(p, "output_proj: output 'y' has the wrong row count");
  p = fake_params(buf);
  p.rope.rope_dim = 256;  // > head_dim 128
  expect_input_error(p, "exceeds head_dim");
  p = fake_params(buf);
  p.o_rank = 0;
  expect_input_error(p, "must be positive");
  p = fake_params(buf);
  p.wo_a = nullptr;
  expect_input_error(p, "must be device pointers");
}

TEST(CudaOutputProj, RejectsAWorkspaceTooSmallOnHost) {
  float buf[4] = {1, 2, 3, 4};
  cuda::OutputProjWorkspace ws(0, 4 * 128, 2 * 64);  // no rows: no device memory
  try {
    cuda::output_proj(fake_params(buf), ws);
    ADD_FAILURE() << "accepted a workspace of 0 rows for 2";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("the workspace holds 0 rows"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dsv4
