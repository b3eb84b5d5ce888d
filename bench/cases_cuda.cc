// CUDA cases (built only when nvcc is found): a twin of every reference case of an op that has
// a CUDA kernel in optimized/, and the GPU ceilings. Spec of the ops: optimized/<op>.cuh.
//
//   <op>_cuda/<model>/<case>   the reference case <op>/<model>/<case> on the GPU: the same
//                              shapes, the same FLOPs and bytes (float storage, as counted in
//                              bench/cases.h), timed with CUDA events around each launch
//                              (Google Benchmark manual time)
//     rmsnorm_cuda             rows:4096 of the model width (4096 Flash, 7168 Pro), weighted
//     rope_cuda                rows:1024 of H heads x 512, the last 64 dims of each rotated
//                              in place (the compressed-layer table, position 2^20)
//     hadamard_cuda            rows:131072 of d_I = 128
//     quant_fp8_cuda           rows:32768 KV entries of 512, FP8 round trip of dims 0..447
//     quant_fp4_cuda           rows:131072 of d_I = 128, FP4 round trip in blocks of 32
//     attention_*_cuda, indexer_*_cuda, compressor_prefill_cuda
//                              bench/cases_cuda_attention.cc
//     engram_lookup_cuda, engram_prefetch_cuda
//                              GPU-only cases (no reference twin): bench/cases_engram_cuda.cc
//   ceiling_copy/gpu/mib:1024  device-to-device copy (bench/ceilings_cuda.h)
//   ceiling_cublas/gpu/n:8192  cuBLAS BF16 GEMM, FP32 accumulation
//
// Inputs are random (never zero). A case whose working set (input + output) is under
// kGpuColdL2Multiple x the device's L2 steps enough copies round-robin to exceed it, so the
// timings measure HBM, not L2 (at rows:4096 x 4096 on an H200: 128 MiB against 4 x 60 MB,
// 2 copies). This stands in for an L2 flush between launches (engineering.md §4): a flush by
// memset would leave dirty lines in L2 that the timed kernel then writes back, charging it
// with bytes that are not its own. Every CUDA case is skipped at run time, with the reason,
// when no device is usable (bench/cuda_device.h); listing cases never touches the device.
#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/cases.h"
#include "bench/cases_cuda.h"
#include "bench/ceilings_cuda.h"
#include "bench/cuda_device.h"
#include "model/config.h"
#include "optimized/cuda_check.cuh"
#include "optimized/device.cuh"
#include "optimized/hadamard.cuh"
#include "optimized/quant_fp4.cuh"
#include "optimized/quant_fp8.cuh"
#include "optimized/rmsnorm.cuh"
#include "optimized/rope.cuh"
#include "reference/constants.h"

