// dsv4::cuda::attention_layer_forward (the whole attention sub-layer with its KV cache in device
// memory, optimized/attention_layer.cuh) against the CPU twins ref::attention_layer_forward
// <float> and <double> run through the same schedule of chunks (prefill, decode steps, chunked
// prefill). Spec: docs/v4-architecture.md §2.1-§2.9. Layers: window-only (ratio 0), CSA (4,
// lightning indexer) and HCA (128), at a small shape with a short window (the ring wraps many
// times) and at the v4-tiny preset's shapes (model/config.cc: D 256, H 4, d 512, q_rank 128,
// g 2, o_rank 128, window 128, indexer 4 x 128, top-k 16).
//
// Oracle: ref::attention_layer_forward<double> (the reference layer, itself checked against a
// naive spec oracle in tests/reference/test_attention_layer.cc) on the same float-exact inputs.
// Tolerance per chunk, derived from the float reference's own error against it:
//   atol = 2 * max|y_ref_float - y_ref_double| + kSafety * u_float * max|y_ref_double|
// (the GPU composes the same FP32 ops in other summation orders, so its error is of the float
// reference's size; the second term is a rounding floor for chunks where the float reference
// happens to be almost exact). The GPU output is also compared with the float reference within
// atol + that measured error (triangle inequality). The device state (ring, compressed
// entries, indexer keys, compressor states) is downloaded at the end and compared with the
// reference's the same way. CSA: the indexer's selection of every row (the workspace's
// selection()) holds the float reference's entries. Numerics::official: the tolerance adds an
// allowance for FP8 / FP4 rounding-boundary flips (check_case), and the stored rows may differ
// beyond the tolerance in a few elements only. Every run writes into NaN-poisoned, canaried
// outputs; a second run of the whole schedule from a fresh state must give bitwise identical
// outputs.
// Label gpu: every device test skips, with the reason, without a device; the validation test
// runs everywhere (nothing it calls touches the device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "optimized/attention_layer.cuh"
#include "optimized/device.cuh"
#include "reference/attention_layer.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "tests/support/attention_weights.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/expect_error.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;

// ---------------------------------------------------------------------------------------
// Layer shapes and random weights.

// Small: D 64, H 4, d 128 (RoPE on the last 64), q_rank 32, g 2, o_rank 32, indexer 4 x 128,
// top-k 8, window 16 (short, so chunks and decode steps cross the ring's wrap).
AttentionLayerShape small_shape(int64_t ratio) {
  AttentionLayerShape s;
  s.dim = 64;
  s.heads = 4;
  s.head_dim = 128;
  s.q_rank = 32;
  s.groups = 2;
  s.o_rank = 32;
  s.window = 16;
  s.ratio = ratio;
  s.index_heads = 4;
  s.index_dim = 128;
  s.index_topk = 8;
  s.rope = rope_for_ratio(ratio);
  return s;
}

// The v4-tiny preset's attention_shape (model/config.cc "v4-tiny"; real head_dim, window,
// indexer head size and RoPE tables).
AttentionLayerShape tiny_shape(int64_t ratio) {
  AttentionLayerShape s;
  s.dim = 256;
  s.heads = 4;
  s.head_dim = kHeadDim;
  s.q_rank = 128;
  s.groups = 2;
  s.o_rank = 128;
  s.window = kWindow;
  s.ratio = ratio;
  s.index_heads = 4;
  s.index_dim = kIndexerDim;
  s.index_topk = 16;
  s.rope = rope_for_ratio(ratio);
  return s;
}

// Every weight of one layer as float-exact doubles (tests/support/attention_weights.h for the
// per-token paths; compressors: unit-gain projections, ape in [-1, 1], norms in [0.5, 1.5]).
struct Model {
  AttentionLayerShape s;
  int64_t D = 0, H = 0, d = 0, q_rank = 0, groups = 0, o_rank = 0;  // the members fill_attention_path_weights uses
  std::vector<double> wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  std::vector<double> c_wkv, c_wgate, c_ape, c_norm;  // main compressor (ratio > 0)
  std::vector<double> i_wkv, i_wgate, i_ape, i_norm;  // indexer compressor (CSA)
  std::vector<double> i_wq_b, i_wproj;                // indexer projections (CSA)
  int64_t gw() const { return (H / groups) * d; }
};

