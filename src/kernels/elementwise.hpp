#pragma once
// Small element-wise kernels on f32 activations.
#include "vk/recorder.hpp"

namespace inferno::kernels {

// y[i] += x[i] for i < count (the residual add)
void record_add(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, const vk::Buffer& y, uint64_t count);
// out[m, i] = silu(gate_up[m, i]) * gate_up[m, dim + i]: the stacked gate | up projection, rows of 2·dim floats,
// into out [rows, dim] (a different buffer).
void record_silu_mul(vk::Device& device, vk::Recorder& rec, const vk::Buffer& gate_up, const vk::Buffer& out,
                     uint32_t rows, uint32_t dim);
// In-place softmax over each row of width `dim` (f32, max-subtracted; -inf entries give 0). A row that is all -inf
// becomes all zeros (PyTorch gives NaN there).
void record_softmax(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, uint32_t rows, uint32_t dim);

}  // namespace inferno::kernels
