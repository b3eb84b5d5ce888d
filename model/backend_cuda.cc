// The CUDA model backend: DeviceBackend (model/backend_device.h) over CudaExec, which keeps the
// weights, activations and KV cache in device memory and runs the dsv4::cuda twins
// (optimized/). Built only with CUDA (model/backend_cuda_off.cc otherwise).
//
// Streams: every op runs on the legacy default stream (stream 0), so the ops' own synchronous
// copies (DeviceBuffer, workspace growth) are ordered with the kernels without extra events.
// Temporaries are stream-ordered allocations (cudaMallocAsync / cudaFreeAsync on stream 0), so
// freeing one never waits for the device. The one other stream is each host-resident Engram
// table's prefetcher (optimized/engram_prefetch.cuh: non-blocking, so its copies overlap the
// compute; the compute waits on its event before the mix reads the rows).
//
// Expert weights: FP4 routed / FP8 shared on the device in the checkpoint's block layouts,
// dequantised per expert right before its GEMMs (cuda::moe_compact), whenever the loaded floats
// are exactly representable (they are for FP4/FP8 checkpoints); FP32 otherwise. About 7.5x less
// device memory for FP4 experts than FP32.
//
// Workspaces: one AttentionLayerWorkspace per layer shape, i.e. per compression ratio (made on
// the first chunk of such a layer; remade when a longer chunk comes), one MoeWorkspace and one
// EngramMixWorkspace (remade likewise).
#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <utility>

#include "model/backend.h"
#include "model/backend_device.h"
#include "optimized/attention_layer.cuh"
#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/engram.cuh"
#include "optimized/engram_prefetch.cuh"
#include "optimized/hc_post.cuh"
#include "optimized/hc_pre.cuh"
#include "optimized/linear.cuh"
#include "optimized/compact_weights.cuh"
#include "optimized/moe.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rows.cuh"

