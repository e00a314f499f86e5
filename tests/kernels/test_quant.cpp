// Block formats (ggml's Q8_0 ... Q6_K) and INT8 in the kernels: record_linear and record_embedding on quantized
// weights against a reference dequantizer written here from the block layouts, INT8 weight-only and w8a8, the
// quantizers of weights (quantize_matrix_int8) and activations (record_quantize_rows), bit for bit where the
// arithmetic is exact.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "coopmat_support.hpp"
#include "gpu_support.hpp"
#include "stored_weights.hpp"
#include "kernels/embedding.hpp"
#include "kernels/fill.hpp"
#include "kernels/int8.hpp"
#include "kernels/linear.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::WeightType;

namespace {

constexpr WeightType kBlockTypes[] = {WeightType::Q8_0, WeightType::Q4_0, WeightType::Q4_1, WeightType::Q5_0,
                                      WeightType::Q5_1, WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K};
std::vector<WeightType> block_types_and_i8() {
  std::vector<WeightType> types(std::begin(kBlockTypes), std::end(kBlockTypes));
  types.push_back(WeightType::I8);
  return types;
}
constexpr double kU = 1.0 / 16777216.0;  // 2^-24: the unit roundoff of f32

// ---------------------------------------------------------------------------------------------------------------
// Reference dequantization, written from the block layouts (ggml-common.h), in double precision: every weight these
// formats can express is exact in double. `magnitude` is |scale·q| + |min| of each weight: the size of the terms a
// float evaluation of it combines, which bounds its rounding error.

struct Dequantized {
  std::vector<double> values, magnitude;
};

double f16_at(const uint8_t* p) { return f16_to_f32(uint16_t(p[0] | p[1] << 8)); }

void dequantize_block(WeightType type, const uint8_t* b, double* w, double* mag) {
  auto put = [&](int i, double scale, int q, double min = 0) {
    w[i] = scale * q + min;
    mag[i] = std::fabs(scale * q) + std::fabs(min);
  };
  switch (type) {
    case WeightType::Q8_0: {  // d, then 32 int8
      const double d = f16_at(b);
      for (int i = 0; i < 32; ++i) put(i, d, int8_t(b[2 + i]));
      break;
    }
    case WeightType::Q4_0:
    case WeightType::Q4_1: {  // d (, m), then 16 bytes: element i in the low nibble of byte i, i + 16 in the high
      const bool has_min = type == WeightType::Q4_1;
      const double d = f16_at(b), m = has_min ? f16_at(b + 2) : 0;
      const uint8_t* qs = b + (has_min ? 4 : 2);
      const int offset = has_min ? 0 : -8;
      for (int i = 0; i < 16; ++i) {
        put(i, d, (qs[i] & 15) + offset, m);
        put(i + 16, d, (qs[i] >> 4) + offset, m);
      }
      break;
    }
    case WeightType::Q5_0:
    case WeightType::Q5_1: {  // d (, m), 32 fifth bits (little-endian word), then nibbles as Q4
      const bool has_min = type == WeightType::Q5_1;
      const double d = f16_at(b), m = has_min ? f16_at(b + 2) : 0;
      const uint8_t* qh_bytes = b + (has_min ? 4 : 2);
      const uint32_t qh = uint32_t(qh_bytes[0]) | uint32_t(qh_bytes[1]) << 8 | uint32_t(qh_bytes[2]) << 16 |
                          uint32_t(qh_bytes[3]) << 24;
      const uint8_t* qs = qh_bytes + 4;
      const int offset = has_min ? 0 : -16;
      for (int i = 0; i < 16; ++i) {
        put(i, d, int((qs[i] & 15) | ((qh >> i) & 1) << 4) + offset, m);
        put(i + 16, d, int((qs[i] >> 4) | ((qh >> (i + 16)) & 1) << 4) + offset, m);
      }
      break;
    }
    case WeightType::Q4_K:
    case WeightType::Q5_K: {  // d, dmin, 12 bytes of 6-bit scales and mins, (Q5_K: 32 bytes of fifth bits), 128 bytes
      const double d = f16_at(b), dmin = f16_at(b + 2);
      const uint8_t* sc = b + 4;
      const bool five = type == WeightType::Q5_K;
      const uint8_t* qh = b + 16;
      const uint8_t* qs = b + (five ? 48 : 16);
      auto scale_min = [&](int s, int& scale, int& min) {
        if (s < 4) {
          scale = sc[s] & 63;
          min = sc[s + 4] & 63;
        } else {
          scale = (sc[s + 4] & 15) | (sc[s - 4] >> 6) << 4;
          min = (sc[s + 4] >> 4) | (sc[s] >> 6) << 4;
        }
      };
      for (int c = 0; c < 4; ++c) {
        int s0, m0, s1, m1;
        scale_min(2 * c, s0, m0);
        scale_min(2 * c + 1, s1, m1);
        for (int l = 0; l < 32; ++l) {
          int q0 = qs[32 * c + l] & 15, q1 = qs[32 * c + l] >> 4;
          if (five) {
            q0 += ((qh[l] >> (2 * c)) & 1) * 16;
            q1 += ((qh[l] >> (2 * c + 1)) & 1) * 16;
          }
          put(64 * c + l, d * s0, q0, -dmin * m0);
          put(64 * c + 32 + l, d * s1, q1, -dmin * m1);
        }
      }
      break;
    }
    case WeightType::Q6_K: {  // 128 bytes low nibbles, 64 bytes of 2-bit tops, 16 int8 scales, d
      const uint8_t *ql = b, *qh = b + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      const double d = f16_at(b + 208);
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
          const int top = qh[32 * h + l], s = 8 * h + l / 16;
          const int a = ql[64 * h + l], c = ql[64 * h + 32 + l];
          put(128 * h + l, d * sc[s], ((a & 15) | (top & 3) << 4) - 32);
          put(128 * h + 32 + l, d * sc[s + 2], ((c & 15) | ((top >> 2) & 3) << 4) - 32);
          put(128 * h + 64 + l, d * sc[s + 4], ((a >> 4) | ((top >> 4) & 3) << 4) - 32);
          put(128 * h + 96 + l, d * sc[s + 6], ((c >> 4) | ((top >> 6) & 3) << 4) - 32);
        }
      break;
    }
    default: FAIL("not a block format");
  }
}

Dequantized dequantize(WeightType type, const std::vector<std::byte>& bytes, size_t elements) {
  Dequantized out{std::vector<double>(elements), std::vector<double>(elements)};
  const size_t qk = kernels::weight_block_elements(type), block_bytes = kernels::weight_block_bytes(type);
  for (size_t blk = 0; blk < elements / qk; ++blk)
    dequantize_block(type, reinterpret_cast<const uint8_t*>(bytes.data()) + blk * block_bytes, &out.values[blk * qk],
                     &out.magnitude[blk * qk]);
  return out;
}