Model make_model(const AttentionLayerShape& s, uint64_t seed) {
  Model M;
  M.s = s;
  M.D = s.dim, M.H = s.heads, M.d = s.head_dim, M.q_rank = s.q_rank, M.groups = s.groups, M.o_rank = s.o_rank;
  test::fill_attention_path_weights(M, seed);  // seeds seed + 1 .. seed + 8
  const bool csa = s.ratio == kCsaRatio;
  if (s.ratio > 0) {
    const int64_t w = (csa ? 2 : 1) * s.head_dim;
    M.c_wkv = test::unit_gain_weights(w, s.dim, seed + 9);
    M.c_wgate = test::unit_gain_weights(w, s.dim, seed + 10);
    M.c_ape = test::float_exact(test::uniform(size_t(s.ratio * w), seed + 11));
    M.c_norm = test::float_exact(test::uniform(size_t(s.head_dim), seed + 12, 0.5, 1.5));
  }
  if (csa) {
    const int64_t w = 2 * s.index_dim;
    M.i_wkv = test::unit_gain_weights(w, s.dim, seed + 13);
    M.i_wgate = test::unit_gain_weights(w, s.dim, seed + 14);
    M.i_ape = test::float_exact(test::uniform(size_t(s.ratio * w), seed + 15));
    M.i_norm = test::float_exact(test::uniform(size_t(s.index_dim), seed + 16, 0.5, 1.5));
    M.i_wq_b = test::unit_gain_weights(s.index_heads * s.index_dim, s.q_rank, seed + 17);
    M.i_wproj = test::unit_gain_weights(s.index_heads, s.dim, seed + 18);
  }
  return M;
}

// The weights in precision T, in host memory (Store = std::vector<T>) or in device memory
// (Store = cuda::DeviceBuffer<float>), and the params pointing at them.
template <class T, class Store>
struct Weights {
  Store wq_a, q_norm, wq_b, wkv, kv_norm, wo_a, wo_b, sink;
  Store c_wkv, c_wgate, c_ape, c_norm, i_wkv, i_wgate, i_ape, i_norm, i_wq_b, i_wproj;

  explicit Weights(const Model& M)
      : wq_a(c(M.wq_a)), q_norm(c(M.q_norm)), wq_b(c(M.wq_b)), wkv(c(M.wkv)), kv_norm(c(M.kv_norm)),
        wo_a(c(M.wo_a)), wo_b(c(M.wo_b)), sink(c(M.sink)), c_wkv(c(M.c_wkv)), c_wgate(c(M.c_wgate)),
        c_ape(c(M.c_ape)), c_norm(c(M.c_norm)), i_wkv(c(M.i_wkv)), i_wgate(c(M.i_wgate)), i_ape(c(M.i_ape)),
        i_norm(c(M.i_norm)), i_wq_b(c(M.i_wq_b)), i_wproj(c(M.i_wproj)) {}

  static Store c(const std::vector<double>& v) { return Store(test::cast<T>(v)); }
  static const T* ptr(const Store& v) { return v.size() ? v.data() : nullptr; }

