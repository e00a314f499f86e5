#include "kernels/weights.hpp"

#include <unistd.h>

#include <algorithm>

#include "util/error.hpp"
#include "vk/imported_memory.hpp"

namespace inferno::kernels {

const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::BF16: return "bf16";
    case WeightType::Q8_0: return "q8_0";
    case WeightType::Q4_0: return "q4_0";
    case WeightType::Q4_1: return "q4_1";
    case WeightType::Q5_0: return "q5_0";
    case WeightType::Q5_1: return "q5_1";
    case WeightType::Q4_K: return "q4_k";
    case WeightType::Q5_K: return "q5_k";
    case WeightType::Q6_K: return "q6_k";
    case WeightType::I8: return "i8";
  }
  return "?";
}

bool is_float_type(WeightType type) {
  return type == WeightType::F32 || type == WeightType::F16 || type == WeightType::BF16;
}

uint32_t weight_type_bytes(WeightType type) {
  if (!is_float_type(type))
    throw Error(std::string("weight type ") + weight_type_name(type) +
                " has no size per element (a block format): size rows with weight_row_bytes");
  return type == WeightType::F32 ? 4 : 2;
}

uint32_t weight_block_elements(WeightType type) {
  switch (type) {
    case WeightType::F32:
    case WeightType::F16:
    case WeightType::BF16: return 1;
    case WeightType::Q8_0:
    case WeightType::Q4_0:
    case WeightType::Q4_1:
    case WeightType::Q5_0:
    case WeightType::Q5_1: return 32;
    case WeightType::Q4_K:
    case WeightType::Q5_K:
    case WeightType::Q6_K: return 256;
    case WeightType::I8: return 4;
  }
  return 1;
}

// The sizes of ggml-common.h's structs: half d (+ half m or dmin), then the packed quants and scales.
uint32_t weight_block_bytes(WeightType type) {
  switch (type) {
    case WeightType::F32: return 4;
    case WeightType::F16:
    case WeightType::BF16: return 2;
    case WeightType::Q8_0: return 2 + 32;            // d, qs[32]
    case WeightType::Q4_0: return 2 + 16;            // d, qs[16]
    case WeightType::Q4_1: return 2 + 2 + 16;        // d, m, qs[16]
    case WeightType::Q5_0: return 2 + 4 + 16;        // d, qh[4], qs[16]
    case WeightType::Q5_1: return 2 + 2 + 4 + 16;    // d, m, qh[4], qs[16]
    case WeightType::Q4_K: return 2 + 2 + 12 + 128;  // d, dmin, scales[12], qs[128]
    case WeightType::Q5_K: return 2 + 2 + 12 + 32 + 128;  // d, dmin, scales[12], qh[32], qs[128]
    case WeightType::Q6_K: return 128 + 64 + 16 + 2;      // ql[128], qh[64], scales[16], d
    case WeightType::I8: return 4;
  }
  return 1;
}

uint64_t weight_row_bytes(WeightType type, uint64_t cols, std::string_view tensor) {
  const uint32_t per_block = weight_block_elements(type);
  if (cols % per_block != 0)
    throw Error((tensor.empty() ? std::string("a ") : "weight '" + std::string(tensor) + "': a ") +
                weight_type_name(type) + " row of " + std::to_string(cols) +
                " columns is not a whole number of blocks (" + weight_type_name(type) + " rows must be a multiple of " +
                std::to_string(per_block) + " elements)");
  return cols / per_block * weight_block_bytes(type);
}

uint64_t DeviceMatrix::bytes() const {
  uint64_t total = 0;
  for (const auto& c : chunks) total += uint64_t(c.rows) * row_bytes();
  if (row_scales) total += uint64_t(row_scales->size) * weight_type_bytes(row_scales->type);
  return total;
}

uint32_t matrix_rows_per_chunk(const vk::Device& device, const std::string& name, uint64_t row_bytes, uint32_t cols,
                               uint64_t max_chunk_bytes) {
  // A chunk is bound whole, and buffers are rounded up to 16 bytes: keep that rounding within both limits.
  const auto& caps = device.caps();
  uint64_t limit = std::min(caps.max_storage_buffer_range, caps.max_memory_allocation_size);
  if (max_chunk_bytes) limit = std::min(limit, max_chunk_bytes);
  limit = limit > 16 ? limit - 16 : 0;
  // Kernels index a chunk's elements with 32-bit integers; block formats pack more than one element a byte.
  const uint64_t rows = std::min<uint64_t>(limit / row_bytes, UINT32_MAX / std::max<uint32_t>(cols, 1));
  if (rows == 0)
    throw Error("weight '" + name + "': one row of " + std::to_string(row_bytes) +
                " bytes is larger than a storage-buffer binding may be (" + std::to_string(limit) + " bytes)");
  return uint32_t(rows);
}

