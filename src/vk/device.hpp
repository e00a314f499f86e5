#pragma once
// A Vulkan device chosen for compute: its capabilities, its queue, and an account of the memory it holds.
#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vk/instance.hpp"
#include "vk/pipeline.hpp"

namespace inferno::vk {

class StagingRing;

struct Capabilities {
  std::string name;
  std::string type;  // "discrete", "integrated", "virtual", "cpu", "other"
  uint32_t vendor_id = 0, device_id = 0, api_version = 0;
  std::string driver;  // driver name and info
  bool float16 = false;          // shaderFloat16 arithmetic
  bool int8 = false;             // shaderInt8 arithmetic
  bool int64 = false;
  bool storage_16bit = false;    // 16-bit loads/stores from storage buffers
  bool storage_8bit = false;
  bool bfloat16 = false;         // VK_KHR_shader_bfloat16
  bool cooperative_matrix = false;  // VK_KHR_cooperative_matrix
  // The fragment shape (M, N, K) of f16 · f16 + f32 -> f32 cooperative matrices at subgroup scope that the
  // matrix-core prefill kernel (linear_matmul_coopmat.comp) uses: 16×16×16 where offered, else the largest offered;
  // all 0 when there is none, or when this device object cannot run them (no f16 arithmetic, no Vulkan memory
  // model, or a subgroup size that varies and cannot be fixed).
  uint32_t coopmat_f16_shape[3] = {0, 0, 0};
  // Likewise for int8 · int8 + int32 -> int32 (the w8a8 prefill kernel, linear_w8a8_matmul_coopmat.comp); it also
  // needs shaderInt8.
  uint32_t coopmat_i8_shape[3] = {0, 0, 0};
  std::vector<std::string> coopmat_shapes;  // every shape offered, "MxNxK A*B+C->R scope" (for `inferno devices`)
  bool integer_dot_product = false;  // VK_KHR_shader_integer_dot_product (core in 1.3)
  bool integer_dot_accelerated = false;  // 4x8-bit packed signed dot product is accelerated
  bool vulkan_memory_model = false;  // Vulkan 1.2's vulkanMemoryModel feature
  bool subgroup_size_control = false;
  uint32_t subgroup_size = 0, min_subgroup_size = 0, max_subgroup_size = 0;
  bool subgroup_arithmetic = false, subgroup_shuffle = false;
  bool subgroup_ballot = false;  // subgroupBroadcast and friends in compute shaders
  uint64_t max_storage_buffer_range = 0;
  uint64_t min_storage_offset_alignment = 16;  // a binding's offset must be a multiple of it
  uint64_t max_memory_allocation_size = 0;
  // VK_EXT_external_memory_host: host memory (a file mapping) can become device memory in place, at addresses and
  // sizes that are multiples of min_imported_host_alignment (minImportedHostPointerAlignment).
  bool host_import = false;
  uint64_t min_imported_host_alignment = 0;
  // Every device-local memory type is host-visible: host and device share memory (integrated GPUs, CPU drivers).
  bool unified_memory = false;
  // Vulkan 1.2's timelineSemaphore feature (enabled where present), and VK_KHR_external_semaphore_fd with timeline
  // semaphores that export and import as OPAQUE_FD; such a payload is shared only between devices of equal
  // driver_uuid and device_uuid (VkPhysicalDeviceIDProperties).
  bool timeline_semaphore = false;
  bool external_timeline_fd = false;
  uint8_t driver_uuid[VK_UUID_SIZE] = {}, device_uuid[VK_UUID_SIZE] = {};
  uint32_t max_compute_shared_memory = 0, max_workgroup_invocations = 0;
  uint32_t max_workgroup_count[3] = {};
  uint32_t max_push_constants = 0;
  float timestamp_period_ns = 0;  // 0 when the queue has no timestamps
  uint64_t device_local_bytes = 0;  // sum of device-local heaps
  uint64_t budget_bytes = 0;        // VK_EXT_memory_budget where available, else device_local_bytes
  std::vector<uint64_t> heap_sizes;
};

Capabilities probe_capabilities(VkInstance, VkPhysicalDevice);
// Higher is preferred: discrete > integrated > virtual > CPU.
int device_preference(const Capabilities&);
// The index a default run takes among these devices: the most preferred that has Vulkan 1.2, the first of equals;
// -1 when none has 1.2.
int preferred_device(const std::vector<Capabilities>& devices);

// The class of device that kernel choices are made for: CPU drivers (lavapipe, SwiftShader) run a workgroup's
// invocations as SIMD lanes on a few cores and want other kernels and splits than GPUs do. Every choice that
// depends on it asks Device::device_class(), which is the device's own type unless INFERNO_DEVICE_CLASS=gpu|cpu
// says otherwise (tests run the GPU choices on lavapipe). Anything else there is an error naming the variable.
enum class DeviceClass { Gpu, Cpu };
DeviceClass device_class(const Capabilities& caps);
const char* device_class_name(DeviceClass c);

// Listing without opening a device (for `inferno devices` and `inferno info`).
struct DeviceListing {
  std::vector<Capabilities> devices;
  int chosen = -1;  // the device a default run would take
};
DeviceListing list_devices(const Instance&);

class Device {
 public:
  // index -1: the preferred device. Throws naming the index when it does not exist.
  Device(std::shared_ptr<Instance> instance, int index = -1);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkDevice handle() const { return device_; }
  VkPhysicalDevice physical() const { return physical_; }
  VkQueue queue() const { return queue_; }
  uint32_t queue_family() const { return queue_family_; }
  const Capabilities& caps() const { return caps_; }
  // What kernel choices are made for (see vk::device_class): read once, when the device is opened.
  DeviceClass device_class() const { return class_; }
  bool cpu_class() const { return class_ == DeviceClass::Cpu; }
  int index() const { return index_; }
  // "device 1 (llvmpipe ...)": how errors name this device when a model is split over several.
  std::string label() const { return "device " + std::to_string(index_) + " (" + caps_.name + ")"; }
  // Throws OutOfDeviceMemory naming this device and `what` when `bytes` more would pass its memory limit: none
  // unless INFERNO_DEVICE_MEMORY_LIMIT=INDEX:BYTES[,INDEX:BYTES...] sets one (tests: a device that runs out).
  void check_room(uint64_t bytes, const std::string& what) const;
  Instance& instance() { return *instance_; }
  VkPipelineCache pipeline_cache() const { return pipeline_cache_; }

