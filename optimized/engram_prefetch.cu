#include "optimized/engram_prefetch.cuh"

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "optimized/cuda_check.cuh"
#include "optimized/engram.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

size_t element_bytes(TableDType d) { return d == TableDType::f32 ? sizeof(float) : sizeof(uint16_t); }

// rows * dim * element size, refusing overflow.
size_t table_bytes(TableDType dtype, int64_t rows, int64_t dim) {
  require(rows >= 0 && dim > 0, "engram table: needs rows >= 0 and dim > 0, found " +
                                    shape_string({rows, dim}));
  const size_t el = element_bytes(dtype);
  require(uint64_t(rows) <= SIZE_MAX / el / uint64_t(dim),
          "engram table: " + shape_string({rows, dim}) + " overflows size_t bytes");
  return size_t(rows) * size_t(dim) * el;
}

}  // namespace

// ---- PinnedBytes ---------------------------------------------------------------------------

PinnedBytes::PinnedBytes(size_t bytes) : n_(bytes) {
  if (bytes) DSV4_CUDA_CHECK(cudaHostAlloc(&p_, bytes, cudaHostAllocPortable | cudaHostAllocMapped));
}

PinnedBytes::~PinnedBytes() {
  if (p_) (void)cudaFreeHost(p_);  // a destructor must not throw
}

PinnedBytes::PinnedBytes(PinnedBytes&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}

PinnedBytes& PinnedBytes::operator=(PinnedBytes&& o) noexcept {
  if (this != &o) {
    if (p_) (void)cudaFreeHost(p_);
    p_ = std::exchange(o.p_, nullptr);
    n_ = std::exchange(o.n_, 0);
  }
  return *this;
}

void* PinnedBytes::device_pointer() const {
  if (!p_) return nullptr;
  void* d = nullptr;
  DSV4_CUDA_CHECK(cudaHostGetDevicePointer(&d, p_, 0));
  return d;
}

PinnedHostTable::PinnedHostTable(TableDType dtype, int64_t rows, int64_t dim)
    : dtype_(dtype), rows_(rows), dim_(dim), mem_(table_bytes(dtype, rows, dim)) {}

// ---- EngramPrefetcher ----------------------------------------------------------------------

EngramPrefetcher::EngramPrefetcher(const EngramTableView& table, EngramPrefetchMode mode,
                                   int64_t slots, int64_t max_tokens)
    : table_(table), table_dev_(table), mode_(mode), slots_(slots), max_tokens_(max_tokens) {
  require(table.data != nullptr, "engram prefetch: no table");
  require(slots > 0 && max_tokens > 0, "engram prefetch: slots and max_tokens must be positive, found " +
                                           std::to_string(slots) + " and " + std::to_string(max_tokens));
  row_bytes_ = table_bytes(table.dtype, 1, table.dim);
  const size_t n_rows = size_t(max_tokens) * size_t(slots);
  if (mode == EngramPrefetchMode::mapped) {
    void* d = nullptr;
    const cudaError_t err = cudaHostGetDevicePointer(&d, const_cast<void*>(table.data), 0);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw InputError(std::string("engram prefetch: the mapped mode needs a table in pinned, mapped "
                                   "host memory (PinnedHostTable): cudaHostGetDevicePointer: ") +
                       cudaGetErrorName(err));
    }
    table_dev_.data = d;
    staging_ = PinnedBytes(n_rows * sizeof(int64_t));
    device_rows_ = DeviceBuffer<int64_t>(n_rows);
  } else {
    staging_ = PinnedBytes(n_rows * row_bytes_);
    staged_dev_ = DeviceBuffer<char>(n_rows * row_bytes_);
    device_rows_ = DeviceBuffer<int64_t>(n_rows);  // the identity rows, filled below on stream_
  }
  try {
    DSV4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&released_, cudaEventDisableTiming));
    DSV4_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
    if (mode == EngramPrefetchMode::staged) {
      // Identity rows t*slots + s, uploaded on stream_ itself: a synchronous cudaMemcpy would
      // run on the legacy default stream, which the non-blocking stream_ does not wait for
      // (and from pageable memory it may return before its DMA lands), so the first lookup
      // could read them before they arrive. Waits once, here, for this small copy.
      std::vector<int64_t> identity(n_rows);
      for (size_t i = 0; i < n_rows; ++i) identity[i] = int64_t(i);
      DSV4_CUDA_CHECK(cudaMemcpyAsync(device_rows_.data(), identity.data(),
                                      n_rows * sizeof(int64_t), cudaMemcpyHostToDevice, stream_));
      DSV4_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  } catch (...) {
    for (cudaEvent_t ev : {ready_, released_, copied_})
      if (ev) (void)cudaEventDestroy(ev);
    if (stream_) (void)cudaStreamDestroy(stream_);
    throw;
  }
}

