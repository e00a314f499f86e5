#pragma once
// A weight matrix on the device, in the dtype it had on disk, split by rows into chunks so that each chunk fits one
// storage-buffer binding (maxStorageBufferRange: 128 MiB on lavapipe; a 128K-vocabulary embedding is larger) and one
// allocation. Kernels that read weights loop over the chunks.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "vk/buffer.hpp"
#include "vk/device.hpp"

namespace inferno::kernels {

enum class WeightType { F32, F16, BF16 };
const char* weight_type_name(WeightType);
uint32_t weight_type_bytes(WeightType);

struct WeightChunk {
  vk::Buffer buffer;
  uint32_t first_row = 0;
  uint32_t rows = 0;
};

struct DeviceMatrix {
  std::string name;
  WeightType type = WeightType::F32;
  uint32_t rows = 0, cols = 0;  // HF layout [out, in], row-major
  std::vector<WeightChunk> chunks;
  uint64_t bytes() const;       // sum of chunk payloads = rows * cols * dtype size (the on-disk bytes)
};

// Uploads a row-major [rows, cols] matrix of `type` from host memory (e.g. a memory-mapped file), chunked by rows so
// that every chunk fits a binding. `max_chunk_bytes` 0 = the device's limits; tests pass a small value to force chunks.
// `on_bytes` is told of each uploaded piece (progress bars).
DeviceMatrix upload_matrix(vk::Device& device, std::string name, WeightType type, uint32_t rows, uint32_t cols,
                           std::span<const std::byte> data, uint64_t max_chunk_bytes = 0,
                           const std::function<void(uint64_t)>& on_bytes = {});

// A 1-D weight vector (norm weights, biases) in its own dtype.
struct DeviceVector {
  std::string name;
  WeightType type = WeightType::F32;
  uint32_t size = 0;
  vk::Buffer buffer;
};
DeviceVector upload_vector(vk::Device& device, std::string name, WeightType type, uint32_t size,
                           std::span<const std::byte> data);

// Part of a buffer bound to a kernel: bindings must start at a multiple of the device's storage offset alignment, so
// the binding starts at or before the first byte wanted and the kernel skips `first_element` elements of it.
struct BindingWindow {
  uint64_t offset = 0, range = 0;
  uint32_t first_element = 0;
};
// Bytes [first_byte, end_byte) of `buffer`, seen as elements of `element_bytes` (the range rounded up to whole words).
BindingWindow binding_window(const vk::Device& device, const vk::Buffer& buffer, uint64_t first_byte, uint64_t end_byte,
                             uint32_t element_bytes);
// How many rows of an activation (rows `stride_bytes` apart, each `row_bytes` long) one binding of at most
// `max_binding_bytes` (0 = the device's maxStorageBufferRange) can hold whatever its alignment; throws naming `what`
// when not even one row fits.
uint32_t rows_per_binding(const vk::Device& device, uint64_t max_binding_bytes, uint64_t stride_bytes, uint64_t row_bytes,
                          const std::string& what);

}  // namespace inferno::kernels
