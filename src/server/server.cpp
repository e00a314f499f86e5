#include "server/server.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "server/generation.hpp"
#include "server/metrics.hpp"
#include "server/openai.hpp"
#include "server/structured.hpp"

namespace inferno::server {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

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

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Equal strings in a time that does not depend on where they first differ (an API key must not leak byte by byte
// through response times).
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
    diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// What the server learns about one request while answering it; read by the logger after the response is written.
// Each connection has a thread of its own, so the request a handler runs for is that thread's current one.
struct RequestRecord {
  int socket = -1;
  Clock::time_point arrival;
  std::string id;               // also the X-Request-Id header and the middle of completion ids
  std::string route;            // method and path, for the log
  int status_override = 0;      // the status the client got when cpp-httplib did not write it (431)
  bool close_connection = false;  // end the connection after this response (the body may be unread)
  bool generation = false;
  GenerationRecord result;
};
thread_local RequestRecord* current_request = nullptr;

// Whether the client of a connection has closed it or reset it (a request's body has been read whole by then,
// so the peer has nothing more to send but a next request, which leaves the connection open).
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{.fd = fd, .events = POLLRDHUP, .revents = 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

// Waits up to `timeout` for `events` on a socket, in slices so that `give_up` is seen within 50 ms.
bool wait_socket(int fd, short events, std::chrono::milliseconds timeout, const std::function<bool()>& give_up) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int n = ::poll(&p, 1, int(std::min<int64_t>(left.count(), give_up ? 50 : left.count())));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
    if (give_up && give_up()) return false;
  }
}

struct HeadLimits {
  size_t max_bytes = 32 * 1024, max_fields = 100;
  std::chrono::milliseconds read_timeout{10000}, write_timeout{10000};
};

// One connection's socket as cpp-httplib reads and writes it, with the request head bounded: cpp-httplib 0.11 (as
// Debian 12 builds it, its limits compiled in) bounds each header line but neither their number nor the length
// of a line before it checks it, so a request of 150 MB of headers is read whole into memory. Here the bytes of
// each request's head (request line and headers, up to the blank line) are counted as cpp-httplib takes them; past
// max_bytes or max_fields lines every read fails, cpp-httplib gives up on the request, and the connection gets
// 431. One stream serves every request of a connection, so pipelined bytes read ahead are never lost.
class BoundedSocketStream final : public httplib::Stream {
 public:
  BoundedSocketStream(int fd, HeadLimits limits, std::function<bool()> closing)
      : fd_(fd), limits_(limits), closing_(std::move(closing)) {}

  // Waits for the first byte of a next request; false when the connection ends (idle timeout, peer closed, or the
  // server stops listening: an idle connection is then closed at once, a request already begun is answered).
  bool wait_for_request(std::chrono::milliseconds idle_timeout) {
    if (start_ < end_) return true;
    return wait_socket(fd_, POLLIN, idle_timeout, closing_);
  }
  void begin_request(RequestRecord* record) {
    record_ = record;
    in_head_ = true;
    head_deadline_ = Clock::now() + limits_.read_timeout;
    head_bytes_ = head_lines_ = 0;
    tail_ = 0;
  }
  bool head_refused() const { return refused_; }

  // The refusal, written by the connection's thread after cpp-httplib has given up (its own 400 was swallowed).
  // The client may still be sending: the rest is read and dropped for up to a second (bounded by time, not bytes),
  // so that closing the socket does not reset the connection before the client has read the answer.
  void refuse_head() {
    const std::string body = ApiError{431, "the request's head is larger than " + std::to_string(limits_.max_bytes) +
                                               " bytes or has more than " + std::to_string(limits_.max_fields) +
                                               " header fields", "invalid_request_error", "", "request_header_fields_too_large"}
                                 .to_json();
    const std::string reply = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    refused_ = false;
    if (!write_all(reply)) return;
    ::shutdown(fd_, SHUT_WR);
    const auto deadline = Clock::now() + 1s;
    char sink[16384];
    while (Clock::now() < deadline && wait_socket(fd_, POLLIN, 100ms, {}))
      if (::recv(fd_, sink, sizeof sink, 0) <= 0) break;
  }

