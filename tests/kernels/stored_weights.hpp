#pragma once
// Random values rounded to a float dtype, for the linear and quantized-weight tests: the bytes as stored and the
// values they hold (what a correct kernel reads).
#include <cmath>
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

// RMSNorm folded into a projection (LinearArgs::norm): each activation row's 1 / sqrt(mean(x²) + eps) in double,
// for m rows of k values, x_stride floats apart; eps < 0: no norm (all ones).
inline std::vector<double> folded_norm_scales(const std::vector<float>& x, uint32_t m, uint32_t x_stride, uint32_t k,
                                              double eps) {
  std::vector<double> scales(m, 1.0);
  if (eps < 0) return scales;
  for (uint32_t r = 0; r < m; ++r) {
    double squares = 0;
    for (uint32_t i = 0; i < k; ++i) squares += double(x[size_t(r) * x_stride + i]) * x[size_t(r) * x_stride + i];
    scales[r] = 1.0 / std::sqrt(squares / k + eps);
  }
  return scales;
}

// Its tolerance on top of the dot product's: x·g is one more f32 rounding a term, and the row's scale errs by the sum
// of K squares ((K+1)·u, relative), the division, the epsilon, inversesqrt (2 ulp) and the final multiply, halved by
// the square root: in all at most (2K + 16)·u·Σ|term| with u = 2^-24. A norm weight or scale left out, or squares
// counted twice, is off by far more.
inline double folded_norm_tolerance(uint32_t k, double magnitude) {
  return (2.0 * k + 16) * std::ldexp(1.0, -24) * magnitude + 1e-30;
}

}  // namespace inferno::testing
