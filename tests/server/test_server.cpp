// The OpenAI-compatible server over real HTTP on 127.0.0.1: in-process servers on ports the OS picks, talked to
// with cpp-httplib's client, their answers checked against Session::generate on the same model; and the
// `inferno serve` command itself, started and stopped with SIGTERM. Also the pieces without a model: stop strings
// and JSON escaping.
#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "http_support.hpp"
#include "server/generation.hpp"
#include "server/stop_strings.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

// ---- servers on the test models ----

// The llama3 test checkpoint with the real Llama 3 tokenizer beside it (a model with a chat template).
fs::path llama3_dir() {
  return llama3_text_checkpoint(fs::temp_directory_path() / ("inferno-test-server-llama3-" + std::to_string(::getpid())));
}

constexpr size_t kMaxBody = 64 * 1024;  // small, so that the 413 test sends little

Served& brown() {
  static Served served(brown_dir(), {.max_body_bytes = kMaxBody});
  return served;
}
Served& llama3() {
  static Served served(llama3_dir(), {.max_body_bytes = kMaxBody});
  return served;
}

// ---- HTTP ----

// POSTs a streaming request; `keep_reading` sees the bytes so far and may return false to hang up.
Reply post_stream(int port, const std::string& path, const std::string& body,
                  const std::function<bool(const std::string&)>& keep_reading = {}) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  std::string received;
  req.content_receiver = [&](const char* data, size_t length, uint64_t, uint64_t) {
    received.append(data, length);
    return !keep_reading || keep_reading(received);
  };
  auto c = client(port);
  auto res = c.send(req);
  if (!res) return {0, received, {}};  // hung up on purpose
  return {res->status, received, {}};
}

// GET /health on a new connection: the time from connecting to the whole answer, and the answer.
std::pair<std::chrono::milliseconds, std::string> timed_health(int port) {
  const auto start = std::chrono::steady_clock::now();
  const int fd = connect_raw(port);
  REQUIRE(send_raw(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
  const std::string reply = read_raw(fd, 5s);
  ::close(fd);
  return {std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start), reply};
}

// One unlabelled sample of GET /metrics (the ops suite checks the format itself).
double gauge(int port, const std::string& name) {
  const Reply r = get(port, "/metrics");
  REQUIRE(r.status == 200);
  const size_t at = r.body.find("\n" + name + " ");
  REQUIRE_MESSAGE(at != std::string::npos, name << " not in " << r.body);
  return std::strtod(r.body.c_str() + at + 1 + name.size() + 1, nullptr);
}

// Checks OpenAI's error shape and returns the error object's param ("" when null).
std::string error_param(const Reply& r, int status) { return openai_error(r, status).param; }

// ---- references ----

// The text new tokens add after the prompt: decode(prompt + new) less decode(prompt), so a continuation keeps the
// space SentencePiece's "▁" puts at its start.
std::string continuation_text(inferno::Model& model, const std::vector<int32_t>& prompt, const std::vector<int32_t>& out) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), out.begin(), out.end());
  const std::string before = model.detokenize(prompt), whole = model.detokenize(all);
  REQUIRE(whole.rfind(before, 0) == 0);
  return whole.substr(before.size());
}

// What Session::generate gives alone on the same model: greedy, exactly max_new_tokens.
std::string reference_text(inferno::Model& model, const std::vector<int32_t>& prompt, int max_new_tokens) {
  inferno::Session session(model);
  inferno::GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.ignore_eos = true;
  return continuation_text(model, prompt, session.generate(prompt, options));
}

