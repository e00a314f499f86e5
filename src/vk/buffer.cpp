#include "vk/buffer.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "vk/check.hpp"
#include "vk/device.hpp"
#include "vk/imported_memory.hpp"

namespace inferno::vk {

Buffer::Buffer(Device& device, uint64_t bytes, MemoryKind kind, std::string name)
    : device_(&device), bytes_(bytes), name_(std::move(name)) {
  const uint64_t size = std::max<uint64_t>(16, (bytes + 15) & ~uint64_t(15));
  // The driver may refuse such a size in any way (or none, and fail later): refused here, as memory that ran out.
  if (size > device.caps().max_memory_allocation_size)
    throw OutOfDeviceMemory("buffer '" + name_ + "' of " + std::to_string(bytes) +
                            " bytes exceeds the device's largest allocation (" +
                            std::to_string(device.caps().max_memory_allocation_size) + " bytes)");
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = size_ = size;
  // Host-visible buffers are storage buffers too: small per-step inputs (token ids, positions) are written by the
  // host and read by kernels directly, without a separate upload submission.
  bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(vkCreateBuffer(device.handle(), &bi, nullptr, &buffer_), "vkCreateBuffer");

  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device.handle(), buffer_, &req);
  VkMemoryPropertyFlags required = 0, preferred = 0;
  switch (kind) {
    case MemoryKind::Device: required = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT; break;
    case MemoryKind::Staging:
      required = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
      break;
    case MemoryKind::Readback:
      required = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
      preferred = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
      break;
  }
  try {
    device.check_room(req.size, name_);
  } catch (...) {
    vkDestroyBuffer(device.handle(), buffer_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    throw;
  }
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = device.memory_type(req.memoryTypeBits, required, preferred);
  const VkResult r = vkAllocateMemory(device.handle(), &ai, nullptr, &memory_);
  if (r != VK_SUCCESS) {
    vkDestroyBuffer(device.handle(), buffer_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
      throw OutOfDeviceMemory("out of device memory allocating " + std::to_string(bytes) + " bytes for '" + name_ +
                              "' on " + device.label() + " (" + std::to_string(device.allocated_bytes()) +
                              " bytes already held)");
    check(r, "vkAllocateMemory");
  }
  check(vkBindBufferMemory(device.handle(), buffer_, memory_, 0), "vkBindBufferMemory");
  allocated_ = req.size;
  device.note_allocation(int64_t(allocated_), 1);
  // Map whatever is host-visible: on UMA devices even device-local memory is, and uploads become memcpy.
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(device.physical(), &mp);
  const auto flags = mp.memoryTypes[ai.memoryTypeIndex].propertyFlags;
  if ((flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) && (flags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT))
    check(vkMapMemory(device.handle(), memory_, 0, VK_WHOLE_SIZE, 0, &mapped_), "vkMapMemory");
}

Buffer::Buffer(Device& device, std::shared_ptr<const ImportedMemory> memory, uint64_t data_offset, uint64_t bytes,
               std::string name)
    : device_(&device), bytes_(data_offset + bytes), name_(std::move(name)) {
  const uint64_t size = std::max<uint64_t>(16, (bytes_ + 15) & ~uint64_t(15));
  if (size > memory->bytes())
    throw Error("imported buffer '" + name_ + "': " + std::to_string(size) + " bytes run past the imported " +
                std::to_string(memory->bytes()) + " bytes");
  VkExternalMemoryBufferCreateInfo external{VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
  external.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, &external};
  bi.size = size_ = size;
  // A transfer destination too: the stages of a split model copy the hidden state into host memory both import.
  bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(vkCreateBuffer(device.handle(), &bi, nullptr, &buffer_), "vkCreateBuffer");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device.handle(), buffer_, &req);
  if (!(req.memoryTypeBits & (1u << memory->memory_type())) || req.size > memory->bytes()) {
    vkDestroyBuffer(device.handle(), buffer_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    throw Error("imported buffer '" + name_ + "': the device cannot bind it to '" + memory->name() + "'");
  }
  try {
    device.check_room(std::max<uint64_t>(16, (bytes + 15) & ~uint64_t(15)), name_);
  } catch (...) {
    vkDestroyBuffer(device.handle(), buffer_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    throw;
  }
  check(vkBindBufferMemory(device.handle(), buffer_, memory->handle(), 0), "vkBindBufferMemory");
  imported_ = std::move(memory);
  allocated_ = std::max<uint64_t>(16, (bytes + 15) & ~uint64_t(15));
  device.note_allocation(int64_t(allocated_), 1);
  device.note_import(int64_t(allocated_));
}

void Buffer::release() {
  if (!device_) return;
  if (buffer_) vkDestroyBuffer(device_->handle(), buffer_, nullptr);
  if (memory_) {
    vkFreeMemory(device_->handle(), memory_, nullptr);
    device_->note_allocation(-int64_t(allocated_), -1);
  }
  if (imported_) {  // the memory itself goes with its last buffer
    device_->note_allocation(-int64_t(allocated_), -1);
    device_->note_import(-int64_t(allocated_));
    imported_.reset();
  }
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  device_ = nullptr;
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept { *this = std::move(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    device_ = std::exchange(o.device_, nullptr);
    buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
    bytes_ = std::exchange(o.bytes_, 0);
    size_ = std::exchange(o.size_, 0);
    allocated_ = std::exchange(o.allocated_, 0);
    mapped_ = std::exchange(o.mapped_, nullptr);
    imported_ = std::move(o.imported_);
    name_ = std::move(o.name_);
  }
  return *this;
}

namespace {

constexpr uint64_t kStagingBytes = 32ull << 20;

void check_range(const Buffer& b, uint64_t offset, uint64_t bytes, const char* what) {
  if (offset > b.bytes() || bytes > b.bytes() - offset)
    throw Error(std::string(what) + " of " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
                " runs past the end of buffer '" + b.name() + "' (" + std::to_string(b.bytes()) + " bytes)");
}

// Records into `cb` a copy that comes after any earlier compute work or copy: that work may still be writing what
// we read, or reading what we overwrite.
void record_copy(VkCommandBuffer cb, VkBuffer src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset,
                 uint64_t bytes) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer(cb, src, dst, 1, &region);
}

// Imported memory is the host's file mapping, mapped read-only: nothing may write it.
void check_writable(const Buffer& b) {
  if (b.imported()) throw Error("upload: buffer '" + b.name() + "' is imported host memory, read-only on the device");
}

}  // namespace

void upload(Device& device, Buffer& dst, uint64_t dst_offset, const void* src, uint64_t bytes) {
  check_range(dst, dst_offset, bytes, "upload");
  check_writable(dst);
  if (bytes == 0) return;
  if (dst.mapped()) {
    device.wait_idle();  // nothing in flight may touch it while the host writes
    std::memcpy(static_cast<char*>(dst.mapped()) + dst_offset, src, bytes);
    return;
  }
  upload_staged(device, dst, dst_offset, src, bytes);
}

void upload_staged(Device& device, Buffer& dst, uint64_t dst_offset, const void* src, uint64_t bytes) {
  check_range(dst, dst_offset, bytes, "upload");
  check_writable(dst);
  if (bytes == 0) return;
  std::lock_guard lock(device.staging_mutex());
  device.staging().upload(dst.handle(), dst_offset, src, bytes);
}

StagingRing::StagingRing(Device& device) : device_(device) {
  // A pool of its own, used under the device's staging lock only.
  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = device.queue_family();
  check(vkCreateCommandPool(device.handle(), &pi, nullptr, &pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 2;
  check(vkAllocateCommandBuffers(device.handle(), &ai, commands_), "vkAllocateCommandBuffers");
  for (int i = 0; i < 2; ++i) {
    VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    check(vkCreateFence(device.handle(), &fi, nullptr, &fences_[i]), "vkCreateFence");
    slots_[i] = Buffer(device, kSlotBytes, MemoryKind::Staging, "staging ring " + std::to_string(i));
    device.note_allocation(-int64_t(slots_[i].allocated_bytes()), -1);  // the device's own, not an inferno buffer
  }
}

StagingRing::~StagingRing() {
  for (int i = 0; i < 2; ++i) {
    if (pending_[i]) vkWaitForFences(device_.handle(), 1, &fences_[i], VK_TRUE, UINT64_MAX);
    device_.note_allocation(int64_t(slots_[i].allocated_bytes()), 1);  // balances the release that follows
    slots_[i] = Buffer();
    vkDestroyFence(device_.handle(), fences_[i], nullptr);
  }
  vkDestroyCommandPool(device_.handle(), pool_, nullptr);  // frees its command buffers
}

void StagingRing::wait(int slot) {
  if (!pending_[slot]) return;
  device_.wait_for(fences_[slot]);
  check(vkResetFences(device_.handle(), 1, &fences_[slot]), "vkResetFences");
  pending_[slot] = false;
}

void StagingRing::upload(VkBuffer dst, uint64_t dst_offset, const void* src, uint64_t bytes) {
  int slot = 0;
  for (uint64_t done = 0; done < bytes; slot ^= 1) {
    const uint64_t n = std::min(bytes - done, kSlotBytes);
    wait(slot);  // its previous copy is done: the host may overwrite it while the other slot's copy runs
    std::memcpy(slots_[slot].mapped(), static_cast<const char*>(src) + done, n);
    VkCommandBuffer cb = commands_[slot];
    check(vkResetCommandBuffer(cb, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    check(vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer");
    record_copy(cb, slots_[slot].handle(), 0, dst, dst_offset + done, n);
    check(vkEndCommandBuffer(cb), "vkEndCommandBuffer");
    device_.submit(cb, fences_[slot]);
    pending_[slot] = true;
    done += n;
  }
  // Synchronous for the caller: src may go away, and later work sees the bytes.
  wait(0);
  wait(1);
}

void download(Device& device, const Buffer& src, uint64_t src_offset, void* dst, uint64_t bytes) {
  check_range(src, src_offset, bytes, "download");
  if (bytes == 0) return;
  if (src.mapped()) {
    device.wait_idle();
    std::memcpy(dst, static_cast<const char*>(src.mapped()) + src_offset, bytes);
    return;
  }
  Buffer staging(device, std::min(bytes, kStagingBytes), MemoryKind::Readback, "readback");
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(bytes - done, kStagingBytes);
    device.run_once([&](VkCommandBuffer cb) { record_copy(cb, src.handle(), src_offset + done, staging.handle(), 0, n); });
    std::memcpy(static_cast<char*>(dst) + done, staging.mapped(), n);
    done += n;
  }
}

}  // namespace inferno::vk
