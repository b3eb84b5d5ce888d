// dsv4::cuda::expert / expert_compact (optimized/moe.cuh): one SwiGLU expert over a set of rows
// with given route weights, against a double-precision oracle written from the spec, against
// ref::expert<float>, against cuda::moe's per-expert path (bitwise), and compact == FP32
// (bitwise). Spec: docs/v4-architecture.md §3.2, §9 items 1-4:
//   g = W1 x, u = W3 x; limit > 0: u <- clamp(u, -limit, limit), g <- min(g, limit);
//   h = SiLU(g) u w (w = route_weight[t * stride], 1 when absent); out = W2 h;
//   y = out, or y + out with accumulate; act_quant: FP8 round trip (1x128, UE8M0) of x and h.
//
// Tolerances (derived as in tests/optimized/test_moe.cc):
//   dg = reduction_tol<float>(D, sum_d |W1_id x_d|), du likewise; h errs by |w| (|u| dSiLU(g, dg)
//   + |SiLU(g)| du) + reduction_tol(3, |h|) (dSiLU: SiLU's change over [g - dg, g + dg], with the
//   clamp); an output by sum_i |W2_di| dh_i + reduction_tol(I, sum_i |W2_di h_i|); accumulate
//   adds one rounding of y0 + out (reduction_tol(2, |y0| + |out|)). The GPU's worst error is
//   also at most 2x ref::expert<float>'s plus a floor of half the largest bound.
//   act_quant: FP8 rounding of x and h is discontinuous (an ulp can move a value to the next
//   FP8 step), so the check is statistical: the RMS difference from ref::expert<float> with
//   act_quant is below a tenth of the act_quant effect (the reference with against without).
// Bitwise checks (see moe.cuh's header for why they hold):
//   * expert() over the rows cuda::moe routes to each expert, gathered in moe's order, with
//     their route weights, plus expert() of the shared expert, combined on the host in moe's
//     order (ascending expert id, then slot; the shared output last) == cuda::moe's y;
//   * expert_compact (FP4 stack, matrix `index`; FP8 shared) == expert() on the decoded weights.
// Label gpu: every device test skips, with the reason, when there is none; the host-side
// validation tests run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "optimized/compact_weights.cuh"
#include "optimized/device.cuh"
#include "optimized/moe.cuh"
#include "reference/errors.h"
#include "reference/moe.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::launch_and_sync;
using test::reduction_tol;

template <class F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// ---- inputs -----------------------------------------------------------------------------

// One expert's problem: x [T, D], W1/W3 [I, D], W2 [D, I], route weights [T] (stored with a
// stride), the initial y for accumulate.
struct Case {
  int64_t T, D, I;
  double limit = kSwigluLimit;
  bool weighted = true, accumulate = false, act_quant = false;
  int64_t wstride = 3;     // route weight t at rw[t * wstride]
  int64_t x_pad = 0, y_pad = 0;  // row strides D + pad
  std::vector<float> x, w1, w3, w2, rw, y0;
};

// W1, W3 ~ U(-a, a) with a = wscale 2.5 sqrt(3 / D): with x ~ U(-1, 1), g and u have standard
// deviation 1.44 wscale (test_moe.cc's make_layer); wscale 6 hits the clamp at 10 on all four
// sides. W2 ~ U(-1, 1) / sqrt(I); route weights U(0.1, 2); y0 U(-1, 1).
Case make_case(int64_t T, int64_t D, int64_t I, double wscale, uint64_t seed) {
  Case c{T, D, I};
  const double a = wscale * 2.5 * std::sqrt(3.0 / double(D)), b = 1.0 / std::sqrt(double(I));
  c.x = test::uniform<float>(size_t(T * D), seed, -1, 1);
  c.w1 = test::uniform<float>(size_t(I * D), seed + 1, -a, a);
  c.w3 = test::uniform<float>(size_t(I * D), seed + 2, -a, a);
  c.w2 = test::uniform<float>(size_t(D * I), seed + 3, -b, b);
  c.rw = test::uniform<float>(size_t(std::max<int64_t>(T, 1) * c.wstride), seed + 4, 0.1, 2.0);
  c.y0 = test::uniform<float>(size_t(T * D), seed + 5, -1, 1);
  return c;
}

float route_weight(const Case& c, int64_t t) {
  return c.weighted ? c.rw[size_t(t * c.wstride)] : 1.f;
}

// ---- fp64 oracle ------------------------------------------------------------------------

double silu_of(double g) { return g / (1 + std::exp(-g)); }

