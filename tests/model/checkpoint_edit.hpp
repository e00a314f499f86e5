#pragma once
// Checkpoints with one number changed, for tests of what the engine does with broken weights: a copy of a checkpoint
// directory (config.json, and generation_config.json when there is one) whose model.safetensors has one element of
// one float tensor replaced.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "test_support.hpp"
#include "util/half.hpp"

namespace inferno::testing {

inline void copy_checkpoint_with_element(const std::filesystem::path& from, const std::filesystem::path& to,
                                         const std::string& tensor, size_t index, float value) {
  namespace fs = std::filesystem;
  fs::create_directories(to);
  for (const char* f : {"config.json", "generation_config.json"})
    if (fs::exists(from / f)) fs::copy_file(from / f, to / f, fs::copy_options::overwrite_existing);
  const io::SafetensorsFile file(from / "model.safetensors");
  const io::TensorInfo& edited = file.at(tensor);
  REQUIRE(index < size_t(edited.elements()));
  std::vector<std::byte> bytes(file.data(edited).begin(), file.data(edited).end());
  if (edited.dtype == io::DType::F32) {
    std::memcpy(bytes.data() + index * 4, &value, 4);
  } else {
    REQUIRE((edited.dtype == io::DType::F16 || edited.dtype == io::DType::BF16));
    const uint16_t half = edited.dtype == io::DType::F16 ? f32_to_f16(value) : f32_to_bf16(value);
    std::memcpy(bytes.data() + index * 2, &half, 2);
  }
  std::vector<io::TensorToWrite> tensors;
  for (const io::TensorInfo& t : file.tensors())
    tensors.push_back({t.name, t.dtype, t.shape, t.name == tensor ? std::span<const std::byte>(bytes) : file.data(t)});
  io::write_safetensors(to / "model.safetensors", tensors);
}

}  // namespace inferno::testing
