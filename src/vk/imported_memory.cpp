#include "vk/imported_memory.hpp"

#include <utility>

#include "vk/check.hpp"
#include "vk/device.hpp"

namespace inferno::vk {

ImportedMemory::ImportedMemory(Device& device, const void* host, uint64_t bytes, std::shared_ptr<const void> owner,
                               std::string name)
    : device_(device), host_(host), bytes_(bytes), owner_(std::move(owner)), name_(std::move(name)) {
  const auto& caps = device.caps();
  if (!caps.host_import) throw Error("'" + name_ + "': device " + caps.name + " cannot import host memory");
  const uint64_t align = caps.min_imported_host_alignment;
  if (reinterpret_cast<uintptr_t>(host) % align || bytes % align || bytes == 0)
    throw Error("'" + name_ + "': host range of " + std::to_string(bytes) + " bytes is not aligned to " +
                std::to_string(align) + " bytes, as importing it needs");
  VkMemoryHostPointerPropertiesEXT props{VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
  check(device.host_pointer_properties()(device.handle(), VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, host,
                                         &props),
        "vkGetMemoryHostPointerPropertiesEXT");
  if (!props.memoryTypeBits) throw Error("'" + name_ + "': no memory type of " + caps.name + " can import it");
  memory_type_ = device.memory_type(props.memoryTypeBits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  VkImportMemoryHostPointerInfoEXT import{VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT};
  import.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  import.pHostPointer = const_cast<void*>(host);  // the device only reads it: buffers on it refuse uploads
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, &import};
  ai.allocationSize = bytes;
  ai.memoryTypeIndex = memory_type_;
  check(vkAllocateMemory(device.handle(), &ai, nullptr, &memory_), "vkAllocateMemory (host import)");
  // One more live allocation; its bytes are counted by the buffers bound to it, as much as they cover.
  device.note_allocation(0, 1);
}

ImportedMemory::~ImportedMemory() {
  vkFreeMemory(device_.handle(), memory_, nullptr);
  device_.note_allocation(0, -1);
}

}  // namespace inferno::vk