  // A request's head must arrive whole within the read timeout from its first byte (a client that sends a byte now
  // and then cannot hold a connection for longer); the body and what follows within the timeout of each read.
  bool is_readable() const override {
    if (start_ < end_) return true;
    const auto timeout = in_head_ ? std::chrono::duration_cast<std::chrono::milliseconds>(head_deadline_ - Clock::now())
                                  : limits_.read_timeout;
    return wait_socket(fd_, POLLIN, timeout, {});
  }
  bool is_writable() const override { return !refused_ && wait_socket(fd_, POLLOUT, limits_.write_timeout, {}); }

  ssize_t read(char* ptr, size_t size) override {
    if (refused_) return -1;
    if (start_ == end_) {
      if (!is_readable()) return -1;
      const ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, 0);
      if (n <= 0) return n;
      start_ = 0;
      end_ = size_t(n);
    }
    size_t n = std::min(size, end_ - start_);
    if (in_head_) n = count_head(buffer_ + start_, n);
    if (refused_) return -1;
    std::copy_n(buffer_ + start_, n, ptr);
    start_ += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (refused_) return ssize_t(size);  // cpp-httplib's answer to a refused head: ours goes instead
    if (!wait_socket(fd_, POLLOUT, limits_.write_timeout, {})) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { socket_end(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { socket_end(false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  // Counts head bytes and lines in data[0, n); returns how many of them belong to the head (the rest is the body,
  // left for the next read). Sets refused_ past the limits.
  size_t count_head(const char* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (++head_bytes_ > limits_.max_bytes) {
        refuse();
        return i;
      }
      tail_ = (tail_ << 8) | static_cast<unsigned char>(data[i]);
      if (data[i] != '\n') continue;
      if ((tail_ & 0xffffffffu) == 0x0d0a0d0au) {  // "\r\n\r\n": the head ends here
        in_head_ = false;
        return i + 1;
      }
      if (++head_lines_ > limits_.max_fields + 1) {  // + the request line
        refuse();
        return i;
      }
    }
    return n;
  }

  void refuse() {
    refused_ = true;
    if (record_) record_->status_override = 431;
  }

  bool write_all(const std::string& bytes) {
    for (size_t at = 0; at < bytes.size();) {
      const ssize_t n = write(bytes.data() + at, bytes.size() - at);
      if (n <= 0) return false;
      at += size_t(n);
    }
    return true;
  }

  void socket_end(bool peer, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t length = sizeof a;
    if ((peer ? ::getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &length)
              : ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &length)) != 0)
      return;
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto& v4 = reinterpret_cast<const sockaddr_in&>(a);
      ::inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
      port = ntohs(v4.sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto& v6 = reinterpret_cast<const sockaddr_in6&>(a);
      ::inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
      port = ntohs(v6.sin6_port);
    }
    ip = text;
  }

  int fd_;
  HeadLimits limits_;
  std::function<bool()> closing_;
  char buffer_[4096];
  size_t start_ = 0, end_ = 0;
  bool in_head_ = true, refused_ = false;
  size_t head_bytes_ = 0, head_lines_ = 0;
  uint64_t tail_ = 0;  // the last bytes read of the head, newest lowest
  Clock::time_point head_deadline_;
  RequestRecord* record_ = nullptr;
};

// cpp-httplib's server with its connection loop replaced (the hook SSLServer uses): requests are read through a
// BoundedSocketStream, each has a RequestRecord, idle kept-alive connections end as soon as the server stops
// listening, and a handler can ask for the connection to end after its response.
class HttpFront final : public httplib::Server {
 public:
  explicit HttpFront(HeadLimits limits) : limits_(limits) {}
  bool listening_stopped() const { return svr_sock_ == INVALID_SOCKET; }
  // cpp-httplib listens with a backlog of 5 (compiled into Debian's library). When the accepting thread is slow to
  // run (lavapipe's threads busy on every core), a burst of connections overflows it and the kernel drops their
  // handshakes: those clients wait for retransmits of 1, 2, 4, ... s, and a request sent first may arrive last.
  // listen() again on the bound socket sets the kernel's queue to the system's bound (net.core.somaxconn).
  bool widen_backlog() { return svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, SOMAXCONN) == 0; }

