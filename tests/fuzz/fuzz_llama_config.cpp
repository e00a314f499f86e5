// libFuzzer target: any bytes as config.json, generation_config.json and model.safetensors.index.json. Bad input
// must be refused with inferno::Error only; any other exception, crash, sanitizer report or leak is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/checkpoint.hpp"
#include "io/hf_config.hpp"
#include "util/error.hpp"

using namespace inferno::io;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const LlamaConfig config = parse_llama_config(text, "fuzz/config.json");
    // What the parser promises to the model loader.
    if (config.num_attention_heads % config.num_key_value_heads != 0 || config.head_dim % 2 != 0 ||
        config.hidden_size <= 0 || config.vocab_size <= 0)
      __builtin_trap();
  } catch (const inferno::Error&) {
  }
  try {
    parse_generation_config(text, "fuzz/generation_config.json");
  } catch (const inferno::Error&) {
  }
  try {
    parse_shard_index(text, "fuzz/model.safetensors.index.json");
  } catch (const inferno::Error&) {
  }
  return 0;
}
