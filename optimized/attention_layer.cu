// The attention sub-layer on the GPU: composition of the CUDA twins (see attention_layer.cuh).
// Host code only: every kernel belongs to a twin or to kv_pack.cuh (the fp8 layout's packing);
// this file moves rows between the ring, the stores and the workspace with cudaMemcpyAsync.
#include "optimized/attention_layer.cuh"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optimized/attention.cuh"
#include "optimized/indexer.cuh"
#include "optimized/indexer_query.cuh"
#include "optimized/kv_pack.cuh"
#include "optimized/output_proj.cuh"
#include "optimized/query_path.cuh"
#include "optimized/window_kv.cuh"
#include "reference/constants.h"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int64_t kMinStoreRows = 64;  // first capacity of a compressed store

bool has_indexer(const AttentionLayerShape& s) { return s.ratio == kCsaRatio; }
bool official(const AttentionLayerParams<float>& p) { return p.numerics == Numerics::official; }

// The twins' parameters, built exactly as reference/attention_layer.cc builds them.
CompressorParams<float> main_compressor(const AttentionLayerParams<float>& p) {
  const auto& s = p.shape;
  CompressorParams<float> c;
  c.shape = {s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio};
  c.w = p.w.compressor;
  c.rope = s.rope;
  c.quant = official(p) ? CompressorQuant::fp8 : CompressorQuant::none;
  c.eps = s.eps;
  return c;
}

CompressorParams<float> index_compressor(const AttentionLayerParams<float>& p) {
  const auto& s = p.shape;
  CompressorParams<float> c;
  c.shape = {s.dim, s.index_dim, s.ratio, true};
  c.w = p.w.indexer_compressor;
  c.rope = s.rope;
  c.quant = official(p) ? CompressorQuant::fp4_hadamard : CompressorQuant::none;
  c.eps = s.eps;
  return c;
}

void require_weight(const float* w, const char* name) {
  require(w != nullptr, std::string("attention_layer: weight '") + name + "' is missing (null)");
}

// The fp8 layout's shape limits (the 584-byte entry and the 68-byte key of kv_pack.cuh).
void check_fp8_shape(const AttentionLayerShape& s, const char* who) {
  const std::string shape = "head_dim " + std::to_string(s.head_dim) + ", rope_dim " +
                            std::to_string(s.rope.rope_dim) +
                            (s.ratio == kCsaRatio ? ", index_dim " + std::to_string(s.index_dim) : std::string());
  require(s.head_dim == kHeadDim && s.rope.rope_dim == kRopeDim && s.rope.placement == RopePlacement::last &&
              (s.ratio != kCsaRatio || s.index_dim == kIndexerDim),
          std::string(who) + ": the fp8 KV layout needs head_dim " + std::to_string(kHeadDim) + " with the last " +
              std::to_string(kRopeDim) + " dims rotated and index_dim " + std::to_string(kIndexerDim) +
              " (584-byte entries, 68-byte keys); the shape has " + shape);
}