// SiLU's change over [g - dg, g + dg] after the one-sided clamp: the larger endpoint change,
// or 1.1 dg (|SiLU'| <= 1.1) when the interval holds SiLU's minimum (g = -1.2785), where an
// endpoint change can understate it.
double silu_err(double g, double dg, double limit) {
  auto c = [&](double v) { return limit > 0 ? std::min(v, limit) : v; };
  constexpr double kSiluMin = -1.2785;
  if (g - dg <= kSiluMin && kSiluMin <= g + dg) return 1.1 * dg;
  const double s = silu_of(c(g));
  return std::max(std::fabs(silu_of(c(g + dg)) - s), std::fabs(silu_of(c(g - dg)) - s));
}

struct Oracle {
  std::vector<double> y, bound;  // [T, D]
  int64_t hits[4] = {0, 0, 0, 0};  // g > l, g < -l, u > l, u < -l
};

Oracle expert_oracle(const Case& c) {
  const int64_t T = c.T, D = c.D, I = c.I;
  Oracle o{std::vector<double>(size_t(T * D)), std::vector<double>(size_t(T * D))};
  std::vector<double> h(static_cast<size_t>(I)), dh(static_cast<size_t>(I));
  for (int64_t t = 0; t < T; ++t) {
    const float* x = &c.x[size_t(t * D)];
    const double w = double(route_weight(c, t));
    for (int64_t i = 0; i < I; ++i) {
      double g = 0, u = 0, ga = 0, ua = 0;
      for (int64_t d = 0; d < D; ++d) {
        const double xd = double(x[d]);
        g += double(c.w1[size_t(i * D + d)]) * xd;
        u += double(c.w3[size_t(i * D + d)]) * xd;
        ga += std::fabs(double(c.w1[size_t(i * D + d)]) * xd);
        ua += std::fabs(double(c.w3[size_t(i * D + d)]) * xd);
      }
      o.hits[0] += g > c.limit;
      o.hits[1] += g < -c.limit;
      o.hits[2] += u > c.limit;
      o.hits[3] += u < -c.limit;
      if (c.limit > 0) {
        u = std::min(std::max(u, -c.limit), c.limit);
        g = std::min(g, c.limit);
      }
      const double silu = silu_of(g);
      h[size_t(i)] = silu * u * w;
      dh[size_t(i)] =
          std::fabs(w) * (std::fabs(u) * silu_err(g, reduction_tol<float>(double(D), ga), c.limit) +
                          std::fabs(silu) * reduction_tol<float>(double(D), ua)) +
          reduction_tol<float>(3, std::fabs(h[size_t(i)]));
    }
    for (int64_t d = 0; d < D; ++d) {
      double s = 0, m = 0, b = 0;
      for (int64_t i = 0; i < I; ++i) {
        s += double(c.w2[size_t(d * I + i)]) * h[size_t(i)];
        m += std::fabs(double(c.w2[size_t(d * I + i)]) * h[size_t(i)]);
        b += std::fabs(double(c.w2[size_t(d * I + i)])) * dh[size_t(i)];
      }
      b += reduction_tol<float>(double(I), m);
      const size_t at = size_t(t * D + d);
      if (c.accumulate) {
        const double y0 = double(c.y0[at]);
        b += reduction_tol<float>(2, std::fabs(y0) + std::fabs(s) + b);
        s += y0;
      }
      o.y[at] = s;
      o.bound[at] = b;
    }
  }
  return o;
}

// ---- running ----------------------------------------------------------------------------

// ref::expert<float> on host copies (dense x and y).
std::vector<float> run_ref(const Case& c) {
  std::vector<float> y = c.accumulate ? c.y0 : test::nan_vec<float>(size_t(c.T * c.D));
  ExpertParams<float> p;
  p.x = view2<const float>(c.x.data(), c.T, c.D);
  p.w1 = c.w1.data();
  p.w3 = c.w3.data();
  p.w2 = c.w2.data();
  p.inter = c.I;
  p.route_weight = c.weighted ? c.rw.data() : nullptr;
  p.weight_stride = c.wstride;
  p.swiglu_limit = c.limit;
  p.accumulate = c.accumulate;
  p.act_quant = c.act_quant;
  p.y = view2(y.data(), c.T, c.D);
  ref::expert(p);
  return y;
}

// The device inputs of a case: x with row stride D + x_pad, the weights, the route weights.
struct DeviceCase {
  Guarded gx, gy;
  cuda::DeviceBuffer<float> x, w1, w3, w2, rw, y;
  explicit DeviceCase(const Case& c)
      : gx{c.T, c.D, c.D + c.x_pad},
        gy{c.T, c.D, c.D + c.y_pad},
        x(gx.image(c.x)),
        w1(c.w1),
        w3(c.w3),
        w2(c.w2),
        rw(c.rw),
        y(y_init(c)) {}
  std::vector<float> y_init(const Case& c) const {
    return c.accumulate ? gy.image(c.y0) : gy.poisoned();
  }
  ExpertParams<float> params(const Case& c) {
    ExpertParams<float> p;
    p.x = gx.view<const float>(x.data());
    p.w1 = w1.data();
    p.w3 = w3.data();
    p.w2 = w2.data();
    p.inter = c.I;
    p.route_weight = c.weighted ? rw.data() : nullptr;
    p.weight_stride = c.wstride;
    p.swiglu_limit = c.limit;
    p.accumulate = c.accumulate;
    p.act_quant = c.act_quant;
    p.y = gy.view(y.data());
    return p;
  }
};

