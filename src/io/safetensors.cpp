#include "io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "io/json_reader.hpp"
#include "io/regular_file.hpp"
#include "util/error.hpp"
#include "util/half.hpp"

namespace inferno::io {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; so must the host be");

int64_t TensorInfo::elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;  // validated not to overflow when the header was read
  return count;
}

namespace {

uint64_t read_u64_le(const std::byte* p) {
  uint64_t value = 0;
  std::memcpy(&value, p, sizeof value);
  return value;
}

std::string in_quotes(std::string_view text) { return quoted_name(text); }

// One tensor entry of the header: {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, offsets relative
// to the data section. Checks everything that concerns this tensor alone.
TensorInfo parse_tensor_entry(std::string_view name, simdjson::dom::element entry, uint64_t data_section_offset,
                              uint64_t data_section_bytes, const std::string& source) {
  const std::string where = source + ": tensor " + in_quotes(name) + ": ";
  simdjson::dom::object object;
  if (entry.get_object().get(object) != simdjson::SUCCESS)
    fail(where + "header entry must be an object, got " + std::string(json::type_name(entry)));

  TensorInfo tensor;
  tensor.name = std::string(name);

  simdjson::dom::element dtype_element;
  std::string_view dtype_text;
  if (object.at_key("dtype").get(dtype_element) != simdjson::SUCCESS) fail(where + "no 'dtype'");
  if (dtype_element.get_string().get(dtype_text) != simdjson::SUCCESS)
    fail(where + "'dtype' must be a string, got " + std::string(json::type_name(dtype_element)));
  const auto dtype = parse_safetensors_dtype(dtype_text);
  if (!dtype) fail(where + "unknown dtype " + in_quotes(dtype_text));
  tensor.dtype = *dtype;

  simdjson::dom::element shape_element;
  simdjson::dom::array shape_array;
  if (object.at_key("shape").get(shape_element) != simdjson::SUCCESS) fail(where + "no 'shape'");
  if (shape_element.get_array().get(shape_array) != simdjson::SUCCESS)
    fail(where + "'shape' must be a list, got " + std::string(json::type_name(shape_element)));
  uint64_t elements = 1;
  for (simdjson::dom::element dim_element : shape_array) {
    int64_t dim = 0;
    if (dim_element.type() != simdjson::dom::element_type::INT64 ||
        dim_element.get_int64().get(dim) != simdjson::SUCCESS || dim < 0)
      fail(where + "shape dimensions must be non-negative integers, got " + simdjson::to_string(dim_element));
    // Elements must fit int64 (TensorInfo::elements) as well as uint64.
    if (__builtin_mul_overflow(elements, uint64_t(dim), &elements) || elements > uint64_t(INT64_MAX))
      fail(where + "shape " + simdjson::to_string(shape_element) + " has too many elements");
    tensor.shape.push_back(dim);
  }

  simdjson::dom::element offsets_element;
  simdjson::dom::array offsets_array;
  if (object.at_key("data_offsets").get(offsets_element) != simdjson::SUCCESS) fail(where + "no 'data_offsets'");
  if (offsets_element.get_array().get(offsets_array) != simdjson::SUCCESS || offsets_array.size() != 2)
    fail(where + "'data_offsets' must be a list [begin, end], got " + simdjson::to_string(offsets_element));
  uint64_t offsets[2] = {0, 0};
  size_t i = 0;
  for (simdjson::dom::element offset_element : offsets_array) {
    // get_uint64 accepts both integer tapes (non-negative ones) and refuses numbers with a fraction.
    if (offset_element.get_uint64().get(offsets[i++]) != simdjson::SUCCESS)
      fail(where + "'data_offsets' must be non-negative integers below 2^64, got " +
           simdjson::to_string(offsets_element));
  }
  const uint64_t begin = offsets[0], end = offsets[1];
  if (end < begin) fail(where + "data_offsets " + simdjson::to_string(offsets_element) + " end before they begin");
  if (end > data_section_bytes)
    fail(where + "data_offsets " + simdjson::to_string(offsets_element) + " run past the end of the data section (" +
         std::to_string(data_section_bytes) + " bytes)");

  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(elements, uint64_t(dtype_size(tensor.dtype)), &expected_bytes))
    fail(where + "shape " + simdjson::to_string(shape_element) + " is too large for its dtype");
  if (end - begin != expected_bytes)
    fail(where + "shape " + simdjson::to_string(shape_element) + " of " + std::string(dtype_name(tensor.dtype)) +
         " needs " + std::to_string(expected_bytes) + " bytes but data_offsets " +
         simdjson::to_string(offsets_element) + " hold " + std::to_string(end - begin));

