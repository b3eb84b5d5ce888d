// `dsv4 op NAME --backend cuda` against `--backend ref` through files (op-contract.md
// "Backends"): the same inputs, keys and output names and shapes, the metadata naming the
// backend, and values within the kernel's tolerance (bitwise for the quantisers, whose CUDA
// twins promise the reference's bits). Label gpu: skips without a device. The refusals without
// a device are tests/cli/test_op_cuda_backend.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "tests/cli/cli_harness.h"
#include "tests/optimized/path_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/naive.h"
#include "tests/support/device_harness.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"

namespace dsv4::test {
namespace {

namespace paths = test::paths;

struct Input {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<double> values;
};

Input rnd(std::string name, std::vector<int64_t> shape, uint64_t seed, double lo = -2.0, double hi = 2.0) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  return {std::move(name), std::move(shape), uniform(n, seed, lo, hi)};
}

// Runs the op on both backends and returns {ref, cuda} values of output `out` (checking
// status, shape and metadata on the way).
std::pair<std::vector<float>, std::vector<float>> run_both(const std::string& op, const std::vector<Input>& in,
                                                           const std::string& sets, const std::string& out) {
  TempDir t;
  SafetensorsWriter w;
  for (const auto& i : in) w.add_float(i.name, i.shape, i.values.data(), DType::F32);
  w.write(t.file("in.safetensors"));
  std::vector<std::vector<float>> got;
  std::vector<std::vector<int64_t>> shapes;
  for (const std::string backend : {"ref", "cuda"}) {
    const std::string file = t.file(backend + ".safetensors");
    const auto r = run_dsv4("op " + op + " --backend " + backend + " --in " + t.file("in.safetensors") +
                                " --out " + file + sets, t);
    EXPECT_EQ(r.status, 0) << backend << ": " << r.err;
    if (r.status != 0) return {};
    const SafetensorsReader rd(file);
    EXPECT_EQ(rd.metadata().at("backend"), backend);
    const TensorInfo* info = rd.find(out);
    EXPECT_NE(info, nullptr) << backend << " wrote no '" << out << "'";
    if (!info) return {};
    EXPECT_EQ(info->dtype, DType::F32);
    shapes.push_back(info->shape);
    got.push_back(rd.read_float<float>(*info));
  }
  EXPECT_EQ(shapes[0], shapes[1]);
  return {got[0], got[1]};
}

// Tolerances, relative to |y|, between two FP32 implementations each within the kernel
// test's bound of the exact value (tests/optimized/test_<op>.cc derive them): 2x that bound.
// Norms: a length-d FP32 sum (reduction_tol) and a few chained ops (kSafety).
double norm_rtol(int64_t d) { return 2.0 * reduction_tol<float>(double(d), 1.0); }

TEST(OpBackendCuda, RmsNormMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto [ref, cuda] = run_both("rmsnorm", {rnd("x", {6, 4096}, 1), rnd("w", {4096}, 2, 0.5, 1.5)}, "", "y");
  ASSERT_FALSE(ref.empty());
  EXPECT_TRUE(all_close(cuda, ref, 0.0, norm_rtol(4096)));
}

// Hadamard: log2(d) butterfly stages, each adding one rounding of the running magnitude; the
// output's error is bounded by that times sum|x| / sqrt(d) (naive::hadamard_magnitude), here
// at most 2 * sqrt(128) with |x| < 2: an absolute bound.
TEST(OpBackendCuda, HadamardMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t d = 128;
  const auto [ref, cuda] = run_both("hadamard", {rnd("x", {5, d}, 3)}, "", "y");
  ASSERT_FALSE(ref.empty());
  const double atol = 2.0 * kSafety * std::log2(double(d)) * unit_roundoff<float>() * 2.0 * std::sqrt(double(d));
  EXPECT_TRUE(all_close(cuda, ref, atol, 0.0));
}

// LayerNorm: the FP32 mean and variance sums of length d, as RMSNorm's; b adds an absolute
// rounding of |b| < 2 (the second term).
TEST(OpBackendCuda, LayerNormMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto [ref, cuda] = run_both(
      "layernorm", {rnd("x", {7, 128}, 4), rnd("w", {128}, 5, 0.5, 1.5), rnd("b", {128}, 6)}, "", "y");
  ASSERT_FALSE(ref.empty());
  EXPECT_TRUE(all_close(cuda, ref, 2.0 * kSafety * unit_roundoff<float>() * 2.0, norm_rtol(128)));
}

// RoPE (the V4 compressed table with YaRN, far positions, heads): each output is a 2-term FP32
// dot product with cos and sin rounded to float, within a few roundings of max(|x0|, |x1|) < 2.
TEST(OpBackendCuda, RopeMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const auto [ref, cuda] = run_both("rope", {rnd("x", {9, 4, 128}, 7)},
                                    " --set preset=v4-compressed --set pos0=70000 --set pos_step=4", "y");
  ASSERT_FALSE(ref.empty());
  EXPECT_TRUE(all_close(cuda, ref, 2.0 * kSafety * unit_roundoff<float>() * 2.0, 0.0));
}

// The quantisers promise the reference's bits.
TEST(OpBackendCuda, QuantisersMatchRefBitwise) {
  DSV4_SKIP_WITHOUT_DEVICE();
  {
    const auto [ref, cuda] = run_both("quant_fp8", {rnd("x", {5, 512}, 8, -300, 300)},
                                      " --set block=64 --set dims=448", "y");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(bitwise_equal(cuda, ref)) << "quant_fp8";
  }
  {
    const auto [ref, cuda] = run_both("quant_fp4", {rnd("x", {6, 128}, 9, -3, 3)}, " --set block=32", "y");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(bitwise_equal(cuda, ref)) << "quant_fp4";
  }
}

// MoE (score routing with bias, shared expert, clamp active): inputs in [-2, 2], so every GEMM
// sum of length K has magnitude <= 4K and errs by dK = reduction_tol<float>(K, 4K) in each
// backend. Weights: dscore <= 2 dD; w errs by <= scale dscore (1 + k) / S with S >= sqrt(log 2)
// (the top expert's logit is positive in this data); 2x that. y: |h| <= SiLU(10) 10 scale = 150,
// dh <= scale (1.1 * 10 dD + 10 dD) (clamped |g|, |u| <= 10 where it matters), each expert's
// output errs by <= 2 I dh + reduction_tol<float>(I, 2 I 150); k + 1 experts, both backends: 2x.
// The routing of random data separates the top k by far more than that, so both pick the same
// experts.
TEST(OpBackendCuda, MoeMatchesRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 6, D = 64, E = 8, k = 2, I = 32;
  constexpr double scale = 1.5;
  const std::vector<Input> in = {rnd("x", {T, D}, 10),          rnd("gate", {E, D}, 11),
                                 rnd("bias", {E}, 12, -0.1, 0.1), rnd("w1", {E, I, D}, 13),
                                 rnd("w3", {E, I, D}, 14),      rnd("w2", {E, D, I}, 15),
                                 rnd("shared_w1", {I, D}, 16),  rnd("shared_w3", {I, D}, 17),
                                 rnd("shared_w2", {D, I}, 18)};
  const std::string keys = " --set topk=2 --set route_scale=1.5";
  const double dD = reduction_tol<float>(double(D), 4.0 * D);
  {
    const auto [ref, cuda] = run_both("moe", in, keys, "weights");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * scale * 2 * dD * (1 + k) / std::sqrt(std::log(2.0)), 0.0));
  }
  const auto [ref, cuda] = run_both("moe", in, keys, "y");
  ASSERT_FALSE(ref.empty());
  const double dh = scale * (1.1 * 10 * dD + 10 * dD);
  const double per_expert = 2.0 * I * dh + reduction_tol<float>(double(I), 2.0 * I * 150);
  EXPECT_TRUE(all_close(cuda, ref, 2.0 * (k + 1) * per_expert, 0.0));
}

