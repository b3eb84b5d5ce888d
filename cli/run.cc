#include "cli/run.h"

#include <fmt/core.h>

#include <Eigen/Dense>
#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "bench/ceilings.h"
#include "bench/setup.h"
#include "reference/attention.h"
#include "reference/attention_layer.h"
#include "reference/compressor.h"
#include "reference/hadamard.h"
#include "reference/hc_post.h"
#include "reference/hc_pre.h"
#include "reference/indexer.h"
#include "reference/mla.h"
#include "reference/moe.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"
#include "reference/rope.h"
#include "reference/sinkhorn.h"

namespace dsv4::cli {

namespace {

using Clock = std::chrono::steady_clock;

// V4-Flash shapes (docs/v4-architecture.md §1.1).
struct Flash {
  static constexpr int64_t D = 4096, H = 64, d = 512, q_rank = 1024, groups = 8, o_rank = 1024;
  static constexpr int64_t HI = 64, dI = 128, topk = 512, inter = 2048, active = 6;
};

using bench::randn;  // the normal stream dsv4 run has always drawn (bench/setup.h)

// Median wall time of `reps` calls (after one warm-up when reps > 1).
double time_s(const std::function<void()>& f, int reps) {
  if (reps > 1) f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    f();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Row {
  Row(std::string o, std::string s) : op(std::move(o)), shape(std::move(s)) {}
  std::string op, shape;
  double seconds = 0, flops = 0, bytes = 0;
  std::string check;  // "pass: ..." or "FAIL: ..."
  bool ok = true;
};

struct Ceilings {
  double gemm_flops = 0;  // FLOP/s, Eigen SGEMM
  double read_bytes = 0;  // B/s, streaming sum
};

Ceilings measure_ceilings(bool quick) {
  Ceilings c;
  (void)quick;  // the ceilings are measured at full size in both modes (~0.2 s): smaller
                // problems understate the GEMM rate and read from cache instead of DRAM
  bench::SgemmCeiling gemm;  // the kernels of dsv4 bench's ceiling_* benchmarks
  c.gemm_flops = gemm.flops() / time_s([&] { gemm.step(); }, 3);
  bench::ReadCeiling read;
  c.read_bytes = read.bytes() / time_s([&] { read.step(); }, 3);
  return c;
}

double max_rel_diff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return den > 0 ? num / den : num;
}

std::string verdict(Row& r, bool ok, const std::string& what) {
  r.ok = ok;
  return (ok ? "pass: " : "FAIL: ") + what;
}

}  // namespace

int run_harness(const RunArgs& a) {
  if (a.threads != 1) Eigen::setNbThreads(a.threads > 0 ? a.threads : int(std::thread::hardware_concurrency()));
  const bool q = a.quick;
  const auto t_start = Clock::now();
  fmt::print("dsv4 run: reference ops at DeepSeek-V4-Flash shapes{} ({} Eigen threads)\n",
             q ? " (quick: reduced sizes)" : "", Eigen::nbThreads());
  const Ceilings ceil = measure_ceilings(q);
  fmt::print("same-run ceilings: Eigen SGEMM {:.1f} GFLOP/s, streaming read {:.1f} GB/s\n\n",
             ceil.gemm_flops / 1e9, ceil.read_bytes / 1e9);

  std::vector<Row> rows;
  const int reps = q ? 1 : 3;
  using F = Flash;

  {  // RMSNorm over hidden rows
    const int64_t R = q ? 64 : 1024;
    auto x = randn(R * F::D, 1), w = randn(F::D, 2);
    std::vector<float> y(x.size());
    Row r{"rmsnorm", fmt::format("[{}, {}]", R, F::D)};
    r.seconds = time_s([&] { ref::rmsnorm<float>({view2<const float>(x.data(), R, F::D), w.data(), view2(y.data(), R, F::D)}); }, reps);
    r.flops = 3.0 * R * F::D;
    r.bytes = 3.0 * R * F::D * 4;
    double err = 0;
    for (int64_t i = 0; i < R; ++i) {  // unweighted rows have unit RMS
      std::vector<float> u(F::D);
      ref::rmsnorm<float>({view2<const float>(x.data() + i * F::D, 1, F::D), nullptr, view2(u.data(), 1, F::D)});
      double ms = 0;
      for (float v : u) ms += double(v) * v;
      err = std::max(err, std::fabs(std::sqrt(ms / F::D) - 1.0));
    }
    r.check = verdict(r, err < 1e-5, fmt::format("unweighted RMS = 1 within {:.1e}", err));
    rows.push_back(r);
  }
  {  // RoPE on queries, then its inverse
    const int64_t T = q ? 16 : 256;
    auto x = randn(T * F::H * F::d, 3), y = x;
    Row r{"rope", fmt::format("[{}, {}, {}] compressed table", T, F::H, F::d)};
    RopeParams<float> p{view2(y.data(), T, F::H * F::d), F::H, F::d, 100000, 1, false, rope_v4_compressed()};
    r.seconds = time_s([&] { y = x; ref::rope(p); }, reps);
    r.flops = 6.0 * T * F::H * kRopeDim / 2;
    r.bytes = 2.0 * T * F::H * F::d * 4;
    p.inverse = true;
    ref::rope(p);
    const double e = max_rel_diff(y.data(), x.data(), x.size());
    r.check = verdict(r, e < 1e-5, fmt::format("inverse(rope(x)) = x within {:.1e}", e));
    rows.push_back(r);
  }
  {  // Hadamard on indexer heads
    const int64_t R = (q ? 16 : 256) * F::HI;
    auto x = randn(R * F::dI, 4);
    std::vector<float> y(x.size()), z(x.size());
    Row r{"hadamard", fmt::format("[{}, {}]", R, F::dI)};
    r.seconds = time_s([&] { ref::hadamard<float>({view2<const float>(x.data(), R, F::dI), view2(y.data(), R, F::dI)}); }, reps);
    r.flops = double(R) * F::dI * 7;
    r.bytes = 2.0 * R * F::dI * 4;
    ref::hadamard<float>({view2<const float>(y.data(), R, F::dI), view2(z.data(), R, F::dI)});
    const double e = max_rel_diff(z.data(), x.data(), x.size());
    r.check = verdict(r, e < 1e-5, fmt::format("H(H(x)) = x within {:.1e}", e));
    rows.push_back(r);
  }
  {  // FP8 KV layout and FP4 indexer layout
    const int64_t R = q ? 256 : 8192;
    auto x = randn(R * F::d, 5);
    std::vector<float> y(x.size()), z(x.size());
    Row r{"quant_fp8", fmt::format("[{}, {}] dims 448 block 64", R, F::d)};
    r.seconds = time_s([&] { ref::quant_fp8<float>({view2<const float>(x.data(), R, F::d), view2(y.data(), R, F::d), 64, 448}); }, reps);
    r.bytes = 2.0 * R * F::d * 4;
    ref::quant_fp8<float>({view2<const float>(y.data(), R, F::d), view2(z.data(), R, F::d), 64, 448});
    const double e = max_rel_diff(z.data(), y.data(), y.size()), e0 = max_rel_diff(y.data(), x.data(), x.size());
    r.check = verdict(r, e == 0 && e0 > 0 && e0 < 0.07, fmt::format("idempotent, rel. error {:.3f}", e0));
    rows.push_back(r);
    Row r4{"quant_fp4", fmt::format("[{}, {}] block 32", R, F::dI)};
    auto x4 = randn(R * F::dI, 6);
    std::vector<float> y4(x4.size()), z4(x4.size());
    r4.seconds = time_s([&] { ref::quant_fp4<float>({view2<const float>(x4.data(), R, F::dI), view2(y4.data(), R, F::dI), 32}); }, reps);
    r4.bytes = 2.0 * R * F::dI * 4;
    ref::quant_fp4<float>({view2<const float>(y4.data(), R, F::dI), view2(z4.data(), R, F::dI), 32});
    const double e4 = max_rel_diff(z4.data(), y4.data(), y4.size());
    r4.check = verdict(r4, e4 == 0, "idempotent");
    rows.push_back(r4);
  }
  for (int64_t m : {kCsaRatio, kHcaRatio}) {  // compressor prefill, checked against decode
    const bool csa = m == kCsaRatio;
    const int64_t T = q ? 2 * m + 1 : (csa ? 1024 : 1024);
    const CompressorShape sh{F::D, F::d, m, csa};
    auto wkv = randn(sh.width() * F::D, 20, 0.02f), wg = randn(sh.width() * F::D, 21, 0.02f);
    auto ape = randn(m * sh.width(), 22, 0.1f), nw = randn(F::d, 23, 1.0f), x = randn(T * F::D, 24);
    CompressorParams<float> p{sh, {wkv.data(), wg.data(), ape.data(), nw.data()}, rope_v4_compressed(), CompressorQuant::fp8};
    std::vector<float> e(T / m * F::d);
    Row r{"compressor", fmt::format("{} m={} T={} D={}", csa ? "CSA" : "HCA", m, T, F::D)};
    r.seconds = time_s([&] { ref::compressor_prefill<float>(p, view2<const float>(x.data(), T, F::D), view2(e.data(), T / m, F::d), nullptr); }, reps);
    r.flops = 2.0 * 2 * T * F::D * sh.width();
    // Decode the first 2m+1 tokens and compare.
    const int64_t Td = 2 * m + 1;
    auto st = ref::compressor_state_init<float>(sh);
    std::vector<float> ed(Td / m * F::d), ep(Td / m * F::d);
    int64_t n = 0;
    for (int64_t t = 0; t < Td; ++t) n += ref::compressor_decode<float>(p, x.data() + t * F::D, st, ed.data() + n * F::d);
    ref::compressor_prefill<float>(p, view2<const float>(x.data(), Td, F::D), view2(ep.data(), Td / m, F::d), nullptr);
    const double err = max_rel_diff(ed.data(), ep.data(), ep.size());
    r.check = verdict(r, n == Td / m && err < 0.02, fmt::format("decode = prefill over {} tokens (FP8 sim), rel. {:.1e}", Td, err));
    rows.push_back(r);
  }
  {  // Indexer: one decode row over a long context of compressed keys
    const int64_t L = q ? 16384 : 1 << 20, N = L / kCsaRatio;
    auto iq = randn(F::HI * F::dI, 30), k = randn(N * F::dI, 31), w = randn(F::HI, 32);
    std::vector<int32_t> idx(F::topk);
    IndexerParams<float> p;
    p.q = view2<const float>(iq.data(), 1, F::HI * F::dI);
    p.k = view2<const float>(k.data(), N, F::dI);
    p.w = view2<const float>(w.data(), 1, F::HI);
    p.heads = F::HI;
    p.topk = F::topk;
    p.pos0 = L - 1;
    p.indices = view2(idx.data(), 1, F::topk);
    Row r{"indexer", fmt::format("decode, context {} ({} keys, top-{})", L, N, F::topk)};
    r.seconds = time_s([&] { ref::indexer(p); }, reps);
    r.flops = 2.0 * N * F::HI * F::dI;
    r.bytes = double(N) * F::dI * 4;
    std::vector<int32_t> s(idx);
    std::sort(s.begin(), s.end());
    const bool ok = s.front() >= 0 && s.back() < N && std::adjacent_find(s.begin(), s.end()) == s.end();
    r.check = verdict(r, ok, "top-k distinct and visible");
    rows.push_back(r);
  }
  for (int64_t m : {kCsaRatio, kHcaRatio}) {  // Core attention decode
    const bool csa = m == kCsaRatio;
    const int64_t L = q ? 16384 : 1 << 20, N = L / m;
    auto qv = randn(F::H * F::d, 40, 0.05f), kv = randn(kWindow * F::d, 41), comp = randn(N * F::d, 42);
    auto sink = randn(F::H, 43);
    std::vector<int32_t> idx(F::topk);
    std::mt19937_64 g(44);
    for (auto& i : idx) i = int32_t(g() % uint64_t(N));
    std::vector<float> o(F::H * F::d), lse(F::H), o2(o.size()), lse2(lse.size());
    AttentionParams<float> p;
    p.q = view2<const float>(qv.data(), 1, F::H * F::d);
    p.kv = view2<const float>(kv.data(), kWindow, F::d);
    p.comp = view2<const float>(comp.data(), N, F::d);
    p.sink = sink.data();
    if (csa) p.indices = view2<const int32_t>(idx.data(), 1, F::topk);
    p.heads = F::H;
    p.ratio = m;
    p.pos0 = L - 1;
    p.o = view2(o.data(), 1, F::H * F::d);
    p.lse = view2(lse.data(), 1, F::H);
    const int64_t attended = kWindow + (csa ? F::topk : N);
    Row r{"attention", fmt::format("{} decode, context {}, {} entries", csa ? "CSA" : "HCA", L, attended)};
    r.seconds = time_s([&] { ref::attention(p); }, reps);
    r.flops = 2.0 * F::H * attended * 2 * F::d;
    r.bytes = double(attended) * F::d * 4;
    if (csa) {  // top-k covering a small visible set == dense over it
      const int64_t small = 64;
      std::vector<int32_t> all(small);
      for (int64_t i = 0; i < small; ++i) all[i] = int32_t(small - 1 - i);
      AttentionParams<float> a = p, b = p;
      a.comp = b.comp = view2<const float>(comp.data(), small, F::d);
      a.pos0 = b.pos0 = small * m - 1;
      a.indices = view2<const int32_t>(all.data(), 1, small);
      b.indices = {};
      b.o = view2(o2.data(), 1, F::H * F::d);
      b.lse = view2(lse2.data(), 1, F::H);
      ref::attention(a);
      ref::attention(b);
      const double e = max_rel_diff(o.data(), o2.data(), o.size());
      r.check = verdict(r, e < 1e-5, fmt::format("top-k over all visible = dense, rel. {:.1e}", e));
    } else {
      bool finite = true;
      for (float v : lse) finite = finite && std::isfinite(v);
      r.check = verdict(r, finite, "finite log-sum-exp");
    }
    rows.push_back(r);
  }
  for (int64_t m : {kCsaRatio, kHcaRatio}) {  // a whole V4-Flash attention layer: one decode step
    const bool csa = m == kCsaRatio;
    AttentionLayerShape s;
    s.dim = F::D; s.heads = F::H; s.q_rank = F::q_rank; s.groups = F::groups; s.o_rank = F::o_rank;
    s.ratio = m; s.index_topk = F::topk; s.rope = rope_v4_compressed();
    const int64_t L = q ? 16384 : 1 << 20;
    const bench::LayerWeightData lw = bench::random_layer_weights(s, 50, bench::Fill::normal);  // seeds 50..67
    AttentionLayerParams<float> p;
    p.shape = s;
    p.numerics = Numerics::official;
    p.w = lw.weights();
    auto x = randn(s.dim, 68);
    std::vector<float> y(s.dim);
    auto st0 = bench::synthetic_layer_state(s, L, 11, bench::Fill::normal);  // seeds 11..13
    Row r{"attention_layer", fmt::format("V4-Flash {} layer, decode step at context {}", csa ? "CSA" : "HCA", L)};
    const int lreps = q ? 1 : 2;
    std::vector<double> ts;  // the state copy (hundreds of MB) stays outside the timing
    for (int i = 0; i < lreps; ++i) {
      auto st = st0;
      ts.push_back(time_s([&] { ref::attention_layer_decode(p, x.data(), y.data(), st); }, 1));
    }
    r.seconds = *std::min_element(ts.begin(), ts.end());
    const double N = double(L / m);
    const double attended = double(kWindow) + (csa ? double(F::topk) : N);
    const double weights = lw.matrix_elements();
    r.flops = 2.0 * weights + (csa ? 2.0 * N * s.index_heads * s.index_dim : 0.0) + 2.0 * s.heads * attended * 2 * s.head_dim;
    r.bytes = 4.0 * (weights + (csa ? N * s.index_dim : 0.0) + attended * s.head_dim);
    bool finite = true;
    for (float v : y) finite = finite && std::isfinite(v);
    r.check = verdict(r, finite, "finite output (official numerics)");
    rows.push_back(r);
  }
  {  // mHC pre/post at the real width
    const int64_t T = q ? 4 : 64, n = kHcMult, mix = 2 * n + n * n;
    auto x = randn(T * n * F::D, 70), fn = randn(mix * n * F::D, 71, 0.01f), base = randn(mix, 72, 0.5f), sc = randn(3, 73, 0.5f);
    std::vector<float> u(T * F::D), post(T * n), comb(T * n * n), y(T * n * F::D);
    HcPreParams<float> p;
    p.x = view2<const float>(x.data(), T, n * F::D); p.fn = fn.data(); p.base = base.data(); p.scale = sc.data();
    p.u = view2(u.data(), T, F::D); p.post = view2(post.data(), T, n); p.comb = view2(comb.data(), T, n * n);
    Row r{"hc_pre + hc_post", fmt::format("T={} n={} D={}", T, n, F::D)};
    r.seconds = time_s([&] {
      ref::hc_pre(p);
      ref::hc_post<float>({p.x, view2<const float>(u.data(), T, F::D), view2<const float>(post.data(), T, n),
                           view2<const float>(comb.data(), T, n * n), n, view2(y.data(), T, n * F::D)});
    }, reps);
    r.flops = 2.0 * T * mix * n * F::D + 4.0 * T * n * n * F::D;
    double worst = 0;  // columns of every comb sum to ~1 after the final column normalisation
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < n; ++k) {
        double cs = 0;
        for (int64_t j = 0; j < n; ++j) cs += comb[t * n * n + j * n + k];
        worst = std::max(worst, std::fabs(cs - 1));
      }
    r.check = verdict(r, worst < 1e-4, fmt::format("Sinkhorn columns sum to 1 within {:.1e}", worst));
    rows.push_back(r);
  }
  {  // MoE: router + 6 routed experts + shared, a few tokens. 16 experts of the real width:
    // all 256 in FP32 would need 26 GB (3 x 256 x 2048 x 4096 x 4 B).
    const int64_t T = q ? 2 : 8, E = 16, I = q ? 256 : F::inter;
    auto x = randn(T * F::D, 80), gate = randn(E * F::D, 81, 0.02f), bias = randn(E, 82, 0.01f);
    auto w1 = randn(E * I * F::D, 83, 0.02f), w3 = randn(E * I * F::D, 84, 0.02f), w2 = randn(E * F::D * I, 85, 0.02f);
    std::vector<int32_t> chosen(T * F::active);
    std::vector<float> wts(T * F::active), y(T * F::D);
    MoeParams<float> p;
    p.route.x = view2<const float>(x.data(), T, F::D); p.route.gate = gate.data(); p.route.bias = bias.data();
    p.route.experts = E; p.route.topk = F::active; p.route.route_scale = 1.5;
    p.route.chosen = view2(chosen.data(), T, F::active); p.route.weights = view2(wts.data(), T, F::active);
    p.w1 = w1.data(); p.w3 = w3.data(); p.w2 = w2.data(); p.shared_w1 = w1.data(); p.shared_w3 = w3.data(); p.shared_w2 = w2.data();
    p.inter = I;
    p.y = view2(y.data(), T, F::D);
    Row r{"moe", fmt::format("T={} E={} top-{} I={} + shared", T, E, F::active, I)};
    r.seconds = time_s([&] { ref::moe(p); }, reps);
    r.flops = 2.0 * T * E * F::D + 2.0 * T * (F::active + 1) * 3 * I * F::D;
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
      double s = 0;
      for (int64_t c = 0; c < F::active; ++c) s += wts[t * F::active + c];
      worst = std::max(worst, std::fabs(s - 1.5));
    }
    r.check = verdict(r, worst < 1e-5, "routing weights sum to route_scale");
    rows.push_back(r);
  }
  {  // V3.2 predecessor: sparse MLA decode over 2048 selected tokens, and V3 dense
    const int64_t H = 128, dk = kMlaLatentDim + kRopeDim, L = q ? 4096 : 32768;
    auto qv = randn(H * dk, 90, 0.05f), kv = randn(L * dk, 91);
    std::vector<int32_t> idx(kDsaTopk);
    for (int64_t i = 0; i < kDsaTopk; ++i) idx[i] = int32_t((i * 7919) % L);
    std::vector<float> o(H * kMlaLatentDim);
    MlaParams<float> p;
    p.q = view2<const float>(qv.data(), 1, H * dk);
    p.kv = view2<const float>(kv.data(), L, dk);
    p.heads = H;
    p.scale = v3_softmax_scale();
    p.pos0 = L - 1;
    p.o = view2(o.data(), 1, H * kMlaLatentDim);
    Row rd{"mla (V3 dense)", fmt::format("decode, context {}, H=128", L)};
    rd.seconds = time_s([&] { ref::mla(p); }, reps);
    rd.flops = 2.0 * H * L * (dk + kMlaLatentDim);
    rd.bytes = double(L) * dk * 4;
    bool fin = true;
    for (float v : o) fin = fin && std::isfinite(v);
    rd.check = verdict(rd, fin, "finite output");
    rows.push_back(rd);
    p.indices = view2<const int32_t>(idx.data(), 1, kDsaTopk);
    Row rs{"mla (V3.2 sparse)", fmt::format("decode, top-{} of {}", kDsaTopk, L)};
    rs.seconds = time_s([&] { ref::mla(p); }, reps);
    rs.flops = 2.0 * H * kDsaTopk * (dk + kMlaLatentDim);
    rs.bytes = double(kDsaTopk) * dk * 4;
    rs.check = verdict(rs, true, "ran (oracle tests: ctest)");
    rows.push_back(rs);
  }

  // ---- summary ---------------------------------------------------------------------------
  // Roofline share: the time the same-run ceilings allow (max of FLOPs at the SGEMM rate and
  // bytes at the streaming-read rate) over the time measured.
  auto roofline = [&](const Row& r) {
    const double t = std::max(r.flops / ceil.gemm_flops, r.bytes / ceil.read_bytes);
    return t > 0 ? 100.0 * t / r.seconds : 0.0;
  };
  fmt::print("{:<18} {:<52} {:>9} {:>8} {:>7} {:>9}  {}\n", "op", "shape", "time ms", "GFLOP/s",
             "GB/s", "roofline", "check");
  int failed = 0;
  for (const auto& r : rows) {
    fmt::print("{:<18} {:<52} {:>9.3f} {:>8.2f} {:>7.2f} {:>8.1f}%  {}\n", r.op, r.shape,
               r.seconds * 1e3, r.flops / r.seconds / 1e9, r.bytes / r.seconds / 1e9, roofline(r),
               r.check);
    failed += !r.ok;
  }
  const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
  fmt::print("\n{} ops run, {} checks failed, {:.1f} s in all\n", rows.size(), failed, total);

  // ---- results file ----------------------------------------------------------------------
  namespace json = boost::json;
  json::array ops;
  for (const auto& r : rows)
    ops.push_back(json::object{{"op", r.op}, {"shape", r.shape}, {"seconds", r.seconds}, {"flops", r.flops},
                               {"bytes", r.bytes}, {"roofline_percent", roofline(r)}, {"check", r.check}, {"ok", r.ok}});
  json::object doc{{"kind", "dsv4.run"}, {"version", 1}, {"quick", q}, {"threads", Eigen::nbThreads()},
                   {"hardware_threads", std::thread::hardware_concurrency()},
                   {"ceilings", json::object{{"sgemm_flops", ceil.gemm_flops}, {"read_bytes_per_s", ceil.read_bytes}}},
                   {"ops", std::move(ops)}, {"failed_checks", failed}, {"wall_seconds", total}};
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  const std::string path = a.out + "/run.json", tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << json::serialize(doc) << "\n";
    if (!f) {
      fmt::print(stderr, "dsv4 run: cannot write {}\n", tmp);
      return 1;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    fmt::print(stderr, "dsv4 run: cannot write {}: {}\n", path, ec.message());
    return 1;
  }
  fmt::print("results: {}\n", path);
  return failed ? 1 : 0;
}

}  // namespace dsv4::cli
