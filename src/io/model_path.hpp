#pragma once
// What `-m PATH` names: a GGUF file (known by its magic, or by the extension .gguf in any case), or a Hugging Face
// checkpoint directory, also when PATH is another file inside one (model.safetensors, a shard, config.json).
#include <filesystem>

namespace inferno::io {

struct ModelPath {
  std::filesystem::path path;  // the GGUF file, or the checkpoint directory
  bool gguf = false;
};

// Throws inferno::Error naming the path when it is neither a directory nor a regular file (a FIFO, a device).
// A path that does not exist is returned as it is, for the reader to report as missing.
ModelPath resolve_model_path(const std::filesystem::path& given);

}  // namespace inferno::io