// Random blocks: every quant and 6/8-bit scale byte uniformly random (so over many blocks every bit pattern occurs),
// f16 scales random of either sign (never inf or NaN) with a typical size that keeps weights near 1.
std::vector<std::byte> random_blocks(Rng& rng, WeightType type, size_t blocks) {
  const size_t block_bytes = kernels::weight_block_bytes(type);
  std::vector<std::byte> v(blocks * block_bytes);
  for (auto& b : v) b = std::byte(rng.integer(0, 255));
  auto put_half = [&](size_t at, float typical) {
    const uint16_t h = f32_to_f16(rng.normal(typical));
    v[at] = std::byte(h & 0xff);
    v[at + 1] = std::byte(h >> 8);
  };
  for (size_t blk = 0; blk < blocks; ++blk) {
    const size_t at = blk * block_bytes;
    switch (type) {
      case WeightType::Q8_0: put_half(at, 1.f / 64); break;
      case WeightType::Q4_0: put_half(at, 1.f / 8); break;
      case WeightType::Q5_0: put_half(at, 1.f / 16); break;
      case WeightType::Q4_1: put_half(at, 1.f / 8), put_half(at + 2, 1.f); break;
      case WeightType::Q5_1: put_half(at, 1.f / 16), put_half(at + 2, 1.f); break;
      case WeightType::Q4_K: put_half(at, 1.f / 256), put_half(at + 2, 1.f / 64); break;
      case WeightType::Q5_K: put_half(at, 1.f / 512), put_half(at + 2, 1.f / 64); break;
      case WeightType::Q6_K: put_half(at + 208, 1.f / 1024); break;
      default: break;
    }
  }
  return v;
}

std::vector<std::byte> random_bytes(Rng& rng, size_t count) {
  std::vector<std::byte> v(count);
  for (auto& b : v) b = std::byte(rng.integer(0, 255));
  return v;
}


// A weight matrix of any quantized type with the values the device should see.
struct QuantMatrix {
  kernels::DeviceMatrix device;
  std::vector<std::byte> bytes;
  Dequantized reference;         // I8: q · s
  std::vector<double> row_scales;  // I8: s
};
QuantMatrix make_matrix(Rng& rng, WeightType type, uint32_t n, uint32_t k, uint32_t rows_per_chunk,
                        WeightType scale_type = WeightType::BF16) {
  vk::Device& d = test_device();
  QuantMatrix q;
  const uint64_t row_bytes = kernels::weight_row_bytes(type, k);
  const uint64_t chunk_bytes = rows_per_chunk ? rows_per_chunk * row_bytes + 16 : 0;
  if (type == WeightType::I8) {
    q.bytes = random_bytes(rng, size_t(n) * k);
    const Stored scales = make_stored(rng, scale_type, n, -0.05f, 0.05f);
    q.device = kernels::upload_int8_matrix(d, "w", n, k, q.bytes, scale_type, scales.bytes, chunk_bytes);
    q.row_scales = scales.values;
    q.reference.values.resize(size_t(n) * k);
    q.reference.magnitude.resize(size_t(n) * k);
    for (size_t i = 0; i < q.reference.values.size(); ++i) {
      q.reference.values[i] = double(int8_t(q.bytes[i])) * scales.values[i / k];
      q.reference.magnitude[i] = std::fabs(q.reference.values[i]);
    }
  } else {
    q.bytes = random_blocks(rng, type, size_t(n) * k / kernels::weight_block_elements(type));
    q.device = kernels::upload_matrix(d, "w", type, n, k, q.bytes, chunk_bytes);
    q.reference = dequantize(type, q.bytes, size_t(n) * k);
  }
  if (rows_per_chunk) REQUIRE(q.device.chunks.size() == (n + rows_per_chunk - 1) / rows_per_chunk);
  return q;
}

struct Case {
  WeightType type = WeightType::Q8_0;
  uint32_t m = 1, k = 32, n = 1;
  int bias = -1;  // -1: none, else the WeightType of the bias
  bool accumulate = false;
  uint32_t rows_per_chunk = 0;  // 0: one chunk
  WeightType scale_type = WeightType::BF16;  // I8 only
  kernels::LinearTuning::Defaults defaults = kernels::LinearTuning::Defaults::ForDevice;  // the matvec's layout
  bool no_vec16 = false;  // x read as scalars, not vec4s
  bool coopmat = false;   // m > 8 on matrix cores
  // The register-blocked kernel (linear_matmul_rows.comp) for every m > 1, with its tile (0: the defaults).
  bool rows = false;
  uint32_t rows_tile_m = 0, rows_per_lane = 0;
  int norm = -1;          // RMSNorm folded in: -1 none, else the WeightType of its weight
};

std::string describe(const Case& c) {
  return std::string(kernels::weight_type_name(c.type)) + " m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
         " n=" + std::to_string(c.n) + " bias=" + (c.bias < 0 ? "none" : kernels::weight_type_name(WeightType(c.bias))) +
         " accumulate=" + std::to_string(c.accumulate) + " rows_per_chunk=" + std::to_string(c.rows_per_chunk) +
         (c.type == WeightType::I8 ? std::string(" scales=") + kernels::weight_type_name(c.scale_type) : "") +
         (c.defaults == kernels::LinearTuning::Defaults::Gpu ? " gpu-defaults" : "") + (c.no_vec16 ? " no-vec16" : "") +
         (c.coopmat ? " coopmat" : "") +
         (c.rows ? " rows tile_m=" + std::to_string(c.rows_tile_m) + " per_lane=" + std::to_string(c.rows_per_lane)
                 : "") +
         (c.norm >= 0 ? std::string(" norm=") + kernels::weight_type_name(WeightType(c.norm)) : "");
}

