#pragma once
// GGUF files written byte by byte for tests: a well-formed file by default (metadata, tensor infos, padding to the
// alignment, data), with every count, type number and offset open to overriding, so that a test can break a file
// in exactly one way. Also used by the tokenizer tests to pack a vocabulary into a GGUF file.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace inferno::testing {

// Little-endian values appended to a byte vector.
struct GgufBytes {
  std::vector<std::byte> bytes;

  void raw(const void* data, size_t size) {
    const auto* p = static_cast<const std::byte*>(data);
    bytes.insert(bytes.end(), p, p + size);
  }
  template <class T>
  void put(T value) { raw(&value, sizeof value); }
  void u8(uint8_t v) { put(v); }
  void u32(uint32_t v) { put(v); }
  void i32(int32_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void f32(float v) { put(v); }
  void str(std::string_view s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
};

// Value type numbers of the format.
enum GgufTypeNumber : uint32_t {
  kGgufU8 = 0, kGgufI8 = 1, kGgufU16 = 2, kGgufI16 = 3, kGgufU32 = 4, kGgufI32 = 5, kGgufF32 = 6, kGgufBool = 7,
  kGgufString = 8, kGgufArray = 9, kGgufU64 = 10, kGgufI64 = 11, kGgufF64 = 12,
};
// ggml type numbers used in the tests.
enum GgmlTypeNumber : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ8_0 = 8, kGgmlQ4_K = 12, kGgmlQ6_K = 14 };

class GgufBuilder {
 public:
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count;    // as written in the header; default: the tensors added
  std::optional<uint64_t> metadata_count;  // default: the entries added
  uint64_t alignment = 32;                 // padding before the data section and between tensors

  // One metadata entry: the key, the type number and the value's bytes exactly as they follow it.
  void entry(std::string_view key, uint32_t type, const std::vector<std::byte>& value_bytes) {
    metadata_.str(key);
    metadata_.u32(type);
    metadata_.raw(value_bytes.data(), value_bytes.size());
    ++entries_;
  }
  template <class T>
  void scalar(std::string_view key, uint32_t type, T value) {
    GgufBytes v;
    v.put(value);
    entry(key, type, v.bytes);
  }
  void u32(std::string_view key, uint32_t value) { scalar(key, kGgufU32, value); }
  void i32(std::string_view key, int32_t value) { scalar(key, kGgufI32, value); }
  void f32(std::string_view key, float value) { scalar(key, kGgufF32, value); }
  void boolean(std::string_view key, bool value) { scalar(key, kGgufBool, uint8_t(value)); }
  void string(std::string_view key, std::string_view value) {
    GgufBytes v;
    v.str(value);
    entry(key, kGgufString, v.bytes);
  }
  void strings(std::string_view key, const std::vector<std::string>& values) {
    GgufBytes v;
    v.u32(kGgufString);
    v.u64(values.size());
    for (const std::string& s : values) v.str(s);
    entry(key, kGgufArray, v.bytes);
  }
  template <class T>
  void numbers(std::string_view key, uint32_t element_type, const std::vector<T>& values) {
    GgufBytes v;
    v.u32(element_type);
    v.u64(values.size());
    for (T x : values) v.put(x);
    entry(key, kGgufArray, v.bytes);
  }

  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;       // ggml order: row length first
    uint32_t ggml_type = kGgmlF32;
    std::vector<std::byte> data;    // written at the offset (when it lies inside the data section)
    std::optional<uint64_t> offset; // default: after the previous tensor, aligned
  };
  // Returns the tensor so that a test can override its fields (until the next tensor is added).
  Tensor& tensor(std::string name, std::vector<uint64_t> ne, uint32_t ggml_type, std::vector<std::byte> data) {
    tensors_.push_back(Tensor{std::move(name), std::move(ne), ggml_type, std::move(data), std::nullopt});
    return tensors_.back();
  }

  // The tensor infos start at this byte of the file.
  size_t tensor_infos_offset() const { return 4 + 4 + 8 + 8 + metadata_.bytes.size(); }

  std::vector<std::byte> build() const {
    GgufBytes out;
    out.raw("GGUF", 4);
    out.u32(version);
    out.u64(tensor_count.value_or(tensors_.size()));
    out.u64(metadata_count.value_or(entries_));
    out.raw(metadata_.bytes.data(), metadata_.bytes.size());

    std::vector<uint64_t> offsets;
    uint64_t next = 0, data_size = 0;
    for (const Tensor& t : tensors_) {
      const uint64_t offset = t.offset.value_or(next);
      offsets.push_back(offset);
      if (!t.offset) next = round_up(offset + t.data.size());
      // Only offsets a sane file could have get their data written; broken ones point past the end.
      if (offset < (uint64_t(1) << 30)) data_size = std::max(data_size, offset + t.data.size());
    }
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = tensors_[i];
      out.str(t.name);
      out.u32(uint32_t(t.ne.size()));
      for (uint64_t d : t.ne) out.u64(d);
      out.u32(t.ggml_type);
      out.u64(offsets[i]);
    }
    out.bytes.resize(round_up(out.bytes.size()), std::byte{0});
    const size_t data_start = out.bytes.size();
    out.bytes.resize(data_start + data_size, std::byte{0});
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (offsets[i] < (uint64_t(1) << 30) && !tensors_[i].data.empty())
        std::memcpy(out.bytes.data() + data_start + offsets[i], tensors_[i].data.data(), tensors_[i].data.size());
    return out.bytes;
  }

 private:
  uint64_t round_up(uint64_t n) const { return alignment ? (n + alignment - 1) / alignment * alignment : n; }

  GgufBytes metadata_;
  uint64_t entries_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace inferno::testing
