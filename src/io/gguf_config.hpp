#pragma once
// The hyper-parameters of a Llama GGUF file (llama.* metadata keys), as a LlamaConfig, range-checked by the same
// check_llama_config as config.json before anything is sized from them.
#include "io/gguf.hpp"
#include "io/hf_config.hpp"

namespace inferno::io {

// Throws inferno::Error naming the file, the key and the value when one is absent, of the wrong type or out of
// range, or when the architecture is not llama.
LlamaConfig llama_config_from_gguf(const GgufFile& file);

}  // namespace inferno::io
