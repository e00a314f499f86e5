#include "kernels/bandwidth.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/fill.hpp"
#include "kernels/shader_registry.hpp"
#include "vk/recorder.hpp"

namespace inferno::kernels {

BandwidthResult measure_read_bandwidth(vk::Device& device, uint64_t bytes, int passes) {
  const auto& caps = device.caps();
  // One binding's worth at most, and no more than an eighth of the device, so the measurement fits anywhere.
  bytes = std::min({bytes, caps.max_storage_buffer_range, caps.max_memory_allocation_size, caps.budget_bytes / 8});
  bytes = std::max<uint64_t>(bytes / 16 * 16, 16);
  constexpr uint32_t kGroup = 256, kGroups = 2048;
  vk::Buffer data(device, bytes, vk::MemoryKind::Device, "bandwidth_data");
  vk::Buffer folded(device, kGroups * 4, vk::MemoryKind::Device, "bandwidth_out");
  const auto& p = pipeline(device, "bandwidth", {kGroup});
  const struct {
    uint32_t count;
  } push{uint32_t(bytes / 16)};

  vk::Recorder rec(device, true);
  rec.begin();
  record_fill(device, rec, data, 0, bytes / 4, 1.0f);  // touch every page once (drivers may allocate lazily)
  rec.submit_and_wait();
  std::vector<double> seconds;
  bool gpu_timed = false;
  for (int i = 0; i < passes + 1; ++i) {  // the first pass warms up and is dropped
    rec.begin();
    rec.dispatch(p, {vk::in(data), vk::out(folded)}, push, kGroups);
    const auto t0 = std::chrono::steady_clock::now();
    rec.submit_and_wait();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto t = rec.timings();
    gpu_timed = !t.empty();
    if (i > 0) seconds.push_back(gpu_timed ? t.back().ns * 1e-9 : wall);
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  return {median > 0 ? double(bytes) / median : 0, bytes, gpu_timed};
}

FmaRateResult measure_fma_rate(vk::Device& device, double min_seconds, int passes) {
  constexpr uint32_t kGroup = 256, kGroups = 1024, kChains = 32;  // kChains: the chains of fma_rate.comp
  vk::Buffer folded(device, uint64_t(kGroup) * kGroups * 4, vk::MemoryKind::Device, "fma_rate_out");
  const auto& p = pipeline(device, "fma_rate", {kGroup});
  struct {
    uint32_t iterations;
    float scale;
  } push{16, 0.9999f};
  vk::Recorder rec(device, true);
  bool gpu_timed = false;
  auto pass = [&] {
    rec.begin();
    rec.dispatch(p, {vk::out(folded)}, push, kGroups);
    const auto t0 = std::chrono::steady_clock::now();
    rec.submit_and_wait();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto t = rec.timings();
    gpu_timed = !t.empty();
    return gpu_timed ? t.back().ns * 1e-9 : wall;
  };
  pass();  // compiles and warms up
  // Doubling until one pass is long enough to time (a pass of 2^24 iterations on anything but a stalled device is).
  while (pass() < min_seconds && push.iterations < (1u << 24)) push.iterations *= 2;
  std::vector<double> seconds;
  for (int i = 0; i < passes; ++i) seconds.push_back(pass());
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const uint64_t fma = uint64_t(kGroup) * kGroups * kChains * push.iterations;
  return {median > 0 ? double(fma) / median : 0, fma, gpu_timed};
}

}  // namespace inferno::kernels
