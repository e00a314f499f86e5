// The C API (include/inferno/inferno.h), compiled here as C++, against the C++ API it wraps: devices, load errors
// and cancellation, text with too-small buffers, chat rendering, streamed and cancelled generation, threads, and
// NULL or out-of-range arguments answered with a status.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <thread>

#include "capi_support.hpp"
#include "inferno/inferno.h"
#include "inferno/inferno.hpp"
#include "test_support.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

// The llama3 test checkpoint with the real Llama 3 tokenizer beside it (which has a chat template).
std::string llama3_dir() {
  return llama3_text_checkpoint(fs::temp_directory_path() / ("inferno-test-capi-llama3-" + std::to_string(::getpid())))
      .string();
}

// One C++ model of the demo checkpoint for the whole executable, beside brown_c().
inferno::Model& brown_cpp() {
  static inferno::Model model = inferno::Model::load(brown_dir(), {.quiet = true});
  return model;
}

std::vector<int32_t> c_tokenize(inferno_model* model, const std::string& text) {
  size_t count = 0;
  inferno_tokenize(model, text.data(), text.size(), 1, nullptr, 0, &count);
  std::vector<int32_t> ids(count);
  REQUIRE(inferno_tokenize(model, text.data(), text.size(), 1, ids.data(), ids.size(), &count) == INFERNO_OK);
  return ids;
}

struct Streamed {
  std::vector<int32_t> ids;
  std::string text;
  int cancel_after = -1;  // return nonzero once this many tokens were seen
  int calls_after_end = 0;
};

int collect(int32_t token, const char* piece, size_t length, void* user_data) {
  auto& s = *static_cast<Streamed*>(user_data);
  CHECK(std::strlen(piece) == length);  // NUL-terminated, no NUL inside
  s.text.append(piece, length);
  if (token < 0) {
    ++s.calls_after_end;
    return 0;
  }
  s.ids.push_back(token);
  return s.cancel_after >= 0 && int(s.ids.size()) >= s.cancel_after ? 1 : 0;
}

}  // namespace

TEST_CASE("version macros agree with the library and the project") {
  CHECK(std::string(inferno_version()) == INFERNO_VERSION_STRING);
  CHECK(std::string(INFERNO_VERSION_STRING) == INFERNO_PROJECT_VERSION);  // meson.build's project version
  CHECK(INFERNO_VERSION_NUMBER == INFERNO_VERSION_MAJOR * 10000 + INFERNO_VERSION_MINOR * 100 + INFERNO_VERSION_PATCH);
  CHECK(std::string(inferno_status_name(INFERNO_ERROR_CANCELLED)) == "INFERNO_ERROR_CANCELLED");
}

