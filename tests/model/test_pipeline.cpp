// A model split over two Vulkan devices (two copies of lavapipe's ICD manifest: the loader lists one device per
// manifest) gives the same logits as the whole model on one device, bit for bit: both devices run the same kernels
// on the same driver, and the hidden state crosses the boundary as the f32 it is. Every fixture family (F32, BF16,
// F16, w8a8, GGUF blocks), split at every layer boundary (0 layers on a device, one layer per device).
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <cstring>
#include <unistd.h>

#include "generate/session.hpp"
#include "kernels/linear.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"
#include "model/paged_forward.hpp"
#include "model/paged_kv_cache.hpp"
#include "model/pipeline.hpp"
#include "io/io_test_files.hpp"
#include "model/checkpoint_edit.hpp"
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

// A model split after `layers` layers: the embedding and those layers on `a`, the rest and the head on `b`.
struct Halves {
  std::unique_ptr<LlamaModel> first, second;
};
Halves split_at(vk::Device& a, vk::Device& b, const fs::path& path, uint32_t layers) {
  return {LlamaModel::load(a, path, {.quiet = true, .last_layer = layers, .head = false}),
          LlamaModel::load(b, path, {.quiet = true, .first_layer = layers, .embedding = false})};
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
    auto [first, second] = split_at(*d.a, *d.b, path, k);
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
  auto [first, second] = split_at(*d.a, *d.b, path, k);
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

namespace {

// A prompt step (every row's logits) and greedy decode steps, as run() does, and how many micro-batches the prompt
// step was cut into; `trace` gathers the prompt step's micro-batch times.
std::vector<std::vector<float>> run_counted(Pipeline& p, const std::vector<int32_t>& prompt, int decode_steps,
                                            uint32_t vocab, size_t& micro_batches,
                                            std::vector<Pipeline::MicroBatchTime>& trace) {
  std::vector<std::vector<float>> out;
  std::vector<int32_t> positions(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) positions[i] = int32_t(i);
  const int32_t kv_start = 0;
  out.push_back(p.step({.batch = 1, .tokens = uint32_t(prompt.size()), .ids = prompt, .positions = positions,
                        .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::All}));
  trace = p.last_trace();
  micro_batches = 0;
  for (const auto& t : trace) micro_batches = std::max<size_t>(micro_batches, t.micro_batch + 1);
  int32_t pos = int32_t(prompt.size());
  const float* last = out.back().data() + (prompt.size() - 1) * vocab;
  for (int s = 0; s < decode_steps; ++s) {
    const int32_t id = int32_t(std::max_element(last, last + vocab) - last);
    out.push_back(p.step({.batch = 1, .tokens = 1, .ids = std::span(&id, 1), .positions = std::span(&pos, 1),
                          .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::Last}));
    ++pos;
    last = out.back().data();
  }
  return out;
}

std::vector<int32_t> random_prompt(std::mt19937& rng, size_t length, uint32_t vocab) {
  std::vector<int32_t> ids(length);
  for (auto& id : ids) id = int32_t(rng() % vocab);
  return ids;
}

// Micro-batch k on stage i starts only once stage i-1 finished it (its hidden state is the input); counts the
// overlaps seen: stage i-1 starting micro-batch k+1 before stage i finished k.
size_t check_trace(const std::vector<Pipeline::MicroBatchTime>& trace, size_t stages, size_t pieces) {
  REQUIRE(trace.size() == stages * pieces);
  std::vector<std::vector<Pipeline::MicroBatchTime>> at(stages, std::vector<Pipeline::MicroBatchTime>(pieces));
  for (const auto& t : trace) at[t.stage][t.micro_batch] = t;
  size_t overlaps = 0;
  for (size_t i = 1; i < stages; ++i)
    for (size_t k = 0; k < pieces; ++k) {
      CHECK(at[i][k].start >= at[i - 1][k].end);
      if (k + 1 < pieces && at[i - 1][k + 1].start < at[i][k].end) ++overlaps;
    }
  return overlaps;
}

}  // namespace

TEST_CASE("micro-batches of a step: contiguous, even, never small enough for the matrix-vector kernel") {
  auto& d = devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  auto [first, second] = split_at(*d.a, *d.b, path, 1);
  Pipeline p({first.get(), second.get()}, 1, 16, kernels::KvType::F32);
  CHECK(p.micro_batch() == 64);  // the default with two stages
  for (uint32_t rows : {0u, 1u, 8u, 16u, 64u})
    for (uint32_t batch = 1; batch <= 5; ++batch)
      for (uint32_t tokens = 0; tokens <= 200; ++tokens) {
        CAPTURE(rows);
        CAPTURE(batch);
        CAPTURE(tokens);
        p.set_micro_batch(rows);
        const auto ranges = p.micro_batches(batch, tokens);
        REQUIRE(!ranges.empty());
        uint32_t next = 0, shortest = tokens, longest = 0;
        for (const auto& r : ranges) {
          CHECK(r.first == next);
          next += r.count;
          shortest = std::min(shortest, r.count);
          longest = std::max(longest, r.count);
        }
        CHECK(next == tokens);
        if (ranges.size() > 1) {
          CHECK(shortest >= 2);
          CHECK(batch * shortest > kernels::kMatvecMaxRows);
          CHECK(longest - shortest <= 1);
          CHECK(batch * tokens > rows);  // only a step of more rows than a micro-batch is cut
        }
        if (rows == 0 || batch * tokens <= rows) CHECK(ranges.size() == 1);
        // Cut as asked where that leaves long enough ranges: one range a micro-batch of rows.
        if (rows >= 32 && batch * tokens > rows) CHECK(ranges.size() == (tokens + rows / batch - 1) / (rows / batch));
      }
  setenv("INFERNO_PIPELINE_MICROBATCH", "12x", 1);
  CHECK_THROWS_WITH_AS(Pipeline({first.get(), second.get()}, 1, 16, kernels::KvType::F32),
                       doctest::Contains("INFERNO_PIPELINE_MICROBATCH=12x"), Error);
  setenv("INFERNO_PIPELINE_MICROBATCH", "24", 1);
  CHECK(Pipeline({first.get(), second.get()}, 1, 16, kernels::KvType::F32).micro_batch() == 24);
  unsetenv("INFERNO_PIPELINE_MICROBATCH");
}

TEST_CASE("prefill pipelined in micro-batches: bit-identical to one device and to the stages run in turn") {
  Devices& d = devices();
  const uint32_t seed = 1234;
  CAPTURE(seed);
  std::mt19937 rng(seed);
  constexpr uint32_t kMicroBatch = 16;
  constexpr int kDecode = 4;
  size_t overlaps = 0, pipelined_steps = 0;
  for (const char* name : {"hf-llama/llama3-gqa-f32", "hf-llama/mha-sharded-bf16", "gguf/tiny-k-q4_k_m/model.gguf"}) {
    const fs::path path = data_path(name);
    CAPTURE(path.string());
    auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
    const uint32_t layers = whole->hyper().layers, vocab = whole->hyper().vocab;
    const kernels::KvType kv = default_kv_type(*whole);
    // Shorter than, equal to, and several times the micro-batch (with a remainder).
    const std::vector<std::vector<int32_t>> prompts = {random_prompt(rng, 11, vocab), random_prompt(rng, kMicroBatch, vocab),
                                                       random_prompt(rng, 3 * kMicroBatch + 5, vocab)};
    std::vector<std::vector<std::vector<float>>> reference;
    for (const auto& prompt : prompts) {
      Forward f(*whole, 1, 96, kv);
      reference.push_back(run(f, prompt, kDecode, vocab));
    }
    std::set<uint32_t> splits = {0, 1, layers / 2, layers};
    for (uint32_t k : splits) {
      CAPTURE(k);
      auto [first, second] = split_at(*d.a, *d.b, path, k);
      for (size_t i = 0; i < prompts.size(); ++i) {
        CAPTURE(prompts[i].size());
        Pipeline in_turn({first.get(), second.get()}, 1, 96, kv), pipelined({first.get(), second.get()}, 1, 96, kv);
        in_turn.set_micro_batch(0);
        pipelined.set_micro_batch(kMicroBatch);
        size_t pieces_in_turn = 0, pieces = 0;
        std::vector<Pipeline::MicroBatchTime> trace;
        const auto a = run_counted(in_turn, prompts[i], kDecode, vocab, pieces_in_turn, trace);
        const auto b = run_counted(pipelined, prompts[i], kDecode, vocab, pieces, trace);
        CHECK(pieces_in_turn == 1);
        CHECK(pieces == (prompts[i].size() > kMicroBatch ? 4u : 1u));  // 53 tokens: 14 + 13 + 13 + 13
        if (pieces > 1) {
          overlaps += check_trace(trace, 2, pieces);
          ++pipelined_steps;
        }
        REQUIRE(a.size() == reference[i].size());
        REQUIRE(b.size() == reference[i].size());
        for (size_t s = 0; s < b.size(); ++s) {
          CAPTURE(s);
          REQUIRE(b[s].size() == reference[i][s].size());
          CHECK(std::memcmp(a[s].data(), reference[i][s].data(), a[s].size() * 4) == 0);
          CHECK(std::memcmp(b[s].data(), reference[i][s].data(), b[s].size() * 4) == 0);  // bit-identical
        }
        CHECK(pipelined.transferred_bytes() == in_turn.transferred_bytes());
        CHECK(pipelined.past() == prompts[i].size() + kDecode);
        CHECK(pipelined.stage(1).past() == prompts[i].size() + kDecode);
      }
    }
  }
  MESSAGE("pipelined prefills: " << pipelined_steps << ", stage 0 ahead of stage 1 in " << overlaps << " places");
  CHECK(overlaps > 0);  // the stages did run micro-batches at the same time
}

TEST_CASE("a pipelined step's GPU timings hold every micro-batch's dispatches, not only the last one's") {
  Devices& d = devices();
  std::mt19937 rng(7);
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  auto [first, second] = split_at(*d.a, *d.b, path, 1);
  const auto prompt = random_prompt(rng, 40, first->hyper().vocab);
  std::vector<int32_t> positions(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) positions[i] = int32_t(i);
  const int32_t kv_start = 0;
  const Step step{.batch = 1, .tokens = uint32_t(prompt.size()), .ids = prompt, .positions = positions,
                  .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::Last};
  std::vector<std::vector<std::vector<std::string>>> labels;  // [in turn | pipelined][stage][dispatch]
  size_t pieces = 0;
  for (uint32_t micro_batch : {0u, 16u}) {
    Pipeline p({first.get(), second.get()}, 1, 64, kernels::KvType::F32, /*timestamps=*/true);
    p.set_micro_batch(micro_batch);
    p.step(step);
    REQUIRE(p.last_timings().size() == 2);
    auto& l = labels.emplace_back(2);
    for (size_t i = 0; i < 2; ++i)
      for (const auto& t : p.last_timings()[i]) {
        CHECK(t.ns >= 0);
        l[i].push_back(t.label);
      }
    for (const auto& t : p.last_trace()) pieces = std::max<size_t>(pieces, t.micro_batch + 1);
  }
  REQUIRE(pieces == 3);  // 40 tokens in micro-batches of 16 rows: 14 + 13 + 13
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(i);
    REQUIRE(!labels[0][i].empty());
    // Each micro-batch runs the whole step's dispatches: the in-turn labels once per micro-batch.
    std::vector<std::string> repeated;
    for (size_t k = 0; k < pieces; ++k) repeated.insert(repeated.end(), labels[0][i].begin(), labels[0][i].end());
    CHECK(labels[1][i] == repeated);
  }
}

