// The Llama model's reading of a checkpoint: the family its config names, and checkpoints whose tensors disagree
// with config.json (a shape the config does not imply, a tensor that is not there) refused by LlamaModel::load,
// naming the tensor, before anything reaches the device.
#include <limits>
#include <set>

#include "gpu_support.hpp"
#include "io/hf_config.hpp"
#include "io/io_test_files.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "model/checkpoint_edit.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

// A config.json with the fields detect_family and the parser look at; `extra` is appended inside the object.
std::string config_json(int64_t vocab, int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads, bool tied,
                        const std::string& extra = "") {
  return "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": " +
         std::to_string(vocab) + ", \"hidden_size\": " + std::to_string(hidden) +
         ", \"intermediate_size\": " + std::to_string(hidden * 3) + ", \"num_hidden_layers\": " + std::to_string(layers) +
         ", \"num_attention_heads\": " + std::to_string(heads) + ", \"num_key_value_heads\": " + std::to_string(kv_heads) +
         ", \"tie_word_embeddings\": " + (tied ? "true" : "false") + extra + "}";
}

const std::string kLlama31Rope =
    ", \"rope_theta\": 500000.0, \"max_position_embeddings\": 131072, \"rope_scaling\": {\"rope_type\": \"llama3\", "
    "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}";
const std::string kLlama32Rope =
    ", \"rope_theta\": 500000.0, \"max_position_embeddings\": 131072, \"rope_scaling\": {\"rope_type\": \"llama3\", "
    "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}";

// The F32 fixture's layout (llama3-gqa-f32): hidden 64, intermediate 160, 4 heads and 2 KV heads of 16, 2 layers.
const char* const kFixture = "hf-llama/llama3-gqa-f32";

void expect_load_error(const std::filesystem::path& dir, std::initializer_list<std::string> needles) {
  check_error_mentions([&] { model::LlamaModel::load(test_device(), dir, {.quiet = true}); }, needles);
}

}  // namespace

