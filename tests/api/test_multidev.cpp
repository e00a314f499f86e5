// A model split over two Vulkan devices through the public API (ModelOptions::devices / split, and the C API's
// params), on two lavapipe devices: two copies of lavapipe's ICD manifest, for the loader lists one device per
// manifest. Both devices run the same kernels on the same driver and the hidden state crosses as the f32 it is, so
// every result must equal the single-device one bit for bit (no tolerance).
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <optional>

#include "inferno/inferno.h"
#include "inferno/inferno.hpp"
#include "test_support.hpp"
#include "two_lavapipes.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

const TwoLavapipes two_lavapipes("inferno-multidev");

void require_two_devices() {
  REQUIRE_MESSAGE(inferno::list_devices().size() >= 2, "two Vulkan devices are needed (VK_DRIVER_FILES)");
}

inferno::Model load(const fs::path& path, std::vector<int> devices = {}, std::vector<uint32_t> split = {}) {
  inferno::ModelOptions o;
  o.quiet = true;
  o.devices = std::move(devices);
  o.split = std::move(split);
  return inferno::Model::load(path, o);
}

// Every position's logits of a prompt, then greedy tokens with the KV cache reused across two calls.
struct Outputs {
  std::vector<float> logits;
  std::vector<int32_t> greedy, continued;
};

Outputs outputs(inferno::Model& model) {
  const std::vector<int32_t> prompt = {1, 17, 33, 5, 250, 9, 77};
  inferno::Session session(model, {.ctx = 48, .kv_dtype = inferno::KvDtype::F32});
  Outputs out;
  out.logits = session.logits(prompt);
  inferno::GenerateOptions g;
  g.max_new_tokens = 6;
  g.ignore_eos = true;
  out.greedy = session.generate(prompt, g);
  std::vector<int32_t> longer = prompt;
  longer.insert(longer.end(), out.greedy.begin(), out.greedy.end());
  out.continued = session.generate(longer, g);  // the cache reused on every device
  CHECK(session.stats().reused_tokens > 0);
  return out;
}

void check_family(const fs::path& path) {
  CAPTURE(path.string());
  require_two_devices();
  Outputs reference;
  {
    inferno::Model one = load(path);
    reference = outputs(one);
  }
  const uint32_t layers = inferno::inspect_model(path).layers;
  // 0 layers on the first device, one layer on it, one layer on the second, 0 layers on the second; and auto.
  std::vector<std::vector<uint32_t>> splits = {{0, layers}, {1, layers - 1}, {layers - 1, 1}, {layers, 0}, {}};
  for (const auto& split : splits) {
    CAPTURE(split.empty() ? std::string("auto") : std::to_string(split[0]) + "," + std::to_string(split[1]));
    inferno::Model two = load(path, {0, 1}, split);
    const auto stages = two.stages();
    REQUIRE(stages.size() == 2);
    CHECK(stages[0].device.index == 0);
    CHECK(stages[1].device.index == 1);
    CHECK(stages[0].last_layer == stages[1].first_layer);
    CHECK(stages[1].last_layer == layers);
    if (!split.empty()) CHECK(stages[0].last_layer == split[0]);
    // Each device holds its plan's weights, read from the headers alone: its layers (+ embedding, + norm and lm_head).
    const inferno::SplitPlan plan = inferno::plan_devices(
        path, {.devices = {0, 1}, .split = {stages[0].last_layer, layers - stages[0].last_layer}});
    for (size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      CHECK(stages[i].weight_bytes == plan.devices[i].weight_bytes);
      CHECK(stages[i].bytes_in_use >= stages[i].weight_bytes);
      CHECK(stages[i].bytes_in_use - stages[i].weight_bytes < 64 * 1024);  // allocation rounding only
    }
    const Outputs split_out = outputs(two);
    REQUIRE(split_out.logits.size() == reference.logits.size());
    CHECK(std::memcmp(split_out.logits.data(), reference.logits.data(), reference.logits.size() * 4) == 0);
    CHECK(split_out.greedy == reference.greedy);
    CHECK(split_out.continued == reference.continued);
  }
}

}  // namespace

TEST_CASE("F32, BF16 and F16 checkpoints split over two devices: logits and greedy tokens equal one device's") {
  for (const char* name : {"llama3-gqa-f32", "llama3-tied-bf16", "bias-headdim-f16", "mha-sharded-bf16"})
    check_family(data_path(std::string("hf-llama/") + name));
}

