// CUDA twins of the attention-core, indexer and compressor-prefill cases (CUDA builds only;
// the reference cases and their counting: bench/cases_attention.cc, bench/cases_layer.cc).
//
//   attention_{csa,hca,window}_{decode,prefill}_cuda/<model>/ctx:L
//       cuda::attention (optimized/attention.cuh; it picks the decode or prefill tile, and
//       split-K when the decode tile leaves SMs idle: every decode case on an H200, e.g.
//       S = 17 for V4-Flash HCA at 1M; the stream-ordered partials are not counted in
//       device_memory, at most a few MB) on the reference case's shapes: 1 / kPrefillChunk
//       query rows at positions L - Tq .. L - 1, the window rows, floor(L / m) compressed
//       entries, CSA rows selecting k entries each from a shared pool of k + Tq - 1 (all
//       visible entries when k >= the visible count)
//   indexer_{decode,prefill}_cuda/<model>/ctx:L
//       cuda::indexer (optimized/indexer.cuh): scores over the floor(L / 4) compressed keys +
//       top-k for 1 / kIndexerPrefillChunk rows; no scores output (the op scores into its own
//       stream-ordered scratch, as the reference case computes its scores internally)
//   compressor_prefill_cuda/<model>/{csa,csa_indexer,hca},tokens:256
//       cuda::compressor_prefill (optimized/compressor.cuh): 256 tokens from position 0,
//       FP8 (main) / Hadamard + FP4 (indexer) quantisation as the reference case
// The counters (FLOPs, bytes) are the reference case's, copied; each twin recomputes the
// bytes from the shapes it allocates and refuses to exist (std::logic_error, a bug in this
// file) when they differ, so the twin times exactly the counted work.
//
// Cold reads (bench/cases_cuda.h): a twin whose bytes per step are under 4x the L2 steps n
// input sets round-robin, n = ceil(4 L2 / bytes) up to kMaxGatherSteps (attention, indexer)
// or kMaxWeightSteps (compressor), whose read sets are disjoint:
//   - every step has its own queries, window rows, outputs, indices, keys (indexer) and
//     weights and tokens (compressor);
//   - HCA steps each have their own compressed entries (HCA reads all of them);
//   - CSA steps draw disjoint pools of k + Tq - 1 entries from one compressed cache while it
//     has room (floor(visible / pool) pools per cache), and take further caches when not, so
//     a 1M-context decode needs one 512 MiB cache, not n of them.
// Not twinned: attention_fp8 (the deployment-layout entries): the reference has no case for
// it (the reference cases are float), so there is no matching twin to make.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/cases_cuda.h"
#include "model/config.h"
#include "optimized/attention.cuh"
#include "optimized/compressor.cuh"
#include "optimized/device.cuh"
#include "optimized/indexer.cuh"
#include "reference/constants.h"