// The text of a completions or chat stream, checking every chunk's shape on the way.
std::string stream_text(const Events& events, bool chat, std::string* finish_reason = nullptr) {
  simdjson::dom::parser parser;
  std::string text;
  for (size_t i = 0; i < events.data.size(); ++i) {
    const auto chunk = parse(parser, events.data[i]);
    CHECK(str(chunk["object"]) == (chat ? "chat.completion.chunk" : "text_completion"));
    simdjson::dom::array choices = chunk["choices"];
    if (choices.size() == 0) continue;  // the usage chunk
    const auto choice = choices.at(0);
    if (chat) {
      const auto delta = choice["delta"];
      if (i == 0) CHECK(str(delta["role"]) == "assistant");
      std::string_view piece;
      if (delta["content"].get(piece) == simdjson::SUCCESS) text += piece;
    } else {
      text += str(choice["text"]);
    }
    if (!choice["finish_reason"].is_null() && finish_reason) *finish_reason = str(choice["finish_reason"]);
  }
  return text;
}

}  // namespace

TEST_CASE("health and models") {
  const Reply health = get(brown().port, "/health");
  CHECK(health.status == 200);
  CHECK(health.body == "{\"status\":\"ok\"}");
  const Reply models = get(brown().port, "/v1/models");
  REQUIRE(models.status == 200);
  simdjson::dom::parser parser;
  const auto list = parse(parser, models.body);
  CHECK(str(list["object"]) == "list");
  CHECK(str(list["data"].at(0)["id"]) == "brown-8m-bf16");
  CHECK(str(list["data"].at(0)["object"]) == "model");
}

