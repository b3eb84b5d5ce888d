#include "reference/attention_layer.h"

#include <algorithm>

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
  require(s.ratio == 0 || s.ratio == kCsaRatio || s.ratio == kHcaRatio || s.ratio > 0,
          "attention_layer: ratio must be >= 0");
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
AttentionLayerState<T> attention_layer_state_init(const AttentionLayerShape& s) {
  AttentionLayerState<T> st;
  st.window.assign(s.window * s.head_dim, T(0));
  if (s.ratio > 0) st.comp_state = compressor_state_init<T>({s.dim, s.head_dim, s.ratio, s.ratio == kCsaRatio});
  if (has_indexer(s)) st.index_state = compressor_state_init<T>({s.dim, s.index_dim, s.ratio, true});
  return st;
}

template <class T>
void attention_layer_prefill(const AttentionLayerParams<T>& p, View2<const T> x, View2<T> y,
                             AttentionLayerState<T>* state, std::vector<int32_t>* topk) {
  const auto& s = p.shape;
  check(s);
  const int64_t T_ = x.rows, d = s.head_dim;
  require(x.cols == s.dim, "attention_layer: tensor 'x': expected " + std::to_string(s.dim) +
                               " columns, found " + std::to_string(x.cols));
  require(y.rows == T_ && y.cols == s.dim, "attention_layer: output 'y' has the wrong shape");

  Mat<T> cq(T_, s.q_rank), q(T_, s.heads * d), kv(T_, d);
  query_path(query_params(p, x, 0, view_of(cq), view_of(q)));
  window_kv(kv_params(p, x, 0, view_of(kv)));

  const int64_t N = s.ratio > 0 ? T_ / s.ratio : 0;
  Mat<T> comp(N, d), keys(has_indexer(s) ? N : 0, s.index_dim);
  Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> idx;
  CompressorState<T> cst, ist;
  if (has_indexer(s)) {
    compressor_prefill(index_compressor(p), x, view_of(keys), state ? &ist : nullptr);
    Mat<T> iq(T_, s.index_heads * s.index_dim), iw(T_, s.index_heads);
    indexer_query(iq_params(p, cview_of(cq), x, 0, view_of(iq), view_of(iw)));
    idx.resize(T_, s.index_topk);
    IndexerParams<T> ip;
    ip.q = cview_of(iq);
    ip.k = cview_of(keys);
    ip.w = cview_of(iw);
    ip.heads = s.index_heads;
    ip.ratio = s.ratio;
    ip.topk = s.index_topk;
    ip.indices = {idx.data(), T_, s.index_topk, s.index_topk};
    indexer(ip);
    if (topk) topk->assign(idx.data(), idx.data() + idx.size());
  }
  if (s.ratio > 0) compressor_prefill(main_compressor(p), x, view_of(comp), state ? &cst : nullptr);

  View2<const int32_t> iv{idx.size() ? idx.data() : nullptr, idx.rows(), idx.cols(), idx.cols()};
  attend_and_project(p, cview_of(q), cview_of(kv), cview_of(comp), iv, 0, y);

  if (state) {
    *state = attention_layer_state_init<T>(s);
    state->pos = T_;
    for (int64_t t = std::max<int64_t>(0, T_ - s.window); t < T_; ++t)
      std::copy_n(kv.row(t).data(), d, state->window.data() + (t % s.window) * d);
    state->comp.assign(comp.data(), comp.data() + comp.size());
    state->index_keys.assign(keys.data(), keys.data() + keys.size());
    if (s.ratio > 0) state->comp_state = cst;
    if (has_indexer(s)) state->index_state = ist;
  }
}

template <class T>
void attention_layer_decode(const AttentionLayerParams<T>& p, const T* x_t, T* y_t,
                            AttentionLayerState<T>& st, std::vector<int32_t>* topk) {
  const auto& s = p.shape;
  check(s);
  const int64_t t = st.pos, d = s.head_dim;
  require(int64_t(st.window.size()) == s.window * d,
          "attention_layer: decode state does not match the layer shape");
  View2<const T> x = view2(x_t, 1, s.dim);

  Mat<T> cq(1, s.q_rank), q(1, s.heads * d), kv(1, d);
  query_path(query_params(p, x, t, view_of(cq), view_of(q)));
  window_kv(kv_params(p, x, t, view_of(kv)));
  std::copy_n(kv.data(), d, st.window.data() + (t % s.window) * d);

  std::vector<T> entry;
  Eigen::Matrix<int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> idx;
  if (has_indexer(s)) {
    entry.resize(s.index_dim);
    if (compressor_decode(index_compressor(p), x_t, st.index_state, entry.data()))
      st.index_keys.insert(st.index_keys.end(), entry.begin(), entry.end());
  }
  if (s.ratio > 0) {
    entry.resize(d);
    if (compressor_decode(main_compressor(p), x_t, st.comp_state, entry.data()))
      st.comp.insert(st.comp.end(), entry.begin(), entry.end());
  }
  if (has_indexer(s)) {
    Mat<T> iq(1, s.index_heads * s.index_dim), iw(1, s.index_heads);
    indexer_query(iq_params(p, cview_of(cq), x, t, view_of(iq), view_of(iw)));
    const int64_t nk = int64_t(st.index_keys.size()) / s.index_dim;
    idx.resize(1, s.index_topk);
    IndexerParams<T> ip;
    ip.q = cview_of(iq);
    ip.k = view2<const T>(st.index_keys.data(), nk, s.index_dim);
    ip.w = cview_of(iw);
    ip.heads = s.index_heads;
    ip.ratio = s.ratio;
    ip.topk = s.index_topk;
    ip.pos0 = t;
    ip.indices = {idx.data(), 1, s.index_topk, s.index_topk};
    indexer(ip);
    if (topk) topk->assign(idx.data(), idx.data() + idx.size());
  }

  // Window entries in position order: positions t - nw + 1 .. t.
  const int64_t nw = std::min<int64_t>(t + 1, s.window);
  Mat<T> win(nw, d);
  for (int64_t k = 0; k < nw; ++k) {
    const int64_t pos = t - nw + 1 + k;
    win.row(k) = as_eigen(st.window.data() + (pos % s.window) * d, 1, d);
  }
  const int64_t N = int64_t(st.comp.size()) / d;
  View2<const int32_t> iv{idx.size() ? idx.data() : nullptr, idx.rows(), idx.cols(), idx.cols()};
  attend_and_project(p, cview_of(q), cview_of(win), view2<const T>(st.comp.data(), N, d), iv, t,
                     view2(y_t, 1, s.dim));
  st.pos = t + 1;
}

#define DSV4_INSTANTIATE(T)                                                                     \
  template AttentionLayerState<T> attention_layer_state_init<T>(const AttentionLayerShape&);    \
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
