#include "model/stage_link.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util/error.hpp"

namespace inferno::model {

bool stage_links_host_only_from_env() {
  const char* env = std::getenv("INFERNO_STAGE_LINK");
  if (!env) return false;
  const std::string v = env;
  if (v != "host" && v != "auto") throw Error("INFERNO_STAGE_LINK=" + v + ": expected host or auto");
  return v == "host";
}

const char* StageLink::name(Memory m) {
  switch (m) {
    case Memory::HostCopy: return "host copy";
    case Memory::DeviceBuffer: return "device buffer";
    case Memory::SharedHost: return "shared host memory";
  }
  return "?";
}

const char* StageLink::name(Order o) {
  switch (o) {
    case Order::HostWait: return "host wait per stage";
    case Order::Timeline: return "timeline semaphore";
    case Order::SharedTimeline: return "shared timeline semaphore";
    case Order::HostRelay: return "timeline semaphores, host relay";
  }
  return "?";
}

namespace {

// An OPAQUE_FD payload is shared only between devices of the same driver and physical device (the spec's rule for
// opaque handles: equal driverUUID and deviceUUID).
bool share_opaque_fd(const vk::Capabilities& a, const vk::Capabilities& b) {
  return a.external_timeline_fd && b.external_timeline_fd &&
         std::memcmp(a.driver_uuid, b.driver_uuid, VK_UUID_SIZE) == 0 &&
         std::memcmp(a.device_uuid, b.device_uuid, VK_UUID_SIZE) == 0;
}

}  // namespace

StageLink::StageLink(vk::Device& from, vk::Device& to, bool host_only) : from_(from), to_(to) {
  const auto &a = from.caps(), &b = to.caps();
  if (host_only || !a.timeline_semaphore || !b.timeline_semaphore) return;  // today's path
  const bool same = &from == &to;
  if (same) memory_ = Memory::DeviceBuffer;
  else if (a.host_import && b.host_import) memory_ = Memory::SharedHost;
  else return;  // the host copies the rows, and waits for each stage to do so
  if (same) {
    order_ = Order::Timeline;
    signal_ = std::make_unique<vk::TimelineSemaphore>(from);
  } else if (share_opaque_fd(a, b)) {
    // Untested on lavapipe (Mesa has no VK_KHR_external_semaphore_fd there): one payload, exported and imported.
    order_ = Order::SharedTimeline;
    signal_ = std::make_unique<vk::TimelineSemaphore>(from, 0, true);
    wait_ = std::make_unique<vk::TimelineSemaphore>(vk::TimelineSemaphore::import_fd(to, signal_->export_fd()));
  } else {
    order_ = Order::HostRelay;
    signal_ = std::make_unique<vk::TimelineSemaphore>(from);
    wait_ = std::make_unique<vk::TimelineSemaphore>(to);
  }
}

bool StageLink::reserve(uint64_t bytes) {
  if (!chained() || (out_ && bytes <= bytes_)) return false;
  out_.reset();
  in_.reset();
  bytes_ = 0;
  if (memory_ == Memory::DeviceBuffer) {
    out_ = std::make_unique<vk::Buffer>(from_, bytes, vk::MemoryKind::Device, "stage_link");
  } else {
    // One host allocation, its start and size multiples of both devices' import alignment, imported into both.
    const uint64_t align = std::max<uint64_t>({from_.caps().min_imported_host_alignment,
                                               to_.caps().min_imported_host_alignment, 64});
    const uint64_t size = (std::max<uint64_t>(bytes, 16) + align - 1) / align * align;
    void* host = std::aligned_alloc(align, size);
    if (!host) throw OutOfDeviceMemory("stage link: no host memory for " + std::to_string(size) + " bytes");
    const std::shared_ptr<void> owner(host, std::free);
    auto from_memory = std::make_shared<const vk::ImportedMemory>(from_, host, size, owner, "stage_link");
    auto to_memory = std::make_shared<const vk::ImportedMemory>(to_, host, size, owner, "stage_link");
    out_ = std::make_unique<vk::Buffer>(from_, std::move(from_memory), 0, bytes, "stage_link.out");
    in_ = std::make_unique<vk::Buffer>(to_, std::move(to_memory), 0, bytes, "stage_link.in");
  }
  bytes_ = bytes;
  return true;
}

void StageLink::relay(uint64_t value) {
  if (order_ != Order::HostRelay) return;
  signal_->wait(value);
  wait_->signal(value);
}

void StageLink::release(uint64_t value) {
  if (order_ != Order::HostRelay || wait_->value() >= value) return;
  wait_->signal(value);
}

void StageChain::reset(const std::vector<vk::Device*>& devices, bool host_only) {
  links_.clear();
  done_.reset();
  for (size_t i = 0; i + 1 < devices.size(); ++i)
    links_.push_back(std::make_unique<StageLink>(*devices[i], *devices[i + 1], host_only));
  chained_ = !links_.empty() && std::all_of(links_.begin(), links_.end(), [](const auto& l) { return l->chained(); });
  if (chained_) done_ = std::make_unique<vk::TimelineSemaphore>(*devices.back());
}

std::vector<size_t> StageChain::reserve(uint64_t bytes) {
  std::vector<size_t> renewed;
  for (size_t i = 0; i < links_.size(); ++i)
    if (links_[i]->reserve(bytes)) renewed.push_back(i);
  return renewed;
}

uint32_t StageChain::run(const std::function<void(size_t)>& record,
                         const std::function<void(size_t, Semaphores, Semaphores)>& submit,
                         const std::function<void(size_t)>& abandon, const std::function<void(size_t)>& relayed) {
  if (!chained_) throw Error("a chained step over links that do not chain");
  const size_t n = links_.size() + 1;
  const uint64_t value = ++value_;
  uint32_t host_waits = 0;
  try {
    // Stage i runs while stage i + 1 is being recorded.
    for (size_t i = 0; i < n; ++i) {
      record(i);
      const vk::SemaphoreValue wait = i > 0 ? links_[i - 1]->wait(value) : vk::SemaphoreValue{};
      const vk::SemaphoreValue signal = i + 1 < n ? links_[i]->signal(value) : vk::SemaphoreValue{done_.get(), value};
      submit(i, std::span(&wait, i > 0 ? 1 : 0), std::span(&signal, 1));
    }
    for (size_t i = 0; i + 1 < n; ++i) {
      if (links_[i]->order() != StageLink::Order::HostRelay) continue;
      links_[i]->relay(value);
      ++host_waits;
      if (relayed) relayed(i);
    }
    done_->wait(value);
    ++host_waits;
  } catch (...) {
    for (auto& l : links_) l->release(value);  // no stage waits for a relay never made
    for (size_t i = 0; i < n; ++i) abandon(i);  // the caches as before the step
    throw;
  }
  return host_waits;
}

}  // namespace inferno::model
