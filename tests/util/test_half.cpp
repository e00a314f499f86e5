#include <cmath>
#include <limits>

#include "test_support.hpp"
#include "util/half.hpp"

using namespace inferno;

TEST_CASE("f16 round trip is exact for every 16-bit pattern that is not NaN") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    CHECK_MESSAGE(f32_to_f16(f) == h, "pattern " << h);
  }
}

TEST_CASE("bf16 round trip and round to nearest even") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_f32(uint16_t(b));
    if (std::isnan(f)) continue;
    CHECK(f32_to_bf16(f) == b);
  }
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);
  CHECK(f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
}

TEST_CASE("f16 rounding matches a float64 reference on random values") {
  INFERNO_SEED_INFO();
  testing::Rng rng(1);
  for (int i = 0; i < 100000; ++i) {
    const float x = rng.uniform(-70000.f, 70000.f) * std::pow(2.f, float(rng.integer(-30, 0)));
    const uint16_t h = f32_to_f16(x);
    // nearest: no other f16 is closer
    const double err = std::fabs(double(f16_to_f32(h)) - x);
    const double up = std::fabs(double(f16_to_f32(uint16_t(h + 1))) - x);
    const double down = (h & 0x7fff) ? std::fabs(double(f16_to_f32(uint16_t(h - 1))) - x) : 1e30;
    if (std::isinf(f16_to_f32(h))) continue;
    CHECK(err <= up);
    CHECK(err <= down);
  }
}
