#include "io/gguf.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include "io/regular_file.hpp"
#include "util/error.hpp"

namespace inferno::io {

static_assert(std::endian::native == std::endian::little, "GGUF data is little-endian; so must the host be");

namespace {

constexpr uint64_t kNoElement = ~uint64_t(0);

// The fewest bytes one metadata entry (8-byte key length, type, a 1-byte value) and one tensor info (8-byte name
// length, n_dims, one dimension, type, offset) can take: counts above what the rest of the file could hold are
// refused before anything is allocated for them.
constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

// ggml_type names, for messages about types this reader does not take (ggml.h's enum ggml_type).
constexpr std::array<std::string_view, 40> kGgmlTypeNames = {
    "F32",     "F16",     "Q4_0",   "Q4_1",   "Q4_2",     "Q4_3",     "Q5_0",     "Q5_1",
    "Q8_0",    "Q8_1",    "Q2_K",   "Q3_K",   "Q4_K",     "Q5_K",     "Q6_K",     "Q8_K",
    "IQ2_XXS", "IQ2_XS",  "IQ3_XXS", "IQ1_S", "IQ4_NL",   "IQ3_S",    "IQ2_S",    "IQ4_XS",
    "I8",      "I16",     "I32",    "I64",    "F64",      "IQ1_M",    "BF16",     "Q4_0_4_4",
    "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};

std::string in_quotes(std::string_view text) { return quoted_name(text); }

bool is_known_type(uint32_t type) { return type <= uint32_t(GgufType::Float64); }
bool is_unsigned(GgufType t) {
  return t == GgufType::Uint8 || t == GgufType::Uint16 || t == GgufType::Uint32 || t == GgufType::Uint64;
}
bool is_signed(GgufType t) {
  return t == GgufType::Int8 || t == GgufType::Int16 || t == GgufType::Int32 || t == GgufType::Int64;
}
bool is_float(GgufType t) { return t == GgufType::Float32 || t == GgufType::Float64; }

// Bytes of one value of a fixed-size type; 0 for strings and arrays.
uint64_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::Uint8: case GgufType::Int8: case GgufType::Bool: return 1;
    case GgufType::Uint16: case GgufType::Int16: return 2;
    case GgufType::Uint32: case GgufType::Int32: case GgufType::Float32: return 4;
    case GgufType::Uint64: case GgufType::Int64: case GgufType::Float64: return 8;
    case GgufType::String: case GgufType::Array: return 0;
  }
  return 0;
}

// The fewest bytes a value of this type takes in the file.
uint64_t min_size(GgufType t) {
  if (t == GgufType::String) return 8;      // the length
  if (t == GgufType::Array) return 4 + 8;   // element type and count
  return fixed_size(t);
}

// Reads the header front to back. Every read is bounds-checked; `what` names the file and what was being read
// ("FILE: metadata key 'KEY'"), and every message starts with it.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}

  uint64_t remaining() const { return bytes_.size() - pos_; }
  uint64_t position() const { return pos_; }

  const std::byte* take(uint64_t count, std::string_view what) {
    if (count > remaining())
      fail(std::string(what) + ": the file ends at byte " + std::to_string(bytes_.size()) + ", " +
           std::to_string(count) + " bytes from byte " + std::to_string(pos_) + " were needed: truncated file?");
    const std::byte* p = bytes_.data() + pos_;
    pos_ += count;
    return p;
  }

  template <class T>
  T scalar(std::string_view what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }

  // A string; `element` names its index when it is an element of an array.
  std::string_view string(std::string_view what, uint64_t element = kNoElement) {
    const uint64_t length = scalar<uint64_t>(what);
    if (length > remaining())
      fail(std::string(what) + (element == kNoElement ? "" : ", element " + std::to_string(element)) +
           ": string of " + std::to_string(length) + " bytes runs past the end of the file (" +
           std::to_string(remaining()) + " bytes left at byte " + std::to_string(pos_) + ")");
    return {reinterpret_cast<const char*>(take(length, what)), size_t(length)};
  }