// mHC (sinkhorn, hc_pre, hc_head, hc_post; tests/optimized/test_{sinkhorn,hc_pre,hc_post}.cc
// derive the kernels' bounds). Here each output gets 2x the bound of one FP32 implementation:
//   Sinkhorn: 2*iters normalisations by (n+1)-term sums of entries <= 1.
//   mu = rs Phi v: two length-nD reductions, dmu = 2 reduction_tol<float>(nD, max_t rs sum|Phi v|);
//   post: slope 2 a1 / 4 times dmu; comb: 4 a2 dmu plus the Sinkhorn bound; u: (a0 dmu / 4 + the
//   sigmoid's rounding) times sum_j |X_j| <= 2n, plus the n-term sum; a <= 1.5 here.
//   hc_post: an (n+1)-term sum of magnitude <= |post f| + sum_j |comb X_j| <= 2*2 + 4*1*2 = 12.
// A wiring error (a swapped input or key) moves the outputs by O(0.1), far above these.
TEST(OpBackendCuda, MhcOpsMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 3, n = 4, D = 256, nd = n * D, iters = 20;
  constexpr double kMaxScale = 1.5, kMaxX = 2.0;
  const double sinkhorn_bound = reduction_tol<float>(double(2 * iters * (n + 1)), 1.0);
  {
    const auto [ref, cuda] = run_both("sinkhorn", {rnd("logits", {5, n, n}, 20)}, "", "m");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * sinkhorn_bound, 0.0)) << "sinkhorn";
  }
  {
    const auto [ref, cuda] = run_both("hc_post",
                                      {rnd("x", {T, n, D}, 21), rnd("f", {T, D}, 22), rnd("post", {T, n}, 23, 0.0, 2.0),
                                       rnd("comb", {T, n, n}, 24, 0.0, 1.0)},
                                      "", "y");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * reduction_tol<float>(double(n + 1), 12.0), 0.0)) << "hc_post";
  }
  for (const bool head : {false, true}) {
    const int64_t mix = head ? n : 2 * n + n * n;
    const std::vector<Input> in = {rnd("x", {T, n, D}, 25), rnd("fn", {mix, nd}, 26, -0.05, 0.05),
                                   rnd("base", {mix}, 27, -0.5, 0.5),
                                   rnd("scale", {head ? 1 : 3}, 28, 0.5, kMaxScale)};
    double mu_mag = 0;  // max over tokens and rows of rs * sum_c |Phi_rc v_c|
    for (int64_t t = 0; t < T; ++t) {
      const double* v = &in[0].values[size_t(t * nd)];
      double ss = 0;
      for (int64_t c = 0; c < nd; ++c) ss += v[c] * v[c];
      const double rs = 1.0 / std::sqrt(ss / double(nd) + 1e-6);
      for (int64_t r = 0; r < mix; ++r) {
        double a = 0;
        for (int64_t c = 0; c < nd; ++c) a += std::fabs(in[1].values[size_t(r * nd + c)] * v[c]);
        if (rs * a > mu_mag) mu_mag = rs * a;
      }
    }
    const double dmu = 2.0 * reduction_tol<float>(double(nd), mu_mag);
    const double sig = reduction_tol<float>(4.0, 1.0);
    const double u_tol = (kMaxScale * dmu / 4 + sig) * n * kMaxX + reduction_tol<float>(double(n), n * kMaxX * 2.0);
    const std::string op = head ? "hc_head" : "hc_pre";
    {
      const auto [ref, cuda] = run_both(op, in, "", "u");
      ASSERT_FALSE(ref.empty());
      EXPECT_TRUE(all_close(cuda, ref, 2.0 * u_tol, 0.0)) << op << " u";
    }
    if (head) continue;
    {
      const auto [ref, cuda] = run_both(op, in, "", "post");
      ASSERT_FALSE(ref.empty());
      EXPECT_TRUE(all_close(cuda, ref, 2.0 * 2.0 * (kMaxScale * dmu / 4 + sig), 0.0)) << "hc_pre post";
    }
    const auto [ref, cuda] = run_both(op, in, "", "comb");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * (4 * kMaxScale * dmu + sinkhorn_bound), 0.0)) << "hc_pre comb";
  }
}

