// Pack / unpack kernels of the deployment KV layout (see kv_pack.cuh): one thread per unit of
// a row, the codec of the header on each.
#include <limits>
#include <string>

#include "optimized/cuda_check.cuh"
#include "optimized/kv_pack.cuh"
#include "reference/errors.h"

namespace dsv4::cuda {

namespace {

constexpr int64_t kFp8EntryUnits = kFp8EntryBlocks + 1;  // 7 FP8 blocks + pad and BF16 dims
constexpr int64_t kFp4KeyUnits = kFp4KeyBlocks;          // 4 FP4 blocks

// Thread w of the grid packs unit w % units of row w / units.
__global__ void __launch_bounds__(kKvPackThreads)
    pack_fp8_entries_kernel(View2<const float> x, View2<uint8_t> out, int64_t total) {
  const int64_t w = int64_t(blockIdx.x) * kKvPackThreads + threadIdx.x;
  if (w >= total) return;
  const int64_t r = w / kFp8EntryUnits;
  kv_codec::pack_fp8_entry_unit(x.row(r), int(w - r * kFp8EntryUnits), out.row(r));
}

__global__ void __launch_bounds__(kKvPackThreads)
    pack_fp4_keys_kernel(View2<const float> x, View2<uint8_t> out, int64_t total) {
  const int64_t w = int64_t(blockIdx.x) * kKvPackThreads + threadIdx.x;
  if (w >= total) return;
  const int64_t r = w / kFp4KeyUnits;
  kv_codec::pack_fp4_key_unit(x.row(r), int(w - r * kFp4KeyUnits), out.row(r));
}

// Thread w decodes code byte w % 64 of key w / 64 (dims 2k, 2k + 1).
__global__ void __launch_bounds__(kKvPackThreads)
    unpack_fp4_keys_kernel(View2<const uint8_t> keys, View2<float> y, int64_t total) {
  const int64_t w = int64_t(blockIdx.x) * kKvPackThreads + threadIdx.x;
  if (w >= total) return;
  const int64_t r = w / kFp4KeyCodeBytes;
  kv_codec::unpack_fp4_key_byte(keys.row(r), w - r * kFp4KeyCodeBytes, y.row(r));
}

// The grid of `total` threads; throws past one launch's grid.
unsigned grid_of(const char* op, int64_t total) {
  const int64_t grid = (total + kKvPackThreads - 1) / kKvPackThreads;
  require(grid <= std::numeric_limits<int32_t>::max(),
          std::string(op) + ": " + std::to_string(total) + " threads exceed one launch");
  return static_cast<unsigned>(grid);
}

void check_rows(const char* op, const char* in, int64_t in_rows, int64_t in_cols, int64_t want_in,
                const char* out, int64_t out_rows, int64_t out_cols, int64_t want_out) {
  require(in_cols == want_in, std::string(op) + ": tensor '" + in + "': expected " +
                                  std::to_string(want_in) + " columns, found " +
                                  std::to_string(in_cols));
  require(out_rows == in_rows && out_cols == want_out,
          std::string(op) + ": tensor '" + out + "' must be [" + std::to_string(in_rows) + ", " +
              std::to_string(want_out) + "], found [" + std::to_string(out_rows) + ", " +
              std::to_string(out_cols) + "]");
}

}  // namespace

void pack_fp8_entries(View2<const float> x, View2<uint8_t> out, cudaStream_t stream) {
  check_rows("pack_fp8_entries", "x", x.rows, x.cols, kHeadDim, "out", out.rows, out.cols,
             kFp8EntryBytes);
  if (x.rows == 0) return;
  const int64_t total = x.rows * kFp8EntryUnits;
  pack_fp8_entries_kernel<<<grid_of("pack_fp8_entries", total), kKvPackThreads, 0, stream>>>(x, out,
                                                                                             total);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void pack_fp4_keys(View2<const float> x, View2<uint8_t> out, cudaStream_t stream) {
  check_rows("pack_fp4_keys", "x", x.rows, x.cols, kIndexerDim, "out", out.rows, out.cols,
             kFp4KeyBytes);
  if (x.rows == 0) return;
  const int64_t total = x.rows * kFp4KeyUnits;
  pack_fp4_keys_kernel<<<grid_of("pack_fp4_keys", total), kKvPackThreads, 0, stream>>>(x, out,
                                                                                       total);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

void unpack_fp4_keys(View2<const uint8_t> keys, View2<float> y, cudaStream_t stream) {
  check_rows("unpack_fp4_keys", "keys", keys.rows, keys.cols, kFp4KeyBytes, "y", y.rows, y.cols,
             kIndexerDim);
  if (keys.rows == 0) return;
  const int64_t total = keys.rows * kFp4KeyCodeBytes;
  unpack_fp4_keys_kernel<<<grid_of("unpack_fp4_keys", total), kKvPackThreads, 0, stream>>>(keys, y,
                                                                                           total);
  DSV4_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsv4::cuda
