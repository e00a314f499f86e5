#pragma once
// One projection of a layer, as both forward passes (Forward, PagedForward) record it: each part of a stacked
// projection (q | k | v, gate | up, or a single o / down) writes its own columns of y. Float parts run the linear
// kernels, with an RMSNorm folded in when `norm` is given; w8a8 parts quantize x into xq / xscale first, once for
// every run of parts with the same activation scale.
#include <cstdint>
#include <span>

#include "kernels/weights.hpp"
#include "model/llama.hpp"
#include "vk/recorder.hpp"

namespace inferno::model {

struct ProjectionArgs {
  const vk::Buffer* x = nullptr;
  uint32_t m = 0;                       // rows of x
  std::span<const Linear> parts;
  const vk::Buffer* y = nullptr;
  uint32_t y_stride = 0;                // floats between rows of y
  bool accumulate = false;              // y += ... (the residual) instead of y = ...
  const vk::Buffer* xq = nullptr;       // int8 activations and their scales: needed when a part is w8a8
  const vk::Buffer* xscale = nullptr;
  const kernels::DeviceVector* norm = nullptr;  // folded RMSNorm (float parts only)
  float norm_eps = 0;
};

void record_projection(vk::Device& device, vk::Recorder& rec, const ProjectionArgs& args);

}  // namespace inferno::model
