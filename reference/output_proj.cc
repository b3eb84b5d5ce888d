#include "reference/output_proj.h"

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/quant_fp8.h"

namespace dsv4::ref {

template <class T>
void output_proj(const OutputProjParams<T>& p) {
  const int64_t T_ = p.o.rows, H = p.heads, d = p.head_dim, g = p.groups, r = p.o_rank;
  require(H > 0 && p.o.cols == H * d, "output_proj: tensor 'o': expected " +
                                          std::to_string(H * d) + " columns, found " +
                                          std::to_string(p.o.cols));
  require(g > 0 && H % g == 0, "output_proj: key 'groups' (" + std::to_string(g) +
                                   ") must divide the head count " + std::to_string(H));
  const int64_t gw = (H / g) * d;  // input width of one group
  Mat<T> o = as_eigen(p.o);
  rope<T>({view_of(o), H, d, p.pos0, 1, true, p.rope});
  Mat<T> u(T_, g * r);
  for (int64_t k = 0; k < g; ++k) {
    u.middleCols(k * r, r).noalias() =
        o.middleCols(k * gw, gw) * as_eigen(p.wo_a + k * r * gw, r, gw).transpose();
  }
  if (p.act_quant) quant_fp8<T>({cview_of(u), view_of(u), kActBlock, 0});
  require(p.y.rows == T_, "output_proj: output 'y' has the wrong row count");
  as_eigen(p.y) = linear(cview_of(u), p.wo_b, p.y.cols, g * r);
}

template void output_proj<float>(const OutputProjParams<float>&);
template void output_proj<double>(const OutputProjParams<double>&);

}  // namespace dsv4::ref