namespace {

std::string shape(uint32_t rows, uint32_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

}  // namespace

DeviceMatrix upload_matrix(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                           std::span<const std::byte> data, uint64_t max_chunk_bytes,
                           const std::function<void(uint64_t)>& on_bytes) {
  if (type == WeightType::I8)
    throw Error("weight '" + name + "': int8 weights need their row scales (upload_int8_matrix)");
  if (rows == 0 || cols == 0) throw Error("weight '" + name + "' has an empty shape " + shape(rows, cols));
  const uint32_t part_rows[] = {rows};
  return upload_stacked_matrix(device, std::move(name), type, cols, part_rows, [&](size_t) { return data; },
                               max_chunk_bytes, on_bytes);
}

DeviceMatrix upload_int8_matrix(vk::Device& device, std::string name, uint32_t rows, uint32_t cols,
                                std::span<const std::byte> weights, WeightType scale_type,
                                std::span<const std::byte> scales, uint64_t max_chunk_bytes,
                                const std::function<void(uint64_t)>& on_bytes) {
  if (!is_float_type(scale_type))
    throw Error("weight '" + name + "': row scales must be f32, f16 or bf16, not " + weight_type_name(scale_type));
  if (rows == 0 || cols == 0) throw Error("weight '" + name + "' has an empty shape " + shape(rows, cols));
  const uint32_t part_rows[] = {rows};
  DeviceMatrix matrix = upload_stacked_matrix(device, std::move(name), WeightType::I8, cols, part_rows,
                                              [&](size_t) { return weights; }, max_chunk_bytes, on_bytes);
  matrix.row_scales = upload_vector(device, matrix.name + " scales", scale_type, rows, scales);
  if (on_bytes) on_bytes(scales.size());
  return matrix;
}

DeviceVector upload_vector(vk::Device& device, std::string name, WeightType type, uint32_t size,
                           std::span<const std::byte> data) {
  const uint32_t sizes[] = {size};
  return upload_stacked_vector(device, std::move(name), type, sizes, [&](size_t) { return data; });
}

DeviceMatrix upload_stacked_matrix(vk::Device& device, std::string name, WeightType type, uint32_t cols,
                                   std::span<const uint32_t> part_rows, const PartBytes& part_bytes,
                                   uint64_t max_chunk_bytes, const std::function<void(uint64_t)>& on_bytes) {
  uint64_t rows = 0;
  for (uint32_t r : part_rows) rows += r;
  if (rows == 0 || rows > UINT32_MAX || cols == 0)
    throw Error("weight '" + name + "' has an empty or oversized shape [" + std::to_string(rows) + ", " +
                std::to_string(cols) + "]");
  const uint64_t row_bytes = weight_row_bytes(type, cols, name);
  const uint64_t rows_per_chunk = matrix_rows_per_chunk(device, name, row_bytes, cols, max_chunk_bytes);

  DeviceMatrix matrix;
  matrix.name = std::move(name);
  matrix.type = type;
  matrix.rows = uint32_t(rows);
  matrix.cols = cols;
  for (uint64_t first = 0; first < rows; first += rows_per_chunk) {
    const uint32_t n = uint32_t(std::min<uint64_t>(rows_per_chunk, rows - first));
    const std::string chunk_name =
        matrix.name + (rows_per_chunk < rows ? " rows " + std::to_string(first) + "+" + std::to_string(n) : "");
    matrix.chunks.push_back({vk::Buffer(device, uint64_t(n) * row_bytes, vk::MemoryKind::Device, chunk_name),
                             uint32_t(first), n});
  }
  uint64_t row = 0;  // the stacked row of the part's first row
  for (size_t i = 0; i < part_rows.size(); ++i) {
    const std::span<const std::byte> data = part_bytes(i);
    const uint64_t expected = uint64_t(part_rows[i]) * row_bytes;
    if (data.size() != expected)
      throw Error("weight '" + matrix.name + "'" + (part_rows.size() > 1 ? " part " + std::to_string(i) : "") + " " +
                  shape(part_rows[i], cols) + " " + weight_type_name(type) + " needs " + std::to_string(expected) +
                  " bytes, got " + std::to_string(data.size()));
    for (uint64_t r = 0; r < part_rows[i];) {
      WeightChunk& chunk = matrix.chunks[(row + r) / rows_per_chunk];
      const uint64_t in_chunk = row + r - chunk.first_row;
      const uint64_t n = std::min<uint64_t>(part_rows[i] - r, chunk.rows - in_chunk);
      vk::upload(device, chunk.buffer, in_chunk * row_bytes, data.data() + r * row_bytes, n * row_bytes);
      if (on_bytes) on_bytes(n * row_bytes);
      r += n;
    }
    row += part_rows[i];
  }
  return matrix;
}

DeviceVector upload_stacked_vector(vk::Device& device, std::string name, WeightType type,
                                   std::span<const uint32_t> part_sizes, const PartBytes& part_bytes) {
  uint64_t size = 0;
  for (uint32_t n : part_sizes) size += n;
  if (size == 0) throw Error("weight '" + name + "' is an empty vector");
  if (size > UINT32_MAX) throw Error("weight '" + name + "' has " + std::to_string(size) + " elements, too many");
  if (!is_float_type(type))
    throw Error("weight '" + name + "': a vector must be f32, f16 or bf16, not " + weight_type_name(type));
  const uint64_t eb = weight_type_bytes(type);
  DeviceVector vector{std::move(name), type, uint32_t(size), {}};
  vector.buffer = vk::Buffer(device, size * eb, vk::MemoryKind::Device, vector.name);
  uint64_t at = 0;
  for (size_t i = 0; i < part_sizes.size(); ++i) {
    const std::span<const std::byte> data = part_bytes(i);
    const uint64_t expected = uint64_t(part_sizes[i]) * eb;
    if (data.size() != expected)
      throw Error("weight '" + vector.name + "'" + (part_sizes.size() > 1 ? " part " + std::to_string(i) : "") + " [" +
                  std::to_string(part_sizes[i]) + "] " + weight_type_name(type) + " needs " + std::to_string(expected) +
                  " bytes, got " + std::to_string(data.size()));
    vk::upload(device, vector.buffer, at, data.data(), expected);
    at += expected;
  }
  return vector;
}

std::optional<DeviceMatrix> import_matrix(vk::Device& device, std::string name, WeightType type, uint32_t cols,
                                          std::span<const uint32_t> part_rows, std::span<const MappedBytes> parts,
                                          uint64_t max_chunk_bytes) {
  const auto& caps = device.caps();
  if (!caps.host_import || part_rows.size() != parts.size() || parts.empty()) return std::nullopt;
  const uint64_t row_bytes = weight_row_bytes(type, cols, name);
  // Ranges of consecutive rows in one mapping: parts that follow one another in a file merge.
  struct Range {
    const MappedBytes* source;
    const std::byte* data;
    uint64_t rows;
  };
  std::vector<Range> ranges;
  uint64_t rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const MappedBytes& p = parts[i];
    if (p.bytes.size() != uint64_t(part_rows[i]) * row_bytes)
      throw Error("weight '" + name + "' " + shape(part_rows[i], cols) + " " + weight_type_name(type) + " needs " +
                  std::to_string(uint64_t(part_rows[i]) * row_bytes) + " bytes, got " + std::to_string(p.bytes.size()));
    if (p.mapping.empty() || p.bytes.data() < p.mapping.data() ||
        p.bytes.data() + p.bytes.size() > p.mapping.data() + p.mapping.size())
      return std::nullopt;
    rows += part_rows[i];
    if (!ranges.empty() && ranges.back().source->mapping.data() == p.mapping.data() &&
        ranges.back().data + ranges.back().rows * row_bytes == p.bytes.data())
      ranges.back().rows += part_rows[i];
    else
      ranges.push_back({&p, p.bytes.data(), part_rows[i]});
  }
  if (rows == 0 || rows > UINT32_MAX || cols == 0) return std::nullopt;
  const uint64_t rows_per_chunk = matrix_rows_per_chunk(device, name, row_bytes, cols, max_chunk_bytes);
  const uint64_t align = caps.min_imported_host_alignment;
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  // Every chunk's pages, planned before anything is imported: all or nothing.
  struct Plan {
    const Range* range;
    const std::byte* start;  // the imported pages begin here
    uint64_t offset, bytes, import_bytes, first_row;
    uint32_t rows;
  };
  std::vector<Plan> plans;
  uint64_t first_row = 0;
  for (const Range& r : ranges) {
    const auto mapping_start = reinterpret_cast<uintptr_t>(r.source->mapping.data());
    const uintptr_t mapping_end = (mapping_start + r.source->mapping.size() + page - 1) / page * page;  // mapped pages
    for (uint64_t first = 0; first < r.rows; first += rows_per_chunk) {
      const uint32_t n = uint32_t(std::min<uint64_t>(rows_per_chunk, r.rows - first));
      const auto at = reinterpret_cast<uintptr_t>(r.data + first * row_bytes);
      const uint64_t bytes = uint64_t(n) * row_bytes;
      const uintptr_t start = at / align * align;
      const uintptr_t end = (at + ((bytes + 15) & ~uint64_t(15)) + align - 1) / align * align;  // buffers are whole 16 bytes
      if (start < mapping_start || end > mapping_end || (at - start) % caps.min_storage_offset_alignment != 0 ||
          end - start > caps.max_memory_allocation_size)
        return std::nullopt;
      plans.push_back({&r, reinterpret_cast<const std::byte*>(start), at - start, bytes, end - start,
                       first_row + first, n});
    }
    first_row += r.rows;
  }
  DeviceMatrix matrix;
  matrix.name = std::move(name);
  matrix.type = type;
  matrix.rows = uint32_t(rows);
  matrix.cols = cols;
  try {
    for (const Plan& p : plans) {
      const std::string chunk_name =
          matrix.name + (plans.size() > 1 ? " rows " + std::to_string(p.first_row) + "+" + std::to_string(p.rows) : "");
      auto memory = std::make_shared<const vk::ImportedMemory>(device, p.start, p.import_bytes, p.range->source->owner,
                                                               chunk_name);
      WeightChunk chunk{vk::Buffer(device, std::move(memory), p.offset, p.bytes, chunk_name), uint32_t(p.first_row),
                        p.rows, p.offset};
      matrix.chunks.push_back(std::move(chunk));
    }
  } catch (const OutOfDeviceMemory&) {
    throw;
  } catch (const Error&) {  // the driver refused this memory: the caller copies instead
    return std::nullopt;
  }
  return matrix;
}