// The reference's checks and messages, then this twin's limits; all before any device work.
void validate(const AttentionLayerParams<float>& p, View2<const float> x, View2<float> y,
              const DeviceAttentionLayerState& st, const AttentionLayerWorkspace& ws) {
  const auto& s = p.shape;
  require(s.ratio >= 0, "attention_layer: ratio must be >= 0, found " + std::to_string(s.ratio));
  require(s.dim > 0 && s.heads > 0 && s.head_dim > 0 && s.q_rank > 0,
          "attention_layer: dim, heads, head_dim and q_rank must be positive");
  require(s.groups > 0 && s.heads % s.groups == 0,
          "attention_layer: groups (" + std::to_string(s.groups) + ") must divide heads (" +
              std::to_string(s.heads) + ")");
  require(s.o_rank > 0 && s.window > 0, "attention_layer: o_rank and window must be positive");
  require(x.cols == s.dim, "attention_layer: tensor 'x': expected " + std::to_string(s.dim) +
                               " columns, found " + std::to_string(x.cols));
  require(y.rows == x.rows && y.cols == s.dim,
          "attention_layer: output 'y' must be [" + std::to_string(x.rows) + ", " + std::to_string(s.dim) +
              "], found [" + std::to_string(y.rows) + ", " + std::to_string(y.cols) + "]");
  require(st.window_size() == s.window && st.head_dim() == s.head_dim && st.ratio() == s.ratio &&
              (!has_indexer(s) || st.index_dim() == s.index_dim),
          "attention_layer: the state does not match the layer shape");
  if (st.layout() == DeviceKvLayout::fp8) check_fp8_shape(s, "attention_layer");
  // This twin's limits.
  require(s.ratio == 0 || s.ratio == kCsaRatio || s.ratio == kHcaRatio,
          "attention_layer: ratio must be 0, " + std::to_string(kCsaRatio) + " or " + std::to_string(kHcaRatio) +
              " on the GPU, found " + std::to_string(s.ratio));
  require(s.head_dim <= kAttentionMaxDim, "attention_layer: head_dim at most " + std::to_string(kAttentionMaxDim) +
                                              " on the GPU, found " + std::to_string(s.head_dim));
  const AttentionLayerShape& w = ws.shape();
  require(w.dim == s.dim && w.heads == s.heads && w.head_dim == s.head_dim && w.q_rank == s.q_rank &&
              w.groups == s.groups && w.o_rank == s.o_rank && w.window == s.window && w.ratio == s.ratio &&
              (!has_indexer(s) ||
               (w.index_heads == s.index_heads && w.index_dim == s.index_dim && w.index_topk == s.index_topk)),
          "attention_layer: the workspace was made for another layer shape");
  require(x.rows <= ws.max_tokens(), "attention_layer: tensor 'x': " + std::to_string(x.rows) +
                                         " rows exceed the workspace's max_tokens " +
                                         std::to_string(ws.max_tokens()));
  require_weight(p.w.wq_a, "wq_a");
  require_weight(p.w.q_norm, "q_norm");
  require_weight(p.w.wq_b, "wq_b");
  require_weight(p.w.wkv, "wkv");
  require_weight(p.w.kv_norm, "kv_norm");
  require_weight(p.w.wo_a, "wo_a");
  require_weight(p.w.wo_b, "wo_b");
  require_weight(p.w.attn_sink, "attn_sink");
  if (s.ratio > 0) {
    require_weight(p.w.compressor.wkv, "compressor.wkv");
    require_weight(p.w.compressor.wgate, "compressor.wgate");
    require_weight(p.w.compressor.ape, "compressor.ape");
    require_weight(p.w.compressor.norm, "compressor.norm");
  }
  if (has_indexer(s)) {
    require(s.index_heads > 0 && s.index_dim > 0 && s.index_topk > 0,
            "attention_layer: index_heads, index_dim and index_topk must be positive");
    require(s.index_topk <= kIndexerMaxTopk, "attention_layer: index_topk at most " +
                                                 std::to_string(kIndexerMaxTopk) + " on the GPU, found " +
                                                 std::to_string(s.index_topk));
    require_weight(p.w.indexer_compressor.wkv, "indexer.compressor.wkv");
    require_weight(p.w.indexer_compressor.wgate, "indexer.compressor.wgate");
    require_weight(p.w.indexer_compressor.ape, "indexer.compressor.ape");
    require_weight(p.w.indexer_compressor.norm, "indexer.compressor.norm");
    require_weight(p.w.indexer_wq_b, "indexer.wq_b");
    require_weight(p.w.indexer_weights_proj, "indexer.weights_proj");
  }
}

// Copies n rows of width w elements (dense, row-major) on the stream; n may be 0.
template <class E>
void copy_rows(E* dst, const E* src, int64_t n, int64_t w, cudaStream_t stream) {
  if (n <= 0) return;
  DSV4_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n * w) * sizeof(E), cudaMemcpyDeviceToDevice, stream));
}

// Makes room for `need` rows of width w in a store holding `used` rows: grows the capacity
// geometrically, copies the rows on the stream and waits before the old buffer is freed.
template <class E>
void reserve_rows(DeviceBuffer<E>& buf, int64_t& cap, int64_t used, int64_t need, int64_t w, cudaStream_t stream) {
  if (need <= cap) return;
  const int64_t new_cap = std::max({need, 2 * cap, kMinStoreRows});
  DeviceBuffer<E> grown(size_t(new_cap * w));
  copy_rows(grown.data(), buf.empty() ? nullptr : buf.data(), used, w, stream);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  buf = std::move(grown);
  cap = new_cap;
}

}  // namespace