TEST_CASE("pipelined prefill: three stages, a batch with left padding, a reused cache; a failing micro-batch rewinds all") {
  Devices& d = devices();
  const uint32_t seed = 99;
  CAPTURE(seed);
  std::mt19937 rng(seed);
  const fs::path path = data_path("hf-llama/mha-sharded-bf16");  // 3 layers
  auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
  const uint32_t vocab = whole->hyper().vocab;
  auto s0 = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = 1, .head = false});
  auto s1 = LlamaModel::load(*d.b, path, {.quiet = true, .first_layer = 1, .last_layer = 2, .embedding = false, .head = false});
  auto s2 = LlamaModel::load(*d.a, path, {.quiet = true, .first_layer = 2, .embedding = false});
  gen::GenerateOptions o;
  o.max_new_tokens = 6;
  o.ignore_eos = true;
  const std::vector<int32_t> prompt = random_prompt(rng, 40, vocab);
  std::vector<int32_t> longer = prompt;
  for (int32_t id : random_prompt(rng, 30, vocab)) longer.push_back(id);
  const std::vector<std::vector<int32_t>> prompts = {random_prompt(rng, 21, vocab), random_prompt(rng, 33, vocab)};
  auto generate_all = [&](gen::Session& one, gen::Session& two) {
    std::vector<std::vector<int32_t>> out;
    out.push_back(one.generate(prompt, o));
    out.push_back(one.generate(longer, o));  // 30 new tokens after the reused 40: pipelined with past > 0
    for (auto& ids : two.generate_batch(prompts, o, 0)) out.push_back(ids);
    return out;
  };
  gen::Session one_whole(*whole, 128, kernels::KvType::F32), two_whole(*whole, 128, kernels::KvType::F32, 2);
  gen::Session one_split({s0.get(), s1.get(), s2.get()}, 128, kernels::KvType::F32);
  gen::Session two_split({s0.get(), s1.get(), s2.get()}, 128, kernels::KvType::F32, 2);
  one_split.pipeline().set_micro_batch(12);
  two_split.pipeline().set_micro_batch(12);
  const auto reference = generate_all(one_whole, two_whole);
  const auto split = generate_all(one_split, two_split);
  REQUIRE(split.size() == reference.size());
  for (size_t i = 0; i < split.size(); ++i) {
    CAPTURE(i);
    CHECK(split[i] == reference[i]);
  }
  CHECK(one_split.pipeline().micro_batches(1, 30).size() == 3);
  CHECK(two_split.pipeline().micro_batches(2, 33).size() == 6);  // 6 tokens (12 rows) of each sequence a micro-batch
  const auto all = one_split.all_logits(longer);
  CHECK(all == one_whole.all_logits(longer));

  // A token id outside the vocabulary in the last micro-batch: the first stage fails there, after the later
  // stages ran the first ones; every stage is back where it was, and the next step runs as if nothing happened.
  model::Pipeline& p = one_split.pipeline();
  p.rewind(0);
  std::vector<int32_t> bad = longer, positions(longer.size());
  for (size_t i = 0; i < positions.size(); ++i) positions[i] = int32_t(i);
  bad[bad.size() - 3] = int32_t(vocab);
  const int32_t kv_start = 0;
  REQUIRE(p.micro_batches(1, uint32_t(bad.size())).size() >= 3);
  CHECK_THROWS_WITH_AS(p.step({.batch = 1, .tokens = uint32_t(bad.size()), .ids = bad, .positions = positions,
                               .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::All}),
                       doctest::Contains("outside the vocabulary"), Error);
  for (size_t i = 0; i < p.stages(); ++i) CHECK(p.stage(i).past() == 0);
  CHECK(p.step({.batch = 1, .tokens = uint32_t(longer.size()), .ids = longer, .positions = positions,
                .kv_start = std::span(&kv_start, 1), .rows = LogitsRows::All}) == all);
}

