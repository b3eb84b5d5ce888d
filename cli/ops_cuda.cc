// The CUDA backend of dsv4 op (cli/op_cuda.h), compiled only in CUDA builds: one runner per op
// whose optimized/ twin exists. A runner uploads the op's inputs (already decoded and checked by
// cli/op_runner.cc), runs the twin on the default stream, waits for it, and downloads the
// outputs into the context, which op_runner.cc then writes exactly as for the reference.
//
// Adding an op: one entry in cuda_runners() below, written like the op's reference run in
// cli/ops_*.cc with device buffers in place of host vectors:
//   {"name", [](Ctx& c) {
//      const int64_t R = c.dims["R"], d = c.dims["d"];    // letters bound by the runner
//      const Dev x = upload(c, "x"), w = upload(c, "w");  // inputs (optional: empty)
//      Out y(c, "y", {R, d});                             // each output, shape as documented
//      cuda::twin({view2(x.data(), R, d), optional_ptr(w), y.view(R, d), c.keys.real("eps")});
//      y.fetch();                                         // wait, download into the context
//    }},
// and set the op's cuda_kernel in cli/ops_*.cc (attach_cuda_runners refuses a runner without
// one); `dsv4 op --list --json` then says "kernel, runs in dsv4 op". Integer inputs:
// upload_int (int64 on the device); integer outputs: OutI32.
#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <type_traits>

#include "cli/op_cuda.h"
#include "cli/op_attention_layer.h"
#include "cli/op_engram.h"
#include "cli/op_rope_keys.h"
#include "optimized/attention.cuh"
#include "optimized/attention_layer.cuh"
#include "optimized/compressor.cuh"
#include "optimized/device.cuh"
#include "optimized/dsa_indexer.cuh"
#include "optimized/engram.cuh"
#include "optimized/hadamard.cuh"
#include "optimized/hc_post.cuh"
#include "optimized/hc_pre.cuh"
#include "optimized/indexer.cuh"
#include "optimized/indexer_query.cuh"
#include "optimized/layernorm.cuh"
#include "optimized/mla.cuh"
#include "optimized/moe.cuh"
#include "optimized/moe_route.cuh"
#include "optimized/output_proj.cuh"
#include "optimized/quant_fp4.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/query_path.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rope.cuh"
#include "optimized/window_kv.cuh"
#include "optimized/sinkhorn.cuh"

namespace dsv4::cli {

namespace {

using Ctx = OpContext<float>;
using Dev = cuda::DeviceBuffer<float>;

// The device copy of input `name`; an empty buffer when the (optional) input is absent.
Dev upload(const Ctx& c, const std::string& name) { return c.has(name) ? Dev(c.real(name)) : Dev(); }

// An optional input's device pointer: nullptr when absent (as OpContext::ptr on the host).
const float* optional_ptr(const Dev& b) { return b.empty() ? nullptr : b.data(); }

// Integer indices [T, k] -> int32, each within [-1, n): the reference op's value check and
// message (`op` names it), made on the host because the twin reads the values on the device.
std::vector<int32_t> indices_within(const std::string& op, const std::vector<int64_t>& v, int64_t k, int64_t n) {
  std::vector<int32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    require(v[i] >= -1 && v[i] < n, op + ": tensor 'indices': value " + std::to_string(v[i]) + " at [" +
                                        std::to_string(int64_t(i) / k) + ", " + std::to_string(int64_t(i) % k) +
                                        "] is outside [-1, " + std::to_string(n) + ")");
    out[i] = int32_t(v[i]);
  }
  return out;
}

// The device copy of integer input `name` (I32/I64 in the file, int64 here); empty when absent.
[[maybe_unused]] cuda::DeviceBuffer<int64_t> upload_int(const Ctx& c, const std::string& name) {
  return c.has(name) ? cuda::DeviceBuffer<int64_t>(c.integer(name)) : cuda::DeviceBuffer<int64_t>();
}

// One output: a device buffer of the output's size; fetch() waits for the device and copies the
// result into the context's output `name` (shape as documented in the op's OutputSpec): a real
// output (Out, float) or an integer one (OutI32, written as I32).
template <class T>
class DeviceOutput {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t>, "outputs are f32 or i32");