// cuda::expert on poisoned (or y0), canaried y; canaries, an untouched x and a bitwise rerun
// checked. Returns y [T, D] dense.
std::vector<float> run_gpu(const Case& c) {
  DeviceCase dc(c);
  cuda::ExpertWorkspace ws(c.T, c.D, c.I);
  const ExpertParams<float> p = dc.params(c);
  auto launch = [&] { cuda::expert(p, ws); };
  launch_and_sync(launch);
  const std::vector<float> img = dc.y.download();
  EXPECT_TRUE(dc.gy.canaries_intact(img));
  EXPECT_TRUE(test::bitwise_equal(dc.x.download(), dc.gx.image(c.x))) << "x was modified";
  EXPECT_TRUE(test::rerun_bitwise(dc.y, dc.y_init(c), img, launch)) << "rerun differs";
  return dc.gy.extract(img);
}

::testing::AssertionResult within(const std::vector<float>& got, const Oracle& o) {
  for (size_t i = 0; i < o.y.size(); ++i)
    if (!(std::fabs(double(got[i]) - o.y[i]) <= o.bound[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << ", want "
                                           << o.y[i] << ", bound " << o.bound[i];
  return ::testing::AssertionSuccess();
}

std::string describe(const Case& c) {
  return "T " + std::to_string(c.T) + " D " + std::to_string(c.D) + " I " + std::to_string(c.I) +
         (c.weighted ? " weighted(stride " + std::to_string(c.wstride) + ")" : " unweighted") +
         (c.accumulate ? " accumulate" : "") + (c.act_quant ? " act_quant" : "") +
         (c.limit > 0 ? " clamp" : " no clamp") + " x pad " + std::to_string(c.x_pad) +
         " y pad " + std::to_string(c.y_pad);
}

// The GPU against the fp64 oracle (derived bound) and 2x ref::expert<float>'s error + a floor;
// with act_quant, the statistical check against the reference. Returns the oracle.
Oracle check_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  const std::vector<float> gpu = run_gpu(c), ref = run_ref(c);
  Case plain = c;
  plain.act_quant = false;
  const Oracle o = expert_oracle(plain);
  for (float v : gpu) EXPECT_TRUE(std::isfinite(v)) << "non-finite y";
  if (!c.act_quant) {
    EXPECT_TRUE(within(gpu, o)) << "against the fp64 oracle";
    double e_gpu = 0, e_ref = 0, bmax = 0;
    for (size_t i = 0; i < o.y.size(); ++i) {
      e_gpu = std::max(e_gpu, std::fabs(double(gpu[i]) - o.y[i]));
      e_ref = std::max(e_ref, std::fabs(double(ref[i]) - o.y[i]));
      bmax = std::max(bmax, o.bound[i]);
    }
    EXPECT_LE(e_gpu, 2 * e_ref + 0.5 * bmax) << "GPU error vs the float reference's";
  } else {
    const std::vector<float> ref_plain = run_ref(plain);
    double diff = 0, effect = 0;
    for (size_t i = 0; i < gpu.size(); ++i) {
      diff += std::pow(double(gpu[i]) - double(ref[i]), 2);
      effect += std::pow(double(ref[i]) - double(ref_plain[i]), 2);
    }
    if (c.T > 0) {
      EXPECT_GT(effect, 0);
    }
    EXPECT_LE(std::sqrt(diff), 0.1 * std::sqrt(effect))
        << "GPU act_quant differs from the reference's by more than a tenth of its effect";
  }
  return o;
}

// ---- host-side validation (runs everywhere) ---------------------------------------------

ExpertParams<float> base_params(float* f) {
  ExpertParams<float> p;
  p.x = view2<const float>(f, 2, 4);
  p.w1 = p.w3 = p.w2 = f;
  p.inter = 3;
  p.y = view2(f + 100, 2, 4);
  return p;
}

// ref::expert's messages first (shape errors; host pointers: nothing runs), then the twin's.
TEST(ExpertCuda, RejectsBadParamsBeforeLaunch) {
  float f[256] = {1.f};
  auto same_error = [&](const ExpertParams<float>& p, const char* what) {
    SCOPED_TRACE(what);
    const std::string ref_msg = input_error([&] { ref::expert(p); });
    cuda::ExpertWorkspace ws(0, 4, 3);
    const std::string gpu_msg = input_error([&] { cuda::expert(p, ws); });
    EXPECT_FALSE(gpu_msg.empty()) << "no InputError";
    EXPECT_EQ(gpu_msg, ref_msg);
    EXPECT_EQ(input_error([&] { cuda::validate_expert(p); }), ref_msg);
  };
  ExpertParams<float> p = base_params(f);
  p.inter = 0;
  same_error(p, "inter 0");
  p.x = view2<const float>(f, 0, 4);
  p.y = view2(f + 100, 0, 4);
  same_error(p, "inter 0 with no rows (the reference checks it anyway)");
  p = base_params(f);
  p.y = view2(f + 100, 2, 3);
  same_error(p, "y cols");
  p = base_params(f);
  p.y = view2(f + 100, 3, 4);
  same_error(p, "y rows");
  // The twin's limits.
  p = base_params(f);
  p.w3 = nullptr;
  EXPECT_EQ(input_error([&] { cuda::validate_expert(p); }), "expert: w1, w3 or w2 is null");
  p = base_params(f);
  p.x = View2<const float>{f, 2, 4, 3};
  EXPECT_NE(input_error([&] { cuda::validate_expert(p); }).find("row strides below D = 4 (x ld 3"),
            std::string::npos);
  p = base_params(f);
  p.y = View2<float>{nullptr, 2, 4, 4};
  EXPECT_EQ(input_error([&] { cuda::validate_expert(p); }), "expert: x or y is null");
  p = base_params(f);
  p.inter = int64_t(1) << 31;
  EXPECT_NE(input_error([&] { cuda::validate_expert(p); }).find("cuBLAS's int range"),
            std::string::npos);
  // The workspace: too few rows, another D or I (0 rows: it needs no device).
  p = base_params(f);
  cuda::ExpertWorkspace small(0, 4, 3);
  EXPECT_EQ(small.bytes(), 0u);
  EXPECT_EQ(input_error([&] { cuda::expert(p, small); }),
            "expert: the workspace holds 0 rows of (D, I) = (4, 3); the call needs 2 of (4, 3)");
  p.x = view2<const float>(f, 0, 4);
  p.y = view2(f + 100, 0, 4);
  EXPECT_NO_THROW(cuda::expert(p, small)) << "no rows: nothing to launch";
  cuda::ExpertWorkspace other(0, 4, 5);
  EXPECT_NE(input_error([&] { cuda::expert(p, other); }).find("the call needs 0 of (4, 3)"),
            std::string::npos);
  EXPECT_THROW(cuda::ExpertWorkspace(0, 0, 3), InputError);
  EXPECT_THROW(cuda::ExpertWorkspace(-1, 4, 3), InputError);
  EXPECT_THROW(cuda::ExpertWorkspace(0, 4, 0), InputError);
}

TEST(ExpertCompact, RejectsBadWeightsBeforeLaunch) {
  float f[256] = {1.f};
  const uint8_t* any = reinterpret_cast<const uint8_t*>(f);
  ExpertParams<float> p = base_params(f);  // D 4, I 3
  p.w1 = p.w3 = p.w2 = nullptr;            // ignored by expert_compact
  const cuda::Fp4WeightStack s13{any, any, 5, 3, 4}, s2{any, any, 5, 4, 3};
  const cuda::Fp8Weight f13{any, any, 3, 4}, f2{any, any, 4, 3};
  cuda::ExpertWorkspace fp32_ws(0, 4, 3), ws(0, 4, 3, cuda::MoeWeightForm::compact);
  EXPECT_EQ(ws.bytes(), 0u);
  auto fp4 = [&](const cuda::Fp4WeightStack& a, const cuda::Fp4WeightStack& b,
                 const cuda::Fp4WeightStack& c, int64_t index, cuda::ExpertWorkspace& w) {
    return input_error([&] { cuda::expert_compact(p, a, b, c, index, w); });
  };
  auto fp8 = [&](const cuda::Fp8Weight& a, const cuda::Fp8Weight& b, const cuda::Fp8Weight& c,
                 cuda::ExpertWorkspace& w) {
    return input_error([&] { cuda::expert_compact(p, a, b, c, w); });
  };
  // Good weights reach the workspace check (2 rows, a 0-row workspace).
  EXPECT_NE(fp4(s13, s13, s2, 4, ws).find("expert_compact: the workspace holds 0 rows"),
            std::string::npos);
  EXPECT_NE(fp8(f13, f13, f2, ws).find("expert_compact: the workspace holds 0 rows"),
            std::string::npos);
  p.x = view2<const float>(f, 0, 4);  // no rows: the form is still checked
  p.y = view2(f + 100, 0, 4);
  EXPECT_NE(fp4(s13, s13, s2, 0, fp32_ws).find("MoeWeightForm::fp32"), std::string::npos);
  EXPECT_NE(fp8(f13, f13, f2, fp32_ws).find("MoeWeightForm::fp32"), std::string::npos);
  EXPECT_EQ(fp4(s13, s13, s2, 0, ws), "");
  EXPECT_EQ(fp8(f13, f13, f2, ws), "");
  p = base_params(f);
  // FP4 stacks.
  EXPECT_EQ(fp4(s13, s13, s13, 0, ws),
            "expert_compact: FP4 w2 is a stack [5, 3, 4]; expected [E, D, I] = [5, 4, 3]");
  cuda::Fp4WeightStack fewer = s13;
  fewer.count = 4;
  EXPECT_EQ(fp4(s13, fewer, s2, 0, ws),
            "expert_compact: FP4 w3 is a stack [4, 3, 4]; expected [E, I, D] = [5, 3, 4]");
  cuda::Fp4WeightStack noscale = s13;
  noscale.scales = nullptr;
  EXPECT_EQ(fp4(noscale, s13, s2, 0, ws), "expert_compact: FP4 w1 has null codes or scales");
  EXPECT_EQ(fp4(s13, s13, s2, 5, ws), "expert_compact: expert index 5 outside the stacks' [0, 5)");
  EXPECT_EQ(fp4(s13, s13, s2, -1, ws),
            "expert_compact: expert index -1 outside the stacks' [0, 5)");
  // FP8 matrices.
  EXPECT_NE(fp8(f13, f13, f13, ws).find("expert_compact: FP8 w2 is [3, 4] with block 128"),
            std::string::npos);
  cuda::Fp8Weight nocodes = f13;
  nocodes.codes = nullptr;
  EXPECT_EQ(fp8(f13, nocodes, f2, ws), "expert_compact: an FP8 matrix has null codes");
  cuda::Fp8Weight block0 = f2;
  block0.block = 0;
  EXPECT_NE(fp8(f13, f13, block0, ws).find("block > 0"), std::string::npos);
  // expert()'s own errors come first.
  p.y = view2(f + 100, 2, 3);
  EXPECT_EQ(fp4(s13, s13, s13, 9, fp32_ws), "expert: output 'y' has the wrong shape");
  EXPECT_EQ(fp8(f13, f13, f13, fp32_ws), "expert: output 'y' has the wrong shape");
}

// ---- device: against the oracle and the reference ---------------------------------------

// Every combination of route weights (strided, null), accumulate, act_quant and the clamp, at
// T = 0, 1, an odd 7 and 33 (more rows than a warp), D and I multiples of 128 (act_quant's
// blocks, as in the model) with strided x and y; wscale 6 hits the clamp on all four sides.
TEST(ExpertCuda, MatchesOracleAndReferenceEveryOption) {
  DSV4_SKIP_WITHOUT_DEVICE();
  int64_t hits[4] = {0, 0, 0, 0};
  uint64_t seed = 10;
  for (int64_t T : {0, 1, 7, 33})
    for (bool weighted : {true, false})
      for (bool accumulate : {false, true})
        for (bool act_quant : {false, true})
          for (double limit : {kSwigluLimit, 0.0}) {
            Case c = make_case(T, 256, 128, 6.0, seed += 10);
            c.weighted = weighted;
            c.accumulate = accumulate;
            c.act_quant = act_quant;
            c.limit = limit;
            c.x_pad = T % 2 ? 5 : 0;
            c.y_pad = accumulate ? 3 : 0;
            const Oracle o = check_case(c);
            if (limit > 0)
              for (int h = 0; h < 4; ++h) hits[h] += o.hits[h];
          }
  for (int h = 0; h < 4; ++h) EXPECT_GT(hits[h], 0) << "clamp side " << h << " never hit";
}

// Widths that are not multiples of anything (no act_quant: its blocks want 128), a route
// weight stride of 0 (one weight broadcast) and of 1, and y aliasing x (in place).
TEST(ExpertCuda, OddWidthsStridesAndInPlace) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (int64_t stride : {0, 1, 7}) {
    Case c = make_case(9, 37, 23, 1.0, uint64_t(100 + stride));
    c.wstride = stride;
    c.rw = test::uniform<float>(size_t(std::max<int64_t>(c.T * stride, 1)), 101, 0.1, 2.0);
    check_case(c);
  }
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "in place, accumulate" : "in place");
    Case c = make_case(11, 64, 48, 1.0, 110);
    c.accumulate = accumulate;
    if (accumulate) c.y0 = c.x;  // y is x: y = x + out
    const std::vector<float> want = run_gpu(c);
    cuda::DeviceBuffer<float> xy(c.x), w1(c.w1), w3(c.w3), w2(c.w2), rw(c.rw);
    ExpertParams<float> p;
    p.x = view2<const float>(xy.data(), c.T, c.D);
    p.y = view2(xy.data(), c.T, c.D);
    p.w1 = w1.data(), p.w3 = w3.data(), p.w2 = w2.data();
    p.inter = c.I;
    p.route_weight = rw.data();
    p.weight_stride = c.wstride;
    p.accumulate = accumulate;
    cuda::ExpertWorkspace ws(c.T, c.D, c.I);
    launch_and_sync([&] { cuda::expert(p, ws); });
    EXPECT_TRUE(test::bitwise_equal(xy.download(), want));
  }
}