// ---- the batching engine's paged step, split and pipelined ----

namespace {

// The sequences of a paged step over fixed block tables: sequence i owns blocks [i·per, (i+1)·per).
struct PagedSteps {
  uint32_t per = 0;
  std::vector<std::vector<uint32_t>> tables;
  PagedSteps(uint32_t sequences, uint32_t blocks_each) : per(blocks_each) {
    for (uint32_t i = 0; i < sequences; ++i) {
      tables.emplace_back();
      for (uint32_t b = 0; b < blocks_each; ++b) tables.back().push_back(i * blocks_each + b);
    }
  }
};

// Three sequences: two prompts prefilled together (51 rows), then decode rows of both beside a third prompt's 25
// tokens (27 rows), then three decode rows (a step too small to cut); `after_step` sees each step's index.
template <typename Forward, typename After>
std::vector<std::vector<float>> paged_steps(Forward& forward, const LlamaHyper& h, const PagedSteps& tables,
                                            std::vector<std::vector<int32_t>> t, After&& after_step) {
  std::vector<std::vector<float>> out;
  auto part = [&](size_t i, uint32_t past, size_t n) {
    return PagedSequence{.ids = std::span<const int32_t>(t[i]).subspan(past, n), .past = past,
                         .blocks = tables.tables[i], .logits = true};
  };
  auto greedy = [&](const std::vector<float>& logits, size_t row) {
    const float* l = logits.data() + row * h.vocab;
    return int32_t(std::max_element(l, l + h.vocab) - l);
  };
  out.push_back(forward.step(std::vector<PagedSequence>{part(0, 0, 30), part(1, 0, 21)}));
  after_step(0);
  t[0].push_back(greedy(out.back(), 0));
  t[1].push_back(greedy(out.back(), 1));
  out.push_back(forward.step(std::vector<PagedSequence>{part(0, 30, 1), part(1, 21, 1), part(2, 0, 25)}));
  after_step(1);
  for (size_t i = 0; i < 3; ++i) t[i].push_back(greedy(out.back(), i));
  out.push_back(forward.step(std::vector<PagedSequence>{part(0, 31, 1), part(1, 22, 1), part(2, 25, 1)}));
  after_step(2);
  return out;
}
const std::vector<uint64_t> kPagedRows = {51, 27, 3};

}  // namespace