 public:
  DeviceOutput(Ctx& c, std::string name, std::vector<int64_t> shape)
      : c_(c), name_(std::move(name)), shape_(std::move(shape)), buf_(numel(shape_)) {}
  T* data() { return buf_.data(); }
  cuda::DeviceBuffer<T>& buffer() { return buf_; }
  View2<T> view(int64_t rows, int64_t cols) { return view2(buf_.data(), rows, cols); }
  void fetch() {
    DSV4_CUDA_CHECK(cudaDeviceSynchronize());  // a failed kernel surfaces here, as CudaError
    std::vector<T>* host;
    if constexpr (std::is_same_v<T, float>)
      host = &c_.out(name_, shape_);
    else
      host = &c_.out_i32(name_, shape_);
    buf_.download(host->data(), host->size());
  }

 private:
  static size_t numel(const std::vector<int64_t>& s) {
    size_t n = 1;
    for (int64_t d : s) n *= size_t(d);
    return n;
  }
  Ctx& c_;
  std::string name_;
  std::vector<int64_t> shape_;
  cuda::DeviceBuffer<T> buf_;
};
using Out = DeviceOutput<float>;
using OutI32 = DeviceOutput<int32_t>;

using Runner = std::function<void(Ctx&)>;

// The router inputs of moe_route and moe on the device, and its outputs (ids, weights), with the
// reference run's checks (cli/ops_mhc_moe.cc route_params, then ref::moe_route's) made on the
// host, where the hash tables' values are (the twin reads them on the device).
struct DeviceRoute {
  bool inputs_checked;  // first member: the reference run's input checks come before any upload
  Dev x, gate, bias;
  cuda::DeviceBuffer<int64_t> tid2eid, ids;
  OutI32 experts;
  Out weights;
  MoeRouteParams<float> p;

  // cli/ops_mhc_moe.cc route_params' checks of the hash inputs, in its order.
  static bool check_inputs(const Ctx& c, const std::string& op) {
    if (c.has("tid2eid")) {
      require(c.has("ids"), "op '" + op + "': tensor 'ids' [T] is required with 'tid2eid'");
      const auto& sh = c.shape("tid2eid");
      const int64_t k = c.keys.integer("topk");
      require(sh[1] == k, "op '" + op + "': tensor 'tid2eid': expected shape [V, topk] = [" +
                              std::to_string(sh[0]) + ", " + std::to_string(k) + "], found " + shape_string(sh));
    }
    return true;
  }

  // ref::moe_route's first check, before the outputs [T, topk] are sized by topk.
  static int64_t checked_topk(const Ctx& c) {
    const int64_t k = c.keys.integer("topk"), E = c.dims["E"];
    require(E > 0 && k > 0 && k <= E, "moe_route: key 'topk' (" + std::to_string(k) +
                                          ") must be in [1, experts = " + std::to_string(E) + "]");
    return k;
  }

  DeviceRoute(Ctx& c, const std::string& op)
      : inputs_checked(check_inputs(c, op)), x(upload(c, "x")), gate(upload(c, "gate")), bias(upload(c, "bias")),
        experts(c, "experts", {c.dims["T"], checked_topk(c)}),
        weights(c, "weights", {c.dims["T"], checked_topk(c)}) {
    const int64_t T_ = c.dims["T"], D = c.dims["D"], E = c.dims["E"], k = c.keys.integer("topk");
    p.x = view2<const float>(x.data(), T_, D);
    p.gate = gate.data();
    p.bias = optional_ptr(bias);
    p.experts = E;
    p.topk = k;
    p.route_scale = c.keys.real("route_scale");
    const std::string score = c.keys.choice("score", {"sqrtsoftplus", "sigmoid", "softmax"});
    p.score = score == "sigmoid" ? ScoreFunc::sigmoid : score == "softmax" ? ScoreFunc::softmax : ScoreFunc::sqrt_softplus;
    p.chosen = experts.view(T_, k);
    p.weights = weights.view(T_, k);
    if (c.has("tid2eid")) {
      const auto& sh = c.shape("tid2eid");
      p.tid2eid = view2<const int64_t>(c.integer("tid2eid").data(), sh[0], sh[1]);  // host, for the checks
      p.ids = c.integer("ids").data();
      cuda::validate_moe_route(p);
      cuda::check_hash_routing(p.tid2eid, p.ids, T_, E);
      tid2eid = upload_int(c, "tid2eid");
      ids = upload_int(c, "ids");
      p.tid2eid.data = tid2eid.data();
      p.ids = ids.data();
    }
  }
};

