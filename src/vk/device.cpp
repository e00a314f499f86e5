#include "vk/device.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>

#include "vk/buffer.hpp"
#include "vk/check.hpp"
#include "vk/cooperative_matrix.hpp"

namespace inferno::vk {

namespace {

std::set<std::string> device_extensions(VkPhysicalDevice pd) {
  uint32_t n = 0;
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> props(n);
  vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, props.data());
  std::set<std::string> names;
  for (auto& p : props) names.insert(p.extensionName);
  return names;
}

std::string type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

uint32_t compute_queue_family(VkPhysicalDevice pd, bool* has_timestamps) {
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, nullptr);
  std::vector<VkQueueFamilyProperties> families(n);
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, families.data());
  // Prefer a compute queue without graphics (dedicated compute engines), else any compute queue.
  int best = -1;
  for (uint32_t i = 0; i < n; ++i) {
    if (!(families[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (best < 0 || !(families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) best = int(i);
  }
  if (best < 0) throw Error("Vulkan: the device has no compute queue");
  // A dedicated compute family without timestamps is worse than a general one with them.
  if (families[best].timestampValidBits == 0) {
    for (uint32_t i = 0; i < n; ++i)
      if ((families[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && families[i].timestampValidBits) best = int(i);
  }
  *has_timestamps = families[best].timestampValidBits != 0;
  return uint32_t(best);
}

const char* component_name(VkComponentTypeKHR t) {
  // By value (the registry's), so that headers with or without the newer types (bfloat16) agree.
  switch (int(t)) {
    case 0: return "f16";
    case 1: return "f32";
    case 2: return "f64";
    case 3: return "i8";
    case 4: return "i16";
    case 5: return "i32";
    case 6: return "i64";
    case 7: return "u8";
    case 8: return "u16";
    case 9: return "u32";
    case 10: return "u64";
    case 1000141000: return "bf16";
    default: return "other";
  }
}

// The shapes VK_KHR_cooperative_matrix offers, through the instance (the entry point is an extension's).
void probe_cooperative_matrix(VkInstance instance, VkPhysicalDevice pd, Capabilities& c) {
  auto get = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR>(
      vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"));
  if (!get) return;
  uint32_t n = 0;
  if (get(pd, &n, nullptr) != VK_SUCCESS || n == 0) return;
  std::vector<VkCooperativeMatrixPropertiesKHR> props(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR});
  if (get(pd, &n, props.data()) != VK_SUCCESS) return;
  props.resize(n);
  for (const auto& p : props) {
    c.coopmat_shapes.push_back(std::to_string(p.MSize) + "x" + std::to_string(p.NSize) + "x" + std::to_string(p.KSize) +
                               " " + component_name(p.AType) + "*" + component_name(p.BType) + "+" +
                               component_name(p.CType) + "->" + component_name(p.ResultType) +
                               (p.scope == VK_SCOPE_SUBGROUP_KHR ? "" : " (not subgroup scope)"));
    if (p.scope != VK_SCOPE_SUBGROUP_KHR || p.MSize > 64 || p.NSize > 64 || p.KSize > 64) continue;
    const bool f16 = p.AType == VK_COMPONENT_TYPE_FLOAT16_KHR && p.BType == VK_COMPONENT_TYPE_FLOAT16_KHR &&
                     p.CType == VK_COMPONENT_TYPE_FLOAT32_KHR && p.ResultType == VK_COMPONENT_TYPE_FLOAT32_KHR;
    const bool i8 = p.AType == VK_COMPONENT_TYPE_SINT8_KHR && p.BType == VK_COMPONENT_TYPE_SINT8_KHR &&
                    p.CType == VK_COMPONENT_TYPE_SINT32_KHR && p.ResultType == VK_COMPONENT_TYPE_SINT32_KHR &&
                    !p.saturatingAccumulation;
    if (!f16 && !i8) continue;
    // 16×16 fragments where offered (the kernels' tiles are 4 fragments a side), else the largest.
    uint32_t* best = f16 ? c.coopmat_f16_shape : c.coopmat_i8_shape;
    const auto volume = [](uint32_t m, uint32_t n, uint32_t k) { return uint64_t(m) * n * k; };
    const bool square16 = p.MSize == 16 && p.NSize == 16;
    const bool best16 = best[0] == 16 && best[1] == 16;
    if ((square16 && (!best16 || p.KSize > best[2])) ||
        (!best16 && volume(p.MSize, p.NSize, p.KSize) > volume(best[0], best[1], best[2]))) {
      best[0] = p.MSize;
      best[1] = p.NSize;
      best[2] = p.KSize;
    }
  }
}

}  // namespace

Capabilities probe_capabilities(VkInstance instance, VkPhysicalDevice pd) {
  Capabilities c;
  const auto ext = device_extensions(pd);

  VkPhysicalDeviceSubgroupSizeControlProperties sizectl{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
  VkPhysicalDeviceSubgroupProperties subgroup{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, &sizectl};
  VkPhysicalDeviceDriverProperties driver{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, &subgroup};
  VkPhysicalDeviceProperties2 props{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &driver};
  vkGetPhysicalDeviceProperties2(pd, &props);
  const auto& p = props.properties;
  c.name = p.deviceName;
  c.type = type_name(p.deviceType);
  c.vendor_id = p.vendorID;
  c.device_id = p.deviceID;
  c.api_version = p.apiVersion;
  c.driver = std::string(driver.driverName) + " " + driver.driverInfo;
  c.max_storage_buffer_range = p.limits.maxStorageBufferRange;
  c.min_storage_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
  c.max_compute_shared_memory = p.limits.maxComputeSharedMemorySize;
  c.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
  for (int i = 0; i < 3; ++i) c.max_workgroup_count[i] = p.limits.maxComputeWorkGroupCount[i];
  c.max_push_constants = p.limits.maxPushConstantsSize;
  c.subgroup_size = subgroup.subgroupSize;
  c.subgroup_arithmetic = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                          (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
  c.subgroup_shuffle = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                       (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
  c.subgroup_ballot = (subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                      (subgroup.supportedOperations & VK_SUBGROUP_FEATURE_BALLOT_BIT);
  c.min_subgroup_size = sizectl.minSubgroupSize ? sizectl.minSubgroupSize : c.subgroup_size;
  c.max_subgroup_size = sizectl.maxSubgroupSize ? sizectl.maxSubgroupSize : c.subgroup_size;

  VkPhysicalDeviceMaintenance3Properties m3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
  VkPhysicalDeviceProperties2 props2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &m3};
  vkGetPhysicalDeviceProperties2(pd, &props2);
  c.max_memory_allocation_size = m3.maxMemoryAllocationSize;

  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, &f12};
  if (c.api_version >= VK_API_VERSION_1_3) f12.pNext = &f13;
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f11};
  vkGetPhysicalDeviceFeatures2(pd, &features);
  c.float16 = f12.shaderFloat16;
  c.int8 = f12.shaderInt8;
  c.int64 = features.features.shaderInt64;
  c.storage_16bit = f11.storageBuffer16BitAccess;
  c.storage_8bit = f12.storageBuffer8BitAccess;
  c.subgroup_size_control = f13.subgroupSizeControl && f13.computeFullSubgroups;
  c.integer_dot_product = f13.shaderIntegerDotProduct || ext.count("VK_KHR_shader_integer_dot_product");
  if (c.integer_dot_product) {
    VkPhysicalDeviceShaderIntegerDotProductProperties dot{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES};
    VkPhysicalDeviceProperties2 props3{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &dot};
    vkGetPhysicalDeviceProperties2(pd, &props3);
    c.integer_dot_accelerated = dot.integerDotProduct4x8BitPackedSignedAccelerated;
  }
  c.cooperative_matrix = ext.count("VK_KHR_cooperative_matrix") > 0;
  if (c.cooperative_matrix) probe_cooperative_matrix(instance, pd, c);
  c.vulkan_memory_model = f12.vulkanMemoryModel;
  c.bfloat16 = ext.count("VK_KHR_shader_bfloat16") > 0;

  if (ext.count(VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME)) {
    VkPhysicalDeviceExternalMemoryHostPropertiesEXT host{
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
    VkPhysicalDeviceProperties2 props4{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &host};
    vkGetPhysicalDeviceProperties2(pd, &props4);
    c.min_imported_host_alignment = host.minImportedHostPointerAlignment;
    c.host_import = c.min_imported_host_alignment > 0;
  }

  c.timeline_semaphore = f12.timelineSemaphore;
  VkPhysicalDeviceIDProperties ids{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
  VkPhysicalDeviceProperties2 props5{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &ids};
  vkGetPhysicalDeviceProperties2(pd, &props5);
  std::memcpy(c.driver_uuid, ids.driverUUID, VK_UUID_SIZE);
  std::memcpy(c.device_uuid, ids.deviceUUID, VK_UUID_SIZE);
  if (c.timeline_semaphore && ext.count(VK_KHR_EXTERNAL_SEMAPHORE_FD_EXTENSION_NAME)) {
    // Whether a timeline semaphore (the type chained: binary ones may differ) exports and imports as an OPAQUE_FD.
    VkSemaphoreTypeCreateInfo type{VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkPhysicalDeviceExternalSemaphoreInfo info{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_SEMAPHORE_INFO, &type};
    info.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_OPAQUE_FD_BIT;
    VkExternalSemaphoreProperties external{VK_STRUCTURE_TYPE_EXTERNAL_SEMAPHORE_PROPERTIES};
    vkGetPhysicalDeviceExternalSemaphoreProperties(pd, &info, &external);
    const VkExternalSemaphoreFeatureFlags both =
        VK_EXTERNAL_SEMAPHORE_FEATURE_EXPORTABLE_BIT | VK_EXTERNAL_SEMAPHORE_FEATURE_IMPORTABLE_BIT;
    c.external_timeline_fd = (external.externalSemaphoreFeatures & both) == both;
  }

  bool timestamps = false;
  compute_queue_family(pd, &timestamps);
  c.timestamp_period_ns = timestamps ? p.limits.timestampPeriod : 0.f;

  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  const bool has_budget = ext.count(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME) > 0;
  VkPhysicalDeviceMemoryProperties2 mem{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                        has_budget ? &budget : nullptr};
  vkGetPhysicalDeviceMemoryProperties2(pd, &mem);
  c.unified_memory = true;
  for (uint32_t t = 0; t < mem.memoryProperties.memoryTypeCount; ++t) {
    const auto flags = mem.memoryProperties.memoryTypes[t].propertyFlags;
    if ((flags & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) && !(flags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT))
      c.unified_memory = false;
  }
  for (uint32_t h = 0; h < mem.memoryProperties.memoryHeapCount; ++h) {
    const auto& heap = mem.memoryProperties.memoryHeaps[h];
    c.heap_sizes.push_back(heap.size);
    if (heap.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) {
      c.device_local_bytes += heap.size;
      c.budget_bytes += has_budget ? budget.heapBudget[h] : heap.size;
    }
  }
  return c;
}

DeviceClass device_class(const Capabilities& caps) {
  const char* env = std::getenv("INFERNO_DEVICE_CLASS");
  const std::string v = env ? env : "";
  if (v == "gpu") return DeviceClass::Gpu;
  if (v == "cpu") return DeviceClass::Cpu;
  if (!v.empty()) throw Error("INFERNO_DEVICE_CLASS=" + v + ": expected gpu or cpu");
  return caps.type == "cpu" ? DeviceClass::Cpu : DeviceClass::Gpu;
}

namespace {
// INFERNO_DEVICE_MEMORY_LIMIT=INDEX:BYTES[,INDEX:BYTES...]: the limit for device `index`, 0 for none.
uint64_t memory_limit_from_env(int index) {
  const char* env = std::getenv("INFERNO_DEVICE_MEMORY_LIMIT");
  if (!env || !*env) return 0;
  const std::string text = env;
  uint64_t limit = 0;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t colon = item.find(':');
    char* end = nullptr;
    const long long device = colon == std::string::npos ? -1 : std::strtoll(item.c_str(), &end, 10);
    const bool device_ok = colon != std::string::npos && end == item.c_str() + colon && device >= 0;
    const std::string bytes_text = colon == std::string::npos ? "" : item.substr(colon + 1);
    const unsigned long long bytes = bytes_text.empty() ? 0 : std::strtoull(bytes_text.c_str(), &end, 10);
    if (!device_ok || bytes_text.empty() || bytes_text.find_first_not_of("0123456789") != std::string::npos)
      throw Error("INFERNO_DEVICE_MEMORY_LIMIT=" + text + ": expected INDEX:BYTES[,INDEX:BYTES...]");
    if (device == index) limit = bytes;
    start = comma + 1;
  }
  return limit;
}
}  // namespace

void Device::check_room(uint64_t bytes, const std::string& what) const {
  if (memory_limit_ == 0 || allocated_bytes() + bytes <= memory_limit_) return;
  throw OutOfDeviceMemory("out of device memory on " + label() + ": " + std::to_string(bytes) + " bytes for '" + what +
                          "' with " + std::to_string(allocated_bytes()) + " bytes already held (limit " +
                          std::to_string(memory_limit_) + " bytes, INFERNO_DEVICE_MEMORY_LIMIT)");
}

const char* device_class_name(DeviceClass c) { return c == DeviceClass::Cpu ? "cpu" : "gpu"; }

int device_preference(const Capabilities& c) {
  if (c.type == "discrete") return 4;
  if (c.type == "integrated") return 3;
  if (c.type == "virtual") return 2;
  if (c.type == "cpu") return 1;
  return 0;
}

int preferred_device(const std::vector<Capabilities>& devices) {
  int chosen = -1;
  for (size_t i = 0; i < devices.size(); ++i) {
    if (devices[i].api_version < VK_API_VERSION_1_2) continue;  // inferno needs Vulkan 1.2
    if (chosen < 0 || device_preference(devices[i]) > device_preference(devices[size_t(chosen)])) chosen = int(i);
  }
  return chosen;
}

DeviceListing list_devices(const Instance& instance) {
  DeviceListing listing;
  for (VkPhysicalDevice pd : instance.physical_devices()) listing.devices.push_back(probe_capabilities(instance.handle(), pd));
  listing.chosen = preferred_device(listing.devices);
  return listing;
}

Device::Device(std::shared_ptr<Instance> instance, int index) : instance_(std::move(instance)) {
  const auto physicals = instance_->physical_devices();
  if (physicals.empty()) throw Error("Vulkan: no devices found (install mesa-vulkan-drivers for lavapipe, or a GPU driver)");
  if (index < 0) {
    index = list_devices(*instance_).chosen;
    if (index < 0) throw Error("Vulkan: no device supports Vulkan 1.2, which inferno needs");
  } else if (index >= int(physicals.size())) {
    throw Error("--device " + std::to_string(index) + ": no such Vulkan device (there are " +
                std::to_string(physicals.size()) + "; see `inferno devices`)");
  }
  index_ = index;
  physical_ = physicals[size_t(index)];
  caps_ = probe_capabilities(instance_->handle(), physical_);
  class_ = vk::device_class(caps_);
  memory_limit_ = memory_limit_from_env(index_);
  if (caps_.api_version < VK_API_VERSION_1_2)
    throw Error("Vulkan: device " + std::to_string(index) + " (" + caps_.name + ") supports only Vulkan " +
                std::to_string(VK_API_VERSION_MAJOR(caps_.api_version)) + "." +
                std::to_string(VK_API_VERSION_MINOR(caps_.api_version)) + "; inferno needs 1.2");
  vkGetPhysicalDeviceMemoryProperties(physical_, &memory_);

  bool timestamps = false;
  queue_family_ = compute_queue_family(physical_, &timestamps);
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qi.queueFamilyIndex = queue_family_;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;

  // Enable exactly the optional features that the device has and the kernels may use.
  VkPhysicalDeviceVulkan13Features f13{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
  VkPhysicalDeviceVulkan12Features f12{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
  VkPhysicalDeviceVulkan11Features f11{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, &f12};
  VkPhysicalDeviceFeatures2 features{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f11};
  f11.storageBuffer16BitAccess = caps_.storage_16bit;
  f12.storageBuffer8BitAccess = caps_.storage_8bit;
  f12.shaderFloat16 = caps_.float16;
  f12.shaderInt8 = caps_.int8;
  f12.timelineSemaphore = caps_.timeline_semaphore;
  features.features.shaderInt64 = caps_.int64;
  std::vector<const char*> extensions;
  if (caps_.api_version >= VK_API_VERSION_1_3) {
    f12.pNext = &f13;
    f13.subgroupSizeControl = caps_.subgroup_size_control;
    f13.computeFullSubgroups = caps_.subgroup_size_control;
    f13.shaderIntegerDotProduct = caps_.integer_dot_product;
  }
  const auto ext = device_extensions(physical_);
  if (ext.count(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME)) extensions.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  // Zero-copy loading imports the mapped checkpoint as device memory (VK_KHR_external_memory is core in 1.1).
  if (caps_.host_import) extensions.push_back(VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
  // The stages of a split model order their submissions with timeline semaphores shared between devices.
  if (caps_.external_timeline_fd) extensions.push_back(VK_KHR_EXTERNAL_SEMAPHORE_FD_EXTENSION_NAME);
  // Cooperative matrices (the matrix-core prefill kernel) need the extension, its feature, f16 arithmetic and the
  // Vulkan memory model, which SPIR-V's cooperative-matrix loads and stores are declared under.
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR coopmat{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR};
  f12.vulkanMemoryModel = caps_.vulkan_memory_model;
  if (!caps_.float16) std::fill(std::begin(caps_.coopmat_f16_shape), std::end(caps_.coopmat_f16_shape), 0u);
  if (!caps_.int8) std::fill(std::begin(caps_.coopmat_i8_shape), std::end(caps_.coopmat_i8_shape), 0u);
  // The kernels' subgroups each own fragments: their size must be the one the pipeline is made for, fixed by the
  // device or asked of it.
  const bool subgroup_fixed = caps_.min_subgroup_size == caps_.max_subgroup_size || caps_.subgroup_size_control;
  if ((caps_.coopmat_f16_shape[0] || caps_.coopmat_i8_shape[0]) && caps_.vulkan_memory_model && subgroup_fixed) {
    extensions.push_back(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME);
    coopmat.cooperativeMatrix = VK_TRUE;
    coopmat.pNext = features.pNext;
    features.pNext = &coopmat;
  } else {  // what this device object can run
    std::fill(std::begin(caps_.coopmat_f16_shape), std::end(caps_.coopmat_f16_shape), 0u);
    std::fill(std::begin(caps_.coopmat_i8_shape), std::end(caps_.coopmat_i8_shape), 0u);
  }

  VkDeviceCreateInfo di{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &features};
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  di.enabledExtensionCount = uint32_t(extensions.size());
  di.ppEnabledExtensionNames = extensions.data();
  check(vkCreateDevice(physical_, &di, nullptr, &device_), "vkCreateDevice");
  vkGetDeviceQueue(device_, queue_family_, 0, &queue_);
  if (caps_.host_import) {
    host_pointer_properties_ = reinterpret_cast<PFN_vkGetMemoryHostPointerPropertiesEXT>(
        vkGetDeviceProcAddr(device_, "vkGetMemoryHostPointerPropertiesEXT"));
    caps_.host_import = host_pointer_properties_ != nullptr;
  }
  if (caps_.external_timeline_fd) {
    get_semaphore_fd_ = reinterpret_cast<PFN_vkGetSemaphoreFdKHR>(vkGetDeviceProcAddr(device_, "vkGetSemaphoreFdKHR"));
    import_semaphore_fd_ =
        reinterpret_cast<PFN_vkImportSemaphoreFdKHR>(vkGetDeviceProcAddr(device_, "vkImportSemaphoreFdKHR"));
    caps_.external_timeline_fd = get_semaphore_fd_ && import_semaphore_fd_;
  }

  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = queue_family_;
  check(vkCreateCommandPool(device_, &pi, nullptr, &command_pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = command_pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  check(vkAllocateCommandBuffers(device_, &ai, &one_shot_), "vkAllocateCommandBuffers");
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  check(vkCreateFence(device_, &fi, nullptr, &fence_), "vkCreateFence");
  VkPipelineCacheCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  check(vkCreatePipelineCache(device_, &ci, nullptr, &pipeline_cache_), "vkCreatePipelineCache");
  pipelines_ = std::make_unique<PipelineCache>(*this);
}

void Device::wait_idle() {
  std::lock_guard lock(queue_mutex_);
  check(vkQueueWaitIdle(queue_), "vkQueueWaitIdle");
}

Device::~Device() {
  if (!device_) return;
  vkDeviceWaitIdle(device_);
  staging_.reset();
  pipelines_.reset();
  vkDestroyPipelineCache(device_, pipeline_cache_, nullptr);
  vkDestroyFence(device_, fence_, nullptr);
  vkDestroyCommandPool(device_, command_pool_, nullptr);
  vkDestroyDevice(device_, nullptr);
}

uint32_t Device::memory_type(uint32_t type_bits, VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred) const {
  int best = -1, best_score = -1;
  for (uint32_t i = 0; i < memory_.memoryTypeCount; ++i) {
    if (!(type_bits & (1u << i))) continue;
    const auto flags = memory_.memoryTypes[i].propertyFlags;
    if ((flags & required) != required) continue;
    const int score = __builtin_popcount(flags & preferred);
    if (score > best_score) best = int(i), best_score = score;
  }
  if (best < 0) throw Error("Vulkan: no suitable memory type on device " + caps_.name);
  return uint32_t(best);
}

StagingRing& Device::staging() {
  if (!staging_) staging_ = std::make_unique<StagingRing>(*this);
  return *staging_;
}

void Device::submit_locked(VkCommandBuffer cb, VkFence fence) {
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  check(vkQueueSubmit(queue_, 1, &si, fence), "vkQueueSubmit");
  submissions_++;
}

void Device::submit(VkCommandBuffer cb, VkFence fence) {
  std::lock_guard lock(queue_mutex_);
  submit_locked(cb, fence);
}

void Device::submit(const VkSubmitInfo& info, VkFence fence) {
  std::lock_guard lock(queue_mutex_);
  check(vkQueueSubmit(queue_, 1, &info, fence), "vkQueueSubmit");
  submissions_++;
}

void Device::wait_for(VkFence fence) {
  // A generous bound: a hung GPU job becomes an error rather than a hang forever.
  const VkResult r = vkWaitForFences(device_, 1, &fence, VK_TRUE, uint64_t(600) * 1000000000ull);
  if (r == VK_TIMEOUT) throw Error("Vulkan: a GPU job did not finish within 600 s");
  check(r, "vkWaitForFences");
}

void Device::run_once(const std::function<void(VkCommandBuffer)>& record) {
  std::lock_guard pool_lock(command_pool_mutex_);
  check(vkResetCommandBuffer(one_shot_, 0), "vkResetCommandBuffer");
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(vkBeginCommandBuffer(one_shot_, &bi), "vkBeginCommandBuffer");
  record(one_shot_);
  check(vkEndCommandBuffer(one_shot_), "vkEndCommandBuffer");
  check(vkResetFences(device_, 1, &fence_), "vkResetFences");
  submit(one_shot_, fence_);
  wait_for(fence_);  // the pool lock is held until the job is done: the next one resets this command buffer
}

}  // namespace inferno::vk