TEST_CASE("a completion is Session::generate's greedy text, whole or streamed") {
  INFERNO_SEED_INFO();
  Rng rng(1);
  const std::string prompt = random_prompt(rng);
  const int max_tokens = rng.integer(2, 6);
  CAPTURE(prompt);
  CAPTURE(max_tokens);
  auto& served = brown();
  const auto ids = served.model.tokenize(prompt);
  const std::string want = reference_text(served.model, ids, max_tokens);

  const Reply r = post(served.port, "/v1/completions", completion_body(prompt, max_tokens));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  simdjson::dom::parser parser;
  const auto doc = parse(parser, r.body);
  CHECK(str(doc["object"]) == "text_completion");
  CHECK(str(doc["id"]).rfind("cmpl-", 0) == 0);
  CHECK(str(doc["model"]) == "brown-8m-bf16");
  CHECK(str(doc["choices"].at(0)["text"]) == want);
  CHECK(str(doc["choices"].at(0)["finish_reason"]) == "length");
  CHECK(int64_t(doc["usage"]["prompt_tokens"]) == int64_t(ids.size()));
  CHECK(int64_t(doc["usage"]["completion_tokens"]) == max_tokens);
  CHECK(int64_t(doc["usage"]["total_tokens"]) == int64_t(ids.size()) + max_tokens);

  // The prompt as token ids gives the same.
  std::string id_list;
  for (size_t i = 0; i < ids.size(); ++i) id_list += (i ? "," : "") + std::to_string(ids[i]);
  const Reply by_ids = post(served.port, "/v1/completions",
                            "{\"prompt\":[" + id_list + "],\"max_tokens\":" + std::to_string(max_tokens) +
                                ",\"temperature\":0,\"ignore_eos\":true}");
  REQUIRE_MESSAGE(by_ids.status == 200, by_ids.body);
  CHECK(str(parse(parser, by_ids.body)["choices"].at(0)["text"]) == want);

  const Reply s = post_stream(served.port, "/v1/completions",
                              completion_body(prompt, max_tokens, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"));
  REQUIRE(s.status == 200);
  const Events events = parse_events(s.body);
  CHECK(events.ended_with_done);
  std::string finish;
  CHECK(stream_text(events, false, &finish) == want);
  CHECK(finish == "length");
  const auto usage = parse(parser, events.data.back());  // the last chunk before [DONE]
  CHECK(int64_t(usage["usage"]["completion_tokens"]) == max_tokens);
  CHECK(int64_t(usage["usage"]["prompt_tokens"]) == int64_t(ids.size()));
}

TEST_CASE("a repeated 300-token prompt is not prefilled again: cached_tokens >= 256, and the same text") {
  // A fresh server: the shared one's prefix cache may already hold anything.
  Served own(brown_dir(), {.max_body_bytes = kMaxBody});
  INFERNO_SEED_INFO();
  Rng rng(7);
  std::string prompt;
  std::vector<int32_t> ids;
  while (ids.size() < 300) {  // random words up to 300 tokens
    prompt += (prompt.empty() ? "" : " ") + random_prompt(rng);
    ids = own.model.tokenize(prompt);
  }
  CAPTURE(ids.size());
  std::string text[2];
  int64_t cached[2] = {-1, -1};
  for (int round = 0; round < 2; ++round) {
    const Reply r = post(own.port, "/v1/completions", completion_body(prompt, 4));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    simdjson::dom::parser parser;
    const auto doc = parse(parser, r.body);
    CHECK(int64_t(doc["usage"]["prompt_tokens"]) == int64_t(ids.size()));
    cached[round] = int64_t(doc["usage"]["prompt_tokens_details"]["cached_tokens"]);
    text[round] = str(doc["choices"].at(0)["text"]);
  }
  CHECK(cached[0] == 0);
  // Every full 16-token block but the one holding the prompt's last token (its logits are needed).
  CHECK(cached[1] >= 256);
  CHECK(cached[1] == int64_t((ids.size() - 1) / 16 * 16));
  CHECK(text[1] == text[0]);
}

TEST_CASE("temperature, top_p and seed sample as Session::generate does with the same seed") {
  INFERNO_SEED_INFO();
  Rng rng(6);
  const std::string prompt = random_prompt(rng);
  const uint64_t seed = uint64_t(rng.integer(0, 1 << 30));
  const float temperature = 0.7f, top_p = 0.9f;
  CAPTURE(prompt);
  CAPTURE(seed);
  auto& served = brown();
  // The reference: the model's generation_config.json with the request's values on top.
  inferno::GenerateOptions options;
  options.max_new_tokens = 5;
  options.ignore_eos = true;
  options.sampling = inferno::default_sampling(served.model);
  options.sampling.do_sample = true;
  options.sampling.temperature = temperature;
  options.sampling.top_p = top_p;
  options.sampling.seed = seed;
  inferno::Session session(served.model);
  const auto prompt_ids = served.model.tokenize(prompt);
  const std::string want = continuation_text(served.model, prompt_ids, session.generate(prompt_ids, options));

  // Parameters that are null, zero or 1 are accepted as "not asked for".
  const std::string body = "{\"prompt\":" + quote(prompt) + ",\"max_tokens\":5,\"ignore_eos\":true,\"temperature\":0.7," +
                           "\"top_p\":0.9,\"seed\":" + std::to_string(seed) +
                           ",\"n\":1,\"presence_penalty\":0,\"frequency_penalty\":0,\"stop\":null,\"logprobs\":null}";
  simdjson::dom::parser parser;
  for (int round = 0; round < 2; ++round) {  // the same seed twice: the same text
    const Reply r = post(served.port, "/v1/completions", body);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    CHECK(str(parse(parser, r.body)["choices"].at(0)["text"]) == want);
  }
}

TEST_CASE("stop strings cut the text before the first of them, whole or streamed") {
  INFERNO_SEED_INFO();
  Rng rng(2);
  const std::string prompt = random_prompt(rng);
  CAPTURE(prompt);
  auto& served = brown();
  const int max_tokens = 6;
  const std::string full = reference_text(served.model, served.model.tokenize(prompt), max_tokens);
  REQUIRE(full.size() > 2);
  // A stop string taken from inside the reference text, so that it is certain to appear (ASCII, so that it is
  // whole characters).
  std::string stop;
  for (int attempt = 0; attempt < 100 && stop.empty(); ++attempt) {
    const size_t at = size_t(rng.integer(1, int(full.size()) - 2));
    stop = full.substr(at, size_t(rng.integer(1, int(std::min<size_t>(4, full.size() - at)))));
    for (unsigned char c : stop)
      if (c >= 0x80) stop.clear();
  }
  REQUIRE(!stop.empty());
  CAPTURE(stop);
  const std::string want = full.substr(0, full.find(stop));
  const std::string extra = ",\"stop\":[" + quote(stop) + "," + quote("never-in-the-text") + "]";

  const Reply r = post(served.port, "/v1/completions", completion_body(prompt, max_tokens, extra));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  simdjson::dom::parser parser;
  const auto choice = parse(parser, r.body)["choices"].at(0);
  CHECK(str(choice["text"]) == want);
  CHECK(str(choice["finish_reason"]) == "stop");

  const Reply s = post_stream(served.port, "/v1/completions", completion_body(prompt, max_tokens, extra + ",\"stream\":true"));
  const Events events = parse_events(s.body);
  CHECK(events.ended_with_done);
  std::string finish;
  CHECK(stream_text(events, false, &finish) == want);
  CHECK(finish == "stop");
}

TEST_CASE("chat completions render the model's template; a model without one gets 400") {
  auto& served = llama3();
  const std::string messages = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Name a \"},"
                               "{\"type\":\"text\",\"text\":\"colour.\"}]}]";
  const auto prompt = served.model.tokenize(
      served.model.render_chat({{"system", "Be brief."}, {"user", "Name a colour."}}, true), false);
  const int max_tokens = 4;
  const std::string want = reference_text(served.model, prompt, max_tokens);
  const std::string body = "{\"messages\":" + messages + ",\"max_completion_tokens\":" + std::to_string(max_tokens) +
                           ",\"temperature\":0,\"ignore_eos\":true";

  const Reply r = post(served.port, "/v1/chat/completions", body + "}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  simdjson::dom::parser parser;
  const auto doc = parse(parser, r.body);
  CHECK(str(doc["object"]) == "chat.completion");
  CHECK(str(doc["id"]).rfind("chatcmpl-", 0) == 0);
  CHECK(str(doc["choices"].at(0)["message"]["role"]) == "assistant");
  CHECK(str(doc["choices"].at(0)["message"]["content"]) == want);
  CHECK(int64_t(doc["usage"]["prompt_tokens"]) == int64_t(prompt.size()));
  CHECK(int64_t(doc["usage"]["completion_tokens"]) == max_tokens);

  const Reply s = post_stream(served.port, "/v1/chat/completions", body + ",\"stream\":true}");
  const Events events = parse_events(s.body);
  CHECK(events.ended_with_done);
  std::string finish;
  CHECK(stream_text(events, true, &finish) == want);
  CHECK(finish == "length");

  const Reply no_template = post(brown().port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
  CHECK(error_param(no_template, 400) == "messages");
  CHECK(no_template.body.find("chat template") != std::string::npos);
}

TEST_CASE("concurrent streaming clients each get their own answer, as if alone") {
  INFERNO_SEED_INFO();
  Rng rng(3);
  auto& served = brown();
  const int clients = 3, max_tokens = 4;
  std::vector<std::string> prompts, wants;
  for (int i = 0; i < clients; ++i) {
    prompts.push_back(random_prompt(rng));
    wants.push_back(reference_text(served.model, served.model.tokenize(prompts.back()), max_tokens));
  }
  // The threads only talk HTTP; the checks run here, after they are joined.
  std::vector<Reply> replies(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      replies[size_t(i)] = post_stream(served.port, "/v1/completions",
                                       completion_body(prompts[size_t(i)], max_tokens, ",\"stream\":true"));
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < clients; ++i) {
    CAPTURE(prompts[size_t(i)]);
    CHECK(replies[size_t(i)].status == 200);
    const Events events = parse_events(replies[size_t(i)].body);
    CHECK(events.ended_with_done);
    CHECK(stream_text(events, false) == wants[size_t(i)]);
  }
}

TEST_CASE("a client that hangs up mid-stream cancels its generation; the server carries on") {
  auto& served = brown();
  const uint64_t cancelled_before = served.server.cancelled_generations();
  const int max_tokens = 200;  // far more than it will get to: at lavapipe's pace this would take many seconds
  const auto start = std::chrono::steady_clock::now();
  const Reply s = post_stream(served.port, "/v1/completions", completion_body("The jury said", max_tokens, ",\"stream\":true"),
                              [](const std::string& received) { return received.find("\"text\"") == std::string::npos; });
  CHECK(s.body.find("\"text\"") != std::string::npos);  // it hung up after the first chunk
  // The generation notices at its next write or two; bounded wait.
  for (int i = 0; i < 600 && served.server.cancelled_generations() == cancelled_before; ++i) std::this_thread::sleep_for(50ms);
  CHECK(served.server.cancelled_generations() == cancelled_before + 1);
  CHECK(std::chrono::steady_clock::now() - start < 30s);

  CHECK(get(served.port, "/health").status == 200);
  const Reply next = post(served.port, "/v1/completions", completion_body("The jury said", 2));
  CHECK(next.status == 200);
}

TEST_CASE("stopping the server ends a running stream with an error event, promptly") {
  Served own(brown_dir(), {.max_body_bytes = kMaxBody});
  Reply reply;
  std::atomic<bool> first_text{false};
  std::thread client_thread([&] {
    reply = post_stream(own.port, "/v1/completions", completion_body("The jury said", 200, ",\"stream\":true"),
                        [&](const std::string& received) {
                          if (received.find("\"text\"") != std::string::npos) first_text = true;
                          return true;
                        });
  });
  for (int i = 0; i < 600 && !first_text; ++i) std::this_thread::sleep_for(50ms);
  CHECK(first_text);
  const auto start = std::chrono::steady_clock::now();
  own.server.stop();
  CHECK(std::chrono::steady_clock::now() - start < 10s);  // 200 tokens would take far longer on lavapipe
  client_thread.join();
  CHECK(reply.status == 200);
  const Events events = parse_events(reply.body);
  CHECK(events.ended_with_done);
  REQUIRE(!events.data.empty());
  CHECK(events.data.back().find("server_stopping") != std::string::npos);
  CHECK(!own.server.running());
}

TEST_CASE("bad requests get 4xx errors in OpenAI's shape") {
  const int port = brown().port;
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", "), 400).empty());  // malformed JSON
  CHECK(error_param(post(port, "/v1/completions", "[1, 2]"), 400).empty());              // not an object
  CHECK(error_param(post(port, "/v1/completions", "{\"max_tokens\": 2}"), 400) == "prompt");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": 5}"), 400) == "prompt");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": []}"), 400) == "prompt");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}"), 400) == "prompt");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": [1, 99999999]}"), 400) == "prompt");  // outside the vocabulary
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"5\"}"), 400) == "max_tokens");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2.5}"), 400) == "max_tokens");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}"), 400) == "max_tokens");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}"), 400) == "temperature");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"temperature\": 3}"), 400) == "temperature");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}"), 400) == "top_p");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"stream\": 1}"), 400) == "stream");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"stop\": 3}"), 400) == "stop");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"seed\": \"1\"}"), 400) == "seed");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"model\": 7}"), 400) == "model");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"n\": 17}"), 400) == "n");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"presence_penalty\": 2.5}"), 400) == "presence_penalty");
  CHECK(error_param(post(port, "/v1/completions", "{\"prompt\": \"x\", \"echo\": true}"), 400) == "echo");
  CHECK(error_param(post(port, "/v1/chat/completions", "{\"messages\": \"hi\"}"), 400) == "messages");
  CHECK(error_param(post(port, "/v1/chat/completions", "{\"messages\": [{\"content\": \"hi\"}]}"), 400) == "messages[0].role");
  CHECK(error_param(post(port, "/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}"), 400) ==
        "messages[0].content");

  // Beyond the context (max_position_embeddings): OpenAI's code for it.
  const uint32_t context = brown().model.info().max_position_embeddings;
  const Reply long_request = post(port, "/v1/completions", completion_body("The jury", int(context)));
  CHECK(error_param(long_request, 400) == "max_tokens");
  CHECK(long_request.body.find("context_length_exceeded") != std::string::npos);

  const Reply oversized = post(port, "/v1/completions", "{\"prompt\": \"" + std::string(kMaxBody, 'a') + "\"}");
  CHECK(error_param(oversized, 413).empty());

  const Reply unknown = get(port, "/v1/engines");
  CHECK(error_param(unknown, 404).empty());
  CHECK(unknown.body.find("/v1/engines") != std::string::npos);

  // Still healthy after all that.
  CHECK(get(port, "/health").status == 200);
}

