#pragma once
// The boundary between two stages of a split model: how the hidden state crosses it (memory) and how the next stage
// learns that it is there (order), chosen once, the best both devices allow.
//
// Memory: the same device → one device buffer; two devices that both import host memory (VK_EXT_external_memory_host)
// → one host allocation imported into both, which the first stage's commands copy the rows into and the next stage's
// copy them out of; otherwise the host copies them (read back from one device, written into the other's mapping).
// Order: the same device → one timeline semaphore; devices that share an OPAQUE_FD timeline semaphore (same driver
// and device UUIDs, VK_KHR_external_semaphore_fd) → one payload, signalled on one device and waited for on the other;
// other devices with timeline semaphores → a host relay: the next stage's submission waits for its own device's
// semaphore, which the host signals once the first stage's value is reached; devices without them → a host wait for
// each stage (its fence) before the next one is submitted.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "vk/buffer.hpp"
#include "vk/device.hpp"
#include "vk/imported_memory.hpp"
#include "vk/timeline.hpp"

namespace inferno::model {

// INFERNO_STAGE_LINK=host: the host copy and a host wait per stage at every boundary, whatever the devices allow;
// auto (or unset): the best they allow. Anything else is an Error naming the variable.
bool stage_links_host_only_from_env();

class StageLink {
 public:
  enum class Memory { HostCopy, DeviceBuffer, SharedHost };
  enum class Order { HostWait, Timeline, SharedTimeline, HostRelay };
  static const char* name(Memory m);
  static const char* name(Order o);

  // host_only: the host copy and host waits whatever the devices allow (INFERNO_STAGE_LINK=host).
  StageLink(vk::Device& from, vk::Device& to, bool host_only);
  StageLink(const StageLink&) = delete;
  StageLink& operator=(const StageLink&) = delete;

  Memory memory() const { return memory_; }
  Order order() const { return order_; }
  // The stages submit one after the other without the host copying between them.
  bool chained() const { return memory_ != Memory::HostCopy && order_ != Order::HostWait; }

  // Makes the shared memory hold `bytes` at least; true when the buffers are new (recordings bind the old ones).
  bool reserve(uint64_t bytes);
  const vk::Buffer* out() const { return out_.get(); }  // where the first stage writes, on its device
  const vk::Buffer* in() const { return in_ ? in_.get() : out_.get(); }  // where the next stage reads, on its device

  vk::SemaphoreValue signal(uint64_t value) const { return {signal_.get(), value}; }  // the first stage's submission
  vk::SemaphoreValue wait(uint64_t value) const { return {wait_ ? wait_.get() : signal_.get(), value}; }  // the next's
  // Host relay: waits for the first stage to reach `value`, then lets the next one go.
  void relay(uint64_t value);
  // After a failed step: the next stage's wait for `value` is released whatever the first stage did (the host relay's;
  // device signals come by themselves), so that no submission waits forever.
  void release(uint64_t value);

 private:
  vk::Device& from_;
  vk::Device& to_;
  Memory memory_ = Memory::HostCopy;
  Order order_ = Order::HostWait;
  uint64_t bytes_ = 0;
  std::unique_ptr<vk::Buffer> out_, in_;  // in_ null: one buffer on one device
  std::unique_ptr<vk::TimelineSemaphore> signal_, wait_;  // wait_ null: the next stage waits for signal_ itself
};

// The links of every boundary of a pipeline (Pipeline, PagedPipeline) and the chained step over them: every stage
// recorded and submitted in turn, each waiting on its device for the one before, the host relaying where a link
// needs it and waiting once for the last stage. Chained only when every link is (chained()); otherwise the
// pipeline takes its host path at every boundary.
class StageChain {
 public:
  // devices: each stage's, in order (one link between each two).
  void reset(const std::vector<vk::Device*>& devices, bool host_only);
  bool chained() const { return chained_; }
  const StageLink& link(size_t i) const { return *links_.at(i); }
  // Makes every link hold `bytes`; the boundaries whose buffers are new (their stages' recordings bind the old ones).
  std::vector<size_t> reserve(uint64_t bytes);
  const vk::Buffer* in(size_t stage) const { return stage > 0 ? links_[stage - 1]->in() : nullptr; }
  const vk::Buffer* out(size_t stage) const { return stage < links_.size() ? links_[stage]->out() : nullptr; }

  // One chained step of links + 1 stages: record(i) records stage i, submit(i, waits, signals) submits it,
  // relayed(i) is told when the host saw stage i done (host relays only). Returns the host waits it took. On any
  // failure every link is released and abandon(i) called for every stage, then the error is rethrown.
  using Semaphores = std::span<const vk::SemaphoreValue>;
  uint32_t run(const std::function<void(size_t)>& record, const std::function<void(size_t, Semaphores, Semaphores)>& submit,
               const std::function<void(size_t)>& abandon, const std::function<void(size_t)>& relayed = {});

 private:
  std::vector<std::unique_ptr<StageLink>> links_;
  bool chained_ = false;                         // every link is
  std::unique_ptr<vk::TimelineSemaphore> done_;  // the last stage's, on its device (chained)
  uint64_t value_ = 0;                           // the value of the last chained step on every semaphore
};

}  // namespace inferno::model
