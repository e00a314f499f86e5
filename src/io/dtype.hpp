#pragma once
// Element types of tensors as files store them. GGUF block formats will join this enum; every property of a type
// lives in the one table in dtype.cpp, so adding a type is one line there.
#include <cstddef>
#include <optional>
#include <string_view>

namespace inferno::io {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL, F8_E4M3, F8_E5M2 };

// Bytes of one element.
size_t dtype_size(DType dtype);
// The safetensors spelling: "F32", "BF16", "F8_E4M3", ...
std::string_view dtype_name(DType dtype);
// The inverse of dtype_name; nullopt for a name this engine does not know.
std::optional<DType> parse_safetensors_dtype(std::string_view name);

}  // namespace inferno::io
