#pragma once
// The command recorder: many dispatches recorded into one command buffer with exactly the barriers their data flow
// needs (a buffer read or written after an earlier dispatch wrote it, or written after one read it), submitted once.
// A recording can be submitted again unchanged (replay). Optional GPU timestamps give per-dispatch times.
#include <vulkan/vulkan.h>

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "vk/buffer.hpp"
#include "vk/pipeline.hpp"
#include "vk/timeline.hpp"

namespace inferno::vk {

class Device;

// A buffer (or a sub-range of it) bound to one binding of a dispatch.
struct Binding {
  const Buffer* buffer = nullptr;
  uint64_t offset = 0;
  uint64_t range = VK_WHOLE_SIZE;
  bool writes = false;
};
inline Binding in(const Buffer& b, uint64_t offset = 0, uint64_t range = VK_WHOLE_SIZE) { return {&b, offset, range, false}; }
inline Binding out(const Buffer& b, uint64_t offset = 0, uint64_t range = VK_WHOLE_SIZE) { return {&b, offset, range, true}; }

struct DispatchTime {
  std::string label;
  double ns = 0;
};

// Used by one thread at a time; recorders of one device may be used on different threads together.
class Recorder {
 public:
  explicit Recorder(Device& device, bool timestamps = false);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Starts a new recording (dropping the previous one).
  void begin();
  void dispatch(const Pipeline& pipeline, std::span<const Binding> bindings, const void* push, uint32_t push_bytes,
                uint32_t groups_x, uint32_t groups_y = 1, uint32_t groups_z = 1);
  template <class Push>
  void dispatch(const Pipeline& pipeline, std::initializer_list<Binding> bindings, const Push& push, uint32_t groups_x,
                uint32_t groups_y = 1, uint32_t groups_z = 1) {
    static_assert(sizeof(Push) <= kPushConstantBytes);
    dispatch(pipeline, std::span<const Binding>(bindings.begin(), bindings.size()), &push, sizeof(Push), groups_x,
             groups_y, groups_z);
  }
  // `label`: the copy's name among the timings.
  void copy(const Buffer& src, uint64_t src_offset, const Buffer& dst, uint64_t dst_offset, uint64_t bytes,
            const char* label = "copy");
  // A full memory barrier that also covers the host: memory another device or the host reads or wrote (shared host
  // memory between the stages of a split model) is made available before it and visible after it.
  void barrier_with_host();
  // Ends the recording (if open), submits it and waits. May be called again to replay the same recording.
  void submit_and_wait();
  // Ends the recording (if open) and submits it without waiting: it starts once every wait's semaphore reaches its
  // value, and sets every signal's semaphore to its value when done. May be called again to replay the recording
  // (after the last submission finished: the next begin(), submit or wait() waits for it).
  void submit(std::span<const SemaphoreValue> waits, std::span<const SemaphoreValue> signals);
  void wait();  // the last submission is done (nothing when none is in flight)

  bool recording() const { return recording_; }
  uint64_t dispatch_count() const { return dispatches_; }
  uint64_t barrier_count() const { return barriers_; }
  // Per-dispatch GPU time of the last submission (empty unless timestamps were asked for and the queue has them).
  std::vector<DispatchTime> timings() const;

 private:
  struct Access {
    bool writes;
    VkBuffer buffer;
  };
  void hazard_barrier(std::span<const Access> accesses);
  void ensure_pool();
  VkDescriptorSet allocate_set(VkDescriptorSetLayout layout);
  void timestamp(const std::string& label);

  void wait_in_flight();  // the last submission is done

  Device& device_;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cb_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  bool in_flight_ = false;
  std::vector<VkDescriptorPool> pools_;
  size_t pool_in_use_ = 0;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  uint32_t query_capacity_ = 0, queries_used_ = 0;
  std::vector<std::string> labels_;
  bool timestamps_ = false, recording_ = false, ended_ = false;
  std::set<VkBuffer> written_, read_;  // since the last barrier
  uint64_t dispatches_ = 0, barriers_ = 0;
};

}  // namespace inferno::vk