namespace dsv4 {

namespace {

constexpr cudaStream_t kStream = 0;  // the legacy default stream: every op of the backend

// n elements of T in device memory, allocated and freed in stream order on kStream.
template <class T>
class StreamArray {
 public:
  StreamArray() = default;
  explicit StreamArray(size_t n) : n_(n) {
    if (n) DSV4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p_), n * sizeof(T), kStream));
  }
  ~StreamArray() {
    if (p_) (void)cudaFreeAsync(p_, kStream);  // a destructor must not throw
  }
  StreamArray(StreamArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  StreamArray& operator=(StreamArray&& o) noexcept {
    if (this != &o) {
      if (p_) (void)cudaFreeAsync(p_, kStream);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  StreamArray(const StreamArray&) = delete;
  StreamArray& operator=(const StreamArray&) = delete;
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

class CudaExec {
 public:
  template <class T>
  using Array = StreamArray<T>;
  using State = std::unique_ptr<cuda::DeviceAttentionLayerState>;
  using HashMirror = std::shared_ptr<cuda::DeviceEngramHash>;

  CudaExec() : s_(std::make_unique<Scratch>()) { cuda::keep_pool_memory(); }  // temporaries reuse pool memory

  template <class T>
  Array<T> array(size_t n) {
    return Array<T>(n);
  }
  template <class T>
  Array<T> to_array(const T* host, size_t n) {
    Array<T> a(n);
    // Pageable source: the call returns once the bytes are staged, so the host copy may go.
    if (n) DSV4_CUDA_CHECK(cudaMemcpyAsync(a.data(), host, n * sizeof(T), cudaMemcpyHostToDevice, kStream));
    return a;
  }
  template <class T>
  static Array<T> copy(const Array<T>& src) {
    Array<T> a(src.size());
    if (src.size())
      DSV4_CUDA_CHECK(cudaMemcpyAsync(a.data(), src.data(), src.size() * sizeof(T), cudaMemcpyDeviceToDevice, kStream));
    return a;
  }
  template <class T>
  void upload(T* dst, const T* host, size_t n) {
    if (n) DSV4_CUDA_CHECK(cudaMemcpy(dst, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  template <class T>
  void download(const T* src, T* host, size_t n) {
    if (n) DSV4_CUDA_CHECK(cudaMemcpy(host, src, n * sizeof(T), cudaMemcpyDeviceToHost));
  }

  State new_state(const AttentionLayerShape& shape, KvLayout layout) {
    require(layout != KvLayout::bf16, "--backend cuda: the device KV cache has the f32 and fp8 (deployment) layouts; "
                                      "bf16 is not implemented on the GPU");
    return std::make_unique<cuda::DeviceAttentionLayerState>(
        shape, layout == KvLayout::fp8 ? cuda::DeviceKvLayout::fp8 : cuda::DeviceKvLayout::f32);
  }
  static int64_t position(const State& s) { return s->pos(); }
  static int64_t bytes(const State& s) { return s->bytes(); }
  static State clone(const State&) {
    throw InputError("--backend cuda: a device KV cache cannot be copied (LayerCache::clone) yet");
  }

  void gather_rows(const float* src, int64_t src_rows, int64_t src_ld, const int32_t* idx, int64_t n, int64_t cols,
                   float* dst, int64_t dst_ld) {
    cuda::gather_rows(src, src_rows, src_ld, idx, n, cols, dst, dst_ld, kStream);
  }
  void spread_rows(const float* src, int64_t n, int64_t cols, int64_t s, float* dst, bool accumulate) {
    cuda::spread_rows(src, n, cols, s, dst, accumulate, kStream);
  }
  void hc_pre(const HcPreParams<float>& p) { cuda::hc_pre(p, kStream); }
  void hc_head(const HcHeadParams<float>& p) { cuda::hc_head(p, kStream); }
  void hc_post(const HcPostParams<float>& p) { cuda::hc_post(p, kStream); }
  void rmsnorm(const RmsNormParams<float>& p) { cuda::rmsnorm(p, kStream); }
  void quant_fp8(const QuantFp8Params<float>& p) { cuda::quant_fp8(p, kStream); }
  void linear(View2<const float> x, const float* w, int64_t out, View2<float> y) {
    require(y.rows == x.rows && y.cols == out, "linear: the output has the wrong shape");
    cuda::linear("model", s_->blas, x, w, out, y, kStream);
  }

  // The layers run one after another on kStream, so layers of one shape share a workspace (a
  // V4 model's layer shapes differ only in the compression ratio: at most three workspaces).
  // One per layer would hold q and o [T, H*d] for every layer: at T = 8192 that is 2 GiB a
  // layer for V4-Flash (H 64, d 512), 86 GiB over its 43 layers.
  void attention_layer(int64_t, const AttentionLayerParams<float>& p, View2<const float> x, View2<float> y,
                       State& st) {
    auto& ws = s_->attention[p.shape.ratio];
    if (!ws || ws->max_tokens() < x.rows || !same_dims(ws->shape(), p.shape))
      ws = std::make_unique<cuda::AttentionLayerWorkspace>(x.rows, p.shape);
    cuda::attention_layer_forward(p, x, y, *st, *ws, kStream);
  }

  // One layer's experts: the routed ones FP4 and the shared one FP8 on the device (the
  // checkpoint's encodings, optimized/compact_weights.cuh) when the floats are exactly
  // representable there (they are when they were loaded from those encodings), else FP32.
  struct Experts {
    std::unique_ptr<cuda::DeviceFp4Stack> w1, w3, w2;             // compact routed experts
    std::unique_ptr<cuda::DeviceFp8Weight> sw1, sw3, sw2;         // compact shared expert
    StreamArray<float> f1, f3, f2, fs1, fs3, fs2;                 // FP32 where not compact
    bool compact() const { return w1 != nullptr; }
  };
  Experts experts(ExpertTensors& t, const std::string& name) {
    Experts x;
    const int64_t E = t.experts, I = t.inter, D = t.dim;
    if (!t.w1.empty()) {
      try {
        x.w1 = std::make_unique<cuda::DeviceFp4Stack>(t.w1.data(), E, I, D, name + "experts.", ".w1.weight");
        x.w3 = std::make_unique<cuda::DeviceFp4Stack>(t.w3.data(), E, I, D, name + "experts.", ".w3.weight");
        x.w2 = std::make_unique<cuda::DeviceFp4Stack>(t.w2.data(), E, D, I, name + "experts.", ".w2.weight");
        s_->expert_bytes_compact += x.w1->bytes() + x.w3->bytes() + x.w2->bytes();
      } catch (const InputError&) {  // not FP4 values (e.g. a BF16 checkpoint): keep FP32
        x.w1.reset(), x.w3.reset(), x.w2.reset();
        x.f1 = to_array(t.w1.data(), t.w1.size()), x.f3 = to_array(t.w3.data(), t.w3.size());
        x.f2 = to_array(t.w2.data(), t.w2.size());
        s_->expert_bytes_fp32 += 4 * (t.w1.size() + t.w3.size() + t.w2.size());
      }
    }
    if (!t.shared_w1.empty()) {
      bool fp8 = false;
      if (x.compact()) {  // moe_compact takes the shared expert in FP8 or FP32
        try {
          x.sw1 = std::make_unique<cuda::DeviceFp8Weight>(t.shared_w1.data(), I, D, t.block, name + "shared_experts.w1.weight");
          x.sw3 = std::make_unique<cuda::DeviceFp8Weight>(t.shared_w3.data(), I, D, t.block, name + "shared_experts.w3.weight");
          x.sw2 = std::make_unique<cuda::DeviceFp8Weight>(t.shared_w2.data(), D, I, t.block, name + "shared_experts.w2.weight");
          s_->expert_bytes_compact += x.sw1->bytes() + x.sw3->bytes() + x.sw2->bytes();
          fp8 = true;
        } catch (const InputError&) {
          x.sw1.reset(), x.sw3.reset(), x.sw2.reset();
        }
      }
      if (!fp8) {
        x.fs1 = to_array(t.shared_w1.data(), t.shared_w1.size()), x.fs3 = to_array(t.shared_w3.data(), t.shared_w3.size());
        x.fs2 = to_array(t.shared_w2.data(), t.shared_w2.size());
        s_->expert_bytes_fp32 += 4 * (t.shared_w1.size() + t.shared_w3.size() + t.shared_w2.size());
      }
    }
    for (auto* v : {&t.w1, &t.w3, &t.w2, &t.shared_w1, &t.shared_w3, &t.shared_w2}) std::vector<float>().swap(*v);
    return x;
  }

  void moe(MoeParams<float>& p, const Experts& x) {
    const int64_t n = p.route.x.rows, D = p.route.x.cols, E = p.route.experts, k = p.route.topk;
    const cuda::MoeWeightForm form = x.compact() ? cuda::MoeWeightForm::compact : cuda::MoeWeightForm::fp32;
    auto& ws = s_->moe;
    if (!ws || ws->max_tokens() < n || ws->dim() != D || ws->experts() != E || ws->topk() != k ||
        ws->inter() != p.inter || (form == cuda::MoeWeightForm::compact && ws->form() != form))
      ws = std::make_unique<cuda::MoeWorkspace>(n, D, E, k, p.inter, form);
    p.shared_w1 = x.fs1.data(), p.shared_w3 = x.fs3.data(), p.shared_w2 = x.fs2.data();  // null unless FP32
    if (!x.compact()) {
      p.w1 = x.f1.data(), p.w3 = x.f3.data(), p.w2 = x.f2.data();
      cuda::moe(p, *ws, kStream);
      return;
    }
    cuda::MoeCompactWeights w;
    w.w1 = x.w1->view(), w.w3 = x.w3->view(), w.w2 = x.w2->view();
    if (x.sw1) w.shared_w1 = x.sw1->view(), w.shared_w3 = x.sw3->view(), w.shared_w2 = x.sw2->view();
    cuda::moe_compact(p, w, *ws, kStream);
  }
  // Routed expert e of x's layer (e < 0: the shared expert) over p's rows, in whatever form
  // experts() kept it; p.w1 / w3 / w2 are set here.
  void expert(ExpertParams<float>& p, const Experts& x, int64_t e, const std::string& where) {
    const bool shared = e < 0;
    const bool compact = shared ? x.sw1 != nullptr : x.compact();
    const cuda::MoeWeightForm form = compact ? cuda::MoeWeightForm::compact : cuda::MoeWeightForm::fp32;
    const int64_t m = p.x.rows, D = p.x.cols, I = p.inter;
    auto& ws = s_->expert;
    if (!ws || ws->max_tokens() < m || ws->dim() != D || ws->inter() != I ||
        (compact && ws->form() != cuda::MoeWeightForm::compact))
      ws = std::make_unique<cuda::ExpertWorkspace>(m, D, I, form);
    if (shared) {
      if (compact) return cuda::expert_compact(p, x.sw1->view(), x.sw3->view(), x.sw2->view(), *ws, kStream);
      require(x.fs1.data() != nullptr, "expert: " + where + " has no shared expert");
      p.w1 = x.fs1.data(), p.w3 = x.fs3.data(), p.w2 = x.fs2.data();
      return cuda::expert(p, *ws, kStream);
    }
    if (compact) return cuda::expert_compact(p, x.w1->view(), x.w3->view(), x.w2->view(), e, *ws, kStream);
    const int64_t count = I * D > 0 ? int64_t(x.f1.size()) / (I * D) : 0;
    require(e < count, "expert: expert " + std::to_string(e) + " is outside the " + std::to_string(count) + " of " + where);
    p.w1 = x.f1.data() + e * I * D, p.w3 = x.f3.data() + e * I * D, p.w2 = x.f2.data() + e * D * I;
    cuda::expert(p, *ws, kStream);
  }

  // Device bytes of the expert weights as kept: compact (FP4 / FP8 with scales) and FP32.
  size_t expert_bytes_compact() const { return s_->expert_bytes_compact; }
  size_t expert_bytes_fp32() const { return s_->expert_bytes_fp32; }

  HashMirror mirror(const EngramHash& h) { return std::make_shared<cuda::DeviceEngramHash>(h); }
  void engram_hash(const EngramHashParams& p, const HashMirror& m) { cuda::engram_hash(p, *m, kStream); }
  void engram_lookup(const EngramLookupParams<float>& p) { cuda::engram_lookup(p, kStream); }
  void engram_mix(const EngramMixParams<float>& p) {
    const int64_t n = p.x.rows, S = p.streams, D = p.x.cols / std::max<int64_t>(S, 1), hist = p.history.rows;
    auto& ws = s_->mix;
    if (!ws || ws->max_tokens() < n || ws->streams() != S || ws->dim() != D || ws->history_rows() != hist)
      ws = std::make_unique<cuda::EngramMixWorkspace>(n, S, D, hist);
    cuda::engram_mix(p, *ws, kStream);
  }
  // Host-resident table i: start copying the rows `rows` (host) into e (device).
  void prefetch(int64_t i, const EngramTableView& table, View2<const int64_t> rows, View2<float> e) {
    auto& pf = s_->prefetch[i];
    if (!pf || pf_tokens_[i] < rows.rows) {
      pf.reset();  // waits for its stream
      pf = std::make_unique<cuda::EngramPrefetcher>(table, cuda::EngramPrefetchMode::staged, rows.cols, rows.rows);
      pf_tokens_[i] = rows.rows;
    }
    // e was allocated in stream order on kStream (possibly from memory that kStream's queued
    // work still reads): the prefetch stream starts after the work queued there so far. At the
    // start of a forward (where the model prefetches) kStream is idle, so this costs nothing.
    if (!s_->queued) DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&s_->queued, cudaEventDisableTiming));
    DSV4_CUDA_CHECK(cudaEventRecord(s_->queued, kStream));
    DSV4_CUDA_CHECK(cudaStreamWaitEvent(pf->stream(), s_->queued, 0));
    pf->prefetch(rows, e);
  }
  void prefetch_wait(int64_t i) { s_->prefetch.at(i)->wait(kStream); }
  void prefetch_release(int64_t i) { s_->prefetch.at(i)->release(kStream); }
  void prefetch_drain(size_t i) {
    auto it = s_->prefetch.find(int64_t(i));
    if (it != s_->prefetch.end() && it->second) DSV4_CUDA_CHECK(cudaStreamSynchronize(it->second->stream()));
  }

 private:
  // The dimensions a workspace is sized by (attention_layer_forward checks these).
  static bool same_dims(const AttentionLayerShape& a, const AttentionLayerShape& b) {
    return a.dim == b.dim && a.heads == b.heads && a.head_dim == b.head_dim && a.q_rank == b.q_rank &&
           a.groups == b.groups && a.o_rank == b.o_rank && a.window == b.window && a.ratio == b.ratio &&
           a.index_heads == b.index_heads && a.index_dim == b.index_dim && a.index_topk == b.index_topk;
  }

  struct Scratch {
    ~Scratch() {
      if (queued) (void)cudaEventDestroy(queued);  // a destructor must not throw
    }
    cudaEvent_t queued = nullptr;  // kStream's work so far, for the prefetch streams to wait on
    cuda::BlasHandle blas;
    std::map<int64_t, std::unique_ptr<cuda::AttentionLayerWorkspace>> attention;  // per compression ratio
    std::unique_ptr<cuda::MoeWorkspace> moe;
    std::unique_ptr<cuda::ExpertWorkspace> expert;  // Backend::expert (expert-parallel ranks)
    std::unique_ptr<cuda::EngramMixWorkspace> mix;
    std::map<int64_t, std::unique_ptr<cuda::EngramPrefetcher>> prefetch;  // per Engram layer
    size_t expert_bytes_compact = 0, expert_bytes_fp32 = 0;  // what experts() kept, in each form
  };
  std::unique_ptr<Scratch> s_;
  std::map<int64_t, int64_t> pf_tokens_;  // each prefetcher's max tokens
};

}  // namespace

std::string cuda_backend_problem() {
  if (cuda::device_count() == 0) return cuda::device_summary();
  return "";
}

int cuda_bind_rank(int rank) {
  const std::string problem = cuda_backend_problem();
  if (!problem.empty()) throw InputError("--backend cuda: " + problem);
  const int device = rank % cuda::device_count();
  DSV4_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

std::unique_ptr<Backend> make_cuda_backend(ModelWeights weights, BackendOptions options) {
  const std::string problem = cuda_backend_problem();
  if (!problem.empty()) throw InputError("--backend cuda: " + problem);
  auto b = std::make_unique<DeviceBackend<CudaExec>>("cuda", CudaExec(), std::move(weights), options);
  DSV4_CUDA_CHECK(cudaStreamSynchronize(kStream));  // the weights are on the device
  return b;
}

}  // namespace dsv4
