// Tests of the whole attention sub-layer (reference/attention_layer.h: prefill, decode,
// state_init; spec §2.1-§2.9) for ratio 0 (window only), 4 (CSA with the lightning
// indexer) and 128 (HCA).
//
// Oracle: the layer composed in this file from the spec in naive double loops (query path
// §2.1, window KV §2.2, compressor §2.3, indexer §2.4, attention §2.5, output §2.6, RoPE
// tables §2.7, visibility §2.8), with the shared pieces of tests/support/naive.h (RMSNorm,
// RoPE tables and rotation, softmax, top-k, attention with a sink) and the error model of
// tests/support/error_model.h. It calls no reference op. It is compared with prefill
// under Numerics::exact (no quantisation simulation). Prefill-then-decode == full prefill
// and decode-from-scratch == prefill are invariants (op vs op) and say so.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "reference/attention_layer.h"
#include "reference/errors.h"
#include "tests/support/attention_weights.h"
#include "tests/support/compare.h"
#include "tests/support/error_model.h"
#include "tests/support/naive.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

namespace naive = test::naive;
using test::ErrModel;
using test::linear_noted;
using test::max_abs;
using test::rms_of;
using test::to_double;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kRd = naive::kRopeDim;  // RoPE dims, the last 64 of every head / entry (§2.7)

// ---------------------------------------------------------------------------------------
// A small random layer. D = 64, H = 4, d = 128 (RoPE on the last 64), q_rank 32, groups 2,
// o_rank 32, indexer 4 heads x 128 (RoPE on dims 64..128), top-k 8, window 128.
// Weights uniform with unit gain (sqrt(3 / fan_in)); norm weights in [0.5, 1.5]; ape and
// sinks uniform in [-1, 1]; every value representable in float.

struct Model {
  int64_t D = 64, H = 4, d = 128, q_rank = 32, groups = 2, o_rank = 32, window = kWindow;
  int64_t ratio = 0, HI = 4, dI = 128, topk = 8;
  std::vector<double> wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  std::vector<double> c_wkv, c_wgate, c_ape, c_norm;  // main compressor (ratio > 0)
  std::vector<double> i_wkv, i_wgate, i_ape, i_norm;  // indexer compressor (ratio 4)
  std::vector<double> i_wq_b, i_wproj;                // indexer projections (ratio 4)
  bool csa() const { return ratio == kCsaRatio; }
  int64_t coff() const { return csa() ? 2 : 1; }  // overlap (c = 2) exactly when m = 4
  int64_t gw() const { return (H / groups) * d; }
};

Model make_model(int64_t ratio, uint64_t seed) {
  Model M;
  M.ratio = ratio;
  test::fill_attention_path_weights(M, seed);  // seeds seed + 1 .. seed + 8
  if (ratio > 0) {
    const int64_t w = M.coff() * M.d;
    M.c_wkv = test::unit_gain_weights(w, M.D, seed + 9);
    M.c_wgate = test::unit_gain_weights(w, M.D, seed + 10);
    M.c_ape = test::float_exact(test::uniform(size_t(ratio * w), seed + 11));
    M.c_norm = test::float_exact(test::uniform(size_t(M.d), seed + 12, 0.5, 1.5));
  }
  if (M.csa()) {
    const int64_t w = 2 * M.dI;
    M.i_wkv = test::unit_gain_weights(w, M.D, seed + 13);
    M.i_wgate = test::unit_gain_weights(w, M.D, seed + 14);
    M.i_ape = test::float_exact(test::uniform(size_t(ratio * w), seed + 15));
    M.i_norm = test::float_exact(test::uniform(size_t(M.dI), seed + 16, 0.5, 1.5));
    M.i_wq_b = test::unit_gain_weights(M.HI * M.dI, M.q_rank, seed + 17);
    M.i_wproj = test::unit_gain_weights(M.HI, M.D, seed + 18);
  }
  return M;
}

// The op's view of the model, in precision T (owning copies).
template <class T>
struct OpLayer {
  AttentionLayerShape shape;
  std::vector<T> wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  std::vector<T> c_wkv, c_wgate, c_ape, c_norm, i_wkv, i_wgate, i_ape, i_norm, i_wq_b, i_wproj;
  Numerics numerics = Numerics::exact;

  explicit OpLayer(const Model& M, Numerics n = Numerics::exact) : numerics(n) {
    shape.dim = M.D;
    shape.heads = M.H;
    shape.head_dim = M.d;
    shape.q_rank = M.q_rank;
    shape.groups = M.groups;
    shape.o_rank = M.o_rank;
    shape.window = M.window;
    shape.ratio = M.ratio;
    shape.index_heads = M.HI;
    shape.index_dim = M.dI;
    shape.index_topk = M.topk;
    shape.rope = rope_for_ratio(M.ratio);
    auto c = [](const std::vector<double>& v) { return test::cast<T>(v); };
    wq_a = c(M.wq_a), q_norm = c(M.q_norm), wq_b = c(M.wq_b), wkv = c(M.wkv);
    kv_norm = c(M.kv_norm), wo_a = c(M.wo_a), wo_b = c(M.wo_b), sink = c(M.sink);
    c_wkv = c(M.c_wkv), c_wgate = c(M.c_wgate), c_ape = c(M.c_ape), c_norm = c(M.c_norm);
    i_wkv = c(M.i_wkv), i_wgate = c(M.i_wgate), i_ape = c(M.i_ape), i_norm = c(M.i_norm);
    i_wq_b = c(M.i_wq_b), i_wproj = c(M.i_wproj);
  }
  OpLayer(const OpLayer&) = delete;