TEST_CASE("paged micro-batches: every token once and in order, more than 8 rows each, every last token in the last") {
  Devices& d = devices();
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  auto [first, second] = split_at(*d.a, *d.b, path, 1);
  const LlamaHyper& h = first->hyper();
  std::vector<vk::Device*> devs = {d.a.get(), d.b.get()};
  const std::vector<uint32_t> layers = {1, h.layers - 1};
  PagedKvCache cache(devs, layers, h, 8, 16, kernels::KvType::F32);
  PagedPipeline p({first.get(), second.get()}, cache, 128);
  CHECK(p.micro_batch() == 64);  // the default with two stages
  const uint32_t seed = 20261203;
  CAPTURE(seed);
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(4096, 1);
  const std::vector<uint32_t> table = {0};
  size_t cut = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    const uint32_t micro = std::vector<uint32_t>{0, 9, 16, 24, 64}[rng() % 5];
    p.set_micro_batch(micro);
    std::vector<PagedSequence> seqs(1 + rng() % 12);
    size_t used = 0;
    uint64_t rows = 0;
    for (auto& s : seqs) {
      const size_t n = rng() % 3 == 0 ? 1 : 1 + rng() % 90;  // decode rows and prefill chunks
      s = {.ids = std::span<const int32_t>(ids).subspan(used, n), .past = uint32_t(rng() % 50), .blocks = table,
           .logits = rng() % 4 != 0};
      used += n;
      rows += n;
    }
    CAPTURE(trial);
    CAPTURE(micro);
    CAPTURE(rows);
    const auto pieces = p.micro_batches(seqs);
    REQUIRE(!pieces.empty());
    if (micro == 0 || rows <= micro) CHECK(pieces.size() == 1);
    if (pieces.size() == 1) {
      REQUIRE(pieces[0].size() == seqs.size());
      continue;
    }
    ++cut;
    // Each sequence's tokens exactly once, in order, with the past advancing; logits only at its last token.
    std::vector<size_t> next(seqs.size(), 0);
    for (size_t k = 0; k < pieces.size(); ++k) {
      uint64_t piece_rows = 0;
      for (const PagedSequence& part : pieces[k]) {
        REQUIRE(!part.ids.empty());
        piece_rows += part.ids.size();
        // Which sequence: the one whose span holds these ids.
        size_t i = 0;
        while (!(part.ids.data() >= seqs[i].ids.data() && part.ids.data() < seqs[i].ids.data() + seqs[i].ids.size())) ++i;
        const size_t offset = size_t(part.ids.data() - seqs[i].ids.data());
        CHECK(offset == next[i]);
        CHECK(part.past == seqs[i].past + offset);
        next[i] = offset + part.ids.size();
        const bool ends = next[i] == seqs[i].ids.size();
        CHECK(ends == (k + 1 == pieces.size()));  // every last token in the last micro-batch
        CHECK(part.logits == (ends && seqs[i].logits));
      }
      CHECK(piece_rows > kernels::kMatvecMaxRows);
      // Even lengths near the aim (fewer, longer ones where the aim would leave fewer than 9 rows).
      if (k + 1 < pieces.size()) CHECK(piece_rows <= std::max<uint64_t>(micro + 1, 2 * (kernels::kMatvecMaxRows + 1)));
    }
    for (size_t i = 0; i < seqs.size(); ++i) CHECK(next[i] == seqs[i].ids.size());
    // The last micro-batch keeps the step's order of sequences (its logits come out in the step's order).
    REQUIRE(pieces.back().size() == seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i)
      CHECK(pieces.back()[i].ids.data() + pieces.back()[i].ids.size() == seqs[i].ids.data() + seqs[i].ids.size());
  }
  MESSAGE(cut << " of 3000 steps were cut");
  CHECK(cut > 500);
}

TEST_CASE("the paged step split over two devices and pipelined gives one device's logits bit for bit") {
  Devices& d = devices();
  const uint32_t seed = 77;
  CAPTURE(seed);
  std::mt19937 rng(seed);
  for (const char* name : {"hf-llama/llama3-gqa-f32", "hf-llama/mha-sharded-bf16"}) {
    const fs::path path = data_path(name);
    CAPTURE(path.string());
    auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
    const LlamaHyper& h = whole->hyper();
    const kernels::KvType kv = default_kv_type(*whole);
    std::vector<std::vector<int32_t>> tokens = {random_prompt(rng, 30, h.vocab), random_prompt(rng, 21, h.vocab),
                                                random_prompt(rng, 25, h.vocab)};
    const PagedSteps tables(3, 4);  // 64 tokens a sequence
    auto steps = [&](auto& forward, auto&& after_step) { return paged_steps(forward, h, tables, tokens, after_step); };
    std::vector<std::vector<float>> reference;
    {
      PagedKvCache cache(*d.a, h, 12, 16, kv);
      PagedForward one(*whole, cache, 128);
      reference = steps(one, [](int) {});
    }
    for (uint32_t k : {0u, 1u, h.layers}) {
      CAPTURE(k);
      auto [first, second] = split_at(*d.a, *d.b, path, k);
      std::vector<vk::Device*> devs = {d.a.get(), d.b.get()};
      const std::vector<uint32_t> layers = {k, h.layers - k};
      for (uint32_t micro : {0u, 16u}) {
        CAPTURE(micro);
        PagedKvCache cache(devs, layers, h, 12, 16, kv);
        PagedPipeline p({first.get(), second.get()}, cache, 128);
        p.set_micro_batch(micro);
        std::vector<size_t> pieces;
        const auto out = steps(p, [&](int) { pieces.push_back(p.last_micro_batches()); });
        // 51 rows: 13 + 13 + 13 leading tokens, then the last 12 (both sequences' ends); 27 rows: 14 of the third
        // prompt, then 13 (two decode rows and its last 11); 3 decode rows: whole.
        CHECK(pieces == (micro ? std::vector<size_t>{4, 2, 1} : std::vector<size_t>{1, 1, 1}));
        REQUIRE(out.size() == reference.size());
        for (size_t s = 0; s < out.size(); ++s) {
          CAPTURE(s);
          REQUIRE(out[s].size() == reference[s].size());
          CHECK(std::memcmp(out[s].data(), reference[s].data(), out[s].size() * 4) == 0);
        }
      }
    }
  }
}