namespace dsv4::bench {

namespace {

using namespace cuda_twin;
using FBuf = cuda::DeviceBuffer<float>;
using IBuf = cuda::DeviceBuffer<int32_t>;

// Round-robin steps of a gather/scan case: enough for 4x a 60 MB L2 at the smallest case
// (indexer_decode/v4-flash/ctx:4096, 0.55 MB a step: 437 wanted, 256 x 0.55 MB = 2.3x the
// L2), and a few hundred MB of device memory at most.
constexpr int64_t kMaxGatherSteps = 256;
// Compressor prefill: 12.6 MB a step at the smallest (csa_indexer, Flash): 19 steps.
constexpr int64_t kMaxWeightSteps = 32;
constexpr uint64_t kSeed = 7000;  // step i: kSeed + 16 i + j for its j-th buffer

constexpr double kFloat = 4.0;  // bytes of a stored value (the reference's float storage)

// The twin's own count of the bytes it reads and writes must be the reference case's.
void check_bytes(const Case& ref, double bytes) {
  if (bytes != ref.bytes)
    throw std::logic_error("bench: CUDA twin of " + ref.name() + ": " + std::to_string(bytes) +
                           " bytes from its shapes, the reference case counts " + std::to_string(ref.bytes));
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Device copy of n random values (standard deviation sigma, never zero), seed as given.
std::shared_ptr<FBuf> random_device(size_t n, uint64_t seed, float sigma) {
  return std::make_shared<FBuf>(rand_uniform(n, seed, sigma));
}

// Visible compressed entries of the row at position pos (§2.8), as bench/cases_attention.cc.
int64_t visible(int64_t pos, int64_t ratio) { return (pos + 1) / ratio; }

// ---- attention -------------------------------------------------------------------------

// The shapes of one attention case, as bench/cases_attention.cc's add_attention builds them.
struct AttnCase {
  int64_t H = 0, d = 0, win = 0, ratio = 0, k = 0;  // ratio 0: window-only; k: CSA top-k
  int64_t Tq = 0, L = 0, N = 0, Tk = 0;
  bool csa = false, hca = false;
  // CSA: all_selected (k >= the last row's visible count) or pools of `pool` entries.
  bool all_selected = false;
  int64_t pool = 0, kcols = 0;
  double unique_entries = 0;  // window rows + compressed entries read
  double bytes() const { return kFloat * (unique_entries * double(d) + 2.0 * double(Tq * H * d)); }
};

AttnCase attention_case(const Case& ref) {
  const std::string op = ref.op;
  AttnCase a;
  const ModelConfig c = config_preset(ref.model);
  a.csa = starts_with(op, "attention_csa_");
  a.hca = starts_with(op, "attention_hca_");
  a.ratio = a.csa ? kCsaRatio : a.hca ? kHcaRatio : 0;
  a.H = c.n_heads;
  a.d = c.head_dim;
  a.win = c.window;
  a.k = c.index_topk;
  a.Tq = op.ends_with("_decode") ? 1 : kPrefillChunk;
  a.L = ref.context;
  a.N = a.ratio > 0 ? a.L / a.ratio : 0;
  a.Tk = a.Tq + std::min(a.L - a.Tq, a.win - 1);
  a.unique_entries = double(a.Tk);
  if (a.csa) {
    const int64_t vmin = visible(a.L - a.Tq, kCsaRatio), vmax = visible(a.L - 1, kCsaRatio);
    a.all_selected = a.k >= vmax;
    a.kcols = a.all_selected ? vmax : a.k;
    a.pool = a.all_selected ? vmax : a.k + a.Tq - 1;
    if (!a.all_selected && a.pool > vmin)
      throw std::logic_error("bench: CUDA twin of " + ref.name() + ": CSA pool larger than the visible entries");
    a.unique_entries += double(a.pool);
  } else if (a.hca) {
    a.unique_entries += double(a.N);
  }
  return a;
}

// Row r of a CSA step: all visible entries (all_selected; -1 padding to vmax columns), or
// entries pool[r .. r + k - 1] (neighbouring queries share most of their top-k).
std::vector<int32_t> csa_indices(const AttnCase& a, const int32_t* pool) {
  std::vector<int32_t> idx(size_t(a.Tq * a.kcols), -1);
  for (int64_t r = 0; r < a.Tq; ++r) {
    if (a.all_selected) {
      const int64_t v = visible(a.L - a.Tq + r, kCsaRatio);
      for (int64_t j = 0; j < v; ++j) idx[size_t(r * a.kcols + j)] = int32_t(j);
    } else {
      for (int64_t i = 0; i < a.k; ++i) idx[size_t(r * a.k + i)] = pool[r + i];
    }
  }
  return idx;
}

// Compressed caches of n steps: one per step (HCA), one per per_cache steps (CSA), none
// (window-only).
int64_t attention_caches(const AttnCase& a, int64_t n, int64_t per_cache) {
  if (a.N == 0) return 0;
  return a.hca ? n : (n + per_cache - 1) / per_cache;
}

// CSA: disjoint pools one compressed cache holds for n steps (1 when all entries are selected).
int64_t pools_per_cache(const AttnCase& a, int64_t n) {
  if (!a.csa || a.all_selected) return 1;
  return std::max<int64_t>(1, std::min(n, visible(a.L - a.Tq, kCsaRatio) / a.pool));
}

// Device bytes of n steps: each step's queries, window rows, outputs and indices, plus the
// compressed caches and the sink.
double attention_device_bytes(const AttnCase& a, int64_t n) {
  const double per_step = kFloat * double(2 * a.Tq * a.H * a.d + a.Tk * a.d + a.Tq * a.H) + 4.0 * double(a.Tq * a.kcols);
  const double caches = double(attention_caches(a, n, pools_per_cache(a, n)));
  return double(n) * per_step + caches * kFloat * double(a.N * a.d) + kFloat * double(a.H);
}

Case attention_twin(const Case& ref) {
  Case t = twin_of(ref);
  const AttnCase a = attention_case(ref);
  check_bytes(ref, a.bytes());
  // Host: one compressed cache at a time, plus a step's small inputs.
  t.memory = kFloat * double(a.N * a.d + 2 * a.Tq * a.H * a.d + a.Tk * a.d) + 4.0 * double(a.N);
  t.device_memory = attention_device_bytes(a, cold_steps(ref.bytes, kMaxGatherSteps, kL2EstimateBytes));
  const double bytes = ref.bytes;
  t.timed_setup = [a, bytes] {
    const int64_t n = gpu_cold_steps(bytes, kMaxGatherSteps);
    // CSA: pools per compressed cache and the pools themselves (disjoint, random).
    const int64_t per_cache = pools_per_cache(a, n);
    std::vector<int32_t> pools;
    if (a.csa && !a.all_selected) pools = distinct_indices(per_cache * a.pool, visible(a.L - a.Tq, kCsaRatio), kSeed + 1);
    const auto sink = random_device(size_t(a.H), kSeed + 2, 1.0f);
    std::shared_ptr<FBuf> comp;
    std::vector<Launch> launches;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t seed = kSeed + 16 * uint64_t(i + 1);
      // HCA: a cache per step; CSA: a new cache every per_cache steps; window-only: none.
      if (a.N > 0 && (a.hca || i % per_cache == 0))
        comp = random_device(size_t(a.N * a.d), seed, 1.0f);
      const auto q = random_device(size_t(a.Tq * a.H * a.d), seed + 1, 0.05f);
      const auto kv = random_device(size_t(a.Tk * a.d), seed + 2, 1.0f);
      const auto o = std::make_shared<FBuf>(size_t(a.Tq * a.H * a.d));
      const auto lse = std::make_shared<FBuf>(size_t(a.Tq * a.H));
      std::shared_ptr<IBuf> idx;
      if (a.csa) idx = std::make_shared<IBuf>(csa_indices(a, pools.data() + (i % per_cache) * a.pool));
      AttentionParams<float> p;
      p.q = view2<const float>(q->data(), a.Tq, a.H * a.d);
      p.kv = view2<const float>(kv->data(), a.Tk, a.d);
      p.comp = a.N > 0 ? view2<const float>(comp->data(), a.N, a.d) : View2<const float>{nullptr, 0, a.d, a.d};
      p.sink = sink->data();
      if (idx) p.indices = view2<const int32_t>(idx->data(), a.Tq, a.kcols);
      p.heads = a.H;
      p.ratio = a.ratio > 0 ? a.ratio : kCsaRatio;
      p.window = a.win;
      p.pos0 = a.L - a.Tq;
      p.o = view2(o->data(), a.Tq, a.H * a.d);
      p.lse = view2(lse->data(), a.Tq, a.H);
      launches.push_back([p, q, kv, comp, sink, idx, o, lse](cudaStream_t s) { cuda::attention(p, s); });
    }
    return timed_launches(std::move(launches));
  };
  return t;
}

// ---- indexer ---------------------------------------------------------------------------

Case indexer_twin(const Case& ref) {
  Case t = twin_of(ref);
  const ModelConfig c = config_preset(ref.model);
  const int64_t HI = c.index_n_heads, dI = c.index_head_dim, k = c.index_topk, L = ref.context, N = L / kCsaRatio;
  const int64_t Tq = ref.op == "indexer_decode" ? 1 : kIndexerPrefillChunk;
  check_bytes(ref, kFloat * (double(N) * double(dI) + double(Tq) * double(HI * dI + HI + k)));
  t.memory = kFloat * double(N * dI + Tq * (HI * dI + HI));
  // Per step: keys, queries, weights, indices; plus the op's scratch scores (Tq x N).
  t.device_memory = double(cold_steps(ref.bytes, kMaxGatherSteps, kL2EstimateBytes)) * ref.bytes + kFloat * double(Tq * N);
  const double bytes = ref.bytes;
  t.timed_setup = [=] {
    std::vector<Launch> launches;
    for (int64_t i = 0; i < gpu_cold_steps(bytes, kMaxGatherSteps); ++i) {
      const uint64_t seed = kSeed + 16 * uint64_t(i + 1);
      const auto q = random_device(size_t(Tq * HI * dI), seed, 1.0f);
      const auto keys = random_device(size_t(N * dI), seed + 1, 1.0f);
      const auto w = random_device(size_t(Tq * HI), seed + 2, 1.0f);
      const auto idx = std::make_shared<IBuf>(size_t(Tq * k));
      IndexerParams<float> p;
      p.q = view2<const float>(q->data(), Tq, HI * dI);
      p.k = view2<const float>(keys->data(), N, dI);
      p.w = view2<const float>(w->data(), Tq, HI);
      p.heads = HI;
      p.ratio = kCsaRatio;
      p.topk = k;
      p.pos0 = L - Tq;
      p.indices = view2(idx->data(), Tq, k);
      launches.push_back([p, q, keys, w, idx](cudaStream_t s) { cuda::indexer(p, s); });
    }
    return timed_launches(std::move(launches));
  };
  return t;
}

// ---- compressor prefill ----------------------------------------------------------------

int64_t layer_of_ratio(const ModelConfig& c, int64_t ratio) {
  for (int64_t l = 0; l < c.n_layers; ++l)
    if (c.ratio(l) == ratio) return l;
  throw std::logic_error("bench: no layer of compression ratio " + std::to_string(ratio));
}

// "csa,tokens:256" -> kind "csa", T 256.
void parse_compressor_variant(const Case& ref, std::string* kind, int64_t* T) {
  const size_t comma = ref.variant.find(",tokens:");
  if (comma == std::string::npos)
    throw std::logic_error("bench: CUDA twin of " + ref.name() + ": expected a <kind>,tokens:T case");
  *kind = ref.variant.substr(0, comma);
  *T = std::stoll(ref.variant.substr(comma + std::string(",tokens:").size()));
}

Case compressor_twin(const Case& ref) {
  Case t = twin_of(ref);
  std::string kind;
  int64_t T = 0;
  parse_compressor_variant(ref, &kind, &T);
  const ModelConfig c = config_preset(ref.model);
  const bool csa = kind != "hca", index = kind == "csa_indexer";
  const CompressorShape sh{c.dim, index ? c.index_head_dim : c.head_dim, csa ? kCsaRatio : kHcaRatio, csa};
  const CompressorQuant quant = index ? CompressorQuant::fp4_hadamard : CompressorQuant::fp8;
  const RopeConfig rope = c.rope_for_layer(layer_of_ratio(c, sh.ratio));
  const double elems = 2.0 * double(sh.width()) * double(sh.dim);
  const int64_t nb = T / sh.ratio;
  check_bytes(ref, kFloat * (elems + double(T * sh.dim) + double(nb * sh.head_dim)));
  t.memory = kFloat * double(sh.width() * sh.dim);  // the largest host buffer at a time
  // Steps of weights, tokens and entries, plus the workspace's a and z.
  t.device_memory = double(cold_steps(ref.bytes, kMaxWeightSteps, kL2EstimateBytes)) * ref.bytes +
                    2.0 * kFloat * double(T * sh.width());
  const double bytes = ref.bytes, eps = c.norm_eps;
  t.timed_setup = [=] {
    const auto ws = std::make_shared<cuda::CompressorWorkspace>(T, sh);
    std::vector<Launch> launches;
    for (int64_t i = 0; i < gpu_cold_steps(bytes, kMaxWeightSteps); ++i) {
      const uint64_t seed = kSeed + 16 * uint64_t(i + 1);
      const auto x = random_device(size_t(T * sh.dim), seed, 1.0f);
      const auto wkv = random_device(size_t(sh.width() * sh.dim), seed + 1, 0.02f);
      const auto wg = random_device(size_t(sh.width() * sh.dim), seed + 2, 0.02f);
      const auto ape = random_device(size_t(sh.ratio * sh.width()), seed + 3, 0.1f);
      const auto norm = random_device(size_t(sh.head_dim), seed + 4, 1.0f);
      const auto entries = std::make_shared<FBuf>(size_t(std::max<int64_t>(1, nb) * sh.head_dim));
      CompressorParams<float> p;
      p.shape = sh;
      p.w = {wkv->data(), wg->data(), ape->data(), norm->data()};
      p.rope = rope;
      p.quant = quant;
      p.eps = eps;
      const View2<const float> xv = view2<const float>(x->data(), T, sh.dim);
      const View2<float> ev = view2(entries->data(), nb, sh.head_dim);
      launches.push_back([p, xv, ev, ws, x, wkv, wg, ape, norm, entries](cudaStream_t s) {
        cuda::compressor_prefill(p, xv, ev, *ws, s);
      });
    }
    return timed_launches(std::move(launches));
  };
  return t;
}

}  // namespace

bool add_attention_twin(const Case& ref, std::vector<Case>& out) {
  const std::string& op = ref.op;
  if (starts_with(op, "attention_") && (op.ends_with("_decode") || op.ends_with("_prefill")) &&
      (starts_with(op, "attention_csa_") || starts_with(op, "attention_hca_") || starts_with(op, "attention_window_"))) {
    out.push_back(attention_twin(ref));
    return true;
  }
  if (op == "indexer_decode" || op == "indexer_prefill") {
    out.push_back(indexer_twin(ref));
    return true;
  }
  if (op == "compressor_prefill") {
    out.push_back(compressor_twin(ref));
    return true;
  }
  return false;
}

}  // namespace dsv4::bench
