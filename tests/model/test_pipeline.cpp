// A model split over two Vulkan devices (two copies of lavapipe's ICD manifest: the loader lists one device per
// manifest) gives the same logits as the whole model on one device, bit for bit: both devices run the same kernels
// on the same driver, and the hidden state crosses the boundary as the f32 it is. Every fixture family (F32, BF16,
// F16, w8a8, GGUF blocks), split at every layer boundary (0 layers on a device, one layer per device).
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "generate/session.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"
#include "model/pipeline.hpp"
#include "test_support.hpp"
#include "two_lavapipes.hpp"
#include "vk/device.hpp"
#include "vk/instance.hpp"

using namespace inferno;
using namespace inferno::model;
using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

const TwoLavapipes two_lavapipes("inferno-pipeline");

struct Devices {
  std::shared_ptr<vk::Instance> instance = std::make_shared<vk::Instance>(vk::InstanceOptions{.validation = true});
  std::unique_ptr<vk::Device> a, b;
  Devices() {
    REQUIRE_MESSAGE(vk::list_devices(*instance).devices.size() >= 2, "two Vulkan devices are needed (VK_DRIVER_FILES)");
    a = std::make_unique<vk::Device>(instance, 0);
    b = std::make_unique<vk::Device>(instance, 1);
  }
};

Devices& devices() {
  static Devices d;
  return d;
}

// Runs `steps`: the prompt (every row's logits), then greedy decode steps one token at a time (last logits).
template <typename Model>
std::vector<std::vector<float>> run(Model& m, const std::vector<int32_t>& prompt, int decode_steps, uint32_t vocab) {
  std::vector<std::vector<float>> out;
  std::vector<int32_t> positions(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) positions[i] = int32_t(i);
  const int32_t kv_start = 0;
  out.push_back(m.step({.batch = 1, .tokens = uint32_t(prompt.size()), .ids = prompt, .positions = positions,
                        .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::All}));
  int32_t pos = int32_t(prompt.size());
  const float* last = out.back().data() + (prompt.size() - 1) * vocab;
  for (int s = 0; s < decode_steps; ++s) {
    const int32_t id = int32_t(std::max_element(last, last + vocab) - last);  // greedy
    out.push_back(m.step({.batch = 1, .tokens = 1, .ids = std::span(&id, 1), .positions = std::span(&pos, 1),
                          .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::Last}));
    ++pos;
    last = out.back().data();
  }
  return out;
}

void check_split_equals_one_device(const fs::path& path) {
  CAPTURE(path.string());
  Devices& d = devices();
  const std::vector<int32_t> prompt = {1, 17, 33, 5, 250, 9, 77};
  constexpr int kDecode = 5;
  std::unique_ptr<LlamaModel> whole = LlamaModel::load(*d.a, path, {.quiet = true});
  const uint32_t layers = whole->hyper().layers, vocab = whole->hyper().vocab;
  const kernels::KvType kv = default_kv_type(*whole);
  std::vector<std::vector<float>> reference;
  {
    Forward f(*whole, 1, 64, kv);
    reference = run(f, prompt, kDecode, vocab);
  }
  const uint64_t whole_bytes = whole->weight_bytes();
  const uint64_t embedding_bytes = whole->embedding().bytes();
  whole.reset();
  for (uint32_t k = 0; k <= layers; ++k) {
    CAPTURE(k);
    const uint64_t before_a = d.a->allocated_bytes(), before_b = d.b->allocated_bytes();
    auto first = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = k, .head = false});
    auto second = LlamaModel::load(*d.b, path, {.quiet = true, .first_layer = k, .embedding = false});
    CHECK(first->layers().size() == k);
    CHECK(second->layers().size() == layers - k);
    // Each device holds only its part: the bytes of its layers (and embedding, or final norm and lm_head; a tied
    // lm_head is the embedding matrix again, on the other device).
    CHECK(d.a->allocated_bytes() - before_a == first->weight_bytes());
    CHECK(d.b->allocated_bytes() - before_b == second->weight_bytes());
    const bool tied = first->hyper().tied_embeddings;
    CHECK(first->weight_bytes() + second->weight_bytes() == whole_bytes + (tied ? embedding_bytes : 0));
    Pipeline p({first.get(), second.get()}, 1, 64, kv);
    const auto split = run(p, prompt, kDecode, vocab);
    REQUIRE(split.size() == reference.size());
    for (size_t s = 0; s < split.size(); ++s) {
      CAPTURE(s);
      REQUIRE(split[s].size() == reference[s].size());
      CHECK(std::memcmp(split[s].data(), reference[s].data(), split[s].size() * 4) == 0);  // bit-identical
    }
    CHECK(p.transferred_bytes() == (prompt.size() + kDecode) * first->hyper().hidden * 4);
    CHECK(p.stage(1).cache().bytes() * k == p.stage(0).cache().bytes() * (layers - k));  // KV per layer, per device
  }
}

}  // namespace