TEST_CASE("w8a8 and GGUF block checkpoints split over two devices: logits and greedy tokens equal one device's") {
  for (const char* name : {"hf-llama/w8a8-int8", "gguf/tiny-k-q4_k_m/model.gguf", "gguf/tiny-k-q8_0/model.gguf",
                           "gguf/float/llama3-tied-bf16.gguf"})
    check_family(data_path(name));
}

TEST_CASE("a session's KV cache and scratch sit on the devices of their layers") {
  require_two_devices();
  const fs::path path = data_path("hf-llama/mha-sharded-bf16");  // 3 layers
  inferno::Model two = load(path, {0, 1}, {1, 2});
  const auto loaded = two.stages();
  inferno::Session session(two, {.ctx = 64, .kv_dtype = inferno::KvDtype::F32});
  const auto held = two.stages();
  const inferno::ModelInfo info = two.info();
  // K and V, f32, per layer of context 64
  const uint64_t kv_per_layer = 2ull * info.kv_heads * 64 * info.head_dim * 4;
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    const uint64_t session_bytes = held[i].bytes_in_use - loaded[i].bytes_in_use;
    const uint64_t layers = held[i].last_layer - held[i].first_layer;
    CHECK(session_bytes >= layers * kv_per_layer);
    CHECK(session_bytes - layers * kv_per_layer < 1024 * 1024);  // + RoPE table and step inputs, no KV of others
  }
  CHECK(held[0].bytes_in_use + held[1].bytes_in_use - loaded[0].bytes_in_use - loaded[1].bytes_in_use ==
        session.device_bytes());
  // Per-device times and the hidden state's transfers: one f32 row per token per boundary.
  inferno::Session timed(two, {.ctx = 64, .kv_dtype = inferno::KvDtype::F32, .timestamps = true});
  inferno::GenerateOptions g;
  g.max_new_tokens = 3;
  g.ignore_eos = true;
  timed.generate({1, 2, 3, 4}, g);
  CHECK(timed.transfers().bytes == (4 + 2) * uint64_t(info.hidden_size) * 4);  // the prompt, then 2 decode steps
  const auto times = timed.last_device_times();
  REQUIRE(times.size() == 2);
  CHECK(times[0].device == 0);
  CHECK(times[1].device == 1);
  CHECK(times[0].wall_ns > 0);
  CHECK(times[1].wall_ns > 0);
}

TEST_CASE("the batching engine over a split model gives each request the tokens one device gives") {
  require_two_devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  const uint32_t layers = inferno::inspect_model(path).layers;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                                      22, 23, 24}, {5}, {1, 2, 3, 4}};
  auto run = [&](inferno::Model& model) {
    inferno::EngineOptions eo;
    eo.parallel = 3;  // one request waits for a slot
    eo.ctx = 64;
    eo.kv_dtype = inferno::KvDtype::F32;
    eo.batch_tokens = 8;  // the long prompt is prefilled in chunks beside the others' decoding
    inferno::Engine engine(model, eo);
    std::vector<std::vector<int32_t>> tokens(prompts.size());
    std::vector<std::promise<void>> done(prompts.size());
    inferno::GenerateOptions g;
    g.max_new_tokens = 7;
    g.ignore_eos = true;
    for (size_t i = 0; i < prompts.size(); ++i)
      engine.submit({.prompt = prompts[i], .options = g, .on_token = {}, .on_finish = [&, i](const inferno::EngineResult& r) {
                       tokens[i] = r.tokens;
                       done[i].set_value();
                     }});
    for (auto& d : done) d.get_future().wait();
    return tokens;
  };
  std::vector<std::vector<int32_t>> reference;
  {
    inferno::Model one = load(path);
    reference = run(one);
  }
  for (const std::vector<uint32_t>& split : std::vector<std::vector<uint32_t>>{{0, layers}, {1, layers - 1}, {layers, 0}}) {
    CAPTURE(split[0]);
    inferno::Model two = load(path, {0, 1}, split);
    const auto tokens = run(two);
    for (size_t i = 0; i < prompts.size(); ++i) {
      CAPTURE(i);
      CHECK(tokens[i].size() == 7);
      CHECK(tokens[i] == reference[i]);
    }
  }
}

