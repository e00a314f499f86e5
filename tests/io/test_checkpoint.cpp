// Checkpoint directories: every fixture opens, its tensors agree with its config.json, and a sharded checkpoint
// whose index and shards disagree is refused naming the index, the shard and the tensor.
#include <simdjson.h>

#include <set>

#include "io/checkpoint.hpp"
#include "io/hf_config.hpp"
#include "io/safetensors_writer.hpp"
#include "io_test_files.hpp"

using namespace inferno;
using namespace inferno::io;
using namespace inferno::testing;

namespace {

const char* const kFixtures[] = {"llama3-gqa-f32", "llama3-tied-bf16", "bias-headdim-f16",      "mha-sharded-bf16",
                                 "mqa-yarn-f32",   "w8a8-int8",        "llama3-vocab-tied-bf16"};

std::vector<int64_t> shape_of(const Checkpoint& checkpoint, const std::string& name) {
  return checkpoint.at(name).shape;
}

// A copy of the sharded fixture in a temp dir, to break.
void copy_sharded_fixture(const TempDir& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(data_path("hf-llama/mha-sharded-bf16")))
    std::filesystem::copy_file(entry.path(), dir / entry.path().filename().string());
}

// The index with `edit` applied to its text (a plain substring replacement).
void edit_index(const TempDir& dir, const std::string& from, const std::string& to) {
  const auto path = dir / std::string(kShardIndexName);
  const auto bytes = read_file(path);
  std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  write_file(path, text);
}

}  // namespace

TEST_CASE("every fixture checkpoint opens and its tensors match its config") {
  for (const std::string name : kFixtures) {
    CAPTURE(name);
    const auto dir = data_path("hf-llama/" + name);
    const LlamaConfig config = load_llama_config(dir);
    const Checkpoint checkpoint(dir);

    const int64_t hidden = config.hidden_size, q_rows = config.num_attention_heads * config.head_dim,
                  kv_rows = config.num_key_value_heads * config.head_dim;
    CHECK(shape_of(checkpoint, "model.embed_tokens.weight") == std::vector<int64_t>{config.vocab_size, hidden});
    CHECK(shape_of(checkpoint, "model.norm.weight") == std::vector<int64_t>{hidden});
    // A tied checkpoint stores no lm_head: the embedding serves as both.
    CHECK((checkpoint.find("lm_head.weight") == nullptr) == config.tie_word_embeddings);

    std::set<int> layers;
    for (const std::string& tensor : checkpoint.tensor_names())
      if (tensor.rfind("model.layers.", 0) == 0) layers.insert(std::stoi(tensor.substr(13)));
    CHECK(int64_t(layers.size()) == config.num_hidden_layers);
    CHECK(*layers.rbegin() == config.num_hidden_layers - 1);

    for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
      const std::string p = "model.layers." + std::to_string(layer) + ".";
      CHECK(shape_of(checkpoint, p + "self_attn.q_proj.weight") == std::vector<int64_t>{q_rows, hidden});
      CHECK(shape_of(checkpoint, p + "self_attn.k_proj.weight") == std::vector<int64_t>{kv_rows, hidden});
      CHECK(shape_of(checkpoint, p + "self_attn.v_proj.weight") == std::vector<int64_t>{kv_rows, hidden});
      CHECK(shape_of(checkpoint, p + "self_attn.o_proj.weight") == std::vector<int64_t>{hidden, q_rows});
      CHECK(shape_of(checkpoint, p + "mlp.gate_proj.weight") ==
            std::vector<int64_t>{config.intermediate_size, hidden});
      CHECK(shape_of(checkpoint, p + "mlp.down_proj.weight") ==
            std::vector<int64_t>{hidden, config.intermediate_size});
      CHECK((checkpoint.find(p + "self_attn.q_proj.bias") != nullptr) == config.attention_bias);
      CHECK((checkpoint.find(p + "mlp.up_proj.bias") != nullptr) == config.mlp_bias);
    }

    uint64_t total = 0;
    for (const std::string& tensor : checkpoint.tensor_names()) {
      const TensorInfo& info = checkpoint.at(tensor);
      CHECK(checkpoint.data(info).size() == info.bytes);
      total += info.bytes;
    }
    CHECK(checkpoint.total_tensor_bytes() == total);
    // A copy of the TensorInfo reads the same bytes as the checkpoint's own record.
    const TensorInfo copy = checkpoint.at("model.norm.weight");
    CHECK(checkpoint.data(copy).data() == checkpoint.data(checkpoint.at("model.norm.weight")).data());
    CHECK(checkpoint.read_f32("model.norm.weight").size() == size_t(hidden));
    check_error_mentions([&] { checkpoint.at("model.layers.99.mlp.up_proj.weight"); },
                         {dir.string(), "model.layers.99.mlp.up_proj.weight"});
  }
}

