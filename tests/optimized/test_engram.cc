// dsv4::cuda Engram ops (optimized/engram.cuh) and the host-resident prefetch
// (optimized/engram_prefetch.cuh) against their CPU twins ref::engram_hash / engram_lookup /
// engram_mix (reference/engram.h) and, for engram_mix, a double-precision oracle written from
// docs/engram.md step 4 (tests/optimized/engram_mix_oracle.h, with its error bound). Label
// gpu: every test that needs a device skips, with the reason, when there is none.
//   hash:     rows bitwise equal to the reference (real V4 layout and edge orders), chunked
//             with the carried history == whole, bad ids -> -1 rows, canaries, rerun.
//   lookup:   bitwise equal to the reference for device and pinned-host tables, F32 and BF16;
//             a row outside the table gives NaN.
//   mix:      against the oracle with a per-element derived bound, against ref<double> (same
//             bound) and ref<float> (twice it); chunked == whole within the bound; history
//             carried; canaries; rerun bitwise.
//   prefetch: staged and mapped modes deliver bitwise the e of a synchronous lookup, through
//             the events, over two consecutive chunks into the same e.
// Without a device (label gpu, but these run everywhere): the host-side validation, and the
// device algorithm of engram_mix emulated in FP32 against the oracle's bound (so the kernel's
// index math, its algebra and the bound itself are checked before any GPU runs them).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "optimized/device.cuh"
#include "optimized/engram.cuh"
#include "optimized/engram_prefetch.cuh"
#include "reference/constants.h"
#include "reference/engram.h"
#include "reference/errors.h"
#include "reference/formats.h"
#include "tests/optimized/engram_mix_oracle.h"
#include "tests/support/compare.h"
#include "tests/support/device_harness.h"
#include "tests/support/random.h"
#include "tests/support/tolerance.h"
#include "tests/support/vectors.h"

