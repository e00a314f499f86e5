// The hyper-parameter checks shared by config.json and GGUF (io::check_llama_config) as the model meets them: a GGUF
// file whose llama.* keys are absurd, NaN or inconsistent is refused naming the file, the key and the value before
// anything is sized from them (a 4294967295-layer file once built a 1.7 GB name list first); NaN rope_freqs are
// refused on load; and a checkpoint truncated between two tensors of a load is refused naming the file.
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "gpu_support.hpp"
#include "io/gguf.hpp"
#include "io/gguf_config.hpp"
#include "io/hf_config.hpp"
#include "io/io_test_files.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

const char* const kGgufFixture = "gguf/float/llama3-gqa-f32.gguf";

// The fixture's bytes with the 4-byte value of `key` (a uint32 or float32 scalar) replaced.
template <class T>
std::vector<std::byte> with_value(const std::string& key, T value) {
  static_assert(sizeof(T) == 4);
  std::vector<std::byte> bytes = read_file(data_path(kGgufFixture));
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const size_t at = text.find(key);  // the key, then its uint32 type number, then the value
  REQUIRE_MESSAGE(at != std::string_view::npos, key);
  std::memcpy(bytes.data() + at + key.size() + 4, &value, 4);
  return bytes;
}

void expect_refused(const std::vector<std::byte>& bytes, std::initializer_list<std::string> needles) {
  const auto start = std::chrono::steady_clock::now();
  const io::GgufFile file = io::GgufFile::from_bytes(bytes, "hostile.gguf");
  check_error_mentions([&] { io::llama_config_from_gguf(file); }, needles);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
}

}  // namespace

TEST_CASE("GGUF hyper-parameters get config.json's range checks, naming the file, the key and the value") {
  // The fixture itself passes: each refusal below comes from its one edit.
  const io::GgufFile fixture(data_path(kGgufFixture));
  const io::LlamaConfig c = io::llama_config_from_gguf(fixture);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_key_value_heads == 2);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  expect_refused(with_value("llama.block_count", uint32_t(4294967295u)),
                 {"hostile.gguf", "'llama.block_count'", "4294967295", "out of range"});
  expect_refused(with_value("llama.block_count", uint32_t(0)), {"'llama.block_count'", "value 0"});
  expect_refused(with_value("llama.attention.head_count_kv", uint32_t(3)),
                 {"'llama.attention.head_count_kv'", "not a multiple"});
  expect_refused(with_value("llama.attention.head_count", uint32_t(1u << 30)),
                 {"'llama.attention.head_count'", "1073741824"});
  expect_refused(with_value("llama.context_length", uint32_t(0)), {"'llama.context_length'", "value 0"});
  expect_refused(with_value("llama.embedding_length", uint32_t(4000000000u)),
                 {"'llama.embedding_length'", "4000000000"});
  expect_refused(with_value("llama.attention.layer_norm_rms_epsilon", nan),
                 {"hostile.gguf", "'llama.attention.layer_norm_rms_epsilon'", "nan"});
  expect_refused(with_value("llama.attention.layer_norm_rms_epsilon", -1e-5f),
                 {"'llama.attention.layer_norm_rms_epsilon'", "-0.00001"});
  expect_refused(with_value("llama.rope.freq_base", nan), {"'llama.rope.freq_base'", "nan"});
  expect_refused(with_value("llama.rope.freq_base", -500000.0f), {"'llama.rope.freq_base'", "-500000"});
}

TEST_CASE("config.json gets the same checks through the same function") {
  const std::string base = R"({"hidden_size": 64, "intermediate_size": 160, "num_attention_heads": 4, "vocab_size": 512, )";
  check_error_mentions([&] { io::parse_llama_config(base + R"("num_hidden_layers": 4294967295})", "c/config.json"); },
                       {"c/config.json", "'num_hidden_layers'", "4294967295", "out of range"});
  check_error_mentions(
      [&] { io::parse_llama_config(base + R"("num_hidden_layers": 2, "rope_theta": -1})", "c/config.json"); },
      {"'rope_theta'", "positive"});
  check_error_mentions(
      [&] { io::parse_llama_config(base + R"("num_hidden_layers": 2, "rms_norm_eps": -1e-6})", "c/config.json"); },
      {"'rms_norm_eps'", "[0, 1)"});
}

TEST_CASE("rope_freqs.weight holding NaN is refused on load, naming the file and the tensor") {
  const std::vector<std::byte> bytes = read_file(data_path(kGgufFixture));
  const io::GgufFile file = io::GgufFile::from_bytes(bytes, "probe");
  const io::TensorInfo& rope_freqs = file.tensor("rope_freqs.weight");
  TempDir dir;
  std::vector<std::byte> broken = bytes;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(broken.data() + rope_freqs.data_offset + 4, &nan, 4);  // element 1
  write_file(dir / "nan.gguf", broken);
  check_error_mentions([&] { model::LlamaModel::load(test_device(), dir / "nan.gguf", {.quiet = true}); },
                       {(dir / "nan.gguf").string(), "'rope_freqs.weight'", "element 1", "nan"});
  write_file(dir / "fine.gguf", bytes);
  CHECK_NOTHROW(model::LlamaModel::load(test_device(), dir / "fine.gguf", {.quiet = true}));
}

TEST_CASE("a checkpoint truncated between two tensors of a load is refused naming the file, not SIGBUS") {
  TempDir dir;
  const std::filesystem::path fixture = data_path("hf-llama/llama3-gqa-f32");
  std::filesystem::copy_file(fixture / "config.json", dir / "config.json");
  std::filesystem::copy_file(fixture / "model.safetensors", dir / "model.safetensors");  // a copy: it is cut below
  int loaded = 0;
  model::LoadOptions options{.quiet = true};
  options.on_tensor_loaded = [&](const std::string&) {
    if (++loaded == 1) std::filesystem::resize_file(dir / "model.safetensors", 4096);
  };
  check_error_mentions([&] { model::LlamaModel::load(test_device(), dir.path(), options); },
                       {(dir / "model.safetensors").string(), "shrank"});
  CHECK(loaded == 1);
}
