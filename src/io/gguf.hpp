#pragma once
// Reading GGUF files, llama.cpp's model format (ggml's docs/gguf.md), versions 2 and 3, little-endian:
//
//   "GGUF" | uint32 version | uint64 tensor_count | uint64 metadata_kv_count
//   metadata_kv_count × (string key | uint32 value type | value)
//   tensor_count × (string name | uint32 n_dims | n_dims × uint64 ne | uint32 ggml_type | uint64 offset)
//   padding to general.alignment (default 32) | data section (each tensor at its offset, aligned)
//
// Strings are a uint64 byte length and the bytes (no terminator); arrays a uint32 element type, a uint64 count and
// the elements. The whole header is validated when the file is opened, so a bad file fails here with a message
// naming the file and the key or tensor at fault, and never further on.
//
// Dimension order. ggml lists dimensions fastest-varying first: ne[0] is the length of a row (the contiguous
// dimension, along which block formats pack their 32 or 256 elements), ne[1] the number of rows, and so on.
// TensorInfo::shape holds them the other way round, slowest first, as safetensors and Hugging Face do: a matrix
// with ne = [in_features, out_features] has shape [out_features, in_features] = [ne[1], ne[0]], the same shape
// as the Hugging Face weight it came from. Tensor bytes are the same either way: row after row.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/dtype.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"  // TensorInfo

namespace inferno::io {

// Metadata value types, numbered as in the file.
enum class GgufType : uint32_t {
  Uint8 = 0, Int8 = 1, Uint16 = 2, Int16 = 3, Uint32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8,
  Array = 9, Uint64 = 10, Int64 = 11, Float64 = 12,
};
// "uint32", "float32", "string", "array", ...
std::string_view gguf_type_name(GgufType type);

// One metadata value. Scalars are held decoded. Arrays of numbers and bools keep their packed little-endian
// elements where they lie in the file (a vocabulary's scores are not copied); arrays of strings and of arrays
// are held element by element. A GgufValue from a GgufFile is valid as long as that file is.
struct GgufValue {
  GgufType type = GgufType::Uint8;
  uint64_t unsigned_value = 0;  // Uint8, Uint16, Uint32, Uint64, Bool (0 or 1)
  int64_t signed_value = 0;     // Int8, Int16, Int32, Int64
  double float_value = 0;       // Float32 (exactly), Float64
  std::string string_value;     // String

  // Array
  GgufType element_type = GgufType::Uint8;
  uint64_t element_count = 0;
  std::span<const std::byte> element_bytes;  // number and bool elements, packed, inside the file
  std::vector<std::string> strings;          // string elements
  std::vector<GgufValue> arrays;             // array elements

  // "uint32", "array of string", "array of array", for messages.
  std::string type_description() const;
};

// Arrays nested deeper than this (an array of arrays of arrays ...) are refused: no writer makes them, and each
// level costs the reader stack and memory out of proportion to the bytes in the file.
inline constexpr int kMaxGgufArrayNesting = 4;
// The format's own limits: metadata keys up to 65535 bytes, tensor names up to 64 bytes, at most 4 dimensions.
inline constexpr uint64_t kMaxGgufKeyBytes = 65535;
inline constexpr uint64_t kMaxGgufTensorNameBytes = 64;
inline constexpr uint32_t kMaxGgufDimensions = 4;
inline constexpr uint32_t kDefaultGgufAlignment = 32;

class GgufFile {
 public:
  // Maps the file (no copy) and validates its header.
  explicit GgufFile(std::filesystem::path path);
  // A file already in memory (tests, fuzzing): the bytes are kept; source_name stands for the path in errors.
  static GgufFile from_bytes(std::vector<std::byte> bytes, std::string source_name);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_section_offset() const { return data_section_offset_; }
  const std::filesystem::path& path() const { return path_; }
  // The whole file as mapped from disk (its first byte on a page boundary); empty for bytes handed in by from_bytes.
  std::span<const std::byte> mapping() const { return mapping_ ? mapping_->bytes() : std::span<const std::byte>{}; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  // Throws inferno::Error naming the file and the key when it is absent.
  const GgufValue& value(std::string_view key) const;

  // Typed getters. They throw inferno::Error naming the file and the key when the key is absent or holds another
  // type. Integers convert between widths and signedness when the value fits the asked type; floats accept
  // float32, float64 (rounded to float for get_f32) and integers; bools only bools; strings only strings.
  uint32_t get_u32(std::string_view key) const;
  int32_t get_i32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  // Every element converted as above. T: uint8_t ... int64_t, float, double, bool, std::string.
  template <class T>
  std::vector<T> get_array(std::string_view key) const;

  // The same, with nullopt when the key is absent (a value of another type still throws).
  std::optional<uint32_t> optional_u32(std::string_view key) const;
  std::optional<int32_t> optional_i32(std::string_view key) const;
  std::optional<uint64_t> optional_u64(std::string_view key) const;
  std::optional<int64_t> optional_i64(std::string_view key) const;
  std::optional<float> optional_f32(std::string_view key) const;
  std::optional<double> optional_f64(std::string_view key) const;
  std::optional<bool> optional_bool(std::string_view key) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  template <class T>
  std::optional<std::vector<T>> optional_array(std::string_view key) const;

  // Tensors in file order; shapes slowest dimension first (see the top of this file), data_offset absolute.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  // Throws inferno::Error naming the file and the tensor when it is absent.
  const TensorInfo& tensor(std::string_view name) const;
  // The tensor's bytes, inside the mapping. Throws when the TensorInfo does not lie inside this file, or when the
  // file has shrunk since it was opened.
  std::span<const std::byte> data(const TensorInfo& tensor) const;
  // Throws naming the file when it was truncated since it was mapped (see MappedFile::check_whole): call it after
  // the bytes from data() have been copied away.
  void check_whole() const;

 private:
  GgufFile(std::optional<MappedFile> mapping, std::vector<std::byte> owned_bytes, std::filesystem::path path);
  void parse();
  // "FILE: metadata key 'KEY'", the start of every message about a key.
  std::string where(std::string_view key) const;

  std::optional<MappedFile> mapping_;   // a file on disk
  std::vector<std::byte> owned_bytes_;  // or bytes handed in by from_bytes
  std::span<const std::byte> bytes_;    // whichever of the two holds the file
  std::filesystem::path path_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultGgufAlignment;
  uint64_t data_section_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace inferno::io