// A workspace larger than the call, reused across calls of different row counts and options.
TEST(ExpertCuda, WorkspaceReuseAcrossRowCounts) {
  DSV4_SKIP_WITHOUT_DEVICE();
  cuda::ExpertWorkspace ws(40, 128, 256);
  EXPECT_EQ(ws.bytes(), size_t(40 * (128 + 2 * 256)) * sizeof(float));
  for (int64_t T : {40, 3, 17}) {
    Case c = make_case(T, 128, 256, 1.0, uint64_t(200 + T));
    c.act_quant = T == 17;
    c.accumulate = T == 3;
    const std::vector<float> want = run_gpu(c);
    DeviceCase dc(c);
    const ExpertParams<float> p = dc.params(c);
    launch_and_sync([&] { cuda::expert(p, ws); });
    EXPECT_TRUE(test::bitwise_equal(dc.gy.extract(dc.y.download()), want)) << "T " << T;
  }
}

// ---- device: expert() == cuda::moe's per-expert path, bitwise ---------------------------

// A v4-tiny-like layer (D 256, E 8, k 2, I 128, score routing with bias, shared expert) run by
// cuda::moe; then expert() per expert on its rows in moe's order (flat (token, slot) order)
// and on all rows for the shared expert, combined on the host in moe's order: equal bitwise.
TEST(ExpertCuda, EqualsMoePerExpertBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t T = 23, D = 256, E = 8, k = 2, I = 128;
  for (bool act_quant : {false, true}) {
    SCOPED_TRACE(act_quant ? "act_quant" : "exact");
    const uint64_t seed = 300 + act_quant;
    const double a = 2.5 * std::sqrt(3.0 / double(D)), b = 1.0 / std::sqrt(double(I));
    const std::vector<float> x = test::uniform<float>(size_t(T * D), seed, -1, 1),
                             gate = test::uniform<float>(size_t(E * D), seed + 1, -0.1, 0.1),
                             bias = test::uniform<float>(size_t(E), seed + 2, -0.1, 0.1),
                             w1 = test::uniform<float>(size_t(E * I * D), seed + 3, -a, a),
                             w3 = test::uniform<float>(size_t(E * I * D), seed + 4, -a, a),
                             w2 = test::uniform<float>(size_t(E * D * I), seed + 5, -b, b),
                             s1 = test::uniform<float>(size_t(I * D), seed + 6, -a, a),
                             s3 = test::uniform<float>(size_t(I * D), seed + 7, -a, a),
                             s2 = test::uniform<float>(size_t(D * I), seed + 8, -b, b);
    cuda::DeviceBuffer<float> dx(x), dgate(gate), dbias(bias), dw1(w1), dw3(w3), dw2(w2),
        ds1(s1), ds3(s3), ds2(s2), dy(size_t(T * D)), dweights(size_t(T * k));
    cuda::DeviceBuffer<int32_t> dchosen(size_t(T * k));
    MoeParams<float> mp;
    mp.route.x = view2<const float>(dx.data(), T, D);
    mp.route.gate = dgate.data();
    mp.route.bias = dbias.data();
    mp.route.experts = E;
    mp.route.topk = k;
    mp.route.route_scale = 1.5;
    mp.route.chosen = view2(dchosen.data(), T, k);
    mp.route.weights = view2(dweights.data(), T, k);
    mp.w1 = dw1.data(), mp.w3 = dw3.data(), mp.w2 = dw2.data();
    mp.shared_w1 = ds1.data(), mp.shared_w3 = ds3.data(), mp.shared_w2 = ds2.data();
    mp.inter = I;
    mp.act_quant = act_quant;
    mp.y = view2(dy.data(), T, D);
    cuda::MoeWorkspace mws(T, D, E, k, I);
    launch_and_sync([&] { cuda::moe(mp, mws); });
    const std::vector<float> moe_y = dy.download(), weights = dweights.download();
    const std::vector<int32_t> chosen = dchosen.download();

    // Each expert on its rows, in moe's order: flat index t*k + c ascending.
    std::vector<std::vector<float>> out(static_cast<size_t>(E));   // [n_e, D]
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(E));  // flat entries t*k + c
    int64_t used = 0;
    for (int64_t i = 0; i < T * k; ++i) rows[size_t(chosen[size_t(i)])].push_back(i);
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = int64_t(rows[size_t(e)].size());
      if (n == 0) continue;
      ++used;
      std::vector<float> xe(size_t(n * D)), we(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) {
        const int64_t f = rows[size_t(e)][size_t(r)];
        std::copy_n(&x[size_t((f / k) * D)], D, &xe[size_t(r * D)]);
        we[size_t(r)] = weights[size_t(f)];
      }
      cuda::DeviceBuffer<float> dxe(xe), dwe(we), dye(size_t(n * D));
      ExpertParams<float> p;
      p.x = view2<const float>(dxe.data(), n, D);
      p.w1 = dw1.data() + e * I * D, p.w3 = dw3.data() + e * I * D, p.w2 = dw2.data() + e * D * I;
      p.inter = I;
      p.route_weight = dwe.data();
      p.act_quant = act_quant;
      p.y = view2(dye.data(), n, D);
      cuda::ExpertWorkspace ws(n, D, I);
      launch_and_sync([&] { cuda::expert(p, ws); });
      out[size_t(e)] = dye.download();
    }
    EXPECT_GE(used, E / 2) << "too few experts reached";
    // The shared expert on all rows, x and y as moe's.
    std::vector<float> shared;
    {
      cuda::DeviceBuffer<float> dys(size_t(T * D));
      ExpertParams<float> p;
      p.x = mp.route.x;
      p.w1 = ds1.data(), p.w3 = ds3.data(), p.w2 = ds2.data();
      p.inter = I;
      p.act_quant = act_quant;
      p.y = view2(dys.data(), T, D);
      cuda::ExpertWorkspace ws(T, D, I);
      launch_and_sync([&] { cuda::expert(p, ws); });
      shared = dys.download();
    }
    // moe's combine: the token's entries by (expert, flat index) ascending, summed from 0 in
    // float, then + the shared output.
    std::vector<float> want(size_t(T * D));
    for (int64_t t = 0; t < T; ++t) {
      std::vector<std::pair<int64_t, int64_t>> parts;  // (expert, row within its group)
      for (int64_t c = 0; c < k; ++c) {
        const int64_t f = t * k + c, e = chosen[size_t(f)];
        const auto& list = rows[size_t(e)];
        parts.push_back({e, int64_t(std::find(list.begin(), list.end(), f) - list.begin())});
      }
      std::sort(parts.begin(), parts.end());
      for (int64_t d = 0; d < D; ++d) {
        float acc = 0.f;
        for (const auto& [e, r] : parts) acc += out[size_t(e)][size_t(r * D + d)];
        acc += shared[size_t(t * D + d)];
        want[size_t(t * D + d)] = acc;
      }
    }
    EXPECT_TRUE(test::bitwise_equal(moe_y, want));
    double norm = 0;
    for (float v : want) norm += double(v) * double(v);
    EXPECT_GT(norm, 0.0);
  }
}