  AttentionLayerParams<T> params(const AttentionLayerShape& s, Numerics n) const {
    AttentionLayerParams<T> p;
    p.shape = s;
    p.numerics = n;
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

// ---------------------------------------------------------------------------------------
// Running a schedule of chunks.

// The reference in precision T over the schedule: the outputs of every chunk, concatenated
// [sum chunks, D], and the final state.
// layout: the state's stores (model/kv_cache.h's v4_entry_stores; f32 = float stores).
template <class T>
std::vector<double> run_ref(const Model& M, Numerics n, const std::vector<double>& x,
                            const std::vector<int64_t>& chunks, AttentionLayerState<T>& st,
                            std::vector<int32_t>* topk = nullptr, KvLayout layout = KvLayout::f32) {
  const Weights<T, std::vector<T>> w(M);
  const AttentionLayerParams<T> p = w.params(M.s, n);
  const int64_t D = M.s.dim;
  st = ref::attention_layer_state_init<T>(M.s, v4_entry_stores<T>(layout, M.s.rope.rope_dim));
  std::vector<double> y;
  int64_t t0 = 0;
  for (int64_t Tc : chunks) {
    const std::vector<T> xc(x.begin() + t0 * D, x.begin() + (t0 + Tc) * D);
    std::vector<T> yc(size_t(Tc * D), std::numeric_limits<T>::quiet_NaN());
    std::vector<int32_t> sel;
    ref::attention_layer_forward<T>(p, view2(xc.data(), Tc, D), view2(yc.data(), Tc, D), st,
                                    topk ? &sel : nullptr);
    if (topk) topk->insert(topk->end(), sel.begin(), sel.end());
    y.insert(y.end(), yc.begin(), yc.end());
    t0 += Tc;
  }
  return y;
}

// The bytes a state of the layout holds after `pos` tokens (pos > 0), from the analytic
// per-row sizes of model/kv_cache.h and the compressor states' shapes (2 x [c*m, c*dc] FP32 each,
// c = 2 for CSA's overlapping compressors): model/kv_cache.cc's kv_bytes_analytic for one layer.
int64_t analytic_bytes(const AttentionLayerShape& s, KvLayout layout, int64_t pos) {
  const int64_t eb = v4_entry_bytes(layout, s.head_dim, s.rope.rope_dim), kb = v4_index_key_bytes(layout, s.index_dim);
  int64_t b = std::min(pos, s.window) * eb;
  if (s.ratio > 0) {
    const int64_t c = s.ratio == kCsaRatio ? 2 : 1;
    b += (pos / s.ratio) * eb + 2 * (c * s.ratio) * (c * s.head_dim) * 4;
  }
  if (s.ratio == kCsaRatio) b += (pos / s.ratio) * kb + 2 * (2 * s.ratio) * (2 * s.index_dim) * 4;
  return b;
}

// The GPU over the schedule from a fresh device state; every chunk reads x with row stride
// D + 3 and writes a poisoned, canaried y with row stride D + 5. Returns the outputs as floats.
// After every chunk the state's bytes() must be analytic_bytes.
std::vector<float> run_gpu(const Model& M, Numerics n, const std::vector<double>& x,
                           const std::vector<int64_t>& chunks, AttentionLayerState<float>* state_out,
                           std::vector<int32_t>* topk = nullptr,
                           cuda::DeviceKvLayout layout = cuda::DeviceKvLayout::f32) {
  const Weights<float, cuda::DeviceBuffer<float>> w(M);
  const AttentionLayerParams<float> p = w.params(M.s, n);
  const int64_t D = M.s.dim;
  const KvLayout host_layout = layout == cuda::DeviceKvLayout::fp8 ? KvLayout::fp8 : KvLayout::f32;
  cuda::DeviceAttentionLayerState st(M.s, layout);
  EXPECT_EQ(st.layout(), layout);
  EXPECT_EQ(st.bytes(), 0);
  cuda::AttentionLayerWorkspace ws(*std::max_element(chunks.begin(), chunks.end()), M.s);
  std::vector<float> y;
  int64_t t0 = 0;
  for (int64_t Tc : chunks) {
    EXPECT_EQ(st.pos(), t0);
    const Guarded gx{Tc, D, D + 3}, gy{Tc, D, D + 5};
    const std::vector<float> xc = test::cast<float>(std::vector<double>(x.begin() + t0 * D, x.begin() + (t0 + Tc) * D));
    cuda::DeviceBuffer<float> dx(gx.image(xc)), dy(gy.poisoned());
    test::launch_and_sync([&] {
      cuda::attention_layer_forward(p, gx.view<const float>(dx.data()), gy.view(dy.data()), st, ws);
    });
    const std::vector<float> img = dy.download();
    EXPECT_TRUE(gy.canaries_intact(img)) << "chunk at position " << t0;
    const View2<const int32_t> sel = ws.selection();
    if (M.s.ratio == kCsaRatio) {
      EXPECT_EQ(sel.rows, Tc);
      EXPECT_EQ(sel.cols, M.s.index_topk);
      std::vector<int32_t> host(size_t(Tc * M.s.index_topk));
      DSV4_CUDA_CHECK(cudaMemcpy(host.data(), sel.data, host.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
      if (topk) topk->insert(topk->end(), host.begin(), host.end());
    } else {
      EXPECT_EQ(sel.data, nullptr);
    }
    const std::vector<float> yc = gy.extract(img);
    y.insert(y.end(), yc.begin(), yc.end());
    t0 += Tc;
    EXPECT_EQ(st.bytes(), analytic_bytes(M.s, host_layout, t0)) << "bytes after position " << t0;
  }
  EXPECT_EQ(st.pos(), t0);
  if (state_out) *state_out = cuda::download_state(st);
  return y;
}

// Rows [r0, r0 + n) of a dense [*, w] array.
template <class T>
std::vector<double> rows_of(const std::vector<T>& v, int64_t r0, int64_t n, int64_t w) {
  return std::vector<double>(v.begin() + r0 * w, v.begin() + (r0 + n) * w);
}

// The tolerance of the header comment for a GPU result against the double reference, given
// the float reference's values f and the double reference's values e.
double derived_atol(const std::vector<double>& f, const std::vector<double>& e) {
  return 2 * test::max_abs_diff(f, e) + test::kSafety * test::unit_roundoff<float>() * test::max_abs(e);
}

// A store's rows as doubles (all of them).
template <class T>
std::vector<double> store_rows(const EntryStore<T>& s) {
  std::vector<T> v(size_t(s.rows() * s.width()));
  if (s.rows()) s.read(0, s.rows(), v.data());
  return std::vector<double>(v.begin(), v.end());
}

// g (GPU) against e (double reference) within atol, and against f (float reference) within
// atol + |f - e|; what names the values in failures.
void expect_close(const std::vector<double>& g, const std::vector<double>& f, const std::vector<double>& e,
                  double atol, const std::string& what) {
  EXPECT_TRUE(test::all_close(g, e, atol)) << what << " vs the double reference";
  EXPECT_TRUE(test::all_close(g, f, atol + test::max_abs_diff(f, e))) << what << " vs the float reference";
}

// The device state against the references' states: positions and row counts exactly, rows
// within the derived tolerance (the compressor states' scores hold -inf where empty: compared
// exactly there by all_close).
void expect_state(const AttentionLayerState<float>& g, const AttentionLayerState<float>& f,
                  const AttentionLayerState<double>& e) {
  EXPECT_EQ(g.pos, e.pos);
  EXPECT_EQ(g.window_size, e.window_size);
  auto stores = [&](const EntryStore<float>* gs, const EntryStore<float>* fs, const EntryStore<double>* es,
                    const char* what) {
    ASSERT_EQ(gs == nullptr, es == nullptr) << what;
    if (!gs) return;
    ASSERT_EQ(gs->rows(), es->rows()) << what;
    ASSERT_EQ(gs->width(), es->width()) << what;
    const std::vector<double> gv = store_rows(*gs), fv = store_rows(*fs), ev = store_rows(*es);
    expect_close(gv, fv, ev, derived_atol(fv, ev), what);
  };
  stores(g.window.get(), f.window.get(), e.window.get(), "state window ring");
  stores(g.comp.get(), f.comp.get(), e.comp.get(), "state compressed entries");
  stores(g.index_keys.get(), f.index_keys.get(), e.index_keys.get(), "state indexer keys");
  auto comp_state = [&](const CompressorState<float>& gs, const CompressorState<float>& fs,
                        const CompressorState<double>& es, const char* what) {
    EXPECT_EQ(gs.pos, es.pos) << what;
    ASSERT_EQ(gs.kv.size(), es.kv.size()) << what;
    ASSERT_EQ(gs.score.size(), es.score.size()) << what;
    const std::vector<double> fk = test::to_double(fs.kv), ek = test::to_double(es.kv);
    const std::vector<double> fz = test::to_double(fs.score), ez = test::to_double(es.score);
    std::vector<double> fzf, ezf;  // the finite scores, for the tolerance
    for (size_t i = 0; i < ez.size(); ++i)
      if (std::isfinite(ez[i]) && std::isfinite(fz[i])) fzf.push_back(fz[i]), ezf.push_back(ez[i]);
    expect_close(test::to_double(gs.kv), fk, ek, derived_atol(fk, ek), std::string(what) + " kv");
    expect_close(test::to_double(gs.score), fz, ez, derived_atol(fzf, ezf), std::string(what) + " score");
  };
  if (e.comp) comp_state(g.comp_state, f.comp_state, e.comp_state, "main compressor state");
  if (e.index_keys) comp_state(g.index_state, f.index_state, e.index_state, "indexer compressor state");
}

struct Case {
  AttentionLayerShape shape;
  std::vector<int64_t> chunks;  // the schedule: chunk lengths from position 0
  Numerics numerics = Numerics::exact;
  uint64_t seed = 1;
};

std::string describe(const Case& c) {
  std::string s = "ratio " + std::to_string(c.shape.ratio) + " D " + std::to_string(c.shape.dim) + " d " +
                  std::to_string(c.shape.head_dim) + " window " + std::to_string(c.shape.window) + " chunks";
  for (int64_t t : c.chunks) s += " " + std::to_string(t);
  return s + (c.numerics == Numerics::official ? " official" : " exact");
}

// The stored (quantised) rows g of the device state against the float reference's f and the
// fp64 reference's e: all but a few flipped elements within the tolerance derived from f vs e
// (a missing quantisation moves almost every element by a grid step).
void expect_few_flips(const EntryStore<float>* g, const EntryStore<float>* f, const EntryStore<double>* e,
                      const char* what) {
  ASSERT_EQ(g == nullptr, e == nullptr) << what;
  if (!g) return;
  ASSERT_EQ(g->rows(), e->rows()) << what;
  ASSERT_EQ(g->width(), e->width()) << what;
  const std::vector<double> gv = store_rows(*g), fv = store_rows(*f), ev = store_rows(*e);
  const double atol = derived_atol(fv, ev);
  size_t beyond = 0;
  for (size_t i = 0; i < ev.size(); ++i) beyond += !(std::fabs(gv[i] - ev[i]) <= atol);
  EXPECT_LE(beyond, 2 + ev.size() / 1000) << what << ": elements beyond " << atol << " of " << ev.size();
}

// Runs the case on both references and the GPU (twice: the rerun must be bitwise identical)
// and compares every chunk's outputs and the final state.
void check_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  const Model M = make_model(c.shape, c.seed);
  int64_t total = 0;
  for (int64_t t : c.chunks) total += t;
  const int64_t D = c.shape.dim;
  const std::vector<double> x = test::float_exact(test::uniform(size_t(total * D), c.seed + 100));

  AttentionLayerState<float> sf, sg;
  AttentionLayerState<double> sd;
  std::vector<int32_t> kf, kg;  // CSA selections [total, topk]
  const std::vector<double> yf = run_ref<float>(M, c.numerics, x, c.chunks, sf, &kf);
  const std::vector<double> yd = run_ref<double>(M, c.numerics, x, c.chunks, sd);
  const std::vector<float> yg = run_gpu(M, c.numerics, x, c.chunks, &sg, &kg);
  ASSERT_EQ(yg.size(), yd.size());
  const bool official = c.numerics == Numerics::official;
  // CSA: the GPU's selection holds the float reference's entries, row by row (as sets: the
  // order among selected entries follows scores that agree only to rounding). Not under
  // official numerics, where an FP4 rounding-boundary flip may legitimately change a score.
  ASSERT_EQ(kg.size(), kf.size());
  const size_t k = official ? 0 : size_t(c.shape.index_topk);
  for (size_t r = 0; k && r < kf.size() / k; ++r) {
    std::vector<int32_t> a(kg.begin() + r * k, kg.begin() + (r + 1) * k), b(kf.begin() + r * k, kf.begin() + (r + 1) * k);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b) << "selection of row " << r;
  }

  // Official numerics: the GPU and a reference may round an FP8 / FP4 element to neighbouring
  // grid points when its value sits within rounding of a boundary (one element, one step). Such
  // flips are allowed for by half the whole quantisation simulation's effect on the chunk
  // (|y_official - y_exact| in double): a missing or misplaced quantisation moves y by about the
  // whole effect, an isolated flip by a small part of it.
  AttentionLayerState<double> unused;
  const std::vector<double> yx = official ? run_ref<double>(M, Numerics::exact, x, c.chunks, unused) : yd;
  int64_t t0 = 0;
  for (int64_t Tc : c.chunks) {
    const std::vector<double> g = rows_of(yg, t0, Tc, D), f = rows_of(yf, t0, Tc, D), e = rows_of(yd, t0, Tc, D);
    const double flips = official ? 0.5 * test::max_abs_diff(e, rows_of(yx, t0, Tc, D)) : 0.0;
    expect_close(g, f, e, derived_atol(f, e) + flips, "y of the chunk at position " + std::to_string(t0));
    t0 += Tc;
  }
  if (official) {
    // The stored (quantised) rows: all but a few flipped elements within the tolerance (a
    // missing quantisation moves almost every element by a grid step).
    EXPECT_EQ(sg.pos, sd.pos);
    expect_few_flips(sg.window.get(), sf.window.get(), sd.window.get(), "state window ring");
    expect_few_flips(sg.comp.get(), sf.comp.get(), sd.comp.get(), "state compressed entries");
    expect_few_flips(sg.index_keys.get(), sf.index_keys.get(), sd.index_keys.get(), "state indexer keys");
  } else {
    expect_state(sg, sf, sd);
  }

  const std::vector<float> again = run_gpu(M, c.numerics, x, c.chunks, nullptr);
  EXPECT_TRUE(test::bitwise_equal(again, yg)) << "rerun of the schedule differs";
}

// The fp8 layout (cuda::DeviceKvLayout::fp8: 584-byte FP8 entries, 68-byte FP4 keys) under
// Numerics::official, where every row reaching the stores is already on their grids (FP8
// non-RoPE dims, BF16 RoPE dims, FP4 keys: window_kv's and the compressors' official
// quantisation), so the layout must be lossless:
//   f32      the GPU's outputs, selections and stored rows (dequantised by download_state) equal
//            the GPU f32 layout's bit for bit (attention_fp8 is attention() on the dequantised
//            rows; the indexer scores the exactly dequantised keys);
//   ref      against the references with model/kv_cache.h's fp8 stores (v4_entry_stores(fp8)),
//            float and double: y per chunk within check_case's official tolerance; the stored
//            rows but for a few rounding-boundary flips;
//   bytes    after every chunk analytic_bytes (run_gpu), and at the end the reference fp8
//            state's bytes (its stores' bytes() + its compressor states' FP32 buffers);
//   rerun    bitwise identical.
void check_case_fp8(const Case& c) {
  SCOPED_TRACE(describe(c) + " fp8 layout");
  ASSERT_EQ(c.numerics, Numerics::official);
  const Model M = make_model(c.shape, c.seed);
  int64_t total = 0;
  for (int64_t t : c.chunks) total += t;
  const int64_t D = c.shape.dim;
  const std::vector<double> x = test::float_exact(test::uniform(size_t(total * D), c.seed + 100));

  AttentionLayerState<float> sf, sg;
  AttentionLayerState<double> sd, unused;
  const std::vector<double> yf = run_ref<float>(M, c.numerics, x, c.chunks, sf, nullptr, KvLayout::fp8);
  const std::vector<double> yd = run_ref<double>(M, c.numerics, x, c.chunks, sd, nullptr, KvLayout::fp8);
  const std::vector<double> yx = run_ref<double>(M, Numerics::exact, x, c.chunks, unused);
  std::vector<int32_t> kg, k32;
  AttentionLayerState<float> s32;
  const std::vector<float> yg = run_gpu(M, c.numerics, x, c.chunks, &sg, &kg, cuda::DeviceKvLayout::fp8);
  const std::vector<float> y32 = run_gpu(M, c.numerics, x, c.chunks, &s32, &k32, cuda::DeviceKvLayout::f32);
  ASSERT_EQ(yg.size(), yd.size());
  // Lossless: the f32 layout's results, bit for bit.
  EXPECT_TRUE(test::bitwise_equal(yg, y32)) << "fp8 layout y differs from the f32 layout's";
  EXPECT_EQ(kg, k32) << "fp8 layout selections differ from the f32 layout's";
  auto same_rows = [](const EntryStore<float>* a, const EntryStore<float>* b, const char* what) {
    ASSERT_EQ(a == nullptr, b == nullptr) << what;
    if (!a) return;
    ASSERT_EQ(a->rows(), b->rows()) << what;
    std::vector<float> va(size_t(a->rows() * a->width())), vb(va.size());
    if (a->rows()) {
      a->read(0, a->rows(), va.data());
      b->read(0, b->rows(), vb.data());
    }
    EXPECT_TRUE(test::bitwise_equal(va, vb)) << what << ": fp8 layout rows differ from the f32 layout's";
  };
  same_rows(sg.window.get(), s32.window.get(), "state window ring");
  same_rows(sg.comp.get(), s32.comp.get(), "state compressed entries");
  same_rows(sg.index_keys.get(), s32.index_keys.get(), "state indexer keys");
  int64_t t0 = 0;
  for (int64_t Tc : c.chunks) {
    const std::vector<double> g = rows_of(yg, t0, Tc, D), f = rows_of(yf, t0, Tc, D), e = rows_of(yd, t0, Tc, D);
    const double flips = 0.5 * test::max_abs_diff(e, rows_of(yx, t0, Tc, D));
    expect_close(g, f, e, derived_atol(f, e) + flips, "y of the chunk at position " + std::to_string(t0));
    t0 += Tc;
  }

  EXPECT_EQ(sg.pos, sd.pos);
  EXPECT_EQ(sg.window_size, sd.window_size);
  expect_few_flips(sg.window.get(), sf.window.get(), sd.window.get(), "state window ring");
  expect_few_flips(sg.comp.get(), sf.comp.get(), sd.comp.get(), "state compressed entries");
  expect_few_flips(sg.index_keys.get(), sf.index_keys.get(), sd.index_keys.get(), "state indexer keys");
  // The reference fp8 state's bytes: its stores' plus its compressor states' FP32 buffers.
  int64_t ref_bytes = sf.window->bytes();
  if (sf.comp) ref_bytes += sf.comp->bytes() + int64_t(sf.comp_state.kv.size() + sf.comp_state.score.size()) * 4;
  if (sf.index_keys)
    ref_bytes += sf.index_keys->bytes() + int64_t(sf.index_state.kv.size() + sf.index_state.score.size()) * 4;
  EXPECT_EQ(analytic_bytes(c.shape, KvLayout::fp8, total), ref_bytes);

  const std::vector<float> again = run_gpu(M, c.numerics, x, c.chunks, nullptr, nullptr, cuda::DeviceKvLayout::fp8);
  EXPECT_TRUE(test::bitwise_equal(again, yg)) << "rerun of the schedule differs";
}

// ---------------------------------------------------------------------------------------
// Device tests.

// Window-only: prefill past the window, decode steps across the ring's wrap, a chunk longer
// than the window.
TEST(CudaAttentionLayer, WindowOnlySmall) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(0), {20, 1, 1, 1, 7, 1, 19}});
}

