#include "kernels/weights.hpp"

#include <algorithm>

#include "util/error.hpp"

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

DeviceMatrix upload_rows(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                         std::span<const std::byte> data, uint64_t max_chunk_bytes,
                         const std::function<void(uint64_t)>& on_bytes) {
  if (rows == 0 || cols == 0) throw Error("weight '" + name + "' has an empty shape " + shape(rows, cols));
  const uint64_t row_bytes = weight_row_bytes(type, cols, name);
  const uint64_t expected = row_bytes * rows;
  if (data.size() != expected)
    throw Error("weight '" + name + "' " + shape(rows, cols) + " " + weight_type_name(type) + " needs " +
                std::to_string(expected) + " bytes, got " + std::to_string(data.size()));

  const uint64_t rows_per_chunk = matrix_rows_per_chunk(device, name, row_bytes, cols, max_chunk_bytes);

  DeviceMatrix matrix;
  matrix.name = std::move(name);
  matrix.type = type;
  matrix.rows = rows;
  matrix.cols = cols;
  for (uint64_t first = 0; first < rows; first += rows_per_chunk) {
    const uint32_t n = uint32_t(std::min<uint64_t>(rows_per_chunk, rows - first));
    const uint64_t bytes = uint64_t(n) * row_bytes;
    const std::string chunk_name =
        matrix.name + (rows_per_chunk < rows ? " rows " + std::to_string(first) + "+" + std::to_string(n) : "");
    WeightChunk chunk{vk::Buffer(device, bytes, vk::MemoryKind::Device, chunk_name), uint32_t(first), n};
    vk::upload(device, chunk.buffer, 0, data.data() + first * row_bytes, bytes);
    matrix.chunks.push_back(std::move(chunk));
    if (on_bytes) on_bytes(bytes);
  }
  return matrix;
}

}  // namespace

DeviceMatrix upload_matrix(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                           std::span<const std::byte> data, uint64_t max_chunk_bytes,
                           const std::function<void(uint64_t)>& on_bytes) {
  if (type == WeightType::I8)
    throw Error("weight '" + name + "': int8 weights need their row scales (upload_int8_matrix)");
  return upload_rows(device, std::move(name), type, rows, cols, data, max_chunk_bytes, on_bytes);
}

DeviceMatrix upload_int8_matrix(vk::Device& device, std::string name, uint32_t rows, uint32_t cols,
                                std::span<const std::byte> weights, WeightType scale_type,
                                std::span<const std::byte> scales, uint64_t max_chunk_bytes,
                                const std::function<void(uint64_t)>& on_bytes) {
  if (!is_float_type(scale_type))
    throw Error("weight '" + name + "': row scales must be f32, f16 or bf16, not " + weight_type_name(scale_type));
  DeviceMatrix matrix = upload_rows(device, std::move(name), WeightType::I8, rows, cols, weights, max_chunk_bytes, on_bytes);
  matrix.row_scales = upload_vector(device, matrix.name + " scales", scale_type, rows, scales);
  if (on_bytes) on_bytes(scales.size());
  return matrix;
}

DeviceVector upload_vector(vk::Device& device, std::string name, WeightType type, uint32_t size,
                           std::span<const std::byte> data) {
  if (size == 0) throw Error("weight '" + name + "' is an empty vector");
  if (!is_float_type(type))
    throw Error("weight '" + name + "': a vector must be f32, f16 or bf16, not " + weight_type_name(type));
  const uint64_t expected = uint64_t(size) * weight_type_bytes(type);
  if (data.size() != expected)
    throw Error("weight '" + name + "' [" + std::to_string(size) + "] " + weight_type_name(type) + " needs " +
                std::to_string(expected) + " bytes, got " + std::to_string(data.size()));
  DeviceVector vector{std::move(name), type, size, {}};
  vector.buffer = vk::Buffer(device, expected, vk::MemoryKind::Device, vector.name);
  vk::upload(device, vector.buffer, 0, data.data(), expected);
  return vector;
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
    return vk::in(chunk.buffer);
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