 private:
  std::span<const std::byte> bytes_;
  uint64_t pos_ = 0;
};

GgufType read_type(Reader& r, const std::string& what) {
  const uint32_t type = r.scalar<uint32_t>(what);
  if (!is_known_type(type)) fail(what + ": unknown value type " + std::to_string(type));
  return GgufType(type);
}

void check_bools(std::span<const std::byte> bytes, const std::string& what) {
  for (size_t i = 0; i < bytes.size(); ++i)
    if (uint8_t(bytes[i]) > 1)
      fail(what + ": bool " + (bytes.size() > 1 ? "element " + std::to_string(i) + " " : "") + "has the value " +
           std::to_string(uint8_t(bytes[i])) + " (must be 0 or 1)");
}

// One value of `type`. `what` is "FILE: metadata key 'KEY'"; depth counts the arrays around this value.
GgufValue read_value(Reader& r, GgufType type, const std::string& what, int depth) {
  GgufValue value;
  value.type = type;
  switch (type) {
    case GgufType::Uint8: value.unsigned_value = r.scalar<uint8_t>(what); break;
    case GgufType::Uint16: value.unsigned_value = r.scalar<uint16_t>(what); break;
    case GgufType::Uint32: value.unsigned_value = r.scalar<uint32_t>(what); break;
    case GgufType::Uint64: value.unsigned_value = r.scalar<uint64_t>(what); break;
    case GgufType::Int8: value.signed_value = r.scalar<int8_t>(what); break;
    case GgufType::Int16: value.signed_value = r.scalar<int16_t>(what); break;
    case GgufType::Int32: value.signed_value = r.scalar<int32_t>(what); break;
    case GgufType::Int64: value.signed_value = r.scalar<int64_t>(what); break;
    case GgufType::Float32: value.float_value = r.scalar<float>(what); break;
    case GgufType::Float64: value.float_value = r.scalar<double>(what); break;
    case GgufType::Bool: {
      const std::byte* p = r.take(1, what);
      check_bools({p, 1}, what);
      value.unsigned_value = uint8_t(*p);
      break;
    }
    case GgufType::String: value.string_value = std::string(r.string(what)); break;
    case GgufType::Array: {
      value.element_type = read_type(r, what);
      value.element_count = r.scalar<uint64_t>(what);
      const uint64_t element_bytes = min_size(value.element_type);
      if (value.element_count > r.remaining() / element_bytes)
        fail(what + ": array of " + std::to_string(value.element_count) + " " +
             std::string(gguf_type_name(value.element_type)) + " elements cannot fit in the " +
             std::to_string(r.remaining()) + " bytes left in the file");
      if (value.element_type == GgufType::String) {
        value.strings.reserve(size_t(value.element_count));
        for (uint64_t i = 0; i < value.element_count; ++i) value.strings.emplace_back(r.string(what, i));
      } else if (value.element_type == GgufType::Array) {
        if (depth + 1 >= kMaxGgufArrayNesting)
          fail(what + ": arrays nested more than " + std::to_string(kMaxGgufArrayNesting) + " deep");
        value.arrays.reserve(size_t(value.element_count));
        for (uint64_t i = 0; i < value.element_count; ++i)
          value.arrays.push_back(read_value(r, GgufType::Array, what, depth + 1));
      } else {
        const uint64_t total = value.element_count * element_bytes;  // fits: bounded by remaining() above
        value.element_bytes = {r.take(total, what), size_t(total)};
        if (value.element_type == GgufType::Bool) check_bools(value.element_bytes, what);
      }
      break;
    }
  }
  return value;
}

// A number in metadata, whichever field of GgufValue holds it.
struct Number {
  GgufType type;
  uint64_t unsigned_value = 0;
  int64_t signed_value = 0;
  double float_value = 0;
};

Number scalar_number(const GgufValue& v) { return {v.type, v.unsigned_value, v.signed_value, v.float_value}; }

