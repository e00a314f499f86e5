// RoPE inverse frequencies: every type against its formula evaluated here in double precision on random parameters,
// and the fixture checkpoints' rope configs against values worked out by hand.
#include <simdjson.h>

#include <cmath>
#include <numbers>
#include <string>

#include "model/rope.hpp"
#include "test_support.hpp"
#include "util/error.hpp"

using namespace inferno::model;
using inferno::testing::Rng;

namespace {

constexpr double kPi = std::numbers::pi;

// The implementation computes in float32 as transformers does. Its distance from the exact value: the exponent
// 2i/dim is rounded to float (relative 2^-24, which theta^x turns into ln(theta) * 2^-24), theta itself is rounded
// (at most 2^-24 relative), and powf, the reciprocal and a scaling each round once more. This bound doubles that
// budget; callers add the terms their type brings.
double float32_budget(double theta) { return (std::log(theta) + 4) * 0x1p-23; }

void check_close(const std::vector<float>& actual, const std::vector<double>& expected, double relative_tolerance,
                 const std::vector<bool>& skip = {}) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!skip.empty() && skip[i]) continue;
    INFO("i = " << i << ": got " << actual[i] << ", expected " << expected[i]);
    CHECK(std::fabs(actual[i] - expected[i]) <= relative_tolerance * std::fabs(expected[i]));
  }
}

std::vector<double> plain_frequencies(double theta, int dim) {
  std::vector<double> inv(size_t(dim / 2));
  for (int i = 0; i < dim / 2; ++i) inv[size_t(i)] = 1.0 / std::pow(theta, 2.0 * i / dim);
  return inv;
}

struct RandomRope {
  RopeParams params;
  int dim = 0;
};

RandomRope random_rope(Rng& rng, const std::string& type) {
  RandomRope r;
  r.params.type = type;
  r.params.theta = std::pow(10.0, rng.uniform(3.0f, 6.5f));
  r.params.head_dim = 2 * rng.integer(4, 80);  // even head dims from 8 to 160, odd pair counts included
  if (rng.integer(0, 3) == 0) r.params.partial_rotary_factor = 0.5;
  r.dim = int(r.params.head_dim * r.params.partial_rotary_factor);
  if (r.dim % 2 != 0) {
    r.params.partial_rotary_factor = 1.0;
    r.dim = r.params.head_dim;
  }
  r.params.max_position_embeddings = rng.integer(64, 8192);
  r.params.factor = rng.uniform(1.0f, 16.0f);
  return r;
}

}  // namespace

TEST_CASE("default and linear RoPE follow 1 / theta^(2i/dim), linear divided by factor") {
  INFERNO_SEED_INFO();
  Rng rng(21);
  for (int trial = 0; trial < 200; ++trial) {
    auto r = random_rope(rng, "default");
    const auto expected = plain_frequencies(r.params.theta, r.dim);
    const auto got = compute_rope_frequencies(r.params, rng.integer(1, 100000));
    check_close(got.inv_freq, expected, float32_budget(r.params.theta));
    CHECK(got.inv_freq[0] == 1.0f);
    CHECK(got.attention_scaling == 1.0f);

    r.params.type = "linear";
    auto scaled = expected;
    for (double& f : scaled) f /= r.params.factor;
    check_close(compute_rope_frequencies(r.params, 1).inv_freq, scaled, float32_budget(r.params.theta) + 0x1p-23);
  }
}

TEST_CASE("dynamic NTK keeps the base within max_position_embeddings and grows it beyond") {
  INFERNO_SEED_INFO();
  Rng rng(22);
  for (int trial = 0; trial < 200; ++trial) {
    auto r = random_rope(rng, "dynamic");
    const double theta = r.params.theta, factor = r.params.factor;
    const int max_positions = r.params.max_position_embeddings;

    const auto within = compute_rope_frequencies(r.params, rng.integer(1, max_positions));
    check_close(within.inv_freq, plain_frequencies(theta, r.dim), float32_budget(theta));

    const int64_t seq_len = max_positions + rng.integer(1, 4 * max_positions);
    const double ratio = factor * double(seq_len) / max_positions;
    const double inner = ratio - (factor - 1);
    const double exponent = double(r.dim) / (r.dim - 2);
    const double grown_base = theta * std::pow(inner, exponent);
    // transformers evaluates `factor * seq_len / max - (factor - 1)` in float32 at this point: the subtraction can
    // cancel, amplifying float rounding (~3 * 2^-24 of `ratio`) by ratio / inner, and the power multiplies by
    // the exponent.
    const double base_error = 4 * (ratio / inner) * exponent * 0x1p-24;
    const auto beyond = compute_rope_frequencies(r.params, seq_len);
    check_close(beyond.inv_freq, plain_frequencies(grown_base, r.dim), float32_budget(grown_base) + base_error);
    CHECK(beyond.attention_scaling == 1.0f);
  }
}