// The stage links (model::StageLink): how the hidden state crosses a boundary and how the next stage is ordered after
// the one before, chosen from the devices, and the host path forced; every one gives one device's logits bit for bit.
namespace {

// No validation error while it lives (the layer counts them; these tests have their own devices).
struct ValidationCheck {
  vk::Instance& instance;
  uint64_t before = instance.validation_errors();
  explicit ValidationCheck(vk::Instance& i) : instance(i) {}
  ~ValidationCheck() {
    CHECK_MESSAGE(instance.validation_errors() == before, "Vulkan validation: " << instance.last_validation_error());
  }
};

// A prompt step (every row's logits), four greedy decode steps, a rewind that keeps the prompt and two of them, the
// third decode step again, a decode step of another token (an edit), a step of three tokens, one of twelve (more rows
// than any before: new link and scratch buffers) and two more decode steps; `after` sees the model after each step.
template <typename Model>
std::vector<std::vector<float>> run_with_rewind(Model& m, const std::vector<int32_t>& prompt, uint32_t vocab,
                                                const std::function<void(size_t)>& after = {}) {
  std::vector<std::vector<float>> out;
  const int32_t kv_start = 0;
  auto step = [&](std::vector<int32_t> ids, int32_t first_position, LogitsRows rows) {
    std::vector<int32_t> positions(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) positions[i] = first_position + int32_t(i);
    out.push_back(m.step({.batch = 1, .tokens = uint32_t(ids.size()), .ids = ids, .positions = positions,
                          .kv_start = std::span(&kv_start, 1), .rows = rows}));
    if (after) after(out.size() - 1);
  };
  auto greedy = [&](size_t s) {
    const float* last = out[s].data() + out[s].size() - vocab;
    return int32_t(std::max_element(last, last + vocab) - last);
  };
  const int32_t p = int32_t(prompt.size());
  step(prompt, 0, LogitsRows::All);
  for (int i = 0; i < 4; ++i) step({greedy(out.size() - 1)}, p + i, LogitsRows::Last);
  m.rewind(uint32_t(p + 2));
  step({greedy(2)}, p + 2, LogitsRows::Last);  // step 3 again: its logits as before
  step({int32_t((greedy(out.size() - 1) + 1) % int32_t(vocab))}, p + 3, LogitsRows::Last);
  step({3, 4, 5}, p + 4, LogitsRows::All);
  step({6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, p + 7, LogitsRows::All);
  for (int i = 0; i < 2; ++i) step({greedy(out.size() - 1)}, p + 19 + i, LogitsRows::Last);
  return out;
}

void check_same(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& reference) {
  REQUIRE(got.size() == reference.size());
  for (size_t s = 0; s < got.size(); ++s) {
    CAPTURE(s);
    REQUIRE(got[s].size() == reference[s].size());
    CHECK(std::memcmp(got[s].data(), reference[s].data(), got[s].size() * 4) == 0);  // bit-identical
  }
}

const std::vector<int32_t> kLinkPrompt = {1, 17, 33, 5, 250, 9, 77};
// Rows of each step of run_with_rewind.
const std::vector<uint64_t> kLinkRows = {7, 1, 1, 1, 1, 1, 1, 3, 12, 1, 1};

// Runs the scenario on `p` against the whole model on one device; checks each step's host waits and host copy bytes
// (as `copies_per_boundary` copies of the rows' hidden state at each boundary), and that decode steps replay one
// recording on every stage.
// `grows`: the 12-token step needs larger buffers than the pipeline has (link buffers on the chained path, scratch
// on both), so that the decode step after it is recorded again.
void check_links(Pipeline& p, const std::vector<std::vector<float>>& reference, uint32_t vocab, uint32_t hidden,
                 uint32_t host_waits, uint64_t copies_per_boundary, bool grows = true) {
  std::vector<uint64_t> recordings_after(kLinkRows.size());
  const uint64_t transferred_before = p.transferred_bytes();
  const auto got = run_with_rewind(p, kLinkPrompt, vocab, [&](size_t s) {
    CAPTURE(s);
    CHECK(p.last_host_waits() == host_waits);
    CHECK(p.last_host_copy_bytes() == copies_per_boundary * kLinkRows[s] * hidden * 4 * (p.stages() - 1));
    for (size_t i = 0; i < p.stages(); ++i) recordings_after[s] += p.stage(i).recordings();
  });
  check_same(got, reference);
  // The first decode step records; every other one (across the rewind and the edit too) replays it.
  for (size_t s = 2; s <= 6; ++s) CHECK(recordings_after[s] == recordings_after[1]);
  CHECK(recordings_after[7] == recordings_after[6] + p.stages());  // the 3-token step is recorded afresh
  // After the 12-token step the decode step binds new buffers: recorded once more, then replayed.
  CHECK(recordings_after[9] == recordings_after[8] + (grows ? p.stages() : 0));
  CHECK(recordings_after[10] == recordings_after[9]);
  uint64_t rows = 0;
  for (uint64_t r : kLinkRows) rows += r;
  CHECK(p.transferred_bytes() - transferred_before == rows * hidden * 4 * (p.stages() - 1));
}

// A prompt pipelined in micro-batches (four of 10 tokens) through the links as they are: bit-identical to one device,
// a host wait for each micro-batch on each stage, and the host copies the rows only on the host path.
void check_pipelined_links(Pipeline& p, const LlamaModel& whole, bool host_copy) {
  std::vector<int32_t> prompt(40), positions(40);
  for (int32_t i = 0; i < 40; ++i) {
    prompt[size_t(i)] = (i * 37 + 11) % int32_t(whole.hyper().vocab);
    positions[size_t(i)] = i;
  }
  const int32_t kv_start = 0;
  const Step step{.batch = 1, .tokens = 40, .ids = prompt, .positions = positions, .kv_start = std::span(&kv_start, 1),
                  .rows = LogitsRows::All};
  Forward f(whole, 1, 64, kernels::KvType::F32);
  const std::vector<float> reference = f.step(step);
  const uint32_t micro_batch = p.micro_batch();
  p.set_micro_batch(10);
  REQUIRE(p.micro_batches(1, 40).size() == 4);
  p.rewind(0);
  const std::vector<float> got = p.step(step);
  REQUIRE(got.size() == reference.size());
  CHECK(std::memcmp(got.data(), reference.data(), got.size() * 4) == 0);
  CHECK(p.last_trace().size() == 4 * p.stages());
  CHECK(p.last_host_waits() == 4 * p.stages());
  CHECK(p.last_host_copy_bytes() == (host_copy ? 2 * 40 * uint64_t(whole.hyper().hidden) * 4 * (p.stages() - 1) : 0));
  p.set_micro_batch(micro_batch);
}

// The F32 fixture whole on device a, its logits over kLinkPrompt (run_with_rewind), and split in half: the first
// half on device a, the second on `second_device`.
struct HalvedModel {
  std::unique_ptr<LlamaModel> whole, first, second;
  std::vector<std::vector<float>> reference;
  uint32_t vocab = 0, hidden = 0;
  explicit HalvedModel(vk::Device& second_device) {
    Devices& d = devices();
    const fs::path path = data_path("hf-llama/llama3-gqa-f32");
    whole = LlamaModel::load(*d.a, path, {.quiet = true});
    vocab = whole->hyper().vocab;
    hidden = whole->hyper().hidden;
    const uint32_t k = whole->hyper().layers / 2;
    {
      Forward f(*whole, 1, 64, kernels::KvType::F32);
      reference = run_with_rewind(f, kLinkPrompt, vocab);
    }
    first = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = k, .head = false});
    second = LlamaModel::load(second_device, path, {.quiet = true, .first_layer = k, .embedding = false});
  }
};

}  // namespace