// Op name -> CUDA runner. One entry per op; keys and letters as in the op's reference run.
const std::map<std::string, Runner>& cuda_runners() {
  static const std::map<std::string, Runner> table = {
      {"rmsnorm",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], d = c.dims["d"];
         const Dev x = upload(c, "x"), w = upload(c, "w");
         Out y(c, "y", {R, d});
         cuda::rmsnorm({view2(x.data(), R, d), optional_ptr(w), y.view(R, d), c.keys.real("eps")});
         y.fetch();
       }},
      {"layernorm",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], d = c.dims["d"];
         const Dev x = upload(c, "x"), w = upload(c, "w"), b = upload(c, "b");
         Out y(c, "y", {R, d});
         cuda::layernorm({view2(x.data(), R, d), optional_ptr(w), optional_ptr(b), y.view(R, d),
                          c.keys.real("eps")});
         y.fetch();
       }},
      {"rope",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], h = c.dims["h"], d = c.dims["d"];
         Out y(c, "y", c.shape("x"));
         y.buffer().upload(c.real("x"));  // rotated in place: the output starts as x
         RopeParams<float> p{y.view(R, h * d), h, d, c.keys.integer("pos0"), c.keys.integer("pos_step"),
                             c.keys.flag("inverse"), rope_from_keys(c.keys, "v4-swa")};
         cuda::rope(p);
         y.fetch();
       }},
      {"hadamard",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], d = c.dims["d"];
         const Dev x = upload(c, "x");
         Out y(c, "y", {R, d});
         cuda::hadamard({view2(x.data(), R, d), y.view(R, d)});
         y.fetch();
       }},
      {"quant_fp8",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], d = c.dims["d"];
         const Dev x = upload(c, "x");
         Out y(c, "y", {R, d});
         cuda::quant_fp8({view2(x.data(), R, d), y.view(R, d), c.keys.integer("block"), c.keys.integer("dims")});
         y.fetch();
       }},
      {"quant_fp4",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], d = c.dims["d"];
         const Dev x = upload(c, "x");
         Out y(c, "y", {R, d});
         cuda::quant_fp4({view2(x.data(), R, d), y.view(R, d), c.keys.integer("block")});
         y.fetch();
       }},
      // mHC (optimized/sinkhorn.cuh, hc_pre.cuh, hc_post.cuh).
      {"sinkhorn",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], n = c.dims["n"];
         const Dev logits = upload(c, "logits");
         Out m(c, "m", {R, n, n});
         cuda::sinkhorn({logits.data(), m.data(), R, n, c.keys.integer("iters"), c.keys.real("eps")});
         m.fetch();
       }},
      {"hc_pre",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
         const Dev x = upload(c, "x"), fn = upload(c, "fn"), base = upload(c, "base"), scale = upload(c, "scale");
         Out u(c, "u", {T_, D}), post(c, "post", {T_, n}), comb(c, "comb", {T_, n, n});
         HcPreParams<float> p;
         p.x = view2<const float>(x.data(), T_, n * D);
         p.fn = fn.data();
         p.base = base.data();
         p.scale = scale.data();
         p.n = n;
         p.iters = c.keys.integer("iters");
         p.eps = c.keys.real("eps");
         p.norm_eps = c.keys.real("norm_eps");
         p.u = u.view(T_, D);
         p.post = post.view(T_, n);
         p.comb = comb.view(T_, n * n);
         cuda::hc_pre(p);
         u.fetch();
         post.fetch();
         comb.fetch();
       }},
      {"hc_head",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
         const Dev x = upload(c, "x"), fn = upload(c, "fn"), base = upload(c, "base"), scale = upload(c, "scale");
         Out u(c, "u", {T_, D});
         HcHeadParams<float> p;
         p.x = view2<const float>(x.data(), T_, n * D);
         p.fn = fn.data();
         p.base = base.data();
         p.scale = scale.data();
         p.n = n;
         p.eps = c.keys.real("eps");
         p.norm_eps = c.keys.real("norm_eps");
         p.u = u.view(T_, D);
         cuda::hc_head(p);
         u.fetch();
       }},
      {"hc_post",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], n = c.dims["n"], D = c.dims["D"];
         const Dev x = upload(c, "x"), f = upload(c, "f"), post = upload(c, "post"), comb = upload(c, "comb");
         Out y(c, "y", {T_, n, D});
         cuda::hc_post({view2<const float>(x.data(), T_, n * D), view2<const float>(f.data(), T_, D),
                        view2<const float>(post.data(), T_, n), view2<const float>(comb.data(), T_, n * n), n,
                        y.view(T_, n * D)});
         y.fetch();
       }},
      // Attention, indexer, compressor, Engram (bench helper cbch): the checks the reference
      // makes on host-side integer VALUES (the twins read them on the device and do not) are
      // made here first, with the reference's messages, so both backends refuse the same files.
      {"attention",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], H = c.dims["H"], d = c.dims["d"], Tk = c.dims["Tk"];
         const int64_t N = c.has("comp") ? c.dims["N"] : 0;
         const Dev q = upload(c, "q"), kv = upload(c, "kv"), comp = upload(c, "comp"), sink = upload(c, "sink");
         cuda::DeviceBuffer<int32_t> idx;
         int64_t k = 0;
         if (c.has("indices")) {
           k = c.dims["k"];
           idx = cuda::DeviceBuffer<int32_t>(indices_within("attention", c.integer("indices"), k, N));
         }
         Out o(c, "o", {T_, H, d}), lse(c, "lse", {T_, H});
         AttentionParams<float> p;
         p.q = view2<const float>(q.data(), T_, H * d);
         p.kv = view2<const float>(kv.data(), Tk, d);
         p.comp = N ? view2<const float>(comp.data(), N, d) : View2<const float>{nullptr, 0, d, d};
         p.sink = sink.data();
         if (k) p.indices = view2<const int32_t>(idx.data(), T_, k);
         p.heads = H;
         p.ratio = c.keys.integer("ratio");
         p.window = c.keys.integer("window");
         p.scale = c.keys.has("scale") ? c.keys.real("scale") : 0.0;
         p.pos0 = c.keys.integer("pos0");
         p.o = o.view(T_, H * d);
         p.lse = lse.view(T_, H);
         cuda::attention(p);
         o.fetch();
         lse.fetch();
       }},
      {"indexer",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], N = c.dims["N"], HI = c.dims["HI"], dI = c.dims["dI"];
         const int64_t topk = c.keys.integer("topk");
         require(topk > 0, "op 'indexer': key 'topk': expected a positive integer, found " + std::to_string(topk));
         const Dev q = upload(c, "q"), k = upload(c, "k"), w = upload(c, "w");
         Out scores(c, "scores", {T_, N});
         OutI32 indices(c, "indices", {T_, topk});
         IndexerParams<float> p;
         p.q = view2<const float>(q.data(), T_, HI * dI);
         p.k = view2<const float>(k.data(), N, dI);
         p.w = view2<const float>(w.data(), T_, HI);
         p.heads = HI;
         p.ratio = c.keys.integer("ratio");
         p.topk = topk;
         p.pos0 = c.keys.integer("pos0");
         p.scores = scores.view(T_, N);
         p.indices = indices.view(T_, topk);
         cuda::indexer(p);
         scores.fetch();
         indices.fetch();
       }},
      {"indexer_query",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], HI = c.dims["HI"], dI = c.dims["dI"], D = c.dims["D"], qr = c.dims["q_rank"];
         const Dev cq = upload(c, "cq"), x = upload(c, "x"), wq_b = upload(c, "wq_b"), wp = upload(c, "weights_proj");
         Out q(c, "q", {T_, HI, dI}), w(c, "w", {T_, HI});
         IndexerQueryParams<float> p;
         p.cq = view2<const float>(cq.data(), T_, qr);
         p.x = view2<const float>(x.data(), T_, D);
         p.wq_b = wq_b.data();
         p.weights_proj = wp.data();
         p.heads = HI;
         p.head_dim = dI;
         p.pos0 = c.keys.integer("pos0");
         p.rope = rope_from_keys(c.keys, "v4-compressed");
         p.quant = c.keys.flag("quant");
         p.act_quant = c.keys.flag("act_quant");
         p.q = q.view(T_, HI * dI);
         p.w = w.view(T_, HI);
         cuda::indexer_query(p);
         q.fetch();
         w.fetch();
       }},
      // The CUDA compressor through its device state (cuda::compressor_ingest): path=prefill
      // ingests x as one chunk (so its checks run even for T = 0, as the reference's prefill),
      // path=decode one token per call; both write entries and the state after T tokens.
      {"compressor",
       [](Ctx& c) {
         const bool decode = c.keys.choice("path", {"prefill", "decode"}) == "decode";
         const int64_t T_ = c.dims["T"], m = c.dims["m"], dc = c.dims["dc"], D = c.dims["D"];
         const std::string q = c.keys.choice("quant", {"none", "fp8", "fp4_hadamard"});
         CompressorParams<float> p;
         p.shape = {D, dc, m, c.dims["c"] == 2};
         const Dev x = upload(c, "x"), wkv = upload(c, "wkv"), wgate = upload(c, "wgate"), ape = upload(c, "ape"),
                   norm = upload(c, "norm");
         p.w = {wkv.data(), wgate.data(), ape.data(), norm.data()};
         p.rope = rope_from_keys(c.keys, "v4-compressed");
         p.quant = q == "fp8" ? CompressorQuant::fp8 : q == "fp4_hadamard" ? CompressorQuant::fp4_hadamard
                                                                            : CompressorQuant::none;
         p.eps = c.keys.real("eps");
         Out entries(c, "entries", {T_ / m, dc});
         cuda::CompressorWorkspace ws(decode ? std::min<int64_t>(T_, 1) : T_, p.shape);
         cuda::DeviceCompressorState st(p.shape);
         const View2<const float> xv = view2<const float>(x.data(), T_, D);
         const View2<float> ev = entries.view(T_ / m, dc);
         int64_t n = 0;  // entries written
         auto ingest = [&](int64_t t, int64_t len) {  // tokens [t, t + len)
           const int64_t E = cuda::compressor_entries_emitted(t, len, m);
           n += cuda::compressor_ingest(p, xv.slice_rows(t, len), st, ev.slice_rows(n, E), ws);
         };
         if (decode)
           for (int64_t t = 0; t < T_; ++t) ingest(t, 1);
         else
           ingest(0, T_);
         entries.fetch();
         const CompressorState<float> h = cuda::download_state(st);
         c.out("state_kv", {h.rows, h.width}) = h.kv;
         c.out("state_score", {h.rows, h.width}) = h.score;
       }},
      // The per-token paths of an attention layer (cpth): keys and letters as in their reference
      // runs (cli/ops_attention.cc).
      {"query_path",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], D = c.dims["D"], H = c.dims["H"], d = c.dims["d"], qr = c.dims["q_rank"];
         const Dev x = upload(c, "x"), wq_a = upload(c, "wq_a"), q_norm = upload(c, "q_norm"), wq_b = upload(c, "wq_b");
         Out cq(c, "cq", {T_, qr}), q(c, "q", {T_, H, d});
         QueryPathParams<float> p;
         p.x = view2<const float>(x.data(), T_, D);
         p.wq_a = wq_a.data();
         p.q_norm = q_norm.data();
         p.wq_b = wq_b.data();
         p.q_rank = qr;
         p.heads = H;
         p.head_dim = d;
         p.pos0 = c.keys.integer("pos0");
         p.rope = rope_from_keys(c.keys, "v4-swa");
         p.eps = c.keys.real("eps");
         p.act_quant = c.keys.flag("act_quant");
         p.cq = cq.view(T_, qr);
         p.q = q.view(T_, H * d);
         cuda::query_path(p);
         cq.fetch();
         q.fetch();
       }},
      {"window_kv",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], D = c.dims["D"], d = c.dims["d"];
         const Dev x = upload(c, "x"), wkv = upload(c, "wkv"), kv_norm = upload(c, "kv_norm");
         Out kv(c, "kv", {T_, d});
         WindowKvParams<float> p;
         p.x = view2<const float>(x.data(), T_, D);
         p.wkv = wkv.data();
         p.kv_norm = kv_norm.data();
         p.head_dim = d;
         p.pos0 = c.keys.integer("pos0");
         p.rope = rope_from_keys(c.keys, "v4-swa");
         p.eps = c.keys.real("eps");
         p.quant = c.keys.flag("quant");
         p.act_quant = c.keys.flag("act_quant");
         p.kv = kv.view(T_, d);
         cuda::window_kv(p);
         kv.fetch();
       }},
      {"output_proj",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], H = c.dims["H"], d = c.dims["d"], GR = c.dims["GR"], Hgd = c.dims["Hgd"];
         const int64_t D = c.dims["D"];
         // groups as the reference run takes them: the key (checked against wo_a's width there,
         // with the same message here), or wo_a's width (H/g)*d.
         int64_t g = 0;
         if (c.keys.given("groups")) {
           g = c.keys.integer("groups");
           require(g > 0 && H % g == 0 && (H / g) * d == Hgd,
                   "op 'output_proj': key 'groups' = " + std::to_string(g) + " does not match wo_a's " +
                       std::to_string(Hgd) + " columns with H = " + std::to_string(H) + ", d = " + std::to_string(d));
         } else {
           require(Hgd > 0 && (H * d) % Hgd == 0 && Hgd % d == 0,
                   "op 'output_proj': tensor 'wo_a': " + std::to_string(Hgd) + " columns is not (H/g)*d for any g (H = " +
                       std::to_string(H) + ", d = " + std::to_string(d) + ")");
           g = H * d / Hgd;
         }
         require(GR % g == 0, "op 'output_proj': tensor 'wo_a': " + std::to_string(GR) +
                                  " rows is not a multiple of groups = " + std::to_string(g));
         const Dev o = upload(c, "o"), wo_a = upload(c, "wo_a"), wo_b = upload(c, "wo_b");
         Out y(c, "y", {T_, D});
         OutputProjParams<float> p;
         p.o = view2<const float>(o.data(), T_, H * d);
         p.wo_a = wo_a.data();
         p.wo_b = wo_b.data();
         p.heads = H;
         p.head_dim = d;
         p.groups = g;
         p.o_rank = GR / g;
         p.pos0 = c.keys.integer("pos0");
         p.rope = rope_from_keys(c.keys, "v4-swa");
         p.act_quant = c.keys.flag("act_quant");
         p.y = y.view(T_, D);
         cuda::output_proj(p);
         y.fetch();
       }},
      // The whole attention sub-layer (catl): prefill from position 0 on a fresh device state,
      // with the reference run's shape, groups, rope and numerics (cli/ops_attention.cc).
      {"attention_layer",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], ratio = c.keys.integer("ratio");
         AttentionLayerParams<float> p;
         p.shape = attention_layer_shape(c.keys, c.dims);
         p.numerics = attention_layer_numerics(c.keys);
         std::map<std::string, Dev> dev;  // every weight present, on the device
         p.w = attention_layer_weights<float>(
             [&](const std::string& n) { return optional_ptr(dev.emplace(n, upload(c, n)).first->second); });
         const AttentionLayerShape& s = p.shape;
         const Dev x = upload(c, "x");
         Out y(c, "y", {T_, s.dim});
         cuda::DeviceAttentionLayerState st(s);
         cuda::AttentionLayerWorkspace ws(T_, s);
         cuda::attention_layer_forward(p, view2<const float>(x.data(), T_, s.dim), y.view(T_, s.dim), st, ws);
         y.fetch();
         if (ratio == kCsaRatio) {
           OutI32 topk(c, "topk", {T_, s.index_topk});
           const View2<const int32_t> sel = ws.selection();
           if (sel.rows)
             DSV4_CUDA_CHECK(cudaMemcpy(topk.data(), sel.data, topk.buffer().bytes(), cudaMemcpyDeviceToDevice));
           topk.fetch();
         }
       }},
      // V3 / V3.2 absorbed MLA (cpth): as the reference run in cli/ops_predecessors.cc, the
      // indices' values checked here with ref::mla's message (the twin reads them on the device).
      {"mla",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], H = c.dims["H"], dk = c.dims["dk"], Tk = c.dims["Tk"];
         const int64_t dl = dk - c.keys.integer("rope_dim");
         require(dl > 0, "op 'mla': key 'rope_dim' must be smaller than dk = " + std::to_string(dk));
         const Dev q = upload(c, "q"), kv = upload(c, "kv");
         cuda::DeviceBuffer<int32_t> idx;
         int64_t k = 0;
         if (c.has("indices")) {
           k = c.dims["k"];
           idx = cuda::DeviceBuffer<int32_t>(indices_within("mla", c.integer("indices"), k, Tk));
         }
         Out o(c, "o", {T_, H, dl}), lse(c, "lse", {T_, H});
         MlaParams<float> p;
         p.q = view2<const float>(q.data(), T_, H * dk);
         p.kv = view2<const float>(kv.data(), Tk, dk);
         if (c.has("indices")) p.indices = view2<const int32_t>(idx.data(), T_, k);
         p.heads = H;
         p.latent_dim = dl;
         p.scale = c.keys.has("scale") ? c.keys.real("scale") : 0.0;
         p.pos0 = c.keys.given("pos0") ? c.keys.integer("pos0") : Tk - T_;
         p.o = o.view(T_, H * dl);
         p.lse = lse.view(T_, H);
         cuda::mla(p);
         o.fetch();
         lse.fetch();
       }},
      // V3.2's token-level indexer (scores and top-k; cpth): as the reference run in
      // cli/ops_predecessors.cc, pos0 defaulting to Tk - T.
      {"dsa_indexer",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], Tk = c.dims["Tk"], HI = c.dims["HI"], dI = c.dims["dI"];
         const int64_t topk = c.keys.integer("topk");
         require(topk > 0, "op 'dsa_indexer': key 'topk': expected a positive integer");
         const Dev q = upload(c, "q"), k = upload(c, "k"), w = upload(c, "w");
         Out scores(c, "scores", {T_, Tk});
         OutI32 indices(c, "indices", {T_, topk});
         IndexerParams<float> p;
         p.q = view2<const float>(q.data(), T_, HI * dI);
         p.k = view2<const float>(k.data(), Tk, dI);
         p.w = view2<const float>(w.data(), T_, HI);
         p.heads = HI;
         p.topk = topk;
         p.pos0 = c.keys.given("pos0") ? c.keys.integer("pos0") : Tk - T_;
         p.scores = scores.view(T_, Tk);
         p.indices = indices.view(T_, topk);
         cuda::dsa_indexer(p);
         scores.fetch();
         indices.fetch();
       }},
      {"engram_hash",
       [](Ctx& c) {
         const auto s = engram_hash_setup(c.keys, c.dims, c.has("token_map") ? &c.integer("token_map") : nullptr,
                                          c.integer("ids"), c.has("history") ? &c.integer("history") : nullptr);
         const int64_t T_ = c.dims["T"], slots = s->hash.slots();
         const cuda::DeviceEngramHash dh(s->hash);
         const cuda::DeviceBuffer<int32_t> ids(s->ids), history(s->history);
         cuda::DeviceBuffer<int64_t> rows(size_t(T_ * slots));
         EngramHashParams p;
         p.hash = &s->hash;
         p.ids = ids.data();
         p.n = T_;
         p.history = history.data();
         p.rows = view2(rows.data(), T_, slots);
         cuda::engram_hash(p, dh);
         DSV4_CUDA_CHECK(cudaDeviceSynchronize());
         const EngramHashOutputs out = engram_hash_outputs(*s, rows.download());
         c.out_i32("rows", {T_, slots}) = out.rows;
         c.out_i32("history", {c.dims["N"] - 1}) = out.history;
         c.out_i32("primes", {slots}) = out.primes;
       }},
      {"engram_lookup",
       [](Ctx& c) {
         const int64_t R = c.dims["R"], de = c.dims["de"], T_ = c.dims["T"], slots = c.dims["slots"];
         const std::vector<int64_t>& rows = c.integer("rows");
         for (size_t i = 0; i < rows.size(); ++i)
           require(rows[i] >= 0 && rows[i] < R, "op 'engram_lookup': tensor 'rows': value " + std::to_string(rows[i]) +
                                                    " at flat index " + std::to_string(i) +
                                                    " is outside the table's rows [0, " + std::to_string(R) + ")");
         // The f32 context holds the table's F32 or BF16 values exactly (as the reference run).
         const Dev table = upload(c, "table");
         const cuda::DeviceBuffer<int64_t> drows = upload_int(c, "rows");
         Out e(c, "e", {T_, slots * de});
         EngramLookupParams<float> p;
         p.table = {table.data(), TableDType::f32, R, de};
         p.rows = view2<const int64_t>(drows.data(), T_, slots);
         p.e = e.view(T_, slots * de);
         cuda::engram_lookup(p);
         e.fetch();
       }},
      {"engram_mix",
       [](Ctx& c) {
         const int64_t T_ = c.dims["T"], S = c.dims["S"], D = c.dims["D"], K = c.dims["K"], dil = c.dims["dil"];
         const int64_t E = c.dims["E"], Hrows = (K - 1) * dil, W = S * D;
         const Dev x = upload(c, "x"), e = upload(c, "e"), vw = upload(c, "value_w"), vb = upload(c, "value_b"),
                   kw = upload(c, "key_w"), kb = upload(c, "key_b"), kn = upload(c, "key_norm"),
                   qn = upload(c, "query_norm"), cw = upload(c, "conv_w"), cn = upload(c, "conv_norm");
         Out y(c, "y", {T_, W}), hist(c, "history", {Hrows, W});
         // The history is the op's in/out: the given one (or zeros), updated in place.
         if (c.has("history"))
           hist.buffer().upload(c.real("history"));
         else if (Hrows * W > 0)
           DSV4_CUDA_CHECK(cudaMemset(hist.data(), 0, size_t(Hrows * W) * sizeof(float)));
         EngramMixParams<float> p;
         p.x = view2<const float>(x.data(), T_, W);
         p.e = view2<const float>(e.data(), T_, E);
         p.w = {vw.data(), vb.data(), kw.data(), kb.data(), kn.data(), qn.data(), cw.data(), cn.data()};
         p.streams = S;
         p.kernel = K;
         p.dilation = dil;
         p.norm_eps = c.keys.real("eps");
         p.history = hist.view(Hrows, W);
         p.y = y.view(T_, W);
         cuda::engram_mix(p);
         y.fetch();
         hist.fetch();
       }},
      {"moe_route",
       [](Ctx& c) {
         DeviceRoute r(c, "moe_route");
         cuda::moe_route(r.p);
         r.experts.fetch();
         r.weights.fetch();
       }},
      {"moe",
       [](Ctx& c) {
         DeviceRoute r(c, "moe");
         const int64_t T_ = c.dims["T"], D = c.dims["D"];
         const Dev w1 = upload(c, "w1"), w3 = upload(c, "w3"), w2 = upload(c, "w2"), s1 = upload(c, "shared_w1"),
                   s3 = upload(c, "shared_w3"), s2 = upload(c, "shared_w2");
         Out y(c, "y", {T_, D});
         MoeParams<float> p;
         p.route = r.p;
         p.w1 = w1.data();
         p.w3 = w3.data();
         p.w2 = w2.data();
         p.shared_w1 = optional_ptr(s1);
         p.shared_w3 = optional_ptr(s3);
         p.shared_w2 = optional_ptr(s2);
         p.inter = c.dims["I"];
         p.swiglu_limit = c.keys.real("swiglu_limit");
         p.y = y.view(T_, D);
         cuda::moe(p);
         r.experts.fetch();
         r.weights.fetch();
         y.fetch();
       }},
  };
  return table;
}

}  // namespace

// A table entry that names no op, or an op without cuda_kernel, is a programming error: it
// throws here, so every `dsv4 op` command (and the CLI tests) fails until it is fixed.
void attach_cuda_runners(std::vector<OpSpec>& ops) {
  for (const auto& [name, run] : cuda_runners()) {
    OpSpec* spec = nullptr;
    for (auto& s : ops)
      if (s.name == name) spec = &s;
    if (!spec) throw std::logic_error("cli/ops_cuda.cc: CUDA runner for unknown op '" + name + "'");
    if (spec->cuda_kernel.empty())
      throw std::logic_error("cli/ops_cuda.cc: op '" + name + "' has a CUDA runner but no cuda_kernel");
    spec->run_cuda = run;
  }
}

std::string cuda_backend_problem() {
  return cuda::device_count() > 0 ? std::string() : cuda::device_summary();
}

}  // namespace dsv4::cli
