#include "vk/recorder.hpp"

#include "vk/check.hpp"
#include "vk/device.hpp"

namespace inferno::vk {

namespace {
constexpr uint32_t kSetsPerPool = 1024;
constexpr uint32_t kMaxTimestamps = 8192;
}  // namespace

Recorder::Recorder(Device& device, bool timestamps)
    : device_(device), timestamps_(timestamps && device.caps().timestamp_period_ns > 0) {
  // A command pool of its own: recorders of one device record on different threads without a shared lock.
  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = device.queue_family();
  check(vkCreateCommandPool(device.handle(), &pi, nullptr, &command_pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = command_pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
  qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
  qi.queryCount = kMaxTimestamps;
  VkResult r = vkAllocateCommandBuffers(device.handle(), &ai, &cb_);
  const char* what = "vkAllocateCommandBuffers";
  if (r == VK_SUCCESS) {
    what = "vkCreateFence";
    r = vkCreateFence(device.handle(), &fi, nullptr, &fence_);
  }
  if (r == VK_SUCCESS && timestamps_) {
    what = "vkCreateQueryPool";
    r = vkCreateQueryPool(device.handle(), &qi, nullptr, &queries_);
    query_capacity_ = kMaxTimestamps;
  }
  if (r != VK_SUCCESS) {  // no destructor runs for a constructor that throws
    if (fence_) vkDestroyFence(device.handle(), fence_, nullptr);
    vkDestroyCommandPool(device.handle(), command_pool_, nullptr);
    check(r, what);
  }
}

Recorder::~Recorder() {
  // Only this recorder's own submission need be finished (a timed-out one is waited for without bound here: its
  // resources cannot be freed while it runs).
  if (in_flight_) vkWaitForFences(device_.handle(), 1, &fence_, VK_TRUE, UINT64_MAX);
  for (auto pool : pools_) vkDestroyDescriptorPool(device_.handle(), pool, nullptr);
  if (queries_) vkDestroyQueryPool(device_.handle(), queries_, nullptr);
  vkDestroyFence(device_.handle(), fence_, nullptr);
  vkDestroyCommandPool(device_.handle(), command_pool_, nullptr);  // frees cb_
}

void Recorder::wait_in_flight() {
  if (!in_flight_) return;
  device_.wait_for(fence_);
  in_flight_ = false;
}

void Recorder::begin() {
  wait_in_flight();  // the old recording may still be executing (a wait that failed earlier)
  for (auto pool : pools_) vkResetDescriptorPool(device_.handle(), pool, 0);
  pool_in_use_ = 0;
  check(vkResetCommandBuffer(cb_, 0), "vkResetCommandBuffer");
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  check(vkBeginCommandBuffer(cb_, &bi), "vkBeginCommandBuffer");
  recording_ = true;
  ended_ = false;
  written_.clear();
  read_.clear();
  dispatches_ = barriers_ = 0;
  labels_.clear();
  queries_used_ = 0;
  if (timestamps_) {
    vkCmdResetQueryPool(cb_, queries_, 0, query_capacity_);
    timestamp("start");
  }
}

void Recorder::ensure_pool() {
  if (pool_in_use_ < pools_.size()) return;
  VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * 8};
  VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pi.maxSets = kSetsPerPool;
  pi.poolSizeCount = 1;
  pi.pPoolSizes = &size;
  VkDescriptorPool pool;
  check(vkCreateDescriptorPool(device_.handle(), &pi, nullptr, &pool), "vkCreateDescriptorPool");
  pools_.push_back(pool);
}

VkDescriptorSet Recorder::allocate_set(VkDescriptorSetLayout layout) {
  for (;;) {
    ensure_pool();
    VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
    ai.descriptorPool = pools_[pool_in_use_];
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    VkDescriptorSet set;
    const VkResult r = vkAllocateDescriptorSets(device_.handle(), &ai, &set);
    if (r == VK_SUCCESS) return set;
    if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) check(r, "vkAllocateDescriptorSets");
    ++pool_in_use_;  // this pool is full: move on to the next (made on demand)
  }
}

void Recorder::hazard_barrier(std::span<const Access> accesses) {
  bool hazard = false;
  for (const auto& a : accesses) {
    if (written_.count(a.buffer)) hazard = true;           // read-after-write or write-after-write
    if (a.writes && read_.count(a.buffer)) hazard = true;  // write-after-read
  }
  if (hazard) {
    VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT;
    const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    vkCmdPipelineBarrier(cb_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
    ++barriers_;
    written_.clear();
    read_.clear();
  }
  for (const auto& a : accesses) (a.writes ? written_ : read_).insert(a.buffer);
}

void Recorder::timestamp(const std::string& label) {
  if (!timestamps_ || queries_used_ >= query_capacity_) return;
  vkCmdWriteTimestamp(cb_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, queries_used_++);
  labels_.push_back(label);
}

void Recorder::dispatch(const Pipeline& pipeline, std::span<const Binding> bindings, const void* push,
                        uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz) {
  if (!recording_) throw Error("Recorder::dispatch outside begin()/submit_and_wait()");
  if (bindings.size() != pipeline.binding_count())
    throw Error("kernel " + pipeline.name() + " takes " + std::to_string(pipeline.binding_count()) + " buffers, got " +
                std::to_string(bindings.size()));
  if (push_bytes > kPushConstantBytes) throw Error("kernel " + pipeline.name() + ": push constants too large");
  const auto& caps = device_.caps();
  if (gx > caps.max_workgroup_count[0] || gy > caps.max_workgroup_count[1] || gz > caps.max_workgroup_count[2])
    throw Error("kernel " + pipeline.name() + ": grid " + std::to_string(gx) + "x" + std::to_string(gy) + "x" +
                std::to_string(gz) + " exceeds the device's workgroup count limits");
  if (gx == 0 || gy == 0 || gz == 0) return;

  std::vector<Access> accesses;
  std::vector<VkDescriptorBufferInfo> infos(bindings.size());
  std::vector<VkWriteDescriptorSet> writes(bindings.size());
  const VkDescriptorSet set = allocate_set(pipeline.set_layout());
  for (size_t i = 0; i < bindings.size(); ++i) {
    const Binding& b = bindings[i];
    if (!b.buffer || !*b.buffer) throw Error("kernel " + pipeline.name() + ": binding " + std::to_string(i) + " is empty");
    if (b.offset % caps.min_storage_offset_alignment)
      throw Error("kernel " + pipeline.name() + ": binding " + std::to_string(i) + " ('" + b.buffer->name() +
                  "') starts at offset " + std::to_string(b.offset) + ", not a multiple of the device's " +
                  std::to_string(caps.min_storage_offset_alignment) + "-byte storage offset alignment");
    const uint64_t range = b.range == VK_WHOLE_SIZE ? b.buffer->size() - b.offset : b.range;
    if (range > caps.max_storage_buffer_range)
      throw Error("kernel " + pipeline.name() + ": binding " + std::to_string(i) + " ('" + b.buffer->name() + "') spans " +
                  std::to_string(range) + " bytes, more than the device's maxStorageBufferRange " +
                  std::to_string(caps.max_storage_buffer_range));
    infos[i] = {b.buffer->handle(), b.offset, b.range};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = uint32_t(i);
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
    accesses.push_back({b.writes, b.buffer->handle()});
  }
  vkUpdateDescriptorSets(device_.handle(), uint32_t(writes.size()), writes.data(), 0, nullptr);
  hazard_barrier(accesses);
  vkCmdBindPipeline(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle());
  vkCmdBindDescriptorSets(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout(), 0, 1, &set, 0, nullptr);
  if (push_bytes) vkCmdPushConstants(cb_, pipeline.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vkCmdDispatch(cb_, gx, gy, gz);
  ++dispatches_;
  timestamp(pipeline.name());
}

void Recorder::copy(const Buffer& src, uint64_t src_offset, const Buffer& dst, uint64_t dst_offset, uint64_t bytes,
                    const char* label) {
  if (!recording_) throw Error("Recorder::copy outside begin()/submit_and_wait()");
  if (src_offset + bytes > src.size() || dst_offset + bytes > dst.size())
    throw Error("copy of " + std::to_string(bytes) + " bytes from '" + src.name() + "' to '" + dst.name() +
                "' runs past a buffer's end");
  if (bytes == 0) return;
  const Access accesses[] = {{false, src.handle()}, {true, dst.handle()}};
  hazard_barrier(accesses);
  VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer(cb_, src.handle(), dst.handle(), 1, &region);
  timestamp(label);
}

void Recorder::barrier_with_host() {
  if (!recording_) throw Error("Recorder::barrier_with_host outside begin()/submit");
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
  const VkPipelineStageFlags stages =
      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT | VK_PIPELINE_STAGE_HOST_BIT;
  vkCmdPipelineBarrier(cb_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
  ++barriers_;
  written_.clear();
  read_.clear();
}

void Recorder::wait() { wait_in_flight(); }

void Recorder::submit(std::span<const SemaphoreValue> waits, std::span<const SemaphoreValue> signals) {
  if (!recording_ && !ended_) throw Error("Recorder::submit with nothing recorded");
  if (recording_) {
    check(vkEndCommandBuffer(cb_), "vkEndCommandBuffer");
    recording_ = false;
    ended_ = true;
  }
  wait_in_flight();
  std::vector<VkSemaphore> wait_handles, signal_handles;
  std::vector<uint64_t> wait_values, signal_values;
  std::vector<VkPipelineStageFlags> wait_stages;
  for (const auto& w : waits) {
    if (&w.semaphore->device() != &device_) throw Error("Recorder::submit: a wait on another device's semaphore");
    wait_handles.push_back(w.semaphore->handle());
    wait_values.push_back(w.value);
    wait_stages.push_back(VK_PIPELINE_STAGE_ALL_COMMANDS_BIT);
  }
  for (const auto& s : signals) {
    if (&s.semaphore->device() != &device_) throw Error("Recorder::submit: a signal of another device's semaphore");
    signal_handles.push_back(s.semaphore->handle());
    signal_values.push_back(s.value);
  }
  VkTimelineSemaphoreSubmitInfo timeline{VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
  timeline.waitSemaphoreValueCount = uint32_t(wait_values.size());
  timeline.pWaitSemaphoreValues = wait_values.data();
  timeline.signalSemaphoreValueCount = uint32_t(signal_values.size());
  timeline.pSignalSemaphoreValues = signal_values.data();
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO, &timeline};
  si.waitSemaphoreCount = uint32_t(wait_handles.size());
  si.pWaitSemaphores = wait_handles.data();
  si.pWaitDstStageMask = wait_stages.data();
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb_;
  si.signalSemaphoreCount = uint32_t(signal_handles.size());
  si.pSignalSemaphores = signal_handles.data();
  check(vkResetFences(device_.handle(), 1, &fence_), "vkResetFences");
  device_.submit(si, fence_);
  in_flight_ = true;
}

void Recorder::submit_and_wait() {
  if (!recording_ && !ended_) throw Error("Recorder::submit_and_wait with nothing recorded");
  if (recording_) {
    check(vkEndCommandBuffer(cb_), "vkEndCommandBuffer");
    recording_ = false;
    ended_ = true;
  }
  wait_in_flight();
  check(vkResetFences(device_.handle(), 1, &fence_), "vkResetFences");
  device_.submit(cb_, fence_);
  in_flight_ = true;
  wait_in_flight();
}

std::vector<DispatchTime> Recorder::timings() const {
  std::vector<DispatchTime> out;
  if (!timestamps_ || queries_used_ < 2 || recording_) return out;
  std::vector<uint64_t> ticks(queries_used_);
  const VkResult r = vkGetQueryPoolResults(device_.handle(), queries_, 0, queries_used_, ticks.size() * 8, ticks.data(), 8,
                                           VK_QUERY_RESULT_64_BIT);
  if (r != VK_SUCCESS) return out;
  const double period = device_.caps().timestamp_period_ns;
  for (uint32_t i = 1; i < queries_used_; ++i) out.push_back({labels_[i], double(ticks[i] - ticks[i - 1]) * period});
  return out;
}

}  // namespace inferno::vk
