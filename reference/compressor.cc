#include "reference/compressor.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"
#include "reference/window_kv.h"

namespace dsv4::ref {

namespace {

void check_shape(const CompressorShape& s, int64_t rope_dim) {
  require(s.dim > 0 && s.head_dim > 0 && s.ratio > 0,
          "compressor: dim, head_dim and ratio must be positive");
  require(rope_dim <= s.head_dim, "compressor: rope_dim " + std::to_string(rope_dim) +
                                      " exceeds head_dim " + std::to_string(s.head_dim));
}

// One pooled channel block: out[ch] = sum_k softmax_k(z_k[ch]) a_k[ch] over the rows given
// as (z row, a row) pairs. Rows with z = -inf contribute nothing.
template <class T>
void pool(const std::vector<const T*>& z, const std::vector<const T*>& a, int64_t n, T* out) {
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t ch = 0; ch < n; ++ch) {
    T mx = ninf;
    for (const T* zr : z) mx = std::max(mx, zr[ch]);
    T den = 0, num = 0;
    if (mx != ninf) {
      for (size_t k = 0; k < z.size(); ++k) {
        const T w = std::exp(z[k][ch] - mx);
        den += w;
        num += w * a[k][ch];
      }
    }
    out[ch] = den > 0 ? num / den : T(0);
  }
}

}  // namespace

template <class T>
CompressorState<T> compressor_state_init(const CompressorShape& s) {
  CompressorState<T> st;
  st.rows = s.state_rows();
  st.width = s.width();
  st.kv.assign(st.rows * st.width, T(0));
  st.score.assign(st.rows * st.width, -std::numeric_limits<T>::infinity());
  return st;
}

template <class T>
void compressor_finish_entry(const CompressorParams<T>& p, int64_t block, T* entry) {
  const int64_t dc = p.shape.head_dim;
  View2<T> e = view2(entry, 1, dc);
  rmsnorm<T>({e, p.w.norm, e, p.eps});
  RopeParams<T> rp{e, 1, dc, block * p.shape.ratio, 1, false, p.rope};
  rope(rp);
  switch (p.quant) {
    case CompressorQuant::none:
      break;
    case CompressorQuant::fp8:  // as a window entry: FP8 non-RoPE dims, BF16 RoPE dims
      quant_fp8<T>({e, e, kFp8KvBlock, dc - p.rope.rope_dim});
      round_bf16_tail(e, dc - p.rope.rope_dim);
      break;
    case CompressorQuant::fp4_hadamard:
      hadamard<T>({e, e});
      quant_fp4<T>({e, e, kFp4Block});
      break;
  }
}

template <class T>
int64_t compressor_ingest(const CompressorParams<T>& p, View2<const T> x, CompressorState<T>& st,
                          std::vector<T>& entries) {
  const CompressorShape& s = p.shape;
  check_shape(s, p.rope.rope_dim);
  const int64_t m = s.ratio, dc = s.head_dim, w = s.width();
  require(x.cols == s.dim, "compressor: tensor 'x': expected " + std::to_string(s.dim) +
                               " columns, found " + std::to_string(x.cols));
  require(st.rows == s.state_rows() && st.width == w,
          "compressor: decode state has shape " + shape_string({st.rows, st.width}) +
              ", expected " + shape_string({s.state_rows(), w}));
  if (x.rows == 0) return 0;
  // a = X Wkv^T, z = X Wgate^T      [T, c*dc]
  const Mat<T> a = linear(x, p.w.wkv, w, s.dim);
  const Mat<T> z = linear(x, p.w.wgate, w, s.dim);
  const int64_t cur = s.overlap ? m : 0;  // first state row of the current block
  const T ninf = -std::numeric_limits<T>::infinity();
  int64_t emitted = 0;
  std::vector<const T*> zr, ar;
  for (int64_t i = 0; i < x.rows; ++i) {
    const int64_t t = st.pos++;
    const int64_t row = cur + t % m;
    const T* ape = p.w.ape + (t % m) * w;
    for (int64_t c = 0; c < w; ++c) {
      st.kv[row * w + c] = a(i, c);
      st.score[row * w + c] = z(i, c) + ape[c];
    }
    if ((t + 1) % m != 0) continue;
    // The block is complete: one softmax per channel over its rows (CSA: the previous
    // block's A half and this block's B half).
    zr.clear();
    ar.clear();
    if (s.overlap)
      for (int64_t k = 0; k < m; ++k) {
        zr.push_back(st.score.data() + k * w);
        ar.push_back(st.kv.data() + k * w);
      }
    const int64_t half = s.overlap ? dc : 0;
    for (int64_t k = 0; k < m; ++k) {
      zr.push_back(st.score.data() + (cur + k) * w + half);
      ar.push_back(st.kv.data() + (cur + k) * w + half);
    }
    const size_t at = entries.size();
    entries.resize(at + size_t(dc));
    pool(zr, ar, dc, entries.data() + at);
    compressor_finish_entry(p, t / m, entries.data() + at);
    ++emitted;
    if (s.overlap) {  // current -> previous
      std::copy_n(st.kv.data() + m * w, m * w, st.kv.data());
      std::copy_n(st.score.data() + m * w, m * w, st.score.data());
    }
    std::fill_n(st.kv.data() + cur * w, m * w, T(0));
    std::fill_n(st.score.data() + cur * w, m * w, ninf);
  }
  return emitted;
}

template <class T>
void compressor_prefill(const CompressorParams<T>& p, View2<const T> x, View2<T> entries,
                        CompressorState<T>* state) {
  const int64_t nb = p.shape.ratio > 0 ? x.rows / p.shape.ratio : 0;
  require(entries.rows == nb && entries.cols == p.shape.head_dim,
          "compressor: tensor 'entries': expected shape " + shape_string({nb, p.shape.head_dim}) +
              ", found " + shape_string({entries.rows, entries.cols}));
  CompressorState<T> st = compressor_state_init<T>(p.shape);
  std::vector<T> out;
  compressor_ingest(p, x, st, out);
  for (int64_t i = 0; i < nb; ++i)
    std::copy_n(out.data() + i * p.shape.head_dim, p.shape.head_dim, entries.row(i));
  if (state) *state = std::move(st);
}

template <class T>
bool compressor_decode(const CompressorParams<T>& p, const T* x_t, CompressorState<T>& st,
                       T* entry) {
  std::vector<T> out;
  if (compressor_ingest(p, view2(x_t, 1, p.shape.dim), st, out) == 0) return false;
  std::copy(out.begin(), out.end(), entry);
  return true;
}

#define DSV4_INSTANTIATE(T)                                                                   \
  template CompressorState<T> compressor_state_init<T>(const CompressorShape&);               \
  template void compressor_finish_entry<T>(const CompressorParams<T>&, int64_t, T*);          \
  template void compressor_prefill<T>(const CompressorParams<T>&, View2<const T>, View2<T>,   \
                                      CompressorState<T>*);                                   \
  template bool compressor_decode<T>(const CompressorParams<T>&, const T*, CompressorState<T>&, \
                                     T*);                                                       \
  template int64_t compressor_ingest<T>(const CompressorParams<T>&, View2<const T>,             \
                                        CompressorState<T>&, std::vector<T>&);
DSV4_INSTANTIATE(float)
DSV4_INSTANTIATE(double)
#undef DSV4_INSTANTIATE

}  // namespace dsv4::ref