EngramPrefetcher::~EngramPrefetcher() {
  // Nothing may still read the buffers freed below; errors cannot be reported from here.
  (void)cudaStreamSynchronize(stream_);
  for (cudaEvent_t ev : {ready_, released_, copied_}) (void)cudaEventDestroy(ev);
  (void)cudaStreamDestroy(stream_);
}

void EngramPrefetcher::prefetch(View2<const int64_t> rows, View2<float> e) {
  const NvtxRange range("engram_prefetch");
  const int64_t n = rows.rows, de = table_.dim;
  require(rows.cols == slots_, "engram prefetch: rows must have " + std::to_string(slots_) +
                                   " columns (slots), found " + std::to_string(rows.cols));
  require(n <= max_tokens_, "engram prefetch: at most " + std::to_string(max_tokens_) +
                                " tokens per prefetch, found " + std::to_string(n));
  require(e.rows == n && e.cols == slots_ * de, "engram_lookup: e must be " +
                                                    shape_string({n, slots_ * de}) + ", found " +
                                                    shape_string({e.rows, e.cols}));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t s = 0; s < slots_; ++s) {
      const int64_t r = rows(t, s);
      require(r >= 0 && r < table_.rows, "engram_lookup: row " + std::to_string(r) + " at token " +
                                             std::to_string(t) + " is outside the table [0, " +
                                             std::to_string(table_.rows) + ")");
    }
  if (n == 0) return;

  // The previous upload has read the pinned buffer refilled below.
  DSV4_CUDA_CHECK(cudaEventSynchronize(copied_));
  char* pinned = static_cast<char*>(staging_.data());
  const size_t count = size_t(n) * size_t(slots_);
  EngramLookupParams<float> lp;
  lp.e = e;
  if (mode_ == EngramPrefetchMode::staged) {
    const char* src = static_cast<const char*>(table_.data);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t s = 0; s < slots_; ++s)
        std::memcpy(pinned + (size_t(t) * size_t(slots_) + size_t(s)) * row_bytes_,
                    src + size_t(rows(t, s)) * row_bytes_, row_bytes_);
    DSV4_CUDA_CHECK(cudaMemcpyAsync(staged_dev_.data(), pinned, count * row_bytes_,
                                    cudaMemcpyHostToDevice, stream_));
    // The staged rows form a table [T*slots, de]; identity rows t*slots + s put them in place.
    lp.table = {staged_dev_.data(), table_.dtype, int64_t(count), de};
  } else {
    int64_t* dense = reinterpret_cast<int64_t*>(pinned);
    for (int64_t t = 0; t < n; ++t)
      std::memcpy(dense + t * slots_, rows.row(t), size_t(slots_) * sizeof(int64_t));
    DSV4_CUDA_CHECK(cudaMemcpyAsync(device_rows_.data(), dense, count * sizeof(int64_t),
                                    cudaMemcpyHostToDevice, stream_));
    lp.table = table_dev_;
  }
  lp.rows = view2<const int64_t>(device_rows_.data(), n, slots_);
  DSV4_CUDA_CHECK(cudaEventRecord(copied_, stream_));
  DSV4_CUDA_CHECK(cudaStreamWaitEvent(stream_, released_, 0));  // e is no longer read
  engram_lookup(lp, stream_);
  DSV4_CUDA_CHECK(cudaEventRecord(ready_, stream_));
}

void EngramPrefetcher::wait(cudaStream_t compute) const {
  DSV4_CUDA_CHECK(cudaStreamWaitEvent(compute, ready_, 0));
}

void EngramPrefetcher::release(cudaStream_t compute) {
  DSV4_CUDA_CHECK(cudaEventRecord(released_, compute));
}

}  // namespace dsv4::cuda