template <class T>
T load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

Number element_number(const GgufValue& v, uint64_t i) {
  const std::byte* p = v.element_bytes.data() + i * fixed_size(v.element_type);
  Number n{v.element_type};
  switch (v.element_type) {
    case GgufType::Uint8: case GgufType::Bool: n.unsigned_value = load<uint8_t>(p); break;
    case GgufType::Uint16: n.unsigned_value = load<uint16_t>(p); break;
    case GgufType::Uint32: n.unsigned_value = load<uint32_t>(p); break;
    case GgufType::Uint64: n.unsigned_value = load<uint64_t>(p); break;
    case GgufType::Int8: n.signed_value = load<int8_t>(p); break;
    case GgufType::Int16: n.signed_value = load<int16_t>(p); break;
    case GgufType::Int32: n.signed_value = load<int32_t>(p); break;
    case GgufType::Int64: n.signed_value = load<int64_t>(p); break;
    case GgufType::Float32: n.float_value = load<float>(p); break;
    case GgufType::Float64: n.float_value = load<double>(p); break;
    case GgufType::String: case GgufType::Array: break;  // not numbers: never packed
  }
  return n;
}

template <class T>
std::string_view wanted_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, uint8_t>) return "uint8";
  else if constexpr (std::is_same_v<T, int8_t>) return "int8";
  else if constexpr (std::is_same_v<T, uint16_t>) return "uint16";
  else if constexpr (std::is_same_v<T, int16_t>) return "int16";
  else if constexpr (std::is_same_v<T, uint32_t>) return "uint32";
  else if constexpr (std::is_same_v<T, int32_t>) return "int32";
  else if constexpr (std::is_same_v<T, uint64_t>) return "uint64";
  else return "int64";
}

std::string number_text(const Number& n) {
  if (is_unsigned(n.type) || n.type == GgufType::Bool) return std::to_string(n.unsigned_value);
  if (is_signed(n.type)) return std::to_string(n.signed_value);
  return std::to_string(n.float_value);
}

// The number as T. `where` names the key (and element) for the messages.
template <class T>
T convert(const Number& n, const std::string& where) {
  if constexpr (std::is_same_v<T, bool>) {
    if (n.type == GgufType::Bool) return n.unsigned_value != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (is_float(n.type)) return T(n.float_value);
    if (is_unsigned(n.type)) return T(n.unsigned_value);
    if (is_signed(n.type)) return T(n.signed_value);
  } else {
    if (is_unsigned(n.type) || is_signed(n.type)) {
      const bool fits = is_unsigned(n.type) ? n.unsigned_value <= uint64_t(std::numeric_limits<T>::max())
                                            : std::in_range<T>(n.signed_value);
      if (!fits) fail(where + ": value " + number_text(n) + " does not fit " + std::string(wanted_name<T>()));
      return is_unsigned(n.type) ? T(n.unsigned_value) : T(n.signed_value);
    }
  }
  fail(where + " is " + std::string(gguf_type_name(n.type)) + ", expected " + std::string(wanted_name<T>()));
}

template <class T>
T scalar_as(const GgufValue& v, const std::string& where) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.type == GgufType::String) return v.string_value;
  } else {
    if (v.type != GgufType::String && v.type != GgufType::Array) return convert<T>(scalar_number(v), where);
  }
  fail(where + " is " + v.type_description() + ", expected " + std::string(wanted_name<T>()));
}

// Whether numbers of type `t` can be read as T at all (whether each value fits is checked one by one).
template <class T>
bool numbers_convert(GgufType t) {
  if (t == GgufType::String || t == GgufType::Array) return false;
  if constexpr (std::is_same_v<T, bool>) return t == GgufType::Bool;
  else if constexpr (std::is_floating_point_v<T>) return t != GgufType::Bool;
  else return is_unsigned(t) || is_signed(t);
}

