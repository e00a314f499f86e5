#pragma once
// Embedding gather: out[m, :] = E[ids[m], :] as f32, E [vocab, hidden] in its own dtype or block format (chunked by
// rows; block formats dequantized, int8 rows multiplied by their row scale).
// Ids must have been checked against the vocabulary by the caller; out-of-range ids leave their row untouched.
#include "kernels/weights.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

void record_embedding(vk::Device& device, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& ids /* int32 [M] */,
                      uint32_t m, const vk::Buffer& out /* f32 [M, hidden] */);
// The same, binding at most `max_binding_bytes` of ids or out at once (0 = the device's limit): tests force blocking.
void record_embedding(vk::Device& device, vk::Recorder& rec, const DeviceMatrix& table, const vk::Buffer& ids,
                      uint32_t m, const vk::Buffer& out, uint64_t max_binding_bytes);

}  // namespace inferno::kernels