  // Cannot overflow: end <= data_section_bytes and data_section_offset + data_section_bytes is the file size.
  tensor.data_offset = data_section_offset + begin;
  tensor.bytes = expected_bytes;
  return tensor;
}

std::map<std::string, std::string> parse_metadata(simdjson::dom::element element, const std::string& source) {
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS)
    fail(source + ": '__metadata__' must be an object, got " + std::string(json::type_name(element)));
  std::map<std::string, std::string> metadata;
  for (auto [key, value] : object) {
    std::string_view text;
    if (value.get_string().get(text) != simdjson::SUCCESS)
      fail(source + ": '__metadata__' entry " + in_quotes(key) + " must be a string, got " +
           std::string(json::type_name(value)));
    metadata[std::string(key)] = std::string(text);
  }
  return metadata;
}

}  // namespace

SafetensorsLayout parse_safetensors_layout(std::span<const std::byte> file_bytes, const std::string& source) {
  if (file_bytes.size() < 8)
    fail(source + ": file too short for a safetensors header (" + std::to_string(file_bytes.size()) + " bytes)");
  const uint64_t header_bytes = read_u64_le(file_bytes.data());
  if (header_bytes > kMaxSafetensorsHeaderBytes)
    fail(source + ": header length " + std::to_string(header_bytes) + " is absurd (limit " +
         std::to_string(kMaxSafetensorsHeaderBytes) + " bytes): not a safetensors file?");
  if (header_bytes > file_bytes.size() - 8)
    fail(source + ": header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
         std::to_string(file_bytes.size()) + " bytes): truncated file?");

  SafetensorsLayout layout;
  layout.data_section_offset = 8 + header_bytes;
  const uint64_t data_section_bytes = file_bytes.size() - layout.data_section_offset;

  const std::string_view header_text(reinterpret_cast<const char*>(file_bytes.data() + 8), header_bytes);
  json::Document header(header_text, source + " (safetensors header)");
  simdjson::dom::object root;
  if (header.root().get_object().get(root) != simdjson::SUCCESS)
    fail(source + ": safetensors header must be a JSON object, got " + std::string(json::type_name(header.root())));

  bool seen_metadata = false;
  std::set<std::string_view> names;  // views into the parsed header, alive until it goes
  for (auto [key, value] : root) {
    if (key == "__metadata__") {
      if (seen_metadata) fail(source + ": '__metadata__' appears twice in the header");
      seen_metadata = true;
      layout.metadata = parse_metadata(value, source);
      continue;
    }
    if (!names.insert(key).second) fail(source + ": tensor " + in_quotes(key) + " appears twice in the header");
    layout.tensors.push_back(parse_tensor_entry(key, value, layout.data_section_offset, data_section_bytes, source));
  }

  std::sort(layout.tensors.begin(), layout.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.data_offset, a.bytes, a.name) < std::tie(b.data_offset, b.bytes, b.name);
  });
  // Empty tensors own no bytes, so only tensors with data can overlap; walking in offset order, each must start at
  // or after the furthest end seen so far.
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo& tensor : layout.tensors) {
    if (tensor.bytes == 0) continue;
    if (furthest && tensor.data_offset < furthest->data_offset + furthest->bytes)
      fail(source + ": tensor " + in_quotes(tensor.name) + " overlaps tensor " + in_quotes(furthest->name) +
           " in the data section");
    if (!furthest || tensor.data_offset + tensor.bytes > furthest->data_offset + furthest->bytes) furthest = &tensor;
  }
  return layout;
}

SafetensorsFile::SafetensorsFile(std::filesystem::path path)
    : SafetensorsFile(MappedFile(path), {}, path) {}

