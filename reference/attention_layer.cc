#include "reference/attention_layer.h"

#include <algorithm>
#include <cmath>

#include "reference/attention.h"
#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/indexer.h"
#include "reference/output_proj.h"
#include "reference/query_path.h"
#include "reference/window_kv.h"

namespace dsv4 {

RopeConfig rope_for_ratio(int64_t ratio) {
  return ratio > 0 ? rope_v4_compressed() : rope_v4_swa();
}

namespace ref {

namespace {

void check(const AttentionLayerShape& s) {
  require(s.ratio >= 0, "attention_layer: ratio must be >= 0, found " + std::to_string(s.ratio));
  require(s.dim > 0 && s.heads > 0 && s.head_dim > 0 && s.q_rank > 0,
          "attention_layer: dim, heads, head_dim and q_rank must be positive");
  require(s.groups > 0 && s.heads % s.groups == 0,
          "attention_layer: groups (" + std::to_string(s.groups) + ") must divide heads (" +
              std::to_string(s.heads) + ")");
  require(s.o_rank > 0 && s.window > 0, "attention_layer: o_rank and window must be positive");
}

bool has_indexer(const AttentionLayerShape& s) { return s.ratio == kCsaRatio; }

template <class T>
CompressorParams<T> main_compressor(const AttentionLayerParams<T>& p) {
  const auto& s = p.shape;
  CompressorParams<T> c;
  c.shape = {s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio};
  c.w = p.w.compressor;
  c.rope = s.rope;
  c.quant = p.numerics == Numerics::official ? CompressorQuant::fp8 : CompressorQuant::none;
  c.eps = s.eps;
  return c;
}

template <class T>
CompressorParams<T> index_compressor(const AttentionLayerParams<T>& p) {
  const auto& s = p.shape;
  CompressorParams<T> c;
  c.shape = {s.dim, s.index_dim, s.ratio, true};
  c.w = p.w.indexer_compressor;
  c.rope = s.rope;
  c.quant =
      p.numerics == Numerics::official ? CompressorQuant::fp4_hadamard : CompressorQuant::none;
  c.eps = s.eps;
  return c;
}

template <class T>
QueryPathParams<T> query_params(const AttentionLayerParams<T>& p, View2<const T> x, int64_t pos0,
                                View2<T> cq, View2<T> q) {
  const auto& s = p.shape;
  return {x,      p.w.wq_a, p.w.q_norm, p.w.wq_b, s.q_rank,
          s.heads, s.head_dim, pos0,    s.rope,   s.eps,
          p.numerics == Numerics::official, cq, q};
}

template <class T>
WindowKvParams<T> kv_params(const AttentionLayerParams<T>& p, View2<const T> x, int64_t pos0,
                            View2<T> kv) {
  const auto& s = p.shape;
  const bool off = p.numerics == Numerics::official;
  return {x, p.w.wkv, p.w.kv_norm, s.head_dim, pos0, s.rope, s.eps, off, off, kv};
}

template <class T>
IndexerQueryParams<T> iq_params(const AttentionLayerParams<T>& p, View2<const T> cq,
                                View2<const T> x, int64_t pos0, View2<T> iq, View2<T> iw) {
  const auto& s = p.shape;
  const bool off = p.numerics == Numerics::official;
  return {cq, x, p.w.indexer_wq_b, p.w.indexer_weights_proj, s.index_heads, s.index_dim,
          pos0, s.rope, off, off, iq, iw};
}

// The indexer's scoring of queries q (rows at positions pos0...) against `keys`, the top-k
// into `indices` and, when scores.data is set, every score.
template <class T>
IndexerParams<T> scoring_params(const AttentionLayerShape& s, View2<const T> q, View2<const T> keys, View2<const T> w,
                                int64_t pos0, View2<int32_t> indices, View2<T> scores = {}) {
  IndexerParams<T> ip;
  ip.q = q;
  ip.k = keys;
  ip.w = w;
  ip.heads = s.index_heads;
  ip.ratio = s.ratio;
  ip.topk = s.index_topk;
  ip.pos0 = pos0;
  ip.scores = scores;
  ip.indices = indices;
  return ip;
}

template <class T>
void attend_and_project(const AttentionLayerParams<T>& p, View2<const T> q, View2<const T> kv,
                        View2<const T> comp, View2<const int32_t> idx, int64_t pos0, View2<T> y) {
  const auto& s = p.shape;
  Mat<T> o(q.rows, s.heads * s.head_dim);
  AttentionParams<T> ap;
  ap.q = q;
  ap.kv = kv;
  ap.comp = comp;
  ap.sink = p.w.attn_sink;
  ap.indices = idx;
  ap.heads = s.heads;
  ap.ratio = s.ratio > 0 ? s.ratio : 1;
  ap.window = s.window;
  ap.pos0 = pos0;
  ap.o = view_of(o);
  attention(ap);
  output_proj<T>({cview_of(o), p.w.wo_a, p.w.wo_b, s.heads, s.head_dim, s.groups, s.o_rank,
                  pos0, s.rope, p.numerics == Numerics::official, y});
}

}  // namespace

template <class T>
AttentionLayerState<T> attention_layer_state_init(const AttentionLayerShape& s,
                                                  const EntryStoreFactory<T>& stores) {
  AttentionLayerState<T> st;
  st.window = stores(EntryKind::window, s.head_dim);  // grows to `window` rows, then rings
  st.window_size = s.window;
  if (s.ratio > 0) {
    st.comp = stores(EntryKind::compressed, s.head_dim);
    st.comp_state = compressor_state_init<T>({s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio});
  }
  if (has_indexer(s)) {
    st.index_keys = stores(EntryKind::index_key, s.index_dim);
    st.index_state = compressor_state_init<T>({s.dim, s.index_dim, s.ratio, true});
  }
  return st;
}

namespace {

// The outputs of the run of chunk rows [a, b) (positions t0 + a .. t0 + b - 1), into y
// [b - a, D]: query path, indexer selection, attention over the window and the compressed
// entries, output projection. `kv` [T, d] holds the whole chunk's window entries, `keys`
// [N, dI] every indexer key (CSA, decoded if the store encodes them); the ring
// still holds the positions before t0; the compressed stores already hold the whole chunk's
// completed entries. Each row sees exactly its own visible set: the window by position
// (the rows handed to attention end at row b - 1), the compressed entries and indexer keys
// by the visibility rule m*j + m - 1 <= p (§2.8), so entries completed by later rows of the
// chunk are ignored. For the run [0, T) this is the whole chunk's computation.
template <class T>
void attend_run(const AttentionLayerParams<T>& p, View2<const T> x, int64_t a, int64_t b,
                const Mat<T>& kv, View2<const T> keys, AttentionLayerState<T>& st, int64_t t0,
                View2<T> y, std::vector<int32_t>* topk, AttentionTraceRequest* trace) {
  const auto& s = p.shape;
  const int64_t R = b - a, d = s.head_dim, p0 = t0 + a;
  const View2<const T> xr = x.slice_rows(a, R);
  Mat<T> cq(R, s.q_rank), q(R, s.heads * d);
  query_path(query_params(p, xr, p0, view_of(cq), view_of(q)));

  Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> idx;
  if (has_indexer(s)) {
    Mat<T> iq(R, s.index_heads * s.index_dim), iw(R, s.index_heads);
    indexer_query(iq_params(p, cview_of(cq), xr, p0, view_of(iq), view_of(iw)));
    idx.resize(R, s.index_topk);
    indexer(scoring_params<T>(s, cview_of(iq), keys, cview_of(iw), p0, {idx.data(), R, s.index_topk, s.index_topk}));
    if (topk) topk->insert(topk->end(), idx.data(), idx.data() + idx.size());
  }
  // Traced rows of this run: selection and index scores now (before the renumbering below).
  std::vector<AttentionRowTrace> traced;
  for (int64_t r : trace ? trace->rows : std::vector<int64_t>{}) {
    if (r < a || r >= b) continue;
    AttentionRowTrace t;
    t.row = r;
    t.position = t0 + r;
    t.heads = s.heads;
    if (has_indexer(s)) {
      const int64_t i = r - a, N = keys.rows;
      t.selected.assign(idx.row(i).data(), idx.row(i).data() + s.index_topk);
      Mat<T> iq(1, s.index_heads * s.index_dim), iw(1, s.index_heads), sc(1, std::max<int64_t>(N, 1));
      Eigen::Matrix<int32_t, 1, Eigen::Dynamic> one(s.index_topk);
      indexer_query(iq_params(p, cview_of(cq).slice_rows(i, 1), xr.slice_rows(i, 1), t.position, view_of(iq),
                              view_of(iw)));
      if (N > 0)
        indexer(scoring_params<T>(s, cview_of(iq), keys, cview_of(iw), t.position,
                                  {one.data(), 1, s.index_topk, s.index_topk}, {sc.data(), 1, N, sc.cols()}));
      t.index_scores.assign(sc.data(), sc.data() + N);
    }
    traced.push_back(std::move(t));
  }

  // Window rows in position order, positions [first, t0 + b): up to window - 1 positions
  // before the run's first row (from the ring while they precede the chunk, then the
  // chunk's own entries), then the run's rows.
  const int64_t first = std::max<int64_t>(0, p0 - (s.window - 1));
  const int64_t prev = std::max<int64_t>(0, t0 - first);  // rows from the ring
  const int64_t c0 = std::max(first, t0) - t0;            // first chunk row used
  Mat<T> win(prev + b - c0, d);
  for (int64_t k = 0; k < prev; ++k) st.window->read((first + k) % s.window, 1, win.row(k).data());
  win.bottomRows(b - c0) = kv.middleRows(c0, b - c0);
  // Compressed entries: HCA attends every visible one; CSA only the selected ones, so only
  // those are read (a 1M-token decode step touches top-k rows, not the whole cache). The
  // selection is renumbered onto the rows read, in increasing order: an entry's new number
  // never exceeds its old one, so it stays visible to every query that selected it.
  const int64_t N = s.ratio > 0 ? st.comp->rows() : 0;
  Mat<T> comp;
  std::vector<int32_t> used_ids;  // CSA: the entry numbers of comp's rows
  if (has_indexer(s)) {
    std::vector<int32_t>& used = used_ids;
    for (int64_t i = 0; i < idx.size(); ++i)
      if (idx.data()[i] >= 0) used.push_back(idx.data()[i]);
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    comp.resize(int64_t(used.size()), d);
    const T* cp = st.comp->contiguous();
    for (size_t k = 0; k < used.size(); ++k) {
      if (cp)
        comp.row(int64_t(k)) = as_eigen(cp + int64_t(used[k]) * d, 1, d);
      else
        st.comp->read(used[k], 1, comp.row(int64_t(k)).data());
    }
    for (int64_t i = 0; i < idx.size(); ++i)
      if (int32_t& j = idx.data()[i]; j >= 0) j = int32_t(std::lower_bound(used.begin(), used.end(), j) - used.begin());
  } else if (N && !st.comp->contiguous()) {
    comp.resize(N, d);
    st.comp->read(0, N, comp.data());
  }
  const View2<const T> cv = !has_indexer(s) && N && st.comp->contiguous() ? view2(st.comp->contiguous(), N, d)
                                                                          : cview_of(comp);
  View2<const int32_t> iv{idx.size() ? idx.data() : nullptr, idx.rows(), idx.cols(), idx.cols()};
  attend_and_project(p, cview_of(q), cview_of(win), cv, iv, p0, y);

  // The traced rows' softmax weights, in float64 over exactly what attention() read: window
  // rows by position, compressed entries (cv rows: HCA every entry, CSA the rows read).
  for (AttentionRowTrace& t : traced) {
    const int64_t i = t.row - a, pos = t.position;
    std::vector<std::pair<int64_t, const T*>> rows_read;  // (number, entry row)
    for (int64_t q0 = std::max<int64_t>(0, pos - (s.window - 1)); q0 <= pos; ++q0) {
      t.window.push_back(q0);
      rows_read.push_back({q0, win.row(q0 - first).data()});
    }
    if (has_indexer(s)) {
      std::vector<int32_t> sel;
      for (int32_t j : t.selected)
        if (j >= 0 && s.ratio * j + s.ratio - 1 <= pos) sel.push_back(j);
      std::sort(sel.begin(), sel.end());
      for (int32_t j : sel) {
        t.entries.push_back(j);
        const int64_t k = std::lower_bound(used_ids.begin(), used_ids.end(), j) - used_ids.begin();
        rows_read.push_back({j, cv.data + k * cv.ld});
      }
    } else {
      for (int64_t j = 0; j < cv.rows && s.ratio * j + s.ratio - 1 <= pos; ++j) {
        t.entries.push_back(j);
        rows_read.push_back({j, cv.data + j * cv.ld});
      }
    }
    const int64_t n = int64_t(rows_read.size());
    const double scale = 1.0 / std::sqrt(double(d));
    t.weights.assign(size_t(s.heads * n), 0.0);
    for (int64_t h = 0; h < s.heads; ++h) {
      const T* qh = q.row(i).data() + h * d;
      double* w = t.weights.data() + h * n;
      double mx = double(p.w.attn_sink[h]);
      for (int64_t k = 0; k < n; ++k) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(qh[c]) * double(rows_read[size_t(k)].second[c]);
        w[k] = dot * scale;
        mx = std::max(mx, w[k]);
      }
      double z = std::exp(double(p.w.attn_sink[h]) - mx);
      for (int64_t k = 0; k < n; ++k) z += std::exp(w[k] - mx);
      for (int64_t k = 0; k < n; ++k) w[k] = std::exp(w[k] - mx) / z;
    }
    trace->out.push_back(std::move(t));
  }
}

}  // namespace

template <class T>
void attention_layer_forward_rows(const AttentionLayerParams<T>& p, View2<const T> x,
                                  const std::vector<int64_t>& rows, View2<T> y,
                                  AttentionLayerState<T>& st, std::vector<int32_t>* topk,
                                  AttentionTraceRequest* trace) {
  const auto& s = p.shape;
  check(s);
  const int64_t T_ = x.rows, d = s.head_dim, t0 = st.pos;
  require(x.cols == s.dim, "attention_layer: tensor 'x': expected " + std::to_string(s.dim) +
                               " columns, found " + std::to_string(x.cols));
  require(y.rows == int64_t(rows.size()) && y.cols == s.dim,
          "attention_layer: output 'y' must be [" + std::to_string(rows.size()) + ", " +
              std::to_string(s.dim) + "], found [" + std::to_string(y.rows) + ", " +
              std::to_string(y.cols) + "]");
  for (size_t i = 0; i < rows.size(); ++i)
    require(rows[i] >= 0 && rows[i] < T_ && (i == 0 || rows[i] > rows[i - 1]),
            "attention_layer: output rows must increase strictly within [0, " + std::to_string(T_) +
                "), found row " + std::to_string(rows[i]) + " at " + std::to_string(i));
  require(st.window && st.window->width() == d && st.window_size == s.window &&
              (s.ratio == 0 || (st.comp && st.comp->width() == d)) &&
              (!has_indexer(s) || (st.index_keys && st.index_keys->width() == s.index_dim)),
          "attention_layer: the state does not match the layer shape");
  if (topk) topk->clear();
  if (trace)
    for (int64_t r : trace->rows)
      require(std::binary_search(rows.begin(), rows.end(), r),
              "attention_layer: traced row " + std::to_string(r) + " is not one of the output rows");
  if (T_ == 0) return;

  // §2.9 step 2: this chunk's window entries (every row: the cache covers all positions).
  Mat<T> kv(T_, d);
  window_kv(kv_params(p, x, t0, view_of(kv)));

  // Steps 3-4: the compressors ingest the chunk; completed entries join the cache before
  // anyone attends, so a block completing at t is visible to t (visibility is by position).
  std::vector<T> fresh;
  if (has_indexer(s)) {
    compressor_ingest(index_compressor(p), x, st.index_state, fresh);
    st.index_keys->append(fresh.data(), int64_t(fresh.size()) / s.index_dim);
    fresh.clear();
  }
  if (s.ratio > 0) {
    compressor_ingest(main_compressor(p), x, st.comp_state, fresh);
    st.comp->append(fresh.data(), int64_t(fresh.size()) / d);
  }

  // The indexer keys as floats, once for all runs (decoded only if the store encodes them).
  View2<const T> keys;
  Mat<T> decoded;
  if (has_indexer(s) && !rows.empty()) {
    const int64_t nk = st.index_keys->rows();
    const T* kp = st.index_keys->contiguous();
    if (!kp) {
      decoded.resize(nk, s.index_dim);
      st.index_keys->read(0, nk, decoded.data());
      kp = decoded.data();
    }
    keys = view2(kp, nk, s.index_dim);
  }

  // Steps 1 and 5-6 for the asked rows only, one run of consecutive rows at a time.
  for (size_t i = 0; i < rows.size();) {
    size_t j = i + 1;
    while (j < rows.size() && rows[j] == rows[j - 1] + 1) ++j;
    attend_run(p, x, rows[i], rows[j - 1] + 1, kv, keys, st, t0, y.slice_rows(int64_t(i), int64_t(j - i)), topk,
               trace);
    i = j;
  }

  // The ring keeps the last `window` positions (it holds min(positions, window) rows).
  st.window->resize(std::min(t0 + T_, s.window));
  for (int64_t t = std::max(t0, t0 + T_ - s.window); t < t0 + T_; ++t)
    st.window->write(t % s.window, kv.row(t - t0).data());
  st.pos = t0 + T_;
}

template <class T>
void attention_layer_forward(const AttentionLayerParams<T>& p, View2<const T> x, View2<T> y,
                             AttentionLayerState<T>& st, std::vector<int32_t>* topk) {
  std::vector<int64_t> all(static_cast<size_t>(x.rows));
  for (int64_t r = 0; r < x.rows; ++r) all[size_t(r)] = r;
  attention_layer_forward_rows(p, x, all, y, st, topk);
}

template <class T>
void attention_layer_prefill(const AttentionLayerParams<T>& p, View2<const T> x, View2<T> y,
                             AttentionLayerState<T>* state, std::vector<int32_t>* topk) {
  check(p.shape);
  AttentionLayerState<T> st = attention_layer_state_init<T>(p.shape);
  attention_layer_forward(p, x, y, st, topk);
  if (state) *state = std::move(st);
}

template <class T>
void attention_layer_decode(const AttentionLayerParams<T>& p, const T* x_t, T* y_t,
                            AttentionLayerState<T>& st, std::vector<int32_t>* topk) {
  attention_layer_forward(p, view2(x_t, 1, p.shape.dim), view2(y_t, 1, p.shape.dim), st, topk);
}

#define DSV4_INSTANTIATE(T)                                                                     \
  template AttentionLayerState<T> attention_layer_state_init<T>(const AttentionLayerShape&,     \
                                                                const EntryStoreFactory<T>&);   \
  template void attention_layer_forward<T>(const AttentionLayerParams<T>&, View2<const T>,      \
                                           View2<T>, AttentionLayerState<T>&,                   \
                                           std::vector<int32_t>*);                              \
  template void attention_layer_forward_rows<T>(const AttentionLayerParams<T>&, View2<const T>, \
                                                const std::vector<int64_t>&, View2<T>,          \
                                                AttentionLayerState<T>&, std::vector<int32_t>*, \
                                                AttentionTraceRequest*);                         \
  template void attention_layer_prefill<T>(const AttentionLayerParams<T>&, View2<const T>,      \
                                           View2<T>, AttentionLayerState<T>*,                   \
                                           std::vector<int32_t>*);                              \
  template void attention_layer_decode<T>(const AttentionLayerParams<T>&, const T*, T*,         \
                                          AttentionLayerState<T>&, std::vector<int32_t>*);
DSV4_INSTANTIATE(float)
DSV4_INSTANTIATE(double)
#undef DSV4_INSTANTIATE

}  // namespace ref
}  // namespace dsv4
