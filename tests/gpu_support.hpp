#pragma once
// One Vulkan device for a whole test executable, with the validation layer on; every test case that uses it fails
// on any validation error raised meanwhile.
#include <memory>
#include <vector>

#include "test_support.hpp"
#include "util/half.hpp"
#include "vk/buffer.hpp"
#include "vk/device.hpp"
#include "vk/instance.hpp"

namespace inferno::testing {

inline vk::Device& test_device() {
  static std::shared_ptr<vk::Instance> instance = std::make_shared<vk::Instance>(vk::InstanceOptions{.validation = true});
  static vk::Device device(instance, -1);
  return device;
}

// Checks at the end of a test case that the validation layer stayed silent.
struct ValidationGuard {
  uint64_t before = test_device().instance().validation_errors();
  ~ValidationGuard() {
    const uint64_t after = test_device().instance().validation_errors();
    CHECK_MESSAGE(after == before, "Vulkan validation errors: " << test_device().instance().last_validation_error());
  }
};

// Every allocation the test cases made on the shared device has been freed again. Run last in each GPU suite by
// the test case of tests/zz_device_leaks.cpp.
inline void check_no_device_memory_leaked() {
  CHECK(test_device().live_allocations() == 0);
  CHECK(test_device().allocated_bytes() == 0);
}

inline vk::Buffer device_buffer_from(const void* data, uint64_t bytes, const char* name = "test") {
  vk::Buffer b(test_device(), bytes, vk::MemoryKind::Device, name);
  vk::upload(test_device(), b, 0, data, bytes);
  return b;
}
template <class T>
vk::Buffer device_buffer(const std::vector<T>& v, const char* name = "test") {
  return device_buffer_from(v.data(), v.size() * sizeof(T), name);
}
template <class T>
std::vector<T> read_back(const vk::Buffer& b, size_t count, uint64_t offset_bytes = 0) {
  std::vector<T> v(count);
  vk::download(test_device(), b, offset_bytes, v.data(), count * sizeof(T));
  return v;
}

}  // namespace inferno::testing
