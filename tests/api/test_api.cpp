// The public C++ API (include/inferno/inferno.hpp) as an embedding program uses it.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <fstream>

#include "inferno/inferno.hpp"
#include "test_support.hpp"

using namespace inferno::testing;

namespace {
std::filesystem::path brown() { return root_dir() / "models/brown-8m-bf16"; }
}  // namespace

TEST_CASE("devices are listed and exactly one is chosen") {
  const auto devices = inferno::list_devices();
  REQUIRE(!devices.empty());
  int chosen = 0;
  for (const auto& d : devices) chosen += d.chosen;
  CHECK(chosen == 1);
}

TEST_CASE("inspect_model reads a checkpoint without a device") {
  const auto info = inferno::inspect_model(brown());
  CHECK(info.layers == 6);
  CHECK(info.hidden_size == 192);
  CHECK(info.heads == 6);
  CHECK(info.kv_heads == 2);
  CHECK(info.head_dim == 32);
  CHECK(info.vocab_size == 32000);
  CHECK(info.tied_embeddings);
  CHECK(info.tensor_bytes_by_dtype.at("BF16") == info.weight_bytes);
  CHECK(info.params == info.weight_bytes / 2);
  CHECK(info.params > 8'000'000);
  CHECK(info.params < 9'000'000);
}

TEST_CASE("a model loads, generates, streams text and reports its memory exactly") {
  const uint64_t ctx = 64, prompt_tokens = 5;
  inferno::Model model = inferno::Model::load(brown(), {.quiet = true});
  CHECK(model.has_tokenizer());
  const uint64_t weights_held = model.device_bytes_in_use();
  CHECK(weights_held >= model.info().weight_bytes);
  CHECK(weights_held - model.info().weight_bytes < 64 * 1024);  // allocation rounding only

  const auto ids = model.tokenize("The jury said that");
  REQUIRE(ids.size() == prompt_tokens);
  CHECK(ids[0] == 1);  // spm32k's post-processor adds <s>

  inferno::Session session(model, {.ctx = uint32_t(ctx), .kv_dtype = inferno::KvDtype::F32});
  inferno::GenerateOptions options;
  options.max_new_tokens = 10;
  options.ignore_eos = true;
  inferno::TextStream stream(model);
  std::string streamed;
  int seen = 0;
  const auto out = session.generate(ids, options, [&](int32_t token) {
    streamed += stream.push(token);
    return ++seen < 6;  // cancel after six tokens
  });
  streamed += stream.finish();
  CHECK(out.size() == 6);
  CHECK(streamed == model.detokenize(out));
  CHECK(session.stats().new_tokens == 6);
  CHECK(session.stats().prompt_tokens == int(prompt_tokens));

  // The estimate `inferno info` prints is what the session really holds: KV cache + RoPE table + scratch for the
  // prompt's rows.
  const uint64_t estimate = inferno::kv_cache_bytes(model.info(), uint32_t(ctx), 1, inferno::KvDtype::F32) +
                            inferno::scratch_bytes(model.info(), uint32_t(prompt_tokens), 1);
  const uint64_t held = session.device_bytes();
  CHECK(held >= estimate);
  CHECK(double(held - estimate) <= 0.01 * double(estimate) + 64 * 1024);
  CHECK(model.device_bytes_in_use() == weights_held + held);

  // A second call with the same prompt reuses every prompt token but the last from the cache.
  session.generate(ids, options);
  CHECK(session.stats().reused_tokens == int(prompt_tokens) - 1);
}

TEST_CASE("errors cross the API as inferno::Error naming the culprit") {
  CHECK_THROWS_WITH_AS(inferno::Model::load("/nonexistent/dir", {.quiet = true}), doctest::Contains("/nonexistent/dir"),
                       inferno::Error);
  CHECK_THROWS_WITH_AS(inferno::Tokenizer::load(brown()).encode("\xc3\x28"), doctest::Contains("UTF-8"), inferno::Error);
}

