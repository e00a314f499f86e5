#pragma once
// Element types of tensors as files store them: the plain types of safetensors and GGUF, and ggml's block formats
// (Q8_0, Q4_K, ...), which pack a fixed number of elements into a fixed number of bytes with their scales.
// Every property of a type lives in the one table in dtype.cpp, so adding a type is one line there.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace inferno::io {

enum class DType {
  F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL, F8_E4M3, F8_E5M2,
  // ggml block formats (ggml-common.h): 32 elements per block for the _0/_1 types, 256 for the K-quants.
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
};

// Bytes of one block: one element for plain types (so the bytes of one element there), a whole block for the
// block formats. Storage of n elements is n / dtype_block_elements × dtype_size.
size_t dtype_size(DType dtype);
// Elements in one block: 1 for plain types, 32 or 256 for the block formats.
size_t dtype_block_elements(DType dtype);
// Bytes that `elements` elements occupy; nullopt when they do not fill whole blocks or the size overflows.
std::optional<uint64_t> dtype_storage_bytes(DType dtype, uint64_t elements);
// The usual spelling: safetensors' for plain types ("F32", "BF16", "F8_E4M3", ...), ggml's for blocks ("Q4_K").
std::string_view dtype_name(DType dtype);
// The inverse of dtype_name for the types safetensors files may hold (no block formats); nullopt otherwise.
std::optional<DType> parse_safetensors_dtype(std::string_view name);
// The DType of a ggml_type number as GGUF tensor infos store it; nullopt for types this engine does not read
// (IQ formats, Q8_1, ternary and FP4 types, numbers ggml never assigned).
std::optional<DType> dtype_from_ggml_type(uint32_t ggml_type);

}  // namespace inferno::io