  AttentionLayerParams<T> params() const {
    auto ptr = [](const std::vector<T>& v) { return v.empty() ? nullptr : v.data(); };
    AttentionLayerParams<T> p;
    p.shape = shape;
    p.numerics = numerics;
    p.w.wq_a = ptr(wq_a), p.w.q_norm = ptr(q_norm), p.w.wq_b = ptr(wq_b);
    p.w.wkv = ptr(wkv), p.w.kv_norm = ptr(kv_norm);
    p.w.wo_a = ptr(wo_a), p.w.wo_b = ptr(wo_b), p.w.attn_sink = ptr(sink);
    p.w.compressor = {ptr(c_wkv), ptr(c_wgate), ptr(c_ape), ptr(c_norm)};
    p.w.indexer_compressor = {ptr(i_wkv), ptr(i_wgate), ptr(i_ape), ptr(i_norm)};
    p.w.indexer_wq_b = ptr(i_wq_b);
    p.w.indexer_weights_proj = ptr(i_wproj);
    return p;
  }
};

template <class T>
std::vector<T> prefill(const OpLayer<T>& L, const std::vector<double>& x, int64_t Tn,
                       std::type_identity_t<AttentionLayerState<T>>* state = nullptr,
                       std::vector<int32_t>* topk = nullptr) {
  const std::vector<T> xs = test::cast<T>(x);
  std::vector<T> y(size_t(Tn * L.shape.dim), T(kNaN));
  ref::attention_layer_prefill(L.params(), view2(xs.data(), Tn, L.shape.dim),
                               view2(y.data(), Tn, L.shape.dim), state, topk);
  return y;
}

// Decodes tokens [t0, t1) of x one by one; returns their outputs [t1 - t0, D] and, for
// CSA, their top-k rows.
template <class T>
std::vector<T> decode(const OpLayer<T>& L, const std::vector<double>& x, int64_t t0, int64_t t1,
                      AttentionLayerState<T>& st, std::vector<int32_t>* topk = nullptr) {
  const int64_t D = L.shape.dim;
  std::vector<T> y(size_t((t1 - t0) * D), T(kNaN));
  const auto p = L.params();
  for (int64_t t = t0; t < t1; ++t) {
    EXPECT_EQ(st.pos, t);
    const std::vector<T> xt = test::cast<T>(std::vector<double>(x.begin() + t * D, x.begin() + (t + 1) * D));
    std::vector<int32_t> row;
    ref::attention_layer_decode(p, xt.data(), y.data() + (t - t0) * D, st, topk ? &row : nullptr);
    if (topk) topk->insert(topk->end(), row.begin(), row.end());
  }
  return y;
}

// ---------------------------------------------------------------------------------------
// Naive spec pieces.

// Error model (tests/support/error_model.h): each stage (linear map, pooling, attention) in
// precision T errs, relative to the RMS of its output row, by at most reduction_tol<T>(K,
// kappa), kappa = max sum|terms| / rms(row) measured here; the stages add. Final tolerance:
// sum over stages * max|y|.
// §2.7: theta 10000 plain (ratio 0); theta 160000 with YaRN factor 16, range [15, 25].
const std::vector<double>& freqs(int64_t ratio, bool swap = false) {
  const bool yarn = (ratio > 0) != swap;
  return yarn ? naive::v4_compressed_freqs() : naive::v4_window_freqs();
}

// Deliberate deviations from the spec, for the non-vacuity test only.
struct Wrong {
  bool swap_table = false;       // use the other RoPE table
  bool no_overlap = false;       // CSA main compressor without the overlapping half
  bool rope_at_last = false;     // compressed entries rotated at the block's last token
};

// §2.3 compressor over x [T, D] from position 0 -> entries [floor(T/m), dc].
std::vector<double> compress(const Model& M, const std::vector<double>& x, int64_t Tn, int64_t dc,
                             const std::vector<double>& wkv, const std::vector<double>& wgate,
                             const std::vector<double>& ape, const std::vector<double>& norm,
                             bool overlap, ErrModel* em, const std::string& tag,
                             const Wrong& wrong = {}) {
  const int64_t m = M.ratio, c = overlap ? 2 : 1, w = c * dc, N = Tn / m;
  const auto f = freqs(M.ratio, wrong.swap_table);
  std::vector<std::vector<double>> a(static_cast<size_t>(Tn)), z(static_cast<size_t>(Tn));
  double zmag = 0;
  for (int64_t s = 0; s < Tn; ++s) {
    a[size_t(s)] = linear_noted(wkv, w, M.D, &x[size_t(s * M.D)], em, tag + ".wkv");
    double zm = 0;
    z[size_t(s)] = linear_noted(wgate, w, M.D, &x[size_t(s * M.D)], nullptr, "", &zm);
    zmag = std::max(zmag, zm);
    for (int64_t k = 0; k < w; ++k) z[size_t(s)][size_t(k)] += ape[size_t((s % m) * w + k)];
  }
  std::vector<double> out(static_cast<size_t>(N * dc));
  for (int64_t i = 0; i < N; ++i) {
    double* C = &out[size_t(i * dc)];
    std::vector<double> mag(static_cast<size_t>(dc));
    for (int64_t ch = 0; ch < dc; ++ch) {
      std::vector<double> logit, val;
      if (overlap && i > 0 && !wrong.no_overlap)  // previous block, A half
        for (int64_t s = (i - 1) * m; s < i * m; ++s) {
          logit.push_back(z[size_t(s)][size_t(ch)]);
          val.push_back(a[size_t(s)][size_t(ch)]);
        }
      const int64_t off = overlap ? dc : 0;  // current block: B half (CSA) or all (HCA)
      for (int64_t s = i * m; s < (i + 1) * m; ++s) {
        logit.push_back(z[size_t(s)][size_t(off + ch)]);
        val.push_back(a[size_t(s)][size_t(off + ch)]);
      }
      const std::vector<double> wt = naive::softmax(logit.data(), int64_t(logit.size()));
      double num = 0, am = 0;
      for (size_t k = 0; k < val.size(); ++k) {
        num += wt[k] * val[k];
        am += wt[k] * std::fabs(val[k]);
      }
      C[ch] = num;
      mag[size_t(ch)] = am;
    }
    const double r = rms_of(C, dc);
    if (em) {
      em->note(tag + ".pool", double(2 * m), max_abs(mag) / r);
      em->note(tag + ".gate", double(M.D), 2 * zmag * max_abs(mag) / r);
    }
    naive::rmsnorm(C, dc, norm.data());
    naive::rope_interleaved(C + dc - kRd, double(i * m + (wrong.rope_at_last ? m - 1 : 0)), f);  // block's first token
  }
  return out;
}