DeviceAttentionLayerState::DeviceAttentionLayerState(const AttentionLayerShape& s, DeviceKvLayout layout)
    : layout_(layout), window_(s.window), d_(s.head_dim), dI_(s.index_dim), ratio_(s.ratio) {
  require(s.window > 0 && s.head_dim > 0 && s.ratio >= 0,
          "DeviceAttentionLayerState: window and head_dim must be positive and ratio >= 0");
  require(layout == DeviceKvLayout::f32 || layout == DeviceKvLayout::fp8,
          "DeviceAttentionLayerState: unknown KV layout " + std::to_string(int(layout)));
  if (layout == DeviceKvLayout::fp8) check_fp8_shape(s, "DeviceAttentionLayerState");
  // The compressors' shapes, as main_compressor / index_compressor make them.
  if (s.ratio > 0)
    comp_state_ = std::make_unique<DeviceCompressorState>(CompressorShape{s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio});
  if (has_indexer(s)) {
    require(s.index_dim > 0, "DeviceAttentionLayerState: index_dim must be positive");
    index_state_ = std::make_unique<DeviceCompressorState>(CompressorShape{s.dim, s.index_dim, s.ratio, true});
  }
}

int64_t DeviceAttentionLayerState::entry_bytes() const {
  return layout_ == DeviceKvLayout::fp8 ? kFp8EntryBytes : d_ * int64_t(sizeof(float));
}
int64_t DeviceAttentionLayerState::key_bytes() const {
  return layout_ == DeviceKvLayout::fp8 ? kFp4KeyBytes : dI_ * int64_t(sizeof(float));
}

// Stored rows x row bytes (model/kv_cache.h's accounting) + the compressor states' buffers.
int64_t DeviceAttentionLayerState::bytes() const {
  int64_t b = (window_rows() + comp_rows_) * entry_bytes() + key_rows_ * key_bytes();
  for (const DeviceCompressorState* c : {comp_state_.get(), index_state_.get()}) {
    if (!c) continue;
    const int64_t buffer = c->rows() * c->width() * int64_t(sizeof(float));  // kv or score [c*m, c*dc]
    b += (c->kv() ? buffer : 0) + (c->score() ? buffer : 0);
  }
  return b;
}

struct AttentionLayerWorkspace::Buffers {
  QueryPathWorkspace query;
  WindowKvWorkspace kv;
  OutputProjWorkspace out;
  std::unique_ptr<CompressorWorkspace> comp, index_comp;
  std::unique_ptr<IndexerQueryWorkspace> index_query;
  DeviceBuffer<float> win, cq, q, iq, iw, o;  // see the class comment
  DeviceBuffer<int32_t> idx;
  // fp8-layout states only (allocated on their first forward): the packed window rows and the
  // compressors' fresh rows before packing.
  DeviceBuffer<uint8_t> win8;
  DeviceBuffer<float> fresh;

  void ensure_fp8(int64_t n, const AttentionLayerShape& s) {
    if (!win8.empty()) return;
    win8 = DeviceBuffer<uint8_t>(size_t((s.window - 1 + n) * kFp8EntryBytes));
    // A chunk of n tokens completes at most floor(n / m) + 1 blocks of m (§2.3).
    if (s.ratio > 0) fresh = DeviceBuffer<float>(size_t((n / s.ratio + 1) * std::max(s.head_dim, s.index_dim)));
  }
  Buffers(int64_t n, const AttentionLayerShape& s)
      : query(n, s.dim, s.q_rank),
        kv(n, s.dim),
        out(n, s.heads * s.head_dim, s.groups * s.o_rank),
        win(size_t((s.window - 1 + n) * s.head_dim)),
        cq(size_t(n * s.q_rank)),
        q(size_t(n * s.heads * s.head_dim)),
        o(size_t(n * s.heads * s.head_dim)) {
    if (s.ratio > 0) comp = std::make_unique<CompressorWorkspace>(n, CompressorShape{s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio});
    if (has_indexer(s)) {
      index_comp = std::make_unique<CompressorWorkspace>(n, CompressorShape{s.dim, s.index_dim, s.ratio, true});
      index_query = std::make_unique<IndexerQueryWorkspace>(n, s.q_rank);
      iq = DeviceBuffer<float>(size_t(n * s.index_heads * s.index_dim));
      iw = DeviceBuffer<float>(size_t(n * s.index_heads));
      idx = DeviceBuffer<int32_t>(size_t(n * s.index_topk));
    }
  }
};