 private:
  bool process_and_close_socket(socket_t sock) override {
    BoundedSocketStream stream(sock, limits_, [this] { return listening_stopped(); });
    for (size_t left = keep_alive_max_count_; left > 0; --left) {
      if (!stream.wait_for_request(std::chrono::seconds(keep_alive_timeout_sec_))) break;
      RequestRecord record;
      record.socket = sock;
      record.arrival = Clock::now();
      stream.begin_request(&record);
      const bool close = left == 1 || listening_stopped();
      bool closed = false;
      current_request = &record;
      const bool ok = process_request(stream, close, closed, nullptr);
      current_request = nullptr;
      if (stream.head_refused()) {
        stream.refuse_head();
        break;
      }
      if (!ok || closed || close || record.close_connection) break;
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return true;
  }

  HeadLimits limits_;
};

}  // namespace

struct Server::Impl {
  // The model and its engine, once loaded.
  struct Loaded {
    Model& model;
    ModelWorker worker;
  };

  ServerOptions options;
  HttpFront http;
  Metrics metrics;
  std::unique_ptr<Loaded> loaded_storage;
  std::atomic<Loaded*> loaded{nullptr};
  std::mutex attach_mutex;
  std::mutex log_mutex;
  const std::string id_prefix = random_hex();
  std::atomic<uint64_t> next_id{0};
  std::atomic<bool> serving{false}, stop_requested{false}, draining{false};

  explicit Impl(ServerOptions o)
      : options(std::move(o)),
        http(HeadLimits{options.max_header_bytes, options.max_header_fields, std::chrono::seconds(options.io_timeout_s),
                        std::chrono::seconds(options.io_timeout_s)}) {}

  static EngineOptions engine_options(const Model& m, const ServerOptions& o) {
    return {.parallel = o.parallel, .ctx = context_limit(m, o), .kv_budget_bytes = o.kv_budget_bytes,
            .kv_budget_share = o.kv_budget_share,
            .batch_tokens = o.batch_tokens, .kv_dtype = o.session.kv_dtype};
  }
  static uint32_t context_limit(const Model& m, const ServerOptions& o) {
    return o.session.ctx ? o.session.ctx : std::min<uint32_t>(m.info().max_position_embeddings, 4096);
  }

  void attach(Model& model) {
    std::lock_guard lock(attach_mutex);
    if (loaded_storage) throw Error("the server already has a model");
    if (!model.has_tokenizer())
      throw Error((model.info().path / "tokenizer.json").string() + ": the server needs the model's tokenizer");
    if (options.model_name.empty()) {
      const auto& path = model.info().path;
      options.model_name = (path.has_filename() ? path.filename() : path.parent_path().filename()).string();
    }
    loaded_storage.reset(new Loaded{model, ModelWorker(model, engine_options(model, options), options.max_queued)});
    loaded.store(loaded_storage.get(), std::memory_order_release);
  }

  // Why the server is not ready, or nothing when it is.
  std::optional<ApiError> not_ready() const {
    if (draining || stop_requested) return ApiError{503, "the server is shutting down", "server_error", "", "draining"};
    const Loaded* l = loaded.load(std::memory_order_acquire);
    if (!l) return ApiError{503, "the model is loading", "server_error", "", "model_loading"};
    const double step = l->worker.engine().step_seconds();
    if (step > options.stuck_after_s) {
      char message[160];
      std::snprintf(message, sizeof message, "the engine is stuck: its current step has run for %.1f s (the bound is %g s)",
                    step, options.stuck_after_s);
      return ApiError{503, message, "server_error", "", "engine_stuck"};
    }
    return std::nullopt;
  }

  EngineGauges gauges() const {
    EngineGauges g;
    if (const Loaded* l = loaded.load(std::memory_order_acquire)) {
      const Engine& e = l->worker.engine();
      g.running = e.running();
      g.waiting = e.waiting();
      g.kv_usage = e.kv_blocks() ? double(e.kv_blocks_in_use()) / double(e.kv_blocks()) : 0.0;
    }
    return g;
  }