namespace dsv4 {
namespace {

using test::Guarded;
using test::emulate_device_mix;
using test::launch_and_sync;
using test::make_mix;
using test::mix_oracle;
using test::MixCase;
using test::MixInputs;
using test::MixOracle;
using test::ref_mix;
using test::RefMixResult;
using test::rerun_bitwise;
using test::within;

// The published Engram configuration (docs/engram.md "Config") on the V4 vocabulary.
constexpr int64_t kV4Vocab = 129280;
constexpr int64_t kEngramBase = 646400;  // engram.vocab_size per order
constexpr int64_t kOrders = 3;           // max_ngram_size N
constexpr int64_t kHeadsPerOrder = 8;    // n_head_per_ngram
constexpr int64_t kRowDim = 64;          // de = n_embed_per_ngram 512 / 8 heads
constexpr int64_t kConvKernel = 4;       // kernel_size K (dilation = N)
constexpr int64_t kFlashDim = 4096, kProDim = 7168;  // hidden size D of V4-Flash / V4-Pro
constexpr int64_t kPadRaw = 2;

// ---- layouts and inputs --------------------------------------------------------------------

// A layer's hash layout with a random token map onto [0, vocab) (owned by the struct).
struct Layout {
  std::vector<int32_t> map;
  EngramHash hash;
};

Layout make_layout(int64_t orders, int64_t heads, int64_t base, int64_t vocab, uint64_t seed,
                   bool with_map = true) {
  Layout l;
  if (with_map) {
    std::mt19937_64 g(seed);
    std::uniform_int_distribution<int32_t> d(0, int32_t(vocab - 1));
    l.map.resize(size_t(vocab));
    for (auto& v : l.map) v = d(g);
  }
  const auto primes = engram_primes(1, std::vector<int64_t>(size_t(orders - 1), base), heads);
  l.hash = engram_layer_hash(primes[0], engram_multipliers(seed, 1, orders, vocab), orders, heads,
                             with_map ? l.map.data() : nullptr, vocab, kPadRaw);
  return l;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_int_distribution<int32_t> d(0, int32_t(vocab - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& v : ids) v = d(g);
  return ids;
}

// Canaries around an int64 output [rows, cols] (dense): kGuard sentinels either side.
constexpr int64_t kRowSentinel = -0x5A5A5A5A5A5A5A5ALL;
constexpr int64_t kRowPoison = -0x7777777777777777LL;  // never a row, never -1

struct GuardedRows {
  int64_t rows, cols;
  size_t size() const { return size_t(2 * test::kGuard + rows * cols); }
  std::vector<int64_t> poisoned() const {
    std::vector<int64_t> v(size(), kRowSentinel);
    std::fill(v.begin() + test::kGuard, v.end() - test::kGuard, kRowPoison);
    return v;
  }
  bool canaries_intact(const std::vector<int64_t>& img) const {
    for (int64_t i = 0; i < test::kGuard; ++i)
      if (img[size_t(i)] != kRowSentinel || img[img.size() - 1 - size_t(i)] != kRowSentinel) return false;
    return true;
  }
  std::vector<int64_t> extract(const std::vector<int64_t>& img) const {
    return std::vector<int64_t>(img.begin() + test::kGuard, img.end() - test::kGuard);
  }
  View2<int64_t> view(int64_t* base) const { return view2(base + test::kGuard, rows, cols); }
};

std::vector<int64_t> ref_rows(const EngramHash& h, const std::vector<int32_t>& ids,
                              const std::vector<int32_t>* history) {
  std::vector<int64_t> rows(ids.size() * size_t(h.slots()), kRowPoison);
  EngramHashParams p;
  p.hash = &h;
  p.ids = ids.data();
  p.n = int64_t(ids.size());
  p.history = history ? history->data() : nullptr;
  p.rows = view2(rows.data(), p.n, h.slots());
  ref::engram_hash(p);
  return rows;
}

// ---- engram_hash ---------------------------------------------------------------------------

// Device rows for ids (and history) into a poisoned, guarded buffer: checks the canaries and a
// bitwise rerun, returns the rows.
std::vector<int64_t> device_rows(const Layout& l, const cuda::DeviceEngramHash& dh,
                                 const std::vector<int32_t>& ids,
                                 const std::vector<int32_t>* history) {
  const int64_t n = int64_t(ids.size());
  const GuardedRows g{n, l.hash.slots()};
  cuda::DeviceBuffer<int32_t> d_ids(ids);
  cuda::DeviceBuffer<int32_t> d_hist(history ? *history : std::vector<int32_t>());
  cuda::DeviceBuffer<int64_t> d_rows(g.poisoned());
  EngramHashParams p;
  p.hash = &l.hash;
  p.ids = d_ids.data();
  p.n = n;
  p.history = history ? d_hist.data() : nullptr;
  p.rows = g.view(d_rows.data());
  launch_and_sync([&] { cuda::engram_hash(p, dh); });
  const std::vector<int64_t> img = d_rows.download();
  EXPECT_TRUE(g.canaries_intact(img)) << "engram_hash wrote outside rows";
  d_rows.upload(g.poisoned());
  launch_and_sync([&] { cuda::engram_hash(p, dh); });
  EXPECT_TRUE(test::bitwise_equal(d_rows.download(), img)) << "rerun differs";
  return g.extract(img);
}

// The published layout (N = 3, 8 heads, tables of ~646400 rows, V4 vocabulary): lengths 1,
// N-1, N, N+1, 127, 128, 129, 1000, with and without a history (one entry -1 = pad).
TEST(EngramHashCuda, RowsBitwiseEqualReferenceV4Layout) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Layout l = make_layout(kOrders, kHeadsPerOrder, kEngramBase, kV4Vocab, 11);
  const cuda::DeviceEngramHash dh(l.hash);
  const std::vector<int32_t> history = {-1, 4711};
  for (int64_t n : {1, 2, 3, 4, 127, 128, 129, 1000}) {
    SCOPED_TRACE(::testing::Message() << "T " << n);
    const std::vector<int32_t> ids = random_ids(n, kV4Vocab, uint64_t(100 + n));
    EXPECT_TRUE(test::bitwise_equal(device_rows(l, dh, ids, nullptr), ref_rows(l.hash, ids, nullptr)));
    EXPECT_TRUE(test::bitwise_equal(device_rows(l, dh, ids, &history), ref_rows(l.hash, ids, &history)));
  }
}

// Edge layouts: the largest order (N = 8, one head), the identity map, tiny prime tables.
TEST(EngramHashCuda, RowsBitwiseEqualReferenceEdgeLayouts) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (bool with_map : {true, false}) {
    const Layout l = make_layout(kEngramMaxOrder, 1, 2, 50, 21, with_map);
    const cuda::DeviceEngramHash dh(l.hash);
    const std::vector<int32_t> ids = random_ids(37, 50, 22);
    const std::vector<int32_t> history = {3, -1, 49, 0, 7, -1, 12};
    EXPECT_TRUE(test::bitwise_equal(device_rows(l, dh, ids, &history), ref_rows(l.hash, ids, &history)));
  }
}

// Chunks with the carried history (engram_advance_history) give the whole sequence's rows.
TEST(EngramHashCuda, ChunkedWithHistoryEqualsWhole) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Layout l = make_layout(kOrders, kHeadsPerOrder, kEngramBase, kV4Vocab, 31);
  const cuda::DeviceEngramHash dh(l.hash);
  const std::vector<int32_t> ids = random_ids(200, kV4Vocab, 32);
  const std::vector<int64_t> whole = device_rows(l, dh, ids, nullptr);
  std::vector<int64_t> chunked;
  std::vector<int32_t> history;
  for (int64_t at = 0; int64_t len : {1, 1, 61, 137}) {
    const std::vector<int32_t> chunk(ids.begin() + at, ids.begin() + at + len);
    const std::vector<int64_t> r = device_rows(l, dh, chunk, at == 0 ? nullptr : &history);
    chunked.insert(chunked.end(), r.begin(), r.end());
    history = engram_advance_history(l.hash, history, chunk.data(), len);
    at += len;
  }
  EXPECT_TRUE(test::bitwise_equal(chunked, whole));
}

