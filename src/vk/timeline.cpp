#include "vk/timeline.hpp"

#include <unistd.h>

#include <string>
#include <utility>

#include "vk/check.hpp"
#include "vk/device.hpp"

namespace inferno::vk {

TimelineSemaphore::TimelineSemaphore(Device& device, uint64_t initial, bool exportable) : device_(&device) {
  if (!device.caps().timeline_semaphore) throw Error("timeline semaphore: " + device.label() + " has none");
  if (exportable && !device.caps().external_timeline_fd)
    throw Error("timeline semaphore: " + device.label() + " cannot export one as an OPAQUE_FD");
  VkExportSemaphoreCreateInfo export_info{VK_STRUCTURE_TYPE_EXPORT_SEMAPHORE_CREATE_INFO};
  export_info.handleTypes = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD_BIT;
  VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO, exportable ? &export_info : nullptr};
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  type.initialValue = initial;
  VkSemaphoreCreateInfo ci{VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, &type};
  check(vkCreateSemaphore(device.handle(), &ci, nullptr, &semaphore_), "vkCreateSemaphore (timeline)");
}

TimelineSemaphore::TimelineSemaphore(Device& device, Imported) : TimelineSemaphore(device, 0, false) {}

TimelineSemaphore TimelineSemaphore::import_fd(Device& device, int fd) {
  if (!device.caps().external_timeline_fd || !device.import_semaphore_fd()) {
    ::close(fd);
    throw Error("timeline semaphore: " + device.label() + " cannot import an OPAQUE_FD");
  }
  TimelineSemaphore s(device, Imported{});
  VkImportSemaphoreFdInfoKHR info{VK_STRUCTURE_TYPE_IMPORT_SEMAPHORE_FD_INFO_KHR};
  info.semaphore = s.semaphore_;
  info.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD_BIT;
  info.fd = fd;
  const VkResult r = device.import_semaphore_fd()(device.handle(), &info);
  if (r != VK_SUCCESS) ::close(fd);  // a successful import owns the fd
  check(r, "vkImportSemaphoreFdKHR");
  return s;
}

TimelineSemaphore::~TimelineSemaphore() {
  if (!semaphore_) return;
  // The queue idle first, not only every fence of the submissions that used this semaphore: Mesa's common queue code
  // (lavapipe's), once a submission waited for a value not yet signalled, runs submissions on a thread that releases
  // their timeline points after the fence is signalled, and freeing the semaphore in between crashed that thread
  // (tests/vk: "timeline semaphores destroyed right after their submission's fence"). vkQueueWaitIdle returns after
  // that thread has finished with every earlier submission.
  try {
    device_->wait_idle();
  } catch (...) {  // a lost device: nothing more runs on it
  }
  vkDestroySemaphore(device_->handle(), semaphore_, nullptr);
}

TimelineSemaphore::TimelineSemaphore(TimelineSemaphore&& other) noexcept
    : device_(other.device_), semaphore_(std::exchange(other.semaphore_, VK_NULL_HANDLE)) {}

uint64_t TimelineSemaphore::value() const {
  uint64_t v = 0;
  check(vkGetSemaphoreCounterValue(device_->handle(), semaphore_, &v), "vkGetSemaphoreCounterValue");
  return v;
}

void TimelineSemaphore::wait(uint64_t value, uint64_t timeout_ns) const {
  VkSemaphoreWaitInfo wi{VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO};
  wi.semaphoreCount = 1;
  wi.pSemaphores = &semaphore_;
  wi.pValues = &value;
  const VkResult r = vkWaitSemaphores(device_->handle(), &wi, timeout_ns);
  if (r == VK_SUCCESS) return;
  if (r == VK_TIMEOUT)
    throw Error("Vulkan: " + device_->label() + " did not reach timeline value " + std::to_string(value) + " within " +
                std::to_string(timeout_ns / 1000000) + " ms (the value is " + std::to_string(this->value()) + ")");
  if (r == VK_ERROR_DEVICE_LOST)
    throw Error("Vulkan: " + device_->label() + " was lost waiting for timeline value " + std::to_string(value));
  check(r, "vkWaitSemaphores");
}

void TimelineSemaphore::signal(uint64_t value) {
  VkSemaphoreSignalInfo si{VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO};
  si.semaphore = semaphore_;
  si.value = value;
  check(vkSignalSemaphore(device_->handle(), &si), "vkSignalSemaphore");
}

int TimelineSemaphore::export_fd() const {
  if (!device_->get_semaphore_fd()) throw Error("timeline semaphore: " + device_->label() + " cannot export one");
  VkSemaphoreGetFdInfoKHR info{VK_STRUCTURE_TYPE_SEMAPHORE_GET_FD_INFO_KHR};
  info.semaphore = semaphore_;
  info.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD_BIT;
  int fd = -1;
  check(device_->get_semaphore_fd()(device_->handle(), &info, &fd), "vkGetSemaphoreFdKHR");
  return fd;
}

}  // namespace inferno::vk
