#pragma once
// A compute pipeline made from SPIR-V: every binding of set 0 is a storage buffer (counted from the SPIR-V itself),
// push constants up to kPushConstantBytes, specialization constants 0..n-1 as 32-bit values, and optionally a required
// subgroup size (full subgroups: kernels whose subgroups cooperate, such as cooperative matrices, count on it).
#include <vulkan/vulkan.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace inferno::vk {

class Device;

inline constexpr uint32_t kPushConstantBytes = 128;

class Pipeline {
 public:
  Pipeline(Device& device, std::string name, std::span<const uint32_t> spirv, std::span<const uint32_t> spec_constants,
           uint32_t required_subgroup_size = 0);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  VkPipeline handle() const { return pipeline_; }
  VkPipelineLayout layout() const { return layout_; }
  VkDescriptorSetLayout set_layout() const { return set_layout_; }
  uint32_t binding_count() const { return binding_count_; }
  const std::string& name() const { return name_; }

 private:
  Device& device_;
  std::string name_;
  uint32_t binding_count_ = 0;
  VkShaderModule module_ = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPipeline pipeline_ = VK_NULL_HANDLE;
};

// The highest `Binding` decoration in descriptor set 0, plus one: how many buffers the shader takes.
uint32_t spirv_binding_count(std::span<const uint32_t> spirv);

// Pipelines of one device, made once per (name, specialization constants, subgroup size) and kept.
class PipelineCache {
 public:
  explicit PipelineCache(Device& device) : device_(device) {}
  const Pipeline& get(const std::string& name, std::span<const uint32_t> spirv, std::span<const uint32_t> spec_constants,
                      uint32_t required_subgroup_size = 0);
  size_t size() const { return pipelines_.size(); }

 private:
  Device& device_;
  std::mutex mutex_;
  std::map<std::tuple<std::string, std::vector<uint32_t>, uint32_t>, std::unique_ptr<Pipeline>> pipelines_;
};

}  // namespace inferno::vk
