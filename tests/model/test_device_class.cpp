// INFERNO_DEVICE_CLASS=gpu|cpu makes every kernel choice as on that class of device, whatever the device is: the
// matrix·vector kernel's shape and subgroup sums, split-K decode attention. CI runs the whole-model suites with the
// GPU choices on lavapipe; this checks that the variable really changes them, and that both give the same numbers.
#include <cstdlib>
#include <optional>
#include <string>

#include "gpu_support.hpp"
#include "kernels/linear.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

// Sets (or unsets, with nullopt) INFERNO_DEVICE_CLASS for its lifetime, then puts back what was there (CI may run
// this suite with the variable set).
struct DeviceClassEnv {
  std::optional<std::string> before;
  explicit DeviceClassEnv(const std::optional<std::string>& value) {
    if (const char* v = std::getenv("INFERNO_DEVICE_CLASS")) before = v;
    if (value) setenv("INFERNO_DEVICE_CLASS", value->c_str(), 1);
    else unsetenv("INFERNO_DEVICE_CLASS");
  }
  ~DeviceClassEnv() {
    if (before) setenv("INFERNO_DEVICE_CLASS", before->c_str(), 1);
    else unsetenv("INFERNO_DEVICE_CLASS");
  }
};

std::filesystem::path brown() { return root_dir() / "models/brown-8m-bf16"; }

// Logits of a 5-token prompt and then of one decode step after it (the split-K path on GPUs).
std::vector<float> prompt_then_decode(model::Forward& f) {
  const std::vector<int32_t> ids = {1, 450, 432, 2857, 1497}, positions = {0, 1, 2, 3, 4}, start = {0};
  f.step({.batch = 1, .tokens = 5, .ids = ids, .positions = positions, .kv_start = start});
  const std::vector<int32_t> next = {373}, next_position = {5};
  return f.step({.batch = 1, .tokens = 1, .ids = next, .positions = next_position, .kv_start = start});
}

}  // namespace

TEST_CASE("INFERNO_DEVICE_CLASS=gpu takes the GPU kernel choices on any device, =cpu the CPU ones, with equal logits") {
  auto instance = std::make_shared<vk::Instance>();
  std::vector<float> logits[2];
  for (const char* cls : {"gpu", "cpu"}) {
    CAPTURE(cls);
    DeviceClassEnv env(std::string{cls});
    vk::Device device(instance, -1);
    const bool gpu = std::string(cls) == "gpu";
    CHECK(device.device_class() == (gpu ? vk::DeviceClass::Gpu : vk::DeviceClass::Cpu));
    CHECK(std::string(vk::device_class_name(device.device_class())) == cls);

    // The matrix·vector kernel: GPUs 64 threads with lanes summed by subgroupAdd where the subgroup size is fixed
    // (lavapipe's is); CPU drivers 16 threads, one row per thread.
    const auto& caps = device.caps();
    const auto t = kernels::resolve_linear_tuning(device, kernels::WeightType::BF16, 192);
    if (gpu) {
      CHECK(t.matvec_threads == 64);
      const bool fixed = caps.subgroup_arithmetic && caps.min_subgroup_size == caps.max_subgroup_size &&
                         64 % caps.subgroup_size == 0;
      CHECK((t.matvec_subgroup_sum == kernels::LinearTuning::SubgroupSum::On) == fixed);
      if (fixed) CHECK(t.matvec_lanes == caps.subgroup_size);
    } else {
      CHECK(t.matvec_threads == 16);
      CHECK(t.matvec_lanes == 1);
      CHECK(t.matvec_subgroup_sum == kernels::LinearTuning::SubgroupSum::Off);
    }

    // Split-K decode attention: about 128 cache slots a split on GPUs, none on CPU drivers.
    auto m = model::LlamaModel::load(device, brown(), {.quiet = true});
    model::Forward f(*m, 1, 512, kernels::KvType::F32);
    CHECK(f.attention_splits() == (gpu ? 4u : 1u));
    logits[gpu ? 0 : 1] = prompt_then_decode(f);
  }
  // Same model, other summation orders (lanes, subgroup sums, attention splits): f32 throughout, so they differ by
  // rounding only (~1e-6 relative); 1e-4 leaves room and still catches a wrong split or a dropped lane.
  REQUIRE(logits[0].size() == logits[1].size());
  const double err = relative_max_error(logits[0], logits[1]);
  MESSAGE("gpu vs cpu choices, decode logits: max|Δ|/max|ref| = " << err);
  CHECK(err <= 1e-4);
}

TEST_CASE("without INFERNO_DEVICE_CLASS the device's own type decides; a bad value is refused by name") {
  auto instance = std::make_shared<vk::Instance>();
  {
    DeviceClassEnv env(std::nullopt);
    vk::Device device(instance, -1);
    CHECK(device.cpu_class() == (device.caps().type == "cpu"));
  }
  DeviceClassEnv env(std::string("tpu"));
  CHECK_THROWS_WITH_AS(vk::Device(instance, -1), doctest::Contains("INFERNO_DEVICE_CLASS=tpu"), inferno::Error);
}