TEST_CASE("the sharded fixture: three shards, every tensor in the shard its index names, sizes add up") {
  const auto dir = data_path("hf-llama/mha-sharded-bf16");
  const Checkpoint checkpoint(dir);
  REQUIRE(checkpoint.shard_paths().size() == 3);
  CHECK(checkpoint.shard_paths()[0].filename() == "model-00001-of-00003.safetensors");

  simdjson::dom::parser parser;
  const simdjson::dom::element index = parser.load((dir / std::string(kShardIndexName)).string());
  size_t listed = 0;
  for (auto [tensor, shard] : simdjson::dom::object(index["weight_map"])) {
    ++listed;
    const TensorInfo& info = checkpoint.at(tensor);
    CHECK(checkpoint.file_of(info).path().filename() == std::string_view(shard));
    // The bytes lie inside that shard's own mapping.
    const auto file_bytes = read_file(checkpoint.file_of(info).path());
    CHECK(std::memcmp(checkpoint.data(info).data(), file_bytes.data() + info.data_offset, info.bytes) == 0);
  }
  CHECK(checkpoint.tensor_names().size() == listed);
  CHECK(checkpoint.total_tensor_bytes() == uint64_t(int64_t(index["metadata"]["total_size"])));
}

TEST_CASE("a single .safetensors file opens as a checkpoint too") {
  const auto file = data_path("hf-llama/llama3-gqa-f32/model.safetensors");
  const Checkpoint checkpoint(file);
  CHECK(checkpoint.shard_paths() == std::vector<std::filesystem::path>{file});
  CHECK(checkpoint.find("model.norm.weight") != nullptr);
}

TEST_CASE("broken sharded checkpoints are refused naming the index, shard and tensor") {
  TempDir dir;
  copy_sharded_fixture(dir);
  const std::string index = (dir / std::string(kShardIndexName)).string();
  const std::string shard1 = "model-00001-of-00003.safetensors";
  const std::string shard2 = "model-00002-of-00003.safetensors";
  const std::string shard3 = "model-00003-of-00003.safetensors";
  auto open = [&] { Checkpoint checkpoint(dir.path()); };

  SUBCASE("the untouched copy opens") { CHECK_NOTHROW(open()); }
  SUBCASE("missing shard") {
    std::filesystem::remove(dir / shard2);
    check_error_mentions(open, {index, shard2, "missing"});
  }
  SUBCASE("tensor listed in the index but absent from its shard") {
    edit_index(dir, "\"weight_map\": {", "\"weight_map\": {\n    \"model.extra.weight\": \"" + shard3 + "\",");
    check_error_mentions(open, {index, "model.extra.weight", shard3, "missing from it"});
  }
  SUBCASE("tensor in a shard but not in the index") {
    edit_index(dir, "\"model.layers.0.input_layernorm.weight\": \"" + shard1 + "\",", "");
    check_error_mentions(open, {index, "model.layers.0.input_layernorm.weight", shard1, "not in the index"});
  }
  SUBCASE("tensor listed for another shard than the one holding it") {
    edit_index(dir, "\"model.embed_tokens.weight\": \"" + shard1 + "\"",
               "\"model.embed_tokens.weight\": \"" + shard2 + "\"");
    check_error_mentions(open, {index, "model.embed_tokens.weight", shard1, shard2});
  }
  SUBCASE("the same tensor in two shards") {
    // Shard 3 re-written with a copy of model.norm.weight (which shard 1 or 2 already holds) beside lm_head.
    const Checkpoint original(data_path("hf-llama/mha-sharded-bf16"));
    const TensorInfo& lm_head = original.at("lm_head.weight");
    const TensorInfo& norm = original.at("model.norm.weight");
    write_safetensors(dir / shard3, {{lm_head.name, lm_head.dtype, lm_head.shape, original.data(lm_head)},
                                     {norm.name, norm.dtype, norm.shape, original.data(norm)}});
    check_error_mentions(open, {index, "model.norm.weight", "two shards", shard3});
  }
  SUBCASE("an index of the wrong shape") {
    write_file(dir / std::string(kShardIndexName), std::string(R"({"weight_map": ["a"]})"));
    check_error_mentions(open, {index, "weight_map", "must be an object"});
    write_file(dir / std::string(kShardIndexName), std::string(R"({"weight_map": {"a": 3}})"));
    check_error_mentions(open, {index, "tensor 'a'", "file name"});
    write_file(dir / std::string(kShardIndexName), std::string(R"({"weight_map": {"a": "../x.safetensors"}})"));
    check_error_mentions(open, {index, "tensor 'a'", "not a plain file name"});
    write_file(dir / std::string(kShardIndexName), std::string(R"({"weight_map": {"a": "x.safetensors")"));
    check_error_mentions(open, {index, "malformed JSON"});
  }
  SUBCASE("a broken shard names the shard") {
    auto bytes = read_file(dir / shard2);
    bytes.resize(bytes.size() - 1);
    write_file(dir / shard2, bytes);
    check_error_mentions(open, {shard2, "past the end"});
  }
  SUBCASE("a directory without weights") {
    TempDir empty;
    check_error_mentions([&] { Checkpoint c(empty.path()); }, {empty.path().string(), "model.safetensors"});
    check_error_mentions([&] { Checkpoint c(empty / "nothing"); }, {"nothing", "no such"});
  }
}