template <class T>
std::vector<T> array_as(const GgufValue& v, const std::string& where) {
  const bool convertible = [&] {
    if (v.type != GgufType::Array) return false;
    if constexpr (std::is_same_v<T, std::string>) return v.element_type == GgufType::String;
    else return numbers_convert<T>(v.element_type);
  }();
  if (!convertible)
    fail(where + " is " + v.type_description() + ", expected an array of " + std::string(wanted_name<T>()));
  if constexpr (std::is_same_v<T, std::string>) {
    return v.strings;
  } else {
    std::vector<T> out;
    out.reserve(size_t(v.element_count));
    for (uint64_t i = 0; i < v.element_count; ++i) {
      const Number n = element_number(v, i);
      // Only an element that does not fit needs its index in a message: build it only then.
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        const bool fits = is_unsigned(n.type) ? n.unsigned_value <= uint64_t(std::numeric_limits<T>::max())
                                              : std::in_range<T>(n.signed_value);
        if (!fits)
          fail(where + ", element " + std::to_string(i) + ": value " + number_text(n) + " does not fit " +
               std::string(wanted_name<T>()));
      }
      out.push_back(convert<T>(n, where));
    }
    return out;
  }
}

}  // namespace

std::string_view gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::Uint8: return "uint8";
    case GgufType::Int8: return "int8";
    case GgufType::Uint16: return "uint16";
    case GgufType::Int16: return "int16";
    case GgufType::Uint32: return "uint32";
    case GgufType::Int32: return "int32";
    case GgufType::Float32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::Uint64: return "uint64";
    case GgufType::Int64: return "int64";
    case GgufType::Float64: return "float64";
  }
  return "unknown";
}

std::string GgufValue::type_description() const {
  if (type != GgufType::Array) return std::string(gguf_type_name(type));
  return "an array of " + std::string(gguf_type_name(element_type));
}

GgufFile::GgufFile(std::filesystem::path path) : GgufFile(MappedFile(path), {}, path) {}

GgufFile GgufFile::from_bytes(std::vector<std::byte> bytes, std::string source_name) {
  return GgufFile(std::nullopt, std::move(bytes), std::filesystem::path(std::move(source_name)));
}

GgufFile::GgufFile(std::optional<MappedFile> mapping, std::vector<std::byte> owned_bytes, std::filesystem::path path)
    : mapping_(std::move(mapping)), owned_bytes_(std::move(owned_bytes)), path_(std::move(path)) {
  bytes_ = mapping_ ? mapping_->bytes() : std::span<const std::byte>(owned_bytes_);
  parse();
}

std::string GgufFile::where(std::string_view key) const {
  return path_.string() + ": metadata key " + in_quotes(key);
}

