#pragma once
// inferno's local HTTP server, compatible with OpenAI's API (see openai.hpp for the fields it reads):
//   POST /v1/completions, POST /v1/chat/completions  (JSON, or server-sent events with "stream": true)
//   GET /v1/models
//   POST /tokenize, POST /detokenize (llama.cpp's shapes)
//   GET /health   liveness: 200 while the process answers
//   GET /ready    readiness: 200 once the model is loaded; 503 while it loads, while draining, or while an engine
//                 step has run longer than stuck_after_s
//   GET /metrics  Prometheus text format (metrics.hpp)
// Requests go to one batching engine for the model, which runs up to `parallel` of them together and queues the
// rest; a client that disconnects cancels its generation. Errors are JSON in OpenAI's error shape.
//
// A server may start listening before its model is loaded (Server(options), then attach()): /v1/* answer 503
// until then. With an API key, every route but /health needs `Authorization: Bearer KEY` (liveness probes carry
// no secret; readiness probes and scrapers send the key).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "inferno/inferno.hpp"

namespace inferno::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                    // 0: any free port (bind() says which)
  std::string model_name;             // what /v1/models lists and responses name; default: the directory's name
  SessionOptions session;             // ctx (0: max_position_embeddings, at most 4096) and KV dtype
  uint32_t parallel = 8;              // requests decoded together (--parallel)
  uint64_t kv_budget_bytes = 0;       // the KV pool (--kv-budget); 0: parallel × ctx tokens
  double kv_budget_share = 0;         // --kv-budget PCT%: that share of the device memory free after the weights
  uint32_t batch_tokens = 512;        // rows of one engine step (--batch-tokens)
  size_t max_body_bytes = 1 << 20;    // larger request bodies get 413
  size_t max_queued = 64;             // requests waiting for the model beyond this get 503
  size_t max_connections = 256;       // connections served at once, each on its own thread; more wait to be accepted
  int io_timeout_s = 10;              // a read or write that makes no progress this long closes the connection
  int keep_alive_timeout_s = 5;       // an idle kept-alive connection is closed after this long
  int default_max_tokens = 16;        // /v1/completions without max_tokens (OpenAI's default)
  int default_chat_max_tokens = 1024; // /v1/chat/completions without max_tokens, at most what the context leaves
  std::optional<std::string> chat_template;  // --template: the chat template instead of the model's
  bool log = false;                   // one line per request on stderr (see README: time, id, route, status, ...)
  std::string api_key;                // not empty: /v1/* need "Authorization: Bearer <api_key>" (401 otherwise)
  std::vector<std::string> cors_origins;  // origins answered with Access-Control-Allow-Origin; "*": any
  double stuck_after_s = 60;          // /ready answers 503 while one engine step has run longer than this
  size_t max_header_bytes = 32 * 1024;  // request line + headers of one request; more gets 431
  size_t max_header_fields = 100;       // header lines of one request; more gets 431
};

class Server {
 public:
  // The model must outlive the server and have a tokenizer (Error otherwise). Ready once it listens.
  Server(Model& model, ServerOptions options);
  // No model yet: the server can listen (/health, /ready, /metrics answer; /v1/* get 503) until attach().
  explicit Server(ServerOptions options);
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // From any thread, once: the model to serve (as in the first constructor); the server is ready after it.
  void attach(Model& model);

  // Binds host:port and starts listening; returns the port. Throws Error when it cannot.
  int bind();
  // Answers requests until stop() or drain(). Call after bind().
  void serve();
  // From any thread: cancels what runs and waits, stops listening and makes serve() return.
  void stop();
  // From any thread: stops accepting connections (/ready says 503 meanwhile), lets the requests in flight finish
  // for up to `timeout`, then cancels what is left as stop() does. Returns when serve() has returned.
  void drain(std::chrono::milliseconds timeout);
  bool running() const;
  bool ready() const;                      // what /ready says
  std::string model_name() const;
  uint64_t cancelled_generations() const;  // generations cut short because their client went away

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferno::server
