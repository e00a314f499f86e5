#pragma once
// The SPIR-V of every shader variant, embedded at build time (tools/embed_spirv.py), and the pipelines made from them.
#include <cstdint>
#include <span>
#include <string_view>

#include "vk/device.hpp"
#include "vk/pipeline.hpp"

namespace inferno::kernels {

struct ShaderBlob {
  const char* name;
  const uint32_t* words;
  size_t word_count;
};

std::span<const ShaderBlob> all_shaders();
// nullptr when this build has no such variant (e.g. a cooperative-matrix kernel and an old glslc).
const ShaderBlob* find_shader(std::string_view name);
bool has_shader(std::string_view name);
// The pipeline of a variant with its specialization constants, made once per device. Throws naming the variant.
// required_subgroup_size: 0 = any (see vk::Pipeline).
const vk::Pipeline& pipeline(vk::Device& device, std::string_view name, std::span<const uint32_t> spec_constants = {},
                             uint32_t required_subgroup_size = 0);
inline const vk::Pipeline& pipeline(vk::Device& device, std::string_view name, std::initializer_list<uint32_t> spec,
                                    uint32_t required_subgroup_size = 0) {
  return pipeline(device, name, std::span<const uint32_t>(spec.begin(), spec.size()), required_subgroup_size);
}

// A 1-D run of `groups` workgroups laid out as x*y within the device's per-dimension limit; shaders flatten it as
// gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x and skip what lies past the end.
struct Grid {
  uint32_t x = 1, y = 1;
};
Grid grid_1d(const vk::Device& device, uint64_t groups);

// Workgroups needed to cover n items with groups of `per_group`.
inline uint32_t groups_for(uint64_t n, uint64_t per_group) { return uint32_t((n + per_group - 1) / per_group); }

}  // namespace inferno::kernels