// An id outside the vocabulary (the reference throws) makes every slot that reads it -1 and
// leaves the others as they are.
TEST(EngramHashCuda, OutOfRangeIdGivesMinusOneRows) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Layout l = make_layout(kOrders, kHeadsPerOrder, kEngramBase, kV4Vocab, 41);
  const cuda::DeviceEngramHash dh(l.hash);
  std::vector<int32_t> ids = random_ids(10, kV4Vocab, 42);
  const std::vector<int64_t> good = ref_rows(l.hash, ids, nullptr);
  constexpr int64_t kBad = 4;
  ids[kBad] = int32_t(kV4Vocab);
  const std::vector<int64_t> rows = device_rows(l, dh, ids, nullptr);
  const int64_t slots = l.hash.slots();
  for (int64_t t = 0; t < 10; ++t)
    for (int64_t s = 0; s < slots; ++s) {
      const int64_t order = s / kHeadsPerOrder + 2;
      const bool reads_bad = t >= kBad && t - kBad < order;
      EXPECT_EQ(rows[size_t(t * slots + s)], reads_bad ? -1 : good[size_t(t * slots + s)])
          << "token " << t << " slot " << s;
    }
}

// ---- engram_lookup -------------------------------------------------------------------------

// A random table [rows, de] as stored: F32 values, or the BF16 bits of random values.
struct HostTable {
  TableDType dtype;
  int64_t rows, dim;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  const void* data() const { return dtype == TableDType::f32 ? static_cast<const void*>(f32.data()) : bf16.data(); }
  size_t bytes() const { return dtype == TableDType::f32 ? f32.size() * 4 : bf16.size() * 2; }
  EngramTableView view() const { return {data(), dtype, rows, dim}; }
};

HostTable make_table(TableDType dtype, int64_t rows, int64_t dim, uint64_t seed) {
  HostTable t{dtype, rows, dim, {}, {}};
  const std::vector<float> v = test::normal<float>(size_t(rows * dim), seed);
  if (dtype == TableDType::f32) {
    t.f32 = v;
  } else {
    t.bf16.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) t.bf16[i] = fmt::bf16_encode(v[i]);
  }
  return t;
}

std::vector<float> ref_lookup(const HostTable& tb, const std::vector<int64_t>& rows, int64_t n, int64_t slots) {
  std::vector<float> e(size_t(n * slots * tb.dim), test::kPoison);
  EngramLookupParams<float> p;
  p.table = tb.view();
  p.rows = view2<const int64_t>(rows.data(), n, slots);
  p.e = view2(e.data(), n, slots * tb.dim);
  ref::engram_lookup(p);
  return e;
}