// record_linear on a quantized matrix against double-precision math on the reference weights. Returns bad elements.
size_t run_linear_case(Rng& rng, vk::Recorder& rec, const Case& c) {
  vk::Device& d = test_device();
  const QuantMatrix w = make_matrix(rng, c.type, c.n, c.k, c.rows_per_chunk, c.scale_type);
  Stored b;
  kernels::DeviceVector bias;
  if (c.bias >= 0) {
    b = make_stored(rng, WeightType(c.bias), c.n);
    bias = kernels::upload_vector(d, "b", WeightType(c.bias), c.n, b.bytes);
  }
  const std::vector<float> x = rng.uniform_vector(size_t(c.m) * c.k);
  const std::vector<float> y0 = rng.uniform_vector(size_t(c.m) * c.n, -4.f, 4.f);
  const vk::Buffer xb = device_buffer(x, "x");
  const vk::Buffer yb = device_buffer(y0, "y");
  kernels::LinearArgs args{&w.device, c.bias >= 0 ? &bias : nullptr, &xb, &yb, c.m};
  args.accumulate = c.accumulate;
  Stored g;
  kernels::DeviceVector norm;
  if (c.norm >= 0) {
    g = make_stored(rng, WeightType(c.norm), c.k);
    norm = kernels::upload_vector(d, "norm", WeightType(c.norm), c.k, g.bytes);
    args.norm = &norm;
    args.norm_eps = 1e-6f;
  }
  const std::vector<double> inv_rms = folded_norm_scales(x, c.m, c.k, c.k, c.norm >= 0 ? args.norm_eps : -1);
  rec.begin();
  if (!c.accumulate) kernels::record_fill(d, rec, yb, 0, y0.size(), std::numeric_limits<float>::quiet_NaN());
  kernels::LinearTuning tuning;
  tuning.defaults = c.defaults;
  tuning.matvec_no_vec16 = c.no_vec16;
  tuning.matmul = c.coopmat ? kernels::LinearTuning::Matmul::CoopMat : kernels::LinearTuning::Matmul::Tiled;
  if (c.rows) {
    tuning.matmul = kernels::LinearTuning::Matmul::Rows;
    tuning.matvec_max_m = 1;
    tuning.rows_tile_m = c.rows_tile_m;
    tuning.rows_per_lane = c.rows_per_lane;
  }
  kernels::record_linear(d, rec, args, tuning);
  rec.submit_and_wait();
  const std::vector<float> y = read_back<float>(yb, y0.size());

  size_t bad = 0;
  for (uint32_t m = 0; m < c.m; ++m)
    for (uint32_t n = 0; n < c.n; ++n) {
      double exact = 0, magnitude = 0, operands = 0;
      for (uint32_t k = 0; k < c.k; ++k) {
        const size_t wi = size_t(n) * c.k + k;
        const double xk = c.norm >= 0 ? x[size_t(m) * c.k + k] * g.values[k] * inv_rms[m] : x[size_t(m) * c.k + k];
        exact += xk * w.reference.values[wi];
        magnitude += std::fabs(xk) * w.reference.magnitude[wi];
        operands += std::fabs(x[size_t(m) * c.k + k]) + w.reference.magnitude[wi];
      }
      if (c.bias >= 0) exact += b.values[n], magnitude += std::fabs(b.values[n]);
      const size_t at = size_t(m) * c.n + n;
      if (c.accumulate) exact += y0[at], magnitude += std::fabs(y0[at]);
      // Tolerance: each weight comes out of one f32 rounding of exact terms (scale·q and min are exact in f32; for
      // Q6_K and I8 the one rounding is the product itself), so it errs by at most u·(|scale·q| + |min|); then the
      // f32 products (u each) and any order of summing K+2 terms ((K+1)·u·Σ|term|, the recursive-summation bound).
      // (K+4)·u·Σ|x|·(|scale·q| + |min|) covers all of it; a lost, doubled or misplaced term (typically Σ/K) exceeds
      // it many times over for K ≤ 512.
      // On matrix cores the dequantized weight is rounded to f16 as well (for I8 the integer q, exactly, with the
      // row scale applied to the f32 sum): f16_product_tolerance, plus the f32 rounding of the weight above.
      const double tolerance = (c.k + 4) * kU * magnitude +
                               (c.coopmat && c.m > 8 ? f16_product_tolerance(c.k, magnitude, operands)
                                : c.norm >= 0        ? folded_norm_tolerance(c.k, magnitude)
                                                     : 1e-30);
      if (!(std::fabs(y[at] - exact) <= tolerance) && bad++ < 5)
        FAIL_CHECK(describe(c) << ": y[" << m << "][" << n << "] = " << y[at] << ", expected " << exact << " ± "
                               << tolerance);
    }
  return bad;
}

std::vector<uint32_t> ks_for(WeightType type) {
  if (kernels::weight_block_elements(type) == 256) return {256, 512};
  return {32, 96, 256, 512};
}

}  // namespace

TEST_CASE("block formats: sizes, names and row bytes; bad shapes are refused naming the tensor") {
  CHECK(kernels::weight_block_bytes(WeightType::Q8_0) == 34);
  CHECK(kernels::weight_block_bytes(WeightType::Q4_0) == 18);
  CHECK(kernels::weight_block_bytes(WeightType::Q4_1) == 20);
  CHECK(kernels::weight_block_bytes(WeightType::Q5_0) == 22);
  CHECK(kernels::weight_block_bytes(WeightType::Q5_1) == 24);
  CHECK(kernels::weight_block_bytes(WeightType::Q4_K) == 144);
  CHECK(kernels::weight_block_bytes(WeightType::Q5_K) == 176);
  CHECK(kernels::weight_block_bytes(WeightType::Q6_K) == 210);
  CHECK(kernels::weight_row_bytes(WeightType::Q6_K, 512) == 420);
  CHECK(kernels::weight_row_bytes(WeightType::Q5_0, 96) == 66);
  CHECK(kernels::weight_row_bytes(WeightType::I8, 36) == 36);
  CHECK(kernels::weight_row_bytes(WeightType::BF16, 7) == 14);
  CHECK(std::string(kernels::weight_type_name(WeightType::Q4_K)) == "q4_k");
  CHECK_THROWS_WITH_AS(kernels::weight_row_bytes(WeightType::Q4_K, 4096 + 32, "blk.0.ffn_down.weight"),
                       doctest::Contains("blk.0.ffn_down.weight"), Error);
  CHECK_THROWS_WITH_AS(kernels::weight_row_bytes(WeightType::Q8_0, 100), doctest::Contains("multiple of 32"), Error);
  CHECK_THROWS_WITH_AS(kernels::weight_row_bytes(WeightType::I8, 6), doctest::Contains("multiple of 4"), Error);
  CHECK_THROWS_AS(kernels::weight_type_bytes(WeightType::Q4_0), Error);

  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(300);
  const auto blocks = random_blocks(rng, WeightType::Q4_K, 2);
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "token_embd.weight", WeightType::Q4_K, 1, 320, blocks),
                       doctest::Contains("token_embd.weight"), Error);
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "attn_q", WeightType::Q4_K, 3, 256, blocks),
                       doctest::Contains("needs 432 bytes"), Error);
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "q_proj", WeightType::I8, 2, 4, std::vector<std::byte>(8)),
                       doctest::Contains("row scales"), Error);
  CHECK_THROWS_WITH_AS(kernels::upload_vector(d, "bias", WeightType::Q8_0, 32, std::vector<std::byte>(34)),
                       doctest::Contains("bias"), Error);
}

TEST_CASE("quantized matrices hold exactly their on-disk bytes (+ row scales), in chunks of whole rows") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(301);
  const uint64_t memory_before = d.allocated_bytes(), allocations_before = d.live_allocations();
  for (WeightType type : kBlockTypes) {
    const uint32_t k = ks_for(type).back(), rows = uint32_t(rng.integer(20, 40)) | 1u;
    const uint64_t row_bytes = kernels::weight_row_bytes(type, k);
    const auto data = random_blocks(rng, type, size_t(rows) * k / kernels::weight_block_elements(type));
    const uint32_t per_chunk = uint32_t(rng.integer(3, 7));
    uint64_t told = 0;
    const auto m = kernels::upload_matrix(d, "w", type, rows, k, data, per_chunk * row_bytes + 16,
                                          [&](uint64_t b) { told += b; });
    CAPTURE(kernels::weight_type_name(type));
    CHECK(m.bytes() == data.size());
    CHECK(told == data.size());
    REQUIRE(m.chunks.size() == (rows + per_chunk - 1) / per_chunk);
    uint64_t held = 0;
    for (const auto& c : m.chunks) {
      CHECK(c.buffer.bytes() == c.rows * row_bytes);
      const auto back = read_back<std::byte>(c.buffer, c.buffer.bytes());
      CHECK(std::memcmp(back.data(), data.data() + c.first_row * row_bytes, back.size()) == 0);
      held += c.buffer.bytes();
    }
    CHECK(held == data.size());
    // What the driver allocated: the payload, rounded up per buffer to its alignment (a few KiB at most).
    CHECK(d.allocated_bytes() - memory_before >= data.size());
    CHECK(d.allocated_bytes() - memory_before <= data.size() + m.chunks.size() * 4096);
  }
  {
    const uint32_t rows = 37, k = 68;
    const auto q = random_bytes(rng, rows * k);
    const Stored s = make_stored(rng, WeightType::BF16, rows);
    const auto m = kernels::upload_int8_matrix(d, "w8", rows, k, q, WeightType::BF16, s.bytes);
    CHECK(m.bytes() == q.size() + s.bytes.size());
    REQUIRE(m.row_scales);
    CHECK(m.row_scales->buffer.bytes() == s.bytes.size());
  }
  CHECK(d.allocated_bytes() == memory_before);
  CHECK(d.live_allocations() == allocations_before);
}

