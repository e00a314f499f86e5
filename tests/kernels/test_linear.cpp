// record_linear against a double-precision reference computed from the very values the device holds (weights and
// biases rounded to their dtype, f32 activations).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "coopmat_support.hpp"
#include "gpu_support.hpp"
#include "stored_weights.hpp"
#include "kernels/fill.hpp"
#include "kernels/linear.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::WeightType;

namespace {

constexpr WeightType kTypes[] = {WeightType::F32, WeightType::F16, WeightType::BF16};

struct Case {
  WeightType type = WeightType::F32;
  uint32_t m = 1, k = 1, n = 1;
  int bias = -1;  // -1: none, else the WeightType of the bias
  bool accumulate = false;
  uint32_t x_pad = 0, y_pad = 0;   // extra floats between rows
  uint32_t rows_per_chunk = 0;     // 0: one chunk
  uint32_t rows_per_block = 0;     // 0: x and y bound whole
  kernels::LinearTuning tuning;
  int norm = -1;  // RMSNorm folded in: -1 none, else the WeightType of its weight
};

std::string describe(const Case& c) {
  return std::string(kernels::weight_type_name(c.type)) + " m=" + std::to_string(c.m) + " k=" + std::to_string(c.k) +
         " n=" + std::to_string(c.n) + " bias=" + (c.bias < 0 ? "none" : kernels::weight_type_name(WeightType(c.bias))) +
         " accumulate=" + std::to_string(c.accumulate) + " x_pad=" + std::to_string(c.x_pad) +
         " y_pad=" + std::to_string(c.y_pad) + " rows_per_chunk=" + std::to_string(c.rows_per_chunk) +
         " rows_per_block=" + std::to_string(c.rows_per_block) +
         " matvec_threads=" + std::to_string(c.tuning.matvec_threads) + " matvec_rows=" + std::to_string(c.tuning.matvec_rows) +
         " matvec_max_m=" + std::to_string(c.tuning.matvec_max_m) +
         (c.tuning.matmul == kernels::LinearTuning::Matmul::CoopMat ? " coopmat" : "") +
         (c.tuning.matmul == kernels::LinearTuning::Matmul::Tiled ? " tiled" : "") +
         (c.tuning.matmul == kernels::LinearTuning::Matmul::Rows
              ? " rows tile_m=" + std::to_string(c.tuning.rows_tile_m) + " per_lane=" + std::to_string(c.tuning.rows_per_lane)
              : "") +
         (c.norm >= 0 ? std::string(" norm=") + kernels::weight_type_name(WeightType(c.norm)) : "") +
         (c.tuning.defaults == kernels::LinearTuning::Defaults::Gpu ? " gpu-defaults" : "");
}

// Runs one case on the device and checks every element of y, padding included. Returns the number of bad elements.
size_t run_case(Rng& rng, vk::Recorder& rec, const Case& c) {
  vk::Device& d = test_device();
  const uint32_t xs = c.k + c.x_pad, ys = c.n + c.y_pad;
  const Stored w = make_stored(rng, c.type, size_t(c.n) * c.k);
  const uint64_t row_bytes = uint64_t(c.k) * kernels::weight_type_bytes(c.type);
  const uint64_t chunk_bytes = c.rows_per_chunk ? c.rows_per_chunk * row_bytes + 16 : 0;
  const kernels::DeviceMatrix weight = kernels::upload_matrix(d, "w", c.type, c.n, c.k, w.bytes, chunk_bytes);
  if (c.rows_per_chunk) REQUIRE(weight.chunks.size() == (c.n + c.rows_per_chunk - 1) / c.rows_per_chunk);

  Stored b;
  kernels::DeviceVector bias;
  if (c.bias >= 0) {
    b = make_stored(rng, WeightType(c.bias), c.n);
    bias = kernels::upload_vector(d, "b", WeightType(c.bias), c.n, b.bytes);
  }
  const size_t x_count = size_t(c.m - 1) * xs + c.k, y_count = size_t(c.m - 1) * ys + c.n;
  const std::vector<float> x = rng.uniform_vector(x_count);
  // Accumulation starts from random values; otherwise y is poisoned with NaN so that any element left unwritten shows.
  // The padding between rows must come out as it went in.
  const std::vector<float> y0 = rng.uniform_vector(y_count, -4.f, 4.f);
  const vk::Buffer xb = device_buffer(x, "x");
  const vk::Buffer yb = device_buffer(y0, "y");

  kernels::LinearArgs args;
  args.weight = &weight;
  args.bias = c.bias >= 0 ? &bias : nullptr;
  args.x = &xb;
  args.y = &yb;
  args.m = c.m;
  args.x_stride = c.x_pad ? xs : 0;
  args.y_stride = c.y_pad ? ys : 0;
  args.accumulate = c.accumulate;
  Stored g;
  kernels::DeviceVector norm;
  if (c.norm >= 0) {
    g = make_stored(rng, WeightType(c.norm), c.k);
    norm = kernels::upload_vector(d, "norm", WeightType(c.norm), c.k, g.bytes);
    args.norm = &norm;
    args.norm_eps = 1e-5f;
  }
  const std::vector<double> inv_rms = folded_norm_scales(x, c.m, xs, c.k, c.norm >= 0 ? args.norm_eps : -1);
  if (c.rows_per_block)  // room for that many rows of x and of y, plus an alignment's worth of slack
    args.max_binding_bytes = 4 * std::max<uint64_t>(uint64_t(c.rows_per_block - 1) * xs + c.k,
                                                    uint64_t(c.rows_per_block - 1) * ys + c.n) +
                             d.caps().min_storage_offset_alignment + 4;
  rec.begin();
  if (!c.accumulate) kernels::record_fill(d, rec, yb, 0, y_count, std::numeric_limits<float>::quiet_NaN());
  kernels::record_linear(d, rec, args, c.tuning);
  rec.submit_and_wait();
  const std::vector<float> y = read_back<float>(yb, y_count);

  // Matrix cores take the rows past the matrix·vector kernel's reach.
  const uint32_t matvec_max_m = c.tuning.matvec_max_m ? c.tuning.matvec_max_m : 8;
  const bool coopmat = c.m > matvec_max_m && kernels::linear_uses_coopmat(d, c.type, c.tuning);
  size_t bad = 0;
  for (uint32_t m = 0; m < c.m; ++m) {
    for (uint32_t n = 0; n < ys; ++n) {
      const size_t at = size_t(m) * ys + n;
      if (at >= y_count) break;
      if (n >= c.n) {  // padding between rows: untouched (NaN after poisoning)
        const bool same = c.accumulate ? y[at] == y0[at] : std::isnan(y[at]);
        if (!same && bad++ < 5) FAIL_CHECK(describe(c) << ": padding y[" << m << "][" << n << "] was written");
        continue;
      }
      double exact = 0, magnitude = 0, operands = 0;
      for (uint32_t k = 0; k < c.k; ++k) {
        const double xk = c.norm >= 0 ? x[size_t(m) * xs + k] * g.values[k] * inv_rms[m] : x[size_t(m) * xs + k];
        const double term = xk * w.values[size_t(n) * c.k + k];
        exact += term;
        magnitude += std::fabs(term);
        operands += std::fabs(x[size_t(m) * xs + k]) + std::fabs(w.values[size_t(n) * c.k + k]);
      }
      if (c.bias >= 0) exact += b.values[n], magnitude += std::fabs(b.values[n]);
      if (c.accumulate) exact += y0[at], magnitude += std::fabs(y0[at]);
      // Tolerance: every product is an f32 rounding (x is f32, w exact in f32), and any order of adding K+2 terms in
      // f32 errs by at most (K+1)·u·Σ|term| with u = 2^-24 (the standard bound for recursive summation; trees and
      // fma only tighten it). So (K+3)·u·Σ|term| cannot fail a correct kernel, while a term lost or read from the
      // wrong place (typical size Σ|term|/K) exceeds it by a factor of ~(1/(K²u)) ≥ 16 for K ≤ 1000.
      const double tolerance = coopmat       ? f16_product_tolerance(c.k, magnitude, operands)
                               : c.norm >= 0 ? folded_norm_tolerance(c.k, magnitude)
                                             : (c.k + 3) * std::ldexp(1.0, -24) * magnitude + 1e-30;
      if (!(std::fabs(y[at] - exact) <= tolerance) && bad++ < 5)
        FAIL_CHECK(describe(c) << ": y[" << m << "][" << n << "] = " << y[at] << ", expected " << exact << " ± "
                               << tolerance);
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("linear matches a double reference for every dtype, odd sizes, bias, accumulation, chunks and strides") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(101);
  vk::Recorder rec(test_device());
  const uint64_t memory_before = test_device().allocated_bytes();
  size_t cases = 0, bad = 0;
  for (WeightType type : kTypes)
    for (uint32_t m : {1u, 2u, 5u, 8u, 9u, 33u, 70u})
      for (uint32_t k : {1u, 3u, 17u, 64u, 257u, 1000u})
        for (uint32_t n : {1u, 5u, 63u, 130u, 511u}) {
          Case c{type, m, k, n};
          // Options drawn at random each run: over 630 cases each value of each occurs many times.
          c.bias = rng.integer(-1, 2);
          c.accumulate = rng.integer(0, 1) == 1;
          if (rng.integer(0, 1)) c.x_pad = uint32_t(rng.integer(1, 5));
          if (rng.integer(0, 1)) c.y_pad = uint32_t(rng.integer(1, 5));
          // At least 3 chunks, the last one ragged (n = 1 cannot be split).
          if (n >= 5 && rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, n / 3 - 1);
          // Activations bound a few rows at a time, at windows that start off the alignment.
          if (m >= 2 && rng.integer(0, 3) == 0) c.rows_per_block = uint32_t(rng.integer(1, int(m) - 1));
          bad += run_case(rng, rec, c);
          ++cases;
        }
  CHECK(cases == 3 * 7 * 6 * 5);
  CHECK(bad == 0);
  CHECK(test_device().allocated_bytes() == memory_before);
}

TEST_CASE("linear: every chunking, blocking and bias option on a fixed odd shape") {
  // The random sweep above covers these with high probability; this makes sure of it each run.
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(102);
  vk::Recorder rec(test_device());
  size_t bad = 0;
  for (WeightType type : kTypes)
    for (uint32_t m : {3u, 21u})
      for (int bias = -1; bias <= 2; ++bias)
        for (bool accumulate : {false, true}) {
          Case c{type, m, 37, 23, bias, accumulate, 3, 1, 7, m - 1};
          bad += run_case(rng, rec, c);
        }
  CHECK(bad == 0);
}

TEST_CASE("linear, matrix·matrix kernels by name: tiled and register-blocked, every float dtype, rows 2..17, odd sizes") {
  // Each kernel for every m > 1 (matvec_max_m = 1): rows 2..17 are batched decode, where the register-blocked kernel
  // (the default on CPU drivers) keeps m itself or near-equal tiles; odd k takes its element-by-element loop, k a
  // multiple of 8 its 16-byte runs.
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(106);
  vk::Recorder rec(test_device());
  using Matmul = kernels::LinearTuning::Matmul;
  std::vector<Matmul> kinds = {Matmul::Tiled};
  if (kernels::linear_rows_available(test_device())) kinds.push_back(Matmul::Rows);
  size_t bad = 0, cases = 0;
  for (Matmul kind : kinds)
    for (WeightType type : kTypes)
      for (uint32_t m = 2; m <= 17; ++m)
        for (uint32_t k : {17u, 64u}) {
          Case c{type, m, k, uint32_t(rng.integer(1, 70))};
          c.tuning.matmul = kind;
          c.tuning.matvec_max_m = 1;
          c.bias = rng.integer(-1, 2);
          c.accumulate = rng.integer(0, 1) == 1;
          if (rng.integer(0, 1)) c.x_pad = uint32_t(rng.integer(1, 5));
          if (rng.integer(0, 1)) c.y_pad = uint32_t(rng.integer(1, 5));
          if (c.n >= 5 && rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
          if (rng.integer(0, 3) == 0) c.rows_per_block = uint32_t(rng.integer(1, int(m) - 1));
          bad += run_case(rng, rec, c);
          ++cases;
        }
  CHECK(cases == kinds.size() * 3 * 16 * 2);
  // The register-blocked kernel's tile shapes at their limits, on more rows than one tile: 1 row of x a workgroup
  // up to 16, 1 row of W a thread up to 8, and the 16-byte runs turned off.
  if (kinds.size() == 2)
    for (WeightType type : kTypes)
      for (const auto& [tile_m, per_lane] : {std::pair{1u, 1u}, {3u, 8u}, {16u, 3u}, {5u, 2u}})
        for (uint32_t k : {257u, 264u}) {
          Case c{type, 37, k, 45};
          c.tuning.matmul = Matmul::Rows;
          c.tuning.rows_tile_m = tile_m;
          c.tuning.rows_per_lane = per_lane;
          c.tuning.matvec_no_vec16 = per_lane == 2;
          c.bias = 2;
          c.rows_per_chunk = 20;
          bad += run_case(rng, rec, c);
          ++cases;
        }
  CHECK(bad == 0);
}

TEST_CASE("linear on matrix cores (cooperative matrices): f16 and bf16 weights, odd sizes, every option") {
  if (!coopmat_available(WeightType::BF16)) return;
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(104);
  vk::Recorder rec(test_device());
  const uint64_t memory_before = test_device().allocated_bytes();
  size_t cases = 0, bad = 0;
  for (WeightType type : {WeightType::F16, WeightType::BF16})
    for (uint32_t m : {9u, 33u, 70u, 129u})
      for (uint32_t k : {1u, 3u, 17u, 64u, 257u, 500u})
        for (uint32_t n : {1u, 5u, 63u, 130u, 511u}) {
          Case c{type, m, k, n};
          c.tuning.matmul = kernels::LinearTuning::Matmul::CoopMat;
          c.bias = rng.integer(-1, 2);
          c.accumulate = rng.integer(0, 1) == 1;
          if (rng.integer(0, 1)) c.x_pad = uint32_t(rng.integer(1, 5));
          if (rng.integer(0, 1)) c.y_pad = uint32_t(rng.integer(1, 5));
          if (n >= 5 && rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, n / 3 - 1);
          if (rng.integer(0, 3) == 0) c.rows_per_block = uint32_t(rng.integer(9, int(m)));
          bad += run_case(rng, rec, c);
          ++cases;
        }
  CHECK(cases == 2 * 4 * 6 * 5);
  CHECK(bad == 0);
  CHECK(test_device().allocated_bytes() == memory_before);
  // F32 weights keep f32 products: asking for matrix cores there is refused by name.
  CHECK_FALSE(kernels::linear_uses_coopmat(test_device(), WeightType::F32,
                                           kernels::LinearTuning{.matmul = kernels::LinearTuning::Matmul::CoopMat}));
  Case f32{WeightType::F32, 20, 16, 16};
  f32.tuning.matmul = kernels::LinearTuning::Matmul::CoopMat;
  CHECK_THROWS_WITH_AS(run_case(rng, rec, f32), doctest::Contains("linear 'w': cooperative-matrix kernel asked for"),
                       Error);
}

TEST_CASE("linear with RMSNorm folded in: every float dtype and norm dtype, CPU and GPU layouts, odd sizes") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(105);
  vk::Recorder rec(test_device());
  size_t bad = 0, cases = 0;
  for (WeightType type : kTypes)
    for (uint32_t m : {1u, 2u, 5u, 8u})
      for (uint32_t k : {1u, 3u, 17u, 64u, 257u, 1000u})
        for (auto defaults : {kernels::LinearTuning::Defaults::Cpu, kernels::LinearTuning::Defaults::Gpu}) {
          Case c{type, m, k, uint32_t(rng.integer(1, 70))};
          c.norm = rng.integer(0, 2);
          c.tuning.defaults = defaults;
          c.bias = rng.integer(-1, 2);
          c.accumulate = rng.integer(0, 1) == 1;
          if (rng.integer(0, 1)) c.x_pad = uint32_t(rng.integer(1, 5));
          if (rng.integer(0, 2) == 0) c.tuning.matvec_no_vec16 = true;
          if (c.n >= 5 && rng.integer(0, 2) == 0) c.rows_per_chunk = std::max(1u, c.n / 3 - 1);
          // Several rows a thread (CPU layout) or a workgroup (GPU layout): x read once a row, squares counted once.
          if (rng.integer(0, 1)) c.tuning.matvec_rows = defaults == kernels::LinearTuning::Defaults::Cpu ? 32 : 8;
          if (defaults == kernels::LinearTuning::Defaults::Gpu && rng.integer(0, 1))
            c.tuning.matvec_subgroup_sum = kernels::LinearTuning::SubgroupSum::On;
          bad += run_case(rng, rec, c);
          ++cases;
        }
  CHECK(cases == 3 * 4 * 6 * 2);
  CHECK(bad == 0);
  // Only the matrix·vector kernel folds the norm; a norm of the wrong length is refused by name.
  Case too_many{WeightType::BF16, 9, 16, 16};
  too_many.norm = 2;
  CHECK_THROWS_WITH_AS(run_case(rng, rec, too_many), doctest::Contains("RMSNorm is folded only into"), Error);
}

TEST_CASE("linear: matrix-vector tuning knobs all give the same answers") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(103);
  vk::Recorder rec(test_device());
  size_t bad = 0;
  for (uint32_t threads : {24u, 256u})  // any size: not only powers of two
    for (uint32_t rows : {2u, 5u}) {
      if (uint64_t(rows) * 8 * threads * 4 > test_device().caps().max_compute_shared_memory) continue;
      Case c{WeightType::BF16, uint32_t(rng.integer(1, 8)), uint32_t(rng.integer(1, 700)), uint32_t(rng.integer(1, 40))};
      c.bias = rng.integer(-1, 2);
      c.tuning = {threads, rows, 0};
      bad += run_case(rng, rec, c);
    }
  // Lane groups: several rows a workgroup, each group of lanes taking one or more of them, n not a multiple of rows.
  for (auto [threads, rows, lanes] : {std::tuple{24u, 6u, 8u}, {64u, 16u, 4u}, {64u, 64u, 8u}, {32u, 1u, 32u},
                                      {48u, 12u, 12u}})
    for (WeightType type : kTypes) {
      Case c{type, uint32_t(rng.integer(1, 8)), uint32_t(rng.integer(1, 300)), uint32_t(rng.integer(1, 150))};
      c.bias = rng.integer(-1, 2);
      c.accumulate = rng.integer(0, 1) == 1;
      c.tuning = {threads, rows, 0, lanes};
      bad += run_case(rng, rec, c);
    }
  // 16-byte loads (rows of whole 16-byte units, x aligned) and the 4-byte loads on the same shapes; x_pad 0 or 4
  // keeps x rows on 16 bytes, x_pad 1 moves them off (the kernel then takes the 4-byte path by itself).
  for (WeightType type : kTypes)
    for (bool no_vec16 : {false, true})
      for (uint32_t x_pad : {0u, 1u, 4u}) {
        Case c{type, uint32_t(rng.integer(1, 8)), 8u * uint32_t(rng.integer(1, 60)), uint32_t(rng.integer(1, 90))};
        c.x_pad = x_pad;
        c.bias = rng.integer(-1, 2);
        c.tuning.matvec_no_vec16 = no_vec16;
        bad += run_case(rng, rec, c);
      }
  // The GPU defaults on this (CPU) device, short and long rows: lane groups of one subgroup summed by subgroupAdd
  // (where the device has subgroup arithmetic and one subgroup size), and lanes from k summed in shared memory.
  using SubgroupSum = kernels::LinearTuning::SubgroupSum;
  for (SubgroupSum sum : {SubgroupSum::Default, SubgroupSum::Off})
    for (WeightType type : kTypes)
      for (uint32_t k : {3u, 64u, 192u, 520u, 2000u}) {
        Case c{type, uint32_t(rng.integer(1, 8)), k, uint32_t(rng.integer(1, 130))};
        c.bias = rng.integer(-1, 2);
        c.accumulate = rng.integer(0, 1) == 1;
        c.tuning.defaults = kernels::LinearTuning::Defaults::Gpu;
        c.tuning.matvec_subgroup_sum = sum;
        bad += run_case(rng, rec, c);
      }
  // matvec_max_m = 1: two rows already take the tiled kernel.
  Case c{WeightType::F16, 2, 129, 65};
  c.tuning.matvec_max_m = 1;
  bad += run_case(rng, rec, c);
  CHECK(bad == 0);
  CHECK_THROWS_WITH_AS(run_case(rng, rec, Case{WeightType::F32, 1, 4, 4, -1, true, 0, 0, 0, 0, {4096, 1, 0}}),
                       doctest::Contains("matvec_threads"), Error);
  CHECK_THROWS_WITH_AS(run_case(rng, rec, Case{WeightType::F32, 1, 4, 4, -1, true, 0, 0, 0, 0, {64, 4, 0, 48}}),
                       doctest::Contains("does not divide"), Error);
  CHECK_THROWS_WITH_AS(run_case(rng, rec, Case{WeightType::F32, 1, 4, 4, -1, true, 0, 0, 0, 0, {64, 4, 0, 8}}),
                       doctest::Contains("multiple of 8"), Error);
}

// Stacked projections (q | k | v) must give the very bits of their parts written side by side with y_column: the
// rows are the same rows, only moved into one matrix (and across chunk boundaries: small chunks force output chunks
// that straddle the parts). The parts' memory is released, the stacked matrix holds the same bytes.
TEST_CASE("stack_rows: one matrix computes what its parts compute side by side, bit for bit") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(106);
  vk::Recorder rec(d);
  for (WeightType type : kTypes)
    for (uint32_t m : {1u, 3u, 20u}) {
      const std::string type_name = kernels::weight_type_name(type);
      CAPTURE(type_name);
      CAPTURE(m);
      // k even: a 16-bit row of odd length starting mid-word is summed in another order (its first element alone),
      // and stacking moves rows within their chunk; with k even every row starts on a word in both layouts.
      const uint32_t k = 2 * uint32_t(rng.integer(1, 100)), rows[] = {uint32_t(rng.integer(1, 30)), 7, 12};
      const uint64_t chunk_bytes = 5 * uint64_t(k) * kernels::weight_type_bytes(type) + 16;  // 5 rows a chunk
      std::vector<kernels::DeviceMatrix> parts, copies;
      uint32_t total = 0;
      for (uint32_t r : rows) {
        const Stored w = make_stored(rng, type, size_t(r) * k);
        parts.push_back(kernels::upload_matrix(d, "part", type, r, k, w.bytes, chunk_bytes));
        copies.push_back(kernels::upload_matrix(d, "copy", type, r, k, w.bytes));
        total += r;
      }
      const uint64_t before = d.allocated_bytes();
      uint64_t part_bytes = 0;
      for (const auto& p : parts) part_bytes += p.bytes();
      const kernels::DeviceMatrix stacked = kernels::stack_rows(d, "stacked", std::move(parts), chunk_bytes + 7 * k * 4);
      CHECK(stacked.rows == total);
      CHECK(stacked.bytes() == part_bytes);
      CHECK(d.allocated_bytes() <= before);  // the parts are gone
      const std::vector<float> x = rng.uniform_vector(size_t(m) * k);
      const vk::Buffer xb = device_buffer(x, "x");
      vk::Buffer ya(d, uint64_t(m) * total * 4, vk::MemoryKind::Device, "y stacked"),
          yb(d, uint64_t(m) * total * 4, vk::MemoryKind::Device, "y parts");
      rec.begin();
      kernels::record_fill(d, rec, ya, 0, uint64_t(m) * total, std::numeric_limits<float>::quiet_NaN());
      kernels::record_fill(d, rec, yb, 0, uint64_t(m) * total, std::numeric_limits<float>::quiet_NaN());
      kernels::record_linear(d, rec, {.weight = &stacked, .x = &xb, .y = &ya, .m = m});
      uint32_t column = 0;
      for (const auto& c : copies) {
        kernels::record_linear(d, rec, {.weight = &c, .x = &xb, .y = &yb, .m = m, .y_stride = total, .y_column = column});
        column += c.rows;
      }
      rec.submit_and_wait();
      const auto a = read_back<uint32_t>(ya, size_t(m) * total), b = read_back<uint32_t>(yb, size_t(m) * total);
      CHECK(a == b);
      CHECK(std::none_of(a.begin(), a.end(), [](uint32_t v) { return std::isnan(std::bit_cast<float>(v)); }));
    }
  std::vector<kernels::DeviceMatrix> mixed;
  const Stored w = make_stored(rng, WeightType::F16, 8);
  mixed.push_back(kernels::upload_matrix(d, "a", WeightType::F16, 2, 4, w.bytes));
  mixed.push_back(kernels::upload_matrix(d, "b", WeightType::F16, 1, 8, w.bytes));
  CHECK_THROWS_WITH_AS(kernels::stack_rows(d, "qkv", std::move(mixed)), doctest::Contains("qkv"), Error);
}

TEST_CASE("linear: bad arguments are refused with the weight's name") {
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(104);
  const Stored w = make_stored(rng, WeightType::BF16, 6 * 10);
  const kernels::DeviceMatrix weight = kernels::upload_matrix(d, "blk.0.attn_q", WeightType::BF16, 6, 10, w.bytes);
  const Stored b = make_stored(rng, WeightType::F32, 5);
  const kernels::DeviceVector bias = kernels::upload_vector(d, "bias5", WeightType::F32, 5, b.bytes);
  vk::Buffer x(d, 2 * 10 * 4, vk::MemoryKind::Device, "x"), y(d, 2 * 6 * 4, vk::MemoryKind::Device, "y");
  vk::Recorder rec(d);
  rec.begin();
  kernels::LinearArgs a{&weight, nullptr, &x, &y, 2};
  kernels::record_linear(d, rec, a);  // fits exactly
  auto refused = [&](kernels::LinearArgs bad, const char* says) {
    CHECK_THROWS_WITH_AS(kernels::record_linear(d, rec, bad), doctest::Contains(says), Error);
    CHECK_THROWS_WITH_AS(kernels::record_linear(d, rec, bad), doctest::Contains("blk.0.attn_q"), Error);
  };
  kernels::LinearArgs too_many = a;
  too_many.m = 3;
  refused(too_many, "x buffer 'x'");
  kernels::LinearArgs y_short = a;
  y_short.y_stride = 7;
  refused(y_short, "y buffer 'y'");
  kernels::LinearArgs overlap = a;
  overlap.x_stride = 9;
  refused(overlap, "overlap");
  kernels::LinearArgs wrong_bias = a;
  wrong_bias.bias = &bias;
  refused(wrong_bias, "bias5");
  kernels::LinearArgs same = a;
  same.y = &x;
  same.m = 1;
  CHECK_THROWS_AS(kernels::record_linear(d, rec, same), Error);
  CHECK_THROWS_AS(kernels::record_linear(d, rec, kernels::LinearArgs{}), Error);
  rec.submit_and_wait();
}