void GgufFile::parse() {
  const std::string source = path_.string();
  Reader r(bytes_);

  const std::byte* magic = r.take(4, source + ": the magic number");
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      const uint8_t c = uint8_t(magic[i]);
      shown += (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
    fail(source + ": not a GGUF file (it starts with '" + shown + "', not 'GGUF')");
  }
  version_ = r.scalar<uint32_t>(source + ": the version");
  if (version_ != 2 && version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped >= 1 && swapped <= 3)
      fail(source + ": a big-endian GGUF file (version " + std::to_string(swapped) +
           "): only little-endian files are supported");
    fail(source + ": GGUF version " + std::to_string(version_) + " is not supported (only versions 2 and 3)");
  }
  const uint64_t tensor_count = r.scalar<uint64_t>(source + ": the tensor count");
  const uint64_t metadata_count = r.scalar<uint64_t>(source + ": the metadata count");
  if (metadata_count > r.remaining() / kMinMetadataEntryBytes)
    fail(source + ": metadata count " + std::to_string(metadata_count) + " is absurd: the rest of the file (" +
         std::to_string(r.remaining()) + " bytes) could hold at most " +
         std::to_string(r.remaining() / kMinMetadataEntryBytes) + " entries");
  if (tensor_count > (r.remaining() - metadata_count * kMinMetadataEntryBytes) / kMinTensorInfoBytes)
    fail(source + ": tensor count " + std::to_string(tensor_count) + " is absurd: the rest of the file (" +
         std::to_string(r.remaining()) + " bytes) could hold at most " +
         std::to_string((r.remaining() - metadata_count * kMinMetadataEntryBytes) / kMinTensorInfoBytes) +
         " tensor infos after " + std::to_string(metadata_count) + " metadata entries");

  metadata_.reserve(size_t(metadata_count));
  for (uint64_t i = 0; i < metadata_count; ++i) {
    const std::string entry = source + ": metadata entry " + std::to_string(i + 1) + " of " +
                              std::to_string(metadata_count);
    const std::string_view key = r.string(entry + " (its key)");
    if (key.size() > kMaxGgufKeyBytes)
      fail(entry + ": key of " + std::to_string(key.size()) + " bytes is longer than the format's limit of " +
           std::to_string(kMaxGgufKeyBytes));
    const std::string what = where(key);
    if (metadata_index_.count(key)) fail(what + " appears twice");
    const GgufType type = read_type(r, what);
    GgufValue value = read_value(r, type, what, 0);
    metadata_index_.emplace(std::string(key), metadata_.size());
    metadata_.emplace_back(std::string(key), std::move(value));
  }

  if (const GgufValue* alignment = find("general.alignment")) {
    const std::string what = where("general.alignment");
    const uint32_t value = scalar_as<uint32_t>(*alignment, what);
    if (value == 0 || !std::has_single_bit(value))
      fail(what + ": the alignment must be a power of two, got " + std::to_string(value));
    alignment_ = value;
  }

  // Tensor infos. Offsets are checked against the data section once its start (after the infos) is known.
  std::vector<uint64_t> relative_offsets;
  tensors_.reserve(size_t(tensor_count));
  relative_offsets.reserve(size_t(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const std::string entry = source + ": tensor info " + std::to_string(i + 1) + " of " +
                              std::to_string(tensor_count);
    const std::string_view name = r.string(entry + " (its name)");
    const std::string what = source + ": tensor " + in_quotes(name);
    if (name.size() > kMaxGgufTensorNameBytes)
      fail(what + ": the name has " + std::to_string(name.size()) + " bytes, more than the format's " +
           std::to_string(kMaxGgufTensorNameBytes));
    if (tensor_index_.count(name)) fail(what + " appears twice");

    const uint32_t n_dims = r.scalar<uint32_t>(what);
    if (n_dims == 0 || n_dims > kMaxGgufDimensions)
      fail(what + ": " + std::to_string(n_dims) + " dimensions (must be 1 to " +
           std::to_string(kMaxGgufDimensions) + ")");
    std::vector<uint64_t> ne(n_dims);
    std::string ne_text = "[";
    uint64_t elements = 1, nonzero_product = 1;
    bool too_many = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = r.scalar<uint64_t>(what);
      ne_text += (d ? ", " : "") + std::to_string(ne[d]);
      // Elements must fit int64 (ggml's ne and TensorInfo::elements) as well as uint64, and so must the product of
      // the non-zero dimensions: TensorInfo::elements multiplies them in the other order (rows first), where a zero
      // coming last would not stop an overflow before it.
      elements *= ne[d];  // wraps only when nonzero_product overflows too, which is refused
      if (ne[d] != 0 && (__builtin_mul_overflow(nonzero_product, ne[d], &nonzero_product) ||
                         nonzero_product > uint64_t(INT64_MAX)))
        too_many = true;
    }
    ne_text += "]";
    if (too_many) fail(what + ": dimensions " + ne_text + " hold too many elements");

    const uint32_t ggml_type = r.scalar<uint32_t>(what);
    const std::optional<DType> dtype = dtype_from_ggml_type(ggml_type);
    if (!dtype)
      fail(what + ": ggml type " + std::to_string(ggml_type) +
           (ggml_type < kGgmlTypeNames.size() ? " (" + std::string(kGgmlTypeNames[ggml_type]) + ")" : "") +
           " is not supported");
    const uint64_t offset = r.scalar<uint64_t>(what);

    const uint64_t block = dtype_block_elements(*dtype);
    if (ne[0] % block != 0)
      fail(what + ": dimensions " + ne_text + ": the row length ne[0] = " + std::to_string(ne[0]) +
           " is not a multiple of " + std::string(dtype_name(*dtype)) + "'s block of " + std::to_string(block) +
           " elements");
    const std::optional<uint64_t> bytes = dtype_storage_bytes(*dtype, elements);
    if (!bytes) fail(what + ": dimensions " + ne_text + " of " + std::string(dtype_name(*dtype)) + " overflow 64 bits of bytes");

    TensorInfo tensor;
    tensor.name = std::string(name);
    tensor.dtype = *dtype;
    for (uint32_t d = n_dims; d-- > 0;) tensor.shape.push_back(int64_t(ne[d]));
    tensor.bytes = *bytes;
    tensor_index_.emplace(tensor.name, tensors_.size());
    tensors_.push_back(std::move(tensor));
    relative_offsets.push_back(offset);
  }

  // The data section starts at the first multiple of the alignment after the tensor infos. (No overflow: the
  // position is at most the file size and the alignment below 2^32.)
  const uint64_t header_end = r.position();
  data_section_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  if (!tensors_.empty() && data_section_offset_ > bytes_.size())
    fail(source + ": the data section would start at byte " + std::to_string(data_section_offset_) +
         " (the tensor infos end at byte " + std::to_string(header_end) + ", aligned to " +
         std::to_string(alignment_) + "), past the end of the file (" + std::to_string(bytes_.size()) +
         " bytes): truncated file?");
  const uint64_t data_bytes = data_section_offset_ <= bytes_.size() ? bytes_.size() - data_section_offset_ : 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorInfo& tensor = tensors_[i];
    const uint64_t offset = relative_offsets[i];
    const std::string what = source + ": tensor " + in_quotes(tensor.name);
    if (offset % alignment_ != 0)
      fail(what + ": offset " + std::to_string(offset) + " is not a multiple of the alignment " +
           std::to_string(alignment_));
    if (offset > data_bytes || tensor.bytes > data_bytes - offset)
      fail(what + ": its " + std::to_string(tensor.bytes) + " bytes at offset " + std::to_string(offset) +
           " run past the end of the data section (" + std::to_string(data_bytes) + " bytes from byte " +
           std::to_string(data_section_offset_) + "): truncated file?");
    tensor.data_offset = data_section_offset_ + offset;  // no overflow: at most the file size
  }

  // Walking in offset order, each tensor with data must start at or after the furthest end seen so far.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const TensorInfo& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->data_offset != b->data_offset ? a->data_offset < b->data_offset : a->bytes < b->bytes;
  });
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo* tensor : by_offset) {
    if (tensor->bytes == 0) continue;
    if (furthest && tensor->data_offset < furthest->data_offset + furthest->bytes)
      fail(source + ": tensor " + in_quotes(tensor->name) + " overlaps tensor " + in_quotes(furthest->name) +
           " in the data section");
    if (!furthest || tensor->data_offset + tensor->bytes > furthest->data_offset + furthest->bytes) furthest = tensor;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufValue& GgufFile::value(std::string_view key) const {
  if (const GgufValue* v = find(key)) return *v;
  fail(path_.string() + ": no metadata key " + in_quotes(key));
}

uint32_t GgufFile::get_u32(std::string_view key) const { return scalar_as<uint32_t>(value(key), where(key)); }
int32_t GgufFile::get_i32(std::string_view key) const { return scalar_as<int32_t>(value(key), where(key)); }
uint64_t GgufFile::get_u64(std::string_view key) const { return scalar_as<uint64_t>(value(key), where(key)); }
int64_t GgufFile::get_i64(std::string_view key) const { return scalar_as<int64_t>(value(key), where(key)); }
float GgufFile::get_f32(std::string_view key) const { return scalar_as<float>(value(key), where(key)); }
double GgufFile::get_f64(std::string_view key) const { return scalar_as<double>(value(key), where(key)); }
bool GgufFile::get_bool(std::string_view key) const { return scalar_as<bool>(value(key), where(key)); }

const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = value(key);
  if (v.type != GgufType::String) fail(where(key) + " is " + v.type_description() + ", expected string");
  return v.string_value;
}