TEST_CASE("yarn blends extrapolated and interpolated frequencies over the correction range") {
  INFERNO_SEED_INFO();
  Rng rng(23);
  for (int trial = 0; trial < 300; ++trial) {
    auto r = random_rope(rng, "yarn");
    RopeParams& p = r.params;
    const int dim = r.dim;
    if (rng.integer(0, 1)) p.original_max_position_embeddings = double(rng.integer(16, 4096));
    if (rng.integer(0, 2) == 0) p.beta_fast = rng.uniform(8.0f, 64.0f);
    if (rng.integer(0, 2) == 0) p.beta_slow = rng.uniform(0.5f, 4.0f);
    p.truncate = rng.integer(0, 1) == 1;
    const int attention_case = rng.integer(0, 2);
    if (attention_case == 1) p.attention_factor = rng.uniform(0.5f, 2.0f);
    if (attention_case == 2) {
      p.mscale = rng.uniform(0.5f, 2.0f);
      p.mscale_all_dim = rng.uniform(0.5f, 2.0f);
    }

    // The formulas of the YaRN paper as transformers 5 writes them, in double.
    const double theta = p.theta, factor = p.factor;
    const double original = p.original_max_position_embeddings.value_or(p.max_position_embeddings);
    auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    const double attention = attention_case == 1   ? *p.attention_factor
                             : attention_case == 2 ? mscale(factor, *p.mscale) / mscale(factor, *p.mscale_all_dim)
                                                   : 0.1 * std::log(factor) + 1.0;
    auto dimension_for = [&](double rotations) {
      return (dim * std::log(original / (rotations * 2 * kPi))) / (2 * std::log(theta));
    };
    double low = dimension_for(p.beta_fast.value_or(32)), high = dimension_for(p.beta_slow.value_or(1));
    if (p.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    std::vector<double> expected(size_t(dim / 2));
    for (int i = 0; i < dim / 2; ++i) {
      const double extrapolated = std::pow(theta, -2.0 * i / dim);
      const double weight = 1 - std::clamp((i - low) / (high - low), 0.0, 1.0);
      expected[size_t(i)] = extrapolated / factor * (1 - weight) + extrapolated * weight;
    }

    const auto got = compute_rope_frequencies(p, rng.integer(1, 100000));
    // The ramp weight is computed in float: `low` is rounded (2^-24 of low, magnified by the ramp's slope
    // 1 / (high - low)) and so is the division. A weight error moves the result by up to the extrapolated value,
    // which is at most `factor` times the result.
    const double ramp_error = (1 + low / (high - low)) * 0x1p-23;
    check_close(got.inv_freq, expected, float32_budget(theta) + factor * ramp_error);
    CHECK(std::fabs(got.attention_scaling - attention) <= 0x1p-23 * attention);
  }
}

TEST_CASE("llama3 keeps short wavelengths, divides long ones by factor and blends between") {
  INFERNO_SEED_INFO();
  Rng rng(24);
  int medium_seen = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto r = random_rope(rng, "llama3");
    RopeParams& p = r.params;
    p.theta = std::pow(10.0, rng.uniform(4.0f, 6.0f));
    p.low_freq_factor = rng.uniform(0.5f, 2.0f);
    p.high_freq_factor = *p.low_freq_factor * rng.uniform(1.5f, 8.0f);
    if (rng.integer(0, 3) > 0) p.original_max_position_embeddings = double(rng.integer(16, 8192));
    const double original = p.original_max_position_embeddings.value_or(p.max_position_embeddings);
    const double low_wavelen = original / *p.low_freq_factor, high_wavelen = original / *p.high_freq_factor;

    const auto plain = plain_frequencies(p.theta, r.dim);
    std::vector<double> expected(plain.size());
    std::vector<bool> near_threshold(plain.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      const double wavelen = 2 * kPi / plain[i];
      if (wavelen < high_wavelen) {
        expected[i] = plain[i];
      } else if (wavelen > low_wavelen) {
        expected[i] = plain[i] / p.factor;
      } else {
        const double smooth = (original / wavelen - *p.low_freq_factor) / (*p.high_freq_factor - *p.low_freq_factor);
        expected[i] = (1 - smooth) * plain[i] / p.factor + smooth * plain[i];
        ++medium_seen;
      }
      // Within float rounding of a threshold, float32 and float64 may put a wavelength on different sides.
      near_threshold[i] = std::fabs(wavelen - low_wavelen) < 1e-5 * low_wavelen ||
                          std::fabs(wavelen - high_wavelen) < 1e-5 * high_wavelen;
    }
    // The smoothing factor is computed in float: its rounding (a few 2^-24 of high / (high - low)) moves the blend
    // by up to `factor` times as much relative to the result.
    const double smooth_error = 4 * p.factor * *p.high_freq_factor / (*p.high_freq_factor - *p.low_freq_factor);
    const auto got = compute_rope_frequencies(p, 1);
    check_close(got.inv_freq, expected, float32_budget(p.theta) + smooth_error * 0x1p-24, near_threshold);
    CHECK(got.attention_scaling == 1.0f);
  }
  CHECK(medium_seen > 50);  // the blended band was exercised
}