TEST_CASE("stage links: two stages on one device share a device buffer and a timeline semaphore, one host wait a step") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  HalvedModel m(*d.a);
  auto& [whole, first, second, reference, vocab, hidden] = m;
  Pipeline p({first.get(), second.get()}, 1, 64, kernels::KvType::F32);
  REQUIRE(d.a->caps().timeline_semaphore);  // lavapipe has it
  CHECK(p.link(0).memory() == StageLink::Memory::DeviceBuffer);
  CHECK(p.link(0).order() == StageLink::Order::Timeline);
  check_links(p, reference, vocab, hidden, 1, 0);
  check_pipelined_links(p, *whole, false);

  // The host path forced on the same pipeline: a host wait for each stage, the rows copied out and in.
  p.set_host_links(true);
  CHECK(p.link(0).memory() == StageLink::Memory::HostCopy);
  CHECK(p.link(0).order() == StageLink::Order::HostWait);
  p.rewind(0);
  check_links(p, reference, vocab, hidden, 2, 2, false);  // the scratch is as large as the 12-token step already
  p.set_host_links(false);  // and back, with caches and recordings made on the host path
  p.rewind(0);
  check_links(p, reference, vocab, hidden, 1, 0);
}

TEST_CASE("stage links: two lavapipe devices import one host allocation, ordered by timeline values the host relays") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  HalvedModel m(*d.b);
  auto& [whole, first, second, reference, vocab, hidden] = m;
  REQUIRE(d.a->caps().host_import);
  REQUIRE(d.b->caps().host_import);
  // Mesa's lavapipe has no VK_KHR_external_semaphore_fd: the host relays (one host wait a stage, no copy).
  const bool shared = d.a->caps().external_timeline_fd && d.b->caps().external_timeline_fd;
  {
    Pipeline p({first.get(), second.get()}, 1, 64, kernels::KvType::F32);
    CHECK(p.link(0).memory() == StageLink::Memory::SharedHost);
    CHECK(p.link(0).order() == (shared ? StageLink::Order::SharedTimeline : StageLink::Order::HostRelay));
    check_links(p, reference, vocab, hidden, shared ? 1 : 2, 0);
    CHECK(p.transferred_bytes() > 0);
    check_pipelined_links(p, *whole, false);
  }
  // INFERNO_STAGE_LINK=host: today's path, both still tested.
  setenv("INFERNO_STAGE_LINK", "host", 1);
  {
    Pipeline p({first.get(), second.get()}, 1, 64, kernels::KvType::F32);
    CHECK(p.link(0).memory() == StageLink::Memory::HostCopy);
    CHECK(p.link(0).order() == StageLink::Order::HostWait);
    check_links(p, reference, vocab, hidden, 2, 2);
    check_pipelined_links(p, *whole, true);
  }
  setenv("INFERNO_STAGE_LINK", "fast", 1);
  CHECK_THROWS_WITH_AS(Pipeline({first.get(), second.get()}, 1, 64, kernels::KvType::F32),
                       "INFERNO_STAGE_LINK=fast: expected host or auto", Error);
  unsetenv("INFERNO_STAGE_LINK");
}

