// Element types of safetensors files and checkpoints (docs/v4-architecture.md §7).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsv4 {

enum class DType : uint8_t {
  F64, F32, F16, BF16,
  F8_E4M3,  // e4m3fn FP8 weights and caches
  F8_E8M0,  // UE8M0 block scales
  I64, I32, I16, I8,  // I8 also carries packed FP4 (two e2m1 codes per byte)
  U8, BOOL,
};

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view s);
// Floating formats that decode to a real value one element at a time.
bool dtype_is_float(DType t);
bool dtype_is_int(DType t);

}  // namespace dsv4
