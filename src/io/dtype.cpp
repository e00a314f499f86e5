#include "io/dtype.hpp"

#include <array>
#include <string>

#include "util/error.hpp"

namespace inferno::io {

namespace {

constexpr uint32_t kNoGgmlType = ~uint32_t(0);

struct DTypeProperties {
  DType dtype;
  std::string_view name;
  size_t block_bytes;
  size_t block_elements;
  bool in_safetensors;  // a dtype name the safetensors format defines
  uint32_t ggml_type;   // enum ggml_type in ggml.h, kNoGgmlType if ggml has no such type
};

// Block sizes are those of ggml-common.h (block_q4_0 = fp16 scale + 16 bytes of nibbles, block_q4_K = 2 fp16 +
// 12 bytes of 6-bit scales + 128 bytes of nibbles, ...); the GGUF fixtures' tensor sizes check them.
constexpr std::array kDTypes = {
    DTypeProperties{DType::F32, "F32", 4, 1, true, 0},
    DTypeProperties{DType::F16, "F16", 2, 1, true, 1},
    DTypeProperties{DType::BF16, "BF16", 2, 1, true, 30},
    DTypeProperties{DType::F64, "F64", 8, 1, true, 28},
    DTypeProperties{DType::I8, "I8", 1, 1, true, 24},
    DTypeProperties{DType::U8, "U8", 1, 1, true, kNoGgmlType},
    DTypeProperties{DType::I16, "I16", 2, 1, true, 25},
    DTypeProperties{DType::I32, "I32", 4, 1, true, 26},
    DTypeProperties{DType::I64, "I64", 8, 1, true, 27},
    DTypeProperties{DType::BOOL, "BOOL", 1, 1, true, kNoGgmlType},
    DTypeProperties{DType::F8_E4M3, "F8_E4M3", 1, 1, true, kNoGgmlType},
    DTypeProperties{DType::F8_E5M2, "F8_E5M2", 1, 1, true, kNoGgmlType},
    DTypeProperties{DType::Q4_0, "Q4_0", 18, 32, false, 2},
    DTypeProperties{DType::Q4_1, "Q4_1", 20, 32, false, 3},
    DTypeProperties{DType::Q5_0, "Q5_0", 22, 32, false, 6},
    DTypeProperties{DType::Q5_1, "Q5_1", 24, 32, false, 7},
    DTypeProperties{DType::Q8_0, "Q8_0", 34, 32, false, 8},
    DTypeProperties{DType::Q2_K, "Q2_K", 84, 256, false, 10},
    DTypeProperties{DType::Q3_K, "Q3_K", 110, 256, false, 11},
    DTypeProperties{DType::Q4_K, "Q4_K", 144, 256, false, 12},
    DTypeProperties{DType::Q5_K, "Q5_K", 176, 256, false, 13},
    DTypeProperties{DType::Q6_K, "Q6_K", 210, 256, false, 14},
    DTypeProperties{DType::Q8_K, "Q8_K", 292, 256, false, 15},
};

const DTypeProperties& properties(DType dtype) {
  for (const auto& p : kDTypes)
    if (p.dtype == dtype) return p;
  fail("internal: dtype " + std::to_string(int(dtype)) + " missing from the dtype table");
}

}  // namespace

size_t dtype_size(DType dtype) { return properties(dtype).block_bytes; }

size_t dtype_block_elements(DType dtype) { return properties(dtype).block_elements; }

std::optional<uint64_t> dtype_storage_bytes(DType dtype, uint64_t elements) {
  const DTypeProperties& p = properties(dtype);
  if (elements % p.block_elements != 0) return std::nullopt;
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements / p.block_elements, uint64_t(p.block_bytes), &bytes)) return std::nullopt;
  return bytes;
}

std::string_view dtype_name(DType dtype) { return properties(dtype).name; }

std::optional<DType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& p : kDTypes)
    if (p.in_safetensors && p.name == name) return p.dtype;
  return std::nullopt;
}

std::optional<DType> dtype_from_ggml_type(uint32_t ggml_type) {
  if (ggml_type == kNoGgmlType) return std::nullopt;
  for (const auto& p : kDTypes)
    if (p.ggml_type == ggml_type) return p.dtype;
  return std::nullopt;
}

}  // namespace inferno::io
