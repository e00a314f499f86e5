#pragma once
// Reading safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the data section. Everything in the header is
// validated before any tensor is handed out, so a bad file fails here with a clear message and never further on.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/dtype.hpp"
#include "io/mapped_file.hpp"

namespace inferno::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;  // absolute offset in the file
  uint64_t bytes = 0;
  int64_t elements() const;
};

// What a safetensors file holds and where: its header, checked against the file's size.
struct SafetensorsLayout {
  std::vector<TensorInfo> tensors;  // in file order (by data_offset, then name)
  std::map<std::string, std::string> metadata;
  uint64_t data_section_offset = 0;  // 8 + header length
};

// The largest header accepted, as the reference implementation does: a header this big would describe millions of
// tensors, so anything larger is a broken or hostile file.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Parses and validates the header of a whole safetensors file held in memory. source_name stands for the file in
// error messages. Throws inferno::Error on any inconsistency.
SafetensorsLayout parse_safetensors_layout(std::span<const std::byte> file_bytes, const std::string& source_name);

class SafetensorsFile {
 public:
  // Maps the file (no copy) and validates its header.
  explicit SafetensorsFile(std::filesystem::path path);
  // A file already in memory (tests, fuzzing): the bytes are kept; source_name stands for the path in errors.
  static SafetensorsFile from_bytes(std::vector<std::byte> bytes, std::string source_name);

  const std::vector<TensorInfo>& tensors() const { return layout_.tensors; }
  const TensorInfo* find(std::string_view name) const;
  // Throws inferno::Error naming the file and the tensor when it is absent.
  const TensorInfo& at(std::string_view name) const;
  // The tensor's bytes, inside the mapping. Throws when the TensorInfo does not come from this file's range, or
  // when the file has shrunk since it was opened.
  std::span<const std::byte> data(const TensorInfo& tensor) const;
  // Throws naming the file when it was truncated since it was mapped (see MappedFile::check_whole): call it after
  // the bytes from data() have been copied away.
  void check_whole() const;
  const std::map<std::string, std::string>& metadata() const { return layout_.metadata; }
  const std::filesystem::path& path() const { return path_; }
  // The whole file as mapped from disk (its first byte on a page boundary); empty for bytes handed in by from_bytes.
  std::span<const std::byte> mapping() const { return mapping_ ? mapping_->bytes() : std::span<const std::byte>{}; }

  // The tensor's values as float: F32, F16 and BF16 (exact conversions), F64 (rounded). Other dtypes throw.
  std::vector<float> read_f32(std::string_view name) const;
  // The tensor's values as int64: I64, I32, I16, I8 and U8. Other dtypes throw.
  std::vector<int64_t> read_i64(std::string_view name) const;

 private:
  SafetensorsFile(std::optional<MappedFile> mapping, std::vector<std::byte> owned_bytes, std::filesystem::path path);

  std::optional<MappedFile> mapping_;  // a file on disk
  std::vector<std::byte> owned_bytes_;  // or bytes handed in by from_bytes
  std::span<const std::byte> bytes_;    // whichever of the two holds the file
  std::filesystem::path path_;
  SafetensorsLayout layout_;
  std::map<std::string, size_t, std::less<>> index_by_name_;
};

}  // namespace inferno::io