struct OracleOut {
  std::vector<double> y;
  std::vector<int32_t> topk;  // [T, k] for CSA: the oracle's own selection
  ErrModel em;                // errors reaching y
  // CSA indexer, per row over its visible entries: scores, sum|terms| of each score, and
  // the smallest -dot / sum|q_i K_i| over the heads whose dot is <= 0 (an exact-zero score
  // is reproduced exactly by a precision whose relative error is below that margin).
  std::vector<std::vector<double>> isc, imag, imargin;
  ErrModel eidx;  // errors reaching the indexer scores
  int64_t k = 0;
  // Absolute error bound of score j of row t in precision T: the relative errors of the
  // stages feeding q^I, K^I and w (eidx) apply to each head's dot and weight, whose
  // magnitudes are bounded by sum|terms|: |dI| <= 2 * eidx.rel<T>() * imag (first order).
  template <class T>
  double score_err(int64_t t, int64_t j) const {
    return 2 * eidx.rel<T>() * imag[size_t(t)][size_t(j)];
  }
  // Both scores exactly 0 and reproduced as exactly 0 in precision T: a tie that T breaks
  // like the oracle (lower index first).
  template <class T>
  bool clear_zero_tie(size_t t, int32_t a, int32_t b) const {
    const double need = 2 * eidx.rel<T>();
    return isc[t][size_t(a)] == 0 && isc[t][size_t(b)] == 0 && imargin[t][size_t(a)] > need &&
           imargin[t][size_t(b)] > need;
  }
};

