// The public C++ API (include/inferno/inferno.hpp) as an embedding program uses it.
#include <cmath>

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
