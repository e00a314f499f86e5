#include "kernels/shader_registry.hpp"

#include <algorithm>
#include <string>

#include "util/error.hpp"

namespace inferno::kernels {

const ShaderBlob* find_shader(std::string_view name) {
  for (const auto& s : all_shaders())
    if (name == s.name) return &s;
  return nullptr;
}

Grid grid_1d(const vk::Device& device, uint64_t groups) {
  const uint64_t max_x = device.caps().max_workgroup_count[0];
  if (groups <= max_x) return {uint32_t(std::max<uint64_t>(groups, 1)), 1};
  const uint64_t y = (groups + max_x - 1) / max_x;
  if (y > device.caps().max_workgroup_count[1]) throw Error("a dispatch of " + std::to_string(groups) + " workgroups is too large");
  return {uint32_t((groups + y - 1) / y), uint32_t(y)};
}

bool has_shader(std::string_view name) { return find_shader(name) != nullptr; }

const vk::Pipeline& pipeline(vk::Device& device, std::string_view name, std::span<const uint32_t> spec_constants,
                             uint32_t required_subgroup_size) {
  const ShaderBlob* blob = find_shader(name);
  if (!blob) throw Error("shader variant '" + std::string(name) + "' is not in this build");
  return device.pipelines().get(std::string(name), std::span<const uint32_t>(blob->words, blob->word_count),
                                spec_constants, required_subgroup_size);
}

}  // namespace inferno::kernels
