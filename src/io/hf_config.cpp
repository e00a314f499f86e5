#include "io/hf_config.hpp"

#include <array>
#include <cmath>
#include <limits>

#include "io/json_reader.hpp"
#include "io/mapped_file.hpp"
#include "io/regular_file.hpp"
#include "util/error.hpp"

namespace inferno::io {

namespace {

// Bounds far above any real Llama (405B: hidden 16384, 126 layers, vocab 128256), low enough that sizes computed
// from them cannot overflow and a corrupted config cannot ask for absurd allocations.
constexpr int64_t kMaxHiddenSize = int64_t(1) << 20;
constexpr int64_t kMaxIntermediateSize = int64_t(1) << 22;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = int64_t(1) << 16;
constexpr int64_t kMaxHeadDim = int64_t(1) << 14;
constexpr int64_t kMaxVocabSize = 10'000'000;
constexpr int64_t kMaxPositions = int64_t(1) << 28;
constexpr int64_t kMaxTokenId = (int64_t(1) << 31) - 1;

constexpr std::array kRopeTypes = {"default", "linear", "dynamic", "yarn", "llama3"};

json::ObjectReader root_object(const json::Document& document) {
  simdjson::dom::object root;
  if (document.root().get_object().get(root) != simdjson::SUCCESS)
    fail(document.source() + ": expected a JSON object, got " + std::string(json::type_name(document.root())));
  return json::ObjectReader(root, document.source());
}

// A positive number (factors, theta); JSON cannot hold NaN or infinity, but an absurd exponent is still refused.
std::optional<double> optional_positive(const json::ObjectReader& object, std::string_view key) {
  const auto value = object.optional_number(key);
  if (value && !(*value > 0 && std::isfinite(*value)))
    object.fail_field(key, "must be a positive number, got " + std::to_string(*value));
  return value;
}

double required_positive(const json::ObjectReader& object, std::string_view key, const std::string& rope_type) {
  const auto value = optional_positive(object, key);
  if (!value) object.fail_field(key, "missing (RoPE type '" + rope_type + "' needs it)");
  return *value;
}

// rope_parameters (transformers 5, theta inside) or rope_scaling (transformers 4, theta beside it at top level).
RopeConfig parse_rope(const json::ObjectReader& config) {
  RopeConfig rope;
  const auto top_level_theta = optional_positive(config, "rope_theta");
  auto scaling = config.optional_object("rope_parameters");
  if (!scaling) scaling = config.optional_object("rope_scaling");
  if (top_level_theta) rope.theta = *top_level_theta;
  if (!scaling) return rope;

  if (const auto theta = optional_positive(*scaling, "rope_theta")) rope.theta = *theta;
  // Old checkpoints spell the type key "type"; transformers reads it when "rope_type" is absent.
  const std::string_view type_key = scaling->has("rope_type") ? "rope_type" : "type";
  rope.type = scaling->optional_string(type_key).value_or("default");
  bool known = false;
  for (const char* name : kRopeTypes) known = known || rope.type == name;
  if (!known)
    scaling->fail_field(type_key, "unsupported RoPE type '" + rope.type +
                                      "' (supported: default, linear, dynamic, yarn, llama3)");

  if (rope.type == "default") {
    rope.factor = optional_positive(*scaling, "factor").value_or(1.0);
  } else {
    rope.factor = required_positive(*scaling, "factor", rope.type);
  }
  rope.original_max_position_embeddings = optional_positive(*scaling, "original_max_position_embeddings");
  rope.low_freq_factor = optional_positive(*scaling, "low_freq_factor");
  rope.high_freq_factor = optional_positive(*scaling, "high_freq_factor");
  rope.beta_fast = optional_positive(*scaling, "beta_fast");
  rope.beta_slow = optional_positive(*scaling, "beta_slow");
  rope.attention_factor = optional_positive(*scaling, "attention_factor");
  rope.mscale = optional_positive(*scaling, "mscale");
  rope.mscale_all_dim = optional_positive(*scaling, "mscale_all_dim");
  rope.truncate = scaling->optional_bool("truncate").value_or(true);

  if (rope.type == "llama3") {
    rope.low_freq_factor = required_positive(*scaling, "low_freq_factor", rope.type);
    rope.high_freq_factor = required_positive(*scaling, "high_freq_factor", rope.type);
    rope.original_max_position_embeddings =
        required_positive(*scaling, "original_max_position_embeddings", rope.type);
    // The smoothing between the two bands divides by their difference.
    if (!(*rope.high_freq_factor > *rope.low_freq_factor))
      scaling->fail_field("high_freq_factor", "must be greater than low_freq_factor");
  }
  return rope;
}

}  // namespace

const LlamaConfigKeys kConfigJsonKeys{
    .kind = "field", .hidden_size = "hidden_size", .intermediate_size = "intermediate_size",
    .num_hidden_layers = "num_hidden_layers", .num_attention_heads = "num_attention_heads",
    .num_key_value_heads = "num_key_value_heads", .head_dim = "head_dim", .vocab_size = "vocab_size",
    .max_position_embeddings = "max_position_embeddings", .rms_norm_eps = "rms_norm_eps",
    .rope_theta = "rope_theta", .rope_factor = "rope_scaling.factor", .bos_token_id = "bos_token_id",
    .eos_token_id = "eos_token_id", .pad_token_id = "pad_token_id"};

void check_llama_config(LlamaConfig& c, const std::string& source, const LlamaConfigKeys& keys) {
  const auto refuse = [&](std::string_view key, const std::string& problem) {
    fail(source + ": " + std::string(keys.kind) + " " + quoted_name(key) + ": " + problem);
  };
  const auto in_range = [&](std::string_view key, int64_t value, int64_t min, int64_t max) {
    if (value < min || value > max)
      refuse(key, "value " + std::to_string(value) + " is out of range [" + std::to_string(min) + ", " +
                      std::to_string(max) + "]");
  };
  in_range(keys.hidden_size, c.hidden_size, 1, kMaxHiddenSize);
  in_range(keys.intermediate_size, c.intermediate_size, 1, kMaxIntermediateSize);
  in_range(keys.num_hidden_layers, c.num_hidden_layers, 1, kMaxLayers);
  in_range(keys.num_attention_heads, c.num_attention_heads, 1, kMaxHeads);
  in_range(keys.vocab_size, c.vocab_size, 1, kMaxVocabSize);
  in_range(keys.max_position_embeddings, c.max_position_embeddings, 1, kMaxPositions);

  if (c.num_key_value_heads == 0) c.num_key_value_heads = c.num_attention_heads;  // absent: multi-head attention
  in_range(keys.num_key_value_heads, c.num_key_value_heads, 1, c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    refuse(keys.num_key_value_heads, "num_attention_heads " + std::to_string(c.num_attention_heads) +
                                         " is not a multiple of num_key_value_heads " +
                                         std::to_string(c.num_key_value_heads));
  if (c.head_dim == 0) {  // absent: the hidden size split over the heads
    if (c.hidden_size % c.num_attention_heads != 0)
      refuse(keys.num_attention_heads, "hidden_size " + std::to_string(c.hidden_size) +
                                           " is not a multiple of num_attention_heads " +
                                           std::to_string(c.num_attention_heads) + " (and no head_dim is given)");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  in_range(keys.head_dim, c.head_dim, 1, kMaxHeadDim);
  // Rotary embeddings turn the head's dimensions in pairs.
  if (c.head_dim % 2 != 0)
    refuse(keys.head_dim, "head dimension " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (c.head_dim * c.num_attention_heads > kMaxIntermediateSize)
    refuse(keys.head_dim, "head_dim × num_attention_heads = " + std::to_string(c.head_dim * c.num_attention_heads) +
                              " is absurd");

  // NaN fails every comparison, so it is refused with the negative values.
  if (!(c.rms_norm_eps >= 0 && c.rms_norm_eps < 1))
    refuse(keys.rms_norm_eps, "must be in [0, 1), got " + std::to_string(c.rms_norm_eps));
  if (!(c.rope.theta > 0 && std::isfinite(c.rope.theta)))
    refuse(keys.rope_theta, "must be a positive number, got " + std::to_string(c.rope.theta));
  if (!(c.rope.factor > 0 && std::isfinite(c.rope.factor)))
    refuse(keys.rope_factor, "must be a positive number, got " + std::to_string(c.rope.factor));

  if (c.bos_token_id) in_range(keys.bos_token_id, *c.bos_token_id, 0, kMaxTokenId);
  for (int64_t id : c.eos_token_ids) in_range(keys.eos_token_id, id, 0, kMaxTokenId);
  if (c.pad_token_id) in_range(keys.pad_token_id, *c.pad_token_id, 0, kMaxTokenId);
}

LlamaConfig parse_llama_config(std::string_view json_text, const std::string& source) {
  const json::Document document(json_text, source);
  const json::ObjectReader object = root_object(document);
  LlamaConfig config;

  config.model_type = object.optional_string("model_type").value_or("");
  config.architectures = object.optional_string_list("architectures").value_or(std::vector<std::string>{});
  config.name_or_path = object.optional_string("_name_or_path").value_or("");
  config.dtype = object.optional_string("dtype").value_or(object.optional_string("torch_dtype").value_or(""));

  config.hidden_act = object.optional_string("hidden_act").value_or("silu");
  if (config.hidden_act != "silu")
    object.fail_field("hidden_act", "unsupported activation '" + config.hidden_act + "' (Llama uses silu)");

  // Read as written (any integer); the ranges are checked by check_llama_config, the same for GGUF.
  constexpr int64_t kAny = std::numeric_limits<int64_t>::max();
  config.hidden_size = object.required_int("hidden_size", -kAny, kAny);
  config.intermediate_size = object.required_int("intermediate_size", -kAny, kAny);
  config.num_hidden_layers = object.required_int("num_hidden_layers", -kAny, kAny);
  config.num_attention_heads = object.required_int("num_attention_heads", -kAny, kAny);
  config.vocab_size = object.required_int("vocab_size", -kAny, kAny);
  config.max_position_embeddings =
      object.optional_int("max_position_embeddings", -kAny, kAny).value_or(config.max_position_embeddings);
  config.num_key_value_heads = object.optional_int("num_key_value_heads", 1, kAny).value_or(0);
  config.head_dim = object.optional_int("head_dim", 1, kAny).value_or(0);
  config.rms_norm_eps = object.optional_number("rms_norm_eps").value_or(config.rms_norm_eps);

  config.attention_bias = object.optional_bool("attention_bias").value_or(false);
  config.mlp_bias = object.optional_bool("mlp_bias").value_or(false);
  config.tie_word_embeddings = object.optional_bool("tie_word_embeddings").value_or(false);

  // Absent ids keep transformers' defaults; an explicit null means "none".
  const auto present = [&](std::string_view key) { return object.present(key); };
  if (present("bos_token_id")) config.bos_token_id = object.optional_int("bos_token_id", 0, kMaxTokenId);
  if (present("eos_token_id"))
    config.eos_token_ids = object.optional_int_or_list("eos_token_id", 0, kMaxTokenId).value_or(std::vector<int64_t>{});
  // Some early Llama conversions wrote pad_token_id -1 for "no padding token".
  config.pad_token_id = object.optional_int("pad_token_id", -1, kMaxTokenId);
  if (config.pad_token_id == -1) config.pad_token_id.reset();

  config.rope = parse_rope(object);

  if (const auto quantization = object.optional_object("quantization_config")) {
    config.quantization_config_json = simdjson::minify(quantization->object());
    config.quant_method = quantization->optional_string("quant_method").value_or("");
  }
  check_llama_config(config, source, kConfigJsonKeys);
  return config;
}

LlamaConfig load_llama_config(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "config.json";
  const MappedFile file = json::map_json_file(path);
  return parse_llama_config(json::as_text(file.bytes()), path.string());
}

GenerationConfig parse_generation_config(std::string_view json_text, const std::string& source) {
  const json::Document document(json_text, source);
  const json::ObjectReader object = root_object(document);
  GenerationConfig config;
  config.bos_token_id = object.optional_int("bos_token_id", 0, kMaxTokenId);
  config.eos_token_ids = object.optional_int_or_list("eos_token_id", 0, kMaxTokenId);
  config.pad_token_id = object.optional_int("pad_token_id", 0, kMaxTokenId);
  config.do_sample = object.optional_bool("do_sample");

  const auto number_in = [&](std::string_view key, double lo, double hi) {
    const auto value = object.optional_number(key);
    if (value && !(*value >= lo && *value <= hi))
      object.fail_field(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                 std::to_string(*value));
    return value;
  };
  config.temperature = number_in("temperature", 0, 1e6);
  config.top_p = number_in("top_p", 0, 1);
  config.min_p = number_in("min_p", 0, 1);
  config.typical_p = number_in("typical_p", 0, 1);
  config.repetition_penalty = number_in("repetition_penalty", 0, 1e6);
  if (config.repetition_penalty && *config.repetition_penalty == 0)
    object.fail_field("repetition_penalty", "must be positive (it divides logits)");

  constexpr int64_t kMaxCount = int64_t(1) << 40;  // lengths and counts: non-negative, not absurd
  config.top_k = object.optional_int("top_k", 0, kMaxCount);
  config.no_repeat_ngram_size = object.optional_int("no_repeat_ngram_size", 0, kMaxCount);
  config.max_new_tokens = object.optional_int("max_new_tokens", 0, kMaxCount);
  config.max_length = object.optional_int("max_length", 0, kMaxCount);
  config.min_length = object.optional_int("min_length", 0, kMaxCount);
  config.min_new_tokens = object.optional_int("min_new_tokens", 0, kMaxCount);
  return config;
}

std::optional<GenerationConfig> load_generation_config(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "generation_config.json";
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return std::nullopt;
  const MappedFile file = json::map_json_file(path);
  return parse_generation_config(json::as_text(file.bytes()), path.string());
}

}  // namespace inferno::io
