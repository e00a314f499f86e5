#pragma once
// A Hugging Face checkpoint directory: the weights of one model in model.safetensors, or sharded across several
// files named by model.safetensors.index.json. All shards stay mapped; tensors are read in place, never copied.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.hpp"

namespace inferno::io {

inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kShardIndexName = "model.safetensors.index.json";

// The weight_map of a shard index: tensor name → shard file name (a plain file name in the same directory).
std::map<std::string, std::string> parse_shard_index(std::string_view json, const std::string& source_name);

class Checkpoint {
 public:
  // dir: a checkpoint directory (model.safetensors is preferred when both it and an index exist, as transformers
  // does), or a single .safetensors file. Throws inferno::Error naming the file and tensor at fault when shards are
  // missing, the index and the shards disagree, or a tensor appears in two shards.
  explicit Checkpoint(std::filesystem::path dir);

  const std::filesystem::path& directory() const { return directory_; }
  const TensorInfo* find(std::string_view name) const;
  // Throws inferno::Error naming the checkpoint and the tensor when it is absent.
  const TensorInfo& at(std::string_view name) const;
  // The tensor's bytes inside its shard's mapping (found by the tensor's name).
  std::span<const std::byte> data(const TensorInfo& tensor) const;
  // Throws naming the shard when the file holding the tensor was truncated since it was mapped: call it after the
  // tensor's bytes have been copied away.
  void check_whole(const TensorInfo& tensor) const { file_of(tensor).check_whole(); }
  // The shard file that holds the tensor (for its path in messages, or its metadata).
  const SafetensorsFile& file_of(const TensorInfo& tensor) const;
  std::vector<float> read_f32(std::string_view name) const { return file_of(at(name)).read_f32(name); }
  std::vector<int64_t> read_i64(std::string_view name) const { return file_of(at(name)).read_i64(name); }

  // Every tensor name, sorted.
  std::vector<std::string> tensor_names() const;
  const std::vector<std::filesystem::path>& shard_paths() const { return shard_paths_; }
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Sum of the data bytes of every tensor.
  uint64_t total_tensor_bytes() const;

 private:
  struct Location {
    size_t shard;
    const TensorInfo* tensor;  // points into shards_[shard], which never moves once built
  };
  void open_sharded(const std::filesystem::path& index_path);
  const Location& locate(std::string_view name) const;

  std::filesystem::path directory_;
  std::vector<std::filesystem::path> shard_paths_;
  std::vector<SafetensorsFile> shards_;
  std::map<std::string, Location, std::less<>> locations_;
};

}  // namespace inferno::io
