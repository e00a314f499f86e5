#pragma once
// The device's achievable read bandwidth, measured by streaming through a buffer (the decode roofline).
#include "vk/device.hpp"

namespace inferno::kernels {

struct BandwidthResult {
  double bytes_per_second = 0;
  uint64_t bytes_read = 0;  // per pass
  bool gpu_timed = false;   // from GPU timestamps (else wall clock around the submission)
};

// Reads `bytes` (rounded to what one binding holds) `passes` times and reports the median pass.
BandwidthResult measure_read_bandwidth(vk::Device& device, uint64_t bytes = 1ull << 30, int passes = 5);

}  // namespace inferno::kernels