SafetensorsFile SafetensorsFile::from_bytes(std::vector<std::byte> bytes, std::string source_name) {
  return SafetensorsFile(std::nullopt, std::move(bytes), std::filesystem::path(std::move(source_name)));
}

SafetensorsFile::SafetensorsFile(std::optional<MappedFile> mapping, std::vector<std::byte> owned_bytes,
                                 std::filesystem::path path)
    : mapping_(std::move(mapping)), owned_bytes_(std::move(owned_bytes)), path_(std::move(path)) {
  bytes_ = mapping_ ? mapping_->bytes() : std::span<const std::byte>(owned_bytes_);
  layout_ = parse_safetensors_layout(bytes_, path_.string());
  for (size_t i = 0; i < layout_.tensors.size(); ++i) index_by_name_.emplace(layout_.tensors[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_by_name_.find(name);
  return it == index_by_name_.end() ? nullptr : &layout_.tensors[it->second];
}

const TensorInfo& SafetensorsFile::at(std::string_view name) const {
  if (const TensorInfo* tensor = find(name)) return *tensor;
  fail(path_.string() + ": no tensor " + in_quotes(name));
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& tensor) const {
  if (tensor.data_offset > bytes_.size() || tensor.bytes > bytes_.size() - tensor.data_offset)
    fail(path_.string() + ": tensor " + in_quotes(tensor.name) + " lies outside this file");
  check_whole();  // a file cut short since it was opened is refused here, before its bytes are read
  return bytes_.subspan(tensor.data_offset, tensor.bytes);
}

void SafetensorsFile::check_whole() const {
  if (mapping_) mapping_->check_whole();
}

namespace {

// Element i of a little-endian array of T starting at p (no alignment assumed: safetensors does not align).
template <typename T>
T load(const std::byte* p, size_t i) {
  T value;
  std::memcpy(&value, p + i * sizeof(T), sizeof(T));
  return value;
}

}  // namespace

std::vector<float> SafetensorsFile::read_f32(std::string_view name) const {
  const TensorInfo& tensor = at(name);
  const std::byte* p = data(tensor).data();
  std::vector<float> values(size_t(tensor.elements()));
  const size_t n = values.size();
  switch (tensor.dtype) {
    case DType::F32: for (size_t i = 0; i < n; ++i) values[i] = load<float>(p, i); break;
    case DType::F16: for (size_t i = 0; i < n; ++i) values[i] = f16_to_f32(load<uint16_t>(p, i)); break;
    case DType::BF16: for (size_t i = 0; i < n; ++i) values[i] = bf16_to_f32(load<uint16_t>(p, i)); break;
    case DType::F64: for (size_t i = 0; i < n; ++i) values[i] = float(load<double>(p, i)); break;
    default:
      fail(path_.string() + ": tensor " + in_quotes(name) + " has dtype " + std::string(dtype_name(tensor.dtype)) +
           ", not a float type (F32, F16, BF16, F64)");
  }
  check_whole();  // the values copied are the file's, not zeros from a truncation during the copy
  return values;
}

std::vector<int64_t> SafetensorsFile::read_i64(std::string_view name) const {
  const TensorInfo& tensor = at(name);
  const std::byte* p = data(tensor).data();
  std::vector<int64_t> values(size_t(tensor.elements()));
  const size_t n = values.size();
  switch (tensor.dtype) {
    case DType::I64: for (size_t i = 0; i < n; ++i) values[i] = load<int64_t>(p, i); break;
    case DType::I32: for (size_t i = 0; i < n; ++i) values[i] = load<int32_t>(p, i); break;
    case DType::I16: for (size_t i = 0; i < n; ++i) values[i] = load<int16_t>(p, i); break;
    case DType::I8: for (size_t i = 0; i < n; ++i) values[i] = load<int8_t>(p, i); break;
    case DType::U8: for (size_t i = 0; i < n; ++i) values[i] = load<uint8_t>(p, i); break;
    default:
      fail(path_.string() + ": tensor " + in_quotes(name) + " has dtype " + std::string(dtype_name(tensor.dtype)) +
           ", not an integer type (I64, I32, I16, I8, U8)");
  }
  check_whole();
  return values;
}

}  // namespace inferno::io