AttentionLayerWorkspace::AttentionLayerWorkspace(int64_t max_tokens, const AttentionLayerShape& shape)
    : max_tokens_(max_tokens), shape_(shape) {
  require(max_tokens >= 0, "AttentionLayerWorkspace: max_tokens must be >= 0, found " + std::to_string(max_tokens));
}

AttentionLayerWorkspace::~AttentionLayerWorkspace() = default;

View2<const int32_t> AttentionLayerWorkspace::selection() const {
  if (!buf_ || selected_rows_ == 0) return {nullptr, 0, 0, 0};
  return {buf_->idx.data(), selected_rows_, shape_.index_topk, shape_.index_topk};
}

AttentionLayerWorkspace::Buffers& AttentionLayerWorkspace::buffers() {
  if (!buf_) buf_ = std::make_unique<Buffers>(max_tokens_, shape_);
  return *buf_;
}

void attention_layer_forward(const AttentionLayerParams<float>& p, View2<const float> x, View2<float> y,
                             DeviceAttentionLayerState& st, AttentionLayerWorkspace& ws, cudaStream_t stream) {
  validate(p, x, y, st, ws);
  ws.selected_rows_ = 0;
  const NvtxRange range("attention_layer");
  const auto& s = p.shape;
  const int64_t T_ = x.rows, d = s.head_dim, t0 = st.pos_, W = s.window;
  if (T_ == 0) return;
  const bool off = official(p), fp8 = st.layout_ == DeviceKvLayout::fp8;
  constexpr int64_t EB = kFp8EntryBytes, KB = kFp4KeyBytes;  // fp8 layout row bytes
  AttentionLayerWorkspace::Buffers& b = ws.buffers();
  if (fp8) {
    b.ensure_fp8(ws.max_tokens(), s);
    if (st.ring8_.empty()) st.ring8_ = DeviceBuffer<uint8_t>(size_t(W * EB));
  } else if (st.ring_.empty()) {
    st.ring_ = DeviceBuffer<float>(size_t(W * d));
  }

  // Window rows in position order, positions [first, t0 + T): `prev` rows from the ring, then
  // this chunk's entries, which window_kv writes straight into the rows after them (§2.2).
  // fp8: the same rows as 584-byte entries in win8 (the ring's bytes, then kv packed).
  const int64_t first = std::max<int64_t>(0, t0 - (W - 1)), prev = t0 - first;
  const View2<float> win{b.win.data(), prev + T_, d, d};
  const View2<float> kv = win.slice_rows(prev, T_);
  const View2<uint8_t> win8{fp8 ? b.win8.data() : nullptr, prev + T_, EB, EB};
  window_kv({x, p.w.wkv, p.w.kv_norm, d, t0, s.rope, s.eps, off, off, kv}, b.kv, stream);

  // The query paths (§2.1, §2.4) before the stores change, so a rejected parameter leaves the
  // state as it was.
  const View2<float> cq{b.cq.data(), T_, s.q_rank, s.q_rank}, q{b.q.data(), T_, s.heads * d, s.heads * d};
  query_path({x, p.w.wq_a, p.w.q_norm, p.w.wq_b, s.q_rank, s.heads, d, t0, s.rope, s.eps, off, cq, q}, b.query,
             stream);
  const int64_t HI = s.index_heads, dI = s.index_dim;
  View2<float> iq, iw;
  if (has_indexer(s)) {
    iq = {b.iq.data(), T_, HI * dI, HI * dI};
    iw = {b.iw.data(), T_, HI, HI};
    indexer_query({cq, x, p.w.indexer_wq_b, p.w.indexer_weights_proj, HI, dI, t0, s.rope, off, off, iq, iw},
                  *b.index_query, stream);
  }

  // §2.9 steps 3-4: the compressors ingest the chunk; the completed entries are appended to
  // the stores before anyone attends (visibility is by position, §2.8). fp8: the E fresh rows
  // go to the float scratch, then are packed into rows n0 .. n0 + E - 1 of the store.
  if (has_indexer(s)) {
    const int64_t E = compressor_entries_emitted(t0, T_, s.ratio), n0 = st.key_rows_;
    float* dst = nullptr;
    if (fp8) {
      reserve_rows(st.keys8_, st.key_cap_, n0, n0 + E, KB, stream);
      dst = b.fresh.data();
    } else {
      reserve_rows(st.keys_, st.key_cap_, n0, n0 + E, dI, stream);
      dst = st.keys_.data() + n0 * dI;
    }
    const View2<float> fresh{E ? dst : nullptr, E, dI, dI};
    const int64_t got = compressor_ingest(index_compressor(p), x, *st.index_state_, fresh, *b.index_comp, stream);
    require(got == E, "attention_layer: the indexer compressor emitted an unexpected number of keys");
    if (fp8) pack_fp4_keys(fresh, {E ? st.keys8_.data() + n0 * KB : nullptr, E, KB, KB}, stream);
    st.key_rows_ = n0 + E;
  }
  if (s.ratio > 0) {
    const int64_t E = compressor_entries_emitted(t0, T_, s.ratio), n0 = st.comp_rows_;
    float* dst = nullptr;
    if (fp8) {
      reserve_rows(st.comp8_, st.comp_cap_, n0, n0 + E, EB, stream);
      dst = b.fresh.data();  // reused: the keys above were packed first (stream order)
    } else {
      reserve_rows(st.comp_, st.comp_cap_, n0, n0 + E, d, stream);
      dst = st.comp_.data() + n0 * d;
    }
    const View2<float> fresh{E ? dst : nullptr, E, d, d};
    const int64_t got = compressor_ingest(main_compressor(p), x, *st.comp_state_, fresh, *b.comp, stream);
    require(got == E, "attention_layer: the compressor emitted an unexpected number of entries");
    if (fp8) pack_fp8_entries(fresh, {E ? st.comp8_.data() + n0 * EB : nullptr, E, EB, EB}, stream);
    st.comp_rows_ = n0 + E;
  }

  // The ring's positions [first, t0) into the window rows: slots first % W ... (at most one wrap).
  // fp8: the ring's bytes, then the chunk's kv packed behind them.
  if (prev > 0) {
    const int64_t s0 = first % W, n1 = std::min(prev, W - s0);
    if (fp8) {
      copy_rows(win8.data, st.ring8_.data() + s0 * EB, n1, EB, stream);
      copy_rows(win8.data + n1 * EB, st.ring8_.data(), prev - n1, EB, stream);
    } else {
      copy_rows(win.data, st.ring_.data() + s0 * d, n1, d, stream);
      copy_rows(win.data + n1 * d, st.ring_.data(), prev - n1, d, stream);
    }
  }
  if (fp8) pack_fp8_entries(kv, win8.slice_rows(prev, T_), stream);

  // CSA: the indexer's selection over every key (§2.4); entries by their store numbers.
  // fp8: indexer_fp4 scores the packed keys, dequantising them while staged (exact: the bits
  // of indexer() on the dequantised keys; see the header).
  View2<const int32_t> idx{nullptr, 0, 0, 0};
  if (has_indexer(s)) {
    const int64_t N = st.key_rows_;
    const View2<int32_t> sel{b.idx.data(), T_, s.index_topk, s.index_topk};
    auto common = [&](auto& ip) {  // the fields the f32 and fp4 params share
      ip.q = iq;
      ip.w = iw;
      ip.heads = HI;
      ip.ratio = s.ratio;
      ip.topk = s.index_topk;
      ip.pos0 = t0;
      ip.indices = sel;
    };
    if (fp8) {
      IndexerFp4Params ip;
      common(ip);
      ip.keys = {N ? st.keys8_.data() : nullptr, N, KB, KB};
      ip.head_dim = dI;
      indexer_fp4(ip, stream);
    } else {
      IndexerParams<float> ip;
      common(ip);
      ip.k = {N ? st.keys_.data() : nullptr, N, dI, dI};
      indexer(ip, stream);
    }
    idx = sel;
    ws.selected_rows_ = T_;
  }

  // §2.5 attention over the window rows and the compressed entries, §2.6 the output path.
  const View2<float> o{b.o.data(), T_, s.heads * d, s.heads * d};
  const int64_t N = s.ratio > 0 ? st.comp_rows_ : 0;
  auto common = [&](auto& ap) {  // the fields the f32 and fp8 params share
    ap.q = q;
    ap.sink = p.w.attn_sink;
    ap.indices = idx;
    ap.heads = s.heads;
    ap.ratio = s.ratio > 0 ? s.ratio : 1;
    ap.window = W;
    ap.pos0 = t0;
    ap.o = o;
  };
  if (fp8) {
    AttentionFp8Params ap;
    common(ap);
    ap.kv = win8;
    ap.comp = {N ? st.comp8_.data() : nullptr, N, EB, EB};
    attention_fp8(ap, stream);
  } else {
    AttentionParams<float> ap;
    common(ap);
    ap.kv = win;
    ap.comp = {N ? st.comp_.data() : nullptr, N, d, d};
    attention(ap, stream);
  }
  output_proj({o, p.w.wo_a, p.w.wo_b, s.heads, d, s.groups, s.o_rank, t0, s.rope, off, y}, b.out, stream);

  // The ring keeps the last W positions: position t in slot t mod W (at most one wrap).
  // fp8: the packed rows of win8.
  const int64_t keep0 = std::max(t0, t0 + T_ - W), n = t0 + T_ - keep0;
  const int64_t s0 = keep0 % W, n1 = std::min(n, W - s0);
  if (fp8) {
    const uint8_t* src = win8.data + (prev + keep0 - t0) * EB;
    copy_rows(st.ring8_.data() + s0 * EB, src, n1, EB, stream);
    copy_rows(st.ring8_.data(), src + n1 * EB, n - n1, EB, stream);
  } else {
    const float* src = kv.data + (keep0 - t0) * d;
    copy_rows(st.ring_.data() + s0 * d, src, n1, d, stream);
    copy_rows(st.ring_.data(), src + n1 * d, n - n1, d, stream);
  }
  st.pos_ = t0 + T_;
}