bool can_stack_rows(std::span<const DeviceMatrix* const> parts) {
  if (parts.empty()) return false;
  const DeviceMatrix& first = *parts[0];
  for (const DeviceMatrix* p : parts) {
    if (p->type != first.type || p->cols != first.cols || p->row_scales.has_value() != first.row_scales.has_value())
      return false;
    if (p->row_scales && p->row_scales->type != first.row_scales->type) return false;
  }
  return true;
}

DeviceMatrix stack_rows(vk::Device& device, std::string name, std::vector<DeviceMatrix> parts, uint64_t max_chunk_bytes) {
  std::vector<const DeviceMatrix*> views;
  for (const auto& p : parts) views.push_back(&p);
  if (!can_stack_rows(views)) throw Error("weight '" + name + "': its parts differ in type or columns");
  DeviceMatrix out;
  out.name = std::move(name);
  out.type = parts[0].type;
  out.cols = parts[0].cols;
  for (const auto& p : parts) out.rows += p.rows;
  const uint64_t row_bytes = out.row_bytes();
  const uint32_t per_chunk = matrix_rows_per_chunk(device, out.name, row_bytes, out.cols, max_chunk_bytes);
  vk::Recorder rec(device);
  rec.begin();
  for (uint32_t first = 0; first < out.rows; first += per_chunk) {
    const uint32_t n = std::min(per_chunk, out.rows - first);
    WeightChunk chunk{vk::Buffer(device, uint64_t(n) * row_bytes, vk::MemoryKind::Device, out.name), first, n};
    // Every source chunk's rows that land in [first, first + n).
    uint32_t part_first = 0;
    for (const auto& p : parts) {
      for (const WeightChunk& c : p.chunks) {
        const uint32_t a = std::max(first, part_first + c.first_row);
        const uint32_t b = std::min(first + n, part_first + c.first_row + c.rows);
        if (a < b)
          rec.copy(c.buffer, uint64_t(a - part_first - c.first_row) * row_bytes, chunk.buffer,
                   uint64_t(a - first) * row_bytes, uint64_t(b - a) * row_bytes);
      }
      part_first += p.rows;
    }
    out.chunks.push_back(std::move(chunk));
  }
  rec.submit_and_wait();
  if (parts[0].row_scales) {
    std::vector<const DeviceVector*> scales;
    for (const auto& p : parts) scales.push_back(&*p.row_scales);
    out.row_scales = stack_vectors(device, out.name + " scales", scales);
  }
  return out;
}