OracleOut oracle(const Model& M, const std::vector<double>& x, int64_t Tn, const Wrong& wrong = {},
                 const std::vector<int32_t>* forced_topk = nullptr) {
  OracleOut R;
  ErrModel& em = R.em;
  ErrModel& eidx = R.eidx;
  R.k = M.topk;
  const auto f = freqs(M.ratio, wrong.swap_table);
  const int64_t H = M.H, d = M.d;

  // §2.1, §2.2 per token
  std::vector<double> cq(static_cast<size_t>(Tn * M.q_rank)), q(size_t(Tn * H * d)), kv(static_cast<size_t>(Tn * d));
  for (int64_t t = 0; t < Tn; ++t) {
    const double* xt = &x[size_t(t * M.D)];
    auto c = linear_noted(M.wq_a, M.q_rank, M.D, xt, &em, "wq_a");
    linear_noted(M.wq_a, M.q_rank, M.D, xt, &eidx, "wq_a");
    naive::rmsnorm(c.data(), M.q_rank, M.q_norm.data());
    std::copy(c.begin(), c.end(), cq.begin() + t * M.q_rank);
    auto qt = linear_noted(M.wq_b, H * d, M.q_rank, c.data(), &em, "wq_b");
    for (int64_t h = 0; h < H; ++h) {
      naive::rmsnorm(&qt[size_t(h * d)], d, nullptr);
      naive::rope_interleaved(&qt[size_t(h * d + d - kRd)], double(t), f);
    }
    std::copy(qt.begin(), qt.end(), q.begin() + t * H * d);
    auto k = linear_noted(M.wkv, d, M.D, xt, &em, "wkv");
    naive::rmsnorm(k.data(), d, M.kv_norm.data());
    naive::rope_interleaved(&k[size_t(d - kRd)], double(t), f);
    std::copy(k.begin(), k.end(), kv.begin() + t * d);
  }

  // §2.3 compressed entries
  std::vector<double> comp, keys;
  if (M.ratio > 0)
    comp = compress(M, x, Tn, d, M.c_wkv, M.c_wgate, M.c_ape, M.c_norm, M.csa(), &em, "comp", wrong);
  if (M.csa())
    keys = compress(M, x, Tn, M.dI, M.i_wkv, M.i_wgate, M.i_ape, M.i_norm, true, &eidx, "icomp");

  // §2.4 indexer: per query t, scores over visible keys j < floor((t+1)/4), top-k.
  if (M.csa()) {
    R.topk.assign(size_t(Tn * M.topk), -1);
    const double wscale = 1.0 / (std::sqrt(double(M.dI)) * std::sqrt(double(M.HI)));
    std::vector<std::vector<double>> qis(static_cast<size_t>(Tn)), ws(static_cast<size_t>(Tn));
    for (int64_t t = 0; t < Tn; ++t) {
      auto qi = linear_noted(M.i_wq_b, M.HI * M.dI, M.q_rank, &cq[size_t(t * M.q_rank)], &eidx, "iwq_b");
      for (int64_t h = 0; h < M.HI; ++h) naive::rope_interleaved(&qi[size_t(h * M.dI + M.dI - kRd)], double(t), f);
      auto w = linear_noted(M.i_wproj, M.HI, M.D, &x[size_t(t * M.D)], &eidx, "iwproj");
      for (double& v : w) v *= wscale;
      qis[size_t(t)] = qi;
      ws[size_t(t)] = w;
    }
    for (int64_t t = 0; t < Tn; ++t) {
      const int64_t vis = std::min<int64_t>((t + 1) / M.ratio, int64_t(keys.size()) / M.dI);
      std::vector<double> sc(static_cast<size_t>(vis)), mag(static_cast<size_t>(vis));
      std::vector<double> margin(static_cast<size_t>(vis), std::numeric_limits<double>::infinity());
      for (int64_t j = 0; j < vis; ++j) {
        double s = 0, m = 0;
        for (int64_t h = 0; h < M.HI; ++h) {
          double dot = 0, dm = 0;
          for (int64_t i = 0; i < M.dI; ++i) {
            const double pr = qis[size_t(t)][size_t(h * M.dI + i)] * keys[size_t(j * M.dI + i)];
            dot += pr;
            dm += std::fabs(pr);
          }
          eidx.note("idot", double(M.dI), 1.0);  // the dot's own rounding, relative to dm
          s += ws[size_t(t)][size_t(h)] * std::max(dot, 0.0);
          m += std::fabs(ws[size_t(t)][size_t(h)]) * dm;
          if (dot <= 0) margin[size_t(j)] = std::min(margin[size_t(j)], -dot / dm);
        }
        sc[size_t(j)] = s;
        mag[size_t(j)] = m;
      }
      std::vector<int32_t> cand(static_cast<size_t>(vis));
      std::iota(cand.begin(), cand.end(), 0);
      const std::vector<int32_t> row = naive::topk(sc.data(), std::move(cand), M.topk);
      std::copy(row.begin(), row.end(), R.topk.begin() + t * M.topk);
      R.isc.push_back(sc);
      R.imag.push_back(mag);
      R.imargin.push_back(margin);
    }
  }

  // §2.5 attention and §2.6 output, per query t.
  const double scale = 1.0 / std::sqrt(double(d));
  const int64_t gr = M.groups * M.o_rank;
  for (int64_t t = 0; t < Tn; ++t) {
    std::vector<const double*> ent;
    for (int64_t j = std::max<int64_t>(0, t - M.window + 1); j <= t; ++j) ent.push_back(&kv[size_t(j * d)]);
    if (M.csa()) {
      const std::vector<int32_t>& sel = forced_topk ? *forced_topk : R.topk;
      for (int64_t k = 0; k < M.topk; ++k) {
        const int32_t j = sel[size_t(t * M.topk + k)];
        if (j >= 0) ent.push_back(&comp[size_t(j * d)]);
      }
    } else if (M.ratio > 0) {
      for (int64_t j = 0; j < (t + 1) / M.ratio; ++j) ent.push_back(&comp[size_t(j * d)]);
    }
    std::vector<double> o(size_t(H * d), 0.0);
    for (int64_t h = 0; h < H; ++h) {
      double* oh = &o[size_t(h * d)];
      naive::AttendStats st;  // this head's score and output magnitudes
      naive::attend(&q[size_t((t * H + h) * d)], ent, d, d, scale, M.sink[size_t(h)], oh, &st);
      const double r = rms_of(oh, d);
      em.note("scores", double(d), 2 * st.smag * st.omag / r);
      em.note("p.v", double(ent.size()), st.omag / r);
      naive::rope_interleaved(oh + d - kRd, double(t), f, -1.0);  // §2.6 inverse RoPE
    }
    std::vector<double> u(static_cast<size_t>(gr));
    for (int64_t g = 0; g < M.groups; ++g) {
      const std::vector<double> wg(M.wo_a.begin() + g * M.o_rank * M.gw(),
                                   M.wo_a.begin() + (g + 1) * M.o_rank * M.gw());
      auto ug = linear_noted(wg, M.o_rank, M.gw(), &o[size_t(g * M.gw())], &em, "wo_a");
      std::copy(ug.begin(), ug.end(), u.begin() + g * M.o_rank);
    }
    auto yt = linear_noted(M.wo_b, M.D, gr, u.data(), &em, "wo_b");
    R.y.insert(R.y.end(), yt.begin(), yt.end());
  }
  return R;
}