AttentionLayerState<float> download_state(const DeviceAttentionLayerState& st, cudaStream_t stream) {
  DSV4_CUDA_CHECK(cudaStreamSynchronize(stream));
  AttentionLayerState<float> h;
  h.pos = st.pos();
  h.window_size = st.window_size();
  const int64_t d = st.head_dim(), dI = st.index_dim();
  // Fetches rows [0, n) of width w from a device store into a float store.
  auto fetch = [](const float* src, int64_t n, int64_t w) {
    auto store = std::make_unique<FloatEntryStore<float>>(w);
    std::vector<float> rows(size_t(n * w));
    if (n) DSV4_CUDA_CHECK(cudaMemcpy(rows.data(), src, rows.size() * sizeof(float), cudaMemcpyDeviceToHost));
    store->resize(n);
    for (int64_t r = 0; r < n; ++r) store->write(r, rows.data() + r * w);
    return store;
  };
  // fp8 layout: fetches n packed rows of rb bytes and decodes each into a float row of width w.
  auto fetch_packed = [](const uint8_t* src, int64_t n, int64_t rb, int64_t w, void (*decode)(const uint8_t*, float*)) {
    auto store = std::make_unique<FloatEntryStore<float>>(w);
    std::vector<uint8_t> bytes(size_t(n * rb));
    std::vector<float> row(static_cast<size_t>(w));
    if (n) DSV4_CUDA_CHECK(cudaMemcpy(bytes.data(), src, bytes.size(), cudaMemcpyDeviceToHost));
    store->resize(n);
    for (int64_t r = 0; r < n; ++r) {
      decode(bytes.data() + r * rb, row.data());
      store->write(r, row.data());
    }
    return store;
  };
  const bool fp8 = st.layout() == DeviceKvLayout::fp8;
  auto entries = [&](const float* f32, const uint8_t* packed, int64_t n) {
    return fp8 ? fetch_packed(packed, n, kFp8EntryBytes, d, kv_codec::unpack_fp8_entry) : fetch(f32, n, d);
  };
  h.window = entries(st.window(), st.window_fp8(), st.window_rows());
  if (st.comp_state()) {
    h.comp = entries(st.comp(), st.comp_fp8(), st.comp_rows());
    h.comp_state = download_state(*st.comp_state(), stream);
  }
  if (st.index_state()) {
    h.index_keys = fp8 ? fetch_packed(st.index_keys_fp4(), st.index_key_rows(), kFp4KeyBytes, dI,
                                      kv_codec::unpack_fp4_key)
                       : fetch(st.index_keys(), st.index_key_rows(), dI);
    h.index_state = download_state(*st.index_state(), stream);
  }
  return h;
}

}  // namespace dsv4::cuda
