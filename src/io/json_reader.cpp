#include "io/json_reader.hpp"

#include "io/regular_file.hpp"
#include "util/error.hpp"

namespace inferno::io::json {

MappedFile map_json_file(const std::filesystem::path& path) {
  MappedFile file(path);
  if (file.size() > kMaxJsonFileBytes)
    fail(path.string() + ": " + std::to_string(file.size()) + " bytes is far too large for this JSON file");
  return file;
}

Document::Document(std::string_view text, std::string source) : source_(std::move(source)) {
  // realloc_if_needed: simdjson reads a little past the end, so it copies the text into a padded buffer.
  const auto error = parser_.parse(text.data(), text.size(), true).get(root_);
  if (error) fail(source_ + ": malformed JSON: " + simdjson::error_message(error));
}

std::string_view type_name(simdjson::dom::element element) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::OBJECT: return "object";
    case element_type::ARRAY: return "array";
    case element_type::STRING: return "string";
    case element_type::INT64:
    case element_type::UINT64: return "integer";
    case element_type::DOUBLE: return "number";
    case element_type::BOOL: return "boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "unknown";
}

ObjectReader::ObjectReader(simdjson::dom::object object, std::string source, std::string path_prefix)
    : object_(object), source_(std::move(source)), path_prefix_(std::move(path_prefix)) {}

std::string ObjectReader::field_path(std::string_view key) const { return path_prefix_ + std::string(key); }

void ObjectReader::fail_field(std::string_view key, const std::string& problem) const {
  fail(source_ + ": field " + quoted_name(field_path(key)) + ": " + problem);
}

std::optional<simdjson::dom::element> ObjectReader::find(std::string_view key) const {
  // A key written twice takes its last value, as Python's json (and so transformers) does; simdjson's at_key would
  // give the first. Config objects hold tens of keys, so the walk costs nothing.
  std::optional<simdjson::dom::element> found;
  for (auto [name, value] : object_)
    if (name == key) found = value;
  if (found && found->is_null()) return std::nullopt;
  return found;
}

bool ObjectReader::present(std::string_view key) const {
  for (auto [name, value] : object_)
    if (name == key) return true;
  return false;
}

int64_t ObjectReader::integer_in_range(std::string_view key, simdjson::dom::element value, int64_t min,
                                       int64_t max) const {
  using simdjson::dom::element_type;
  int64_t number = 0;
  if (value.type() == element_type::UINT64) {
    // Only integers past INT64_MAX are stored as UINT64: surely out of any range asked for here.
    fail_field(key, "value " + simdjson::to_string(value) + " is out of range [" + std::to_string(min) + ", " +
                        std::to_string(max) + "]");
  }
  if (value.type() != element_type::INT64 || value.get_int64().get(number) != simdjson::SUCCESS)
    fail_field(key, "expected an integer, got " + std::string(type_name(value)));
  if (number < min || number > max)
    fail_field(key, "value " + std::to_string(number) + " is out of range [" + std::to_string(min) + ", " +
                        std::to_string(max) + "]");
  return number;
}

std::optional<int64_t> ObjectReader::optional_int(std::string_view key, int64_t min, int64_t max) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  return integer_in_range(key, *value, min, max);
}

int64_t ObjectReader::required_int(std::string_view key, int64_t min, int64_t max) const {
  const auto value = find(key);
  if (!value) fail_field(key, "missing (a required integer)");
  return integer_in_range(key, *value, min, max);
}

std::optional<double> ObjectReader::optional_number(std::string_view key) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  double number = 0;
  if (value->get_double().get(number) != simdjson::SUCCESS)
    fail_field(key, "expected a number, got " + std::string(type_name(*value)));
  return number;
}

std::optional<bool> ObjectReader::optional_bool(std::string_view key) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  bool flag = false;
  if (value->get_bool().get(flag) != simdjson::SUCCESS)
    fail_field(key, "expected true or false, got " + std::string(type_name(*value)));
  return flag;
}

std::optional<std::string> ObjectReader::optional_string(std::string_view key) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  std::string_view text;
  if (value->get_string().get(text) != simdjson::SUCCESS)
    fail_field(key, "expected a string, got " + std::string(type_name(*value)));
  return std::string(text);
}

std::optional<ObjectReader> ObjectReader::optional_object(std::string_view key) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  simdjson::dom::object object;
  if (value->get_object().get(object) != simdjson::SUCCESS)
    fail_field(key, "expected an object, got " + std::string(type_name(*value)));
  return ObjectReader(object, source_, field_path(key) + ".");
}

std::optional<std::vector<int64_t>> ObjectReader::optional_int_or_list(std::string_view key, int64_t min,
                                                                       int64_t max) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  if (!value->is_array()) return std::vector<int64_t>{integer_in_range(key, *value, min, max)};
  simdjson::dom::array array;
  if (value->get_array().get(array) != simdjson::SUCCESS) fail_field(key, "expected an integer or a list");
  std::vector<int64_t> numbers;
  for (simdjson::dom::element item : array)
    numbers.push_back(integer_in_range(key, item, min, max));
  return numbers;
}

std::optional<std::vector<std::string>> ObjectReader::optional_string_list(std::string_view key) const {
  const auto value = find(key);
  if (!value) return std::nullopt;
  simdjson::dom::array array;
  if (value->get_array().get(array) != simdjson::SUCCESS)
    fail_field(key, "expected a list of strings, got " + std::string(type_name(*value)));
  std::vector<std::string> strings;
  for (simdjson::dom::element item : array) {
    std::string_view text;
    if (item.get_string().get(text) != simdjson::SUCCESS)
      fail_field(key, "expected a list of strings, found " + std::string(type_name(item)) + " in it");
    strings.emplace_back(text);
  }
  return strings;
}

}  // namespace inferno::io::json
