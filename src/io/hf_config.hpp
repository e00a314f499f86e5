#pragma once
// config.json and generation_config.json of a Hugging Face Llama checkpoint, parsed and checked for consistency.
// Absent fields take transformers' LlamaConfig defaults; a field written as null counts as absent.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace inferno::io {

// Rotary position embedding parameters, from either spelling: transformers 4's `rope_theta` + `rope_scaling`
// (whose type key may be the legacy `type`) or transformers 5's `rope_parameters`. The optional fields are kept as
// written; the defaults that each RoPE type applies to them belong to the model.
struct RopeConfig {
  std::string type = "default";  // default, linear, dynamic, yarn, llama3
  double theta = 10000;
  double factor = 1;
  std::optional<double> original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast, beta_slow,
      attention_factor, mscale, mscale_all_dim;
  bool truncate = true;  // yarn: round the correction range to whole dimensions
};

struct LlamaConfig {
  std::string model_type;                // "llama" for LlamaForCausalLM
  std::vector<std::string> architectures;
  std::string name_or_path;              // "_name_or_path", when the checkpoint recorded it
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // absent (0 while reading): num_attention_heads (plain multi-head attention)
  int64_t head_dim = 0;             // absent (0 while reading): hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  int64_t max_position_embeddings = 2048;
  int64_t vocab_size = 0;
  bool attention_bias = false;
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id = 1;  // transformers' defaults when absent; null gives none
  std::vector<int64_t> eos_token_ids = {2};
  std::optional<int64_t> pad_token_id;
  std::string dtype;  // "dtype" (transformers 5) or "torch_dtype" (4): "float32", "bfloat16", ...; may be empty
  std::string hidden_act = "silu";
  RopeConfig rope;
  std::string quantization_config_json;  // the raw object, minified; empty when the checkpoint is not quantized
  std::string quant_method;              // quantization_config.quant_method, e.g. "compressed-tensors"
};

// The names a file gives the hyper-parameters, for messages: config.json's fields, or GGUF's metadata keys.
struct LlamaConfigKeys {
  std::string_view kind;  // "field" or "metadata key"
  std::string_view hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
      head_dim, vocab_size, max_position_embeddings, rms_norm_eps, rope_theta, rope_factor, bos_token_id,
      eos_token_id, pad_token_id;
};
extern const LlamaConfigKeys kConfigJsonKeys;

// The range checks of the hyper-parameters, one function for both formats, run before anything is sized from them:
// counts and sizes within bounds far above any real Llama (so no product of them overflows and no file can ask for
// absurd allocations), heads a multiple of KV heads, an even head dimension, rms_norm_eps in [0, 1), a positive
// finite RoPE base and factor (NaN refused), token ids in [0, 2^31). Fills in num_key_value_heads (0: as many as
// the heads) and head_dim (0: hidden_size / heads). Throws "SOURCE: KIND 'KEY': PROBLEM" naming the value.
void check_llama_config(LlamaConfig& config, const std::string& source, const LlamaConfigKeys& keys);

// source_name names the file in error messages (e.g. "model/config.json").
LlamaConfig parse_llama_config(std::string_view json, const std::string& source_name);
// Reads dir/config.json.
LlamaConfig load_llama_config(const std::filesystem::path& dir);

// generation_config.json: the sampling defaults a checkpoint ships. Everything is optional.
struct GenerationConfig {
  std::optional<int64_t> bos_token_id;
  std::optional<std::vector<int64_t>> eos_token_ids;
  std::optional<int64_t> pad_token_id;
  std::optional<bool> do_sample;
  std::optional<double> temperature, top_p, min_p, typical_p, repetition_penalty;
  std::optional<int64_t> top_k, no_repeat_ngram_size, max_new_tokens, max_length, min_length, min_new_tokens;
};

GenerationConfig parse_generation_config(std::string_view json, const std::string& source_name);
// Reads dir/generation_config.json; nullopt when the file does not exist.
std::optional<GenerationConfig> load_generation_config(const std::filesystem::path& dir);

}  // namespace inferno::io
