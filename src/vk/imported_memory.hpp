#pragma once
// Host memory made device memory in place (VK_EXT_external_memory_host): on devices that share memory with the host,
// weights are read by the kernels straight from the file mapping they were loaded from, with no copy. The memory is
// the host's: it stays valid only while its owner (the mapping) lives, which this object keeps alive.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <string>

namespace inferno::vk {

class Device;

class ImportedMemory {
 public:
  // Imports [host, host + bytes): both must be multiples of the device's minImportedHostPointerAlignment. `owner`
  // holds what keeps those pages mapped. Throws vk::Error naming `name` when the device cannot import them.
  ImportedMemory(Device& device, const void* host, uint64_t bytes, std::shared_ptr<const void> owner, std::string name);
  ~ImportedMemory();
  ImportedMemory(const ImportedMemory&) = delete;
  ImportedMemory& operator=(const ImportedMemory&) = delete;

  VkDeviceMemory handle() const { return memory_; }
  uint32_t memory_type() const { return memory_type_; }
  uint64_t bytes() const { return bytes_; }
  const void* host() const { return host_; }
  const std::string& name() const { return name_; }

 private:
  Device& device_;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint32_t memory_type_ = 0;
  const void* host_ = nullptr;
  uint64_t bytes_ = 0;
  std::shared_ptr<const void> owner_;
  std::string name_;
};

}  // namespace inferno::vk