  // The prompt's ids and the generation options of a checked request; ApiError for what the model cannot do.
  GenerationRequest prepare(Model& model, const CompletionRequest& r, const StructuredRequest& structured) const {
    GenerationRequest g;
    const char* prompt_param = r.chat ? "messages" : "prompt";
    if (r.chat) {
      if (!model.has_chat_template() && !options.chat_template)
        throw ApiError::invalid("messages", (model.info().path / "tokenizer_config.json").string() +
                                                ": the model has no chat template, so chat messages cannot be formatted "
                                                "(use /v1/completions with a prompt, or serve with --template FILE)");
      std::string text;
      try {
        text = structured.messages_json.empty()
                   ? model.render_chat(r.messages, true, options.chat_template)
                   : model.render_chat_json(structured.messages_json, true,
                                            structured.tools.active() ? structured.tools.tools_json : "",
                                            options.chat_template);
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

    const uint32_t limit = context_limit(model, options);
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
    apply_choice_fields(r, g);
    g.options.json_schema = structured.json_schema;
    return g;
  }

  // The outcome's numbers into the request's record (for the log) and the metrics, as soon as the generation has
  // ended and before the response's last bytes go out (a client that scrapes right after its answer sees it
  // counted). The engine times from the submission; the record from the request's arrival (tokenizing and
  // template rendering come between).
  void record_outcome(RequestRecord* record, const GenerationOutcome& outcome, Clock::time_point submitted) {
    if (!record || record->generation) return;
    record->generation = true;
    record->result.prompt_tokens = outcome.prompt_tokens;
    record->result.completion_tokens = outcome.completion_tokens;
    record->result.cached_tokens = outcome.cached_tokens;
    record->result.token_gaps = outcome.token_gaps;
    if (outcome.completion_tokens > 0)
      record->result.first_token_seconds =
          std::chrono::duration<double>(submitted - record->arrival).count() + outcome.first_token_seconds;
    record->result.seconds = seconds_since(record->arrival);
    metrics.generation_ended(record->result);
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat) {
    RequestRecord* record = current_request;
    Loaded* l = loaded.load(std::memory_order_acquire);
    if (draining || stop_requested) {
      if (record) record->close_connection = true;
      return send_error(res, *not_ready());
    }
    if (!l) return send_error(res, *not_ready());
    CompletionRequest request;
    GenerationRequest generation_request;
    StructuredRequest structured;
    try {
      request = parse_completion_request(req.body, chat);
      structured = read_structured(req.body, request);
      generation_request = prepare(l->model, request, structured);
    } catch (const ApiError& e) {
      return send_error(res, e);
    } catch (const std::exception& e) {
      return send_error(res, ApiError::invalid("", e.what()));
    }
    auto generation = std::make_shared<Generation>(std::move(generation_request));
    const auto submitted = Clock::now();
    if (!l->worker.submit(generation))
      return send_error(res, {503, "the server is busy: " + std::to_string(options.max_queued) +
                                       " requests are already waiting; try again later", "server_error", "", "server_busy"});
    const std::string serial = record ? record->id : id_prefix + std::to_string(next_id++);
    const ResponseHead head{(chat ? "chatcmpl-" : "cmpl-") + serial, options.model_name, int64_t(std::time(nullptr)), chat};
    if (!request.stream) return answer_whole(generation, head, record ? record->socket : -1, res, record, submitted, structured.tools);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, generation, head, include_usage = request.include_usage, record, submitted,
         tool_names = structured.tools.active() ? std::optional(structured.tools.names) : std::nullopt](
            size_t, httplib::DataSink& sink) {
          return stream_events(*generation, head, include_usage, sink, record, submitted, tool_names);
        },
        [generation](bool success) {
          if (!success) generation->cancel();  // the connection broke before the stream ended
        });
  }