template <class T>
std::vector<T> GgufFile::get_array(std::string_view key) const {
  return array_as<T>(value(key), where(key));
}

namespace {
template <class T>
std::optional<T> optional_scalar(const GgufValue* v, const std::string& where) {
  if (!v) return std::nullopt;
  return scalar_as<T>(*v, where);
}
}  // namespace

std::optional<uint32_t> GgufFile::optional_u32(std::string_view key) const { return optional_scalar<uint32_t>(find(key), where(key)); }
std::optional<int32_t> GgufFile::optional_i32(std::string_view key) const { return optional_scalar<int32_t>(find(key), where(key)); }
std::optional<uint64_t> GgufFile::optional_u64(std::string_view key) const { return optional_scalar<uint64_t>(find(key), where(key)); }
std::optional<int64_t> GgufFile::optional_i64(std::string_view key) const { return optional_scalar<int64_t>(find(key), where(key)); }
std::optional<float> GgufFile::optional_f32(std::string_view key) const { return optional_scalar<float>(find(key), where(key)); }
std::optional<double> GgufFile::optional_f64(std::string_view key) const { return optional_scalar<double>(find(key), where(key)); }
std::optional<bool> GgufFile::optional_bool(std::string_view key) const { return optional_scalar<bool>(find(key), where(key)); }
std::optional<std::string> GgufFile::optional_string(std::string_view key) const {
  if (!find(key)) return std::nullopt;
  return get_string(key);
}

