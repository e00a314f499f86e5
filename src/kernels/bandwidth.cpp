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
  // No more than an eighth of the device, so the measurement fits anywhere; in buffers that one binding each holds,
  // read one after the other in a pass. One binding alone (128 MiB on lavapipe) is not enough: a large last-level
  // cache (CPUs' L3, GPUs' L2) would hold part of it and the roofline would count cache reads as memory reads.
  bytes = std::min(bytes, caps.budget_bytes / 8);
  const uint64_t per_buffer =
      std::max<uint64_t>(std::min({bytes, caps.max_storage_buffer_range, caps.max_memory_allocation_size}) / 16 * 16, 16);
  const uint64_t buffers = std::max<uint64_t>(bytes / per_buffer, 1);
  constexpr uint32_t kGroup = 256, kGroups = 2048;
  std::vector<vk::Buffer> data;
  for (uint64_t i = 0; i < buffers; ++i)
    data.emplace_back(device, per_buffer, vk::MemoryKind::Device, "bandwidth_data " + std::to_string(i));
  vk::Buffer folded(device, kGroups * 4, vk::MemoryKind::Device, "bandwidth_out");
  const auto& p = pipeline(device, "bandwidth", {kGroup});
  const struct {
    uint32_t count;
  } push{uint32_t(per_buffer / 16)};

  vk::Recorder rec(device, true);
  rec.begin();
  for (const vk::Buffer& b : data)
    record_fill(device, rec, b, 0, per_buffer / 4, 1.0f);  // touch every page once (drivers may allocate lazily)
  rec.submit_and_wait();
  std::vector<double> seconds;
  bool gpu_timed = false;
  for (int i = 0; i < passes + 1; ++i) {  // the first pass warms up and is dropped
    rec.begin();
    for (const vk::Buffer& b : data) rec.dispatch(p, {vk::in(b), vk::out(folded)}, push, kGroups);
    const auto t0 = std::chrono::steady_clock::now();
    rec.submit_and_wait();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto t = rec.timings();
    gpu_timed = t.size() >= data.size();
    double gpu = 0;
    for (const auto& d : t) gpu += d.ns * 1e-9;
    if (i > 0) seconds.push_back(gpu_timed ? gpu : wall);
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const uint64_t total = per_buffer * buffers;
  return {median > 0 ? double(total) / median : 0, total, gpu_timed};
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