TEST_CASE("inferno serve listens on the port it prints and stops on SIGTERM") {
  ServeProcess serve({}, "http://127.0.0.1:");

  CHECK(get(serve.port, "/health").status == 200);
  const std::vector<int32_t> ids = brown().model.tokenize("The jury said");
  const Reply r = post(serve.port, "/v1/completions", completion_body("The jury said", 3));
  CHECK(r.status == 200);
  simdjson::dom::parser parser;
  CHECK(str(parse(parser, r.body)["choices"].at(0)["text"]) == reference_text(brown().model, ids, 3));

  ::kill(serve.pid, SIGTERM);
  CHECK_MESSAGE(serve.wait(10s) == 0, "inferno serve did not exit 0 within 10 s of SIGTERM: " << serve.printed);
  CHECK(serve.printed.find("stopped") != std::string::npos);
}

TEST_CASE("admission counts the sequences submitted: parallel + max_queued taken at once, before the engine steps") {
  // The engine's own gauges count a request as waiting until its thread has taken it into the batch: submissions
  // faster than that once refused the last of parallel + max_queued requests.
  using inferno::server::Generation;
  using inferno::server::GenerationRequest;
  inferno::server::ModelWorker worker(brown().model, {.parallel = 2, .ctx = 256}, /*max_queued=*/3);
  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    std::vector<std::shared_ptr<Generation>> held;
    auto generation = [&](int n) {
      GenerationRequest r{.prompt = brown().model.tokenize("The jury said"), .options = {}, .stop = {}, .n = n};
      r.options.max_new_tokens = 200;
      r.options.ignore_eos = true;
      return std::make_shared<Generation>(std::move(r));
    };
    for (int n : {1, 3, 1}) {  // 5 sequences: 2 in the batch, 3 waiting
      auto g = generation(n);
      const bool taken = worker.submit(g);
      CHECK(taken);
      if (taken) held.push_back(g);  // a refused generation never runs, never ends
    }
    auto extra = generation(1);
    const bool extra_taken = worker.submit(extra);
    CHECK_FALSE(extra_taken);
    if (extra_taken) held.push_back(extra);
    for (auto& g : held) g->cancel();
    for (auto& g : held)
      while (!g->next(100ms).done) {
      }
  }
  // Every sequence ended gave its place back: the same five are taken again.
  std::vector<std::shared_ptr<Generation>> again;
  for (int i = 0; i < 5; ++i) {
    GenerationRequest r{.prompt = brown().model.tokenize("The jury"), .options = {}, .stop = {}, .n = 1};
    r.options.max_new_tokens = 2;
    auto g = std::make_shared<Generation>(std::move(r));
    const bool taken = worker.submit(g);
    CHECK(taken);
    if (taken) again.push_back(g);
  }
  for (auto& g : again)
    while (!g->next(100ms).done) {
    }
}

