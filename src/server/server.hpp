#pragma once
// inferno's local HTTP server, compatible with OpenAI's API (see openai.hpp for the fields it reads):
//   POST /v1/completions, POST /v1/chat/completions  (JSON, or server-sent events with "stream": true)
//   GET /v1/models, GET /health
// Requests go to one batching engine for the model, which runs up to `parallel` of them together and queues the
// rest; a streaming client that disconnects cancels its generation. Errors are JSON in OpenAI's error shape.
#include <cstdint>
#include <memory>
#include <string>

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
  bool log = false;                   // one line per request on stderr
};

class Server {
 public:
  // The model must outlive the server and have a tokenizer (Error otherwise).
  Server(Model& model, ServerOptions options);
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts listening; returns the port. Throws Error when it cannot.
  int bind();
  // Answers requests until stop(). Call after bind().
  void serve();
  // From any thread: cancels what runs and waits, stops listening and makes serve() return.
  void stop();
  bool running() const;
  const std::string& model_name() const;
  uint64_t cancelled_generations() const;  // generations cut short because their client went away

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferno::server
