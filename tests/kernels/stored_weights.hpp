#pragma once
// Random values rounded to a float dtype, for the linear and quantized-weight tests: the bytes as stored and the
// values they hold (what a correct kernel reads).
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/weights.hpp"
#include "test_support.hpp"
#include "util/half.hpp"

namespace inferno::testing {

struct Stored {
  std::vector<std::byte> bytes;
  std::vector<double> values;
};

inline Stored make_stored(Rng& rng, kernels::WeightType type, size_t count, float lo = -1.f, float hi = 1.f) {
  Stored s;
  s.bytes.resize(count * kernels::weight_type_bytes(type));
  s.values.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const float f = rng.uniform(lo, hi);
    if (type == kernels::WeightType::F32) {
      std::memcpy(&s.bytes[i * 4], &f, 4);
      s.values[i] = f;
    } else {
      const uint16_t h = type == kernels::WeightType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(&s.bytes[i * 2], &h, 2);
      s.values[i] = type == kernels::WeightType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return s;
}

}  // namespace inferno::testing