  // Waits for the whole text; a client that closes the connection meanwhile cancels the generation, which then
  // ends at its next token (the answer goes nowhere).
  void answer_whole(const std::shared_ptr<Generation>& generation, const ResponseHead& head, int socket,
                    httplib::Response& res, RequestRecord* record, Clock::time_point submitted, const ToolRequest& tools) {
    for (;;) {
      auto update = generation->next(100ms);
      if (update.done) break;
      if (!generation->cancelled() && client_gone(socket)) generation->cancel();
    }
    const GenerationOutcome& outcome = generation->outcome();
    record_outcome(record, outcome, submitted);
    if (const auto error = outcome_error(outcome)) return send_error(res, *error);
    std::vector<Choice> choices = generation->choices();
    if (tools.active()) parse_tool_call_choices(choices, tools.names);
    res.set_content(completion_json(head, choices, {outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens}),
                    "application/json");
  }

  // Writes the whole event stream of a generation. A write that fails means the client went away: the
  // generation is cancelled at its next token. With tools, each choice's text that may be a call is held until it
  // is known (a ToolCallStream per choice) and a call goes out as delta.tool_calls with finish_reason "tool_calls".
  bool stream_events(Generation& generation, const ResponseHead& head, bool include_usage, httplib::DataSink& sink,
                     RequestRecord* record, Clock::time_point submitted,
                     const std::optional<std::vector<std::string>>& tool_names) {
    const auto send = [&](const std::string& event) {
      const std::string data = "data: " + event + "\n\n";
      if (sink.write(data.data(), data.size())) return true;
      generation.cancel();
      return false;
    };
    // However the stream ends, the record gets what the generation did (it ends soon after a cancel).
    struct RecordAtEnd {
      Impl& impl;
      Generation& generation;
      RequestRecord* record;
      Clock::time_point submitted;
      ~RecordAtEnd() {
        while (!generation.next(1s).done) {
        }
        impl.record_outcome(record, generation.outcome(), submitted);
      }
    } record_at_end{*this, generation, record, submitted};
    std::vector<bool> first(size_t(generation.n()), true);
    if (head.chat)  // the role comes first, as OpenAI sends it
      for (int i = 0; i < generation.n(); ++i) {
        if (!send(chunk_json(head, Choice{.index = i}, true))) return false;
        first[size_t(i)] = false;
      }
    std::vector<ToolCallStream> calls;  // one per choice, with tools
    if (tool_names) calls.assign(size_t(generation.n()), ToolCallStream(*tool_names));
    const auto send_delta = [&](const Choice& delta) {
      const bool sent = send(chunk_json(head, delta, first[size_t(delta.index)]));
      first[size_t(delta.index)] = false;
      return sent;
    };
    for (;;) {
      auto update = generation.next(1s);
      for (Choice& delta : update.deltas) {
        if (calls.empty()) {
          if (!send_delta(delta)) return false;
          continue;
        }
        const int index = delta.index;
        ToolCallStream::Out out = calls.at(size_t(index)).push(std::move(delta));
        for (const Choice& d : out.deltas)
          if (!send_delta(d)) return false;
        if (out.calls && (!send_delta(Choice{.index = index, .tool_calls = std::move(*out.calls)}) ||
                          !send_delta(Choice{.index = index, .finish_reason = "tool_calls"})))
          return false;
      }
      if (update.deltas.empty() && !update.done) {
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
    record_outcome(record, outcome, submitted);
    if (const auto error = outcome_error(outcome)) {
      if (!send(error->to_json())) return false;
    } else {
      if (include_usage && !send(usage_chunk_json(head, {outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens}))) return false;
    }
    static const std::string done = "data: [DONE]\n\n";
    if (!sink.write(done.data(), done.size())) return false;
    sink.done();
    return true;
  }

  // CORS: the allowed origin, or "" when the request's Origin is not one of --cors-origin.
  std::string allowed_origin(const httplib::Request& req) const {
    if (options.cors_origins.empty() || !req.has_header("Origin")) return "";
    const std::string origin = req.get_header_value("Origin");
    for (const auto& allowed : options.cors_origins) {
      if (allowed == "*") return "*";
      if (allowed == origin) return origin;
    }
    return "";
  }

  // Before routing (and before a body is read): the request's id, CORS headers, OPTIONS preflights and the API key.
  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    RequestRecord* record = current_request;
    char serial[24];
    std::snprintf(serial, sizeof serial, "%08llx", static_cast<unsigned long long>(next_id++));
    const std::string id = id_prefix + serial;
    if (record) {
      record->id = id;
      record->route = req.method + " " + req.path;
    }
    res.set_header("X-Request-Id", id);
    if (draining || stop_requested) {  // a request begun before the drain is answered, and its connection ends
      if (record) record->close_connection = true;
      res.set_header("Connection", "close");
    }
    const std::string origin = allowed_origin(req);
    if (!origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", origin);
      if (origin != "*") res.set_header("Vary", "Origin");
      res.set_header("Access-Control-Expose-Headers", "X-Request-Id");
    }
    if (req.method == "OPTIONS") {  // a preflight: browsers send it without credentials
      if (!origin.empty()) {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", req.has_header("Access-Control-Request-Headers")
                                                           ? req.get_header_value("Access-Control-Request-Headers")
                                                           : std::string("Authorization, Content-Type"));
        res.set_header("Access-Control-Max-Age", "600");
      }
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    // Every route but /health (liveness must answer a probe that carries no secret; readiness and metrics probes
    // send the key as a header).
    if (!options.api_key.empty() && req.path != "/health") {
      const std::string given = req.get_header_value("Authorization");
      const std::string_view prefix = "Bearer ";
      if (given.size() < prefix.size() || given.compare(0, prefix.size(), prefix) != 0 ||
          !same_secret(std::string_view(given).substr(prefix.size()), options.api_key)) {
        // Answered before the body is read: the connection ends after this response, so the unread body is
        // never taken for a next request.
        if (record) record->close_connection = true;
        res.set_header("Connection", "close");
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, {401, given.empty() ? "no API key: send it as 'Authorization: Bearer KEY'"
                                            : "the API key is not the server's (--api-key)",
                         "invalid_request_error", "", "invalid_api_key"});
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  int status_of(const httplib::Response& res) const {
    RequestRecord* record = current_request;
    return record && record->status_override ? record->status_override : res.status;
  }

  // After each response is written: the log line, with the latency to the response's last byte.
  void request_done(const httplib::Request& req, const httplib::Response& res) {
    RequestRecord* record = current_request;
    if (!options.log || !record) return;
    const int status = status_of(res);
    const double latency_s = seconds_since(record->arrival);
    // ISO-8601 UTC with milliseconds.
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm utc{};
    ::gmtime_r(&t, &utc);
    char when[40];
    const size_t n = std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(when + n, sizeof when - n, ".%03dZ",
                  int(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000));
    char line[512];
    const auto& r = record->result;
    const std::string route = record->route.empty() ? req.method + " " + req.path : record->route;
    if (record->generation)
      std::snprintf(line, sizeof line, "%s %s %.200s %d prompt_tokens=%d completion_tokens=%d cached_tokens=%d ttft_ms=%.1f latency_ms=%.1f\n",
                    when, record->id.c_str(), route.c_str(), status, r.prompt_tokens, r.completion_tokens,
                    r.cached_tokens, r.first_token_seconds >= 0 ? r.first_token_seconds * 1e3 : -1.0, latency_s * 1e3);
    else
      std::snprintf(line, sizeof line, "%s %s %.200s %d latency_ms=%.1f\n", when,
                    record->id.empty() ? "-" : record->id.c_str(), route.c_str(), status, latency_s * 1e3);
    std::lock_guard lock(log_mutex);
    std::fputs(line, stderr);
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) const {
    const Loaded* l = loaded.load(std::memory_order_acquire);
    if (!l) return send_error(res, *not_ready());
    const Model& model = l->model;
    try {
      const TokenizeRequest r = parse_tokenize_request(req.body);
      res.set_content(tokenize_json(model.tokenize(r.content, r.add_special)), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::exception& e) {
      send_error(res, ApiError::invalid("content", e.what()));
    }
  }
  void detokenize(const httplib::Request& req, httplib::Response& res) const {
    const Loaded* l = loaded.load(std::memory_order_acquire);
    if (!l) return send_error(res, *not_ready());
    const Model& model = l->model;
    try {
      const auto ids = parse_detokenize_request(req.body, model.info().vocab_size);
      res.set_content(detokenize_json(model.detokenize(ids, false)), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::exception& e) {
      send_error(res, ApiError::invalid("tokens", e.what()));
    }
  }

  void routes() {
    // Every connection has a thread of its own for as long as it is open, so that connections waiting on the
    // model, idle or slow never hold up the others (cpp-httplib's default is 8 threads for everything); more
    // than max_connections wait to be accepted. Every read and write gives up after io_timeout_s without
    // progress; a request's head is bounded in bytes and lines (BoundedSocketStream).
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
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) { return pre_route(req, res); });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      if (!loaded.load(std::memory_order_acquire)) return send_error(res, *not_ready());
      res.set_content(models_json(options.model_name, int64_t(std::time(nullptr))), "application/json");
    });
    http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res); });
    http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) { detokenize(req, res); });
    // Liveness: the process answers. Nothing here may wait on the model.
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"status\":\"ok\"}", "application/json");
    });
    // Readiness: worth sending requests to.
    http.Get("/ready", [this](const httplib::Request&, httplib::Response& res) {
      if (const auto why = not_ready()) return send_error(res, *why);
      res.set_content("{\"status\":\"ready\"}", "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(gauges()), Metrics::kContentType);
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
    // Counted just before the response is written (cpp-httplib calls this with the final status, error pages
    // included), so that a scrape right after an answer sees it.
    http.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) { metrics.request_ended(status_of(res)); });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) { request_done(req, res); });
  }

  void cancel_all() {
    if (Loaded* l = loaded.load(std::memory_order_acquire)) l->worker.cancel_all();
  }

  // Closes the listening socket until serve() has returned or `deadline` passes (cpp-httplib's stop() only acts
  // once its loop runs, so it is repeated).
  void stop_listening_until(Clock::time_point deadline) {
    while (serving && Clock::now() < deadline) {
      http.stop();
      std::this_thread::sleep_for(5ms);
    }
  }
};

