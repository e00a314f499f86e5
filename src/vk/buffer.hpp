#pragma once
// One VkBuffer with its own VkDeviceMemory. Sizes are rounded up to 16 bytes so kernels may read whole words.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <string>

namespace inferno::vk {

class Device;
class ImportedMemory;

enum class MemoryKind {
  Device,    // device-local storage buffer (weights, activations, KV cache)
  Staging,   // host-visible, for uploads
  Readback,  // host-visible (cached where possible), for downloads
};

class Buffer {
 public:
  Buffer() = default;
  Buffer(Device& device, uint64_t bytes, MemoryKind kind, std::string name);
  // A buffer over bytes [0, data_offset + bytes) of imported host memory whose own data are the `bytes` from
  // data_offset on (what lies before shares their first page): read-only for the host (upload refuses it), counted in
  // the device's account as those bytes rounded up to 16. Throws naming the buffer when the range does not suit the
  // device or the memory.
  Buffer(Device& device, std::shared_ptr<const ImportedMemory> memory, uint64_t data_offset, uint64_t bytes,
         std::string name);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_; }
  uint64_t bytes() const { return bytes_; }           // as asked for
  uint64_t size() const { return size_; }             // the VkBuffer's size: bytes rounded up to 16
  uint64_t allocated_bytes() const { return allocated_; }  // what the driver gave
  const std::string& name() const { return name_; }
  void* mapped() const { return mapped_; }            // non-null when host-visible (never for imported memory)
  bool imported() const { return imported_ != nullptr; }
  explicit operator bool() const { return buffer_ != VK_NULL_HANDLE; }

 private:
  void release();
  Device* device_ = nullptr;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t bytes_ = 0, size_ = 0, allocated_ = 0;
  void* mapped_ = nullptr;
  std::shared_ptr<const ImportedMemory> imported_;  // the host memory this buffer reads, when imported
  std::string name_;
};

// Host <-> device copies through a bounded staging buffer (or straight through a mapping where the device memory is
// host-visible, as on integrated GPUs and lavapipe). Never holds more than `staging_bytes` of host memory.
void upload(Device& device, Buffer& dst, uint64_t dst_offset, const void* src, uint64_t bytes);
void download(Device& device, const Buffer& src, uint64_t src_offset, void* dst, uint64_t bytes);
// upload's path for device memory the host cannot see, taken whatever dst is (tests run it on lavapipe, whose memory
// is all host-visible): the device's staging ring.
void upload_staged(Device& device, Buffer& dst, uint64_t dst_offset, const void* src, uint64_t bytes);

// Two host-visible staging buffers, each with its command buffer and fence, kept by the Device for all its uploads:
// the host copies the next piece into one while the device copies the last one out of the other, and no upload
// allocates (and first-touches) host memory of its own. Not counted in the device's allocation account (the account
// follows what inferno asked of the device, and the tests' leak checks with it).
class StagingRing {
 public:
  explicit StagingRing(Device& device);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;
  void upload(VkBuffer dst, uint64_t dst_offset, const void* src, uint64_t bytes);
  static constexpr uint64_t kSlotBytes = 32ull << 20;

 private:
  void wait(int slot);
  Device& device_;
  Buffer slots_[2];
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer commands_[2] = {};
  VkFence fences_[2] = {};
  bool pending_[2] = {false, false};
};

}  // namespace inferno::vk
