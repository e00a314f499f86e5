#pragma once
// The Vulkan instance, with the Khronos validation layer when asked for (tests always ask, and count its errors).
#include <vulkan/vulkan.h>

#include <atomic>
#include <string>
#include <vector>

namespace inferno::vk {

struct InstanceOptions {
  bool validation = false;  // also turned on by the environment variable INFERNO_VALIDATION=1
};

class Instance {
 public:
  explicit Instance(InstanceOptions options = {});
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  VkInstance handle() const { return instance_; }
  std::vector<VkPhysicalDevice> physical_devices() const;
  bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }
  // Validation errors seen so far (warnings are printed, not counted).
  uint64_t validation_errors() const { return validation_errors_.load(); }
  const std::string& last_validation_error() const { return last_error_; }

 private:
  static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT, VkDebugUtilsMessageTypeFlagsEXT,
                                                   const VkDebugUtilsMessengerCallbackDataEXT*, void*);
  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  std::atomic<uint64_t> validation_errors_{0};
  std::string last_error_;
};

}  // namespace inferno::vk