// The per-token attention paths (query_path, window_kv, output_proj; tests/optimized/
// test_{query_path,window_kv,output_proj}.cc check the kernels against fp64). Each projection
// stage of one FP32 implementation errs, relative to the rms of its output row, by at most
// reduction_tol<float>(K, kappa) with kappa = max sum|W_ij x_j| / rms(W x) (error_model.h, the
// kernel tests' model), measured here on the stage's input (for wq_b, the reference's cq);
// RMSNorm and RoPE are well-conditioned. Two implementations: 2x the summed stages, times
// max|output|. A wiring error (a swapped input, key or head) moves the outputs by O(0.1).
TEST(OpBackendCuda, AttentionPathsMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  constexpr int64_t T = 4, D = 256, H = 4, d = 128, qr = 128, g = 2, r = 64;
  const auto as_float = [](const Input& i) { return std::vector<float>(i.values.begin(), i.values.end()); };
  // The error model of y = W x over the T rows of x ([T, in], W [out, in]).
  const auto stage = [](ErrModel& em, const std::vector<float>& W, int64_t out, int64_t in,
                        const std::vector<double>& x, int64_t rows, const char* name) {
    for (int64_t t = 0; t < rows; ++t) (void)paths::linear(W, out, in, x.data() + t * in, em, name);
  };
  const auto max_abs_f = [](const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, std::fabs(double(x)));
    return m;
  };
  {
    const std::vector<Input> in = {rnd("x", {T, D}, 40), rnd("wq_a", {qr, D}, 41, -0.1, 0.1),
                                   rnd("q_norm", {qr}, 42, 0.5, 1.5), rnd("wq_b", {H * d, qr}, 43, -0.1, 0.1)};
    const std::string keys = " --set heads=4 --set head_dim=128 --set pos0=70000 --set preset=v4-compressed";
    const auto [ref_cq, cuda_cq] = run_both("query_path", in, keys, "cq");
    ASSERT_FALSE(ref_cq.empty());
    ErrModel em;
    stage(em, as_float(in[1]), qr, D, in[0].values, T, "wq_a");
    EXPECT_TRUE(all_close(cuda_cq, ref_cq, 2.0 * em.rel<float>() * max_abs_f(ref_cq), 0.0)) << "query_path cq";
    const auto [ref_q, cuda_q] = run_both("query_path", in, keys, "q");
    ASSERT_FALSE(ref_q.empty());
    stage(em, as_float(in[3]), H * d, qr, std::vector<double>(ref_cq.begin(), ref_cq.end()), T, "wq_b");
    EXPECT_TRUE(all_close(cuda_q, ref_q, 2.0 * em.rel<float>() * max_abs_f(ref_q), 0.0)) << "query_path q";
  }
  {
    const std::vector<Input> in = {rnd("x", {T, D}, 44), rnd("wkv", {d, D}, 45, -0.1, 0.1),
                                   rnd("kv_norm", {d}, 46, 0.5, 1.5)};
    const auto [ref, cuda] = run_both("window_kv", in, " --set pos0=5000", "kv");
    ASSERT_FALSE(ref.empty());
    ErrModel em;
    stage(em, as_float(in[1]), d, D, in[0].values, T, "wkv");
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * em.rel<float>() * max_abs_f(ref), 0.0)) << "window_kv";
  }
  {
    const int64_t gw = H / g * d;
    const std::vector<Input> in = {rnd("o", {T, H, d}, 47), rnd("wo_a", {g * r, gw}, 48, -0.1, 0.1),
                                   rnd("wo_b", {D, g * r}, 49, -0.1, 0.1)};
    const auto [ref, cuda] = run_both("output_proj", in, " --set pos0=123", "y");
    ASSERT_FALSE(ref.empty());
    // wo_a's stage on o (the inverse RoPE only rotates pairs of the last 64 dims of each
    // head, which moves sum|W_ij x_j| by a few percent: measured on o itself, with kSafety's
    // margin); wo_b's input u is not an output, so its kappa is measured on u = Wo_a o in
    // double.
    ErrModel em;
    const std::vector<float> wa = as_float(in[1]), wb = as_float(in[2]);
    std::vector<double> u;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < g; ++k) {
        const std::vector<double> uk =
            paths::linear(wa, r, gw, in[0].values.data() + t * H * d + k * gw, em, "wo_a", k * r * gw);
        u.insert(u.end(), uk.begin(), uk.end());
      }
    stage(em, wb, D, g * r, u, T, "wo_b");
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * em.rel<float>() * max_abs_f(ref), 0.0)) << "output_proj";
  }
}

