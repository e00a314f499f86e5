#include "io/checkpoint.hpp"

#include <set>

#include "io/json_reader.hpp"
#include "io/regular_file.hpp"
#include "util/error.hpp"

namespace inferno::io {

namespace fs = std::filesystem;

std::map<std::string, std::string> parse_shard_index(std::string_view json_text, const std::string& source) {
  json::Document document(json_text, source);
  simdjson::dom::object root;
  if (document.root().get_object().get(root) != simdjson::SUCCESS)
    fail(source + ": expected a JSON object, got " + std::string(json::type_name(document.root())));
  simdjson::dom::element weight_map_element;
  simdjson::dom::object weight_map;
  if (root.at_key("weight_map").get(weight_map_element) != simdjson::SUCCESS) fail(source + ": no 'weight_map'");
  if (weight_map_element.get_object().get(weight_map) != simdjson::SUCCESS)
    fail(source + ": 'weight_map' must be an object, got " + std::string(json::type_name(weight_map_element)));

  std::map<std::string, std::string> shard_by_tensor;
  for (auto [tensor, shard_element] : weight_map) {
    const std::string where = source + ": tensor " + quoted_name(tensor) + ": ";
    std::string_view shard;
    if (shard_element.get_string().get(shard) != simdjson::SUCCESS)
      fail(where + "shard must be a file name, got " + std::string(json::type_name(shard_element)));
    // Shards live beside the index: a path elsewhere (absolute, or climbing out) is refused, not followed.
    const fs::path shard_path(shard);
    if (shard.empty() || shard_path.filename() != shard_path || shard == "." || shard == "..")
      fail(where + "shard " + quoted_name(shard) + " is not a plain file name in the checkpoint directory");
    if (!shard_by_tensor.emplace(std::string(tensor), std::string(shard)).second)
      fail(where + "listed twice in 'weight_map'");
  }
  if (shard_by_tensor.empty()) fail(source + ": 'weight_map' is empty");
  return shard_by_tensor;
}

Checkpoint::Checkpoint(fs::path dir) : directory_(std::move(dir)) {
  std::error_code error;
  if (fs::is_regular_file(directory_, error)) {
    shard_paths_.push_back(directory_);
  } else if (!fs::is_directory(directory_, error)) {
    fail(directory_.string() + ": no such checkpoint directory or file");
  } else if (fs::exists(directory_ / kSingleFileName, error)) {
    shard_paths_.push_back(directory_ / kSingleFileName);
  } else if (fs::exists(directory_ / kShardIndexName, error)) {
    open_sharded(directory_ / kShardIndexName);
    return;
  } else {
    fail(directory_.string() + ": neither " + std::string(kSingleFileName) + " nor " + std::string(kShardIndexName) +
         " found: not a Hugging Face safetensors checkpoint");
  }
  shards_.emplace_back(shard_paths_.front());
  for (const TensorInfo& tensor : shards_.front().tensors()) locations_.emplace(tensor.name, Location{0, &tensor});
}

void Checkpoint::open_sharded(const fs::path& index_path) {
  const std::string index_name = index_path.string();
  std::map<std::string, std::string> shard_by_tensor;
  {
    const MappedFile index_file = json::map_json_file(index_path);
    shard_by_tensor = parse_shard_index(json::as_text(index_file.bytes()), index_name);
  }

  // Shards in name order (model-00001-of-N first), each opened once.
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : shard_by_tensor) shard_names.insert(shard);
  for (const std::string& shard : shard_names) {
    const fs::path path = directory_ / shard;
    std::error_code error;
    if (!fs::exists(path, error)) {
      std::string example;
      for (const auto& [tensor, name] : shard_by_tensor)
        if (name == shard) { example = tensor; break; }
      fail(index_name + ": shard " + quoted_name(shard) + " (holding " + quoted_name(example) + ", among others) is missing");
    }
    shard_paths_.push_back(path);
  }
  shards_.reserve(shard_paths_.size());  // Location points into the shards: they must not move
  for (const fs::path& path : shard_paths_) shards_.emplace_back(path);

  for (size_t s = 0; s < shards_.size(); ++s) {
    const std::string shard_name = shard_paths_[s].filename().string();
    for (const TensorInfo& tensor : shards_[s].tensors()) {
      const auto [existing, inserted] = locations_.emplace(tensor.name, Location{s, &tensor});
      if (!inserted)
        fail(index_name + ": tensor " + quoted_name(tensor.name) + " appears in two shards, '" +
             shard_paths_[existing->second.shard].filename().string() + "' and '" + shard_name + "'");
      const auto listed = shard_by_tensor.find(tensor.name);
      if (listed == shard_by_tensor.end())
        fail(index_name + ": tensor " + quoted_name(tensor.name) + " is in shard '" + shard_name + "' but not in the index");
      if (listed->second != shard_name)
        fail(index_name + ": tensor " + quoted_name(tensor.name) + " is listed for shard " + quoted_name(listed->second) +
             " but lies in shard '" + shard_name + "'");
    }
  }
  for (const auto& [tensor, shard] : shard_by_tensor) {
    if (!locations_.count(tensor))
      fail(index_name + ": tensor " + quoted_name(tensor) + " is listed for shard " + quoted_name(shard) + " but missing from it");
  }
}

const Checkpoint::Location& Checkpoint::locate(std::string_view name) const {
  const auto it = locations_.find(name);
  if (it == locations_.end()) fail(directory_.string() + ": no tensor " + quoted_name(name));
  return it->second;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  const auto it = locations_.find(name);
  return it == locations_.end() ? nullptr : it->second.tensor;
}

const TensorInfo& Checkpoint::at(std::string_view name) const { return *locate(name).tensor; }

const SafetensorsFile& Checkpoint::file_of(const TensorInfo& tensor) const { return shards_[locate(tensor.name).shard]; }

std::span<const std::byte> Checkpoint::data(const TensorInfo& tensor) const {
  const Location& location = locate(tensor.name);
  // The checkpoint's own record, so a TensorInfo copied or taken from elsewhere still reads the right bytes.
  return shards_[location.shard].data(*location.tensor);
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(locations_.size());
  for (const auto& [name, location] : locations_) names.push_back(name);
  return names;
}

uint64_t Checkpoint::total_tensor_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, location] : locations_) total += location.tensor->bytes;
  return total;
}

}  // namespace inferno::io
