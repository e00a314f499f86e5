#include "server/server.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>

#include "server/generation.hpp"
#include "server/openai.hpp"

namespace inferno::server {

namespace {

using namespace std::chrono_literals;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(e.to_json(), "application/json");
}

// A generation that failed in the engine (500) or was cut short because the server is stopping (503).
std::optional<ApiError> outcome_error(const GenerationOutcome& outcome) {
  if (outcome.finish_reason == "cancelled")
    return ApiError{503, outcome.error.value_or("the server is stopping"), "server_error", "", "server_stopping"};
  if (outcome.error) return ApiError{500, *outcome.error, "server_error", "", ""};
  return std::nullopt;
}

ApiError context_exceeded(std::string param, std::string message) {
  return {400, std::move(message), "invalid_request_error", std::move(param), "context_length_exceeded"};
}

std::string random_hex() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

// The port and printable address of one end of a socket; false when it is not an IP socket.
bool socket_end(int fd, bool peer, std::string& address, int& port) {
  sockaddr_storage a{};
  socklen_t length = sizeof a;
  if ((peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &length) : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length)) != 0)
    return false;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    port = ntohs(v4.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
    port = ntohs(v6.sin6_port);
  } else {
    return false;
  }
  address = text;
  return true;
}

// The socket a request came on (cpp-httplib does not hand it to handlers): the open descriptor whose two ends
// are the request's addresses, which name one TCP connection. -1 when none is found. The connection stays open,
// and so its descriptor, until the handler returns.
int connection_socket(const httplib::Request& req) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    std::string local, remote;
    int local_port = 0, remote_port = 0;
    if (socket_end(int(fd), false, local, local_port) && local_port == req.local_port &&
        socket_end(int(fd), true, remote, remote_port) && remote_port == req.remote_port && remote == req.remote_addr &&
        local == req.local_addr) {
      found = int(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

// Whether the client of a connection has closed it or reset it (a request's body has been read whole by then,
// so the peer has nothing more to send but a next request, which leaves the connection open).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{.fd = fd, .events = POLLRDHUP, .revents = 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

}  // namespace

struct Server::Impl {
  Model& model;
  ServerOptions options;
  ModelWorker worker;
  httplib::Server http;
  const std::string id_prefix = random_hex();
  std::atomic<uint64_t> next_id{0};
  std::atomic<bool> serving{false}, stop_requested{false};

  Impl(Model& m, ServerOptions o)
      : model(m), options(std::move(o)), worker(m, engine_options(m, options), options.max_queued) {}

  static EngineOptions engine_options(const Model& m, const ServerOptions& o) {
    return {.parallel = o.parallel, .ctx = context_limit(m, o), .kv_budget_bytes = o.kv_budget_bytes,
            .kv_budget_share = o.kv_budget_share,
            .batch_tokens = o.batch_tokens, .kv_dtype = o.session.kv_dtype};
  }
  static uint32_t context_limit(const Model& m, const ServerOptions& o) {
    return o.session.ctx ? o.session.ctx : std::min<uint32_t>(m.info().max_position_embeddings, 4096);
  }

  uint32_t context_limit() const { return context_limit(model, options); }

  // The prompt's ids and the generation options of a checked request; ApiError for what the model cannot do.
  GenerationRequest prepare(const CompletionRequest& r) const {
    GenerationRequest g;
    const char* prompt_param = r.chat ? "messages" : "prompt";
    if (r.chat) {
      if (!model.has_chat_template())
        throw ApiError::invalid("messages", (model.info().path / "tokenizer_config.json").string() +
                                                ": the model has no chat template, so chat messages cannot be formatted "
                                                "(use /v1/completions with a prompt)");
      std::string text;
      try {
        text = model.render_chat(r.messages, true);
      } catch (const Error& e) {
        throw ApiError::invalid("messages", std::string("the chat template refused the messages: ") + e.what());
      }
      g.prompt = model.tokenize(text, false);  // the template wrote the special tokens itself
    } else if (r.prompt_text) {
      try {
        g.prompt = model.tokenize(*r.prompt_text, true);
      } catch (const Error& e) {
        throw ApiError::invalid("prompt", e.what());
      }
    } else {
      const uint32_t vocab = model.info().vocab_size;
      for (int32_t id : r.prompt_ids)
        if (uint32_t(id) >= vocab)
          throw ApiError::invalid("prompt", "token id " + std::to_string(id) + " is outside the vocabulary (" +
                                                std::to_string(vocab) + " ids)");
      g.prompt = r.prompt_ids;
    }
    if (g.prompt.empty()) throw ApiError::invalid(prompt_param, "the prompt is empty: it has no tokens");

    const uint32_t limit = context_limit();
    if (g.prompt.size() >= limit)
      throw context_exceeded(prompt_param, "the prompt has " + std::to_string(g.prompt.size()) +
                                               " tokens; this model's context holds " + std::to_string(limit));
    const int room = int(limit - g.prompt.size());
    const int max_tokens = r.max_tokens ? *r.max_tokens
                                        : std::min(r.chat ? options.default_chat_max_tokens : options.default_max_tokens, room);
    if (max_tokens > room)
      throw context_exceeded(r.max_tokens ? "max_tokens" : "", "this model's maximum context length is " +
                                                                  std::to_string(limit) + " tokens; the request asks for " +
                                                                  std::to_string(g.prompt.size() + size_t(max_tokens)) + " (" +
                                                                  std::to_string(g.prompt.size()) + " in the prompt, " +
                                                                  std::to_string(max_tokens) + " to generate)");
    g.options.max_new_tokens = max_tokens;
    g.options.ignore_eos = r.ignore_eos;

    // The model's generation_config.json first (as transformers and vLLM do), then the request. Any sampling
    // parameter turns sampling on; temperature 0 means greedy whatever else is given.
    SamplingOptions& s = g.options.sampling;
    s = default_sampling(model);
    if (r.temperature || r.top_p || r.top_k || r.min_p || r.seed) s.do_sample = true;
    if (r.temperature) s.temperature = float(*r.temperature);
    if (r.top_p) s.top_p = float(*r.top_p);
    if (r.top_k) s.top_k = *r.top_k;
    if (r.min_p) s.min_p = float(*r.min_p);
    if (r.repetition_penalty) s.repetition_penalty = float(*r.repetition_penalty);
    if (r.temperature && *r.temperature == 0) s.do_sample = false;
    s.seed = r.seed ? uint64_t(*r.seed) : uint64_t(std::random_device{}()) << 32 | std::random_device{}();
    g.stop = r.stop;
    return g;
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat) {
    CompletionRequest request;
    GenerationRequest generation_request;
    try {
      request = parse_completion_request(req.body, chat);
      generation_request = prepare(request);
    } catch (const ApiError& e) {
      return send_error(res, e);
    } catch (const std::exception& e) {
      return send_error(res, ApiError::invalid("", e.what()));
    }
    auto generation = std::make_shared<Generation>(std::move(generation_request));
    if (!worker.submit(generation))
      return send_error(res, {503, "the server is busy: " + std::to_string(options.max_queued) +
                                       " requests are already waiting; try again later", "server_error", "", "server_busy"});
    char serial[24];
    std::snprintf(serial, sizeof serial, "%08llx", static_cast<unsigned long long>(next_id++));
    const ResponseHead head{(chat ? "chatcmpl-" : "cmpl-") + id_prefix + serial, options.model_name,
                            int64_t(std::time(nullptr)), chat};
    if (!request.stream) return answer_whole(generation, head, connection_socket(req), res);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [generation, head, include_usage = request.include_usage](size_t, httplib::DataSink& sink) {
          return stream_events(*generation, head, include_usage, sink);
        },
        [generation](bool success) {
          if (!success) generation->cancel();  // the connection broke before the stream ended
        });
  }

  // Waits for the whole text; a client that closes the connection meanwhile cancels the generation, which then
  // ends at its next token (the answer goes nowhere).
  static void answer_whole(const std::shared_ptr<Generation>& generation, const ResponseHead& head, int socket,
                           httplib::Response& res) {
    std::string text;
    for (;;) {
      auto update = generation->next(100ms);
      text += update.text;
      if (update.done) break;
      if (!generation->cancelled() && client_gone(socket)) generation->cancel();
    }
    const GenerationOutcome& outcome = generation->outcome();
    if (const auto error = outcome_error(outcome)) return send_error(res, *error);
    res.set_content(completion_json(head, text, outcome.finish_reason, {outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens}),
                    "application/json");
  }

  // Writes the whole event stream of a generation. A write that fails means the client went away: the
  // generation is cancelled at its next token.
  static bool stream_events(Generation& generation, const ResponseHead& head, bool include_usage, httplib::DataSink& sink) {
    const auto send = [&](const std::string& event) {
      const std::string data = "data: " + event + "\n\n";
      if (sink.write(data.data(), data.size())) return true;
      generation.cancel();
      return false;
    };
    bool first = true;
    if (head.chat) {  // the role comes first, as OpenAI sends it
      if (!send(chunk_json(head, "", true, std::nullopt))) return false;
      first = false;
    }
    for (;;) {
      auto update = generation.next(1s);
      if (!update.text.empty()) {
        if (!send(chunk_json(head, update.text, first, std::nullopt))) return false;
        first = false;
      } else if (!update.done) {
        // A second without text (queued behind other requests, or a long prefill): an SSE comment, which clients
        // skip, shows whether the client is still there.
        static const std::string keep_alive = ": waiting\n\n";
        if (!sink.write(keep_alive.data(), keep_alive.size())) {
          generation.cancel();
          return false;
        }
      }
      if (update.done) break;
    }
    const GenerationOutcome& outcome = generation.outcome();
    if (const auto error = outcome_error(outcome)) {
      if (!send(error->to_json())) return false;
    } else {
      if (!send(chunk_json(head, "", false, outcome.finish_reason))) return false;
      if (include_usage && !send(usage_chunk_json(head, {outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens}))) return false;
    }
    static const std::string done = "data: [DONE]\n\n";
    if (!sink.write(done.data(), done.size())) return false;
    sink.done();
    return true;
  }

  void routes() {
    // Every connection has a thread of its own for as long as it is open, so that connections waiting on the
    // model, idle or slow never hold up the others (cpp-httplib's default is 8 threads for everything); more
    // than max_connections wait to be accepted. Every read and write gives up after io_timeout_s without
    // progress; header lines are bounded by cpp-httplib (CPPHTTPLIB_HEADER_MAX_LENGTH, 8 KiB).
    const size_t threads = std::max<size_t>(options.max_connections, 1);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_read_timeout(options.io_timeout_s, 0);
    http.set_write_timeout(options.io_timeout_s, 0);
    http.set_keep_alive_timeout(options.keep_alive_timeout_s);
    http.set_keep_alive_max_count(1000);
    // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, with which a second server on the same port
    // binds too and the two share its connections at random.
    http.set_socket_options([](int sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    http.set_payload_max_length(options.max_body_bytes);
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(models_json(options.model_name, int64_t(std::time(nullptr))), "application/json");
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"status\":\"ok\"}", "application/json");
    });
    // Every other error (unknown route, too large a body, ...) as JSON too; handlers' own errors pass unchanged.
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      ApiError e;
      e.status = res.status;
      if (res.status == 404) {
        e.message = "no route for " + req.method + " " + req.path;
        e.code = "not_found";
      } else if (res.status == 413) {
        e.message = "the request body is larger than " + std::to_string(options.max_body_bytes) + " bytes";
        e.code = "request_too_large";
      } else {
        e.message = "HTTP status " + std::to_string(res.status) + " for " + req.method + " " + req.path;
        if (res.status >= 500) e.type = "server_error";
      }
      send_error(res, e);
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown failure";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, {500, what, "server_error", "", ""});
    });
    if (options.log)
      http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        std::fprintf(stderr, "%s %s %s -> %d\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status);
      });
  }
};

