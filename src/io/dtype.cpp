#include "io/dtype.hpp"

#include <array>

#include "util/error.hpp"

namespace inferno::io {

namespace {

struct DTypeProperties {
  DType dtype;
  std::string_view safetensors_name;
  size_t size_bytes;
};

constexpr std::array kDTypes = {
    DTypeProperties{DType::F32, "F32", 4},        DTypeProperties{DType::F16, "F16", 2},
    DTypeProperties{DType::BF16, "BF16", 2},      DTypeProperties{DType::F64, "F64", 8},
    DTypeProperties{DType::I8, "I8", 1},          DTypeProperties{DType::U8, "U8", 1},
    DTypeProperties{DType::I16, "I16", 2},        DTypeProperties{DType::I32, "I32", 4},
    DTypeProperties{DType::I64, "I64", 8},        DTypeProperties{DType::BOOL, "BOOL", 1},
    DTypeProperties{DType::F8_E4M3, "F8_E4M3", 1}, DTypeProperties{DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeProperties& properties(DType dtype) {
  for (const auto& p : kDTypes)
    if (p.dtype == dtype) return p;
  fail("internal: dtype " + std::to_string(int(dtype)) + " missing from the dtype table");
}

}  // namespace

size_t dtype_size(DType dtype) { return properties(dtype).size_bytes; }

std::string_view dtype_name(DType dtype) { return properties(dtype).safetensors_name; }

std::optional<DType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& p : kDTypes)
    if (p.safetensors_name == name) return p.dtype;
  return std::nullopt;
}

}  // namespace inferno::io