TEST_CASE("stage links: three stages over two devices and over one") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  const fs::path path = data_path("hf-llama/mha-sharded-bf16");  // 3 layers
  auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
  const uint32_t vocab = whole->hyper().vocab, hidden = whole->hyper().hidden;
  std::vector<std::vector<float>> reference;
  {
    Forward f(*whole, 1, 64, kernels::KvType::F32);
    reference = run_with_rewind(f, kLinkPrompt, vocab);
  }
  for (const bool one_device : {false, true}) {
    CAPTURE(one_device);
    vk::Device& middle = one_device ? *d.a : *d.b;
    auto s0 = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = 1, .head = false});
    auto s1 = LlamaModel::load(middle, path, {.quiet = true, .first_layer = 1, .last_layer = 2, .embedding = false, .head = false});
    auto s2 = LlamaModel::load(*d.a, path, {.quiet = true, .first_layer = 2, .embedding = false});
    Pipeline p({s0.get(), s1.get(), s2.get()}, 1, 64, kernels::KvType::F32);
    const bool relay = !one_device && p.link(0).order() == StageLink::Order::HostRelay;
    for (size_t i = 0; i < 2; ++i) {
      CAPTURE(i);
      CHECK(p.link(i).memory() == (one_device ? StageLink::Memory::DeviceBuffer : StageLink::Memory::SharedHost));
      CHECK(p.link(i).chained());
    }
    check_links(p, reference, vocab, hidden, relay ? 3 : 1, 0);
    check_pipelined_links(p, *whole, false);
  }
}

TEST_CASE("stage links: non-finite logits on the chained path are named, and every stage's cache is as before") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  const fs::path fixture = data_path("hf-llama/llama3-gqa-f32");  // 2 layers
  const std::vector<int32_t> ids = {1, 77, 2}, positions = {0, 1, 2};
  const int32_t kv_start = 0;
  struct Case {
    std::string tensor;
    std::string named;
  };
  for (const Case& c : {Case{"model.layers.1.mlp.down_proj.weight", "layer 1 (model.layers.1)"},
                        Case{"model.layers.0.mlp.down_proj.weight", "layer 0 (model.layers.0)"}}) {
    CAPTURE(c.tensor);
    TempDir dir;
    copy_checkpoint_with_element(fixture, dir.path(), c.tensor, 100, std::numeric_limits<float>::quiet_NaN());
    auto [first, second] = split_at(*d.a, *d.b, dir.path(), 1);
    Pipeline p({first.get(), second.get()}, 1, 16, kernels::KvType::F32);
    REQUIRE(p.link(0).chained());
    const std::string message = error_message([&] {
      p.step({.batch = 1, .tokens = 3, .ids = ids, .positions = positions, .kv_start = std::span(&kv_start, 1)});
    });
    INFO("message: " << message);
    CHECK(message.find("NaN or infinity") != std::string::npos);
    CHECK(message.find(c.named) != std::string::npos);
    for (size_t i = 0; i < p.stages(); ++i) CHECK(p.stage(i).past() == 0);
  }
}

// The batching engine's paged step over the same links: a whole step chained (every stage submitted up front) and a
// micro-batched one crossing the link memory at each micro-batch's offset, both bit-identical to one device; the host
// path forced gives the same logits with a host wait for each stage and the rows copied out and in.
TEST_CASE("stage links: the paged step, whole and micro-batched, over one device, two, and the host path") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  const uint32_t seed = 78;
  CAPTURE(seed);
  std::mt19937 rng(seed);
  const fs::path path = data_path("hf-llama/llama3-gqa-f32");
  auto whole = LlamaModel::load(*d.a, path, {.quiet = true});
  const LlamaHyper& h = whole->hyper();
  const kernels::KvType kv = default_kv_type(*whole);
  const std::vector<std::vector<int32_t>> tokens = {random_prompt(rng, 30, h.vocab), random_prompt(rng, 21, h.vocab),
                                                    random_prompt(rng, 25, h.vocab)};
  const PagedSteps tables(3, 4);
  std::vector<std::vector<float>> reference;
  {
    PagedKvCache cache(*d.a, h, 12, 16, kv);
    PagedForward one(*whole, cache, 128);
    reference = paged_steps(one, h, tables, tokens, [](size_t) {});
  }
  const uint32_t k = h.layers / 2;
  struct Case {
    const char* name;
    bool same_device, host_env, host_set;
  };
  for (const Case& c : {Case{"one device", true, false, false}, Case{"two devices", false, false, false},
                        Case{"INFERNO_STAGE_LINK=host", false, true, false},
                        Case{"one device, set_host_links(true)", true, false, true}}) {
    CAPTURE(std::string(c.name));
    vk::Device& second_device = c.same_device ? *d.a : *d.b;
    auto [first, second] = split_at(*d.a, second_device, path, k);
    std::vector<vk::Device*> devs = {d.a.get(), &second_device};
    const std::vector<uint32_t> layers = {k, h.layers - k};
    for (uint32_t micro : {0u, 16u}) {
      CAPTURE(micro);
      if (c.host_env) setenv("INFERNO_STAGE_LINK", "host", 1);
      PagedKvCache cache(devs, layers, h, 12, 16, kv);
      PagedPipeline p({first.get(), second.get()}, cache, 128);
      unsetenv("INFERNO_STAGE_LINK");
      p.set_micro_batch(micro);
      if (c.host_set) p.set_host_links(true);
      const bool host = c.host_env || c.host_set;
      const bool relay = !c.same_device && p.link(0).order() == StageLink::Order::HostRelay;
      if (host) {
        CHECK(p.link(0).memory() == StageLink::Memory::HostCopy);
        CHECK(p.link(0).order() == StageLink::Order::HostWait);
      } else if (c.same_device) {
        CHECK(p.link(0).memory() == StageLink::Memory::DeviceBuffer);
        CHECK(p.link(0).order() == StageLink::Order::Timeline);
      } else {
        CHECK(p.link(0).memory() == StageLink::Memory::SharedHost);
        CHECK(p.link(0).chained());  // lavapipe: a host relay (no VK_KHR_external_semaphore_fd)
      }
      const auto out = paged_steps(p, h, tables, tokens, [&](size_t s) {
        CAPTURE(s);
        const uint64_t pieces = p.last_micro_batches();
        CHECK(pieces == (micro ? std::vector<uint64_t>{4, 2, 1}[s] : 1));
        // A micro-batched step: a host wait for each micro-batch on each stage. A whole chained one: the last
        // stage's, and one for each relay; the host path: one a stage.
        const uint32_t waits = pieces > 1 ? uint32_t(2 * pieces) : host || relay ? 2 : 1;
        CHECK(p.last_host_waits() == waits);
        CHECK(p.last_host_copy_bytes() == (host ? 2 * kPagedRows[s] * h.hidden * 4 : 0));
      });
      REQUIRE(out.size() == reference.size());
      for (size_t s = 0; s < out.size(); ++s) {
        CAPTURE(s);
        REQUIRE(out[s].size() == reference[s].size());
        CHECK(std::memcmp(out[s].data(), reference[s].data(), out[s].size() * 4) == 0);  // bit-identical
      }
    }
  }
}