DeviceVector stack_vectors(vk::Device& device, std::string name, std::span<const DeviceVector* const> parts) {
  if (parts.empty()) throw Error("vector '" + name + "': nothing to stack");
  DeviceVector out{std::move(name), parts[0]->type, 0, {}};
  for (const DeviceVector* p : parts) {
    if (p->type != out.type) throw Error("vector '" + out.name + "': its parts differ in dtype");
    out.size += p->size;
  }
  const uint64_t eb = weight_type_bytes(out.type);
  out.buffer = vk::Buffer(device, uint64_t(out.size) * eb, vk::MemoryKind::Device, out.name);
  vk::Recorder rec(device);
  rec.begin();
  uint64_t at = 0;
  for (const DeviceVector* p : parts) {
    rec.copy(p->buffer, 0, out.buffer, at, uint64_t(p->size) * eb);
    at += uint64_t(p->size) * eb;
  }
  rec.submit_and_wait();
  return out;
}

uint32_t dtype_code(WeightType type) {
  switch (type) {
    case WeightType::F32: return 0;
    case WeightType::F16: return 1;
    case WeightType::BF16: return 2;
    default: throw Error(std::string("a vector of ") + weight_type_name(type) + " cannot be read by the kernels");
  }
}

void check_row_scales(const DeviceMatrix& w, const std::string& what) {
  if (w.type != WeightType::I8) return;
  if (!w.row_scales || w.row_scales->size != w.rows || !is_float_type(w.row_scales->type))
    throw Error(what + ": int8 weights need " + std::to_string(w.rows) + " f32, f16 or bf16 row scales");
}