// The oracle's selection is well posed in precision T when every decision among the first
// k+1 ranked entries (order and cut) is separated by more than the two scores' error
// bounds, except exact-zero ties that are clear (tie broken by the lower index in any
// precision). Then the op in precision T must reproduce the oracle's indices exactly.
template <class T>
::testing::AssertionResult selection_well_posed(const OracleOut& r) {
  for (size_t t = 0; t < r.isc.size(); ++t) {
    const auto& sc = r.isc[t];
    const int64_t vis = int64_t(sc.size()), k = std::min<int64_t>(r.k, vis);
    for (int64_t p = 0; p + 1 < std::min<int64_t>(k + 1, vis); ++p) {
      const int32_t a = r.topk[t * size_t(r.k) + size_t(p)];
      const int32_t b = p + 1 < k ? r.topk[t * size_t(r.k) + size_t(p + 1)] : -1;
      if (b < 0) continue;  // the cut is checked below
      if (r.clear_zero_tie<T>(t, a, b)) continue;
      if (sc[size_t(a)] - sc[size_t(b)] <= r.score_err<T>(int64_t(t), a) + r.score_err<T>(int64_t(t), b))
        return ::testing::AssertionFailure() << "row " << t << ": ranks " << p << "/" << p + 1
                                             << " scores " << sc[size_t(a)] << ", " << sc[size_t(b)];
    }
    if (k < vis) {  // the cut: the k-th selected vs the best unselected
      const int32_t last = r.topk[t * size_t(r.k) + size_t(k - 1)];
      for (int64_t j = 0; j < vis; ++j) {
        const auto* b0 = &r.topk[t * size_t(r.k)];
        if (std::find(b0, b0 + k, int32_t(j)) != b0 + k) continue;
        if (r.clear_zero_tie<T>(t, last, int32_t(j))) continue;
        if (sc[size_t(last)] - sc[size_t(j)] <= r.score_err<T>(int64_t(t), last) + r.score_err<T>(int64_t(t), j))
          return ::testing::AssertionFailure() << "row " << t << ": cut between scores "
                                               << sc[size_t(last)] << " and " << sc[size_t(j)];
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// A selection is consistent with the oracle in precision T when each row lists
// min(k, #visible) distinct visible entries, -1 padded, and its p-th entry's score equals
// the oracle's p-th best score within the two error bounds (so any difference from the
// oracle's indices is a near-tie that precision T cannot resolve).
template <class T>
::testing::AssertionResult selection_consistent(const OracleOut& r, const std::vector<int32_t>& got) {
  if (got.size() != r.topk.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << r.topk.size();
  for (size_t t = 0; t < r.isc.size(); ++t) {
    const auto& sc = r.isc[t];
    const int64_t vis = int64_t(sc.size()), k = std::min<int64_t>(r.k, vis);
    const int32_t* g = &got[t * size_t(r.k)];
    const int32_t* w = &r.topk[t * size_t(r.k)];
    for (int64_t p = 0; p < r.k; ++p) {
      if (p >= k) {
        if (g[p] != -1) return ::testing::AssertionFailure() << "row " << t << ": no -1 padding at " << p;
        continue;
      }
      if (g[p] < 0 || g[p] >= vis || std::find(g, g + p, g[p]) != g + p)
        return ::testing::AssertionFailure() << "row " << t << ": bad or repeated index " << g[p];
      const double tol = r.score_err<T>(int64_t(t), g[p]) + r.score_err<T>(int64_t(t), w[p]);
      if (std::fabs(sc[size_t(g[p])] - sc[size_t(w[p])]) > tol)
        return ::testing::AssertionFailure() << "row " << t << " rank " << p << ": index " << g[p]
                                             << " (score " << sc[size_t(g[p])] << ") where the oracle has "
                                             << w[p] << " (score " << sc[size_t(w[p])] << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// Rows on which two [T, k] selections differ.
std::vector<int64_t> differing_rows(const std::vector<int32_t>& a, const std::vector<int32_t>& b,
                                    int64_t k) {
  std::vector<int64_t> out;
  for (size_t t = 0; t * size_t(k) < a.size(); ++t)
    if (!std::equal(a.begin() + t * k, a.begin() + (t + 1) * k, b.begin() + t * k))
      out.push_back(int64_t(t));
  return out;
}

// Compares rows [0, T) of two [T, D] outputs, leaving out the rows in `skip`.
template <class A, class B>
::testing::AssertionResult rows_close(const std::vector<A>& a, const std::vector<B>& b, int64_t D,
                                      double tol, const std::vector<int64_t>& skip) {
  std::vector<double> x, y;
  for (size_t t = 0; t * size_t(D) < a.size(); ++t) {
    if (std::find(skip.begin(), skip.end(), int64_t(t)) != skip.end()) continue;
    x.insert(x.end(), a.begin() + t * D, a.begin() + (t + 1) * D);
    y.insert(y.end(), b.begin() + t * D, b.begin() + (t + 1) * D);
  }
  return test::all_close(x, y, tol);
}

std::vector<double> make_x(const Model& M, int64_t Tn, uint64_t seed) {
  return test::float_exact(test::normal(size_t(Tn * M.D), seed));
}

template <class T>
double layer_tol(const OracleOut& r) {
  return r.em.rel<T>() * max_abs(r.y);
}

template <class T>
std::vector<T> rows(const std::vector<T>& y, int64_t t0, int64_t t1, int64_t D) {
  return std::vector<T>(y.begin() + t0 * D, y.begin() + t1 * D);
}

double rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// ---------------------------------------------------------------------------------------
// Tests, parametrised by the compression ratio.

class AttentionLayer : public ::testing::TestWithParam<int64_t> {};

// Prefill lengths that span several blocks: window-only 200 (> window), CSA 150 (37 entries,
// the indexer picks 8), HCA 300 (two complete blocks and a partial one).
int64_t prefill_len(int64_t ratio) { return ratio == 0 ? 200 : ratio == kCsaRatio ? 150 : 300; }

// Prefill in precision T vs the oracle. For CSA the op's selection must equal the oracle's
// where the selection is well posed in T (always so in double for these seeds); otherwise
// it must be consistent with the oracle (differences only at near-ties T cannot resolve)
// and y is compared with the oracle evaluated on the op's selection.
template <class T>
void check_prefill(const Model& M, const std::vector<double>& x, int64_t Tn, const OracleOut& r) {
  const OpLayer<T> L(M);
  std::vector<int32_t> topk;
  const std::vector<T> y = prefill(L, x, Tn, nullptr, M.csa() ? &topk : nullptr);
  if (!M.csa()) {
    EXPECT_TRUE(test::all_close(y, r.y, layer_tol<T>(r)));
    return;
  }
  if (selection_well_posed<T>(r)) {
    EXPECT_EQ(topk, r.topk) << "the indexer's selection differs from the oracle's";
    EXPECT_TRUE(test::all_close(y, r.y, layer_tol<T>(r)));
  } else {
    EXPECT_TRUE(selection_consistent<T>(r, topk));
    const OracleOut rf = oracle(M, x, Tn, {}, &topk);
    EXPECT_TRUE(test::all_close(y, rf.y, layer_tol<T>(rf)));
  }
}

TEST_P(AttentionLayer, PrefillMatchesOracle) {
  const int64_t ratio = GetParam(), Tn = prefill_len(ratio);
  const Model M = make_model(ratio, 1000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 1100 + uint64_t(ratio));
  const OracleOut r = oracle(M, x, Tn);
  if (M.csa()) {
    ASSERT_TRUE(selection_well_posed<double>(r));
  }
  {
    SCOPED_TRACE("float");
    check_prefill<float>(M, x, Tn, r);
  }
  {
    SCOPED_TRACE("double");
    check_prefill<double>(M, x, Tn, r);
  }
}

// Non-vacuity: oracles with one spec detail changed are rejected by the same tolerance
// (window-only: the compressed layers' RoPE table; CSA: the main compressor without its
// overlapping half; HCA: entries rotated at the block's last token instead of its first).
TEST_P(AttentionLayer, ToleranceRejectsWrongOracles) {
  const int64_t ratio = GetParam(), Tn = prefill_len(ratio);
  const Model M = make_model(ratio, 1000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 1100 + uint64_t(ratio));
  const OracleOut r = oracle(M, x, Tn);
  Wrong w;
  if (ratio == 0) w.swap_table = true;
  if (ratio == kCsaRatio) w.no_overlap = true;
  if (ratio == kHcaRatio) w.rope_at_last = true;
  std::vector<int32_t> topk;
  const std::vector<double> yd = prefill(OpLayer<double>(M), x, Tn, nullptr, &topk);
  const OracleOut bad = oracle(M, x, Tn, w, M.csa() ? &topk : nullptr);  // same selection
  const std::vector<float> yf = prefill(OpLayer<float>(M), x, Tn);
  EXPECT_TRUE(test::all_close(yd, r.y, layer_tol<double>(r)));
  EXPECT_FALSE(test::all_close(yd, bad.y, layer_tol<double>(r)));
  EXPECT_FALSE(test::all_close(yf, bad.y, layer_tol<float>(r)));
}

// Invariant (engineering.md §3): prefill T0 tokens with state, decode the rest one by one:
// each decoded y_t equals row t of a full prefill, and for CSA the decode's top-k row equals
// the prefill's. T0 = 1, 100, 127, 128, 129 with 300 tokens in all: crosses CSA blocks, the
// 128-token window and the HCA block boundary (entry 1 completes at t = 255).
// Each path errs by <= layer_tol against the exact value, so they may differ by 2x.
// Where the two selections differ (possible only at a near-tie the precision cannot
// resolve, checked against the oracle), that row's y is left out.
template <class T>
void check_prefill_then_decode(const Model& M, const std::vector<double>& x, int64_t Tn,
                               const OracleOut& r, Numerics n) {
  const double tol = 2 * layer_tol<T>(r);
  const OpLayer<T> L(M, n);
  std::vector<int32_t> full_topk;
  const std::vector<T> full = prefill(L, x, Tn, nullptr, M.csa() ? &full_topk : nullptr);
  for (int64_t t0 : {1, 100, 127, 128, 129}) {
    SCOPED_TRACE("T0 = " + std::to_string(t0));
    AttentionLayerState<T> st;
    const std::vector<T> head = prefill(L, x, t0, &st);
    EXPECT_EQ(st.pos, t0);
    EXPECT_TRUE(test::all_close(head, rows(full, 0, t0, M.D), tol)) << "prefill prefix";
    std::vector<int32_t> topk;
    const std::vector<T> tail = decode(L, x, t0, Tn, st, M.csa() ? &topk : nullptr);
    std::vector<int64_t> skip;
    if (M.csa()) {
      const std::vector<int32_t> want(full_topk.begin() + t0 * M.topk, full_topk.end());
      skip = differing_rows(topk, want, M.topk);
      if (n == Numerics::exact && !skip.empty()) {
        // near-ties only: both selections consistent with the oracle on those rows
        std::vector<int32_t> dec_all(full_topk.begin(), full_topk.begin() + t0 * M.topk);
        dec_all.insert(dec_all.end(), topk.begin(), topk.end());
        EXPECT_TRUE(selection_consistent<T>(r, dec_all));
        EXPECT_TRUE(selection_consistent<T>(r, full_topk));
      }
      EXPECT_LE(skip.size(), 2u) << "decode and prefill selections differ on many rows";
      if (std::is_same_v<T, double>) {
        EXPECT_TRUE(skip.empty());
      }
      ::testing::Test::RecordProperty(
          std::string(std::is_same_v<T, double> ? "double" : "float") + "_T0_" +
              std::to_string(t0) + "_rows_with_different_selection",
          std::to_string(skip.size()));
    }
    EXPECT_TRUE(rows_close(tail, rows(full, t0, Tn, M.D), M.D, tol, skip)) << "decoded rows";
  }
}

TEST_P(AttentionLayer, InvariantPrefillThenDecodeEqualsFullPrefill) {
  const int64_t ratio = GetParam(), Tn = 300;
  const Model M = make_model(ratio, 2000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 2100 + uint64_t(ratio));
  const OracleOut r = oracle(M, x, Tn);  // for the tolerance and the near-tie checks
  {
    SCOPED_TRACE("float");
    check_prefill_then_decode<float>(M, x, Tn, r, Numerics::exact);
  }
  {
    SCOPED_TRACE("double");
    check_prefill_then_decode<double>(M, x, Tn, r, Numerics::exact);
  }
}

// Invariant: decoding every token from a fresh state_init equals prefill (and the oracle).
TEST_P(AttentionLayer, InvariantDecodeFromScratchEqualsPrefill) {
  const int64_t ratio = GetParam(), Tn = 300;
  const Model M = make_model(ratio, 3000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 3100 + uint64_t(ratio));
  const OracleOut r = oracle(M, x, Tn);
  if (M.csa()) {
    ASSERT_TRUE(selection_well_posed<double>(r));
  }
  const OpLayer<double> L(M);
  AttentionLayerState<double> st = ref::attention_layer_state_init<double>(L.shape);
  EXPECT_EQ(st.pos, 0);
  std::vector<int32_t> topk;
  const std::vector<double> y = decode(L, x, 0, Tn, st, M.csa() ? &topk : nullptr);
  EXPECT_EQ(st.pos, Tn);
  EXPECT_TRUE(test::all_close(y, r.y, layer_tol<double>(r))) << "decode vs oracle";
  std::vector<int32_t> pre_topk;
  const std::vector<double> pre = prefill(L, x, Tn, nullptr, M.csa() ? &pre_topk : nullptr);
  EXPECT_TRUE(test::all_close(y, pre, 2 * layer_tol<double>(r))) << "decode vs prefill";
  if (M.csa()) {
    EXPECT_EQ(topk, r.topk);
    EXPECT_EQ(topk, pre_topk);
  }
  // float, from scratch too (vs the oracle on the float decode's own selection)
  const OpLayer<float> Lf(M);
  AttentionLayerState<float> sf = ref::attention_layer_state_init<float>(Lf.shape);
  std::vector<int32_t> tf;
  const std::vector<float> yf = decode(Lf, x, 0, Tn, sf, M.csa() ? &tf : nullptr);
  if (M.csa()) {
    EXPECT_TRUE(selection_consistent<float>(r, tf));
  }
  const OracleOut rf = M.csa() ? oracle(M, x, Tn, {}, &tf) : r;
  EXPECT_TRUE(test::all_close(yf, rf.y, layer_tol<float>(rf))) << "float decode vs oracle";
}

// Numerics::official (FP8 activations at the inputs of wq_a, wq_b, wkv, indexer.wq_b and
// wo_b; FP8 KV / compressed entries; Hadamard + FP4 indexer) runs and differs from exact
// by a plausible amount. Rationale for [1e-4, 1e-1] relative (Frobenius) on y: e4m3 keeps 3
// mantissa bits, so each rounded element errs by up to 2^-4 relative (RMS ~ 2^-4/sqrt(3)
// ~ 3.6% for values spread over a binade); a dot product of such inputs with random
// weights carries that relative error through (no averaging: errors and signal scale
// alike), and several rounded stages add in quadrature -> a few percent on y. Far below
// 1e-4 would mean no rounding happened; above 1e-1 would mean something broke (an FP8
// or FP4 step mis-scaled).
// CSA adds a second effect: FP4 on the indexer changes some selected entries (~7 % of
// them here). o averages ~136 random unit-RMS vectors, so |o| ~ |e| / sqrt(n_eff) while one
// entry contributes ~|e| / n_eff: each swapped entry moves y by several percent of |y|.
// So for CSA the bound is 2e-1 on the total, and the quantisation part alone (official y
// vs the exact oracle evaluated on the official selection) must sit in [1e-4, 1e-1].
TEST_P(AttentionLayer, OfficialNumericsDiffersPlausiblyFromExact) {
  const int64_t ratio = GetParam(), Tn = prefill_len(ratio);
  const Model M = make_model(ratio, 1000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 1100 + uint64_t(ratio));
  for (bool dbl : {false, true}) {
    SCOPED_TRACE(dbl ? "double" : "float");
    std::vector<double> ye, yo;
    if (dbl) {
      ye = prefill(OpLayer<double>(M, Numerics::exact), x, Tn);
      yo = prefill(OpLayer<double>(M, Numerics::official), x, Tn);
    } else {
      ye = to_double(prefill(OpLayer<float>(M, Numerics::exact), x, Tn));
      yo = to_double(prefill(OpLayer<float>(M, Numerics::official), x, Tn));
    }
    for (double v : yo) ASSERT_TRUE(std::isfinite(v));
    const double rd = rel_diff(yo, ye);
    EXPECT_GT(rd, 1e-4);
    EXPECT_LT(rd, M.csa() ? 2e-1 : 1e-1);
    if (M.csa()) {
      std::vector<int32_t> sel;
      if (dbl) {
        prefill(OpLayer<double>(M, Numerics::official), x, Tn, nullptr, &sel);
      } else {
        prefill(OpLayer<float>(M, Numerics::official), x, Tn, nullptr, &sel);
      }
      const double rq = rel_diff(yo, oracle(M, x, Tn, {}, &sel).y);
      EXPECT_GT(rq, 1e-4);
      EXPECT_LT(rq, 1e-1);
      RecordProperty(std::string("official_vs_exact_same_selection_rel_") + (dbl ? "double" : "float"),
                     std::to_string(rq));
    }
    RecordProperty(std::string("official_vs_exact_rel_") + (dbl ? "double" : "float"),
                   std::to_string(rd));
  }
}

// Invariant under official numerics: quantisation is per row (activations, KV rows) or per
// entry (compressed entries, indexer keys), so prefill-then-decode must still equal full
// prefill up to rounding (same derived tolerance as exact numerics).
TEST_P(AttentionLayer, InvariantPrefillThenDecodeOfficialNumerics) {
  const int64_t ratio = GetParam(), Tn = 300;
  const Model M = make_model(ratio, 2000 + uint64_t(ratio));
  const auto x = make_x(M, Tn, 2100 + uint64_t(ratio));
  const OracleOut r = oracle(M, x, Tn);
  {
    SCOPED_TRACE("double");
    check_prefill_then_decode<double>(M, x, Tn, r, Numerics::official);
  }
  {
    SCOPED_TRACE("float");
    check_prefill_then_decode<float>(M, x, Tn, r, Numerics::official);
  }
}

INSTANTIATE_TEST_SUITE_P(Ratios, AttentionLayer,
                         ::testing::Values(int64_t(0), kCsaRatio, kHcaRatio),
                         [](const ::testing::TestParamInfo<int64_t>& i) {
                           return i.param == 0 ? std::string("Window")
                                               : i.param == kCsaRatio ? std::string("Csa")
                                                                      : std::string("Hca");
                         });

// The CSA top-k output of prefill equals the indices the oracle's indexer selects (double:
// exactly, the selection being well posed; float: exactly where well posed, else
// consistent), on a length where most rows choose 8 among more than 8 entries.
TEST(AttentionLayerCsa, TopkOutputMatchesOracleIndexer) {
  const Model M = make_model(kCsaRatio, 4000);
  const int64_t Tn = 150;
  const auto x = make_x(M, Tn, 4001);
  const OracleOut r = oracle(M, x, Tn);
  ASSERT_TRUE(selection_well_posed<double>(r));
  int64_t full_rows = 0;
  for (int64_t t = 0; t < Tn; ++t) full_rows += (t + 1) / kCsaRatio > M.topk;
  ASSERT_GT(full_rows, 100) << "test setup: most rows should choose among > k entries";
  std::vector<int32_t> td, tf;
  prefill(OpLayer<double>(M), x, Tn, nullptr, &td);
  prefill(OpLayer<float>(M), x, Tn, nullptr, &tf);
  EXPECT_EQ(td, r.topk);
  if (selection_well_posed<float>(r)) {
    EXPECT_EQ(tf, r.topk);
  } else {
    EXPECT_TRUE(selection_consistent<float>(r, tf));
    RecordProperty("float_rows_differing_from_oracle",
                   std::to_string(differing_rows(tf, r.topk, M.topk).size()));
  }
  // padding: rows with fewer than k visible entries end in -1
  EXPECT_EQ(td[0], -1);                       // position 0: nothing visible
  EXPECT_EQ(td[size_t(3 * M.topk + 0)], 0);   // position 3: entry 0 just completed
  EXPECT_EQ(td[size_t(3 * M.topk + 1)], -1);
  // non-vacuity: a selection that swaps the 1st and 8th choice of a full row is rejected
  std::vector<int32_t> swapped = r.topk;
  std::swap(swapped[size_t(120 * M.topk)], swapped[size_t(120 * M.topk + 7)]);
  EXPECT_FALSE(selection_consistent<float>(r, swapped));
}

TEST(AttentionLayerBadInput, WrongShapes) {
  const Model M = make_model(kCsaRatio, 5000);
  const OpLayer<float> L(M);
  const auto x = test::cast<float>(make_x(M, 4, 5001));
  std::vector<float> y(static_cast<size_t>(4 * M.D));
  auto p = L.params();
  // x with the wrong width
  EXPECT_THROW(ref::attention_layer_prefill(p, view2(x.data(), 2, M.D * 2), view2(y.data(), 2, M.D * 2)),
               InputError);
  // groups not dividing heads
  p.shape.groups = 3;
  EXPECT_THROW(ref::attention_layer_prefill(p, view2(x.data(), 4, M.D), view2(y.data(), 4, M.D)),
               InputError);
  // a decode state of another shape
  p = L.params();
  AttentionLayerShape other = p.shape;
  other.window = 64;
  AttentionLayerState<float> st = ref::attention_layer_state_init<float>(other);
  EXPECT_THROW(ref::attention_layer_decode(p, x.data(), y.data(), st), InputError);
}

}  // namespace
}  // namespace dsv4