// Device lookup from a table view the kernel can read, into a poisoned, guarded, strided e.
std::vector<float> device_lookup(const EngramTableView& table, const std::vector<int64_t>& rows,
                                 int64_t n, int64_t slots) {
  const int64_t width = slots * table.dim;
  const Guarded g{n, width, width + 5};
  cuda::DeviceBuffer<int64_t> d_rows(rows);
  cuda::DeviceBuffer<float> d_e(g.poisoned());
  EngramLookupParams<float> p;
  p.table = table;
  p.rows = view2<const int64_t>(d_rows.data(), n, slots);
  p.e = g.view(d_e.data());
  launch_and_sync([&] { cuda::engram_lookup(p); });
  const std::vector<float> img = d_e.download();
  EXPECT_TRUE(g.canaries_intact(img));
  EXPECT_TRUE(rerun_bitwise(d_e, g.poisoned(), img, [&] { cuda::engram_lookup(p); })) << "rerun differs";
  return g.extract(img);
}

// The lookup of the published layout (16 slots of de = 64: E = 1024) on tables of the real
// (N-1)*Hn prime sizes scaled down to base 1009 rows per table (the kernel's path does not
// depend on the table's size), rows from the hash; device- and pinned-host-resident tables,
// F32 and BF16; lengths 1, 3, 129.
TEST(EngramLookupCuda, BitwiseEqualReferenceDeviceAndPinnedTables) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Layout l = make_layout(kOrders, kHeadsPerOrder, 1009, kV4Vocab, 51);
  const int64_t slots = l.hash.slots();
  for (TableDType dtype : {TableDType::f32, TableDType::bf16}) {
    const HostTable tb = make_table(dtype, l.hash.table_rows, kRowDim, 52);
    cuda::DeviceBuffer<char> dev(tb.bytes());
    dev.upload(static_cast<const char*>(tb.data()), tb.bytes());
    cuda::PinnedHostTable pinned(dtype, tb.rows, tb.dim);
    std::memcpy(pinned.data(), tb.data(), tb.bytes());
    for (int64_t n : {1, 3, 129}) {
      SCOPED_TRACE(::testing::Message() << (dtype == TableDType::f32 ? "f32" : "bf16") << " T " << n);
      const std::vector<int64_t> rows = ref_rows(l.hash, random_ids(n, kV4Vocab, uint64_t(n)), nullptr);
      const std::vector<float> want = ref_lookup(tb, rows, n, slots);
      EXPECT_TRUE(test::bitwise_equal(device_lookup({dev.data(), dtype, tb.rows, tb.dim}, rows, n, slots), want))
          << "device table";
      EXPECT_TRUE(test::bitwise_equal(device_lookup(pinned.device_view(), rows, n, slots), want))
          << "pinned host table";
    }
  }
}

// Rows outside the table (the reference throws) give NaN; the other slots are exact.
TEST(EngramLookupCuda, OutOfRangeRowGivesNaN) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const HostTable tb = make_table(TableDType::f32, 100, 8, 61);
  const std::vector<int64_t> rows = {5, -1, 100, 99};  // T = 2, slots = 2
  cuda::DeviceBuffer<float> dev(tb.f32);
  const std::vector<float> got = device_lookup({dev.data(), tb.dtype, tb.rows, tb.dim}, rows, 2, 2);
  for (int64_t c = 0; c < 8; ++c) {
    EXPECT_EQ(got[size_t(c)], tb.f32[size_t(5 * 8 + c)]);
    EXPECT_TRUE(std::isnan(got[size_t(8 + c)]));
    EXPECT_TRUE(std::isnan(got[size_t(16 + c)]));
    EXPECT_EQ(got[size_t(24 + c)], tb.f32[size_t(99 * 8 + c)]);
  }
}

// ---- engram_prefetch -----------------------------------------------------------------------

