// `inferno serve`: the OpenAI-compatible HTTP server (src/server) on one model, until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "cli/commands.hpp"
#include "server/server.hpp"

namespace inferno::cli {

namespace {

struct ServeArgs {
  ModelArgs model;
  server::ServerOptions server;
  std::string kv_budget;
};

int run_serve(ServeArgs a) {
  if (a.server.port < 0 || a.server.port > 65535) throw UsageError("serve: --port must be in 0..65535");
  if (!a.kv_budget.empty()) {
    const KvBudget budget = parse_kv_budget_flag(a.kv_budget);
    a.server.kv_budget_bytes = budget.bytes;
    a.server.kv_budget_share = budget.share;
  }
  // SIGINT and SIGTERM go to one thread, which stops the server (or ends the process while the model loads).
  // They are blocked before any other thread starts (the Vulkan driver starts some) so that all inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::mutex mutex;
  server::Server* running = nullptr;
  bool finished = false;
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    std::lock_guard lock(mutex);
    if (finished) return;
    if (!running) std::_Exit(128 + signal);  // still loading: nothing to shut down
    running->stop();
  });
  const auto release_waiter = [&] {
    {
      std::lock_guard lock(mutex);
      finished = true;
      running = nullptr;
    }
    pthread_kill(waiter.native_handle(), SIGTERM);  // a no-op for the waiter once it has had its signal
    waiter.join();
  };

  try {
    Model model = load_model(a.model);
    a.server.session = session_options(a.model);
    server::Server server(model, a.server);
    const int port = server.bind();
    std::fprintf(stderr, "inferno serve: listening on http://%s:%d (model \"%s\"); Ctrl-C stops\n",
                 a.server.host.c_str(), port, server.model_name().c_str());
    {
      std::lock_guard lock(mutex);
      running = &server;
    }
    server.serve();
    release_waiter();
  } catch (...) {
    release_waiter();
    throw;
  }
  std::fprintf(stderr, "inferno serve: stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, Action& action) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "an OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, "
                                          "/v1/models, /health");
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
  cmd->add_flag("--log", a->server.log, "one line per request on stderr");
  cmd->callback([&action, a] { action = [a] { return run_serve(*a); }; });
}

}  // namespace inferno::cli
