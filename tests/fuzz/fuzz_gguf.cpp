// libFuzzer target: any bytes as a GGUF file. The reader must refuse bad input with inferno::Error only: any other
// exception, crash, sanitizer report, leak or absurd allocation is a bug. Accepted files are then read in full:
// every metadata value through the typed getters, every tensor's bytes, so every range the validation let through
// is touched, and the llama.* keys are read as the model's config and range-checked.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "io/gguf.hpp"
#include "io/gguf_config.hpp"
#include "util/error.hpp"

using namespace inferno::io;

namespace {

volatile uint64_t sink = 0;

// Reads one key every way the getters allow; type mismatches throw inferno::Error, which is fine here.
template <class F>
void attempt(F&& read) {
  try {
    read();
  } catch (const inferno::Error&) {
  }
}

void read_all_ways(const GgufFile& file, const std::string& key) {
  attempt([&] { sink = sink + file.get_u32(key); });
  attempt([&] { sink = sink + uint64_t(file.get_i64(key)); });
  attempt([&] { sink = sink + std::bit_cast<uint64_t>(file.get_f64(key)); });
  attempt([&] { sink = sink + file.get_bool(key); });
  attempt([&] { sink = sink + file.get_string(key).size(); });
  attempt([&] { sink = sink + file.get_array<std::string>(key).size(); });
  attempt([&] { sink = sink + file.get_array<int32_t>(key).size(); });
  attempt([&] { sink = sink + file.get_array<uint64_t>(key).size(); });
  attempt([&] { sink = sink + file.get_array<float>(key).size(); });
  attempt([&] { sink = sink + file.get_array<bool>(key).size(); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size) std::memcpy(bytes.data(), data, size);
  try {
    const GgufFile file = GgufFile::from_bytes(std::move(bytes), "fuzz.gguf");
    if (file.version() != 2 && file.version() != 3) __builtin_trap();
    if (file.alignment() == 0 || (file.alignment() & (file.alignment() - 1)) != 0) __builtin_trap();
    for (const auto& [key, value] : file.metadata()) {
      if (file.find(key) != &value) __builtin_trap();  // keys must find their own value
      read_all_ways(file, key);
    }
    for (const TensorInfo& tensor : file.tensors()) {
      if (file.find_tensor(tensor.name) != &tensor) __builtin_trap();
      if (tensor.data_offset % file.alignment() != 0 || tensor.data_offset < file.data_section_offset())
        __builtin_trap();
      const auto span = file.data(tensor);
      if (span.size() != tensor.bytes) __builtin_trap();
      if (dtype_storage_bytes(tensor.dtype, uint64_t(tensor.elements())) != tensor.bytes) __builtin_trap();
      if (!span.empty()) sink = sink ^ uint8_t(span.front()) ^ uint8_t(span.back());
    }
    // The model's hyper-parameters from the llama.* keys: whatever they hold, the config is refused with an Error or
    // comes out within the bounds every size computed from it relies on (check_llama_config).
    attempt([&] {
      const LlamaConfig config = llama_config_from_gguf(file);
      if (config.num_hidden_layers < 1 || config.num_hidden_layers > 1024 || config.hidden_size < 1 ||
          config.num_key_value_heads < 1 || config.num_attention_heads % config.num_key_value_heads != 0 ||
          config.head_dim < 1 || config.head_dim % 2 != 0 || !(config.rms_norm_eps >= 0) ||
          !(config.rope.theta > 0) || config.vocab_size < 1)
        __builtin_trap();
      sink = sink + uint64_t(config.num_hidden_layers * config.head_dim);
    });
  } catch (const inferno::Error&) {
    // refused with a message: the expected outcome for almost every input
  }
  return 0;
}
