// The OpenAI request fields beyond the basics, through the C++ API, over real HTTP and through the command line:
// the continuation's leading space, logprobs (checked against Session::logits), n choices, presence and frequency
// penalties, /tokenize and /detokenize, and a chat template given to the server. The models: the demo model
// (SentencePiece vocabulary) and the llama3 test checkpoint with the real Llama 3 tokenizer (byte-level BPE).
#include <fcntl.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <thread>

#include "http_support.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

fs::path llama3_dir() {
  return llama3_text_checkpoint(fs::temp_directory_path() / ("inferno-test-openai-llama3-" + std::to_string(::getpid())));
}

// f32 KV caches on both sides of every comparison with Session, so that the engine's and the session's logits
// differ only by the order of float sums.
constexpr inferno::KvDtype kKv = inferno::KvDtype::F32;

// `options` with the server's sessions on the f32 KV cache.
inferno::server::ServerOptions f32_kv(inferno::server::ServerOptions options = {}) {
  options.session.kv_dtype = kKv;
  return options;
}

Served& brown() {
  static Served served(brown_dir(), f32_kv());
  return served;
}
Served& llama3() {
  static Served served(llama3_dir(), f32_kv());
  return served;
}

// The data lines of a server-sent event stream, [DONE] last (checked, then dropped).
std::vector<std::string> stream_events(int port, const std::string& path, const std::string& body) {
  const Reply r = post(port, path, body);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const Events events = parse_events(r.body);
  REQUIRE(!events.data.empty());
  CHECK(events.ended_with_done);
  return events.data;
}

