// The operations surface of the server, over real loopback HTTP (raw sockets where a client must misbehave or a
// header must be seen byte for byte): listening before the model is loaded, /health and /ready, /metrics in
// Prometheus' text format, the API key, CORS, bounded request heads, the request log and graceful drain (in-process
// and as `inferno serve` under SIGTERM).
// g++ 12 with the sanitizers reports libstdc++'s own std::regex internals (the std::function in each NFA state built
// for a group) as maybe-uninitialized, a false positive that --werror turns into an error: off for this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <thread>

#include "http_support.hpp"
#include "server/metrics.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;
using inferno::server::Server;
using inferno::server::ServerOptions;

namespace {

inferno::Model& brown_model() {
  static inferno::Model model = inferno::Model::load(brown_dir(), {.quiet = true});
  return model;
}

// A server on the demo model, or (nullptr) on none yet.
struct OwnServer : ServerThread {
  explicit OwnServer(ServerOptions options, inferno::Model* model = &brown_model()) : ServerThread(std::move(options), model) {}
};

// Whether the server has closed the connection (EOF within `timeout`).
bool closed_by_server(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return true;
  }
  return false;
}

// OpenAI's error shape; returns error.code ("" when null).
std::string error_code(const Reply& r, int status) { return openai_error(r, status).code; }

// ---- Prometheus' text format ----

// Every sample of an exposition, by its name with labels as written ("x_bucket{le=\"1\"}"), after checking the
// format: each family announced by # HELP and # TYPE before its samples, names and label sets well formed,
// values numbers, histogram buckets cumulative and ending at +Inf with the count.
std::map<std::string, double> parse_metrics(const std::string& text) {
  static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*)");
  static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex sample(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (\S+))");
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::string helped;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    CAPTURE(line);
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      helped = m[1];
    } else if (std::regex_match(line, m, type)) {
      CHECK(m[1] == helped);
      CHECK(types.count(m[1]) == 0);  // one TYPE a family
      types[m[1]] = m[2];
    } else {
      REQUIRE(std::regex_match(line, m, sample));
      const std::string name = m[1];
      std::string family = name;
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        if (!types.count(family) && family.size() > std::strlen(suffix) &&
            family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
          family = family.substr(0, family.size() - std::strlen(suffix));
      CHECK_MESSAGE(types.count(family), "a sample before its family's # TYPE");
      const std::string value = m[4];
      char* end = nullptr;
      const double v = value == "+Inf" ? HUGE_VAL : std::strtod(value.c_str(), &end);
      if (value != "+Inf") CHECK(end == value.c_str() + value.size());
      CHECK(samples.count(name + std::string(m[2])) == 0);
      samples[name + std::string(m[2])] = v;
    }
  }
  for (const auto& [family, kind] : types) {
    if (kind != "histogram") continue;
    CAPTURE(family);
    double previous = 0;
    // Buckets in numeric order of their bounds.
    std::vector<std::pair<double, double>> buckets;
    for (const auto& [key, value] : samples) {
      if (key.rfind(family + "_bucket{le=\"", 0) != 0) continue;
      const std::string le = key.substr(family.size() + 12, key.size() - family.size() - 14);
      buckets.push_back({le == "+Inf" ? HUGE_VAL : std::stod(le), value});
    }
    std::sort(buckets.begin(), buckets.end());
    REQUIRE(!buckets.empty());
    for (const auto& [le, count] : buckets) {
      CHECK(count >= previous);
      previous = count;
    }
    CHECK(std::isinf(buckets.back().first));
    CHECK(buckets.back().second == samples.at(family + "_count"));
    CHECK(samples.count(family + "_sum"));
  }
  return samples;
}

std::map<std::string, double> scrape(int port, const httplib::Headers& headers = {}) {
  const Reply r = get(port, "/metrics", headers);
  REQUIRE(r.status == 200);
  CHECK(r.headers.find("Content-Type")->second.rfind("text/plain; version=0.0.4", 0) == 0);
  return parse_metrics(r.body);
}