TEST_CASE("idle, slow and waiting connections never hold up /health; past --max-queue a request gets 503 at once") {
  constexpr size_t max_queued = 3;
  Served own(brown_dir(), {.parallel = 1, .max_body_bytes = kMaxBody, .max_queued = max_queued});
  const uint64_t cancelled_before = own.server.cancelled_generations();

  // 8 connections that send nothing, and 20 that send a header byte every 200 ms (slowloris).
  std::vector<int> idle, slow, generating;
  for (int i = 0; i < 8; ++i) idle.push_back(connect_raw(own.port));
  for (int i = 0; i < 20; ++i) {
    slow.push_back(connect_raw(own.port));
    REQUIRE(send_raw(slow.back(), "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
  }
  // A jthread: a failed REQUIRE below unwinds through its destructor, which stops and joins it.
  std::jthread trickle([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      for (int fd : slow) ::send(fd, "a", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(200ms);
    }
  });
  // One generation running (--parallel 1) and max_queued waiting, each far longer than this test lasts, on
  // connections that send the request and never read.
  for (size_t i = 0; i < 1 + max_queued; ++i) {
    generating.push_back(connect_raw(own.port));
    // 1000 tokens (the 1024-token context's worth): seconds each even on a quiet machine, so none ends and frees
    // the queue before the refused request below.
    REQUIRE(send_raw(generating.back(), raw_post("/v1/completions", completion_body("The jury said", 1000))));
  }
  // All submitted: one in the batch, the rest queued (a bounded wait: a connection may take a moment to be read,
  // and the engine's gauges count all four as waiting until its thread has taken the first into the batch).
  for (int i = 0; i < 200 && !(gauge(own.port, "inferno:num_requests_running") == 1 &&
                               gauge(own.port, "inferno:num_requests_waiting") == double(max_queued));
       ++i)
    std::this_thread::sleep_for(50ms);
  REQUIRE(gauge(own.port, "inferno:num_requests_running") == 1);
  REQUIRE(gauge(own.port, "inferno:num_requests_waiting") == double(max_queued));

  // /health answers within 100 ms (the bound Kubernetes probes and load balancers are set to), every time.
  for (int i = 0; i < 5; ++i) {
    const auto [took, reply] = timed_health(own.port);
    CHECK_MESSAGE(reply.find("200 OK") != std::string::npos, reply);
    CHECK_MESSAGE(took < 100ms, "GET /health took " << took.count() << " ms");
  }
  // The queue is full: the next generation is refused at once, not queued.
  const auto start = std::chrono::steady_clock::now();
  const Reply busy = post(own.port, "/v1/completions", completion_body("The jury said", 2));
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  CHECK(error_param(busy, 503).empty());
  CHECK(busy.body.find("server_busy") != std::string::npos);

  // Clients of non-streaming requests that hang up cancel their generations: the next request is not delayed.
  for (int fd : generating) ::close(fd);
  for (int i = 0; i < 200 && own.server.cancelled_generations() < cancelled_before + generating.size(); ++i)
    std::this_thread::sleep_for(50ms);
  CHECK(own.server.cancelled_generations() == cancelled_before + generating.size());
  const auto next_start = std::chrono::steady_clock::now();
  CHECK(post(own.port, "/v1/completions", completion_body("The jury said", 2)).status == 200);
  CHECK(std::chrono::steady_clock::now() - next_start < 10s);  // 4 × 1000 tokens would take far longer

  trickle.request_stop();
  trickle.join();
  for (int fd : idle) ::close(fd);
  for (int fd : slow) ::close(fd);
}

TEST_CASE("a burst of connections before the server accepts any is held by the kernel, not dropped") {
  // cpp-httplib's own backlog is 5: the 6th connection of a burst that arrives while the accepting thread is not
  // running would have its handshake dropped and wait a second or more for a retransmit.
  inferno::server::Server s(inferno::server::ServerOptions{.host = "127.0.0.1", .port = 0});
  const int port = s.bind();
  // The kernel caps the queue at net.core.somaxconn (4096 on kernels since 5.4, 128 before).
  int somaxconn = 128;
  if (FILE* f = std::fopen("/proc/sys/net/core/somaxconn", "r")) {
    if (std::fscanf(f, "%d", &somaxconn) != 1) somaxconn = 128;
    std::fclose(f);
  }
  const int burst = std::min(200, somaxconn);
  REQUIRE(burst > 64);  // far past cpp-httplib's 5
  std::vector<int> fds;
  for (int i = 0; i < burst; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    REQUIRE((rc == 0 || errno == EINPROGRESS));
    fds.push_back(fd);
  }
  // Nothing accepts yet, so a handshake completes only if the kernel's queue has room for it (loopback: at once).
  int connected = 0;
  for (int fd : fds) {
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    int error = -1;
    socklen_t length = sizeof error;
    if (::poll(&p, 1, 500) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0)
      ++connected;
  }
  REQUIRE(connected == burst);
  std::thread serving([&] { s.serve(); });  // from here on no REQUIRE: the thread must be joined
  for (int fd : fds) {
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    CHECK(send_raw(fd, raw_get("/health", "Connection: close\r\n")));
  }
  int answered = 0;
  for (int fd : fds) {
    answered += read_raw(fd, 10s).rfind("HTTP/1.1 200", 0) == 0;
    ::close(fd);
  }
  CHECK(answered == burst);
  s.stop();
  serving.join();
}

TEST_CASE("a port in use is refused: by bind() and by inferno serve, with exit 1") {
  const int port = brown().port;
  inferno::server::Server second(brown().model, {.host = "127.0.0.1", .port = port});
  CHECK_THROWS_AS(second.bind(), inferno::Error);
  Spawned serve({"serve", "--quiet", "-m", brown_dir().string(), "--host", "127.0.0.1", "--port", std::to_string(port)});
  CHECK(serve.wait(60s) == 1);
  const std::string& err = serve.printed;
  CHECK_MESSAGE(err.find("cannot listen on 127.0.0.1:" + std::to_string(port)) != std::string::npos, err);
  CHECK(get(port, "/health").status == 200);  // the first server still answers
}

TEST_CASE("stop strings: the text up to the first stop, never a byte of it, however the text is split") {
  INFERNO_SEED_INFO();
  Rng rng(4);
  // A three-letter alphabet makes stops appear often, overlap and straddle the pieces.
  for (int round = 0; round < 500; ++round) {
    std::string text;
    for (int i = rng.integer(0, 40); i > 0; --i) text += char('a' + rng.integer(0, 2));
    std::vector<std::string> stops;
    for (int s = rng.integer(0, 3); s > 0; --s) {
      std::string stop;
      for (int i = rng.integer(0, 4); i > 0; --i) stop += char('a' + rng.integer(0, 2));
      stops.push_back(stop);  // sometimes empty: ignored
    }
    // The answer: the text before the first stop string to end (the longest of those ending at that byte).
    size_t first = std::string::npos;
    for (size_t end = 1; end <= text.size() && first == std::string::npos; ++end)
      for (const auto& s : stops)
        if (!s.empty() && s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0)
          first = std::min(first, end - s.size());
    const std::string want = text.substr(0, first);
    CAPTURE(text);
    CAPTURE(stops.size());

    inferno::server::StopMatcher matcher(stops);
    std::string out;
    for (size_t at = 0; at < text.size() && !matcher.stopped();) {
      const size_t n = size_t(rng.integer(0, 5));
      out += matcher.push(text.substr(at, n));
      at += n;
      REQUIRE(want.compare(0, out.size(), out) == 0);  // never more than the answer, never different
    }
    out += matcher.finish();
    CHECK(out == want);
    CHECK(matcher.stopped() == (first != std::string::npos));
  }
}

TEST_CASE("JSON strings come out escaped and valid, bad UTF-8 as U+FFFD") {
  INFERNO_SEED_INFO();
  Rng rng(5);
  simdjson::dom::parser parser;
  for (int round = 0; round < 200; ++round) {
    std::string s;
    for (int i = rng.integer(0, 30); i > 0; --i) {
      switch (rng.integer(0, 3)) {
        case 0: s += char(rng.integer(0, 127)); break;      // ASCII, controls and quotes included
        case 1: s += "\xc3\xa9"; break;                      // é
        case 2: s += "\xf0\x9f\x94\xa5"; break;              // an emoji (4 bytes)
        default: s += "\"\\"; break;
      }
    }
    const auto e = parse(parser, inferno::json_quote(s));
    CHECK(str(e) == s);
  }
  const auto bad = parse(parser, inferno::json_quote("a\xff" "b\xc3"));
  CHECK(str(bad) == "a\xef\xbf\xbd" "b\xef\xbf\xbd");
  const auto overlong = parse(parser, inferno::json_quote("\xc0\xaf"));
  CHECK(str(overlong) == "\xef\xbf\xbd\xef\xbf\xbd");
}