template <class T>
std::optional<std::vector<T>> GgufFile::optional_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  return array_as<T>(*v, where(key));
}

#define INFERNO_GGUF_ARRAY(T)                                                      \
  template std::vector<T> GgufFile::get_array<T>(std::string_view key) const;       \
  template std::optional<std::vector<T>> GgufFile::optional_array<T>(std::string_view key) const;
INFERNO_GGUF_ARRAY(uint8_t)
INFERNO_GGUF_ARRAY(int8_t)
INFERNO_GGUF_ARRAY(uint16_t)
INFERNO_GGUF_ARRAY(int16_t)
INFERNO_GGUF_ARRAY(uint32_t)
INFERNO_GGUF_ARRAY(int32_t)
INFERNO_GGUF_ARRAY(uint64_t)
INFERNO_GGUF_ARRAY(int64_t)
INFERNO_GGUF_ARRAY(float)
INFERNO_GGUF_ARRAY(double)
INFERNO_GGUF_ARRAY(bool)
INFERNO_GGUF_ARRAY(std::string)
#undef INFERNO_GGUF_ARRAY

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& GgufFile::tensor(std::string_view name) const {
  if (const TensorInfo* t = find_tensor(name)) return *t;
  fail(path_.string() + ": no tensor " + in_quotes(name));
}

std::span<const std::byte> GgufFile::data(const TensorInfo& tensor) const {
  if (tensor.data_offset > bytes_.size() || tensor.bytes > bytes_.size() - tensor.data_offset)
    fail(path_.string() + ": tensor " + in_quotes(tensor.name) + " lies outside this file");
  check_whole();  // a file cut short since it was opened is refused here, before its bytes are read
  return bytes_.subspan(tensor.data_offset, tensor.bytes);
}

void GgufFile::check_whole() const {
  if (mapping_) mapping_->check_whole();
}

}  // namespace inferno::io
