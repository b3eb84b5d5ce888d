#include "reference/query_path.h"

#include <algorithm>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"

namespace dsv4::ref {

template <class T>
void query_path(const QueryPathParams<T>& p) {
  const int64_t T_ = p.x.rows, D = p.x.cols, H = p.heads, d = p.head_dim;
  require(p.cq.rows == T_ && p.cq.cols == p.q_rank,
          "query_path: output 'cq': expected shape " + shape_string({T_, p.q_rank}));
  require(p.q.rows == T_ && p.q.cols == H * d && p.q.ld == H * d,
          "query_path: output 'q': expected dense shape " + shape_string({T_, H * d}));
  Mat<T> x = as_eigen(p.x);
  if (p.act_quant) quant_fp8<T>({cview_of(x), view_of(x), kActBlock, 0});
  as_eigen(p.cq) = linear(cview_of(x), p.wq_a, p.q_rank, D);
  rmsnorm<T>({p.cq, p.q_norm, p.cq, p.eps});
  Mat<T> cq = as_eigen(View2<const T>(p.cq));
  if (p.act_quant) quant_fp8<T>({cview_of(cq), view_of(cq), kActBlock, 0});
  // q = c_q Wq_b^T over blocks of kOutBlock output rows: each block of the [H*d, q_rank] weight
  // (16-24 MiB in all) is packed and used while in cache (a prefill chunk of 256 tokens ran at
  // ~75 % of the SGEMM rate as one product, ~85 % in blocks). Per element the same dot product.
  constexpr int64_t kOutBlock = 512;
  auto Q = as_eigen(p.q);
  const auto W = as_eigen(p.wq_b, H * d, p.q_rank);
  for (int64_t o0 = 0; o0 < H * d; o0 += kOutBlock) {
    const int64_t n = std::min(kOutBlock, H * d - o0);
    Q.middleCols(o0, n).noalias() = cq * W.middleRows(o0, n).transpose();
  }
  View2<T> heads{p.q.data, T_ * H, d, d};
  rmsnorm<T>({heads, nullptr, heads, p.eps});
  rope<T>({p.q, H, d, p.pos0, 1, false, p.rope});
}

template void query_path<float>(const QueryPathParams<float>&);
template void query_path<double>(const QueryPathParams<double>&);

}  // namespace dsv4::ref