double value_or_zero(const std::map<std::string, double>& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? 0.0 : it->second;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

TEST_CASE("listen first, then load: /health 200, /ready and /v1/* 503 until the model is attached") {
  OwnServer own({}, nullptr);
  CHECK(get(own.port, "/health").status == 200);
  CHECK(error_code(get(own.port, "/ready"), 503) == "model_loading");
  CHECK(error_code(post(own.port, "/v1/completions", completion_body("The jury said", 2)), 503) == "model_loading");
  CHECK(error_code(post(own.port, "/v1/chat/completions", "{\"messages\":[]}"), 503) == "model_loading");
  CHECK(error_code(get(own.port, "/v1/models"), 503) == "model_loading");
  const auto before = scrape(own.port);
  CHECK(before.at("inferno:num_requests_running") == 0);
  CHECK(before.at("inferno:kv_cache_usage_perc") == 0);
  CHECK(!own.server.ready());

  own.server.attach(brown_model());
  CHECK(own.server.ready());
  const Reply ready = get(own.port, "/ready");
  CHECK(ready.status == 200);
  CHECK(ready.body == "{\"status\":\"ready\"}");
  CHECK(post(own.port, "/v1/completions", completion_body("The jury said", 2)).status == 200);
  CHECK(get(own.port, "/v1/models").status == 200);
  CHECK_THROWS_AS(own.server.attach(brown_model()), inferno::Error);  // once
}

TEST_CASE("/health, /ready and /metrics answer within 100 ms while 24 requests are queued; the gauges show them") {
  constexpr int queued = 24;
  OwnServer own({.parallel = 1, .max_queued = 64});
  // One generation running (--parallel 1) and the rest waiting, each far longer than this test lasts, on
  // connections that send the request and never read.
  std::vector<int> generating;
  for (int i = 0; i < 1 + queued; ++i) {
    generating.push_back(connect_raw(own.port));
    REQUIRE(send_raw(generating.back(), raw_post("/v1/completions", completion_body("The jury said", 500))));
  }
  std::map<std::string, double> m;
  for (int i = 0; i < 100; ++i) {  // all submitted: bounded wait
    m = scrape(own.port);
    // Both: the waiting gauge passes through `queued` while requests arrive, before the engine takes one.
    if (m.at("inferno:num_requests_running") == 1 && m.at("inferno:num_requests_waiting") == queued) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(m.at("inferno:num_requests_running") == 1);
  CHECK(m.at("inferno:num_requests_waiting") == queued);
  // One request holds ceil((4 + 500) / 16) of the pool's 1 × 1024 / 16 blocks (it reserves prompt + max_tokens).
  CHECK(m.at("inferno:kv_cache_usage_perc") == doctest::Approx(32.0 / 64.0));

  for (const char* path : {"/health", "/ready", "/metrics"}) {
    for (int i = 0; i < 5; ++i) {
      CAPTURE(path);
      const auto start = std::chrono::steady_clock::now();
      const int fd = connect_raw(own.port);
      REQUIRE(send_raw(fd, raw_get(path, "Connection: close\r\n")));
      const std::string reply = read_raw(fd, 5s);
      ::close(fd);
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      CHECK_MESSAGE(reply.rfind("HTTP/1.1 200", 0) == 0, reply);
      CHECK_MESSAGE(took < 100ms, path << " took " << took.count() << " ms");
    }
  }
  for (int fd : generating) ::close(fd);  // their generations are cancelled
  for (int i = 0; i < 200; ++i) {
    m = scrape(own.port);
    if (m.at("inferno:num_requests_running") + m.at("inferno:num_requests_waiting") == 0) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(m.at("inferno:num_requests_running") == 0);
  CHECK(m.at("inferno:num_requests_waiting") == 0);
  CHECK(m.at("inferno:kv_cache_usage_perc") == 0);
}

TEST_CASE("/ready answers 503 while an engine step runs past the bound, and Engine::step_seconds shows it") {
  // A step that blocks (here: a token callback that sleeps, as a hung device would) keeps step_seconds growing.
  {
    inferno::Engine engine(brown_model(), {.parallel = 1, .ctx = 64});
    std::atomic<bool> release{false};
    inferno::GenerateOptions options;
    options.max_new_tokens = 2;
    options.ignore_eos = true;
    std::atomic<bool> finished{false};
    engine.submit({.prompt = brown_model().tokenize("The jury said"), .options = options,
                   .on_token = [&](int32_t) {
                     while (!release) std::this_thread::sleep_for(5ms);
                     return true;
                   },
                   .on_finish = [&](const inferno::EngineResult&) { finished = true; }});
    double seen = 0;
    for (int i = 0; i < 200 && seen < 0.5; ++i) {
      std::this_thread::sleep_for(10ms);
      seen = engine.step_seconds();
    }
    CHECK(seen >= 0.5);
    release = true;
    for (int i = 0; i < 1000 && !finished; ++i) std::this_thread::sleep_for(10ms);
    CHECK(finished);
    std::this_thread::sleep_for(50ms);
    CHECK(engine.step_seconds() == 0);  // idle: no step runs
  }
  // Through the server: a bound of 1 ms makes every step of a running request "stuck".
  OwnServer own({.stuck_after_s = 0.001});
  CHECK(get(own.port, "/ready").status == 200);  // idle: never stuck
  const int fd = connect_raw(own.port);
  REQUIRE(send_raw(fd, raw_post("/v1/completions", completion_body("The jury said", 500))));
  std::string code;
  for (int i = 0; i < 200 && code.empty(); ++i) {
    const Reply r = get(own.port, "/ready");
    if (r.status == 503) code = error_code(r, 503);
  }
  CHECK(code == "engine_stuck");
  ::close(fd);
  bool ready = false;
  for (int i = 0; i < 200 && !ready; ++i) {
    ready = get(own.port, "/ready").status == 200;
    if (!ready) std::this_thread::sleep_for(50ms);
  }
  CHECK(ready);
}

TEST_CASE("/metrics: Prometheus text format whose counters and histograms move with each request") {
  OwnServer own({});
  const auto before = scrape(own.port);
  for (const char* name : {"inferno:num_requests_running", "inferno:num_requests_waiting", "inferno:kv_cache_usage_perc",
                           "inferno:prompt_tokens_total", "inferno:generation_tokens_total",
                           "inferno:prefix_cache_hit_tokens_total", "inferno:time_to_first_token_seconds_count",
                           "inferno:time_per_output_token_seconds_count", "inferno:inter_token_latency_seconds_count",
                           "inferno:e2e_request_latency_seconds_count"})
    CHECK_MESSAGE(before.count(name), name);

  // A prompt of more than one KV block (16 tokens), twice: the second takes the first block from the prefix cache.
  const std::string prompt = "The jury said that the city of Atlanta had been given a praise and thanks for the manner in "
                             "which the election was conducted";
  const int prompt_tokens = int(brown_model().tokenize(prompt).size());
  REQUIRE(prompt_tokens > 16);
  const int max_tokens = 5;
  int cached = 0;
  for (int round = 0; round < 2; ++round) {
    const Reply r = post(own.port, "/v1/completions", completion_body(prompt, max_tokens));
    REQUIRE(r.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(r.body).get(doc) == simdjson::SUCCESS);
    cached += int(int64_t(doc["usage"]["prompt_tokens_details"]["cached_tokens"]));
  }
  CHECK(cached >= 16);
  CHECK(error_code(post(own.port, "/v1/completions", "{\"prompt\": 5}"), 400).empty());
  const auto after = scrape(own.port);
  const auto moved = [&](const std::string& key) { return value_or_zero(after, key) - value_or_zero(before, key); };
  CHECK(moved("inferno:prompt_tokens_total") == 2 * prompt_tokens);
  CHECK(moved("inferno:generation_tokens_total") == 2 * max_tokens);
  CHECK(moved("inferno:prefix_cache_hit_tokens_total") == cached);
  // The two completions and the first scrape (counted once written), and the 400.
  CHECK(moved("inferno:requests_total{status=\"200\"}") == 3);
  CHECK(moved("inferno:requests_total{status=\"400\"}") == 1);
  for (const char* h : {"inferno:time_to_first_token_seconds", "inferno:time_per_output_token_seconds",
                        "inferno:e2e_request_latency_seconds"}) {
    CAPTURE(h);
    CHECK(moved(std::string(h) + "_count") == 2);
    CHECK(moved(std::string(h) + "_sum") > 0);
  }
  // One inter-token gap per token after each request's first, and together no longer than the requests.
  CHECK(moved("inferno:inter_token_latency_seconds_count") == 2 * (max_tokens - 1));
  CHECK(moved("inferno:inter_token_latency_seconds_sum") > 0);
  CHECK(moved("inferno:inter_token_latency_seconds_sum") < moved("inferno:e2e_request_latency_seconds_sum"));
  // Time to first token comes before the end of the request.
  CHECK(moved("inferno:time_to_first_token_seconds_sum") < moved("inferno:e2e_request_latency_seconds_sum"));
  // The gauges are published by the engine after each step: the last one follows the response by a moment.
  double running = after.at("inferno:num_requests_running");
  for (int i = 0; i < 100 && running != 0; ++i) {
    std::this_thread::sleep_for(10ms);
    running = scrape(own.port).at("inferno:num_requests_running");
  }
  CHECK(running == 0);
}

TEST_CASE("Histogram: a value on a bound counts in that bucket; numbers print as Prometheus reads them") {
  inferno::server::Histogram h({0.1, 1});
  for (double v : {0.05, 0.1, 0.5, 1.0, 7.0}) h.observe(v);
  std::string out;
  h.render(out, "x");
  CHECK(out == "x_bucket{le=\"0.1\"} 2\nx_bucket{le=\"1\"} 4\nx_bucket{le=\"+Inf\"} 5\nx_sum 8.65\nx_count 5\n");
  CHECK(inferno::server::prometheus_number(1e-3) == "0.001");
  CHECK(inferno::server::prometheus_number(HUGE_VAL) == "+Inf");
  CHECK(inferno::server::prometheus_number(std::nan("")) == "NaN");
}

TEST_CASE("--api-key: every route but /health needs the bearer key (401 in OpenAI's shape)") {
  OwnServer own({.api_key = "sk-test-123"});
  CHECK(error_code(get(own.port, "/v1/models"), 401) == "invalid_api_key");
  CHECK(error_code(get(own.port, "/v1/models", {{"Authorization", "Bearer sk-test-124"}}), 401) == "invalid_api_key");
  CHECK(error_code(get(own.port, "/v1/models", {{"Authorization", "Bearer sk-test-12"}}), 401) == "invalid_api_key");
  CHECK(error_code(get(own.port, "/v1/models", {{"Authorization", "sk-test-123"}}), 401) == "invalid_api_key");
  CHECK(error_code(post(own.port, "/v1/completions", completion_body("The jury said", 2)), 401) == "invalid_api_key");
  CHECK(get(own.port, "/v1/models", {{"Authorization", "Bearer sk-test-123"}}).status == 200);
  CHECK(post(own.port, "/v1/completions", completion_body("The jury said", 2), {{"Authorization", "Bearer sk-test-123"}})
            .status == 200);
  CHECK(get(own.port, "/health").status == 200);  // liveness probes carry no secret
  for (const char* closed : {"/ready", "/metrics"}) {
    CHECK(error_code(get(own.port, closed), 401) == "invalid_api_key");
    CHECK(get(own.port, closed, {{"Authorization", "Bearer sk-test-123"}}).status == 200);
  }
  CHECK(error_code(post(own.port, "/tokenize", "{\"content\":\"a\"}"), 401) == "invalid_api_key");

  // Refused before its body is read, the connection ends after the 401: the body is never taken for a request.
  const int fd = connect_raw(own.port);
  const std::string body = completion_body("GET /health HTTP/1.1", 2);
  REQUIRE(send_raw(fd, raw_post("/v1/completions", body)));
  const std::string reply = read_raw(fd, 5s);
  CHECK(reply.rfind("HTTP/1.1 401", 0) == 0);
  CHECK(reply.find("Connection: close") != std::string::npos);
  CHECK(reply.find("HTTP/1.1", 1) == std::string::npos);  // one answer only, then the end of the connection
  ::close(fd);
}

TEST_CASE("--cors-origin: allowed origins get CORS headers and preflight answers; others get none") {
  OwnServer own({.api_key = "k", .cors_origins = {"https://app.example"}});
  const Reply allowed = get(own.port, "/health", {{"Origin", "https://app.example"}});
  CHECK(allowed.headers.find("Access-Control-Allow-Origin")->second == "https://app.example");
  CHECK(allowed.headers.find("Vary")->second == "Origin");
  const Reply other = get(own.port, "/health", {{"Origin", "https://evil.example"}});
  CHECK(other.headers.count("Access-Control-Allow-Origin") == 0);

  // A preflight carries no credentials: answered without the API key.
  const int fd = connect_raw(own.port);
  REQUIRE(send_raw(fd, "OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example\r\n"
                       "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n"
                       "Connection: close\r\n\r\n"));
  const std::string preflight = read_raw(fd, 5s);
  ::close(fd);
  CHECK_MESSAGE(preflight.rfind("HTTP/1.1 204", 0) == 0, preflight);
  CHECK(preflight.find("Access-Control-Allow-Origin: https://app.example\r\n") != std::string::npos);
  CHECK(preflight.find("Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n") != std::string::npos);
  CHECK(preflight.find("Access-Control-Allow-Headers: authorization, content-type\r\n") != std::string::npos);
  // The 401 of a browser's request carries the CORS headers too, so that the page can read the error.
  const Reply refused = get(own.port, "/v1/models", {{"Origin", "https://app.example"}});
  CHECK(refused.status == 401);
  CHECK(refused.headers.find("Access-Control-Allow-Origin")->second == "https://app.example");

  OwnServer any({.cors_origins = {"*"}});
  CHECK(get(any.port, "/health", {{"Origin", "https://x.example"}}).headers.find("Access-Control-Allow-Origin")->second == "*");
}

TEST_CASE("request heads are bounded in bytes and fields: 431, and memory does not grow") {
  OwnServer own({});
  // At the bound: answered.
  std::string fields;
  for (int i = 0; i < 99; ++i) fields += "X-F" + std::to_string(i) + ": v\r\n";  // + Host = 100
  int fd = connect_raw(own.port);
  REQUIRE(send_raw(fd, raw_get("/health", fields + "Connection: close\r\n")));
  std::string reply = read_raw(fd, 5s);
  ::close(fd);
  CHECK_MESSAGE(reply.rfind("HTTP/1.1 431", 0) == 0, "101 fields (99 + Host + Connection) are one too many");
  fd = connect_raw(own.port);
  REQUIRE(send_raw(fd, raw_get("/health", fields)));
  reply = read_raw(fd, 5s, "{\"status\":\"ok\"}");
  ::close(fd);
  CHECK_MESSAGE(reply.rfind("HTTP/1.1 200", 0) == 0, "100 fields are allowed");

  // Two requests in one write (pipelined) on one connection: both answered, in order.
  fd = connect_raw(own.port);
  REQUIRE(send_raw(fd, raw_get("/health") + raw_get("/ready", "Connection: close\r\n")));
  reply = read_raw(fd, 5s);
  ::close(fd);
  CHECK(reply.find("{\"status\":\"ok\"}") != std::string::npos);
  CHECK(reply.find("{\"status\":\"ready\"}") != std::string::npos);

  // 10,000 small headers, and 20 MB of headers: refused, the server's memory (this process's) stays put.
  const long rss_before = rss_kib();
  for (const size_t total_bytes : {size_t(10000) * 19, size_t(20) << 20}) {  // 19 bytes a line
    CAPTURE(total_bytes);
    fd = connect_raw(own.port);
    std::atomic<size_t> sent{0};
    std::thread sender([&] {
      std::string chunk;  // 64 KiB of "X-Pad-NNNNN: aaaa\r\n" lines, sent again and again: no 20 MB string here
      for (int i = 0; chunk.size() < 65536; ++i) chunk += "X-Pad-" + std::to_string(10000 + i % 90000) + ": aaaa\r\n";
      if (!send_raw(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")) return;
      while (sent < total_bytes) {
        const std::string piece = chunk.substr(0, std::min(chunk.size(), total_bytes - sent));
        if (!send_raw(fd, piece)) return;  // the server has closed the connection
        sent += piece.size();
      }
      send_raw(fd, "\r\n");
    });
    reply = read_raw(fd, 10s, "}}");
    ::shutdown(fd, SHUT_RDWR);
    sender.join();
    ::close(fd);
    CHECK_MESSAGE(reply.rfind("HTTP/1.1 431", 0) == 0, reply.substr(0, 200));
    CHECK(reply.find("request_header_fields_too_large") != std::string::npos);
  }
  const long grown_kib = rss_kib() - rss_before;
  INFO("RSS grew by " << grown_kib << " KiB");
  CHECK(grown_kib < 4096);  // the bound is 32 KiB a request; 4 MiB leaves room for allocator and thread noise
  CHECK(get(own.port, "/health").status == 200);
}

TEST_CASE("drain: in-flight requests finish, /ready says 503, new generations are refused, serve() returns") {
  OwnServer own({});
  // A long generation, and a second connection that has begun a request for /ready.
  const int generating = connect_raw(own.port);
  REQUIRE(send_raw(generating, raw_post("/v1/completions", completion_body("The jury said", 60))));
  const int asking = connect_raw(own.port);
  REQUIRE(send_raw(asking, "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
  const int idle = connect_raw(own.port);
  for (int i = 0; i < 200 && scrape(own.port).at("inferno:num_requests_running") == 0; ++i) std::this_thread::sleep_for(10ms);

  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    own.server.drain(60s);
    drained = true;
  });
  for (int i = 0; i < 100 && own.server.ready(); ++i) std::this_thread::sleep_for(5ms);
  CHECK(!own.server.ready());
  CHECK(closed_by_server(idle, 2s));  // an idle connection ends at once
  REQUIRE(send_raw(asking, "\r\n"));  // the begun request is answered: not ready, and the connection closes
  const std::string ready_reply = read_raw(asking, 5s);
  CHECK_MESSAGE(ready_reply.rfind("HTTP/1.1 503", 0) == 0, ready_reply);
  CHECK(ready_reply.find("\"draining\"") != std::string::npos);
  CHECK(ready_reply.find("Connection: close") != std::string::npos);
  // New connections are refused (the listening socket is closed).
  const int refused = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(own.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(refused, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0);
  ::close(refused);

  const std::string reply = read_raw(generating, 120s, "}}");
  CHECK_MESSAGE(reply.rfind("HTTP/1.1 200", 0) == 0, reply);
  CHECK(reply.find("\"completion_tokens\":60") != std::string::npos);
  drainer.join();
  CHECK(drained);
  CHECK(!own.server.running());
  for (int fd : {generating, asking, idle}) ::close(fd);
}

TEST_CASE("inferno serve: SIGTERM drains (the request in flight finishes, exit 0); the log has a line a request") {
  ServeProcess serve({"--log", "--drain-timeout", "60"}, "listening on http://127.0.0.1:", {"INFERNO_API_KEY=sk-env"});
  const httplib::Headers key{{"Authorization", "Bearer sk-env"}};
  CHECK(get(serve.port, "/v1/models").status == 401);  // the key from the environment
  Reply long_reply;
  std::thread request([&] { long_reply = post(serve.port, "/v1/completions", completion_body("The jury said", 60), key); });
  for (int i = 0; i < 500 && scrape(serve.port, key).at("inferno:num_requests_running") == 0; ++i) std::this_thread::sleep_for(10ms);
  ::kill(serve.pid, SIGTERM);
  request.join();
  CHECK(long_reply.status == 200);
  CHECK(long_reply.body.find("\"completion_tokens\":60") != std::string::npos);
  CHECK(serve.wait(30s) == 0);
  CHECK(serve.printed.find("draining") != std::string::npos);
  CHECK(serve.printed.find("inferno serve: stopped") != std::string::npos);
  // 2026-12-03T05:46:19.299Z <id> POST /v1/completions 200 prompt_tokens=4 completion_tokens=60 cached_tokens=0 ttft_ms=.. latency_ms=..
  const std::regex line(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9a-f]{24} POST /v1/completions 200 prompt_tokens=4 )"
                        R"(completion_tokens=60 cached_tokens=\d+ ttft_ms=[0-9.]+ latency_ms=[0-9.]+)");
  CHECK_MESSAGE(std::regex_search(serve.printed, line), serve.printed);
  CHECK(std::regex_search(serve.printed, std::regex(R"(Z [0-9a-f]{24} GET /v1/models 401 latency_ms=)")));
}

TEST_CASE("inferno serve: past --drain-timeout the requests in flight are cancelled, and it still exits 0") {
  ServeProcess serve({"--drain-timeout", "1"}, "listening on http://127.0.0.1:");
  Reply long_reply;
  const auto start = std::chrono::steady_clock::now();
  std::thread request([&] { long_reply = post(serve.port, "/v1/completions", completion_body("The jury said", 1000)); });
  for (int i = 0; i < 500 && scrape(serve.port).at("inferno:num_requests_running") == 0; ++i) std::this_thread::sleep_for(10ms);
  ::kill(serve.pid, SIGTERM);
  request.join();
  CHECK(error_code(long_reply, 503) == "server_stopping");
  CHECK(serve.wait(30s) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 20s);  // 1000 tokens would take far longer on lavapipe
}

TEST_CASE("inferno serve: /health answers while the model loads; the port is taken before loading") {
  ServeProcess serve({}, "bound to 127.0.0.1:");
  CHECK(get(serve.port, "/health").status == 200);
  const Reply ready = get(serve.port, "/ready");
  if (ready.status != 200) CHECK(error_code(ready, 503) == "model_loading");  // a fast machine may be done already
  serve.read_until("listening on http://");
  CHECK(get(serve.port, "/ready").status == 200);
  ::kill(serve.pid, SIGTERM);
  CHECK(serve.wait(30s) == 0);
}