// Both modes (staged from a pageable table, mapped from the pinned one), both dtypes: two
// consecutive chunks prefetched into the same device e, each consumed on a compute stream
// (wait, a copy of e standing in for engram_mix, release), equal bitwise to the synchronous
// device lookup of the same rows and to the reference.
TEST(EngramPrefetchCuda, DeliversTheSynchronousLookup) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const Layout l = make_layout(kOrders, kHeadsPerOrder, 1009, kV4Vocab, 71);
  const int64_t slots = l.hash.slots(), width = slots * kRowDim;
  constexpr int64_t kMaxTokens = 64;
  cudaStream_t compute = nullptr;
  DSV4_CUDA_CHECK(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking));
  for (TableDType dtype : {TableDType::f32, TableDType::bf16})
    for (cuda::EngramPrefetchMode mode : {cuda::EngramPrefetchMode::staged, cuda::EngramPrefetchMode::mapped}) {
      SCOPED_TRACE(::testing::Message() << (dtype == TableDType::f32 ? "f32" : "bf16")
                                        << (mode == cuda::EngramPrefetchMode::staged ? " staged" : " mapped"));
      const HostTable tb = make_table(dtype, l.hash.table_rows, kRowDim, 72);
      cuda::PinnedHostTable pinned(dtype, tb.rows, tb.dim);
      std::memcpy(pinned.data(), tb.data(), tb.bytes());
      // staged reads any host memory: the pageable table (as a memory-mapped checkpoint
      // would be); mapped needs the pinned one.
      const bool staged = mode == cuda::EngramPrefetchMode::staged;
      cuda::EngramPrefetcher pf(staged ? tb.view() : pinned.host_view(), mode, slots, kMaxTokens);
      cuda::DeviceBuffer<float> e(size_t(kMaxTokens * width)), consumed(size_t(kMaxTokens * width));
      for (int64_t n : {kMaxTokens, int64_t(5)}) {
        const std::vector<int64_t> rows = ref_rows(l.hash, random_ids(n, kV4Vocab, uint64_t(73 + n)), nullptr);
        pf.prefetch(view2<const int64_t>(rows.data(), n, slots), view2(e.data(), n, width));
        pf.wait(compute);
        DSV4_CUDA_CHECK(cudaMemcpyAsync(consumed.data(), e.data(), size_t(n * width) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, compute));
        pf.release(compute);
        DSV4_CUDA_CHECK(cudaStreamSynchronize(compute));
        std::vector<float> got(size_t(n * width));
        consumed.download(got.data(), got.size());
        EXPECT_TRUE(test::bitwise_equal(got, device_lookup(pinned.device_view(), rows, n, slots))) << "T " << n;
        EXPECT_TRUE(test::bitwise_equal(got, ref_lookup(tb, rows, n, slots))) << "T " << n;
      }
      // A bad row is refused on the host, before anything is queued.
      std::vector<int64_t> bad(size_t(slots), 0);
      bad[3] = tb.rows;
      EXPECT_THROW(pf.prefetch(view2<const int64_t>(bad.data(), 1, slots), view2(e.data(), 1, width)), InputError);
    }
  DSV4_CUDA_CHECK(cudaStreamDestroy(compute));
}

// The mapped mode refuses a table that is not pinned and mapped.
TEST(EngramPrefetchCuda, MappedModeNeedsPinnedTable) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const HostTable tb = make_table(TableDType::f32, 100, 8, 81);
  EXPECT_THROW(cuda::EngramPrefetcher(tb.view(), cuda::EngramPrefetchMode::mapped, 2, 4), InputError);
}

// ---- engram_mix ----------------------------------------------------------------------------

// Device weights and a params struct over them.
struct DeviceMix {
  cuda::DeviceBuffer<float> value_w, value_b, key_w, key_b, key_norm, query_norm, conv_w, conv_norm;
  explicit DeviceMix(const MixInputs& in)
      : value_w(in.value_w), value_b(in.value_b), key_w(in.key_w), key_b(in.key_b),
        key_norm(in.key_norm), query_norm(in.query_norm), conv_w(in.conv_w), conv_norm(in.conv_norm) {}
  EngramMixWeights<float> weights() {
    return {value_w.data(), value_b.data(), key_w.data(), key_b.data(),
            key_norm.data(), query_norm.data(), conv_w.data(), conv_norm.data()};
  }
};

// The device run: x, e strided; y poisoned with canaries; the history updated in place. Returns
// y and the new history; checks canaries and a bitwise rerun (from the same history).
struct DeviceMixResult {
  std::vector<float> y, history;
};