Server::Server(ServerOptions options) {
  // A client that disconnects must fail a write, not kill the process (cpp-httplib does the same on Linux).
  std::signal(SIGPIPE, SIG_IGN);
  impl_ = std::make_unique<Impl>(std::move(options));
  impl_->routes();
}

Server::Server(Model& model, ServerOptions options) : Server(std::move(options)) { attach(model); }

Server::~Server() { stop(); }

void Server::attach(Model& model) { impl_->attach(model); }

int Server::bind() {
  const auto& o = impl_->options;
  const int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host) : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port <= 0)
    throw Error("cannot listen on " + o.host + ":" + std::to_string(o.port) + " (address in use, or not an address of this machine)");
  if (!impl_->http.widen_backlog())
    throw Error("cannot listen on " + o.host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  return port;
}

void Server::serve() {
  impl_->serving = true;
  if (!impl_->stop_requested && !impl_->draining) impl_->http.listen_after_bind();
  impl_->serving = false;
}

void Server::stop() {
  impl_->stop_requested = true;
  impl_->cancel_all();
  impl_->stop_listening_until(Clock::now() + 10s);  // bounded: cancelled generations end at their next token
}

void Server::drain(std::chrono::milliseconds timeout) {
  impl_->draining = true;
  // Connections in flight keep their threads; idle ones end at once, new ones are refused by the closed socket.
  impl_->stop_listening_until(Clock::now() + timeout);
  stop();
}

bool Server::running() const { return impl_->http.is_running(); }
bool Server::ready() const { return !impl_->not_ready().has_value(); }
std::string Server::model_name() const {
  std::lock_guard lock(impl_->attach_mutex);
  return impl_->options.model_name;
}
uint64_t Server::cancelled_generations() const {
  const auto* l = impl_->loaded.load(std::memory_order_acquire);
  return l ? l->worker.cancelled_count() : 0;
}

}  // namespace inferno::server