TEST_CASE("split over two devices at every layer: logits and greedy tokens bit-identical to one device") {
  for (const char* name : {"llama3-gqa-f32", "llama3-tied-bf16", "bias-headdim-f16", "mha-sharded-bf16", "w8a8-int8"})
    check_split_equals_one_device(data_path(std::string("hf-llama/") + name));
  for (const char* name : {"gguf/tiny-k-q4_k_m/model.gguf", "gguf/tiny-k-q8_0/model.gguf", "gguf/float/llama3-tied-bf16.gguf"})
    check_split_equals_one_device(data_path(name));
}

TEST_CASE("three stages, one layer each, and stages that do not chain are refused") {
  Devices& d = devices();
  const fs::path path = data_path("hf-llama/mha-sharded-bf16");  // 3 layers
  auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
  Forward f(*whole, 1, 32, kernels::KvType::F32);
  const auto reference = run(f, {3, 4, 5}, 2, whole->hyper().vocab);
  auto s0 = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = 1, .head = false});
  auto s1 = LlamaModel::load(*d.b, path, {.quiet = true, .first_layer = 1, .last_layer = 2, .embedding = false, .head = false});
  auto s2 = LlamaModel::load(*d.a, path, {.quiet = true, .first_layer = 2, .embedding = false});
  Pipeline p({s0.get(), s1.get(), s2.get()}, 1, 32, kernels::KvType::F32);
  const auto split = run(p, {3, 4, 5}, 2, whole->hyper().vocab);
  for (size_t s = 0; s < split.size(); ++s) CHECK(split[s] == reference[s]);
  CHECK_THROWS_WITH_AS(Pipeline({s0.get(), s2.get()}, 1, 32, kernels::KvType::F32),
                       "pipeline stage 1 does not continue the stage before it (layers from 2, expected 1)", Error);
  CHECK_THROWS_AS(Pipeline({s0.get(), s1.get()}, 1, 32, kernels::KvType::F32), Error);  // no head
}

TEST_CASE("generation over a split model: greedy ids of one sequence, of a batch and of a reused cache equal one device") {
  Devices& d = devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
  const uint32_t k = whole->hyper().layers / 2;
  auto first = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = k, .head = false});
  auto second = LlamaModel::load(*d.b, path, {.quiet = true, .first_layer = k, .embedding = false});
  gen::GenerateOptions o;
  o.max_new_tokens = 8;
  o.ignore_eos = true;  // greedy, every step taken
  const std::vector<int32_t> prompt = {1, 17, 33, 5, 250};
  std::vector<int32_t> longer = prompt;
  longer.insert(longer.end(), {9, 77, 3});
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {7, 8, 9, 10, 11}};
  auto generate_all = [&](gen::Session& one, gen::Session& two) {
    std::vector<std::vector<int32_t>> out;
    out.push_back(one.generate(prompt, o));
    out.push_back(one.generate(longer, o));  // the prompt's K/V reused from the call before: a rewind on every stage
    for (auto& ids : two.generate_batch(prompts, o, 0)) out.push_back(ids);
    return out;
  };
  gen::Session one_whole(*whole, 64, kernels::KvType::F32), two_whole(*whole, 64, kernels::KvType::F32, 2);
  gen::Session one_split({first.get(), second.get()}, 64, kernels::KvType::F32);
  gen::Session two_split({first.get(), second.get()}, 64, kernels::KvType::F32, 2);
  const auto reference = generate_all(one_whole, two_whole);
  const auto split = generate_all(one_split, two_split);
  CHECK(one_split.stats().reused_tokens >= int(prompt.size()));  // the second call did reuse the cache
  REQUIRE(split.size() == reference.size());
  for (size_t i = 0; i < split.size(); ++i) {
    CAPTURE(i);
    CHECK(split[i].size() == size_t(o.max_new_tokens));
    CHECK(split[i] == reference[i]);
  }
  CHECK(one_split.pipeline().stages() == 2);
}
