#pragma once
// Turns a failed Vulkan call into an inferno::Error naming the call; out-of-memory results become OutOfDeviceMemory.
#include <vulkan/vulkan.h>

#include <string>

#include "util/error.hpp"

namespace inferno::vk {

const char* result_name(VkResult r);

inline void check(VkResult r, const char* what) {
  if (r == VK_SUCCESS) return;
  const std::string msg = std::string("Vulkan: ") + what + " failed: " + result_name(r);
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) throw OutOfDeviceMemory(msg);
  throw Error(msg);
}

}  // namespace inferno::vk
