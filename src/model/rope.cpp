#include "model/rope.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "util/error.hpp"

// How torch evaluates transformers' formulas, which this file reproduces step by step:
// - a Python float meeting a float32 tensor is rounded to float32 first, then the operation runs in float32
//   (so `inv_freq / factor` is inv_freq / float(factor), and `x > threshold` compares against float(threshold));
// - `number / tensor` is tensor.reciprocal() * number: two float32 roundings, not one division;
// - `number ** tensor` and `tensor ** tensor` are powf (std::pow on floats) per element: torch's scalar code path,
//   which it takes for rows shorter than two vector registers (< 16 or 32 frequencies); for longer rows torch uses
//   Sleef's vectorized powf, which agrees with powf within 1 ulp;
// - `tensor ** number` is std::pow(float, double) rounded to float (2 is squared exactly);
// - the formulas' scalar parts (correction ranges, attention factors) run in Python floats, i.e. doubles.
// Checked against torch's own float32 evaluation of the same formulas on random parameters: identical bits for every
// type while the row takes the scalar path; on longer rows within 2 ulp, and up to ~15 ulp inside llama3's blended
// band, where the smoothing factor's cancellation magnifies Sleef's 1-ulp difference.

namespace inferno::model {
namespace {

// 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), base already a float32 value.
std::vector<float> unscaled_inverse_frequencies(float base, int dim) {
  std::vector<float> inv_freq(size_t(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    const float exponent = float(2 * i) / float(dim);
    inv_freq[size_t(i)] = 1.0f / std::pow(base, exponent);
  }
  return inv_freq;
}

// torch's `tensor ** python_float` for a float32 tensor: the exponent stays a double.
float pow_float_by_double(float base, double exponent) {
  if (exponent == 2.0) return base * base;
  return float(std::pow(double(base), exponent));
}

int rotated_dims(const RopeParams& params) {
  if (params.head_dim <= 0) fail("rope: head_dim must be > 0, got " + std::to_string(params.head_dim));
  if (!(params.partial_rotary_factor > 0 && params.partial_rotary_factor <= 1))
    fail("rope: partial_rotary_factor must be within (0, 1], got " + std::to_string(params.partial_rotary_factor));
  const int dim = int(params.head_dim * params.partial_rotary_factor);
  if (dim < 2 || dim % 2 != 0)
    fail("rope: the rotated dimensions int(head_dim * partial_rotary_factor) = " + std::to_string(dim) +
         " must be even and at least 2");
  return dim;
}

double required_positive(double value, const char* field) {
  if (!(value > 0) || !std::isfinite(value))
    fail(std::string("rope: ") + field + " must be a positive number, got " + std::to_string(value));
  return value;
}

double original_max_positions(const RopeParams& params) {
  // transformers' standardize_rope_params defaults it to max_position_embeddings
  const double original = params.original_max_position_embeddings.value_or(params.max_position_embeddings);
  return required_positive(original, "original_max_position_embeddings (or max_position_embeddings)");
}

// transformers' _compute_dynamic_ntk_parameters. At load time it runs with seq_len = max_position_embeddings in
// Python floats; once the positions outgrow max_position_embeddings, seq_len arrives as a 0-dim int64 tensor and
// torch's type promotion pulls the whole base formula into float32.
std::vector<float> dynamic_ntk_frequencies(const RopeParams& params, int dim, int64_t seq_len) {
  const double factor = required_positive(params.factor, "factor");
  const int max_positions = params.max_position_embeddings;
  if (max_positions <= 0)
    fail("rope: dynamic scaling needs max_position_embeddings > 0, got " + std::to_string(max_positions));
  if (dim == 2) fail("rope: dynamic scaling needs at least 4 rotated dimensions (its exponent is dim / (dim - 2))");
  const double exponent = double(dim) / double(dim - 2);
  if (seq_len <= max_positions) {
    const double m = max_positions;
    const double base = params.theta * std::pow((factor * m / m) - (factor - 1), exponent);
    return unscaled_inverse_frequencies(float(base), dim);
  }
  float growth = float(factor) * float(seq_len);
  growth = growth / float(max_positions);
  growth = growth - float(factor - 1);
  growth = pow_float_by_double(growth, exponent);
  const float base = float(params.theta) * growth;
  return unscaled_inverse_frequencies(base, dim);
}

// transformers' _compute_yarn_parameters (5.x): the explicit factor, the correction range from
// original_max_position_embeddings, optionally truncated to whole dimensions, and a linear ramp between
// extrapolated (unscaled) and interpolated (divided by factor) frequencies.
RopeFrequencies yarn_frequencies(const RopeParams& params, int dim) {
  const double factor = required_positive(params.factor, "factor");
  const double base = params.theta;
  const double original_max = original_max_positions(params);

  auto mscale_of = [](double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; };
  double attention_factor;
  if (params.attention_factor) {
    attention_factor = *params.attention_factor;
  } else if (params.mscale.value_or(0) != 0 && params.mscale_all_dim.value_or(0) != 0) {  // Python truthiness
    attention_factor = mscale_of(factor, *params.mscale) / mscale_of(factor, *params.mscale_all_dim);
  } else {
    attention_factor = mscale_of(factor, 1.0);
  }

  // `rope_parameters.get("beta_fast") or 32`: absent or 0 both mean the default.
  const double beta_fast = params.beta_fast.value_or(0) != 0 ? *params.beta_fast : 32.0;
  const double beta_slow = params.beta_slow.value_or(0) != 0 ? *params.beta_slow : 1.0;
  // The dimension whose wavelength turns `rotations` times over the original context.
  auto correction_dim = [&](double rotations) {
    return (dim * std::log(original_max / (rotations * 2 * std::numbers::pi))) / (2 * std::log(base));
  };
  double low = correction_dim(beta_fast);
  double high = correction_dim(beta_slow);
  if (params.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));  // transformers clamps to dim - 1, not dim / 2 - 1
  if (low == high) high += 0.001;         // transformers' guard against a zero-width ramp

  RopeFrequencies result;
  result.attention_scaling = float(attention_factor);
  result.inv_freq.resize(size_t(dim / 2));
  const float low_f32 = float(low);
  const float ramp_width_f32 = float(high - low);
  for (int i = 0; i < dim / 2; ++i) {
    const float pos_freq = std::pow(float(base), float(2 * i) / float(dim));
    const float extrapolated = 1.0f / pos_freq;
    const float interpolated = 1.0f / (float(factor) * pos_freq);
    const float ramp = std::clamp((float(i) - low_f32) / ramp_width_f32, 0.0f, 1.0f);
    const float extrapolation_weight = 1.0f - ramp;
    const float interpolated_part = interpolated * (1.0f - extrapolation_weight);
    const float extrapolated_part = extrapolated * extrapolation_weight;
    result.inv_freq[size_t(i)] = interpolated_part + extrapolated_part;
  }
  return result;
}

// transformers' _compute_llama3_parameters: wavelengths shorter than original / high_freq_factor keep their
// frequency, longer than original / low_freq_factor are divided by factor, and those between are blended.
std::vector<float> llama3_frequencies(const RopeParams& params, int dim) {
  const double factor = required_positive(params.factor, "factor");
  if (!params.low_freq_factor) fail("rope: llama3 scaling needs low_freq_factor");
  if (!params.high_freq_factor) fail("rope: llama3 scaling needs high_freq_factor");
  const double low_freq_factor = *params.low_freq_factor;
  const double high_freq_factor = *params.high_freq_factor;
  if (high_freq_factor == low_freq_factor)
    fail("rope: llama3 scaling needs high_freq_factor != low_freq_factor (both are " +
         std::to_string(low_freq_factor) + ")");
  const double old_context = original_max_positions(params);

  const float low_freq_wavelen = float(old_context / low_freq_factor);
  const float high_freq_wavelen = float(old_context / high_freq_factor);
  const float two_pi = float(2 * std::numbers::pi);
  const float factor_f32 = float(factor);
  std::vector<float> inv_freq = unscaled_inverse_frequencies(float(params.theta), dim);
  for (float& f : inv_freq) {
    const float wavelen = (1.0f / f) * two_pi;
    const float scaled = wavelen > low_freq_wavelen ? f / factor_f32 : f;
    const float smooth =
        ((1.0f / wavelen) * float(old_context) - float(low_freq_factor)) / float(high_freq_factor - low_freq_factor);
    const float smoothed = ((1.0f - smooth) * scaled) / factor_f32 + smooth * scaled;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = is_medium ? smoothed : scaled;
  }
  return inv_freq;
}

}  // namespace

RopeFrequencies compute_rope_frequencies(const RopeParams& params, int64_t seq_len) {
  const int dim = rotated_dims(params);
  required_positive(params.theta, "rope_theta");
  RopeFrequencies result;
  if (params.type == "default") {
    result.inv_freq = unscaled_inverse_frequencies(float(params.theta), dim);
  } else if (params.type == "linear") {
    const float factor = float(required_positive(params.factor, "factor"));
    result.inv_freq = unscaled_inverse_frequencies(float(params.theta), dim);
    for (float& f : result.inv_freq) f = f / factor;
  } else if (params.type == "dynamic") {
    result.inv_freq = dynamic_ntk_frequencies(params, dim, seq_len);
  } else if (params.type == "yarn") {
    result = yarn_frequencies(params, dim);
  } else if (params.type == "llama3") {
    result.inv_freq = llama3_frequencies(params, dim);
  } else {
    fail("rope: unsupported rope_type \"" + params.type + "\" (supported: default, linear, dynamic, yarn, llama3)");
  }
  return result;
}

}  // namespace inferno::model
