#pragma once
// What the tests of matrix-core (cooperative-matrix) kernels share: whether they can run here, and their tolerance.
#include <cmath>
#include <cstdlib>

#include "gpu_support.hpp"
#include "kernels/linear.hpp"

namespace inferno::testing {

// Whether record_linear can run rows of `type` on matrix cores here (VK_KHR_cooperative_matrix in the device and a
// glslc that compiled the kernel). Where a run sets INFERNO_EXPECT_COOPMAT (CI, under Mesa 26's lavapipe: see
// tools/fetch-lavapipe.sh), their absence fails instead of skipping.
inline bool coopmat_available(kernels::WeightType type) {
  kernels::LinearTuning tuning;
  tuning.matmul = kernels::LinearTuning::Matmul::CoopMat;
  const bool available = kernels::linear_uses_coopmat(test_device(), type, tuning);
  if (!available) {
    REQUIRE_MESSAGE(std::getenv("INFERNO_EXPECT_COOPMAT") == nullptr,
                    "INFERNO_EXPECT_COOPMAT is set but cooperative-matrix kernels are not available");
    MESSAGE("cooperative-matrix kernels not available on " << test_device().caps().name << ": skipped");
  }
  return available;
}

// Tolerance for one output of a matrix-core product: x and w are each rounded to f16 before they are multiplied (a
// relative 2^-11 each, 2^-10 + 2^-22 for the product; below f16's normal range, an absolute 2^-25 each), then K+2
// terms are summed in f32 ((K+1)·2^-24·Σ|term|, the recursive-summation bound). `magnitude` is Σ|x·w| (+ |bias| and
// |y| when they are added), `operands` Σ(|x| + |w|) over the row. A lost or misplaced term (Σ/K) still exceeds it
// several times over for K ≤ 512.
inline double f16_product_tolerance(uint32_t k, double magnitude, double operands) {
  return (std::ldexp(1.0, -10) + std::ldexp(1.0, -22) + (k + 3) * std::ldexp(1.0, -24)) * magnitude +
         std::ldexp(1.0, -24) * operands + 1e-30;
}

}  // namespace inferno::testing
