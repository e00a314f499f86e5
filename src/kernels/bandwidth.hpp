#pragma once
// The device's achievable read bandwidth, measured by streaming through a buffer (the decode roofline), and its
// achievable f32 multiply-add rate, measured by chains of FMAs on registers (the prefill roofline).
#include "vk/device.hpp"

namespace inferno::kernels {

struct BandwidthResult {
  double bytes_per_second = 0;
  uint64_t bytes_read = 0;  // per pass
  bool gpu_timed = false;   // from GPU timestamps (else wall clock around the submission)
};

// Reads `bytes` (at most an eighth of the device's memory budget; rounded down to whole buffers of what one binding
// holds) `passes` times and reports the median pass.
BandwidthResult measure_read_bandwidth(vk::Device& device, uint64_t bytes = 1ull << 30, int passes = 5);


struct FmaRateResult {
  double fma_per_second = 0;
  uint64_t fma_per_pass = 0;
  bool gpu_timed = false;  // from GPU timestamps (else wall clock around the submission)
};

// Runs shaders/fma_rate.comp, lengthening the pass until it takes at least `min_seconds`, and reports the median of
// `passes` passes of that length.
FmaRateResult measure_fma_rate(vk::Device& device, double min_seconds = 0.05, int passes = 5);

}  // namespace inferno::kernels