DeviceMixResult run_device_mix(const MixCase& k, const MixInputs& in, DeviceMix& dw,
                               cuda::EngramMixWorkspace& ws) {
  const int64_t SD = k.S * k.D;
  const Guarded gx{k.n, SD, SD + 7}, ge{k.n, k.E, k.E + 3}, gy{k.n, SD, SD + 9}, gh{k.H(), SD, SD + 2};
  cuda::DeviceBuffer<float> dx(gx.image(in.x)), de(ge.image(in.e)), dy(gy.poisoned()),
      dh(gh.image(in.history));
  EngramMixParams<float> p;
  p.x = gx.view<const float>(dx.data());
  p.e = ge.view<const float>(de.data());
  p.w = dw.weights();
  p.streams = k.S;
  p.kernel = k.K;
  p.dilation = k.dil;
  p.norm_eps = kNormEps;
  p.history = gh.view(dh.data());
  p.y = gy.view(dy.data());
  launch_and_sync([&] { cuda::engram_mix(p, ws); });
  const std::vector<float> y_img = dy.download(), h_img = dh.download();
  EXPECT_TRUE(gy.canaries_intact(y_img)) << "y";
  EXPECT_TRUE(gh.canaries_intact(h_img)) << "history";
  EXPECT_TRUE(test::bitwise_equal(dx.download(), gx.image(in.x))) << "the op wrote into x";
  // Rerun from the same history into a re-poisoned y.
  dh.upload(gh.image(in.history));
  EXPECT_TRUE(rerun_bitwise(dy, gy.poisoned(), y_img, [&] { cuda::engram_mix(p, ws); })) << "rerun differs";
  EXPECT_TRUE(test::bitwise_equal(dh.download(), h_img)) << "rerun history differs";
  return {gy.extract(y_img), gh.extract(h_img)};
}

void check_mix(const MixCase& k) {
  SCOPED_TRACE(::testing::Message() << "T " << k.n << " S " << k.S << " D " << k.D << " E " << k.E
                                    << " K " << k.K << " dil " << k.dil);
  const MixInputs in = make_mix(k);
  const MixOracle o = mix_oracle(k, in);
  DeviceMix dw(in);
  cuda::EngramMixWorkspace ws(k.n, k.S, k.D, k.H());
  const DeviceMixResult got = run_device_mix(k, in, dw, ws);
  EXPECT_TRUE(within(got.y, o.y, o.tol, 1.0)) << "against the fp64 oracle";
  const RefMixResult<double> rd = ref_mix<double>(k, in);
  EXPECT_TRUE(within(got.y, rd.y, o.tol, 1.0)) << "against ref::engram_mix<double>";
  const RefMixResult<float> rf = ref_mix<float>(k, in);
  EXPECT_TRUE(within(got.y, test::to_double(rf.y), o.tol, 2.0)) << "against ref::engram_mix<float>";
  EXPECT_TRUE(within(got.history, o.history, o.history_tol, 1.0)) << "history against the oracle";
  EXPECT_TRUE(within(got.history, test::to_double(rf.history), o.history_tol, 2.0))
      << "history against ref::engram_mix<float>";
}

// Small shapes around the convolution's reach: T = 1 (decode), T < H, T = H, T > H; dilation
// 3 and 1; kernel 1 (no history).
TEST(EngramMixCuda, EdgeShapesAgainstOracleAndReference) {
  DSV4_SKIP_WITHOUT_DEVICE();
  for (const MixCase& k : {MixCase{1, 2, 64, 48, 4, 3, 901}, MixCase{5, 2, 64, 48, 4, 3, 902},
                           MixCase{9, 3, 96, 40, 4, 3, 903}, MixCase{13, 1, 257, 33, 4, 3, 904},
                           MixCase{7, 2, 64, 48, 2, 1, 905}, MixCase{6, 4, 31, 17, 1, 3, 906}})
    check_mix(k);
}

// The real shapes: 4 mHC streams, E = 1024, K = 4, dilation N = 3; D of V4-Flash and V4-Pro.
TEST(EngramMixCuda, V4FlashAndProShapes) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const int64_t E = (kOrders - 1) * kHeadsPerOrder * kRowDim;
  check_mix({16, kHcMult, kFlashDim, E, kConvKernel, kOrders, 911});
  check_mix({4, kHcMult, kProDim, E, kConvKernel, kOrders, 912});
}

