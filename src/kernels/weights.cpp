#include "kernels/weights.hpp"

#include <algorithm>

#include "util/error.hpp"

namespace inferno::kernels {

const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::F32: return "f32";
    case WeightType::F16: return "f16";
    case WeightType::BF16: return "bf16";
  }
  return "?";
}

uint32_t weight_type_bytes(WeightType type) { return type == WeightType::F32 ? 4 : 2; }

uint64_t DeviceMatrix::bytes() const {
  uint64_t total = 0;
  for (const auto& c : chunks) total += uint64_t(c.rows) * cols * weight_type_bytes(type);
  return total;
}

DeviceMatrix upload_matrix(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                           std::span<const std::byte> data, uint64_t max_chunk_bytes,
                           const std::function<void(uint64_t)>& on_bytes) {
  if (rows == 0 || cols == 0)
    throw Error("weight '" + name + "' has an empty shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  const uint64_t row_bytes = uint64_t(cols) * weight_type_bytes(type);
  const uint64_t expected = row_bytes * rows;
  if (data.size() != expected)
    throw Error("weight '" + name + "' [" + std::to_string(rows) + ", " + std::to_string(cols) + "] " +
                weight_type_name(type) + " needs " + std::to_string(expected) + " bytes, got " +
                std::to_string(data.size()));

  // A chunk is bound whole, and buffers are rounded up to 16 bytes: keep that rounding within both limits.
  const auto& caps = device.caps();
  uint64_t limit = std::min(caps.max_storage_buffer_range, caps.max_memory_allocation_size);
  if (max_chunk_bytes) limit = std::min(limit, max_chunk_bytes);
  limit = limit > 16 ? limit - 16 : 0;
  const uint64_t rows_per_chunk = std::min<uint64_t>(limit / row_bytes, rows);
  if (rows_per_chunk == 0)
    throw Error("weight '" + name + "': one row of " + std::to_string(row_bytes) +
                " bytes is larger than a storage-buffer binding may be (" + std::to_string(limit) + " bytes)");

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

DeviceVector upload_vector(vk::Device& device, std::string name, WeightType type, uint32_t size,
                           std::span<const std::byte> data) {
  if (size == 0) throw Error("weight '" + name + "' is an empty vector");
  const uint64_t expected = uint64_t(size) * weight_type_bytes(type);
  if (data.size() != expected)
    throw Error("weight '" + name + "' [" + std::to_string(size) + "] " + weight_type_name(type) + " needs " +
                std::to_string(expected) + " bytes, got " + std::to_string(data.size()));
  DeviceVector vector{std::move(name), type, size, {}};
  vector.buffer = vk::Buffer(device, expected, vk::MemoryKind::Device, vector.name);
  vk::upload(device, vector.buffer, 0, data.data(), expected);
  return vector;
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