TEST_CASE("linear on every block format: matrix-vector and matrix-matrix against double math on the dequantized weights") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(302);
  vk::Recorder rec(test_device());
  const uint64_t memory_before = test_device().allocated_bytes();
  size_t bad = 0, cases = 0;
  for (WeightType type : kBlockTypes)
    for (uint32_t k : ks_for(type))
      for (uint32_t m : {1u, 3u, 8u, 9u, 40u}) {
        Case c{type, m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};  // odd N
        c.bias = rng.integer(-1, 2);
        c.accumulate = rng.integer(0, 1) == 1;
        if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);  // >= 3 chunks, the last ragged
        // The matvec's GPU layout (lanes across a row, several rows a workgroup) as well as this device's own.
        if (m <= 8 && rng.integer(0, 1) == 0) c.defaults = kernels::LinearTuning::Defaults::Gpu;
        bad += run_linear_case(rng, rec, c);
        ++cases;
      }
  CHECK(cases == (5 * 4 + 3 * 2) * 5);
  CHECK(bad == 0);
  CHECK(test_device().allocated_bytes() == memory_before);
}

TEST_CASE("linear on block formats: every chunking, bias and accumulation option on a fixed odd shape") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(303);
  vk::Recorder rec(test_device());
  size_t bad = 0;
  for (WeightType type : kBlockTypes)
    for (uint32_t m : {2u, 17u})
      for (int bias : {-1, 0, 2}) {
        Case c{type, m, ks_for(type).front(), 23, bias, bias == 0, 5};
        bad += run_linear_case(rng, rec, c);
        c.defaults = kernels::LinearTuning::Defaults::Gpu;
        bad += run_linear_case(rng, rec, c);
        c.no_vec16 = true;
        bad += run_linear_case(rng, rec, c);
        c.defaults = kernels::LinearTuning::Defaults::ForDevice;
        bad += run_linear_case(rng, rec, c);
      }
  CHECK(bad == 0);
}

TEST_CASE("linear on block formats and int8, register-blocked kernel: rows 2..17, tile shapes, odd N") {
  // The default for m > 1 on CPU drivers; rows of x and of W past the ends are clamped, never stored.
  if (!kernels::linear_rows_available(test_device())) return;
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(307);
  vk::Recorder rec(test_device());
  size_t bad = 0, cases = 0;
  for (WeightType type : block_types_and_i8()) {
    const uint32_t k = type == WeightType::I8 ? 36 : ks_for(type).front();
    for (uint32_t m = 2; m <= 17; ++m) {
      Case c{type, m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};  // odd N
      c.rows = true;
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
      if (type == WeightType::I8) c.scale_type = WeightType(rng.integer(0, 2));
      bad += run_linear_case(rng, rec, c);
      ++cases;
    }
    // Tile shapes at their limits, on more rows than one tile.
    for (const auto& [tile_m, per_lane] : {std::pair{1u, 1u}, {3u, 8u}, {16u, 3u}}) {
      Case c{type, 37, type == WeightType::I8 ? 260 : ks_for(type).back(), 45};
      c.rows = true;
      c.rows_tile_m = tile_m;
      c.rows_per_lane = per_lane;
      c.bias = 0;
      bad += run_linear_case(rng, rec, c);
      ++cases;
    }
  }
  CHECK(cases == 9 * (16 + 3));
  CHECK(bad == 0);
}

TEST_CASE("linear on matrix cores for every block format and int8: against double math on the dequantized weights") {
  if (!coopmat_available(WeightType::Q8_0)) return;
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(305);
  vk::Recorder rec(test_device());
  const uint64_t memory_before = test_device().allocated_bytes();
  size_t bad = 0, cases = 0;
  for (WeightType type : block_types_and_i8())
    for (uint32_t k : type == WeightType::I8 ? std::vector<uint32_t>{4, 36, 260} : ks_for(type))
      for (uint32_t m : {9u, 40u, 77u}) {
        Case c{type, m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};  // odd N
        c.coopmat = true;
        c.bias = rng.integer(-1, 2);
        c.accumulate = rng.integer(0, 1) == 1;
        if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
        if (type == WeightType::I8) c.scale_type = WeightType(rng.integer(0, 2));
        bad += run_linear_case(rng, rec, c);
        ++cases;
      }
  CHECK(cases == (5 * 4 + 3 * 2 + 3) * 3);
  CHECK(bad == 0);
  CHECK(test_device().allocated_bytes() == memory_before);
}

TEST_CASE("linear on block formats and int8 with RMSNorm folded in: CPU and GPU layouts") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(306);
  vk::Recorder rec(test_device());
  size_t bad = 0, cases = 0;
  for (WeightType type : block_types_and_i8())
    for (uint32_t m : {1u, 3u, 8u})
      for (auto defaults : {kernels::LinearTuning::Defaults::Cpu, kernels::LinearTuning::Defaults::Gpu}) {
        const uint32_t k = type == WeightType::I8 ? 36 : ks_for(type).back();
        Case c{type, m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};
        c.norm = rng.integer(0, 2);
        c.defaults = defaults;
        c.bias = rng.integer(-1, 2);
        c.no_vec16 = rng.integer(0, 2) == 0;
        if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
        bad += run_linear_case(rng, rec, c);
        ++cases;
      }
  CHECK(cases == 9 * 3 * 2);
  CHECK(bad == 0);
}

TEST_CASE("int8 weight-only linear: y = x · (q · s)ᵀ for every scale dtype") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(304);
  vk::Recorder rec(test_device());
  size_t bad = 0;
  for (WeightType scale_type : {WeightType::F32, WeightType::F16, WeightType::BF16})
    for (uint32_t k : {4u, 36u, 260u})
      for (uint32_t m : {1u, 5u, 8u, 9u, 33u}) {
        Case c{WeightType::I8, m, k, uint32_t(rng.integer(1, 50)) * 2 + 1};
        c.scale_type = scale_type;
        c.bias = rng.integer(-1, 2);
        c.accumulate = rng.integer(0, 1) == 1;
        if (rng.integer(0, 1)) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
        bad += run_linear_case(rng, rec, c);
      }
  CHECK(bad == 0);
  // Without its row scales an int8 matrix is refused by name.
  vk::Device& d = test_device();
  kernels::DeviceMatrix unscaled = make_matrix(rng, WeightType::I8, 3, 8, 0).device;
  unscaled.name = "blk.1.attn_v";
  unscaled.row_scales.reset();
  vk::Buffer x(d, 8 * 4, vk::MemoryKind::Device, "x"), y(d, 3 * 4, vk::MemoryKind::Device, "y");
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_linear(d, rec, kernels::LinearArgs{&unscaled, nullptr, &x, &y, 1}),
                       doctest::Contains("blk.1.attn_v"), Error);
  rec.submit_and_wait();
}