// Chunks 5 + 1 + 7 with the device-carried history == the whole 13 tokens, within the bound
// (a different T may pick a different GEMM kernel, so not bitwise).
TEST(EngramMixCuda, ChunkedEqualsWhole) {
  DSV4_SKIP_WITHOUT_DEVICE();
  const MixCase whole{13, 2, 128, 64, 4, 3, 921};
  const MixInputs in = make_mix(whole);
  const MixOracle o = mix_oracle(whole, in);
  DeviceMix dw(in);
  cuda::EngramMixWorkspace ws(whole.n, whole.S, whole.D, whole.H());
  const DeviceMixResult w = run_device_mix(whole, in, dw, ws);
  const int64_t SD = whole.S * whole.D;
  std::vector<float> y;
  std::vector<float> history = in.history;
  for (int64_t at = 0; int64_t len : {5, 1, 7}) {
    MixCase c = whole;
    c.n = len;
    MixInputs ci = in;
    ci.x.assign(in.x.begin() + at * SD, in.x.begin() + (at + len) * SD);
    ci.e.assign(in.e.begin() + at * whole.E, in.e.begin() + (at + len) * whole.E);
    ci.history = history;
    const DeviceMixResult r = run_device_mix(c, ci, dw, ws);
    y.insert(y.end(), r.y.begin(), r.y.end());
    history = r.history;
    at += len;
  }
  EXPECT_TRUE(within(y, test::to_double(w.y), o.tol, 2.0)) << "chunked vs whole";
  EXPECT_TRUE(within(history, test::to_double(w.history), o.history_tol, 2.0)) << "history";
}

// ---- the kernel's algorithm and the oracle's bound, on the CPU (no device needed) ---------

// The device algorithm (emulated in FP32) and ref::engram_mix<float> lie within the oracle's
// bound (ref<double> on the oracle itself), at edge shapes and at E = 1024 with 4 streams; and
// the bound says something: its median is at most kMedianShare of the output's scale.
// (Measured: ~4e-4 at E = 1024, the projection's kSafety * sqrt(E) * u * sum|W e| with
// sum|W e| ~ 20 |v|; a few elements, those whose gate argument a is near 0, have a wider
// bound: the gate's square root amplifies there.)
TEST(EngramMixBound, DeviceAlgorithmInFp32WithinTheOracleBound) {
  constexpr double kMedianShare = 1e-3;
  const int64_t E = (kOrders - 1) * kHeadsPerOrder * kRowDim;
  for (const MixCase& k : {MixCase{1, 2, 64, 48, 4, 3, 901}, MixCase{5, 2, 64, 48, 4, 3, 902},
                           MixCase{13, 1, 257, 33, 4, 3, 904}, MixCase{7, 2, 64, 48, 2, 1, 905},
                           MixCase{6, 4, 31, 17, 1, 3, 906}, MixCase{4, kHcMult, 512, E, kConvKernel, kOrders, 913}}) {
    SCOPED_TRACE(::testing::Message() << "T " << k.n << " S " << k.S << " D " << k.D << " E " << k.E
                                      << " K " << k.K);
    const MixInputs in = make_mix(k);
    const MixOracle o = mix_oracle(k, in);
    const RefMixResult<float> got = emulate_device_mix(k, in);
    EXPECT_TRUE(within(got.y, o.y, o.tol, 1.0)) << "y";
    EXPECT_TRUE(within(got.history, o.history, o.history_tol, 1.0)) << "history";
    // The CPU twin is another FP32 implementation: within the same bound. Its double
    // instantiation is the oracle up to double rounding (kOracleRtol: ~1e6 u_double).
    constexpr double kOracleRtol = 1e-9;
    const RefMixResult<float> rf = ref_mix<float>(k, in);
    EXPECT_TRUE(within(rf.y, o.y, o.tol, 1.0)) << "ref::engram_mix<float>";
    EXPECT_TRUE(test::all_close(ref_mix<double>(k, in).y, o.y, 1e-12, kOracleRtol)) << "ref::engram_mix<double>";
    std::vector<double> share = o.tol;
    for (double& v : share) v /= test::max_abs(o.y);
    std::nth_element(share.begin(), share.begin() + int64_t(share.size() / 2), share.end());
    EXPECT_LT(share[share.size() / 2], kMedianShare) << "median bound";
  }
}

