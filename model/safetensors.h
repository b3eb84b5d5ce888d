// safetensors files: a memory-mapped, validating reader and an atomic writer.
//
// Format: u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// then the data section; offsets are relative to its start.
// The reader checks everything against the file length before any tensor is read:
// header length, JSON shape, known dtype, non-negative shape, end - begin ==
// numel * dtype size (overflow-checked), end within the data section, no two tensors
// overlapping. Any violation is an InputError naming the file and the tensor.
// The writer lays tensors out in insertion order, pads the header to 8 bytes, writes a
// temporary file in the destination directory, fsyncs it and renames it into place: a
// failed write leaves no file behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/dtype.h"

namespace dsv4 {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offset in the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Opens and validates; throws InputError.
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;
  SafetensorsReader(SafetensorsReader&&) noexcept;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  std::span<const std::byte> bytes(const TensorInfo& t) const;

  // Decodes a floating tensor (F64, F32, F16, BF16, F8_E4M3, F8_E8M0) to T.
  template <class T>
  std::vector<T> read_float(const TensorInfo& t) const;
  // Decodes an integer tensor (I64, I32, I16, I8, U8, BOOL) to int64.
  std::vector<int64_t> read_int(const TensorInfo& t) const;

 private:
  std::string path_;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // start of the data section
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // Copies nbytes of raw data, which must equal numel(shape) * dtype_size(dtype).
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
           size_t nbytes);
  // Encodes float or double values as F64, F32, F16 or BF16.
  template <class T>
  void add_float(const std::string& name, std::vector<int64_t> shape, const T* data, DType as);
  // Atomic write (temporary file + fsync + rename); throws std::runtime_error on failure.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> data;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace dsv4
