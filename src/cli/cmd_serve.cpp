// `inferno serve`: the OpenAI-compatible HTTP server (src/server) on one model, until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/commands.hpp"
#include "server/server.hpp"

namespace inferno::cli {

namespace {

struct ServeArgs {
  ModelArgs model;
  server::ServerOptions server;
  double drain_timeout_s = 30;
  std::string template_file;
  std::string kv_budget;
};

// A chat template is a few kilobytes (Llama 3.1's, the longest in use, 10 KB); the bound keeps a wrong path from
// being read whole.
constexpr uint64_t kMaxTemplateBytes = 1 << 20;

int run_serve(ServeArgs a) {
  if (a.server.port < 0 || a.server.port > 65535) throw UsageError("serve: --port must be in 0..65535");
  if (!a.kv_budget.empty()) {
    const KvBudget budget = parse_kv_budget_flag(a.kv_budget);
    a.server.kv_budget_bytes = budget.bytes;
    a.server.kv_budget_share = budget.share;
  }
  if (!a.template_file.empty()) a.server.chat_template = read_text_file(a.template_file, kMaxTemplateBytes);
  // SIGINT and SIGTERM go to one thread, which drains the server (or ends the process while the model loads).
  // They are blocked before any other thread starts (the Vulkan driver starts some) so that all inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Listen first, then load: probes see the process alive (/health) and not yet ready (/ready) meanwhile, and a
  // port in use is refused before the minutes a large model takes to load.
  a.server.session = session_options(a.model);
  std::optional<Model> model;  // declared before the server, which refers to it until it is destroyed
  server::Server server(a.server);
  const int port = server.bind();
  std::fprintf(stderr, "inferno serve: bound to %s:%d, loading the model (/ready answers 503 until it is loaded)\n",
               a.server.host.c_str(), port);

  std::mutex mutex;
  bool loaded = false, finished = false;
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    {
      std::lock_guard lock(mutex);
      if (finished) return;
    }
    std::fprintf(stderr, "inferno serve: %s: draining (up to %g s for the requests in flight)\n",
                 signal == SIGINT ? "SIGINT" : "SIGTERM", a.drain_timeout_s);
    server.drain(std::chrono::milliseconds(int64_t(a.drain_timeout_s * 1000)));
    std::lock_guard lock(mutex);
    if (!loaded && !finished) {  // the load cannot be interrupted, and there was nothing to finish
      std::fprintf(stderr, "inferno serve: stopped before the model was loaded\n");
      std::_Exit(0);
    }
  });
  const auto release_waiter = [&] {
    {
      std::lock_guard lock(mutex);
      finished = true;
    }
    pthread_kill(waiter.native_handle(), SIGTERM);  // a no-op for the waiter once it has had its signal
    waiter.join();
  };
  std::thread http([&] { server.serve(); });

  try {
    model.emplace(load_model(a.model));
    if (a.server.chat_template) {  // a template that cannot render one user turn is refused now, naming its file
      try {
        model->render_chat({{"user", "hello"}}, true, a.server.chat_template);
      } catch (const Error& e) {
        throw Error(a.template_file + ": " + e.what());
      }
    }
    server.attach(*model);
    {
      std::lock_guard lock(mutex);
      loaded = true;
    }
    // The line scripts wait for: from here on requests are served.
    std::fprintf(stderr, "inferno serve: listening on http://%s:%d (model \"%s\"); Ctrl-C stops\n",
                 a.server.host.c_str(), port, server.model_name().c_str());
  } catch (...) {
    server.stop();
    http.join();
    release_waiter();
    throw;
  }
  http.join();  // serve() returns once drained or stopped
  release_waiter();
  std::fprintf(stderr, "inferno serve: stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "an OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, "
                                          "/v1/models, /health, /ready, /metrics, /tokenize, /detokenize");
  add_model_args(*cmd, a->model);
  cmd->add_option("--host", a->server.host, "address to listen on (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", a->server.port, "port to listen on (default 8080; 0: any free port, printed on stderr)")
      ->check(int_in(0, 65535));
  cmd->add_option("--alias", a->server.model_name, "model name in responses and /v1/models (default: the directory's)");
  cmd->add_option("--max-body-bytes", a->server.max_body_bytes, "larger request bodies get 413 (default 1 MiB)")
      ->check(int_in(1, int64_t(1) << 32));
  cmd->add_option("--max-queue", a->server.max_queued, "requests that may wait for the model; more get 503 (default 64)")
      ->check(int_in(0, 1000000));
  cmd->add_option("--max-connections", a->server.max_connections,
                  "connections served at once, each on a thread of its own; more wait to be accepted (default 256)")
      ->check(CLI::Range(size_t(1), size_t(65536)));
  cmd->add_option("--timeout", a->server.io_timeout_s,
                  "seconds a read or write of a connection may make no progress before it is closed (default 10)")
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--default-max-tokens", a->server.default_chat_max_tokens,
                  "chat tokens to generate when a request gives no max_tokens (default 1024)")
      ->check(int_in(1, kMaxTokens));
  cmd->add_option("--parallel", a->server.parallel, "requests decoded together; more wait in the queue (default 8)")
      ->check(CLI::Range(1u, 1024u));
  cmd->add_option("--kv-budget", a->kv_budget,
                  "the shared KV cache: a share of the device memory free after the weights (50%) or a size (2G, "
                  "512M, bytes) (default: --parallel × --ctx tokens)");
  cmd->add_option("--batch-tokens", a->server.batch_tokens,
                  "tokens one engine step runs: a decode row per request plus prompt chunks (default 512)")
      ->check(CLI::Range(1u, 65536u));
  cmd->add_flag("--log", a->server.log,
                "one line per request on stderr: UTC time, request id, method and path, status, and for generations "
                "prompt/completion/cached tokens, time to first token and latency");
  cmd->add_option("--api-key", a->server.api_key,
                  "every route but /health requires 'Authorization: Bearer KEY' (401 otherwise)")
      ->envname("INFERNO_API_KEY");
  cmd->add_option("--cors-origin", a->server.cors_origins,
                  "an origin browsers may call from (repeatable; * for any): CORS headers and OPTIONS preflights");
  cmd->add_option("--drain-timeout", a->drain_timeout_s,
                  "on SIGTERM or SIGINT: seconds the requests in flight may take to finish before they are cancelled "
                  "(default 30)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--stuck-timeout", a->server.stuck_after_s,
                  "/ready answers 503 while one engine step has run longer than this many seconds (default 60)")
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--template", a->template_file, "a Jinja chat template file for /v1/chat/completions instead of the model's");
  cmd->callback([&action, a] { action = [a] { return run_serve(*a); }; });
}

}  // namespace inferno::cli