TEST_CASE("bad rope parameters are refused with the field named") {
  RopeParams p;
  p.head_dim = 16;
  p.max_position_embeddings = 256;
  p.type = "longrope";
  try {
    compute_rope_frequencies(p, 1);
    FAIL("longrope accepted");
  } catch (const inferno::Error& e) {
    CHECK(std::string(e.what()).find("longrope") != std::string::npos);
  }
  p.type = "llama3";
  p.factor = 8;
  CHECK_THROWS_AS(compute_rope_frequencies(p, 1), inferno::Error);  // no low/high_freq_factor
  p.type = "default";
  p.head_dim = 0;
  CHECK_THROWS_AS(compute_rope_frequencies(p, 1), inferno::Error);
  p.head_dim = 16;
  p.partial_rotary_factor = 0.3;  // int(16 * 0.3) = 4 rotated dims: fine
  CHECK(compute_rope_frequencies(p, 1).inv_freq.size() == 2);
  p.partial_rotary_factor = 0.2;  // 3 rotated dims cannot be paired
  CHECK_THROWS_AS(compute_rope_frequencies(p, 1), inferno::Error);
  p.partial_rotary_factor = 1;
  p.theta = 0;
  CHECK_THROWS_AS(compute_rope_frequencies(p, 1), inferno::Error);
}

// ---- the fixture checkpoints ----

namespace {

// A minimal reading of a checkpoint's rope fields, for this test only (the model room owns config.json parsing):
// transformers-5 `rope_parameters`, else the legacy `rope_theta` + `rope_scaling`.
RopeParams rope_params_from_config(const std::string& checkpoint) {
  simdjson::dom::parser parser;
  const simdjson::dom::object config = parser.load(inferno::testing::data_path(checkpoint + "/config.json").string());
  RopeParams p;
  p.head_dim = int(int64_t(config["head_dim"]));
  p.max_position_embeddings = int(int64_t(config["max_position_embeddings"]));
  simdjson::dom::object rope;
  bool has_rope = config["rope_parameters"].get(rope) == simdjson::SUCCESS;
  if (!has_rope) {
    p.theta = double(config["rope_theta"]);
    has_rope = config["rope_scaling"].get(rope) == simdjson::SUCCESS;  // absent or null: no scaling
  }
  if (!has_rope) return p;
  for (auto [key, value] : rope) {
    if (key == "rope_type" || key == "type") p.type = std::string(std::string_view(value));
    else if (key == "rope_theta") p.theta = double(value);
    else if (key == "factor") p.factor = double(value);
    else if (key == "low_freq_factor") p.low_freq_factor = double(value);
    else if (key == "high_freq_factor") p.high_freq_factor = double(value);
    else if (key == "original_max_position_embeddings") p.original_max_position_embeddings = double(value);
    else FAIL("unexpected rope field in " << checkpoint << ": " << key);
  }
  return p;
}

}  // namespace