// CSA: prefill ending mid-block, decode steps completing blocks, a chunked prefill part.
TEST(CudaAttentionLayer, CsaSmall) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(kCsaRatio), {37, 1, 1, 1, 1, 11, 1, 6}});
}

// HCA: the first entry completes at position 127, the second inside a later chunk.
TEST(CudaAttentionLayer, HcaSmall) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(kHcaRatio), {126, 1, 1, 1, 131, 1}});
}

// Chunked prefill of a CSA layer, chunk lengths 1..7 (every phase within a block).
TEST(CudaAttentionLayer, CsaChunkedPrefill) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(kCsaRatio), {3, 5, 7, 1, 2, 6, 4, 9}, Numerics::exact, 7});
}

// Past the stores' first capacity (64 rows): the compressed entries and indexer keys grow
// (copied into a larger buffer) in the last chunk.
TEST(CudaAttentionLayer, CsaStoresGrow) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(kCsaRatio), {150, 1, 1, 120}, Numerics::exact, 9});
}

// The v4-tiny shapes (d 512, window 128): prefill past the window, then decode.
TEST(CudaAttentionLayer, V4TinyWindowOnly) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({tiny_shape(0), {133, 1, 1}, Numerics::exact, 11});
}

TEST(CudaAttentionLayer, V4TinyCsa) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({tiny_shape(kCsaRatio), {141, 1, 1, 1, 20}, Numerics::exact, 12});
}

