// The residual add, SiLU·up and the row softmax against double-precision references.
#include "kernels/elementwise.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

// Compares device results to a reference under a per-element tolerance, reporting the first few failures.
template <class Tol>
void check_close(const std::vector<float>& got, const std::vector<double>& want, Tol tolerance) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(double(got[i]) - want[i]) <= tolerance(i))) {
      if (bad++ < 3) FAIL_CHECK("[" << i << "] = " << got[i] << ", expected " << want[i] << " ± " << tolerance(i));
    }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("add sums in f32 exactly like the host") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(301);
  for (uint64_t count : {1ull, 5ull, 64ull, 191ull, 2051ull, 100003ull}) {
    CAPTURE(count);
    const auto x = rng.uniform_vector(count, -100.f, 100.f), y = rng.uniform_vector(count, -1.f, 1.f);
    vk::Buffer xb = device_buffer(x, "x"), yb = device_buffer(y, "y");
    vk::Recorder rec(d);
    rec.begin();
    kernels::record_add(d, rec, xb, yb, count);
    rec.submit_and_wait();
    const auto got = read_back<float>(yb, count);
    // An f32 addition is correctly rounded on the device (Vulkan requires it) and on the host: equal bits.
    size_t bad = 0;
    for (size_t i = 0; i < count; ++i)
      if (got[i] != y[i] + x[i] && bad++ < 3) FAIL_CHECK("[" << i << "] = " << got[i] << ", expected " << y[i] + x[i]);
    CHECK(bad == 0);
    CHECK(read_back<float>(xb, count) == x);  // the addend is left alone
  }
}

TEST_CASE("silu_mul on stacked gate | up rows matches g·sigmoid(g)·up and stays finite for large |g|") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(303);
  for (uint32_t rows : {1u, 3u, 37u}) {
    for (uint32_t dim : {1u, 5u, 64u, 191u, 2048u + 3u}) {
      CAPTURE(rows);
      CAPTURE(dim);
      const size_t n = size_t(rows) * dim;
      std::vector<float> gate(n), up = rng.uniform_vector(n, -3.f, 3.f);
      for (auto& g : gate) g = rng.normal(4.f);
      const float extremes[] = {100.f, -100.f, 1000.f, -1000.f, 0.f, 88.8f, -88.8f};
      for (size_t i = 0; i < std::size(extremes) && i < n; ++i) gate[(i * 7919) % n] = extremes[i];
      std::vector<float> gate_up(2 * n);  // each row: its gate, then its up
      for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < dim; ++c) {
          gate_up[r * 2 * dim + c] = gate[r * dim + c];
          gate_up[r * 2 * dim + dim + c] = up[r * dim + c];
        }
      vk::Buffer in = device_buffer(gate_up, "gate_up");
      vk::Buffer out(d, n * 4, vk::MemoryKind::Device, "out");
      vk::Recorder rec(d);
      rec.begin();
      poison(rec, out, n);
      kernels::record_silu_mul(d, rec, in, out, rows, dim);
      rec.submit_and_wait();
      const auto got = read_back<float>(out, n);
      std::vector<double> want(n);
      for (size_t i = 0; i < n; ++i) want[i] = double(gate[i]) / (1.0 + std::exp(-double(gate[i]))) * up[i];
      // sigmoid's relative error is that of exp (at most 3 + 2|g| ulp by the Vulkan specification, 1 ulp = 2u)
      // plus an addition and a division; two more products follow. Results below the f32 normal range may be
      // flushed to zero (allowed for denormals): an exp(g) below 2^-126 may become 0, hence the absolute floor
      // 2^-126 · |g · up|.
      check_close(got, want, [&](size_t i) {
        return std::abs(want[i]) * (2 * (3 + 2 * std::abs(double(gate[i]))) + 6) * kUnitRoundoff +
               1.2e-38 * std::abs(double(gate[i]) * up[i]);
      });
    }
  }
  vk::Buffer b(d, 64, vk::MemoryKind::Device, "both");
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_silu_mul(d, rec, b, b, 1, 4), doctest::Contains("different buffers"), Error);
}

TEST_CASE("softmax is max-subtracted per row: -inf gives 0, a row of only -inf gives zeros") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(304);
  const float inf = std::numeric_limits<float>::infinity();
  for (uint32_t rows : {1u, 3u, 37u}) {
    for (uint32_t dim : {1u, 5u, 64u, 191u, 2048u + 3u}) {
      CAPTURE(rows);
      CAPTURE(dim);
      const size_t n = size_t(rows) * dim;
      std::vector<float> x(n);
      for (uint32_t r = 0; r < rows; ++r) {
        const float offset = rng.uniform(-50.f, 50.f);  // a max-subtraction that is missing shows as overflow
        for (uint32_t i = 0; i < dim; ++i) x[r * dim + i] = offset + rng.normal(3.f);
        if (dim > 1) x[r * dim + uint32_t(rng.integer(0, int(dim) - 1))] = -inf;  // masked logits
      }
      if (rows > 1) std::fill(x.begin() + dim, x.begin() + 2 * dim, -inf);  // the second row is all -inf
      if (rows > 2) x[2 * dim] = 88.f;  // exp(88) is near the f32 limit: fine only after subtracting the max
      vk::Buffer xb = device_buffer(x, "logits");
      vk::Recorder rec(d);
      rec.begin();
      kernels::record_softmax(d, rec, xb, rows, dim);
      rec.submit_and_wait();
      const auto got = read_back<float>(xb, n);
      // Each weight is exp(x − m), off by at most 3 + 2|x − m| ulp (1 ulp = 2u) by the Vulkan specification and by
      // |x − m| u more from rounding x − m, times 1/Σ. Σ carries its terms' exp errors weighted by their share, (6 +
      // 5·E_p[x − m]) u, plus its own rounding: a sequential then tree sum of positive terms, about dim/64 + 8 u; the
      // reciprocal and product add 4 u more. Below 1e-30 a result may lose its precision to denormal flushing.
      std::vector<double> want(n), tolerance(n, 1e-30);
      for (uint32_t r = 0; r < rows; ++r) {
        double m = -inf, sum = 0, mean_spread = 0;
        for (uint32_t i = 0; i < dim; ++i) m = std::max(m, double(x[r * dim + i]));
        if (m == -inf) continue;  // all -inf: zeros by definition
        for (uint32_t i = 0; i < dim; ++i) sum += std::exp(double(x[r * dim + i]) - m);
        for (uint32_t i = 0; i < dim; ++i) {
          want[r * dim + i] = std::exp(double(x[r * dim + i]) - m) / sum;
          if (x[r * dim + i] != -inf) mean_spread += want[r * dim + i] * (m - x[r * dim + i]);
        }
        for (uint32_t i = 0; i < dim; ++i) {
          const double spread = x[r * dim + i] == -inf ? 0 : m - x[r * dim + i];
          tolerance[r * dim + i] +=
              want[r * dim + i] * ((6 + 5 * spread) + (6 + 5 * mean_spread) + dim / 64.0 + 12) * kUnitRoundoff;
        }
      }
      check_close(got, want, [&](size_t i) { return tolerance[i]; });
    }
  }
}
