#pragma once
// RMSNorm with LlamaRMSNorm semantics on f32 activations: y = w · (x / sqrt(mean(x²) + eps)), variance in f32,
// weight in its own dtype. One row per token; x and y may be the same buffer.
#include "kernels/weights.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

void record_rmsnorm(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const DeviceVector& weight,
                    const vk::Buffer& y, uint32_t rows, uint32_t dim, float eps);

}  // namespace inferno::kernels
