#pragma once
// Fill a float buffer with a value: poisons outputs in tests (NaN) and clears scratch.
#include "vk/recorder.hpp"

namespace inferno::kernels {

void record_fill(vk::Device& device, vk::Recorder& rec, const vk::Buffer& buffer, uint64_t offset_floats, uint64_t count,
                 float value);

}  // namespace inferno::kernels