vk::Binding bias_binding(const vk::Device& device, const DeviceVector* bias, const WeightChunk& chunk,
                         uint32_t& first_element, uint32_t& dtype) {
  if (!bias) {
    first_element = 0;
    dtype = kNoBias;
    return chunk.binding();  // unread; from the chunk's first row, so its range is the chunk's own
  }
  const uint32_t eb = weight_type_bytes(bias->type);
  const BindingWindow window = binding_window(device, bias->buffer, uint64_t(chunk.first_row) * eb,
                                              uint64_t(chunk.first_row + chunk.rows) * eb, eb);
  first_element = window.first_element;
  dtype = dtype_code(bias->type);
  return vk::in(bias->buffer, window.offset, window.range);
}

vk::Binding row_scale_binding(const vk::Device& device, const DeviceMatrix& w, const WeightChunk& chunk,
                              uint32_t& first_element) {
  const DeviceVector& scales = *w.row_scales;
  const uint32_t eb = weight_type_bytes(scales.type);
  const BindingWindow window = binding_window(device, scales.buffer, uint64_t(chunk.first_row) * eb,
                                              uint64_t(chunk.first_row + chunk.rows) * eb, eb);
  first_element = window.first_element;
  return vk::in(scales.buffer, window.offset, window.range);
}

BindingWindow binding_window(const vk::Device& device, const vk::Buffer& buffer, uint64_t first_byte, uint64_t end_byte,
                             uint32_t element_bytes) {
  const uint64_t align = device.caps().min_storage_offset_alignment;
  const uint64_t offset = first_byte / align * align;
  const uint64_t end = std::min((end_byte + 3) / 4 * 4, buffer.size());
  return {offset, end - offset, uint32_t((first_byte - offset) / element_bytes)};
}

uint32_t rows_per_binding(const vk::Device& device, uint64_t max_binding_bytes, uint64_t stride_bytes, uint64_t row_bytes,
                          const std::string& what) {
  const auto& caps = device.caps();
  const uint64_t limit = max_binding_bytes ? std::min(max_binding_bytes, caps.max_storage_buffer_range)
                                           : caps.max_storage_buffer_range;
  // The window may start up to one alignment early and ends rounded up to a word.
  const uint64_t slack = caps.min_storage_offset_alignment + 4;
  if (limit < slack + row_bytes)
    throw Error(what + ": one row of " + std::to_string(row_bytes) + " bytes does not fit a binding of " +
                std::to_string(limit) + " bytes");
  return uint32_t(std::min<uint64_t>((limit - slack - row_bytes) / stride_bytes + 1, UINT32_MAX));
}

}  // namespace inferno::kernels
