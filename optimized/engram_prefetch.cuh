// Host-resident Engram tables on the CUDA backend (docs/engram.md "Where the tables live"):
// a table in pinned host memory, and a prefetcher that brings the rows a chunk needs into
// device memory on its own stream while the compute stream runs the earlier layers.
//
// Why it works: the rows depend on the token ids only (engram_hash), so as soon as a chunk's
// ids are known its rows [T, slots] are known for every Engram layer (ref::engram_hash on the
// host, or cuda::engram_hash then a download), long before layer l needs e = table[rows].
//
// PinnedHostTable  a [rows, de] table (F32 or BF16 bits) in cudaHostAlloc memory, portable and
//                  mapped: host_view() for the CPU (ref::engram_lookup, the staged prefetch),
//                  device_view() for kernels (cuda::engram_lookup reads it over PCIe /
//                  NVLink-C2C, zero-copy).
//
// EngramPrefetcher  one per (Engram layer, table); owns a non-blocking prefetch stream P and
// three events. prefetch(rows, e) fills the device matrix e [T, slots*de] (FP32) with
// table[rows] — bitwise what engram_lookup gives — in one of two modes:
//   staged:  on the calling thread, the CPU copies the T*slots rows (as stored: F32 or BF16)
//            from the host table (any host memory: pageable, pinned or a memory-mapped
//            checkpoint) into a pinned staging buffer; then on P: one cudaMemcpyAsync of the
//            staging buffer to device memory (record `copied`), wait for `released`, and
//            engram_lookup of the staged rows (identity rows) into e, converting BF16 to FP32
//            (record `ready`). The interconnect moves exactly the bytes needed, in one DMA.
//   mapped:  the rows are copied to a pinned buffer and uploaded on P (record `copied`); P
//            waits for `released`, then engram_lookup reads the rows straight from the mapped
//            table (a PinnedHostTable, or memory registered as mapped) into e (record
//            `ready`). No CPU gather; the kernel issues the random reads over the interconnect.
// The events order everything without blocking the compute stream C:
//   ready     recorded on P after e is written; wait(C) makes C wait for it (cudaStreamWaitEvent)
//             — call it right before engram_mix of this layer is enqueued on C.
//   released  recorded on C by release(C) after the last work that reads e (engram_mix) is
//             enqueued; the next prefetch makes P wait for it before it overwrites e.
//   copied    recorded on P after the upload has read the pinned staging/rows buffer; the next
//             prefetch waits for it on the host before refilling that buffer.
// Timeline of a prefill chunk with Engram at layer l:
//   host: ids known -> rows = hash(ids) -> enqueue layers 0..l-1 on C -> prefetch(rows, e)
//         (staged: the CPU gather runs while the GPU computes layers 0..l-1) -> wait(C) ->
//         enqueue engram_mix(e) on C -> release(C) -> enqueue the rest of the layers.
//   GPU:  C: layers 0..l-1 ............ | wait ready | engram_mix | layer l ...
//         P:            H2D copy | lookup |
//   The copy hides completely when it finishes before C reaches layer l.
// All calls are from one host thread. prefetch() validates every row on the host (it has them)
// with the reference's messages, so a bad row never reaches the device.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "optimized/device.cuh"
#include "reference/engram.h"

namespace dsv4::cuda {

// Move-only owner of `bytes` of pinned, mapped, portable host memory (cudaHostAlloc).
class PinnedBytes {
 public:
  PinnedBytes() = default;
  explicit PinnedBytes(size_t bytes);
  ~PinnedBytes();
  PinnedBytes(PinnedBytes&& o) noexcept;
  PinnedBytes& operator=(PinnedBytes&& o) noexcept;
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;

  void* data() const { return p_; }
  size_t size() const { return n_; }
  // The address kernels use for this memory (cudaHostGetDevicePointer; equal to data() under
  // unified addressing).
  void* device_pointer() const;

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// A [rows, dim] Engram table (F32, or BF16 bit patterns) in pinned, mapped host memory.
// Uninitialised: fill data() (row-major, as stored in the checkpoint).
class PinnedHostTable {
 public:
  PinnedHostTable(TableDType dtype, int64_t rows, int64_t dim);
  void* data() { return mem_.data(); }
  size_t bytes() const { return mem_.size(); }
  EngramTableView host_view() const { return {mem_.data(), dtype_, rows_, dim_}; }
  EngramTableView device_view() const { return {mem_.device_pointer(), dtype_, rows_, dim_}; }

 private:
  TableDType dtype_;
  int64_t rows_, dim_;
  PinnedBytes mem_;
};

enum class EngramPrefetchMode { staged, mapped };

class EngramPrefetcher {
 public:
  // table: the host table (host pointer; mapped mode: pinned and mapped). Up to max_tokens
  // tokens of `slots` rows per prefetch. Staged mode: uploads its identity rows on stream()
  // and waits for that copy (so no prefetch can read them early).
  EngramPrefetcher(const EngramTableView& table, EngramPrefetchMode mode, int64_t slots,
                   int64_t max_tokens);
  ~EngramPrefetcher();  // waits for the prefetch stream
  EngramPrefetcher(const EngramPrefetcher&) = delete;
  EngramPrefetcher& operator=(const EngramPrefetcher&) = delete;

  // rows: HOST [T, slots] int64 (every value checked); e: DEVICE [T, slots*de] FP32.
  // Returns once the work is queued on stream() (staged: after the CPU gather).
  void prefetch(View2<const int64_t> rows, View2<float> e);
  // Makes `compute` wait until the last prefetch has written e.
  void wait(cudaStream_t compute) const;
  // Declares that the work enqueued on `compute` so far is the last to read e; the next
  // prefetch writes e only after it.
  void release(cudaStream_t compute);

  cudaStream_t stream() const { return stream_; }
  EngramPrefetchMode mode() const { return mode_; }

 private:
  EngramTableView table_;       // host view
  EngramTableView table_dev_;   // mapped mode: the device address of the same table
  EngramPrefetchMode mode_;
  int64_t slots_, max_tokens_;
  size_t row_bytes_;            // de * element size
  PinnedBytes staging_;         // staged: [max_tokens*slots, de] as stored; mapped: rows int64
  DeviceBuffer<char> staged_dev_;       // staged: the device copy of staging_
  DeviceBuffer<int64_t> device_rows_;   // staged: identity rows t*slots + s; mapped: the rows
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, released_ = nullptr, copied_ = nullptr;
};

}  // namespace dsv4::cuda
