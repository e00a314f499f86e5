// RoPE against a double-precision rotate_half reference that uses the same cos/sin table.
#include "kernels/rope.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

// The table as rope.hpp describes it: f32 [positions, head_dim/2, (cos, sin)], angle = position · inv_freq in f32.
std::vector<float> cos_sin_table(uint32_t positions, uint32_t head_dim, double theta, float attention_scaling) {
  const uint32_t half = head_dim / 2;
  std::vector<float> table(size_t(positions) * half * 2);
  for (uint32_t p = 0; p < positions; ++p)
    for (uint32_t i = 0; i < half; ++i) {
      const float inv_freq = float(1.0 / std::pow(theta, double(2 * i) / head_dim));
      const float angle = float(p) * inv_freq;
      table[(size_t(p) * half + i) * 2] = std::cos(angle) * attention_scaling;
      table[(size_t(p) * half + i) * 2 + 1] = std::sin(angle) * attention_scaling;
    }
  return table;
}

// x·cos + rotate_half(x)·sin per head, in double, on rows of `stride` floats; what lies past the heads is kept.
std::vector<double> reference_rope(const std::vector<float>& x, uint32_t rows, uint32_t heads, uint32_t head_dim,
                                   uint32_t stride, const std::vector<int32_t>& positions,
                                   const std::vector<float>& table) {
  const uint32_t half = head_dim / 2;
  std::vector<double> y(x.begin(), x.end());
  for (uint32_t r = 0; r < rows; ++r)
    for (uint32_t h = 0; h < heads; ++h)
      for (uint32_t i = 0; i < half; ++i) {
        const size_t a = size_t(r) * stride + h * head_dim + i, b = a + half;
        const double c = table[(size_t(positions[r]) * half + i) * 2],
                     s = table[(size_t(positions[r]) * half + i) * 2 + 1];
        y[a] = double(x[a]) * c - double(x[b]) * s;
        y[b] = double(x[b]) * c + double(x[a]) * s;
      }
  return y;
}

}  // namespace

TEST_CASE("rope rotates pairs (i, i + d/2) like transformers' rotate_half, any heads, head_dim and row stride") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(201);
  const uint32_t table_positions = 4099;
  struct Shape {
    uint32_t heads, head_dim, extra_stride;
  };
  for (const Shape s : {Shape{1, 2, 0}, Shape{3, 16, 0}, Shape{8, 64, 0}, Shape{5, 128, 7}, Shape{2, 256, 64},
                        Shape{4, 32, 3 * 32 + 1}}) {
    const std::vector<float> table =
        cos_sin_table(table_positions, s.head_dim, rng.integer(0, 1) ? 10000.0 : 500000.0, rng.uniform(0.9f, 1.2f));
    vk::Buffer table_buffer = device_buffer(table, "rope table");
    for (uint32_t rows : {1u, 3u, 37u}) {
      CAPTURE(s.heads);
      CAPTURE(s.head_dim);
      CAPTURE(s.extra_stride);
      CAPTURE(rows);
      const uint32_t stride = s.heads * s.head_dim + s.extra_stride;
      std::vector<float> x = rng.uniform_vector(size_t(rows) * stride, -2.f, 2.f);
      std::vector<int32_t> positions(rows);
      for (auto& p : positions) p = rng.integer(0, int(table_positions) - 1);
      positions[0] = int(table_positions) - 1;  // the table's last row is reachable
      vk::Buffer xb = device_buffer(x, "x"), pb = device_buffer(positions, "positions");
      vk::Recorder rec(d);
      rec.begin();
      kernels::record_rope(d, rec, xb, rows, s.heads, s.head_dim, s.extra_stride ? stride : 0, pb, table_buffer,
                           table_positions);
      rec.submit_and_wait();
      const auto y = read_back<float>(xb, x.size());
      const auto ref = reference_rope(x, rows, s.heads, s.head_dim, stride, positions, table);
      // Each output is a·c ∓ b·s in f32: two rounded products and a rounded sum (or one fused multiply-add), so
      // the error is at most 3u · (|a·c| + |b·s|) ≤ 3u · 1.2 · (|a| + |b|) with |cos|, |sin| ≤ attention_scaling ≤ 1.2.
      // Values past the heads (the stride's tail) must come back unchanged.
      size_t bad = 0;
      for (uint32_t r = 0; r < rows; ++r)
        for (uint32_t c = 0; c < stride; ++c) {
          const size_t i = size_t(r) * stride + c;
          double tol = 0;
          if (c < s.heads * s.head_dim) {
            const uint32_t in_head = c % s.head_dim, half = s.head_dim / 2;
            const size_t partner = in_head < half ? i + half : i - half;
            tol = 3 * kUnitRoundoff * 1.2 * (std::abs(x[i]) + std::abs(x[partner]));
          }
          if (!(std::abs(y[i] - ref[i]) <= tol)) {
            if (bad++ < 3) FAIL_CHECK("row " << r << " column " << c << ": " << y[i] << ", expected " << ref[i]);
          }
        }
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("rope turns a position outside the table into NaN and leaves other rows alone") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(202);
  const uint32_t heads = 2, head_dim = 8, rows = 3, table_positions = 10;
  const auto table = cos_sin_table(table_positions, head_dim, 10000.0, 1.f);
  std::vector<float> x = rng.uniform_vector(rows * heads * head_dim);
  const std::vector<int32_t> positions{3, int32_t(table_positions), -1};
  vk::Buffer xb = device_buffer(x, "x"), pb = device_buffer(positions, "positions"), tb = device_buffer(table, "table");
  vk::Recorder rec(d);
  rec.begin();
  kernels::record_rope(d, rec, xb, rows, heads, head_dim, 0, pb, tb, table_positions);
  rec.submit_and_wait();
  const auto y = read_back<float>(xb, x.size());
  const auto ref = reference_rope(x, 1, heads, head_dim, heads * head_dim, positions, table);
  for (uint32_t i = 0; i < heads * head_dim; ++i) CHECK(std::abs(y[i] - ref[i]) <= 1e-6);
  for (uint32_t i = heads * head_dim; i < rows * heads * head_dim; ++i) CHECK(std::isnan(y[i]));
}

TEST_CASE("rope refuses an odd or oversized head_dim and a short row stride") {
  vk::Device& d = test_device();
  vk::Buffer x(d, 1024, vk::MemoryKind::Device, "x"), p(d, 16, vk::MemoryKind::Device, "p"),
      t(d, 1024, vk::MemoryKind::Device, "t");
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_rope(d, rec, x, 1, 1, 7, 0, p, t, 1), doctest::Contains("head_dim 7"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(kernels::record_rope(d, rec, x, 1, 1, 258, 0, p, t, 1), doctest::Contains("head_dim 258"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(kernels::record_rope(d, rec, x, 1, 2, 8, 15, p, t, 1), doctest::Contains("stride 15"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(kernels::record_rope(d, rec, x, 100, 2, 8, 0, p, t, 1), doctest::Contains("'x'"),
                       inferno::Error);
}
