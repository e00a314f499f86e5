// RMSNorm against a double-precision LlamaRMSNorm: every weight dtype, odd row counts and widths, in place.
#include "kernels/norm.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::WeightType;

namespace {

kernels::DeviceVector device_vector(const char* name, Dtype t, const std::vector<float>& values) {
  kernels::DeviceVector v;
  v.name = name;
  v.type = t == Dtype::F32 ? WeightType::F32 : t == Dtype::F16 ? WeightType::F16 : WeightType::BF16;
  v.size = uint32_t(values.size());
  const auto bytes = encode(t, values);
  v.buffer = device_buffer(bytes, name);
  return v;
}

// y = w · x / sqrt(mean(x²) + eps) in double, with the weight as its dtype holds it.
std::vector<double> reference_rmsnorm(const std::vector<float>& x, const std::vector<float>& w, uint32_t rows,
                                      uint32_t dim, float eps) {
  std::vector<double> y(x.size());
  for (uint32_t r = 0; r < rows; ++r) {
    double sum = 0;
    for (uint32_t i = 0; i < dim; ++i) sum += double(x[r * dim + i]) * x[r * dim + i];
    const double inv_rms = 1.0 / std::sqrt(sum / dim + double(eps));
    for (uint32_t i = 0; i < dim; ++i) y[r * dim + i] = double(w[i]) * (double(x[r * dim + i]) * inv_rms);
  }
  return y;
}

// The error bound of the f32 kernel relative to |y|: the sum of squares is a sequential sum of ceil(dim / 64) terms
// per invocation and a tree of at most log2(256) = 8 levels (at most dim/64 + 10 roundings of a sum of positive
// terms, each u relative), then the division by dim, adding eps, inversesqrt (2 ulp by the Vulkan specification) and
// the two products: at most dim/64 + 16 u, of which the square root halves the variance part. Doubled for headroom.
double relative_tolerance(uint32_t dim) { return 2.0 * (dim / 64.0 + 16) * kUnitRoundoff; }

}  // namespace

TEST_CASE("rmsnorm matches LlamaRMSNorm for every weight dtype, odd sizes, separate and in place") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(101);
  for (Dtype t : {Dtype::F32, Dtype::F16, Dtype::BF16}) {
    for (uint32_t rows : {1u, 3u, 37u}) {
      for (uint32_t dim : {1u, 5u, 64u, 191u, 2048u + 3u}) {
        for (bool in_place : {false, true}) {
          CAPTURE(dtype_name(t));
          CAPTURE(rows);
          CAPTURE(dim);
          CAPTURE(in_place);
          // Rows of different scales (an RMS far from 1 shows a missing normalisation), weights around 1.
          std::vector<float> x(size_t(rows) * dim), w(dim);
          for (uint32_t r = 0; r < rows; ++r) {
            const float scale = std::exp(rng.uniform(-3.f, 3.f));
            for (uint32_t i = 0; i < dim; ++i) x[r * dim + i] = rng.normal(scale);
          }
          for (auto& v : w) v = round_to(t, rng.uniform(0.5f, 1.5f));
          const float eps = rng.integer(0, 1) ? 1e-5f : 1e-6f;
          const auto weight = device_vector("model.norm.weight", t, w);
          vk::Buffer xb = device_buffer(x, "x");
          vk::Buffer yb(d, x.size() * 4, vk::MemoryKind::Device, "y");
          const vk::Buffer& out = in_place ? xb : yb;

          vk::Recorder rec(d);
          rec.begin();
          if (!in_place) poison(rec, yb, x.size());
          kernels::record_rmsnorm(d, rec, xb, weight, out, rows, dim, eps);
          rec.submit_and_wait();
          const auto y = read_back<float>(out, x.size());
          const auto ref = reference_rmsnorm(x, w, rows, dim, eps);
          const double tol = relative_tolerance(dim);
          size_t bad = 0;
          for (size_t i = 0; i < y.size(); ++i)
            if (!(std::abs(y[i] - ref[i]) <= tol * std::abs(ref[i]) + 1e-30)) {
              if (bad++ < 3) FAIL_CHECK("y[" << i << "] = " << y[i] << ", expected " << ref[i]);
            }
          CHECK(bad == 0);
        }
      }
    }
  }
}

TEST_CASE("rmsnorm refuses a weight of the wrong size, naming it") {
  vk::Device& d = test_device();
  const auto weight = device_vector("model.layers.0.input_layernorm.weight", Dtype::BF16, std::vector<float>(63, 1.f));
  vk::Buffer x(d, 64 * 4, vk::MemoryKind::Device, "x");
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_rmsnorm(d, rec, x, weight, x, 1, 64, 1e-5f),
                       doctest::Contains("model.layers.0.input_layernorm.weight"), inferno::Error);
  CHECK_THROWS_WITH_AS(
      kernels::record_rmsnorm(d, rec, x, device_vector("w", Dtype::F32, std::vector<float>(64, 1.f)), x, 2, 64, 1e-5f),
      doctest::Contains("'x'"), inferno::Error);
}