// ---- device: compact == FP32, bitwise ---------------------------------------------------

// e2m1 magnitudes (§7) and e4m3fn decode, for weights exactly representable in the formats.
constexpr float kE2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
constexpr int64_t kFp4Block = 32;   // §7: inputs per FP4 scale
constexpr int64_t kFp8Block = 128;  // §7: FP8 block edge

float e4m3_of(uint8_t c) {
  const int ex = (c >> 3) & 15, mant = c & 7;
  const double v = ex == 0 ? std::ldexp(mant, -9) : std::ldexp(8 + mant, ex - 10);
  return (c & 0x80) ? -float(v) : float(v);
}

// [count * rows, cols] floats on the FP4 grid: per (row, 32 inputs) a scale 2^s, s around
// log2(amax / 6).
std::vector<float> fp4_values(int64_t rows, int64_t cols, double amax, uint64_t seed) {
  std::mt19937_64 g(seed);
  const int base = int(std::ceil(std::log2(amax / 6)));
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols; b += kFp4Block) {
      const int s = base + int(g() % 3) - 1;
      for (int64_t c = b; c < std::min(cols, b + kFp4Block); ++c)
        w[size_t(r * cols + c)] =
            float(std::ldexp(kE2m1[g() % 8], s)) * ((g() & 1) ? -1.f : 1.f);
    }
  return w;
}