// The V3 / V3.2 predecessors (mla dense, dsa_indexer scores; tests/optimized/test_mla.cc and
// test_dsa_indexer.cc check the kernels, sparse MLA included, against fp64): each backend
// within naive::attend_tol_o / attend_tol_lse (mla) or the indexer's score tolerance
// (selection.h's score_tol: a length-dI dot product and a length-HI head sum) of the exact
// values, measured on these inputs; between the two, 2x.
TEST(OpBackendCuda, PredecessorsMatchRef) {
  DSV4_SKIP_WITHOUT_DEVICE();
  {
    constexpr int64_t T = 3, H = 2, dk = 96, dl = 32, Tk = 20;  // rope_dim 64 (the key's default)
    const std::vector<Input> in = {rnd("q", {T, H, dk}, 50, -0.5, 0.5), rnd("kv", {Tk, dk}, 51)};
    naive::AttendStats st;
    double lsemax = 0;
    std::vector<double> o(static_cast<size_t>(dl));
    for (int64_t r = 0; r < T; ++r) {
      std::vector<const double*> ent;
      for (int64_t j = 0; j <= Tk - T + r; ++j) ent.push_back(&in[1].values[size_t(j * dk)]);
      for (int64_t h = 0; h < H; ++h)
        lsemax = std::max(lsemax, std::fabs(naive::attend(&in[0].values[size_t((r * H + h) * dk)], ent, dk, dl,
                                                          1.0 / std::sqrt(double(dk)), -naive::kInf, o.data(), &st)));
    }
    const auto [ref_o, cuda_o] = run_both("mla", in, "", "o");
    ASSERT_FALSE(ref_o.empty());
    EXPECT_TRUE(all_close(cuda_o, ref_o, 2.0 * naive::attend_tol_o<float>(st.smag, st.omag, dk, Tk), 0.0)) << "mla o";
    const auto [ref_l, cuda_l] = run_both("mla", in, "", "lse");
    ASSERT_FALSE(ref_l.empty());
    EXPECT_TRUE(all_close(cuda_l, ref_l, 2.0 * naive::attend_tol_lse<float>(st.smag, lsemax, dk, Tk), 0.0))
        << "mla lse";
  }
  {
    constexpr int64_t T = 3, HI = 4, dI = 32, Tk = 10;
    const std::vector<Input> in = {rnd("q", {T, HI, dI}, 52), rnd("k", {Tk, dI}, 53), rnd("w", {T, HI}, 54)};
    std::vector<double> scores, mag;
    naive::index_scores(T, Tk, HI, dI, in[0].values, in[1].values, in[2].values,
                        [&](int64_t r, int64_t j) { return j <= Tk - T + r; }, scores, mag);
    double m = 0;
    for (double v : mag) m = std::max(m, v);
    const auto [ref, cuda] = run_both("dsa_indexer", in, " --set topk=4", "scores");
    ASSERT_FALSE(ref.empty());
    EXPECT_TRUE(all_close(cuda, ref, 2.0 * reduction_tol<float>(2.0 * double(dI + HI), m), 0.0)) << "dsa_indexer scores";
  }
}

}  // namespace
}  // namespace dsv4::test