TEST_CASE("generation_config.json gives the sampling and length defaults, as generate reads them") {
  // The demo model with generation_config.json rewritten (the other files linked): each variant in its own folder.
  const auto seed = test_seed();
  INFERNO_SEED_INFO();
  inferno::testing::Rng rng;
  const int top_k = int(rng.integer(2, 40)), max_new = int(rng.integer(1, 30)), max_length = int(rng.integer(20, 60));
  auto checkpoint = [&](const std::string& name, const std::string& generation_config) {
    const auto dir = std::filesystem::temp_directory_path() / ("inferno_api_genconfig_" + std::to_string(seed) + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
      std::filesystem::create_symlink(brown() / f, dir / f);
    std::ofstream(dir / "generation_config.json") << generation_config;
    return dir;
  };
  const auto both = checkpoint("both", R"({"do_sample": true, "top_k": )" + std::to_string(top_k) +
                                           R"(, "temperature": 0.7, "max_new_tokens": )" + std::to_string(max_new) +
                                           R"(, "max_length": 999})");
  const auto length_only = checkpoint("length", R"({"max_length": )" + std::to_string(max_length) + "}");
  {
    inferno::Model model = inferno::Model::load(both, {.quiet = true});
    const inferno::SamplingOptions s = inferno::default_sampling(model);
    CHECK(s.do_sample);
    CHECK(s.top_k == top_k);
    CHECK(s.temperature == doctest::Approx(0.7f));
    CHECK(inferno::default_max_new_tokens(model, 5, 64) == max_new);  // max_new_tokens wins over max_length
  }
  {
    inferno::Model model = inferno::Model::load(length_only, {.quiet = true});
    CHECK(!inferno::default_sampling(model).do_sample);
    CHECK(inferno::default_max_new_tokens(model, 7, 64) == max_length - 7);  // max_length counts the prompt
    CHECK(inferno::default_max_new_tokens(model, size_t(max_length) + 3, 64) == 0);
  }
  inferno::Model plain = inferno::Model::load(brown(), {.quiet = true});
  CHECK(inferno::default_max_new_tokens(plain, 7, 64) == 64);
  std::filesystem::remove_all(both);
  std::filesystem::remove_all(length_only);
}

// Counts in generation_config.json are 64-bit numbers: past 2^31 they must not wrap around when they become ints.
TEST_CASE("generation_config.json: huge counts saturate to their meaning, negative or absurd ones are refused") {
  auto checkpoint = [&](const std::string& name, const std::string& generation_config) {
    const auto dir = std::filesystem::temp_directory_path() / ("inferno_api_genbounds_" + std::to_string(getpid()) + name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
      std::filesystem::create_symlink(brown() / f, dir / f);
    std::ofstream(dir / "generation_config.json") << generation_config;
    return dir;
  };
  const auto huge = checkpoint("huge", R"({"do_sample": true, "max_new_tokens": 4294967301, "top_k": 2147483648,
      "no_repeat_ngram_size": 4294967296, "min_new_tokens": 2147483648, "min_length": 8589934592})");
  {
    inferno::Model model = inferno::Model::load(huge, {.quiet = true});
    const uint32_t positions = model.info().max_position_embeddings;  // 1024 for the demo model
    // 2^32 + 5 new tokens: until the context is full, not 5.
    CHECK(inferno::default_max_new_tokens(model, 7, 64) == int(positions) - 7);
    CHECK(inferno::default_max_new_tokens(model, positions + 10, 64) == 1);
    const inferno::SamplingOptions s = inferno::default_sampling(model);
    CHECK(s.top_k == 0);  // at least the vocabulary: no top-k filtering
    CHECK(s.no_repeat_ngram_size == INT32_MAX);
    CHECK(s.min_new_tokens == INT32_MAX);
    CHECK(s.min_length == INT32_MAX);
    // And it generates: the sampling parameters are valid for the processors.
    inferno::Session session(model, {.ctx = 16});
    inferno::GenerateOptions options;
    options.max_new_tokens = 3;
    options.sampling = s;
    options.sampling.seed = 5;
    CHECK(session.generate(model.tokenize("The jury"), options).size() == 3);
  }
  const auto max_length = checkpoint("maxlen", R"({"max_length": 4294967296})");
  {
    inferno::Model model = inferno::Model::load(max_length, {.quiet = true});
    CHECK(inferno::default_max_new_tokens(model, 7, 64) == int(model.info().max_position_embeddings) - 7);
  }
  for (const std::string field : {"max_new_tokens", "top_k", "max_length", "min_new_tokens", "no_repeat_ngram_size"}) {
    for (const std::string value : {"-1", "2199023255553"}) {  // negative; past 2^41
      CAPTURE(field);
      CAPTURE(value);
      const auto dir = checkpoint("bad", "{\"" + field + "\": " + value + "}");
      std::string message;
      try {
        inferno::Model::load(dir, {.quiet = true});
      } catch (const inferno::Error& e) {
        message = e.what();
      }
      CHECK(message.find("generation_config.json") != std::string::npos);
      CHECK(message.find(field) != std::string::npos);
      std::filesystem::remove_all(dir);
    }
  }
  std::filesystem::remove_all(huge);
  std::filesystem::remove_all(max_length);
}

// One rule for the default KV dtype (f32 for F32 weights, f16 otherwise, any format), applied alike by `inferno info`'s
// estimate and by a session: the estimate equals what the session allocates.
TEST_CASE("the default KV dtype: info's estimate and a session's cache agree, for F32 and 16-bit GGUF and safetensors") {
  const auto data = std::filesystem::path(std::getenv("INFERNO_TEST_DATA"));
  struct Case {
    std::filesystem::path path;
    inferno::KvDtype expected;
  };
  for (const Case& c : {Case{data / "gguf/float/llama3-gqa-f32.gguf", inferno::KvDtype::F32},
                        Case{data / "gguf/float/llama3-tied-bf16.gguf", inferno::KvDtype::F16},
                        Case{data / "hf-llama/llama3-gqa-f32", inferno::KvDtype::F32},
                        Case{data / "hf-llama/llama3-tied-bf16", inferno::KvDtype::F16}}) {
    CAPTURE(c.path);
    inferno::Model model = inferno::Model::load(c.path, {.quiet = true});
    inferno::Session session(model, {.ctx = 64});
    CHECK(session.kv_dtype() == c.expected);
    const uint64_t auto_estimate = inferno::kv_cache_bytes(model.info(), 64, 1, inferno::KvDtype::Auto);
    CHECK(auto_estimate == inferno::kv_cache_bytes(model.info(), 64, 1, c.expected));
    CHECK(auto_estimate == inferno::kv_cache_bytes(inferno::inspect_model(c.path), 64, 1, c.expected));
    // The session holds the cache and the RoPE table of the estimate, plus scratch for one row.
    const uint64_t held = session.device_bytes();
    CHECK(held >= auto_estimate);
    CHECK(held - auto_estimate <= inferno::scratch_bytes(model.info(), 1, 1) + 64 * 1024);
  }
  // A batch and context whose product overflows 64 bits is refused, not wrapped around.
  const inferno::ModelInfo info = inferno::inspect_model(data / "gguf/float/llama3-gqa-f32.gguf");
  CHECK_THROWS_WITH_AS(inferno::kv_cache_bytes(info, 134217728u, 268435456u, inferno::KvDtype::Auto),
                       doctest::Contains("overflows"), inferno::Error);
  CHECK_THROWS_WITH_AS(inferno::kv_cache_bytes(info, 4294967295u, 4294967295u, inferno::KvDtype::F16),
                       doctest::Contains("overflows"), inferno::Error);
}

TEST_CASE("--kv-budget: a share of the device memory free after the weights, or a size; bad values name the flag") {
  CHECK(inferno::parse_kv_budget("50%").share == doctest::Approx(0.5));
  CHECK(inferno::parse_kv_budget("100%").share == doctest::Approx(1.0));
  CHECK(inferno::parse_kv_budget("2.5%").share == doctest::Approx(0.025));
  CHECK(inferno::parse_kv_budget("512M").bytes == 512ull << 20);
  CHECK(inferno::parse_kv_budget("1048576").bytes == 1048576);
  for (const std::string bad : {"0%", "101%", "-5%", "%", "nan%", "inf%", "x", "", "0", "12Q", " 5%", "1e400%"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(inferno::parse_kv_budget(bad), doctest::Contains("--kv-budget"), inferno::Error);
  }
  // The pool of a share: that share of (device budget − what inferno holds), in whole blocks. A share that makes a
  // pool of about 2 MiB on whatever device runs the test.
  inferno::Model model = inferno::Model::load(brown(), {.quiet = true});
  const uint64_t free_bytes = model.device().budget_bytes - model.device_bytes_in_use();
  const double share = double(2 << 20) / double(free_bytes);
  inferno::Engine engine(model, {.parallel = 2, .ctx = 64, .kv_budget_share = share});
  const uint64_t block_bytes = engine.kv_pool_bytes() / engine.kv_blocks();
  const uint64_t expected = uint64_t(share * double(free_bytes));
  CHECK(engine.kv_pool_bytes() <= expected + 64 * 1024);  // allocation rounding
  CHECK(engine.kv_pool_bytes() + block_bytes > expected);
  inferno::GenerateOptions options;
  options.max_new_tokens = 4;
  options.ignore_eos = true;
  CHECK(engine.generate({1, 2, 3}, options).tokens.size() == 4);
  CHECK_THROWS_WITH_AS(inferno::Engine(model, {.kv_budget_share = 1.5}), doctest::Contains("--kv-budget"),
                       inferno::Error);
}