namespace dsv4::bench {

namespace cuda_twin {

double gpu_l2_bytes() {
  int dev = 0;
  DSV4_CUDA_CHECK(cudaGetDevice(&dev));
  int l2 = 0;
  DSV4_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return double(l2);
}

int64_t cold_steps(double bytes, int64_t max_steps, double l2_bytes) {
  if (bytes <= 0) return 1;
  const double want = std::ceil(kGpuColdL2Multiple * l2_bytes / bytes);
  return std::clamp<int64_t>(int64_t(want), 1, max_steps);
}

int64_t gpu_cold_steps(double bytes, int64_t max_steps) { return cold_steps(bytes, max_steps, gpu_l2_bytes()); }

TimedStep warmed_up(TimedStep step) {
  for (int i = 0; i < kWarmupSteps; ++i) (void)step();
  return step;
}

Case twin_of(const Case& ref) {
  Case t;
  t.op = ref.op + kCudaOpSuffix;
  t.model = ref.model;
  t.variant = ref.variant;
  t.context = ref.context;
  t.flops = ref.flops;
  t.bytes = ref.bytes;
  t.memory = ref.memory / 2;  // one host input at a time, uploaded then freed
  t.quick = ref.quick;
  t.target = ref.target;
  t.skip = ref.skip;
  t.backend = Backend::cuda;
  t.unavailable = cuda_unavailable;
  return t;
}

TimedStep timed_launches(std::vector<Launch> launches) {
  struct State {
    std::vector<Launch> launches;
    DeviceTimer timer;
    size_t next = 0;
  };
  auto st = std::make_shared<State>();
  st->launches = std::move(launches);
  if (st->launches.empty()) throw std::logic_error("bench: a CUDA twin with no launch");
  // Pageable uploads may still be in flight when cudaMemcpy returns; the timer's stream does
  // not wait for the legacy default stream.
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return warmed_up([st] {
    const size_t i = st->next;
    st->next = (i + 1) % st->launches.size();
    return st->timer.seconds(st->launches[i]);
  });
}

}  // namespace cuda_twin

namespace {

using namespace cuda_twin;

// At most 16 copies of an elementwise working set, which no case here reaches (the smallest,
// 32 MiB of rope_cuda/v4-flash, needs 8 against an H200's 60 MB L2).
constexpr int64_t kGpuMaxCopies = 16;
constexpr uint64_t kCudaSeed = 4000;  // copy i: kCudaSeed + 10 i (x), + 1 (weights)

// Copies of an elementwise working set of `bytes` (at most kGpuMaxCopies).
int64_t gpu_cold_copies(double bytes) { return gpu_cold_steps(bytes, kGpuMaxCopies); }

// R from a case named "rows:R".
int64_t rows_of(const Case& c) {
  const std::string prefix = "rows:";
  if (c.variant.rfind(prefix, 0) != 0)
    throw std::logic_error("bench: CUDA twin of " + c.name() + ": expected a rows:R case");
  return std::stoll(c.variant.substr(prefix.size()));
}

// The twin's shape must be the reference case's: an elementwise case reads R x d floats and
// writes as many (bytes = 8 R d, bench/cases_block.cc). A mismatch is a bug in this file.
void check_shape(const Case& ref, int64_t rows, int64_t cols) {
  if (ref.bytes != 8.0 * double(rows) * double(cols))
    throw std::logic_error("bench: CUDA twin of " + ref.name() + ": shape [" +
                           std::to_string(rows) + ", " + std::to_string(cols) +
                           "] does not match the reference case's bytes");
}

// Device inputs and outputs of one elementwise twin: `copies` pairs (x_i, y_i) of [R, d]
// floats, plus an optional weight vector, and the timer.
struct ElementwiseData {
  int64_t rows = 0, cols = 0;
  std::vector<cuda::DeviceBuffer<float>> x, y;
  cuda::DeviceBuffer<float> w;
  DeviceTimer timer;
  size_t next = 0;
};

std::shared_ptr<ElementwiseData> elementwise_data(int64_t rows, int64_t cols, bool weights,
                                                  double bytes) {
  auto d = std::make_shared<ElementwiseData>();
  d->rows = rows;
  d->cols = cols;
  const int64_t copies = gpu_cold_copies(bytes);
  const size_t n = size_t(rows) * size_t(cols);
  for (int64_t i = 0; i < copies; ++i) {
    d->x.emplace_back(rand_uniform(n, kCudaSeed + 10 * uint64_t(i), 1.0f));
    d->y.emplace_back(n);
  }
  if (weights) d->w = cuda::DeviceBuffer<float>(rand_uniform(size_t(cols), kCudaSeed + 1, 1.0f));
  // Pageable uploads may still be in flight when cudaMemcpy returns; the timer's stream does
  // not wait for the legacy default stream.
  DSV4_CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

// One timed launch of `launch(x_i, y_i)` per call, i round-robin.
template <class Launch>
TimedStep timed_round_robin(std::shared_ptr<ElementwiseData> d, Launch launch) {
  return [d, launch] {
    const size_t i = d->next;
    d->next = (i + 1) % d->x.size();
    const View2<const float> x = view2<const float>(d->x[i].data(), d->rows, d->cols);
    const View2<float> y = view2(d->y[i].data(), d->rows, d->cols);
    return d->timer.seconds([&](cudaStream_t s) { launch(x, y, s); });
  };
}

Case rmsnorm_twin(const Case& ref) {
  Case t = twin_of(ref);
  const int64_t R = rows_of(ref), D = config_preset(ref.model).dim;
  check_shape(ref, R, D);
  t.device_memory = ref.bytes * double(kGpuMaxCopies);  // upper bound: at most kGpuMaxCopies copies
  const double bytes = ref.bytes;
  t.timed_setup = [R, D, bytes] {
    auto d = elementwise_data(R, D, true, bytes);
    const float* w = d->w.data();
    return warmed_up(
        timed_round_robin(d, [w](View2<const float> x, View2<float> y, cudaStream_t s) {
          cuda::rmsnorm(RmsNormParams<float>{x, w, y}, s);
        }));
  };
  return t;
}

Case hadamard_twin(const Case& ref) {
  Case t = twin_of(ref);
  const int64_t R = rows_of(ref), dI = kIndexerDim;
  check_shape(ref, R, dI);
  t.device_memory = ref.bytes * double(kGpuMaxCopies);
  const double bytes = ref.bytes;
  t.timed_setup = [R, dI, bytes] {
    auto d = elementwise_data(R, dI, false, bytes);
    return warmed_up(timed_round_robin(d, [](View2<const float> x, View2<float> y, cudaStream_t s) {
      cuda::hadamard(HadamardParams<float>{x, y}, s);
    }));
  };
  return t;
}

// The other elementwise twins of bench/cases_block.cc, same pattern: quant_fp8 over KV
// entries [R, 512] (dims 0..447 in blocks of 64), quant_fp4 over indexer rows [R, 128] in
// blocks of 32.
Case quant_fp8_twin(const Case& ref) {
  Case t = twin_of(ref);
  const int64_t R = rows_of(ref), dk = kHeadDim;
  check_shape(ref, R, dk);
  t.device_memory = ref.bytes * double(kGpuMaxCopies);
  const double bytes = ref.bytes;
  t.timed_setup = [R, dk, bytes] {
    auto d = elementwise_data(R, dk, false, bytes);
    return warmed_up(timed_round_robin(d, [](View2<const float> x, View2<float> y, cudaStream_t s) {
      cuda::quant_fp8(QuantFp8Params<float>{x, y, kFp8KvBlock, kNopeDim}, s);
    }));
  };
  return t;
}

Case quant_fp4_twin(const Case& ref) {
  Case t = twin_of(ref);
  const int64_t R = rows_of(ref), dI = kIndexerDim;
  check_shape(ref, R, dI);
  t.device_memory = ref.bytes * double(kGpuMaxCopies);
  const double bytes = ref.bytes;
  t.timed_setup = [R, dI, bytes] {
    auto d = elementwise_data(R, dI, false, bytes);
    return warmed_up(timed_round_robin(d, [](View2<const float> x, View2<float> y, cudaStream_t s) {
      cuda::quant_fp4(QuantFp4Params<float>{x, y, kFp4Block}, s);
    }));
  };
  return t;
}

// rope: rows [R, H*d] rotated in place, only the last d_r dims of each head read and written
// (bytes = 8 R H d_r, bench/cases_block.cc); the compressed-layer table of the model (layer
// 2), position 2^20 for every row as the reference case. Rotations keep the norm, so the
// repeated in-place steps stay finite. Copies of the rotated bytes as for the others.
Case rope_twin(const Case& ref) {
  Case t = twin_of(ref);
  const ModelConfig c = config_preset(ref.model);
  const int64_t R = rows_of(ref), H = c.n_heads, d = c.head_dim;
  check_shape(ref, R, H * c.rope_dim);
  const RopeConfig table = c.rope_for_layer(2);
  const double bytes = ref.bytes;
  t.device_memory = 4.0 * double(R * H * d) * double(kGpuMaxCopies);
  t.memory = 4.0 * double(R * H * d);
  t.timed_setup = [R, H, d, table, bytes] {
    std::vector<Launch> launches;
    for (int64_t i = 0; i < gpu_cold_copies(bytes); ++i) {
      auto x = std::make_shared<cuda::DeviceBuffer<float>>(
          rand_uniform(size_t(R * H * d), kCudaSeed + 10 * uint64_t(i), 1.0f));
      launches.push_back([x, R, H, d, table](cudaStream_t s) {
        cuda::rope(RopeParams<float>{view2(x->data(), R, H * d), H, d, 1 << 20, 1, false, table}, s);
      });
    }
    return timed_launches(std::move(launches));
  };
  return t;
}

void add_gpu_ceilings(std::vector<Case>& out) {
  Case c;
  c.op = "ceiling_copy";
  c.model = kGpuCeilingModel;
  c.variant = "mib:" + std::to_string(kCopyMiB);
  c.bytes = 2.0 * double(kCopyMiB) * 1024 * 1024;
  c.device_memory = c.bytes;
  c.quick = true;
  c.target = false;
  c.backend = Backend::cuda;
  c.unavailable = cuda_unavailable;
  c.timed_setup = [] {
    auto ceiling = std::make_shared<CopyCeiling>();
    auto timer = std::make_shared<DeviceTimer>();
    return warmed_up(
        [ceiling, timer] { return timer->seconds([&](cudaStream_t s) { ceiling->step(s); }); });
  };
  out.push_back(std::move(c));

  Case g;
  g.op = "ceiling_cublas";
  g.model = kGpuCeilingModel;
  g.variant = "n:" + std::to_string(kCublasN);
  g.flops = 2.0 * double(kCublasN) * double(kCublasN) * double(kCublasN);
  const double nn = double(kCublasN) * double(kCublasN);
  g.memory = 6.0 * nn;         // a float staging matrix + its BF16 copy
  g.device_memory = 6.0 * nn;  // A, B, C in BF16
  g.quick = true;
  g.target = false;
  g.backend = Backend::cuda;
  g.unavailable = cuda_unavailable;
  g.timed_setup = [] {
    auto ceiling = std::make_shared<CublasCeiling>();
    auto timer = std::make_shared<DeviceTimer>();
    return warmed_up(
        [ceiling, timer] { return timer->seconds([&](cudaStream_t s) { ceiling->step(s); }); });
  };
  out.push_back(std::move(g));
}

}  // namespace

void add_cuda_cases(std::vector<Case>& out) {
  std::vector<Case> twins;
  for (const Case& c : out) {
    if (c.backend != Backend::cpu) continue;
    if (c.op == "rmsnorm") twins.push_back(rmsnorm_twin(c));
    if (c.op == "hadamard") twins.push_back(hadamard_twin(c));
    if (c.op == "rope") twins.push_back(rope_twin(c));
    if (c.op == "quant_fp8") twins.push_back(quant_fp8_twin(c));
    if (c.op == "quant_fp4") twins.push_back(quant_fp4_twin(c));
    (void)add_attention_twin(c, twins);
  }
  add_gpu_ceilings(out);
  for (auto& t : twins) out.push_back(std::move(t));
  add_engram_cuda_cases(out);  // GPU-only: no reference twin
}

}  // namespace dsv4::bench