// ---- host-side validation (no device needed) ------------------------------------------------

TEST(EngramCudaValidation, HashRejectsBadShapesAndLayouts) {
  const Layout l = make_layout(kOrders, 2, 11, 100, 1);
  int32_t ids[4] = {1, 2, 3, 4};
  int64_t rows[4 * 4];
  EngramHashParams p;
  p.hash = &l.hash;
  p.ids = ids;
  p.n = 4;
  p.rows = view2(rows, 4, 3);  // slots = (3 - 1) * 2 = 4
  const cuda::DeviceEngramHash empty;
  EXPECT_THROW(cuda::engram_hash(p, empty), InputError);
  p.rows = view2(rows, 4, 4);
  EXPECT_THROW(cuda::engram_hash(p, empty), InputError);  // not built from this layout
  p.hash = nullptr;
  EXPECT_THROW(cuda::engram_hash(p, empty), InputError);
}

TEST(EngramCudaValidation, LookupRejectsBadShapes) {
  float table[8] = {};
  int64_t rows[2] = {0, 1};
  float e[8];
  EngramLookupParams<float> p;
  p.table = {table, TableDType::f32, 4, 2};
  p.rows = view2<const int64_t>(rows, 1, 2);
  p.e = view2(e, 1, 3);
  EXPECT_THROW(cuda::engram_lookup(p), InputError);
  p.e = view2(e, 2, 4);
  EXPECT_THROW(cuda::engram_lookup(p), InputError);
  p.e = view2(e, 1, 4);
  p.table.data = nullptr;
  EXPECT_THROW(cuda::engram_lookup(p), InputError);
  EXPECT_THROW(cuda::PinnedHostTable(TableDType::bf16, 4, 0), InputError);
  EXPECT_THROW(cuda::EngramPrefetcher({nullptr, TableDType::f32, 4, 2}, cuda::EngramPrefetchMode::staged, 2, 4),
               InputError);
}

TEST(EngramCudaValidation, MixRejectsBadShapes) {
  const MixCase k{3, 2, 8, 4, 4, 3, 5};
  MixInputs in = make_mix(k);
  std::vector<float> y(size_t(k.n * k.S * k.D));
  EngramMixParams<float> p;
  p.x = view2<const float>(in.x.data(), k.n, k.S * k.D);
  p.e = view2<const float>(in.e.data(), k.n, k.E);
  p.w = in.weights();
  p.streams = k.S;
  p.kernel = k.K;
  p.dilation = k.dil;
  p.history = view2(in.history.data(), k.H(), k.S * k.D);
  p.y = view2(y.data(), k.n, k.S * k.D - 1);
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // y
  p.y = view2(y.data(), k.n, k.S * k.D);
  p.history = view2(in.history.data(), k.H() - 1, k.S * k.D);
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // history
  p.history = view2(in.history.data(), k.H(), k.S * k.D);
  p.streams = 3;
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // streams do not divide x
  p.streams = k.S;
  p.e = view2<const float>(in.e.data(), k.n - 1, k.E);
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // e rows
  p.e = view2<const float>(in.e.data(), k.n, k.E);
  p.w.conv_w = nullptr;
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // missing weight
  p.w = in.weights();
  p.y = view2(const_cast<float*>(in.x.data()), k.n, k.S * k.D);
  EXPECT_THROW(cuda::engram_mix(p), InputError);  // y aliases x
  // D past the shared-memory accumulator.
  const int64_t big = cuda::kEngramMixMaxDim + 1;
  std::vector<float> xb(static_cast<size_t>(big)), yb(static_cast<size_t>(big));
  p.x = view2<const float>(xb.data(), 1, big);
  p.e = view2<const float>(in.e.data(), 1, k.E);
  p.y = view2(yb.data(), 1, big);
  p.streams = 1;
  p.kernel = 1;
  EXPECT_THROW(cuda::engram_mix(p), InputError);
}

}  // namespace
}  // namespace dsv4
