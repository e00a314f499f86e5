#include "io/gguf_config.hpp"

#include "util/error.hpp"

namespace inferno::io {

namespace {

const LlamaConfigKeys kGgufKeys{
    .kind = "metadata key", .hidden_size = "llama.embedding_length",
    .intermediate_size = "llama.feed_forward_length", .num_hidden_layers = "llama.block_count",
    .num_attention_heads = "llama.attention.head_count", .num_key_value_heads = "llama.attention.head_count_kv",
    .head_dim = "llama.attention.key_length", .vocab_size = "llama.vocab_size",
    .max_position_embeddings = "llama.context_length", .rms_norm_eps = "llama.attention.layer_norm_rms_epsilon",
    .rope_theta = "llama.rope.freq_base", .rope_factor = "llama.rope.scaling.factor",
    .bos_token_id = "tokenizer.ggml.bos_token_id", .eos_token_id = "tokenizer.ggml.eos_token_id",
    .pad_token_id = "tokenizer.ggml.padding_token_id"};

}  // namespace

LlamaConfig llama_config_from_gguf(const GgufFile& f) {
  const std::string source = f.path().string();
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama")
    fail(source + ": general.architecture is " + quoted_name(arch) + "; only llama models are supported");
  LlamaConfig c;
  c.model_type = "llama";
  c.name_or_path = f.optional_string("general.name").value_or("");
  c.hidden_size = f.get_i64("llama.embedding_length");
  c.intermediate_size = f.get_i64("llama.feed_forward_length");
  c.num_hidden_layers = f.get_i64("llama.block_count");
  c.num_attention_heads = f.get_i64("llama.attention.head_count");
  c.num_key_value_heads = f.optional_i64("llama.attention.head_count_kv").value_or(0);
  c.head_dim = f.optional_i64("llama.attention.key_length").value_or(0);
  if (c.num_key_value_heads == 0 && f.find("llama.attention.head_count_kv"))
    fail(source + ": metadata key 'llama.attention.head_count_kv': value 0 is out of range");
  if (c.head_dim == 0 && f.find("llama.attention.key_length"))
    fail(source + ": metadata key 'llama.attention.key_length': value 0 is out of range");
  c.rms_norm_eps = f.optional_f64("llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.max_position_embeddings = f.optional_i64("llama.context_length").value_or(2048);
  c.rope.theta = f.optional_f64("llama.rope.freq_base").value_or(10000.0);
  const std::string scaling = f.optional_string("llama.rope.scaling.type").value_or("none");
  if (scaling == "linear" || scaling == "yarn") {
    c.rope.type = scaling;
    c.rope.factor = f.get_f64("llama.rope.scaling.factor");
    if (auto o = f.optional_i64("llama.rope.scaling.original_context_length")) {
      if (*o < 1 || *o > (int64_t(1) << 28))
        fail(source + ": metadata key 'llama.rope.scaling.original_context_length': value " + std::to_string(*o) +
             " is out of range [1, 268435456]");
      c.rope.original_max_position_embeddings = double(*o);
    }
  } else if (scaling != "none") {
    fail(source + ": metadata key 'llama.rope.scaling.type': " + quoted_name(scaling) + " is not supported");
  }
  const TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) fail(source + ": tensor 'token_embd.weight' is missing");
  if (const auto vocab = f.optional_i64("llama.vocab_size")) {
    c.vocab_size = *vocab;
  } else {
    if (embd->shape.size() != 2) fail(source + ": tensor 'token_embd.weight' is not a matrix");
    c.vocab_size = embd->shape[0];
  }
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.mlp_bias = f.find_tensor("blk.0.ffn_gate.bias") != nullptr;
  c.bos_token_id = f.optional_i64("tokenizer.ggml.bos_token_id");
  c.eos_token_ids.clear();
  if (auto e = f.optional_i64("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*e);
  if (auto e = f.optional_i64("tokenizer.ggml.eot_token_id"); e && (c.eos_token_ids.empty() || c.eos_token_ids[0] != *e))
    c.eos_token_ids.push_back(*e);
  c.pad_token_id = f.optional_i64("tokenizer.ggml.padding_token_id");
  c.dtype = std::string(dtype_name(embd->dtype));

  check_llama_config(c, source, kGgufKeys);  // before anything is sized from them

  if (auto v = f.optional_i64("llama.attention.value_length"); v && *v != c.head_dim)
    fail(source + ": metadata key 'llama.attention.value_length': " + std::to_string(*v) +
         " differs from the head dimension " + std::to_string(c.head_dim) + "; not supported");
  if (auto d = f.optional_i64("llama.rope.dimension_count"); d && *d != c.head_dim)
    fail(source + ": metadata key 'llama.rope.dimension_count': " + std::to_string(*d) +
         " differs from the head dimension " + std::to_string(c.head_dim) + " (partial RoPE is not supported)");
  return c;
}

}  // namespace inferno::io
