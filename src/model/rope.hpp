#pragma once
// RoPE inverse frequencies exactly as Hugging Face transformers 5.x computes them (modeling_rope_utils.py and the
// models' compute_default_rope_parameters): the same float32 / float64 steps in the same order, so the values match
// transformers' float32 `inv_freq` bit for bit where torch takes its scalar code path (see rope.cpp).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace inferno::model {

// The config's rope parameters (legacy `rope_theta` + `rope_scaling`, or transformers-5 `rope_parameters`).
struct RopeParams {
  std::string type = "default";  // default | linear | dynamic | yarn | llama3
  double theta = 10000;          // rope_theta
  // The scaling factor. yarn uses it as given even when max_position_embeddings / original_max_position_embeddings
  // says otherwise (transformers 5); a yarn config without a factor should pass that ratio here.
  double factor = 1;
  int head_dim = 0;  // config.head_dim, or hidden_size / num_attention_heads
  int max_position_embeddings = 0;
  // Unset: transformers' defaults (original_max_position_embeddings = max_position_embeddings, beta_fast 32,
  // beta_slow 1, attention_factor from factor, mscale and mscale_all_dim).
  std::optional<double> original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast, beta_slow,
      attention_factor, mscale, mscale_all_dim;
  bool truncate = true;  // yarn: round the correction range outwards to whole dimensions
  double partial_rotary_factor = 1.0;  // the rotated dims are int(head_dim * partial_rotary_factor)
};

struct RopeFrequencies {
  std::vector<float> inv_freq;  // one per rotated pair: int(head_dim * partial_rotary_factor) / 2
  float attention_scaling = 1.0f;  // transformers multiplies cos and sin by it (yarn; 1 otherwise)
};

// seq_len is transformers' `max(position_ids) + 1` for the positions being computed. It matters only for "dynamic":
// NTK scaling is recomputed when the sequence outgrows max_position_embeddings. Throws inferno::Error naming the
// field for an unknown type or an unusable parameter.
RopeFrequencies compute_rope_frequencies(const RopeParams& params, int64_t seq_len);

}  // namespace inferno::model
