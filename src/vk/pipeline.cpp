#include "vk/pipeline.hpp"

#include "vk/check.hpp"
#include "vk/device.hpp"

namespace inferno::vk {

uint32_t spirv_binding_count(std::span<const uint32_t> spirv) {
  constexpr uint32_t kOpDecorate = 71, kDecorationBinding = 33, kDecorationDescriptorSet = 34;
  if (spirv.size() < 5 || spirv[0] != 0x07230203u) throw Error("not a SPIR-V module");
  std::map<uint32_t, uint32_t> binding, set;  // id -> value
  for (size_t i = 5; i < spirv.size();) {
    const uint32_t words = spirv[i] >> 16, op = spirv[i] & 0xffff;
    if (words == 0 || i + words > spirv.size()) throw Error("malformed SPIR-V module");
    if (op == kOpDecorate && words >= 4) {
      if (spirv[i + 2] == kDecorationBinding) binding[spirv[i + 1]] = spirv[i + 3];
      if (spirv[i + 2] == kDecorationDescriptorSet) set[spirv[i + 1]] = spirv[i + 3];
    }
    i += words;
  }
  uint32_t count = 0;
  for (auto [id, b] : binding)
    if (set.count(id) == 0 || set[id] == 0) count = std::max(count, b + 1);
  return count;
}

Pipeline::Pipeline(Device& device, std::string name, std::span<const uint32_t> spirv,
                   std::span<const uint32_t> spec_constants, uint32_t required_subgroup_size)
    : device_(device), name_(std::move(name)) {
  binding_count_ = spirv_binding_count(spirv);
  VkDevice d = device.handle();
  VkShaderModuleCreateInfo mi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  mi.codeSize = spirv.size_bytes();
  mi.pCode = spirv.data();
  check(vkCreateShaderModule(d, &mi, nullptr, &module_), "vkCreateShaderModule");

  std::vector<VkDescriptorSetLayoutBinding> bindings(binding_count_);
  for (uint32_t i = 0; i < binding_count_; ++i)
    bindings[i] = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  VkDescriptorSetLayoutCreateInfo li{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  li.bindingCount = binding_count_;
  li.pBindings = bindings.data();
  check(vkCreateDescriptorSetLayout(d, &li, nullptr, &set_layout_), "vkCreateDescriptorSetLayout");

  VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushConstantBytes};
  VkPipelineLayoutCreateInfo pli{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pli.setLayoutCount = 1;
  pli.pSetLayouts = &set_layout_;
  pli.pushConstantRangeCount = 1;
  pli.pPushConstantRanges = &push;
  check(vkCreatePipelineLayout(d, &pli, nullptr, &layout_), "vkCreatePipelineLayout");

  std::vector<VkSpecializationMapEntry> entries(spec_constants.size());
  for (uint32_t i = 0; i < entries.size(); ++i) entries[i] = {i, i * 4u, 4};
  VkSpecializationInfo si{uint32_t(entries.size()), entries.data(), spec_constants.size_bytes(), spec_constants.data()};
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module_;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = entries.empty() ? nullptr : &si;
  VkPipelineShaderStageRequiredSubgroupSizeCreateInfo subgroup{
      VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
  if (required_subgroup_size) {
    const auto& caps = device.caps();
    if (required_subgroup_size < caps.min_subgroup_size || required_subgroup_size > caps.max_subgroup_size)
      throw Error(name_ + ": subgroup size " + std::to_string(required_subgroup_size) + " is outside the device's " +
                  std::to_string(caps.min_subgroup_size) + ".." + std::to_string(caps.max_subgroup_size));
    // A device with one subgroup size always runs full subgroups of it; others are told, where they can be.
    if (caps.min_subgroup_size != caps.max_subgroup_size) {
      if (!caps.subgroup_size_control)
        throw Error(name_ + ": needs subgroups of " + std::to_string(required_subgroup_size) +
                    " and the device cannot be asked for them (no subgroupSizeControl)");
      subgroup.requiredSubgroupSize = required_subgroup_size;
      ci.stage.pNext = &subgroup;
      ci.stage.flags |= VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT;
    }
  }
  ci.layout = layout_;
  check(vkCreateComputePipelines(d, device.pipeline_cache(), 1, &ci, nullptr, &pipeline_),
        ("vkCreateComputePipelines(" + name_ + ")").c_str());
}

Pipeline::~Pipeline() {
  VkDevice d = device_.handle();
  vkDestroyPipeline(d, pipeline_, nullptr);
  vkDestroyPipelineLayout(d, layout_, nullptr);
  vkDestroyDescriptorSetLayout(d, set_layout_, nullptr);
  vkDestroyShaderModule(d, module_, nullptr);
}

const Pipeline& PipelineCache::get(const std::string& name, std::span<const uint32_t> spirv,
                                   std::span<const uint32_t> spec_constants, uint32_t required_subgroup_size) {
  std::lock_guard lock(mutex_);
  auto key = std::make_tuple(name, std::vector<uint32_t>(spec_constants.begin(), spec_constants.end()),
                             required_subgroup_size);
  auto it = pipelines_.find(key);
  if (it == pipelines_.end())
    it = pipelines_
             .emplace(key, std::make_unique<Pipeline>(device_, name, spirv, spec_constants, required_subgroup_size))
             .first;
  return *it->second;
}

}  // namespace inferno::vk
