#pragma once
// A timeline semaphore (Vulkan 1.2's timelineSemaphore): a 64-bit counter that submissions signal and wait on, and the
// host too. It orders the stages of a split model without a CPU wait between them where the driver allows it.
#include <vulkan/vulkan.h>

#include <cstdint>

namespace inferno::vk {

class Device;

class TimelineSemaphore {
 public:
  // exportable: made to be exported as an OPAQUE_FD (caps().external_timeline_fd must hold).
  explicit TimelineSemaphore(Device& device, uint64_t initial = 0, bool exportable = false);
  // Imports the payload of a semaphore exported from another device (takes ownership of `fd`, also on failure).
  static TimelineSemaphore import_fd(Device& device, int fd);
  ~TimelineSemaphore();
  TimelineSemaphore(TimelineSemaphore&& other) noexcept;
  TimelineSemaphore& operator=(TimelineSemaphore&&) = delete;
  TimelineSemaphore(const TimelineSemaphore&) = delete;
  TimelineSemaphore& operator=(const TimelineSemaphore&) = delete;

  VkSemaphore handle() const { return semaphore_; }
  Device& device() const { return *device_; }
  uint64_t value() const;  // the counter now
  // Waits until the counter reaches `value`; past `timeout_ns`, or when the device is lost, throws inferno::Error
  // naming the device and the value.
  void wait(uint64_t value, uint64_t timeout_ns = kDefaultTimeoutNs) const;
  void signal(uint64_t value);  // from the host: the counter becomes `value` (larger than it is)
  int export_fd() const;        // a new OPAQUE_FD for the payload (the caller owns it)

  static constexpr uint64_t kDefaultTimeoutNs = 600ull * 1000000000ull;  // as Device::wait_for's fences

 private:
  struct Imported {};
  TimelineSemaphore(Device& device, Imported);
  Device* device_;
  VkSemaphore semaphore_ = VK_NULL_HANDLE;
};

// A semaphore and the counter value a submission signals or waits for.
struct SemaphoreValue {
  const TimelineSemaphore* semaphore = nullptr;
  uint64_t value = 0;
};

}  // namespace inferno::vk
