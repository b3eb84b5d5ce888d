#include "reference/query_path.h"

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
  as_eigen(p.q) = linear(cview_of(cq), p.wq_b, H * d, p.q_rank);
  View2<T> heads{p.q.data, T_ * H, d, d};
  rmsnorm<T>({heads, nullptr, heads, p.eps});
  rope<T>({p.q, H, d, p.pos0, 1, false, p.rope});
}

template void query_path<float>(const QueryPathParams<float>&);
template void query_path<double>(const QueryPathParams<double>&);

}  // namespace dsv4::ref
