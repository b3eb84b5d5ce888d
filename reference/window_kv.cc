#include "reference/window_kv.h"

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/formats.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"

namespace dsv4::ref {

template <class T>
void round_bf16_tail(View2<T> v, int64_t from) {
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = from; c < v.cols; ++c) v(r, c) = T(fmt::bf16_round_value(double(v(r, c))));
}
template void round_bf16_tail<float>(View2<float>, int64_t);
template void round_bf16_tail<double>(View2<double>, int64_t);

template <class T>
void window_kv(const WindowKvParams<T>& p) {
  const int64_t T_ = p.x.rows, d = p.head_dim;
  require(p.kv.rows == T_ && p.kv.cols == d,
          "window_kv: output 'kv': expected shape " + shape_string({T_, d}));
  if (p.act_quant) {
    Mat<T> x = as_eigen(p.x);
    quant_fp8<T>({cview_of(x), view_of(x), kActBlock, 0});
    as_eigen(p.kv) = linear(cview_of(x), p.wkv, d, p.x.cols);
  } else {
    as_eigen(p.kv) = linear(p.x, p.wkv, d, p.x.cols);
  }
  rmsnorm<T>({p.kv, p.kv_norm, p.kv, p.eps});
  rope<T>({p.kv, 1, d, p.pos0, 1, false, p.rope});
  if (p.quant) {  // FP8 on the non-RoPE dims, BF16 on the RoPE dims (§2.2 step 3)
    quant_fp8<T>({p.kv, p.kv, kFp8KvBlock, d - p.rope.rope_dim});
    round_bf16_tail(p.kv, d - p.rope.rope_dim);
  }
}

template void window_kv<float>(const WindowKvParams<float>&);
template void window_kv<double>(const WindowKvParams<double>&);

}  // namespace dsv4::ref