TEST_CASE("embedding gathers dequantized rows from quantized tables, bit-exact") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(305);
  vk::Recorder rec(d);
  for (WeightType type : block_types_and_i8()) {
    const uint32_t hidden = type == WeightType::I8 ? 36 : ks_for(type)[ks_for(type).size() > 2 ? 1 : 0];
    const uint32_t per_chunk = uint32_t(rng.integer(2, 9));
    const uint32_t vocab = per_chunk * 3 + uint32_t(rng.integer(1, int(per_chunk) - 1));
    const QuantMatrix t = make_matrix(rng, type, vocab, hidden, per_chunk, WeightType::F16);
    std::vector<int32_t> ids;
    for (const auto& c : t.device.chunks) ids.insert(ids.end(), {int32_t(c.first_row), int32_t(c.first_row + c.rows - 1)});
    for (int i = 0; i < 7; ++i) ids.push_back(rng.integer(0, int(vocab) - 1));
    const vk::Buffer idb = device_buffer(ids, "ids");
    vk::Buffer out(d, ids.size() * hidden * 4, vk::MemoryKind::Device, "out");
    rec.begin();
    kernels::record_fill(d, rec, out, 0, ids.size() * hidden, std::numeric_limits<float>::quiet_NaN());
    kernels::record_embedding(d, rec, t.device, idb, uint32_t(ids.size()), out);
    rec.submit_and_wait();
    const auto got = read_back<float>(out, ids.size() * hidden);
    size_t bad = 0;
    for (size_t r = 0; r < ids.size(); ++r)
      for (uint32_t c = 0; c < hidden; ++c) {
        // Every weight is one f32 rounding of exact terms (see the linear tolerance), so the gather gives exactly the
        // exact value rounded to f32. I8: q · s, one rounding too.
        const float expected = float(t.reference.values[size_t(ids[r]) * hidden + c]);
        const float value = got[r * hidden + c];
        // (Compared as floats: a zero weight may come out as -0 where the reference has +0.)
        if (value != expected && bad++ < 5)
          FAIL_CHECK(std::string(kernels::weight_type_name(type)) << " row " << ids[r] << " col " << c << ": " << value
                                                                  << ", expected " << expected);
      }
    CHECK(bad == 0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// INT8 quantizers.

namespace {

// round half to even, written out (not through the FPU's rounding mode).
int round_half_even(float v) {
  const double f = std::floor(double(v)), rest = double(v) - f;
  int64_t i = int64_t(f);
  if (rest > 0.5 || (rest == 0.5 && (i & 1) != 0)) ++i;
  return int(i);
}

}  // namespace

TEST_CASE("quantize_matrix_int8 gives the reference integers and scales, streaming in pieces and chunks") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(306);
  const uint64_t memory_before = d.allocated_bytes();
  struct Shape {
    WeightType source;
    uint32_t rows, cols, rows_per_chunk;
  };
  // The last: more than one host piece (1 MiB of int8 rows) within a chunk.
  for (const Shape& s : {Shape{WeightType::F32, 37, 36, 0}, Shape{WeightType::F16, 61, 132, 8},
                         Shape{WeightType::BF16, 29, 8, 4}, Shape{WeightType::BF16, 1100, 2048, 0}}) {
    CAPTURE(kernels::weight_type_name(s.source));
    CAPTURE(s.rows);
    Stored w = make_stored(rng, s.source, size_t(s.rows) * s.cols);
    // Row 0 all zero; row 1 with exact ties: max 127 gives scale 1, and n + 0.5 must round to even.
    const uint32_t eb = kernels::weight_type_bytes(s.source);
    auto set = [&](size_t i, float v) {
      if (s.source == WeightType::F32) std::memcpy(&w.bytes[i * 4], &v, 4);
      else {
        const uint16_t h = s.source == WeightType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(&w.bytes[i * 2], &h, 2);
      }
    };
    for (uint32_t c = 0; c < s.cols; ++c) set(c, c % 2 ? 0.0f : -0.0f);
    for (uint32_t c = 0; c < s.cols; ++c) set(s.cols + c, c == 0 ? 127.0f : float(rng.integer(-20, 19)) + 0.5f);
    const uint64_t chunk_bytes = s.rows_per_chunk ? s.rows_per_chunk * s.cols + 16 : 0;
    uint64_t told = 0;
    const auto m = kernels::quantize_matrix_int8(d, "proj", s.source, s.rows, s.cols, w.bytes, chunk_bytes,
                                                 [&](uint64_t b) { told += b; });
    CHECK(told == w.bytes.size());
    CHECK(m.type == WeightType::I8);
    if (s.rows_per_chunk) CHECK(m.chunks.size() == (s.rows + s.rows_per_chunk - 1) / s.rows_per_chunk);
    REQUIRE(m.row_scales);
    CHECK(m.row_scales->type == WeightType::F32);
    CHECK(m.bytes() == uint64_t(s.rows) * s.cols + uint64_t(s.rows) * 4);
    const auto scales = read_back<float>(m.row_scales->buffer, s.rows);
    size_t bad = 0;
    for (const auto& chunk : m.chunks) {
      const auto q = read_back<int8_t>(chunk.buffer, size_t(chunk.rows) * s.cols);
      for (uint32_t r = 0; r < chunk.rows; ++r) {
        const uint32_t row = chunk.first_row + r;
        float largest = 0;
        std::vector<float> v(s.cols);
        for (uint32_t c = 0; c < s.cols; ++c) {
          uint32_t bits = 0;
          std::memcpy(&bits, &w.bytes[(size_t(row) * s.cols + c) * eb], eb);
          v[c] = s.source == WeightType::F32 ? std::bit_cast<float>(bits)
                 : s.source == WeightType::F16 ? f16_to_f32(uint16_t(bits))
                                               : bf16_to_f32(uint16_t(bits));
          largest = std::max(largest, std::fabs(v[c]));
        }
        const float scale = largest / 127.0f;  // float32 division, as torch does it on float32 tensors
        if (std::bit_cast<uint32_t>(scales[row]) != std::bit_cast<uint32_t>(scale) && bad++ < 5)
          FAIL_CHECK("row " << row << " scale " << scales[row] << ", expected " << scale);
        for (uint32_t c = 0; c < s.cols; ++c) {
          const int expected = scale == 0 ? 0 : std::clamp(round_half_even(v[c] / scale), -127, 127);
          if (q[size_t(r) * s.cols + c] != expected && bad++ < 5)
            FAIL_CHECK("row " << row << " col " << c << ": q = " << int(q[size_t(r) * s.cols + c]) << ", expected "
                              << expected << " (w = " << v[c] << ", scale = " << scale << ")");
        }
        if (row == 1) {  // the ties: 2.5 -> 2, -3.5 -> -4, ...
          for (uint32_t c = 1; c < s.cols; ++c)
            CHECK(q[size_t(r) * s.cols + c] == round_half_even(v[c]));
        }
      }
    }
    CHECK(scales[0] == 0.0f);
    CHECK(scales[1] == 1.0f);
    CHECK(bad == 0);
  }
  std::vector<float> inf_row(8, 1.0f);
  inf_row[3] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(kernels::quantize_matrix_int8(d, "blk.2.ffn_gate", WeightType::F32, 1, 8, std::as_bytes(std::span(inf_row))),
                       doctest::Contains("blk.2.ffn_gate"), Error);
  CHECK_THROWS_WITH_AS(kernels::quantize_matrix_int8(d, "odd", WeightType::F32, 1, 7, std::as_bytes(std::span(inf_row)).first(28)),
                       doctest::Contains("multiple of 4"), Error);
  CHECK(d.allocated_bytes() == memory_before);
}

namespace {

// The activation quantization as the fixtures' float32 simulation states it; a static scale > 0 replaces max|x| / 127.
void quantize_row_reference(const float* x, uint32_t k, float static_scale, int8_t* q, float& scale) {
  float largest = 0;
  for (uint32_t i = 0; i < k; ++i) largest = std::max(largest, std::fabs(x[i]));
  scale = static_scale > 0 ? static_scale : largest / 127.0f;
  for (uint32_t i = 0; i < k; ++i) q[i] = int8_t(scale == 0 ? 0 : std::clamp(round_half_even(x[i] / scale), -128, 127));
}

// Runs record_quantize_rows on x [m, k] (poisoned outputs; blocked: two or three rows of x a binding, at windows that
// start off the alignment) and compares every scale and every byte, row padding included, with the reference.
// Returns the number of mismatches; `first_scale` gets row 0's scale.
size_t check_quantize_rows(vk::Recorder& rec, const std::vector<float>& x, uint32_t m, uint32_t k, float static_scale,
                           bool blocked, float& first_scale) {
  vk::Device& d = test_device();
  const uint32_t words = kernels::quantized_row_words(k);
  const vk::Buffer xb = device_buffer(x, "x");
  std::vector<uint32_t> poison(size_t(m) * words, 0xdeadbeefu);
  const vk::Buffer qb = device_buffer(poison, "xq");
  vk::Buffer sb(d, m * 4, vk::MemoryKind::Device, "xscale");
  rec.begin();
  kernels::record_fill(d, rec, sb, 0, m, std::numeric_limits<float>::quiet_NaN());
  kernels::record_quantize_rows(d, rec, xb, qb, sb, m, k, static_scale, blocked ? 2 * k * 4 + 16 + 4 : 0);
  rec.submit_and_wait();
  const auto q = read_back<uint32_t>(qb, size_t(m) * words);
  const auto scales = read_back<float>(sb, m);
  first_scale = scales[0];
  size_t bad = 0;
  for (uint32_t r = 0; r < m; ++r) {
    std::vector<int8_t> expected(size_t(words) * 4, 0);  // the tail word's padding is zero
    float scale;
    quantize_row_reference(&x[size_t(r) * k], k, static_scale, expected.data(), scale);
    if (std::bit_cast<uint32_t>(scales[r]) != std::bit_cast<uint32_t>(scale) && bad++ < 5)
      FAIL_CHECK("row " << r << ": scale " << scales[r] << ", expected " << scale);
    for (uint32_t i = 0; i < words * 4; ++i) {
      const int8_t got = int8_t(q[size_t(r) * words + i / 4] >> (8 * (i % 4)));
      if (got != expected[i] && bad++ < 5)
        FAIL_CHECK("row " << r << " element " << i << ": q = " << int(got) << ", expected " << int(expected[i])
                          << " (x = " << (i < k ? x[size_t(r) * k + i] : 0.f) << ", scale = " << scale << ")");
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("record_quantize_rows is bit-exact with the float32 simulation, ties and zero rows included") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(307);
  vk::Recorder rec(d);
  for (uint32_t k : {1u, 5u, 64u, 199u, 1000u})
    for (uint32_t m : {1u, 7u, 40u})
      for (bool blocked : {false, true}) {
        CAPTURE(k);
        CAPTURE(m);
        CAPTURE(blocked);
        std::vector<float> x(size_t(m) * k);
        for (uint32_t r = 0; r < m; ++r) {
          float* row = &x[size_t(r) * k];
          const int kind = r == 0 ? 0 : rng.integer(1, 4);
          if (kind == 0) {  // a zero row (signed zeros): scale 0, q 0, no NaN
            for (uint32_t i = 0; i < k; ++i) row[i] = i % 2 ? -0.0f : 0.0f;
          } else if (kind == 1) {  // exact ties: a power-of-two scale, x / scale = n + 0.5
            const float scale = std::ldexp(1.0f, rng.integer(-12, 6));
            for (uint32_t i = 0; i < k; ++i) row[i] = (float(rng.integer(-127, 126)) + 0.5f) * scale;
            row[rng.integer(0, int(k) - 1)] = 127 * scale * (rng.integer(0, 1) ? 1 : -1);
          } else if (kind == 2) {  // near ties for an arbitrary scale: within a few ulps of (n + 0.5) · scale, where
                                   // the float32 rounding of x / scale decides (double rounding included)
            const float largest = rng.uniform(0.01f, 100.f), scale = largest / 127.0f;
            for (uint32_t i = 0; i < k; ++i) {
              float v = (float(rng.integer(-127, 126)) + 0.5f) * scale;
              for (int steps = rng.integer(-3, 3); steps != 0; steps += steps > 0 ? -1 : 1)
                v = std::nextafter(v, steps > 0 ? largest : -largest);
              row[i] = std::clamp(v, -largest, largest);
            }
            row[rng.integer(0, int(k) - 1)] = largest;
          } else {  // ordinary activations, of any size
            const float typical = std::ldexp(1.0f, rng.integer(-10, 10));
            for (uint32_t i = 0; i < k; ++i) row[i] = rng.normal(typical);
          }
        }
        float first_scale = -1;
        CHECK(check_quantize_rows(rec, x, m, k, 0, blocked, first_scale) == 0);
        CHECK(first_scale == 0.0f);
      }
}

// compressed-tensors' static activations: one scale for the whole tensor, x / scale may pass ±127 (clamped) and
// may land on exact ties; bit-exact with the float32 reference like the dynamic path.
TEST_CASE("record_quantize_rows with a static scale clamps and rounds like the float32 simulation") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(311);
  vk::Recorder rec(d);
  for (uint32_t k : {3u, 64u, 257u})
    for (uint32_t m : {1u, 9u})
      for (bool blocked : {false, true}) {
        CAPTURE(k);
        CAPTURE(m);
        CAPTURE(blocked);
        const float scale = rng.integer(0, 1) ? std::ldexp(1.0f, rng.integer(-8, 2)) : rng.uniform(1e-3f, 0.5f);
        std::vector<float> x(size_t(m) * k);
        for (size_t i = 0; i < x.size(); ++i) {
          const int kind = rng.integer(0, 3);
          if (kind == 0) x[i] = (float(rng.integer(-140, 140)) + 0.5f) * scale;  // ties, some beyond the clamp
          else if (kind == 1) x[i] = rng.uniform(-300.f, 300.f) * scale;           // far beyond ±127
          else x[i] = rng.normal(30 * scale);
        }
        float first_scale = -1;
        CHECK(check_quantize_rows(rec, x, m, k, scale, blocked, first_scale) == 0);
      }
  vk::Buffer xb(d, 16, vk::MemoryKind::Device, "x"), qb(d, 4, vk::MemoryKind::Device, "xq"),
      sb(d, 4, vk::MemoryKind::Device, "xscale");
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_quantize_rows(d, rec, xb, qb, sb, 1, 4, -1.0f), doctest::Contains("static scale"), Error);
  CHECK_THROWS_WITH_AS(kernels::record_quantize_rows(d, rec, xb, qb, sb, 1, 4, std::numeric_limits<float>::infinity()),
                       doctest::Contains("static scale"), Error);
}

namespace {

struct W8A8Case {
  uint32_t m = 1, k = 4, n = 1;
  int bias = -1;
  bool accumulate = false;
  uint32_t rows_per_chunk = 0, rows_per_block = 0, y_pad = 0;
  bool packed = false;
  bool coopmat = false;  // the int8 cooperative-matrix kernel for m > 8
  bool rows = false;     // the register-blocked kernel for m > 8
};

// Runs record_linear_w8a8 on random int8 operands (every byte pattern, -128 included) and returns y with the inputs.
struct W8A8Run {
  std::vector<float> y, y0, xscale;
  std::vector<int8_t> xq;
  QuantMatrix w;
  Stored bias;
};
W8A8Run run_w8a8(Rng& rng, vk::Recorder& rec, const W8A8Case& c) {
  vk::Device& d = test_device();
  W8A8Run run;
  run.w = make_matrix(rng, WeightType::I8, c.n, c.k, c.rows_per_chunk, WeightType::BF16);
  kernels::DeviceVector bias;
  if (c.bias >= 0) {
    run.bias = make_stored(rng, WeightType(c.bias), c.n);
    bias = kernels::upload_vector(d, "b", WeightType(c.bias), c.n, run.bias.bytes);
  }
  const auto xq_bytes = random_bytes(rng, size_t(c.m) * c.k);
  run.xq.resize(xq_bytes.size());
  std::memcpy(run.xq.data(), xq_bytes.data(), xq_bytes.size());
  run.xscale = rng.uniform_vector(c.m, 0.f, 0.02f);
  const uint32_t ys = c.n + c.y_pad;
  run.y0 = rng.uniform_vector(size_t(c.m - 1) * ys + c.n, -4.f, 4.f);
  const vk::Buffer qb = device_buffer(xq_bytes, "xq");
  const vk::Buffer sb = device_buffer(run.xscale, "xscale");
  const vk::Buffer yb = device_buffer(run.y0, "y");
  kernels::W8A8Args args{&run.w.device, c.bias >= 0 ? &bias : nullptr, &qb, &sb, &yb, c.m};
  args.y_stride = c.y_pad ? ys : 0;
  args.accumulate = c.accumulate;
  args.kernels = c.coopmat  ? kernels::W8A8Kernels::CoopMat
                 : c.rows   ? kernels::W8A8Kernels::Rows
                 : c.packed ? kernels::W8A8Kernels::PackedDot
                            : kernels::W8A8Kernels::Plain;
  if (c.rows_per_block)  // room for that many rows of xq and of y, plus an alignment's worth of slack
    args.max_binding_bytes = std::max<uint64_t>(uint64_t(c.rows_per_block - 1) * ys * 4 + c.n * 4,
                                                uint64_t(c.rows_per_block) * c.k) +
                             d.caps().min_storage_offset_alignment + 4;
  rec.begin();
  if (!c.accumulate) kernels::record_fill(d, rec, yb, 0, run.y0.size(), std::numeric_limits<float>::quiet_NaN());
  kernels::record_linear_w8a8(d, rec, args);
  rec.submit_and_wait();
  run.y = read_back<float>(yb, run.y0.size());
  return run;
}

std::string describe(const W8A8Case& c) {
  return "m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) + " n=" + std::to_string(c.n) +
         " bias=" + std::to_string(c.bias) + " accumulate=" + std::to_string(c.accumulate) +
         " rows_per_chunk=" + std::to_string(c.rows_per_chunk) + " rows_per_block=" + std::to_string(c.rows_per_block) +
         " y_pad=" + std::to_string(c.y_pad) + " packed=" + std::to_string(c.packed) +
         " coopmat=" + std::to_string(c.coopmat) + " rows=" + std::to_string(c.rows);
}

size_t check_w8a8(const W8A8Case& c, const W8A8Run& run) {
  size_t bad = 0;
  const uint32_t ys = c.n + c.y_pad;
  for (uint32_t m = 0; m < c.m; ++m)
    for (uint32_t n = 0; n < ys; ++n) {
      const size_t at = size_t(m) * ys + n;
      if (at >= run.y.size()) break;
      if (n >= c.n) {
        const bool same = c.accumulate ? run.y[at] == run.y0[at] : std::isnan(run.y[at]);
        if (!same && bad++ < 5) FAIL_CHECK(describe(c) << ": padding y[" << m << "][" << n << "] was written");
        continue;
      }
      int64_t dot = 0;
      for (uint32_t k = 0; k < c.k; ++k)
        dot += int64_t(run.xq[size_t(m) * c.k + k]) * int8_t(run.w.bytes[size_t(n) * c.k + k]);
      double exact = double(dot) * run.xscale[m] * run.w.row_scales[n], magnitude = std::fabs(exact);
      if (c.bias >= 0) exact += run.bias.values[n], magnitude += std::fabs(run.bias.values[n]);
      if (c.accumulate) exact += run.y0[at], magnitude += std::fabs(run.y0[at]);
      // The int32 dot product is exact; then float(dot), two products, and up to two additions round once each:
      // 5u·(|dot·sx·sw| + |b| + |y0|) bounds them, and any error in the integer sum (at least |sx·sw|) is far larger.
      const double tolerance = 5 * kU * magnitude + 1e-30;
      if (!(std::fabs(run.y[at] - exact) <= tolerance) && bad++ < 5)
        FAIL_CHECK(describe(c) << ": y[" << m << "][" << n << "] = " << run.y[at] << ", expected " << exact << " ± "
                               << tolerance << " (dot " << dot << ")");
    }
  return bad;
}

}  // namespace

TEST_CASE("w8a8 linear: exact int32 dot products, y = float(dot) · sx · sw (+ b), matrix-vector and matrix-matrix") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(308);
  vk::Recorder rec(test_device());
  const uint64_t memory_before = test_device().allocated_bytes();
  size_t bad = 0;
  for (uint32_t m : {1u, 3u, 8u, 9u, 40u, 70u})
    for (uint32_t k : {4u, 36u, 260u, 1024u}) {
      W8A8Case c{m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      if (rng.integer(0, 1)) c.y_pad = uint32_t(rng.integer(1, 5));
      if (c.n >= 5 && rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
      if (m >= 2 && rng.integer(0, 2) == 0) c.rows_per_block = uint32_t(rng.integer(1, int(m) - 1));
      bad += check_w8a8(c, run_w8a8(rng, rec, c));
    }
  CHECK(bad == 0);
  CHECK(test_device().allocated_bytes() == memory_before);

  // Bad arguments are refused naming the weight.
  vk::Device& d = test_device();
  vk::Buffer xq(d, 8, vk::MemoryKind::Device, "xq"), xs(d, 4, vk::MemoryKind::Device, "xs"),
      y(d, 5 * 4, vk::MemoryKind::Device, "y");
  kernels::DeviceMatrix named = make_matrix(rng, WeightType::I8, 5, 8, 0).device;
  named.name = "blk.0.mlp.down_proj";
  rec.begin();
  kernels::W8A8Args too_many{&named, nullptr, &xq, &xs, &y, 2};
  CHECK_THROWS_WITH_AS(kernels::record_linear_w8a8(d, rec, too_many), doctest::Contains("blk.0.mlp.down_proj"), Error);
  const QuantMatrix q8 = make_matrix(rng, WeightType::Q8_0, 5, 32, 0);
  CHECK_THROWS_WITH_AS(kernels::record_linear_w8a8(d, rec, kernels::W8A8Args{&q8.device, nullptr, &xq, &xs, &y, 1}),
                       doctest::Contains("q8_0"), Error);
  rec.submit_and_wait();
}

TEST_CASE("w8a8: activations quantized on the device, then the integer linear, match the float32 simulation") {
  // The whole w8a8 step as compressed-tensors' simulation states it: qx = quantize(x), y = (qx · qwᵀ) · sx · sw.
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(309);
  vk::Recorder rec(d);
  for (uint32_t m : {1u, 11u}) {
    const uint32_t k = 160, n = 67;
    const QuantMatrix w = make_matrix(rng, WeightType::I8, n, k, 0, WeightType::BF16);
    std::vector<float> x(size_t(m) * k);
    for (auto& v : x) v = rng.normal(3.f);
    const vk::Buffer xb = device_buffer(x, "x");
    vk::Buffer xq(d, size_t(m) * k, vk::MemoryKind::Device, "xq"), xs(d, m * 4, vk::MemoryKind::Device, "xs"),
        y(d, size_t(m) * n * 4, vk::MemoryKind::Device, "y");
    rec.begin();
    kernels::record_quantize_rows(d, rec, xb, xq, xs, m, k);
    kernels::record_linear_w8a8(d, rec, kernels::W8A8Args{&w.device, nullptr, &xq, &xs, &y, m});
    rec.submit_and_wait();
    const auto got = read_back<float>(y, size_t(m) * n);
    size_t bad = 0;
    for (uint32_t r = 0; r < m; ++r) {
      std::vector<int8_t> q(k);
      float sx;
      quantize_row_reference(&x[size_t(r) * k], k, 0, q.data(), sx);
      for (uint32_t j = 0; j < n; ++j) {
        double exact = 0, magnitude = 0;
        for (uint32_t i = 0; i < k; ++i) {
          exact += double(q[i]) * sx * w.reference.values[size_t(j) * k + i];
          magnitude += std::fabs(double(q[i]) * sx * w.reference.values[size_t(j) * k + i]);
        }
        // As the w8a8 test: exact integers, then three roundings of the float epilogue.
        if (!(std::fabs(got[size_t(r) * n + j] - exact) <= 4 * kU * magnitude + 1e-30) && bad++ < 5)
          FAIL_CHECK("y[" << r << "][" << j << "] = " << got[size_t(r) * n + j] << ", expected " << exact);
      }
    }
    CHECK(bad == 0);
  }
}

// Runs `plain` (the plain kernels) and `other` (another kernel choice) on the same random operands: the sums are exact
// int32, so every output must have the same bits; `other` is also checked against double math. Returns bad elements.
size_t same_bits_as_plain(Rng& rng, vk::Recorder& rec, const W8A8Case& plain, const W8A8Case& other) {
  const uint64_t seed = uint64_t(rng.integer(0, 1 << 30));
  Rng a(seed), b(seed);  // the same operands for both runs
  const W8A8Run want = run_w8a8(a, rec, plain), got = run_w8a8(b, rec, other);
  size_t bad = check_w8a8(other, got);
  for (size_t i = 0; i < want.y.size(); ++i)
    if (std::bit_cast<uint32_t>(want.y[i]) != std::bit_cast<uint32_t>(got.y[i]) && bad++ < 5)
      FAIL_CHECK(describe(other) << ": y[" << i << "] = " << got.y[i] << ", the plain kernels give " << want.y[i]);
  return bad;
}

TEST_CASE("w8a8: the packed 4x8-bit dot product kernels give the plain kernels' bits") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(310);
  vk::Recorder rec(d);
  if (!kernels::w8a8_packed_dot_available(d)) {
    // CI's build with a newer glslc sets this: there the packed kernels must exist and run, not skip quietly.
    REQUIRE_MESSAGE(std::getenv("INFERNO_EXPECT_PACKED_DOT") == nullptr,
                    "INFERNO_EXPECT_PACKED_DOT is set but the packed dot-product kernels are not available");
    MESSAGE("packed dot products not available (this build's glslc lacks GL_EXT_integer_dot_product, or the device "
            "lacks shaderIntegerDotProduct): only the plain integer kernels run");
    W8A8Case c{1, 8, 3};
    c.packed = true;
    CHECK_THROWS_WITH_AS(run_w8a8(rng, rec, c), doctest::Contains("not available"), Error);
    return;
  }
  size_t bad = 0;
  for (uint32_t m : {1u, 6u, 9u, 70u})
    for (uint32_t k : {4u, 132u, 1024u}) {
      W8A8Case c{m, k, uint32_t(rng.integer(1, 40)) * 2 + 1};
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      W8A8Case packed = c;
      packed.packed = true;
      bad += same_bits_as_plain(rng, rec, c, packed);
    }
  CHECK(bad == 0);
}

TEST_CASE("w8a8: the register-blocked kernel (CPU drivers' default for m > 8) gives the plain kernels' bits") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(312);
  vk::Recorder rec(d);
  if (!kernels::linear_rows_available(d)) {
    MESSAGE("the register-blocked kernel cannot run on " << d.caps().name << ": skipped");
    W8A8Case c{20, 8, 3};
    c.rows = true;
    CHECK_THROWS_WITH_AS(run_w8a8(rng, rec, c), doctest::Contains("not available"), Error);
    return;
  }
  size_t bad = 0;
  // k: whole 16-byte units (16, 1024) and not (4, 36, 132: the word-by-word loop); m: one tile of 8 rows or
  // several, with partial tiles; n odd, so the last workgroup's lanes clamp their rows of W.
  for (uint32_t m : {9u, 17u, 70u})
    for (uint32_t k : {4u, 16u, 36u, 132u, 1024u}) {
      W8A8Case c{m, k, uint32_t(rng.integer(1, 80)) * 2 + 1};
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      if (rng.integer(0, 1)) c.y_pad = uint32_t(rng.integer(1, 5));
      if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
      if (rng.integer(0, 2) == 0) c.rows_per_block = uint32_t(rng.integer(9, int(m)));
      W8A8Case rows = c;
      rows.rows = true;
      bad += same_bits_as_plain(rng, rec, c, rows);
    }
  CHECK(bad == 0);
}

TEST_CASE("w8a8 on matrix cores (int8 cooperative matrices) gives the plain kernels' bits") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(311);
  vk::Recorder rec(d);
  if (!kernels::w8a8_coopmat_available(d)) {
    REQUIRE_MESSAGE(std::getenv("INFERNO_EXPECT_COOPMAT") == nullptr,
                    "INFERNO_EXPECT_COOPMAT is set but the int8 cooperative-matrix kernel is not available");
    MESSAGE("int8 cooperative matrices not available on " << d.caps().name << ": skipped");
    W8A8Case c{20, 8, 3};
    c.coopmat = true;
    CHECK_THROWS_WITH_AS(run_w8a8(rng, rec, c), doctest::Contains("not available"), Error);
    return;
  }
  size_t bad = 0;
  for (uint32_t m : {9u, 33u, 70u, 129u})
    for (uint32_t k : {4u, 36u, 132u, 1024u}) {
      W8A8Case c{m, k, uint32_t(rng.integer(1, 80)) * 2 + 1};
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      if (rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
      W8A8Case matrix_cores = c;
      matrix_cores.coopmat = true;
      bad += same_bits_as_plain(rng, rec, c, matrix_cores);
    }
  CHECK(bad == 0);
}
