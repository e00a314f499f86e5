#pragma once
// Reads a Hugging Face tokenizer.json (and the optional tokenizer_config.json beside it) into a TokenizerSpec.
#include <filesystem>

#include "text/tokenizer_spec.hpp"

namespace inferno::text {

// tokenizer_config_json may name a file that does not exist: then only tokenizer.json counts.
// Throws inferno::Error naming the file and field for anything malformed or unsupported.
TokenizerSpec read_tokenizer_json(const std::filesystem::path& tokenizer_json,
                                  const std::filesystem::path& tokenizer_config_json);

}  // namespace inferno::text