  // Memory type for a buffer: device-local for weights and activations, host-visible for staging/readback.
  uint32_t memory_type(uint32_t type_bits, VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred) const;

  // What this device holds right now, through inferno's own allocations.
  uint64_t allocated_bytes() const { return allocated_bytes_.load(); }
  // The part of allocated_bytes() that is imported host memory (weights read in place from a file mapping, and the
  // host memory the stages of a split model share).
  uint64_t imported_bytes() const { return imported_bytes_.load(); }
  void note_import(int64_t bytes) { imported_bytes_ += uint64_t(bytes); }
  // VK_EXT_external_memory_host's entry point (null unless caps().host_import).
  PFN_vkGetMemoryHostPointerPropertiesEXT host_pointer_properties() const { return host_pointer_properties_; }
  // VK_KHR_external_semaphore_fd's entry points (null unless caps().external_timeline_fd).
  PFN_vkGetSemaphoreFdKHR get_semaphore_fd() const { return get_semaphore_fd_; }
  PFN_vkImportSemaphoreFdKHR import_semaphore_fd() const { return import_semaphore_fd_; }
  // The memory type index's property flags.
  VkMemoryPropertyFlags memory_flags(uint32_t type) const { return memory_.memoryTypes[type].propertyFlags; }
  uint64_t live_allocations() const { return live_allocations_.load(); }
  void note_allocation(int64_t bytes, int count) {
    allocated_bytes_ += uint64_t(bytes);
    live_allocations_ += uint64_t(count);
  }

  // Thread-safety: every member function may be called from any thread. The queue, the device's own command pool
  // and its staging ring each have a lock here, held inside these functions; pipelines are made under the
  // PipelineCache's. What is not the Device's is its owner's to keep to one thread at a time: a Recorder (which has
  // its own command pool, so recorders of one device record in parallel) and a Buffer's contents.

  // Records a small job with `record` into the device's one command buffer for such jobs (begun and ended here),
  // submits it and waits: used by downloads. Jobs from several threads run one after the other.
  void run_once(const std::function<void(VkCommandBuffer)>& record);
  uint64_t submissions() const { return submissions_.load(); }
  void wait_idle();
  // Submits without waiting; `fence` is signalled when the work is done.
  void submit(VkCommandBuffer cb, VkFence fence);
  // The same for a submission with semaphores (a VkTimelineSemaphoreSubmitInfo chained to `info`).
  void submit(const VkSubmitInfo& info, VkFence fence);
  // Waits for a fence, at most 600 s (then an error: a hung job is not waited for forever).
  void wait_for(VkFence fence);
  // The staging ring of uploads to memory the host cannot see (made on first use), and the lock its users hold.
  StagingRing& staging();
  std::mutex& staging_mutex() { return staging_mutex_; }
  PipelineCache& pipelines() { return *pipelines_; }

 private:
  std::shared_ptr<Instance> instance_;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  uint32_t queue_family_ = 0;
  // The device's own command pool and its one command buffer (run_once), with the lock that guards them: Vulkan
  // requires a pool and its command buffers to be used by one thread at a time.
  std::mutex command_pool_mutex_;
  VkCommandPool command_pool_ = VK_NULL_HANDLE;
  VkCommandBuffer one_shot_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties memory_{};
  Capabilities caps_;
  DeviceClass class_ = DeviceClass::Gpu;
  int index_ = -1;
  uint64_t memory_limit_ = 0;  // 0: none (INFERNO_DEVICE_MEMORY_LIMIT)
  std::atomic<uint64_t> allocated_bytes_{0}, live_allocations_{0}, submissions_{0}, imported_bytes_{0};
  PFN_vkGetMemoryHostPointerPropertiesEXT host_pointer_properties_ = nullptr;
  PFN_vkGetSemaphoreFdKHR get_semaphore_fd_ = nullptr;
  PFN_vkImportSemaphoreFdKHR import_semaphore_fd_ = nullptr;
  std::mutex queue_mutex_;
  std::unique_ptr<PipelineCache> pipelines_;
  void submit_locked(VkCommandBuffer cb, VkFence fence);  // queue_mutex_ held
  std::mutex staging_mutex_;
  std::unique_ptr<StagingRing> staging_;
};

}  // namespace inferno::vk