TEST_CASE("detect_family names the family from config.json alone") {
  struct Case {
    std::string what, json, family;
  };
  const Case cases[] = {
      {"Llama 2 7B", config_json(32000, 4096, 32, 32, 32, false, ", \"max_position_embeddings\": 4096"), "Llama 2"},
      {"Llama 2 70B", config_json(32000, 8192, 80, 64, 8, false), "Llama 2"},
      {"Llama 3 8B (no RoPE scaling)", config_json(128256, 4096, 32, 32, 8, false, ", \"rope_theta\": 500000.0"),
       "Llama 3"},
      {"Llama 3.1 8B", config_json(128256, 4096, 32, 32, 8, false, kLlama31Rope), "Llama 3.1"},
      {"Llama 3.1 70B", config_json(128256, 8192, 80, 64, 8, false, kLlama31Rope), "Llama 3.1"},
      {"Llama 3.2 1B (tied)", config_json(128256, 2048, 16, 32, 8, true, kLlama32Rope), "Llama 3.2"},
      {"Llama 3.2 3B (tied, 28 layers)", config_json(128256, 3072, 28, 24, 8, true, kLlama32Rope), "Llama 3.2"},
      // a fine-tune saved with its own lm_head: still 3.2 by its depth
      {"Llama 3.2 3B saved untied", config_json(128256, 3072, 28, 24, 8, false, kLlama32Rope), "Llama 3.2"},
      {"TinyLlama 1.1B by its shape", config_json(32000, 2048, 22, 32, 4, false), "TinyLlama"},
      {"TinyLlama by its recorded name",
       config_json(32000, 1024, 12, 16, 4, false, ", \"_name_or_path\": \"TinyLlama/TinyLlama_v1.1\""), "TinyLlama"},
      {"DeepSeek-R1-Distill-Llama-8B",
       config_json(128256, 4096, 32, 32, 8, false,
                   kLlama31Rope + ", \"_name_or_path\": \"deepseek-ai/DeepSeek-R1-Distill-Llama-8B\""),
       "DeepSeek-R1-Distill-Llama"},
      {"DeepSeek-R1-Distill-Llama-70B",
       config_json(128256, 8192, 80, 64, 8, false,
                   kLlama31Rope + ", \"_name_or_path\": \"deepseek-ai/DeepSeek-R1-Distill-Llama-70B\""),
       "DeepSeek-R1-Distill-Llama"},
      // Without its name the distilled model is a Llama 3.1 by every field it has.
      {"DeepSeek-R1-Distill-Llama-8B, name not recorded", config_json(128256, 4096, 32, 32, 8, false, kLlama31Rope),
       "Llama 3.1"},
      {"a 512-token test model", config_json(512, 64, 2, 4, 2, false), "Llama (other)"},
      {"Code Llama's 32016-token vocabulary", config_json(32016, 4096, 32, 32, 32, false), "Llama (other)"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    CAPTURE(c.json);
    const io::LlamaConfig config = io::parse_llama_config(c.json, "config.json");
    CHECK(model::detect_family(config) == c.family);
  }
}

TEST_CASE("expected_tensors lists what the loader reads, under either format's names") {
  const io::LlamaConfig config = io::load_llama_config(data_path(kFixture));
  const model::LlamaHyper h = model::hyper_from_config(config);
  const auto hf = model::expected_tensors(h, false), gguf = model::expected_tensors(h, true);
  // embedding, lm_head, final norm; per layer two norms and seven projections
  REQUIRE(hf.size() == 3 + 9 * h.layers);
  REQUIRE(gguf.size() == hf.size());
  const io::SafetensorsFile file(data_path(kFixture) / "model.safetensors");
  std::set<std::string> names;
  for (size_t i = 0; i < hf.size(); ++i) {
    CAPTURE(hf[i].name);
    CHECK(file.at(hf[i].name).shape == hf[i].shape);
    CHECK(gguf[i].shape == hf[i].shape);
    CHECK(gguf[i].group == hf[i].group);
    names.insert(hf[i].name);
  }
  CHECK(names.size() == file.tensors().size());  // every tensor of the file, once
  CHECK(gguf[0].name == "token_embd.weight");
  CHECK(gguf[1].name == "output.weight");
}

TEST_CASE("a checkpoint whose tensor shapes disagree with config.json is refused naming the tensor and both shapes") {
  INFERNO_SEED_INFO();
  Rng rng(41);
  const std::filesystem::path fixture = data_path(kFixture);
  const std::string config = read_text(fixture / "config.json");
  int intermediate = 160;
  while (intermediate == 160) intermediate = rng.integer(1, 1024);
  struct Case {
    std::string from, to, tensor, stored, implied;
  };
  const Case cases[] = {
      {"\"intermediate_size\": 160", "\"intermediate_size\": " + std::to_string(intermediate),
       "model.layers.0.mlp.gate_proj.weight", "[160, 64]", "[" + std::to_string(intermediate) + ", 64]"},
      {"\"num_key_value_heads\": 2", "\"num_key_value_heads\": 1", "model.layers.0.self_attn.k_proj.weight",
       "[32, 64]", "[16, 64]"},
      {"\"vocab_size\": 512", "\"vocab_size\": 500", "model.embed_tokens.weight", "[512, 64]", "[500, 64]"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.to);
    TempDir dir;
    link_weights_with_config(dir.path(), fixture, replace_once(config, c.from, c.to));
    expect_load_error(dir.path(), {dir.path().string(), "'" + c.tensor + "'", c.stored, c.implied});
  }
  // The untouched copy loads: the errors above come from the edit alone.
  TempDir dir;
  link_weights_with_config(dir.path(), fixture, config);
  CHECK_NOTHROW(model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}));
}