int error_status(const Reply& r, const std::string& param) {
  simdjson::dom::parser parser;
  const auto e = parse(parser, r.body)["error"];
  CHECK(str(e["param"]) == param);
  return r.status;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Greedy tokens of Session::generate alone, and the options it used.
std::vector<int32_t> greedy(inferno::Model& model, const std::vector<int32_t>& prompt, int n,
                            const inferno::SamplingOptions& sampling = {}) {
  inferno::Session session(model, {.kv_dtype = kKv});
  inferno::GenerateOptions options;
  options.max_new_tokens = n;
  options.ignore_eos = true;
  options.sampling = sampling;
  options.sampling.do_sample = false;
  return session.generate(prompt, options);
}

// log-softmax of Session::logits at the positions that predicted `out` (in double): [out.size()][vocab].
std::vector<std::vector<double>> reference_logprobs(inferno::Model& model, const std::vector<int32_t>& prompt,
                                                    const std::vector<int32_t>& out) {
  std::vector<int32_t> ids = prompt;
  ids.insert(ids.end(), out.begin(), out.end() - 1);
  inferno::Session session(model, {.kv_dtype = kKv});
  const std::vector<float> logits = session.logits(ids);
  const size_t vocab = model.info().vocab_size;
  std::vector<std::vector<double>> rows;
  for (size_t t = prompt.size() - 1; t < ids.size(); ++t) {
    const float* row = logits.data() + t * vocab;
    double max = -INFINITY, sum = 0;
    for (size_t v = 0; v < vocab; ++v) max = std::max(max, double(row[v]));
    for (size_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - max);
    std::vector<double> lp(vocab);
    for (size_t v = 0; v < vocab; ++v) lp[v] = double(row[v]) - max - std::log(sum);
    rows.push_back(std::move(lp));
  }
  return rows;
}

// Engine and Session compute the same logits with float sums in other orders (paged vs contiguous attention,
// batched vs single rows): their log-probabilities differ by at most 1.1e-6 here (lavapipe); 1e-4 leaves room for
// a GPU's sum orders while staying far below any real difference (a wrong position or row shifts them by > 0.1).
constexpr double kLogprobTolerance = 1e-4;

struct Run {
  int status = -1;
  std::string out, err;
};

// Runs `inferno ARGS...` to its end: exit status, stdout, and stderr (through a file, so that neither pipe fills).
Run run_inferno(std::vector<std::string> args) {
  const char* bin = std::getenv("INFERNO_BIN");
  REQUIRE_MESSAGE(bin, "INFERNO_BIN names the inferno binary (set by meson)");
  const fs::path err_file = fs::temp_directory_path() / ("inferno-test-openai-stderr-" + std::to_string(::getpid()));
  int out_pipe[2];
  REQUIRE(::pipe(out_pipe) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addopen(&actions, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  args.insert(args.begin(), bin);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, bin, &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(out_pipe[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(out_pipe[0]);
  int status = -1;
  ::waitpid(pid, &status, 0);
  Run run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, read_text(err_file)};
  fs::remove(err_file);
  return run;
}

}  // namespace

// ---- the leading space ----

TEST_CASE("a TextStream primed with the prompt streams the continuation as decode(prompt + continuation) reads") {
  INFERNO_SEED_INFO();
  Rng rng(41);
  for (Served* served : {&brown(), &llama3()}) {
    inferno::Model& model = served->model;
    CAPTURE(model.info().path.string());
    for (int trial = 0; trial < 4; ++trial) {
      const auto prompt = model.tokenize(random_prompt(rng));
      // A continuation of words ("▁jury▁said" in SentencePiece) and one the model makes.
      const auto words = model.tokenize(random_prompt(rng).substr(4), false);
      for (const auto& continuation : {words, greedy(model, prompt, 4)}) {
        CAPTURE(join_ids(prompt));
        CAPTURE(join_ids(continuation));
        inferno::TextStream stream(model);
        stream.prime(prompt);
        std::string text;
        for (int32_t t : continuation) text += stream.push(t);
        text += stream.finish();
        CHECK(model.detokenize(prompt) + text == model.detokenize(concat(prompt, continuation)));
      }
      // Without the prompt, SentencePiece drops the first space: the case the priming is for.
      if (served == &brown()) CHECK(model.detokenize(words).front() != ' ');
    }
  }
}

TEST_CASE("/v1/completions keeps the continuation's leading space: prompt + text = decode(prompt + completion ids)") {
  INFERNO_SEED_INFO();
  Rng rng(42);
  for (Served* served : {&brown(), &llama3()}) {
    inferno::Model& model = served->model;
    CAPTURE(model.info().path.string());
    for (const std::string& prompt : {std::string("The jury said that"), random_prompt(rng)}) {
      CAPTURE(prompt);
      const auto ids = model.tokenize(prompt);
      const auto out = greedy(model, ids, 5);
      const std::string whole = model.detokenize(concat(ids, out));
      const std::string body = "{\"prompt\":" + quote(prompt) + ",\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true";
      simdjson::dom::parser parser;
      const Reply r = post(served->port, "/v1/completions", body + "}");
      REQUIRE_MESSAGE(r.status == 200, r.body);
      const std::string text = str(parse(parser, r.body)["choices"].at(0)["text"]);
      CHECK(prompt + text == whole);
      std::string streamed;
      for (const auto& event : stream_events(served->port, "/v1/completions", body + ",\"stream\":true}")) {
        simdjson::dom::array choices = parse(parser, event)["choices"];
        if (choices.size()) streamed += str(choices.at(0)["text"]);
      }
      CHECK(streamed == text);
      // "▁the" after "The jury said that" reads " the" (a random prompt may continue with punctuation, no space).
      if (served == &brown() && prompt == "The jury said that") CHECK(text.front() == ' ');
    }
  }
}

TEST_CASE("inferno generate prints the continuation with its leading space: prompt + stdout = decode(prompt + ids)") {
  for (const fs::path& dir : {brown_dir(), llama3_dir()}) {
    CAPTURE(dir.string());
    const std::string prompt = "The jury said that";
    const Run by_ids =
        run_inferno({"generate", "-m", dir.string(), "-p", prompt, "-n", "5", "--ignore-eos", "--print-ids", "--quiet"});
    REQUIRE_MESSAGE(by_ids.status == 0, by_ids.err);
    const std::string& ids_line = by_ids.out;
    const Run by_text = run_inferno({"generate", "-m", dir.string(), "-p", prompt, "-n", "5", "--ignore-eos", "--quiet"});
    REQUIRE_MESSAGE(by_text.status == 0, by_text.err);
    const std::string& text = by_text.out;
    std::vector<int32_t> out;
    for (const char* p = ids_line.c_str(); *p;) {
      char* end = nullptr;
      const long v = std::strtol(p, &end, 10);
      if (end == p) break;
      out.push_back(int32_t(v));
      p = end;
    }
    REQUIRE(out.size() == 5);
    Served& served = dir == brown_dir() ? brown() : llama3();
    const auto prompt_ids = served.model.tokenize(prompt);
    REQUIRE(!text.empty());
    CHECK(prompt + text.substr(0, text.size() - 1) == served.model.detokenize(concat(prompt_ids, out)));
  }
}

// ---- logprobs ----

TEST_CASE("Engine hands out each token's log-probabilities: log-softmax of the raw logits, as Session::logits gives") {
  INFERNO_SEED_INFO();
  Rng rng(43);
  inferno::Model& model = brown().model;
  inferno::Engine engine(model, {.parallel = 2, .ctx = 256, .kv_dtype = kKv});
  const auto prompt = model.tokenize(random_prompt(rng));
  CAPTURE(join_ids(prompt));
  // Sampling with a temperature and penalties: the log-probabilities stay those of the model's own logits.
  inferno::GenerateOptions options;
  options.max_new_tokens = 6;
  options.ignore_eos = true;
  options.sampling.do_sample = true;
  options.sampling.temperature = 0.7f;
  options.sampling.presence_penalty = 1.5f;
  options.sampling.seed = uint64_t(rng.integer(0, 1 << 30));
  std::vector<inferno::TokenLogprobs> streamed;
  std::promise<inferno::EngineResult> done;
  engine.submit({.prompt = prompt, .options = options, .on_token = {},
                 .on_finish = [&](const inferno::EngineResult& r) { done.set_value(r); }, .logprobs = 5,
                 .on_token_logprobs = [&](int32_t, const inferno::TokenLogprobs& l) {
                   streamed.push_back(l);
                   return true;
                 }});
  const inferno::EngineResult result = done.get_future().get();
  REQUIRE(result.tokens.size() == 6);
  REQUIRE(result.logprobs.size() == 6);
  REQUIRE(streamed.size() == 6);
  const auto ref = reference_logprobs(model, prompt, result.tokens);
  for (size_t i = 0; i < result.tokens.size(); ++i) {
    CAPTURE(i);
    const auto& l = result.logprobs[i];
    CHECK(l.logprob == streamed[i].logprob);
    CHECK(std::fabs(l.logprob - ref[i][size_t(result.tokens[i])]) <= kLogprobTolerance);
    REQUIRE(l.top.size() == 5);
    std::vector<double> sorted = ref[i];
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (size_t k = 0; k < 5; ++k) {
      CHECK(std::fabs(l.top[k].second - ref[i][size_t(l.top[k].first)]) <= kLogprobTolerance);
      CHECK(std::fabs(l.top[k].second - sorted[k]) <= kLogprobTolerance);
    }
  }
  // Without asking: none, and the old callback still works.
  int seen = 0;
  const auto plain = engine.generate(prompt, options, [&](int32_t) { return ++seen < 100; });
  CHECK(plain.logprobs.empty());
  CHECK(seen == 6);
}

TEST_CASE("chat logprobs: content[] with token, logprob, bytes and top_logprobs, whole and streamed") {
  Served& served = llama3();
  inferno::Model& model = served.model;
  const auto prompt = model.tokenize(model.render_chat({{"user", "Name a colour."}}, true), false);
  const int n = 4, top = 3;
  const auto out = greedy(model, prompt, n);
  const auto ref = reference_logprobs(model, prompt, out);
  const std::string body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour.\"}],\"max_tokens\":" +
                           std::to_string(n) + ",\"temperature\":0,\"ignore_eos\":true,\"logprobs\":true,\"top_logprobs\":" +
                           std::to_string(top);
  const auto check_entry = [&](simdjson::dom::element e, size_t i) {
    CAPTURE(i);
    const std::string bytes = model.token_bytes(out[i]);
    std::string got_bytes;
    for (int64_t b : simdjson::dom::array(e["bytes"])) got_bytes += char(b);
    CHECK(got_bytes == bytes);
    if (std::string_view(e["token"]) == bytes) CHECK(true);
    else CHECK(str(e["token"]).find("\xEF\xBF\xBD") != std::string::npos);  // a piece of a character
    CHECK(std::fabs(double(e["logprob"]) - ref[i][size_t(out[i])]) <= kLogprobTolerance);
    simdjson::dom::array tops = e["top_logprobs"];
    REQUIRE(tops.size() == size_t(top));
    // Greedy: the chosen token is the most likely.
    CHECK(std::fabs(double(tops.at(0)["logprob"]) - double(e["logprob"])) <= 1e-6);
    double previous = 0;
    for (auto t : tops) {
      CHECK(double(t["logprob"]) <= previous);
      previous = double(t["logprob"]);
      CHECK(t["bytes"].is_array());
    }
  };
  simdjson::dom::parser parser;
  const Reply r = post(served.port, "/v1/chat/completions", body + "}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto choice = parse(parser, r.body)["choices"].at(0);
  simdjson::dom::array content = choice["logprobs"]["content"];
  REQUIRE(content.size() == size_t(n));
  for (size_t i = 0; i < size_t(n); ++i) check_entry(content.at(i), i);

  size_t streamed = 0;
  for (const auto& event : stream_events(served.port, "/v1/chat/completions", body + ",\"stream\":true}")) {
    const auto c = parse(parser, event)["choices"].at(0);
    if (c["logprobs"].is_null()) continue;
    for (auto e : simdjson::dom::array(c["logprobs"]["content"])) check_entry(e, streamed++);
  }
  CHECK(streamed == size_t(n));

  // Without logprobs: null; top_logprobs alone or out of range: 400.
  const Reply plain = post(served.port, "/v1/chat/completions",
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1}");
  REQUIRE(plain.status == 200);
  CHECK(parse(parser, plain.body)["choices"].at(0)["logprobs"].is_null());
  const std::string hi = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1";
  CHECK(error_status(post(served.port, "/v1/chat/completions", hi + ",\"top_logprobs\":2}"), "top_logprobs") == 400);
  CHECK(error_status(post(served.port, "/v1/chat/completions", hi + ",\"logprobs\":true,\"top_logprobs\":21}"), "top_logprobs") == 400);
  CHECK(error_status(post(served.port, "/v1/chat/completions", hi + ",\"logprobs\":2}"), "logprobs") == 400);
}

TEST_CASE("completions logprobs: tokens, token_logprobs, top_logprobs and text_offset, whole and streamed") {
  Served& served = brown();
  inferno::Model& model = served.model;
  const std::string prompt = "The jury said that";
  const auto prompt_ids = model.tokenize(prompt);
  const int n = 5, top = 2;
  const auto out = greedy(model, prompt_ids, n);
  const auto ref = reference_logprobs(model, prompt_ids, out);
  const std::string body = "{\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + std::to_string(n) +
                           ",\"temperature\":0,\"ignore_eos\":true,\"logprobs\":" + std::to_string(top);
  simdjson::dom::parser parser;
  const Reply r = post(served.port, "/v1/completions", body + "}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto choice = parse(parser, r.body)["choices"].at(0);
  const std::string text = str(choice["text"]);
  const auto lp = choice["logprobs"];
  simdjson::dom::array tokens = lp["tokens"], token_logprobs = lp["token_logprobs"], tops = lp["top_logprobs"],
                       offsets = lp["text_offset"];
  REQUIRE(tokens.size() == size_t(n));
  REQUIRE(token_logprobs.size() == size_t(n));
  REQUIRE(tops.size() == size_t(n));
  REQUIRE(offsets.size() == size_t(n));
  std::string joined;
  for (size_t i = 0; i < size_t(n); ++i) {
    CAPTURE(i);
    CHECK(str(tokens.at(i)) == model.token_bytes(out[i]));
    CHECK(int64_t(offsets.at(i)) == int64_t(joined.size()));  // ASCII text: characters are bytes
    joined += str(tokens.at(i));
    CHECK(std::fabs(double(token_logprobs.at(i)) - ref[i][size_t(out[i])]) <= kLogprobTolerance);
    simdjson::dom::object alternatives = tops.at(i);
    CHECK(alternatives.size() <= size_t(top));  // two tokens with the same text would share a key
    CHECK(alternatives.size() >= 1);
  }
  CHECK(joined == text);

  std::string streamed_tokens;
  for (const auto& event : stream_events(served.port, "/v1/completions", body + ",\"stream\":true}")) {
    simdjson::dom::array choices = parse(parser, event)["choices"];
    if (!choices.size() || choices.at(0)["logprobs"].is_null()) continue;
    for (auto t : simdjson::dom::array(choices.at(0)["logprobs"]["tokens"])) streamed_tokens += str(t);
  }
  CHECK(streamed_tokens == text);

  CHECK(error_status(post(served.port, "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":21}"), "logprobs") == 400);
  CHECK(error_status(post(served.port, "/v1/completions", "{\"prompt\":\"x\",\"logprobs\":true}"), "logprobs") == 400);
  CHECK(error_status(post(served.port, "/v1/completions", "{\"prompt\":\"x\",\"top_logprobs\":2}"), "top_logprobs") == 400);
}

// ---- n ----

TEST_CASE("n choices: each its own sequence, choice i sampled with seed + i; usage counts them all; streams index them") {
  INFERNO_SEED_INFO();
  Rng rng(44);
  Served& served = brown();
  const std::string prompt = random_prompt(rng);
  const int seed = rng.integer(0, 1 << 20), max_tokens = 4;
  CAPTURE(prompt);
  CAPTURE(seed);
  const auto body = [&](int n, int s, const std::string& extra = "") {
    return "{\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + std::to_string(max_tokens) +
           ",\"ignore_eos\":true,\"temperature\":1.0,\"n\":" + std::to_string(n) + ",\"seed\":" + std::to_string(s) + extra + "}";
  };
  simdjson::dom::parser parser;
  const auto one_text = [&](int s) {
    const Reply r = post(served.port, "/v1/completions", body(1, s));
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return str(parse(parser, r.body)["choices"].at(0)["text"]);
  };
  const std::vector<std::string> want = {one_text(seed), one_text(seed + 1), one_text(seed + 2)};
  const Reply r = post(served.port, "/v1/completions", body(3, seed));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const auto doc = parse(parser, r.body);
  simdjson::dom::array choices = doc["choices"];
  REQUIRE(choices.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(int64_t(choices.at(i)["index"]) == int64_t(i));
    CHECK(str(choices.at(i)["text"]) == want[i]);
    CHECK(str(choices.at(i)["finish_reason"]) == "length");
  }
  CHECK(int64_t(doc["usage"]["completion_tokens"]) == 3 * max_tokens);
  CHECK(int64_t(doc["usage"]["prompt_tokens"]) == int64_t(served.model.tokenize(prompt).size()));

  std::vector<std::string> streamed(3);
  std::vector<int> finished(3, 0);
  for (const auto& event : stream_events(served.port, "/v1/completions", body(3, seed, ",\"stream\":true"))) {
    simdjson::dom::array cs = parse(parser, event)["choices"];
    for (auto c : cs) {
      const int64_t index = c["index"];
      REQUIRE((index >= 0 && index < 3));
      streamed[size_t(index)] += str(c["text"]);
      if (!c["finish_reason"].is_null()) ++finished[size_t(index)];
    }
  }
  for (size_t i = 0; i < 3; ++i) {
    CHECK(streamed[i] == want[i]);
    CHECK(finished[i] == 1);
  }
  CHECK(error_status(post(served.port, "/v1/completions", body(0, seed)), "n") == 400);
  CHECK(error_status(post(served.port, "/v1/completions", body(17, seed)), "n") == 400);
}

TEST_CASE("chat with n = 2 streams a role chunk and a finish_reason for each choice") {
  Served& served = llama3();
  const std::string body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3,\"ignore_eos\":true,"
                           "\"temperature\":0,\"n\":2,\"stream\":true}";
  simdjson::dom::parser parser;
  std::vector<int> roles(2, 0), finishes(2, 0);
  std::vector<std::string> texts(2);
  for (const auto& event : stream_events(served.port, "/v1/chat/completions", body)) {
    for (auto c : simdjson::dom::array(parse(parser, event)["choices"])) {
      const size_t index = size_t(int64_t(c["index"]));
      REQUIRE(index < 2);
      std::string_view role, content;
      if (c["delta"]["role"].get(role) == simdjson::SUCCESS) ++roles[index];
      if (c["delta"]["content"].get(content) == simdjson::SUCCESS) texts[index] += content;
      if (!c["finish_reason"].is_null()) ++finishes[index];
    }
  }
  CHECK(roles == std::vector<int>{1, 1});
  CHECK(finishes == std::vector<int>{1, 1});
  CHECK(texts[0] == texts[1]);  // greedy: the same text twice
  CHECK(!texts[0].empty());
}

// ---- penalties ----

TEST_CASE("presence and frequency penalties give Session::generate's tokens with the same penalties; outside [-2, 2]: 400") {
  Served& served = brown();
  inferno::Model& model = served.model;
  const std::string prompt = "The jury said that the jury said that the";
  const auto ids = model.tokenize(prompt);
  const int n = 12;
  inferno::SamplingOptions penalized;
  penalized.presence_penalty = 1.5f;
  penalized.frequency_penalty = 0.75f;
  const auto want = greedy(model, ids, n, penalized);
  REQUIRE(want != greedy(model, ids, n));  // the penalties change this greedy text: the test can tell
  const Reply r = post(served.port, "/v1/completions",
                       "{\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + std::to_string(n) +
                           ",\"temperature\":0,\"ignore_eos\":true,\"presence_penalty\":1.5,\"frequency_penalty\":0.75}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  simdjson::dom::parser parser;
  CHECK(prompt + str(parse(parser, r.body)["choices"].at(0)["text"]) == model.detokenize(concat(ids, want)));
  for (const char* bad : {"\"presence_penalty\":2.5", "\"presence_penalty\":-2.01", "\"frequency_penalty\":3",
                          "\"frequency_penalty\":\"1\""}) {
    const std::string field = std::string(bad).substr(1, std::string(bad).find('"', 1) - 1);
    CHECK(error_status(post(served.port, "/v1/completions", std::string("{\"prompt\":\"x\",") + bad + "}"), field) == 400);
  }
}

// ---- /tokenize, /detokenize, --template ----

TEST_CASE("/tokenize and /detokenize in llama.cpp's shapes") {
  for (Served* served : {&brown(), &llama3()}) {
    inferno::Model& model = served->model;
    CAPTURE(model.info().path.string());
    const std::string text = "The jury said \"héllo\" \xF0\x9D\x84\x9E\n";  // U+1D11E: byte tokens in both vocabularies
    // The bytes of the tokens (what logprobs show) are the text; SentencePiece's normalizer put a "▁" before it.
    std::string joined;
    for (int32_t id : model.tokenize(text, false)) joined += model.token_bytes(id);
    CHECK(joined == (served == &brown() ? " " + text : text));
    simdjson::dom::parser parser;
    for (bool special : {false, true}) {
      const Reply r = post(served->port, "/tokenize",
                           "{\"content\":" + quote(text) + (special ? ",\"add_special\":true}" : "}"));
      REQUIRE_MESSAGE(r.status == 200, r.body);
      std::vector<int32_t> got;
      for (int64_t id : simdjson::dom::array(parse(parser, r.body)["tokens"])) got.push_back(int32_t(id));
      CHECK(got == model.tokenize(text, special));
      const Reply d = post(served->port, "/detokenize", "{\"tokens\":[" + join_ids(got) + "]}");
      REQUIRE_MESSAGE(d.status == 200, d.body);
      CHECK(str(parse(parser, d.body)["content"]) == model.detokenize(got, false));
      if (!special) CHECK(str(parse(parser, d.body)["content"]) == text);
    }
    CHECK(error_status(post(served->port, "/tokenize", "{\"text\":\"x\"}"), "content") == 400);
    CHECK(error_status(post(served->port, "/tokenize", "{\"content\":5}"), "content") == 400);
    CHECK(error_status(post(served->port, "/detokenize", "{\"tokens\":[1,-1]}"), "tokens") == 400);
    CHECK(error_status(post(served->port, "/detokenize", "{\"tokens\":[99999999]}"), "tokens") == 400);
    CHECK(error_status(post(served->port, "/detokenize", "{\"tokens\":\"1 2\"}"), "tokens") == 400);
    CHECK(post(served->port, "/detokenize", "[]").status == 400);
  }
}

TEST_CASE("a chat template given to the server serves chat for a model without one; bad template files are refused") {
  const std::string tmpl =
      "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
  Served served(brown_dir(), f32_kv({.chat_template = tmpl}));
  inferno::Model& model = served.model;
  REQUIRE(!model.has_chat_template());
  const auto prompt = model.tokenize(model.render_chat({{"user", "The jury"}}, true, tmpl), false);
  const auto out = greedy(model, prompt, 3);
  const Reply r = post(served.port, "/v1/chat/completions",
                       "{\"messages\":[{\"role\":\"user\",\"content\":\"The jury\"}],\"max_tokens\":3,\"temperature\":0,"
                       "\"ignore_eos\":true}");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  simdjson::dom::parser parser;
  const auto doc = parse(parser, r.body);
  CHECK(int64_t(doc["usage"]["prompt_tokens"]) == int64_t(prompt.size()));
  CHECK(str(doc["choices"].at(0)["message"]["content"]) == model.detokenize(out));

  // `serve --template`: a missing file, and one that does not render, end with status 1 before listening.
  const fs::path bad = fs::temp_directory_path() / ("inferno-test-bad-template-" + std::to_string(::getpid()) + ".jinja");
  std::ofstream(bad) << "{% if %}";
  for (const fs::path& file : {bad, bad.parent_path() / "no-such-template.jinja"}) {
    const Run run = run_inferno({"serve", "-m", brown_dir().string(), "--port", "0", "--template", file.string(), "--quiet"});
    CHECK(run.status == 1);
    CHECK(run.err.find(file.string()) != std::string::npos);
    CHECK(run.err.find("listening") == std::string::npos);
  }
  fs::remove(bad);
}
