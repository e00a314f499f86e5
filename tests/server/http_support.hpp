#pragma once
// What the server suites share: servers on loopback ports the OS picks, an HTTP client with bounded waits, raw
// sockets for clients that misbehave, OpenAI's JSON shapes, and `inferno serve` as a child process.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "inferno/inferno.hpp"
#include "server/server.hpp"
#include "test_support.hpp"
#include "util/json_writer.hpp"

extern char** environ;

namespace inferno::testing {

using namespace std::chrono_literals;

inline std::filesystem::path brown_dir() { return root_dir() / "models/brown-8m-bf16"; }

// ---- servers ----

// A server answering on a free loopback port from a background thread; on `model`, or (nullptr) none yet.
struct ServerThread {
  server::Server server;
  int port = 0;
  std::thread thread;

  explicit ServerThread(server::ServerOptions options, Model* model)
      : server((options.host = "127.0.0.1", options.port = 0, options)) {
    if (model) server.attach(*model);
    port = server.bind();
    thread = std::thread([this] { server.serve(); });
    for (int i = 0; i < 500 && !server.running(); ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(server.running());
  }
  ~ServerThread() {
    server.stop();
    thread.join();
  }
};

// The model a Served loads, a base so that it is constructed before the server that uses it.
struct LoadedModel {
  Model model;
};

// A model loaded from `dir` and a server on it.
struct Served : LoadedModel, ServerThread {
  explicit Served(const std::filesystem::path& dir, server::ServerOptions options = {})
      : LoadedModel{Model::load(dir, {.quiet = true})}, ServerThread(std::move(options), &model) {}
};

// ---- HTTP ----

// Generations on lavapipe with two shared cores are slow; a longer wait is passed where a test needs it.
inline httplib::Client client(int port, std::chrono::seconds read_timeout = 120s) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5s);
  c.set_read_timeout(read_timeout);
  c.set_write_timeout(10s);
  return c;
}

struct Reply {
  int status = 0;
  std::string body;
  httplib::Headers headers;
};

inline Reply get(int port, const std::string& path, const httplib::Headers& headers = {}) {
  auto res = client(port).Get(path.c_str(), headers);
  REQUIRE_MESSAGE(res, "GET " << path << ": " << httplib::to_string(res.error()));
  return {res->status, res->body, res->headers};
}

inline Reply post(int port, const std::string& path, const std::string& body, const httplib::Headers& headers = {},
                  std::chrono::seconds read_timeout = 120s) {
  auto res = client(port, read_timeout).Post(path.c_str(), headers, body, "application/json");
  REQUIRE_MESSAGE(res, "POST " << path << ": " << httplib::to_string(res.error()));
  return {res->status, res->body, res->headers};
}

// The data lines of a server-sent event stream (comments skipped), in order.
struct Events {
  std::vector<std::string> data;
  bool ended_with_done = false;
};

inline Events parse_events(const std::string& stream) {
  Events events;
  size_t start = 0;
  for (;;) {
    const size_t end = stream.find("\n\n", start);
    if (end == std::string::npos) break;
    const std::string event = stream.substr(start, end - start);
    start = end + 2;
    if (event.rfind("data: ", 0) == 0) events.data.push_back(event.substr(6));
    else REQUIRE_MESSAGE(event.rfind(":", 0) == 0, "not an SSE data line or comment: " << event);
  }
  CHECK_MESSAGE(start == stream.size(), "a partial event at the end: " << stream.substr(start));
  if (!events.data.empty() && events.data.back() == "[DONE]") {
    events.ended_with_done = true;
    events.data.pop_back();
  }
  return events;
}

// ---- raw sockets: clients that misbehave, headers seen byte for byte ----

inline int connect_raw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

// Whether all of `bytes` went out (false once the server has closed the connection).
inline bool send_raw(int fd, const std::string& bytes) {
  size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += size_t(n);
  }
  return true;
}