// A chained paged step that fails after earlier stages were submitted (the last stage's device runs out of memory
// for the step's scratch, INFERNO_DEVICE_MEMORY_LIMIT) throws instead of waiting forever for a stage that waits on a
// host relay never made, and the pipeline takes its next step as before.
TEST_CASE("stage links: a paged step failing on its last stage releases the stages submitted before it") {
  const ValidationCheck validation(*devices().instance);
  Devices& d = devices();
  const fs::path path = data_path("hf-llama/mha-sharded-bf16");  // 3 layers: one a stage
  const LlamaHyper h = LlamaModel::load(*d.a, path, {.quiet = true})->hyper();
  const kernels::KvType kv = default_kv_type(false);
  const PagedSteps tables(3, 4);
  std::vector<int32_t> ids(21);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % h.vocab);
  auto small = [&] {  // three sequences, one token each
    std::vector<PagedSequence> s;
    for (size_t i = 0; i < 3; ++i) s.push_back({.ids = std::span(ids).first(1), .past = 0, .blocks = tables.tables[i]});
    return s;
  };
  auto large = [&] {  // the same three, 20 tokens each after the first
    std::vector<PagedSequence> s;
    for (size_t i = 0; i < 3; ++i) s.push_back({.ids = std::span(ids).subspan(1), .past = 1, .blocks = tables.tables[i]});
    return s;
  };
  // The last stage on a device of its own (device 1 opened again): stage 0 on device a, 1 on b, 2 on it; every
  // boundary between two vk::Devices, so on lavapipe a host relay.
  struct Run {
    std::unique_ptr<vk::Device> device;
    std::unique_ptr<LlamaModel> s0, s1, s2;
    std::unique_ptr<PagedKvCache> cache;
    std::unique_ptr<PagedPipeline> p;
  };
  auto open = [&](Run& r) {
    r.device = std::make_unique<vk::Device>(d.instance, 1);
    r.s0 = LlamaModel::load(*d.a, path, {.quiet = true, .last_layer = 1, .head = false});
    r.s1 = LlamaModel::load(*d.b, path, {.quiet = true, .first_layer = 1, .last_layer = 2, .embedding = false, .head = false});
    r.s2 = LlamaModel::load(*r.device, path, {.quiet = true, .first_layer = 2, .embedding = false});
    std::vector<vk::Device*> devs = {d.a.get(), d.b.get(), r.device.get()};
    const std::vector<uint32_t> layers = {1, 1, 1};
    r.cache = std::make_unique<PagedKvCache>(devs, layers, h, 12, 16, kv);
    r.p = std::make_unique<PagedPipeline>(std::vector<const LlamaModel*>{r.s0.get(), r.s1.get(), r.s2.get()}, *r.cache, 128);
    r.p->set_micro_batch(0);  // whole steps, chained
  };
  // Unlimited: what the last stage's device holds after the small step and after the large one, and its scratch.
  auto measure = std::make_unique<Run>();  // destroyed as a whole: its device after what it holds
  open(*measure);
  REQUIRE(measure->p->link(0).chained());
  REQUIRE(measure->p->link(1).chained());
  const std::vector<float> reference = measure->p->step(small());
  const uint64_t held_small = measure->device->allocated_bytes(), scratch_small = measure->p->stage(2).scratch_bytes();
  measure->p->step(large());
  const uint64_t held_large = measure->device->allocated_bytes(), scratch_large = measure->p->stage(2).scratch_bytes();
  REQUIRE(scratch_large > scratch_small);
  measure.reset();
  // Room for the large step's link memory and half its new scratch: the last stage's recording throws once the
  // stages before it are submitted.
  const uint64_t limit = held_large - (scratch_large - scratch_small) / 2;
  CAPTURE(limit);
  REQUIRE(limit > held_small);
  setenv("INFERNO_DEVICE_MEMORY_LIMIT", ("1:" + std::to_string(limit)).c_str(), 1);
  Run limited;
  open(limited);  // (destroyed at the end, its members in reverse order: the device last)
  unsetenv("INFERNO_DEVICE_MEMORY_LIMIT");
  const std::vector<float> first = limited.p->step(small());
  CHECK(std::memcmp(first.data(), reference.data(), first.size() * 4) == 0);
  const std::string message = error_message([&] { limited.p->step(large()); });
  INFO("message: " << message);
  CHECK(message.find("out of device memory") != std::string::npos);
  // The next step runs (a stage still waiting for the failed one's relay would hold it forever), its logits as before.
  const std::vector<float> again = limited.p->step(small());
  REQUIRE(again.size() == reference.size());
  CHECK(std::memcmp(again.data(), reference.data(), again.size() * 4) == 0);
  CHECK(limited.p->last_host_waits() == 3);  // two relays and the last stage
}
