#pragma once
// Rotary position embedding in HF's rotate_half layout (dims i and i + d/2 rotate together), in place on f32
// [M, heads, head_dim] rows. cos/sin come from a table computed on the host exactly as transformers computes them
// (f32 angle = position · inv_freq, then cos/sin, times attention_scaling): table f32 [positions, head_dim/2, 2] as
// (cos, sin) pairs. positions: int32 [M], the position id of each row.
// head_dim must be even and at most 256. A position outside [0, table_positions) turns its row into NaN (a visible
// error instead of a read past the table).
#include "vk/recorder.hpp"

namespace inferno::kernels {

void record_rope(vk::Device& device, vk::Recorder& rec, const vk::Buffer& x, uint32_t rows, uint32_t heads,
                 uint32_t head_dim, uint32_t row_stride /* floats between rows; 0 = heads*head_dim */,
                 const vk::Buffer& positions, const vk::Buffer& cos_sin_table, uint32_t table_positions);

}  // namespace inferno::kernels