TEST_CASE("a checkpoint without a tensor the config implies is refused naming the tensor as missing") {
  INFERNO_SEED_INFO();
  Rng rng(42);
  const std::filesystem::path fixture = data_path(kFixture);
  const io::SafetensorsFile file(fixture / "model.safetensors");
  const char* const layer_tensors[] = {"input_layernorm.weight", "post_attention_layernorm.weight",
                                       "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                       "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                                       "mlp.down_proj.weight"};
  const std::string random_layer_tensor = "model.layers." + std::to_string(rng.integer(0, 1)) + "." +
                                          layer_tensors[rng.integer(0, int(std::size(layer_tensors)) - 1)];
  for (const std::string& dropped : {std::string("model.norm.weight"), std::string("model.layers.1.self_attn.q_proj.weight"),
                                     random_layer_tensor, std::string("lm_head.weight")}) {
    CAPTURE(dropped);
    TempDir dir;
    std::filesystem::copy_file(fixture / "config.json", dir / "config.json");
    std::vector<io::TensorToWrite> kept;
    for (const io::TensorInfo& t : file.tensors())
      if (t.name != dropped) kept.push_back({t.name, t.dtype, t.shape, file.data(t)});
    REQUIRE(kept.size() + 1 == file.tensors().size());
    io::write_safetensors(dir / "model.safetensors", kept);
    expect_load_error(dir.path(), {dir.path().string(), "'" + dropped + "'", "missing"});
  }
}

// A NaN or infinity planted in one weight turns the logits non-finite; the step names the first stage whose output
// does (a linear layer's NaN reaches every token through its output row; an embedding's only the token that reads it,
// so the NaN is put in the row of the last token, whose logits both LogitsRows read).
TEST_CASE("non-finite logits are an error naming the first layer that produced them") {
  const std::filesystem::path fixture = data_path(kFixture);  // hidden 64, vocab 512, 2 layers
  struct Case {
    std::string tensor;
    size_t index;
    float value;
    std::string named;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {"model.embed_tokens.weight", 2 * 64 + 5, nan, "embedding"},  // the row of the last prompt token
      {"model.layers.1.mlp.down_proj.weight", 100, nan, "layer 1 (model.layers.1)"},
      {"model.layers.0.self_attn.v_proj.weight", 7, nan, "layer 0 (model.layers.0)"},
      {"model.layers.1.post_attention_layernorm.weight", 3, inf, "layer 1 (model.layers.1)"},
      {"model.norm.weight", 9, nan, "lm_head"},
      {"lm_head.weight", 300 * 64 + 1, inf, "lm_head"},
  };
  const std::vector<int32_t> ids = {1, 77, 2}, positions = {0, 1, 2};
  const int32_t kv_start = 0;
  for (const Case& c : cases) {
    CAPTURE(c.tensor);
    TempDir dir;
    copy_checkpoint_with_element(fixture, dir.path(), c.tensor, c.index, c.value);
    auto m = model::LlamaModel::load(test_device(), dir.path(), {.quiet = true});
    for (const model::LogitsRows rows : {model::LogitsRows::All, model::LogitsRows::Last}) {
      model::Forward forward(*m, 1, 8, kernels::KvType::F32);
      const std::string message = error_message([&] {
        forward.step({.batch = 1, .tokens = 3, .ids = ids, .positions = positions,
                      .kv_start = std::span(&kv_start, 1), .rows = rows});
      });
      INFO("message: " << message);
      CHECK(message.find("NaN or infinity") != std::string::npos);
      CHECK(message.find(c.named) != std::string::npos);
      CHECK(forward.past() == 0);  // the failed step is not in the cache
    }
  }
  // The unchanged checkpoint steps without error (the check does not fire on finite logits), and so does a decode
  // step after it.
  auto m = model::LlamaModel::load(test_device(), fixture, {.quiet = true});
  model::Forward forward(*m, 1, 8, kernels::KvType::F32);
  CHECK(forward.step({.batch = 1, .tokens = 3, .ids = ids, .positions = positions,
                      .kv_start = std::span(&kv_start, 1)}).size() == 512);
  const int32_t next = 5, next_position = 3;
  CHECK(forward.step({.batch = 1, .tokens = 1, .ids = std::span(&next, 1), .positions = std::span(&next_position, 1),
                      .kv_start = std::span(&kv_start, 1)}).size() == 512);
}
