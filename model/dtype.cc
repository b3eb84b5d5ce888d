#include "model/dtype.h"

#include <array>
#include <utility>

namespace dsv4 {

namespace {
struct Entry {
  DType t;
  std::string_view name;
  size_t size;
};
constexpr std::array<Entry, 12> kTable{{
    {DType::F64, "F64", 8},     {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E8M0, "F8_E8M0", 1},
    {DType::I64, "I64", 8},     {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},       {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
}};
}  // namespace

size_t dtype_size(DType t) { return kTable[size_t(t)].size; }
std::string_view dtype_name(DType t) { return kTable[size_t(t)].name; }

std::optional<DType> dtype_from_name(std::string_view s) {
  for (const auto& e : kTable)
    if (e.name == s) return e.t;
  return std::nullopt;
}

bool dtype_is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16 ||
         t == DType::F8_E4M3 || t == DType::F8_E8M0;
}
bool dtype_is_int(DType t) {
  return t == DType::I64 || t == DType::I32 || t == DType::I16 || t == DType::I8 ||
         t == DType::U8 || t == DType::BOOL;
}

}  // namespace dsv4
