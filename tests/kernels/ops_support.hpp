#pragma once
// Shared code for the norm / rope / element-wise / attention kernel tests: 16-bit rounding as the device stores it,
// NaN poisoning of outputs, and the f32 unit roundoff the tolerances are written in.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "gpu_support.hpp"
#include "kernels/fill.hpp"
#include "util/half.hpp"

namespace inferno::testing {

inline constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// The f32 unit roundoff 2^-24: one correctly rounded f32 operation errs by at most u relative.
inline constexpr double kUnitRoundoff = 1.0 / 16777216.0;

enum class Dtype { F32, F16, BF16 };
inline const char* dtype_name(Dtype t) { return t == Dtype::F32 ? "f32" : t == Dtype::F16 ? "f16" : "bf16"; }

// The value as the dtype holds it (round to nearest even, as PyTorch's .to(dtype)).
inline float round_to(Dtype t, float v) {
  if (t == Dtype::F16) return f16_to_f32(f32_to_f16(v));
  if (t == Dtype::BF16) return bf16_to_f32(f32_to_bf16(v));
  return v;
}

// The raw little-endian bytes of `values` in dtype t (16-bit values two per word, the first in the low half).
inline std::vector<uint8_t> encode(Dtype t, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * (t == Dtype::F32 ? 4 : 2));
  for (size_t i = 0; i < values.size(); ++i) {
    if (t == Dtype::F32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else {
      const uint16_t h = t == Dtype::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
  }
  return bytes;
}

inline std::vector<float> decode(Dtype t, const std::vector<uint8_t>& bytes) {
  const size_t n = bytes.size() / (t == Dtype::F32 ? 4 : 2);
  std::vector<float> values(n);
  for (size_t i = 0; i < n; ++i) {
    if (t == Dtype::F32) {
      std::memcpy(&values[i], &bytes[i * 4], 4);
    } else {
      uint16_t h;
      std::memcpy(&h, &bytes[i * 2], 2);
      values[i] = t == Dtype::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return values;
}

// The q8 KV cache's bytes (kv_cache.glsl: per 32 values, 32 int8 levels then their f32 scale) as floats.
inline std::vector<float> decode_q8(const std::vector<uint8_t>& bytes) {
  std::vector<float> values(bytes.size() / 36 * 32);
  for (size_t i = 0; i < values.size(); ++i) {
    const size_t block = i / 32 * 36;
    float scale;
    std::memcpy(&scale, &bytes[block + 32], 4);
    values[i] = float(int8_t(bytes[block + i % 32])) * scale;
  }
  return values;
}

// What q8 quantization may move a value of a block whose largest magnitude is absmax: half a level (absmax / 254),
// and a few f32 roundings of the scale and its inverse (the device's division errs by up to 2.5 ulp), below 1e-6
// relative to absmax.
inline double q8_value_bound(double absmax) { return absmax * (1.0 / 254 + 1e-6); }

// Records a NaN fill of the first `floats` values of an output, so that whatever the kernel fails to write shows.
inline void poison(vk::Recorder& rec, const vk::Buffer& buffer, uint64_t floats) {
  kernels::record_fill(test_device(), rec, buffer, 0, floats, kNaN);
}

}  // namespace inferno::testing