TEST(CudaAttentionLayer, V4TinyHca) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({tiny_shape(kHcaRatio), {130, 1, 128}, Numerics::exact, 13});
}

// Numerics::official maps onto the twins' quantisation flags (FP8 activations and entries,
// Hadamard + FP4 indexer queries and keys); see check_case for the rounding-boundary allowance.
TEST(CudaAttentionLayer, OfficialNumericsCsaSmall) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case({small_shape(kCsaRatio), {21, 1, 1, 6}, Numerics::official, 5});
}

// The fp8 layout at the v4-tiny shapes (d 512, dI 128: the only shapes it takes), official
// numerics: prefill, decode steps and chunked prefill; CSA's stores grow past 64 rows.
TEST(CudaAttentionLayerFp8, V4TinyWindowOnly) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case_fp8({tiny_shape(0), {133, 1, 1}, Numerics::official, 31});
}

TEST(CudaAttentionLayerFp8, V4TinyCsa) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case_fp8({tiny_shape(kCsaRatio), {141, 1, 1, 1, 20, 120}, Numerics::official, 32});
}

TEST(CudaAttentionLayerFp8, V4TinyCsaChunkedPrefill) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case_fp8({tiny_shape(kCsaRatio), {3, 5, 7, 1, 2, 6, 4, 9}, Numerics::official, 33});
}

