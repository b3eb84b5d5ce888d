// HostExec: the executor of model/backend_device.h over host memory and the dsv4::ref ops. A
// DeviceBackend<HostExec> runs the CUDA backend's composition (every pointer, row offset,
// stride, workspace-free flow of model/backend_device.h) with the reference's arithmetic, so
// it is compared with the reference backend on a machine without a GPU. Not a backend anyone
// runs: the CUDA executor (model/backend_cuda.cc) is the product; this one tests its shell.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <Eigen/Dense>

#include "model/backend_device.h"
#include "model/kv_cache.h"
#include "reference/attention_layer.h"
#include "reference/engram.h"
#include "reference/hc_post.h"
#include "reference/hc_pre.h"
#include "reference/moe.h"
#include "reference/quant_fp8.h"
#include "reference/rmsnorm.h"

namespace dsv4::test {

// Counts what the executor was asked to do, so tests can tell which path ran.
struct HostExecCounts {
  int64_t prefetches = 0, waits = 0, releases = 0, device_hashes = 0, drains = 0;
  // The most output rows (n * s) of one spread_rows call: the CUDA twin's grid, one block a row.
  int64_t max_spread_rows = 0;
};

class HostExec {
 public:
  template <class T>
  using Array = std::vector<T>;
  using State = AttentionLayerState<float>;
  struct HashMirror {};

  explicit HostExec(std::shared_ptr<HostExecCounts> counts = std::make_shared<HostExecCounts>()) : n_(std::move(counts)) {}

  template <class T>
  Array<T> array(size_t n) {
    // Poisoned like fresh device memory could be: a read before a write shows up as NaN.
    if constexpr (std::is_floating_point_v<T>) return Array<T>(n, std::numeric_limits<T>::quiet_NaN());
    return Array<T>(n, T(-7));
  }
  template <class T>
  Array<T> to_array(const T* host, size_t n) {
    return Array<T>(host, host + n);
  }
  template <class T>
  static Array<T> copy(const Array<T>& a) {
    return a;
  }
  template <class T>
  void upload(T* dst, const T* host, size_t n) {
    std::copy_n(host, n, dst);
  }
  template <class T>
  void download(const T* src, T* host, size_t n) {
    std::copy_n(src, n, host);
  }

  State new_state(const AttentionLayerShape& shape, KvLayout layout) {
    return ref::attention_layer_state_init<float>(shape, v4_entry_stores<float>(layout, shape.rope.rope_dim));
  }
  static int64_t position(const State& s) { return s.pos; }
  static int64_t bytes(const State& s) {
    int64_t b = 0;
    for (const auto* e : {s.window.get(), s.comp.get(), s.index_keys.get()})
      if (e) b += e->bytes();
    return b + int64_t((s.comp_state.kv.size() + s.comp_state.score.size() + s.index_state.kv.size() +
                        s.index_state.score.size()) * sizeof(float));
  }
  static State clone(const State& s) { return s; }

  void gather_rows(const float* src, int64_t src_rows, int64_t src_ld, const int32_t* idx, int64_t n, int64_t cols,
                   float* dst, int64_t dst_ld) {
    for (int64_t i = 0; i < n; ++i) {
      if (idx[i] < 0 || idx[i] >= src_rows) throw InputError("HostExec::gather_rows: index out of range");
      std::copy_n(src + idx[i] * src_ld, cols, dst + i * dst_ld);
    }
  }
  void spread_rows(const float* src, int64_t n, int64_t cols, int64_t s, float* dst, bool accumulate) {
    n_->max_spread_rows = std::max(n_->max_spread_rows, n * s);
    for (int64_t o = 0; o < n * s; ++o)
      for (int64_t c = 0; c < cols; ++c)
        dst[o * cols + c] = accumulate ? dst[o * cols + c] + src[(o / s) * cols + c] : src[(o / s) * cols + c];
  }
  void hc_pre(const HcPreParams<float>& p) { ref::hc_pre(p); }
  void hc_head(const HcHeadParams<float>& p) { ref::hc_head(p); }
  void hc_post(const HcPostParams<float>& p) { ref::hc_post<float>(p); }
  void rmsnorm(const RmsNormParams<float>& p) { ref::rmsnorm<float>(p); }
  void quant_fp8(const QuantFp8Params<float>& p) { ref::quant_fp8<float>(p); }
  void linear(View2<const float> x, const float* w, int64_t out, View2<float> y) {
    using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const M, 0, Eigen::OuterStride<>> X(x.data, x.rows, x.cols, Eigen::OuterStride<>(x.ld));
    Eigen::Map<const M> W(w, out, x.cols);
    Eigen::Map<M, 0, Eigen::OuterStride<>> Y(y.data, y.rows, y.cols, Eigen::OuterStride<>(y.ld));
    Y.noalias() = X * W.transpose();
  }
  void attention_layer(int64_t, const AttentionLayerParams<float>& p, View2<const float> x, View2<float> y, State& s) {
    ref::attention_layer_forward(p, x, y, s);
  }
  // The expert weights as they came, in host memory.
  struct Experts {
    std::vector<float> w1, w3, w2, shared_w1, shared_w3, shared_w2;
  };
  Experts experts(ExpertTensors& t, const std::string&) {
    auto take = [](std::vector<float>& v) {
      std::vector<float> r;
      r.swap(v);
      return r;
    };
    return {take(t.w1), take(t.w3), take(t.w2), take(t.shared_w1), take(t.shared_w3), take(t.shared_w2)};
  }
  void moe(MoeParams<float>& p, const Experts& x) {
    auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    p.w1 = ptr(x.w1), p.w3 = ptr(x.w3), p.w2 = ptr(x.w2);
    p.shared_w1 = ptr(x.shared_w1), p.shared_w3 = ptr(x.shared_w3), p.shared_w2 = ptr(x.shared_w2);
    ref::moe(p);
  }
  void expert(ExpertParams<float>& p, const Experts& x, int64_t e, const std::string& where) {
    const int64_t I = p.inter, D = p.x.cols;
    const bool shared = e < 0;
    const int64_t count = I * D > 0 ? int64_t(x.w1.size()) / (I * D) : 0;
    if (shared ? x.shared_w1.empty() : e >= count) throw InputError("HostExec::expert: " + where + " has no such expert");
    p.w1 = shared ? x.shared_w1.data() : x.w1.data() + e * I * D;
    p.w3 = shared ? x.shared_w3.data() : x.w3.data() + e * I * D;
    p.w2 = shared ? x.shared_w2.data() : x.w2.data() + e * D * I;
    ref::expert<float>(p);
  }

  HashMirror mirror(const EngramHash&) { return {}; }
  void engram_hash(const EngramHashParams& p, const HashMirror&) {
    ++n_->device_hashes;
    ref::engram_hash(p);
  }
  void engram_lookup(const EngramLookupParams<float>& p) { ref::engram_lookup<float>(p); }
  void engram_mix(const EngramMixParams<float>& p) { ref::engram_mix(p); }
  void prefetch(int64_t, const EngramTableView& table, View2<const int64_t> rows, View2<float> e) {
    ++n_->prefetches;
    ref::engram_lookup<float>({table, rows, e});
  }
  void prefetch_wait(int64_t) { ++n_->waits; }
  void prefetch_release(int64_t) { ++n_->releases; }
  void prefetch_drain(size_t) { ++n_->drains; }

 private:
  std::shared_ptr<HostExecCounts> n_;
};

}  // namespace dsv4::test