// [rows, cols] floats on the FP8 grid: per 128x128 block a scale 2^s around log2(amax / 448).
std::vector<float> fp8_values(int64_t rows, int64_t cols, double amax, uint64_t seed) {
  std::mt19937_64 g(seed);
  const int base = int(std::ceil(std::log2(amax / 448)));
  const int64_t bc = (cols + kFp8Block - 1) / kFp8Block;
  std::vector<int> s(size_t(((rows + kFp8Block - 1) / kFp8Block) * bc));
  for (int& v : s) v = base + int(g() % 3) - 1;
  std::vector<float> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      uint8_t code;
      do code = uint8_t(g());
      while ((code & 0x7F) == 0x7F);  // not NaN
      w[size_t(r * cols + c)] = float(
          std::ldexp(e4m3_of(code), s[size_t((r / kFp8Block) * bc + c / kFp8Block)]));
    }
  return w;
}

// expert_compact (routed FP4 matrix `index` of a stack of 3; shared FP8) == expert() on the
// same floats in FP32, bitwise, over act_quant, accumulate, weighted, T = 1 and odd 13.
TEST(ExpertCompactCuda, EqualsFp32Bitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t E = 3, D = 256, I = 128;
  const double a = 2.5 * std::sqrt(3.0 / double(D)), b = 1.0 / std::sqrt(double(I));
  const std::vector<float> f1 = fp4_values(E * I, D, a, 400), f3 = fp4_values(E * I, D, a, 401),
                           f2 = fp4_values(E * D, I, b, 402), g1 = fp8_values(I, D, a, 403),
                           g3 = fp8_values(I, D, a, 404), g2 = fp8_values(D, I, b, 405);
  const cuda::DeviceFp4Stack c1(f1.data(), E, I, D, "experts.", ".w1"),
      c3(f3.data(), E, I, D, "experts.", ".w3"), c2(f2.data(), E, D, I, "experts.", ".w2");
  const cuda::DeviceFp8Weight h1(g1.data(), I, D, kFp8Block, "shared.w1"),
      h3(g3.data(), I, D, kFp8Block, "shared.w3"), h2(g2.data(), D, I, kFp8Block, "shared.w2");
  cuda::DeviceBuffer<float> d1(f1), d3(f3), d2(f2), e1(g1), e3(g3), e2(g2);
  uint64_t seed = 410;
  for (int64_t T : {1, 13})
    for (bool act_quant : {false, true})
      for (bool accumulate : {false, true})
        for (int64_t index : {int64_t(-1), int64_t(1), int64_t(2)}) {  // -1: the FP8 shared one
          SCOPED_TRACE(::testing::Message() << "T " << T << " act_quant " << act_quant
                                            << " accumulate " << accumulate << " index " << index);
          Case c = make_case(T, D, I, 1.0, seed += 10);
          c.act_quant = act_quant;
          c.accumulate = accumulate;
          c.weighted = index >= 0;
          c.y_pad = 2;
          DeviceCase fp32(c), compact(c);
          ExpertParams<float> p = fp32.params(c);
          if (index >= 0) {
            p.w1 = d1.data() + index * I * D;
            p.w3 = d3.data() + index * I * D;
            p.w2 = d2.data() + index * D * I;
          } else {
            p.w1 = e1.data(), p.w3 = e3.data(), p.w2 = e2.data();
          }
          cuda::ExpertWorkspace ws32(T, D, I);
          launch_and_sync([&] { cuda::expert(p, ws32); });
          const std::vector<float> want = fp32.y.download();
          ExpertParams<float> q = compact.params(c);
          q.w1 = q.w3 = q.w2 = nullptr;  // the compact copy must be what is read
          cuda::ExpertWorkspace ws(T, D, I, cuda::MoeWeightForm::compact);
          EXPECT_EQ(ws.bytes(), size_t(T * (D + 2 * I) + 2 * I * D) * sizeof(float));
          auto launch = [&] {
            if (index >= 0)
              cuda::expert_compact(q, c1.view(), c3.view(), c2.view(), index, ws);
            else
              cuda::expert_compact(q, h1.view(), h3.view(), h2.view(), ws);
          };
          launch_and_sync(launch);
          const std::vector<float> got = compact.y.download();
          EXPECT_TRUE(compact.gy.canaries_intact(got));
          EXPECT_TRUE(test::bitwise_equal(got, want));
          EXPECT_TRUE(test::rerun_bitwise(compact.y, compact.y_init(c), got, launch));
          double norm = 0;
          for (float v : compact.gy.extract(got)) {
            ASSERT_TRUE(std::isfinite(v));
            norm += double(v) * double(v);
          }
          EXPECT_GT(norm, 0.0);
        }
}

}  // namespace
}  // namespace dsv4