TEST_CASE("devices are listed as the C++ API lists them") {
  int count = 0;
  REQUIRE(inferno_device_count(&count) == INFERNO_OK);
  const auto devices = inferno::list_devices();
  REQUIRE(count == int(devices.size()));
  for (int i = 0; i < count; ++i) {
    inferno_device d;
    REQUIRE(inferno_device_info(i, &d) == INFERNO_OK);
    CHECK(d.index == i);
    CHECK(std::string(d.name) == devices[size_t(i)].name.substr(0, sizeof d.name - 1));
    CHECK(std::string(d.type) == devices[size_t(i)].type);
    CHECK(d.memory_bytes == devices[size_t(i)].memory_bytes);
    CHECK(bool(d.chosen) == devices[size_t(i)].chosen);
  }
  inferno_device d;
  CHECK(inferno_device_info(count, &d) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(inferno_last_error()).find(std::to_string(count)) != std::string::npos);
  CHECK(inferno_device_info(-1, &d) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_device_count(nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("load errors come back as a status and a message naming the path") {
  inferno_model* model = reinterpret_cast<inferno_model*>(uintptr_t(1));
  CHECK(inferno_model_load("/nonexistent/inferno-dir", nullptr, &model) == INFERNO_ERROR_NOT_FOUND);
  CHECK(model == nullptr);
  CHECK(std::string(inferno_last_error()).find("/nonexistent/inferno-dir") != std::string::npos);

  // A directory that is there but holds a broken config.json: the message names the file.
  const fs::path dir = fs::temp_directory_path() / ("inferno-test-capi-broken-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\"hidden_size\": ";
  CHECK(inferno_model_load(dir.string().c_str(), nullptr, &model) == INFERNO_ERROR_FAILED);
  CHECK(model == nullptr);
  CHECK(std::string(inferno_last_error()).find("config.json") != std::string::npos);
  fs::remove_all(dir);

  CHECK(inferno_model_load(nullptr, nullptr, &model) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_model_load(brown_dir().c_str(), nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  inferno_model_params params = inferno_model_default_params();
  params.device = 1000;
  CHECK(inferno_model_load(brown_dir().c_str(), &params, &model) == INFERNO_ERROR_FAILED);
  CHECK(std::string(inferno_last_error()).find("1000") != std::string::npos);
}

TEST_CASE("the progress callback sees the load go from 0 to 1 and can cancel it") {
  INFERNO_SEED_INFO();
  struct Progress {
    std::vector<float> fractions;
    int cancel_at = -1;  // the call (counted from 1) that returns nonzero
  };
  const auto on_progress = [](float fraction, void* user) {
    auto& p = *static_cast<Progress*>(user);
    p.fractions.push_back(fraction);
    return int(p.fractions.size()) == p.cancel_at ? 1 : 0;
  };
  Progress full;
  inferno_model_params params = inferno_model_default_params();
  params.progress = on_progress;
  params.progress_user_data = &full;
  inferno_model* model = nullptr;
  REQUIRE(inferno_model_load(brown_dir().c_str(), &params, &model) == INFERNO_OK);
  inferno_model_free(model);
  REQUIRE(full.fractions.size() >= 2);
  CHECK(full.fractions.front() == 0.0f);
  CHECK(full.fractions.back() == 1.0f);
  for (size_t i = 1; i < full.fractions.size(); ++i) CHECK(full.fractions[i] >= full.fractions[i - 1]);

  Rng rng(1);
  Progress cancelled;
  cancelled.cancel_at = rng.integer(1, int(full.fractions.size()));
  CAPTURE(cancelled.cancel_at);
  params.progress_user_data = &cancelled;
  model = reinterpret_cast<inferno_model*>(uintptr_t(1));
  CHECK(inferno_model_load(brown_dir().c_str(), &params, &model) == INFERNO_ERROR_CANCELLED);
  CHECK(model == nullptr);
  CHECK(int(cancelled.fractions.size()) == cancelled.cancel_at);  // no call after the one that cancelled
  CHECK(std::string(inferno_last_error()).find("cancelled") != std::string::npos);
  CHECK(std::string(inferno_last_error()).find("brown-8m-bf16") != std::string::npos);
}

TEST_CASE("describe, eos ids and sampling defaults match the C++ API") {
  inferno_model_desc desc;
  REQUIRE(inferno_model_describe(brown_c(), &desc) == INFERNO_OK);
  const auto& info = brown_cpp().info();
  CHECK(std::string(desc.family) == info.family);
  CHECK(desc.layers == info.layers);
  CHECK(desc.vocab_size == info.vocab_size);
  CHECK(desc.params == info.params);
  CHECK(desc.weight_bytes == info.weight_bytes);
  CHECK(desc.has_tokenizer == 1);
  CHECK(desc.has_chat_template == 0);  // the demo model's tokenizer_config.json has none

  const auto eos = brown_cpp().eos_ids();
  size_t count = 0;
  CHECK(inferno_model_eos_ids(brown_c(), nullptr, 0, &count) == (eos.empty() ? INFERNO_OK : INFERNO_ERROR_BUFFER_TOO_SMALL));
  REQUIRE(count == eos.size());
  std::vector<int32_t> ids(count);
  REQUIRE(inferno_model_eos_ids(brown_c(), ids.data(), ids.size(), &count) == INFERNO_OK);
  CHECK(ids == eos);

  // transformers' GenerationConfig defaults, the same as the C++ API's SamplingOptions.
  const inferno_sampling s = inferno_sampling_defaults();
  const inferno::SamplingOptions o;
  CHECK(s.do_sample == 0);
  CHECK(s.temperature == 1.0f);
  CHECK(s.top_k == 50);
  CHECK(s.top_p == 1.0f);
  CHECK(s.repetition_penalty == 1.0f);
  CHECK(s.temperature == o.temperature);
  CHECK(s.top_k == o.top_k);
  CHECK(s.min_p == o.min_p);
  CHECK(s.typical_p == o.typical_p);
  inferno_sampling m;
  REQUIRE(inferno_model_sampling_defaults(brown_c(), &m) == INFERNO_OK);
  CHECK(bool(m.do_sample) == inferno::default_sampling(brown_cpp()).do_sample);
}

TEST_CASE("tokenize and detokenize report the size they need and leave small buffers alone") {
  INFERNO_SEED_INFO();
  Rng rng(2);
  const std::string text = random_prompt(rng) + " caf\xc3\xa9";
  CAPTURE(text);
  const auto want = brown_cpp().tokenize(text);
  size_t count = 0;
  REQUIRE(inferno_tokenize(brown_c(), text.data(), text.size(), 1, nullptr, 0, &count) == INFERNO_ERROR_BUFFER_TOO_SMALL);
  REQUIRE(count == want.size());
  CHECK(std::string(inferno_last_error()).find(std::to_string(want.size())) != std::string::npos);

  std::vector<int32_t> ids(want.size(), -7);
  count = 0;
  CHECK(inferno_tokenize(brown_c(), text.data(), text.size(), 1, ids.data(), want.size() - 1, &count) ==
        INFERNO_ERROR_BUFFER_TOO_SMALL);
  CHECK(count == want.size());
  CHECK(ids == std::vector<int32_t>(want.size(), -7));  // nothing written
  REQUIRE(inferno_tokenize(brown_c(), text.data(), text.size(), 1, ids.data(), ids.size(), &count) == INFERNO_OK);
  CHECK(ids == want);
  CHECK(std::string(inferno_last_error()).empty());

  // Without special tokens (no <s>), as the C++ API does.
  std::vector<int32_t> plain(want.size());
  REQUIRE(inferno_tokenize(brown_c(), text.data(), text.size(), 0, plain.data(), plain.size(), &count) == INFERNO_OK);
  plain.resize(count);
  CHECK(plain == brown_cpp().tokenize(text, false));

  const std::string decoded = brown_cpp().detokenize(want);
  size_t length = 0;
  REQUIRE(inferno_detokenize(brown_c(), ids.data(), ids.size(), 1, nullptr, 0, &length) == INFERNO_ERROR_BUFFER_TOO_SMALL);
  REQUIRE(length == decoded.size());
  std::string buffer(length + 1, 'x');
  CHECK(inferno_detokenize(brown_c(), ids.data(), ids.size(), 1, buffer.data(), length, &length) ==
        INFERNO_ERROR_BUFFER_TOO_SMALL);  // no room for the NUL
  CHECK(buffer == std::string(length + 1, 'x'));
  REQUIRE(inferno_detokenize(brown_c(), ids.data(), ids.size(), 1, buffer.data(), buffer.size(), &length) == INFERNO_OK);
  CHECK(buffer.substr(0, length) == decoded);
  CHECK(buffer[length] == '\0');

  // Special tokens kept: <s> shows.
  REQUIRE(inferno_detokenize(brown_c(), ids.data(), ids.size(), 0, nullptr, 0, &length) == INFERNO_ERROR_BUFFER_TOO_SMALL);
  CHECK(length == brown_cpp().detokenize(want, false).size());

  CHECK(inferno_tokenize(brown_c(), "\xc3\x28", 2, 1, ids.data(), ids.size(), &count) == INFERNO_ERROR_FAILED);
  CHECK(std::string(inferno_last_error()).find("UTF-8") != std::string::npos);
  // An id without a token (past the vocabulary: padded embeddings) is skipped, as transformers' decode skips it.
  const int32_t padded[] = {999999, want[0], -1};
  REQUIRE(inferno_detokenize(brown_c(), padded, 3, 0, buffer.data(), buffer.size(), &length) == INFERNO_OK);
  CHECK(std::string(buffer.data(), length) == brown_cpp().detokenize({want[0]}, false));
}

TEST_CASE("chat rendering equals the C++ API's, and needs a template") {
  inferno_model* llama3 = nullptr;
  REQUIRE_MESSAGE(inferno_model_load(llama3_dir().c_str(), nullptr, &llama3) == INFERNO_OK, inferno_last_error());
  inferno::Model cpp = inferno::Model::load(llama3_dir(), {.quiet = true});
  const std::vector<inferno::ChatMessage> messages = {{"system", "Be brief."}, {"user", "Name a colour."}};
  std::vector<inferno_chat_message> c_messages;
  for (const auto& m : messages) c_messages.push_back({m.role.c_str(), m.content.c_str()});
  for (int add_generation_prompt : {0, 1}) {
    const std::string want = cpp.render_chat(messages, add_generation_prompt);
    size_t length = 0;
    REQUIRE(inferno_chat_render(llama3, c_messages.data(), c_messages.size(), add_generation_prompt, nullptr, nullptr, 0,
                                &length) == INFERNO_ERROR_BUFFER_TOO_SMALL);
    std::string text(length + 1, '\0');
    REQUIRE(inferno_chat_render(llama3, c_messages.data(), c_messages.size(), add_generation_prompt, nullptr, text.data(),
                                text.size(), &length) == INFERNO_OK);
    text.resize(length);
    CHECK(text == want);
  }
  inferno_model_free(llama3);

  // The demo model has no template: UNSUPPORTED, unless the caller gives one.
  size_t length = 0;
  char buffer[256];
  CHECK(inferno_chat_render(brown_c(), c_messages.data(), 2, 1, nullptr, buffer, sizeof buffer, &length) ==
        INFERNO_ERROR_UNSUPPORTED);
  CHECK(std::string(inferno_last_error()).find("chat_template") != std::string::npos);
  const char* source = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
  REQUIRE(inferno_chat_render(brown_c(), c_messages.data(), 2, 0, source, buffer, sizeof buffer, &length) == INFERNO_OK);
  CHECK(std::string(buffer) == "[system]Be brief.[user]Name a colour.");
  const char* raising = "{{ raise_exception('no system messages here') }}";
  CHECK(inferno_chat_render(brown_c(), c_messages.data(), 2, 0, raising, buffer, sizeof buffer, &length) == INFERNO_ERROR_FAILED);
  CHECK(std::string(inferno_last_error()).find("no system messages here") != std::string::npos);
  inferno_chat_message broken = {"user", nullptr};
  CHECK(inferno_chat_render(brown_c(), &broken, 1, 0, source, buffer, sizeof buffer, &length) == INFERNO_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("generation streams the C++ API's tokens, greedy and sampled, and stops when the callback asks") {
  INFERNO_SEED_INFO();
  Rng rng(3);
  const std::string text = random_prompt(rng);
  const int max_new_tokens = rng.integer(3, 7);
  CAPTURE(text);
  CAPTURE(max_new_tokens);
  const auto prompt = c_tokenize(brown_c(), text);
  REQUIRE(prompt == brown_cpp().tokenize(text));

  inferno::GenerateOptions cpp_options;
  cpp_options.max_new_tokens = max_new_tokens;
  cpp_options.ignore_eos = true;
  inferno::Session cpp_session(brown_cpp());
  const auto greedy = cpp_session.generate(prompt, cpp_options);

  inferno_session* session = nullptr;
  REQUIRE(inferno_session_create(brown_c(), nullptr, &session) == INFERNO_OK);
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = max_new_tokens;
  params.ignore_eos = 1;
  params.on_token = collect;
  Streamed streamed;
  params.user_data = &streamed;
  std::vector<int32_t> ids(size_t(max_new_tokens), -1);
  inferno_generate_result result;
  REQUIRE(inferno_generate(session, prompt.data(), prompt.size(), &params, ids.data(), ids.size(), &result) == INFERNO_OK);
  CHECK(ids == greedy);
  CHECK(streamed.ids == greedy);
  CHECK(streamed.text == brown_cpp().detokenize(greedy));
  CHECK(result.new_tokens == greedy.size());
  CHECK(result.finish_reason == INFERNO_FINISH_LENGTH);
  CHECK(result.prompt_tokens + result.reused_tokens == int(prompt.size()));

  SUBCASE("sampling with a seed draws what the C++ API draws") {
    const uint64_t seed = uint64_t(rng.integer(0, 1 << 30));
    cpp_options.sampling.do_sample = true;
    cpp_options.sampling.seed = seed;
    cpp_options.sampling.top_k = 20;
    inferno::Session fresh(brown_cpp());
    const auto sampled = fresh.generate(prompt, cpp_options);
    params.sampling.do_sample = 1;
    params.sampling.seed = seed;
    params.sampling.top_k = 20;
    params.on_token = nullptr;
    inferno_session* other = nullptr;
    REQUIRE(inferno_session_create(brown_c(), nullptr, &other) == INFERNO_OK);
    REQUIRE(inferno_generate(other, prompt.data(), prompt.size(), &params, ids.data(), ids.size(), nullptr) == INFERNO_OK);
    CHECK(ids == sampled);
    inferno_session_free(other);
  }

  SUBCASE("a callback that returns nonzero stops at that token") {
    Streamed cancelled;
    cancelled.cancel_after = rng.integer(1, max_new_tokens - 1);
    CAPTURE(cancelled.cancel_after);
    params.user_data = &cancelled;
    std::vector<int32_t> partial(size_t(max_new_tokens), -1);
    inferno_session* other = nullptr;  // fresh, as the reference's was
    REQUIRE(inferno_session_create(brown_c(), nullptr, &other) == INFERNO_OK);
    REQUIRE(inferno_generate(other, prompt.data(), prompt.size(), &params, partial.data(), partial.size(), &result) ==
            INFERNO_OK);
    inferno_session_free(other);
    CHECK(result.finish_reason == INFERNO_FINISH_CANCELLED);
    REQUIRE(result.new_tokens == size_t(cancelled.cancel_after));
    CHECK(cancelled.ids == std::vector<int32_t>(greedy.begin(), greedy.begin() + cancelled.cancel_after));
    CHECK(std::vector<int32_t>(partial.begin(), partial.begin() + cancelled.cancel_after) == cancelled.ids);
    CHECK(partial[size_t(cancelled.cancel_after)] == -1);  // nothing written past what was generated
    CHECK(cancelled.text == brown_cpp().detokenize(cancelled.ids));
  }
  inferno_session_free(session);
}

TEST_CASE("generation ends at the first eos id, which the caller may choose") {
  INFERNO_SEED_INFO();
  Rng rng(5);
  const auto prompt = c_tokenize(brown_c(), random_prompt(rng));
  // A fresh session per call: a reused cache computes the prompt's last token alone, which may round differently.
  const auto generate = [&](const inferno_generate_params& params, std::vector<int32_t>& ids, inferno_generate_result* result) {
    inferno_session* session = nullptr;
    REQUIRE(inferno_session_create(brown_c(), nullptr, &session) == INFERNO_OK);
    const inferno_status status = inferno_generate(session, prompt.data(), prompt.size(), &params, ids.data(), ids.size(), result);
    inferno_session_free(session);
    return status;
  };
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = 6;
  params.ignore_eos = 1;
  std::vector<int32_t> greedy(6);
  REQUIRE(generate(params, greedy, nullptr) == INFERNO_OK);

  // One of the greedy tokens made the eos: generation ends at its first appearance, and says so.
  const int32_t eos = greedy[size_t(rng.integer(0, 5))];
  const size_t first = size_t(std::find(greedy.begin(), greedy.end(), eos) - greedy.begin());
  CAPTURE(eos);
  params.ignore_eos = 0;
  params.eos_ids = &eos;
  params.eos_count = 1;
  std::vector<int32_t> ids(6, -1);
  inferno_generate_result result;
  REQUIRE(generate(params, ids, &result) == INFERNO_OK);
  CHECK(result.finish_reason == INFERNO_FINISH_EOS);
  REQUIRE(result.new_tokens == first + 1);
  CHECK(std::vector<int32_t>(ids.begin(), ids.begin() + long(first) + 1) ==
        std::vector<int32_t>(greedy.begin(), greedy.begin() + long(first) + 1));

  // ignore_eos wins over the eos ids.
  params.ignore_eos = 1;
  REQUIRE(generate(params, ids, &result) == INFERNO_OK);
  CHECK(result.finish_reason == INFERNO_FINISH_LENGTH);
  CHECK(ids == greedy);
}

TEST_CASE("sessions of one model on two threads give what they give one after the other") {
  INFERNO_SEED_INFO();
  Rng rng(4);
  const std::vector<std::string> texts = {random_prompt(rng), random_prompt(rng)};
  CAPTURE(texts[0]);
  CAPTURE(texts[1]);
  const int max_new_tokens = 4;
  std::vector<std::vector<int32_t>> prompts, alone(2), together(2, std::vector<int32_t>(max_new_tokens, -1));
  for (const auto& t : texts) prompts.push_back(c_tokenize(brown_c(), t));
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = max_new_tokens;
  params.ignore_eos = 1;
  for (size_t i = 0; i < 2; ++i) {
    inferno::Session s(brown_cpp());
    inferno::GenerateOptions o;
    o.max_new_tokens = max_new_tokens;
    o.ignore_eos = true;
    alone[i] = s.generate(prompts[i], o);
  }
  std::vector<inferno_status> status(2, INFERNO_ERROR_INTERNAL);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 2; ++i)
    threads.emplace_back([&, i] {
      inferno_session* session = nullptr;
      status[i] = inferno_session_create(brown_c(), nullptr, &session);
      if (status[i] == INFERNO_OK)
        status[i] = inferno_generate(session, prompts[i].data(), prompts[i].size(), &params, together[i].data(),
                                     together[i].size(), nullptr);
      inferno_session_free(session);
    });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < 2; ++i) {
    CHECK(status[i] == INFERNO_OK);
    CHECK(together[i] == alone[i]);
  }
}

TEST_CASE("invalid arguments are statuses with messages, never crashes") {
  const auto prompt = c_tokenize(brown_c(), "The jury");
  inferno_session* session = nullptr;
  REQUIRE(inferno_session_create(brown_c(), nullptr, &session) == INFERNO_OK);
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = 3;
  std::vector<int32_t> ids(3);
  const auto expect = [](inferno_status got, inferno_status want, const char* in_message) {
    CHECK(got == want);
    CHECK(std::string(inferno_last_error()).find(in_message) != std::string::npos);
  };
  expect(inferno_generate(nullptr, prompt.data(), prompt.size(), &params, ids.data(), 3, nullptr),
         INFERNO_ERROR_INVALID_ARGUMENT, "session");
  expect(inferno_generate(session, nullptr, 3, &params, ids.data(), 3, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "prompt");
  expect(inferno_generate(session, prompt.data(), 0, &params, ids.data(), 3, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "prompt");
  expect(inferno_generate(session, prompt.data(), prompt.size(), &params, ids.data(), 2, nullptr),
         INFERNO_ERROR_BUFFER_TOO_SMALL, "max_new_tokens");
  params.max_new_tokens = -1;
  expect(inferno_generate(session, prompt.data(), prompt.size(), &params, ids.data(), 3, nullptr),
         INFERNO_ERROR_INVALID_ARGUMENT, "max_new_tokens");
  params.max_new_tokens = 3;
  const int32_t outside[] = {1, 32000};
  expect(inferno_generate(session, outside, 2, &params, ids.data(), 3, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "32000");
  const int32_t negative[] = {-5};
  expect(inferno_generate(session, negative, 1, &params, ids.data(), 3, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "-5");

  size_t count = 0;
  char text[64];
  expect(inferno_tokenize(nullptr, "a", 1, 1, nullptr, 0, &count), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  expect(inferno_tokenize(brown_c(), nullptr, 4, 1, nullptr, 0, &count), INFERNO_ERROR_INVALID_ARGUMENT, "text");
  expect(inferno_tokenize(brown_c(), "a", 1, 1, nullptr, 0, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "count");
  expect(inferno_tokenize(brown_c(), "a", 1, 1, nullptr, 5, &count), INFERNO_ERROR_INVALID_ARGUMENT, "NULL");
  expect(inferno_detokenize(nullptr, ids.data(), 1, 1, text, 64, &count), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  expect(inferno_detokenize(brown_c(), nullptr, 2, 1, text, 64, &count), INFERNO_ERROR_INVALID_ARGUMENT, "ids");
  expect(inferno_chat_render(nullptr, nullptr, 0, 1, nullptr, text, 64, &count), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  expect(inferno_chat_render(brown_c(), nullptr, 2, 1, "x", text, 64, &count), INFERNO_ERROR_INVALID_ARGUMENT, "messages");
  inferno_model_desc desc;
  expect(inferno_model_describe(nullptr, &desc), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  expect(inferno_model_describe(brown_c(), nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "desc");
  expect(inferno_model_eos_ids(nullptr, nullptr, 0, &count), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  inferno_sampling sampling;
  expect(inferno_model_sampling_defaults(nullptr, &sampling), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  inferno_session* other = reinterpret_cast<inferno_session*>(uintptr_t(1));
  expect(inferno_session_create(nullptr, nullptr, &other), INFERNO_ERROR_INVALID_ARGUMENT, "model");
  CHECK(other == nullptr);
  inferno_session_params bad = inferno_session_default_params();
  bad.kv_dtype = static_cast<inferno_kv_dtype>(42);
  expect(inferno_session_create(brown_c(), &bad, &other), INFERNO_ERROR_INVALID_ARGUMENT, "42");
  expect(inferno_session_create(brown_c(), nullptr, nullptr), INFERNO_ERROR_INVALID_ARGUMENT, "session");

  // A context too small for the request fails cleanly and the session still works afterwards.
  inferno_session_params small = inferno_session_default_params();
  small.ctx = uint32_t(prompt.size());
  inferno_session* tight = nullptr;
  REQUIRE(inferno_session_create(brown_c(), &small, &tight) == INFERNO_OK);
  expect(inferno_generate(tight, prompt.data(), prompt.size(), &params, ids.data(), 3, nullptr), INFERNO_ERROR_FAILED, "ctx");
  params.max_new_tokens = 0;
  CHECK(inferno_generate(tight, prompt.data(), prompt.size(), &params, nullptr, 0, nullptr) == INFERNO_OK);
  inferno_session_free(tight);

  inferno_session_free(nullptr);
  inferno_model_free(nullptr);
  inferno_session_free(session);
}

TEST_CASE("the last error belongs to the thread that failed") {
  CHECK(inferno_model_describe(nullptr, nullptr) == INFERNO_ERROR_INVALID_ARGUMENT);
  const std::string here = inferno_last_error();
  CHECK(!here.empty());
  std::string there = "unset";
  std::thread([&] { there = inferno_last_error(); }).join();
  CHECK(there.empty());
  CHECK(std::string(inferno_last_error()) == here);
  int count = 0;
  REQUIRE(inferno_device_count(&count) == INFERNO_OK);
  CHECK(std::string(inferno_last_error()).empty());  // a success clears it
}

TEST_CASE("a session keeps its model alive: the model may be freed first") {
  inferno_model* model = nullptr;
  REQUIRE(inferno_model_load(brown_dir().c_str(), nullptr, &model) == INFERNO_OK);
  const std::vector<int32_t> prompt = c_tokenize(model, "The jury said that");
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = 4;
  params.ignore_eos = 1;
  std::vector<int32_t> before(4), after(4);
  inferno_session* first = nullptr;
  inferno_session* second = nullptr;
  REQUIRE(inferno_session_create(model, nullptr, &first) == INFERNO_OK);
  REQUIRE(inferno_session_create(model, nullptr, &second) == INFERNO_OK);
  REQUIRE(inferno_generate(first, prompt.data(), prompt.size(), &params, before.data(), before.size(), nullptr) ==
          INFERNO_OK);
  inferno_model_free(model);  // the sessions still hold it
  CHECK(inferno_generate(second, prompt.data(), prompt.size(), &params, after.data(), after.size(), nullptr) ==
        INFERNO_OK);
  CHECK(after == before);
  inferno_session_free(first);
  CHECK(inferno_generate(second, prompt.data(), prompt.size(), &params, after.data(), after.size(), nullptr) ==
        INFERNO_OK);
  CHECK(after == before);
  inferno_session_free(second);  // the model goes with the last session (ASan sees any use after free or leak)
}

TEST_CASE("memory that runs out is INFERNO_ERROR_OUT_OF_MEMORY, not a failure of another kind") {
  inferno_session_params params = inferno_session_default_params();
  params.ctx = 1u << 24;  // each layer's K cache: 2^24 × 64 floats = 4 GiB, past what the device allows
  params.kv_dtype = INFERNO_KV_F32;
  inferno_session* session = reinterpret_cast<inferno_session*>(1);
  CHECK(inferno_session_create(brown_c(), &params, &session) == INFERNO_ERROR_OUT_OF_MEMORY);
  CHECK(session == nullptr);
  CHECK(std::string(inferno_last_error()).find("KV cache") != std::string::npos);
  CHECK(std::string(inferno_status_name(INFERNO_ERROR_OUT_OF_MEMORY)) == "INFERNO_ERROR_OUT_OF_MEMORY");
  // A context that fits still works on the same model.
  params.ctx = 64;
  REQUIRE(inferno_session_create(brown_c(), &params, &session) == INFERNO_OK);
  inferno_session_free(session);
}