TEST_CASE("llama3 fixtures: theta 5e5, head_dim 16, factor 8, low 1, high 4, original 16") {
  for (const char* checkpoint : {"hf-llama/llama3-gqa-f32", "hf-llama/llama3-tied-bf16"}) {
    INFO(checkpoint);
    const RopeParams p = rope_params_from_config(checkpoint);
    REQUIRE(p.type == "llama3");
    const auto got = compute_rope_frequencies(p, 1);
    REQUIRE(got.inv_freq.size() == 8);
    // Wavelength thresholds: 16 / 1 = 16 and 16 / 4 = 4. Pair 0 has inv_freq 1, wavelength 2*pi = 6.28: between
    // them, so blended with smooth = (16 / (2*pi) - 1) / (4 - 1). Pair i >= 1 has wavelength 2*pi * 5e5^(i/8) >= 32.4
    // > 16: divided by 8. No wavelength is below 4, so none stays unchanged.
    const double smooth = (16 / (2 * kPi) - 1) / 3;
    std::vector<double> expected{(1 - smooth) / 8 + smooth};
    for (int i = 1; i < 8; ++i) expected.push_back(std::pow(500000.0, -i / 8.0) / 8);
    check_close(got.inv_freq, expected, float32_budget(500000) + 4 * 8 * 4.0 / 3 * 0x1p-24);
    CHECK(got.attention_scaling == 1.0f);
  }
}

TEST_CASE("yarn fixture: theta 1e4, head_dim 16, explicit factor 4, original 32 (max 256)") {
  const RopeParams p = rope_params_from_config("hf-llama/mqa-yarn-f32");
  REQUIRE(p.type == "yarn");
  REQUIRE(p.factor == 4);  // not max / original = 8: transformers 5 keeps the explicit factor
  const auto got = compute_rope_frequencies(p, 300);
  REQUIRE(got.inv_freq.size() == 8);
  // Correction range with beta_fast 32, beta_slow 1 over the original 32 positions:
  //   low  = floor(16 ln(32 / (32 * 2pi)) / (2 ln 1e4)) = floor(-1.60) = -2 -> clamped to 0
  //   high = ceil(16 ln(32 / (1 * 2pi)) / (2 ln 1e4)) = ceil(1.41) = 2
  // so the ramp over pairs 0..7 is i / 2 clamped: pair 0 extrapolated (unchanged), pair 1 half and half, pairs 2..7
  // interpolated (divided by 4).
  std::vector<double> expected{1.0, 0.5 * std::pow(1e4, -1 / 8.0) * (1 + 1 / 4.0)};
  for (int i = 2; i < 8; ++i) expected.push_back(std::pow(1e4, -i / 8.0) / 4);
  check_close(got.inv_freq, expected, float32_budget(1e4) + 8 * 0x1p-24);
  CHECK(got.inv_freq[0] == 1.0f);
  CHECK(std::fabs(got.attention_scaling - 1.1386294361) < 1e-7);  // 0.1 ln 4 + 1
}

TEST_CASE("linear fixture: head_dim 32 differs from hidden / heads, factor 2") {
  const RopeParams p = rope_params_from_config("hf-llama/bias-headdim-f16");
  REQUIRE(p.type == "linear");
  const auto got = compute_rope_frequencies(p, 1);
  REQUIRE(got.inv_freq.size() == 16);  // from head_dim 32, not hidden_size / heads = 16
  std::vector<double> expected;
  for (int i = 0; i < 16; ++i) expected.push_back(std::pow(1e4, -i / 16.0) / 2);
  check_close(got.inv_freq, expected, float32_budget(1e4) + 0x1p-23);
}

TEST_CASE("unscaled fixture: rope_scaling null") {
  const RopeParams p = rope_params_from_config("hf-llama/mha-sharded-bf16");
  REQUIRE(p.type == "default");
  const auto got = compute_rope_frequencies(p, 1);
  REQUIRE(got.inv_freq.size() == 8);
  check_close(got.inv_freq, plain_frequencies(1e4, 16), float32_budget(1e4));
}