// What the server sends until it closes the connection, or until `timeout`, or (when `until` is given) until
// that text has arrived.
inline std::string read_raw(int fd, std::chrono::milliseconds timeout, const std::string& until = "") {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string received;
  for (;;) {
    if (!until.empty() && received.find(until) != std::string::npos) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, int(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    received.append(buf, size_t(n));
  }
  return received;
}

inline std::string raw_get(const std::string& path, const std::string& headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
}

inline std::string raw_post(const std::string& path, const std::string& body, const std::string& headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// ---- JSON ----

inline simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element e;
  REQUIRE_MESSAGE(parser.parse(json).get(e) == simdjson::SUCCESS, "not JSON: " << json);
  return e;
}

inline std::string str(simdjson::dom::element e) { return std::string(std::string_view(e)); }

inline std::string quote(const std::string& s) { return json_quote(s); }

// A greedy /v1/completions body of max_tokens new tokens that decodes all of them (ignore_eos); `extra` adds fields.
inline std::string completion_body(const std::string& prompt, int max_tokens, const std::string& extra = "") {
  return "{\"model\":\"brown\",\"prompt\":" + quote(prompt) + ",\"max_tokens\":" + std::to_string(max_tokens) +
         ",\"temperature\":0,\"ignore_eos\":true" + extra + "}";
}

// An error reply's param and code ("" when null).
struct OpenAIError {
  std::string param, code;
};

// Checks the status and OpenAI's error shape: a message, a type, param and code each a string or null.
inline OpenAIError openai_error(const Reply& r, int status) {
  CHECK_MESSAGE(r.status == status, r.body);
  simdjson::dom::parser parser;
  const auto e = parse(parser, r.body)["error"];
  CHECK(!str(e["message"]).empty());
  CHECK(!str(e["type"]).empty());
  CHECK((e["param"].is_null() || e["param"].is_string()));
  CHECK((e["code"].is_null() || e["code"].is_string()));
  return {e["param"].is_null() ? std::string() : str(e["param"]), e["code"].is_null() ? std::string() : str(e["code"])};
}

// ---- `inferno` as a child process ----

// `inferno ARGS...` (the binary meson names in INFERNO_BIN) with its stderr read here; killed if still running at
// the end.
struct Spawned {
  pid_t pid = -1;
  FILE* err = nullptr;
  std::string printed;  // its stderr so far

  explicit Spawned(std::vector<std::string> args, const std::vector<std::string>& env_add = {}) {
    const char* bin = std::getenv("INFERNO_BIN");
    REQUIRE_MESSAGE(bin, "INFERNO_BIN names the inferno binary (set by meson)");
    int err_pipe[2];
    REQUIRE(::pipe(err_pipe) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    posix_spawn_file_actions_addclose(&actions, err_pipe[0]);
    args.insert(args.begin(), bin);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = env_add;
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    REQUIRE(posix_spawn(&pid, bin, &actions, nullptr, argv.data(), envp.data()) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(err_pipe[1]);
    err = ::fdopen(err_pipe[0], "r");
  }
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  // Reads stderr until `text` appears or it ends.
  void read_until(const std::string& text) {
    char line[2048];
    while (printed.find(text) == std::string::npos && std::fgets(line, sizeof line, err)) printed += line;
  }
  // Reads stderr until `ready_line` and returns the number printed right after it (a port).
  int number_after(const std::string& ready_line) {
    read_until(ready_line);
    const size_t at = printed.find(ready_line);
    REQUIRE_MESSAGE(at != std::string::npos, "inferno printed: " << printed);
    return std::atoi(printed.c_str() + at + ready_line.size());
  }
  // Waits (bounded) for the process to end, then reads the rest of stderr; its exit status, -1 when it was killed
  // by a signal or had to be killed here.
  int wait(std::chrono::seconds bound) {
    int status = -1;
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline && ::waitpid(pid, &status, WNOHANG) == 0)
      std::this_thread::sleep_for(10ms);
    if (!WIFEXITED(status) && !WIFSIGNALED(status)) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      pid = -1;
      return -1;
    }
    pid = -1;
    read_until("\x01");  // the rest of stderr, to its end
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ~Spawned() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (err) std::fclose(err);
  }
};

// `inferno serve` on the demo model on a free loopback port, started with ARGS besides; constructed once it prints
// `ready_line` with the port after it.
struct ServeProcess : Spawned {
  int port = 0;

  ServeProcess(std::vector<std::string> args, const std::string& ready_line, const std::vector<std::string>& env_add = {})
      : Spawned(with_serve_flags(std::move(args)), env_add) {
    port = number_after(ready_line);
    REQUIRE(port > 0);
  }

 private:
  static std::vector<std::string> with_serve_flags(std::vector<std::string> args) {
    args.insert(args.begin(), {"serve", "--quiet", "-m", brown_dir().string(), "--host", "127.0.0.1", "--port", "0"});
    return args;
  }
};

}  // namespace inferno::testing
