#pragma once
// A window of a buffer for one binding: a binding must start at a multiple of minStorageBufferOffsetAlignment and
// span at most maxStorageBufferRange, so a kernel binds from the aligned offset at or before its data and is told,
// in 32-bit words, where the data begins inside the binding. Kernels whose data exceeds one binding split their
// work into pieces (rows, planes) that each fit a window.
#include <algorithm>
#include <cstdint>
#include <string>

#include "util/error.hpp"
#include "vk/device.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

struct DataWindow {
  vk::Binding binding;
  uint32_t first_word = 0;  // where the data starts inside the binding, in 32-bit words
};

// Bytes [first_byte, end_byte) of `buffer` (first_byte a multiple of 4). Throws naming the kernel and the buffer when
// the range runs past the buffer or does not fit one binding.
inline DataWindow data_window(const vk::Device& device, const char* kernel, const vk::Buffer& buffer,
                              uint64_t first_byte, uint64_t end_byte, bool writes) {
  if (end_byte > buffer.bytes())
    throw Error(std::string(kernel) + ": buffer '" + buffer.name() + "' holds " + std::to_string(buffer.bytes()) +
                " bytes, the kernel needs " + std::to_string(end_byte));
  const uint64_t align = device.caps().min_storage_offset_alignment;
  const uint64_t base = first_byte / align * align;
  // Whole words: a buffer's size is rounded up to 16 bytes, so the last word is always inside it.
  const uint64_t range = std::min((end_byte + 3) / 4 * 4, buffer.size()) - base;
  if (range > device.caps().max_storage_buffer_range)
    throw Error(std::string(kernel) + ": " + std::to_string(range) + " bytes of buffer '" + buffer.name() +
                "' do not fit one binding (maxStorageBufferRange " +
                std::to_string(device.caps().max_storage_buffer_range) + ")");
  return {{&buffer, base, std::max<uint64_t>(range, 4), writes}, uint32_t((first_byte - base) / 4)};
}

// How many items of `item_bytes` each a single binding window can hold wherever it starts (the aligned start may
// add up to alignment − 4 bytes in front). Throws naming the kernel when not even one fits.
inline uint64_t items_per_window(const vk::Device& device, const char* kernel, uint64_t item_bytes) {
  const uint64_t align = device.caps().min_storage_offset_alignment;
  const uint64_t usable = device.caps().max_storage_buffer_range - (align > 4 ? align - 4 : 0);
  if (item_bytes == 0) return UINT64_MAX;
  if (item_bytes > usable)
    throw Error(std::string(kernel) + ": one row or plane of " + std::to_string(item_bytes) +
                " bytes does not fit one binding (maxStorageBufferRange " +
                std::to_string(device.caps().max_storage_buffer_range) + ")");
  return usable / item_bytes;
}

}  // namespace inferno::kernels