Server::Server(Model& model, ServerOptions options) {
  if (!model.has_tokenizer())
    throw Error((model.info().path / "tokenizer.json").string() + ": the server needs the model's tokenizer");
  if (options.model_name.empty()) {
    const auto& path = model.info().path;
    options.model_name = (path.has_filename() ? path.filename() : path.parent_path().filename()).string();
  }
  // A client that disconnects must fail a write, not kill the process (cpp-httplib does the same on Linux).
  std::signal(SIGPIPE, SIG_IGN);
  impl_ = std::make_unique<Impl>(model, std::move(options));
  impl_->routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  const auto& o = impl_->options;
  const int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host) : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port <= 0)
    throw Error("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (address in use, or not an address of this machine)");
  return port;
}

void Server::serve() {
  impl_->serving = true;
  if (!impl_->stop_requested) impl_->http.listen_after_bind();
  impl_->serving = false;
}

void Server::stop() {
  impl_->stop_requested = true;
  impl_->worker.cancel_all();
  // httplib's stop() only acts once its loop runs: repeat it until serve() has returned (bounded: 10 s).
  for (int i = 0; i < 2000 && impl_->serving; ++i) {
    impl_->http.stop();
    std::this_thread::sleep_for(5ms);
  }
}

bool Server::running() const { return impl_->http.is_running(); }
const std::string& Server::model_name() const { return impl_->options.model_name; }
uint64_t Server::cancelled_generations() const { return impl_->worker.cancelled_count(); }

}  // namespace inferno::server
