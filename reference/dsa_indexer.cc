#include "reference/dsa_indexer.h"

#include <cmath>

#include "reference/eigen_util.h"
#include "reference/errors.h"
#include "reference/hadamard.h"
#include "reference/layernorm.h"
#include "reference/quant_fp8.h"

namespace dsv4::ref {

namespace {
// RoPE, Hadamard and the optional FP8 round trip on rows of `heads` heads of dI.
template <class T>
void finish(View2<T> v, int64_t heads, int64_t dI, int64_t pos0, const RopeConfig& table,
            bool quant) {
  ref::rope<T>({v, heads, dI, pos0, 1, false, table});
  require(v.ld == heads * dI, "dsa_indexer: outputs must be dense");
  View2<T> rows{v.data, v.rows * heads, dI, dI};
  hadamard<T>({rows, rows});
  if (quant) quant_fp8<T>({rows, rows, kActBlock, 0});
}
}  // namespace

template <class T>
void dsa_indexer_query(const DsaQueryParams<T>& p) {
  const int64_t T_ = p.cq.rows, HI = p.heads, dI = p.head_dim;
  require(p.q.rows == T_ && p.q.cols == HI * dI,
          "dsa_indexer_query: output 'q': expected shape " + shape_string({T_, HI * dI}));
  require(p.w.rows == T_ && p.w.cols == HI,
          "dsa_indexer_query: output 'w': expected shape " + shape_string({T_, HI}));
  as_eigen(p.q) = linear(p.cq, p.wq_b, HI * dI, p.cq.cols);
  finish(p.q, HI, dI, p.pos0, p.rope, p.quant);
  const T scale = T(1.0 / std::sqrt(double(HI)) / std::sqrt(double(dI)));
  as_eigen(p.w) = linear(p.x, p.weights_proj, HI, p.x.cols) * scale;
}

template <class T>
void dsa_indexer_keys(const DsaKeyParams<T>& p) {
  const int64_t T_ = p.x.rows, dI = p.head_dim;
  require(p.k.rows == T_ && p.k.cols == dI,
          "dsa_indexer_keys: output 'k': expected shape " + shape_string({T_, dI}));
  as_eigen(p.k) = linear(p.x, p.wk, dI, p.x.cols);
  layernorm<T>({p.k, p.norm_w, p.norm_b, p.k, p.eps});
  finish(p.k, 1, dI, p.pos0, p.rope, p.quant);
}

template <class T>
void dsa_indexer(const IndexerParams<T>& p) {
  IndexerParams<T> q = p;
  q.ratio = 1;
  indexer(q);
}

template void dsa_indexer_query<float>(const DsaQueryParams<float>&);
template void dsa_indexer_query<double>(const DsaQueryParams<double>&);
template void dsa_indexer_keys<float>(const DsaKeyParams<float>&);
template void dsa_indexer_keys<double>(const DsaKeyParams<double>&);
template void dsa_indexer<float>(const IndexerParams<float>&);
template void dsa_indexer<double>(const IndexerParams<double>&);

}  // namespace dsv4::ref