TEST_CASE("a device that runs out of memory while loading is named in the error") {
  require_two_devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  // Device 1 may hold 64 KiB: the plan (from the devices' real budgets) lets the load begin, and the second
  // device's first weight fails as a real driver's allocation would.
  setenv("INFERNO_DEVICE_MEMORY_LIMIT", "1:65536", 1);
  std::string message;
  try {
    load(path, {0, 1}, {1, inferno::inspect_model(path).layers - 1});
  } catch (const inferno::OutOfDeviceMemory& e) {
    message = e.what();
  }
  unsetenv("INFERNO_DEVICE_MEMORY_LIMIT");
  CHECK_MESSAGE(message.find("out of device memory on device 1 (") != std::string::npos, message);
  CHECK_MESSAGE(message.find(path.string()) != std::string::npos, message);

  // Device 0 may hold its weights and a little more: the model loads, and a session whose KV cache does not fit
  // there is refused naming device 0.
  const uint32_t layers = inferno::inspect_model(path).layers;
  const inferno::SplitPlan plan = inferno::plan_devices(path, {.devices = {0, 1}, .split = {layers - 1, 1}});
  setenv("INFERNO_DEVICE_MEMORY_LIMIT", ("0:" + std::to_string(plan.devices[0].weight_bytes + 256 * 1024)).c_str(), 1);
  std::optional<inferno::Model> two;
  try {
    two.emplace(load(path, {0, 1}, {layers - 1, 1}));
  } catch (...) {
    unsetenv("INFERNO_DEVICE_MEMORY_LIMIT");
    throw;
  }
  unsetenv("INFERNO_DEVICE_MEMORY_LIMIT");  // read when a device opens: this model's device 0 keeps its limit
  message.clear();
  try {
    inferno::Session session(*two, {.ctx = 4096, .kv_dtype = inferno::KvDtype::F32});
  } catch (const inferno::OutOfDeviceMemory& e) {
    message = e.what();
  }
  CHECK_MESSAGE(message.find("out of device memory on device 0 (") != std::string::npos, message);
  // A small context still fits, and runs.
  inferno::Session small(*two, {.ctx = 8, .kv_dtype = inferno::KvDtype::F32});
  CHECK(small.logits({1, 2, 3}).size() == 3 * size_t(two->info().vocab_size));

  setenv("INFERNO_DEVICE_MEMORY_LIMIT", "0:x", 1);
  CHECK_THROWS_WITH_AS(load(path, {0, 1}), doctest::Contains("INFERNO_DEVICE_MEMORY_LIMIT=0:x: expected INDEX:BYTES"),
                       inferno::Error);
  unsetenv("INFERNO_DEVICE_MEMORY_LIMIT");
}

TEST_CASE("the C API loads a split model: devices and split in inferno_model_params") {
  require_two_devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  const std::vector<int32_t> prompt = {1, 17, 33, 5};
  auto greedy = [&](const inferno_model_params* params) {
    inferno_model* model = nullptr;
    REQUIRE_MESSAGE(inferno_model_load(path.c_str(), params, &model) == INFERNO_OK, inferno_last_error());
    inferno_session_params sp = inferno_session_default_params();
    sp.ctx = 32;
    inferno_session* session = nullptr;
    REQUIRE_MESSAGE(inferno_session_create(model, &sp, &session) == INFERNO_OK, inferno_last_error());
    inferno_generate_params gp = inferno_generate_default_params();
    gp.max_new_tokens = 5;
    gp.ignore_eos = 1;
    std::vector<int32_t> out(5, -1);
    CHECK_MESSAGE(inferno_generate(session, prompt.data(), prompt.size(), &gp, out.data(), out.size(), nullptr) == INFERNO_OK,
                  inferno_last_error());
    inferno_session_free(session);
    inferno_model_free(model);
    return out;
  };
  const std::vector<int32_t> one = greedy(nullptr);
  const int devices[] = {0, 1};
  const uint32_t split[] = {1, inferno::inspect_model(path).layers - 1};
  inferno_model_params p = inferno_model_default_params();
  p.devices = devices;
  p.device_count = 2;
  p.split = split;
  CHECK(greedy(&p) == one);
  p.split = nullptr;  // auto
  CHECK(greedy(&p) == one);
  // A split that does not add up is refused, naming --split's arithmetic.
  const uint32_t wrong[] = {2, 1};  // 3 layers of the model's 2
  p.split = wrong;
  inferno_model* model = nullptr;
  CHECK(inferno_model_load(path.c_str(), &p, &model) != INFERNO_OK);
  CHECK(model == nullptr);
  CHECK(std::string(inferno_last_error()).find("places 3 layers; the model has 2") != std::string::npos);
}
