// Shared pieces of the CUDA twins (CUDA builds only; bench/cases_cuda.cc makes the elementwise
// twins and the GPU ceilings, bench/cases_cuda_attention.cc the attention, indexer and
// compressor twins). Internal to bench/: cases.h's add_cuda_cases() is the public entry.
//
// A twin <op>_cuda/<model>/<case> copies its reference case's shapes and counters
// (twin_of). Inputs are random (never zero). Each timed step is one call of the CUDA op
// between two CUDA events (DeviceTimer). So that a step reads HBM, not L2, a twin whose bytes
// per iteration are under kGpuColdL2Multiple x the device's L2 steps several independent
// input sets ("steps") round-robin whose read sets are disjoint (gpu_cold_steps): this stands
// in for an L2 flush between launches, which (by memset) would leave dirty lines the timed
// kernel then writes back, charging it with bytes that are not its own.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "bench/cases.h"
#include "bench/cuda_device.h"

namespace dsv4::bench::cuda_twin {

// Working sets below 4x the L2 are stepped as several copies (the CPU cases use 4x the L3
// likewise, bench/setup.h kColdBytes).
inline constexpr double kGpuColdL2Multiple = 4.0;
// Steps run once the set-up is done, before Google Benchmark's first probe: lazy module
// loading, cuBLAS's algorithm choice and first touches of the buffers stay out of the timings
// (a host-side delay between the start event and the launch would count as device time).
inline constexpr int kWarmupSteps = 3;

// The bytes of the current device's L2 cache.
double gpu_l2_bytes();

// Input sets of `bytes` (read per step) to step round-robin so that together they exceed
// kGpuColdL2Multiple x an L2 of l2_bytes: ceil(4 L2 / bytes), clamped to [1, max_steps].
int64_t cold_steps(double bytes, int64_t max_steps, double l2_bytes);
// The same for the current device's L2 (set-up time only: it asks the device).
int64_t gpu_cold_steps(double bytes, int64_t max_steps);
// The L2 the device-memory estimates of the case list assume (listing never asks the device):
// above an H200's 60 MB, so the estimates are upper bounds there.
inline constexpr double kL2EstimateBytes = 128.0 * 1024 * 1024;

// The reference case's twin: op + "_cuda", same model, case, counters, quick and target flags;
// backend cuda, skipped at run time without a device. Set-up and memory are the caller's.
Case twin_of(const Case& ref);

// `step` run kWarmupSteps times, then returned.
TimedStep warmed_up(TimedStep step);

// One launch on a stream; it owns (shares) the device buffers it reads and writes.
using Launch = std::function<void(cudaStream_t)>;

// A TimedStep that times launches[i] with one DeviceTimer, i round-robin, after
// cudaDeviceSynchronize (uploads done) and the warm-up steps.
TimedStep timed_launches(std::vector<Launch> launches);

}  // namespace dsv4::bench::cuda_twin

namespace dsv4::bench {
// bench/cases_cuda_attention.cc: the twin of `ref` when its op is one of attention_{csa,hca,
// window}_{decode,prefill}, indexer_{decode,prefill} or compressor_prefill; false otherwise.
bool add_attention_twin(const Case& ref, std::vector<Case>& out);
// bench/cases_engram_cuda.cc: the GPU-only Engram cases (no reference twin): engram_lookup_cuda
// by table residency and size, and engram_prefetch_cuda (the prefetch's overlap with compute).
void add_engram_cuda_cases(std::vector<Case>& out);
}  // namespace dsv4::bench