TEST(CudaAttentionLayerFp8, V4TinyHca) {
  DSV4_SKIP_WITHOUT_DEVICE();
  check_case_fp8({tiny_shape(kHcaRatio), {130, 1, 128}, Numerics::official, 34});
}

// The f32 layout's bytes() too (4 d per entry, 4 dI per key).
TEST(CudaAttentionLayerFp8, F32LayoutBytes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Model M = make_model(tiny_shape(kCsaRatio), 35);
  const std::vector<double> x = test::float_exact(test::uniform(size_t(9 * M.s.dim), 135));
  run_gpu(M, Numerics::exact, x, {5, 1, 3}, nullptr);  // checks bytes() after every chunk
}

// ---------------------------------------------------------------------------------------
// Host-side: the layouts' shape rules and a fresh state's accounting (no device needed).
TEST(CudaAttentionLayerFp8, LayoutShapesAndFreshBytesOnTheHost) {
  for (int64_t ratio : {int64_t(0), kCsaRatio, kHcaRatio}) {
    const AttentionLayerShape t = tiny_shape(ratio);
    const cuda::DeviceAttentionLayerState f32(t), fp8(t, cuda::DeviceKvLayout::fp8);
    EXPECT_EQ(f32.layout(), cuda::DeviceKvLayout::f32);
    EXPECT_EQ(fp8.layout(), cuda::DeviceKvLayout::fp8);
    EXPECT_EQ(f32.bytes(), 0);
    EXPECT_EQ(fp8.bytes(), 0);
    EXPECT_EQ(fp8.entry_bytes(), v4_entry_bytes(KvLayout::fp8, t.head_dim, t.rope.rope_dim));  // 584
    EXPECT_EQ(fp8.key_bytes(), v4_index_key_bytes(KvLayout::fp8, t.index_dim));               // 68
    EXPECT_EQ(f32.entry_bytes(), v4_entry_bytes(KvLayout::f32, t.head_dim, t.rope.rope_dim));
    EXPECT_EQ(f32.key_bytes(), v4_index_key_bytes(KvLayout::f32, t.index_dim));
    EXPECT_EQ(fp8.window_fp8(), nullptr);
    EXPECT_EQ(fp8.window(), nullptr);
  }
  EXPECT_EQ(cuda::DeviceAttentionLayerState(tiny_shape(0), cuda::DeviceKvLayout::fp8).entry_bytes(), 584);
  EXPECT_EQ(cuda::DeviceAttentionLayerState(tiny_shape(kCsaRatio), cuda::DeviceKvLayout::fp8).key_bytes(), 68);
  // Other shapes are refused with the shape named.
  for (int64_t ratio : {int64_t(0), kCsaRatio, kHcaRatio})
    test::expect_input_error([&] { cuda::DeviceAttentionLayerState st(small_shape(ratio), cuda::DeviceKvLayout::fp8); },
                             {"DeviceAttentionLayerState", "fp8 KV layout", "head_dim 128"});
  AttentionLayerShape r32 = tiny_shape(kHcaRatio);
  r32.rope.rope_dim = 32;
  test::expect_input_error([&] { cuda::DeviceAttentionLayerState st(r32, cuda::DeviceKvLayout::fp8); },
                           {"fp8 KV layout", "rope_dim 32"});
  AttentionLayerShape i64 = tiny_shape(kCsaRatio);
  i64.index_dim = 64;
  test::expect_input_error([&] { cuda::DeviceAttentionLayerState st(i64, cuda::DeviceKvLayout::fp8); },
                           {"fp8 KV layout", "index_dim 64"});
  AttentionLayerShape hca64 = tiny_shape(kHcaRatio);
  hca64.index_dim = 64;  // no indexer: dI does not matter
  EXPECT_NO_THROW((cuda::DeviceAttentionLayerState{hca64, cuda::DeviceKvLayout::fp8}));
  // The forward checks the params' RoPE dims against the layout before any device work.
  const AttentionLayerShape s = tiny_shape(kHcaRatio);
  const Model M = make_model(s, 36);
  const Weights<float, std::vector<float>> w(M);  // host pointers: never read
  AttentionLayerParams<float> p = w.params(s, Numerics::official);
  p.shape.rope.rope_dim = 32;
  std::vector<float> buf(size_t(2 * s.dim), 1.0f);
  cuda::DeviceAttentionLayerState st(s, cuda::DeviceKvLayout::fp8);
  cuda::AttentionLayerWorkspace ws(2, s);
  test::expect_input_error(
      [&] {
        cuda::attention_layer_forward(p, view2<const float>(buf.data(), 2, s.dim), view2(buf.data(), 2, s.dim), st, ws);
      },
      {"attention_layer", "fp8 KV layout", "rope_dim 32"});
  EXPECT_EQ(st.pos(), 0);
  EXPECT_EQ(st.bytes(), 0);
}

