#pragma once
// simdjson with errors that name the file and the field. Used by every JSON format of the io room (safetensors
// headers, config.json, generation_config.json, shard indexes) and by the model for quantization_config.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.hpp"

namespace inferno::io::json {

// JSON side files of a checkpoint are kilobytes (an index of a 405B model is ~100 KB); a larger one is not what it
// claims to be, and parsing it would cost several times its size in memory.
inline constexpr uint64_t kMaxJsonFileBytes = 100'000'000;

// Maps a JSON file, refusing one above kMaxJsonFileBytes; the caller keeps the mapping alive while parsing.
MappedFile map_json_file(const std::filesystem::path& path);

inline std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// A parsed JSON text. The parser owns the memory that the elements point into, so elements must not outlive it.
class Document {
 public:
  // Throws inferno::Error "<source>: malformed JSON: ..." on any syntax error, bad UTF-8 or excessive nesting.
  Document(std::string_view text, std::string source);
  Document(const Document&) = delete;
  Document& operator=(const Document&) = delete;

  simdjson::dom::element root() const { return root_; }
  const std::string& source() const { return source_; }

 private:
  simdjson::dom::parser parser_;
  simdjson::dom::element root_;
  std::string source_;
};

// "object", "array", "string", "integer", "number", "boolean" or "null": for error messages.
std::string_view type_name(simdjson::dom::element element);

// Reads the fields of one JSON object. Every error names the source and the full field path
// ("config.json: field 'rope_scaling.factor': expected a number, got string").
// A field that is absent or null counts as absent, as transformers treats both.
class ObjectReader {
 public:
  ObjectReader(simdjson::dom::object object, std::string source, std::string path_prefix = "");

  // The key's value (its last, when written more than once); nullopt when absent or null.
  std::optional<simdjson::dom::element> find(std::string_view key) const;
  // Whether the key is written at all, null included.
  bool present(std::string_view key) const;
  bool has(std::string_view key) const { return find(key).has_value(); }

  std::optional<int64_t> optional_int(std::string_view key, int64_t min, int64_t max) const;
  int64_t required_int(std::string_view key, int64_t min, int64_t max) const;
  // Integers are accepted where a number is expected; NaN and infinities cannot occur in JSON.
  std::optional<double> optional_number(std::string_view key) const;
  std::optional<bool> optional_bool(std::string_view key) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  std::optional<ObjectReader> optional_object(std::string_view key) const;
  // A single integer or a list of integers (how transformers writes eos_token_id); nullopt when absent.
  std::optional<std::vector<int64_t>> optional_int_or_list(std::string_view key, int64_t min, int64_t max) const;
  std::optional<std::vector<std::string>> optional_string_list(std::string_view key) const;

  simdjson::dom::object object() const { return object_; }
  const std::string& source() const { return source_; }
  std::string field_path(std::string_view key) const;
  [[noreturn]] void fail_field(std::string_view key, const std::string& problem) const;

 private:
  int64_t integer_in_range(std::string_view key, simdjson::dom::element value, int64_t min, int64_t max) const;

  simdjson::dom::object object_;
  std::string source_;
  std::string path_prefix_;
};

}  // namespace inferno::io::json