// ---------------------------------------------------------------------------------------
// Host-side validation: every bad input is rejected before any device work (no device needed:
// a fresh state and a workspace hold no device memory, and no pointer is dereferenced).
TEST(CudaAttentionLayer, RejectsBadInputsOnTheHost) {
  const AttentionLayerShape s = small_shape(kCsaRatio);
  const Model M = make_model(s, 3);
  const Weights<float, std::vector<float>> w(M);  // host pointers: never read
  const AttentionLayerParams<float> p = w.params(s, Numerics::exact);
  std::vector<float> buf(size_t(8 * (s.dim + 8)), 1.0f);
  const View2<const float> x = view2<const float>(buf.data(), 4, s.dim);
  const View2<float> y = view2(buf.data(), 4, s.dim);
  cuda::DeviceAttentionLayerState st(s);
  cuda::AttentionLayerWorkspace ws(4, s);
  auto call = [&](const AttentionLayerParams<float>& pp, View2<const float> xx, View2<float> yy,
                  cuda::DeviceAttentionLayerState& ss, cuda::AttentionLayerWorkspace& ww) {
    return [&, pp, xx, yy] { cuda::attention_layer_forward(pp, xx, yy, ss, ww); };
  };

  test::expect_input_error(call(p, view2<const float>(buf.data(), 4, s.dim + 1), y, st, ws),
                           {"attention_layer", "'x'", "columns"});
  test::expect_input_error(call(p, x, view2(buf.data(), 3, s.dim), st, ws), {"attention_layer", "'y'"});
  AttentionLayerParams<float> bad = p;
  bad.shape.groups = 3;
  test::expect_input_error(call(bad, x, y, st, ws), {"groups (3) must divide heads (4)"});
  bad = p;
  bad.shape.ratio = -1;
  test::expect_input_error(call(bad, x, y, st, ws), {"ratio must be >= 0"});
  bad = p;
  bad.w.wo_b = nullptr;
  test::expect_input_error(call(bad, x, y, st, ws), {"'wo_b'", "missing"});
  bad = p;
  bad.w.indexer_compressor.ape = nullptr;
  test::expect_input_error(call(bad, x, y, st, ws), {"'indexer.compressor.ape'"});
  cuda::DeviceAttentionLayerState other(small_shape(kHcaRatio));
  test::expect_input_error(call(p, x, y, other, ws), {"the state does not match the layer shape"});
  cuda::AttentionLayerWorkspace small_ws(3, s);
  test::expect_input_error(call(p, x, y, st, small_ws), {"max_tokens 3"});
  cuda::AttentionLayerWorkspace hca_ws(4, small_shape(kHcaRatio));
  test::expect_input_error(call(p, x, y, st, hca_ws), {"workspace was made for another layer shape"});
  AttentionLayerShape r8 = s;
  r8.ratio = 8;
  cuda::DeviceAttentionLayerState st8(r8);
  cuda::AttentionLayerWorkspace ws8(4, r8);
  bad = p;
  bad.shape = r8;
  test::expect_input_error(call(bad, x, y, st8, ws8), {"ratio must be 0, 4 or 128 on the GPU"});
  AttentionLayerShape big = s;
  big.head_dim = 1024;
  cuda::DeviceAttentionLayerState stb(big);
  cuda::AttentionLayerWorkspace wsb(4, big);
  bad = p;
  bad.shape = big;
  test::expect_input_error(call(bad, x, y, stb, wsb), {"head_dim at most 512"});
  // Nothing ran: the state is still fresh.
  EXPECT_EQ(st.pos(), 0);
  EXPECT_EQ(st.comp(), nullptr);
  EXPECT_EQ(st.window(), nullptr);
}

}  // namespace
}  // namespace dsv4
