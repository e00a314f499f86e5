#pragma once
// Generations of the server: each request becomes a Generation, queued on the model's one worker thread, which
// runs them one at a time in arrival order, each on a fresh Session (never two on one KV cache, and each answer
// is what the request would get alone). The HTTP thread that made the request waits on the Generation for its
// text as it comes, and cancels it when the client goes away.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "inferno/inferno.hpp"

namespace inferno::server {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  std::vector<std::string> stop;
};

struct GenerationOutcome {
  std::string finish_reason;  // "stop" (eos or a stop string), "length", or "cancelled"
  int prompt_tokens = 0, completion_tokens = 0;
  std::optional<std::string> error;  // the engine failed: its message
};

class Generation {
 public:
  explicit Generation(GenerationRequest request) : request_(std::move(request)) {}

  // Worker side: runs the generation on a fresh session, posting text as it becomes final. Never throws.
  void run(Model& model, const SessionOptions& session_options) noexcept;
  // Ends a generation that will never run (the server is stopping).
  void abandon(const std::string& why);

  // HTTP side: waits up to `timeout` for text or the end. Returns the text posted since the last call; `done` once
  // the generation has ended and all its text was taken.
  struct Update {
    std::string text;
    bool done = false;
  };
  Update next(std::chrono::milliseconds timeout);
  // Stops the generation at its next token (or before it starts).
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  // Valid once next() has said done.
  const GenerationOutcome& outcome() const { return outcome_; }

 private:
  void post(const std::string& text);
  void finish(GenerationOutcome outcome);

  GenerationRequest request_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  bool finished_ = false;
  GenerationOutcome outcome_;
};

// One thread per model that runs queued generations in order.
class ModelWorker {
 public:
  ModelWorker(Model& model, SessionOptions session_options, size_t max_queued);
  ~ModelWorker();  // cancels what runs, abandons what waits, joins
  ModelWorker(const ModelWorker&) = delete;
  ModelWorker& operator=(const ModelWorker&) = delete;

  // Queues a generation; false when max_queued are already waiting.
  bool submit(std::shared_ptr<Generation> generation);
  // Cancels the running generation and abandons the queued ones (the server is stopping).
  void cancel_all();
  uint64_t cancelled_count() const { return cancelled_count_; }  // generations cut short by cancel()

 private:
  void loop();

  Model& model_;
  SessionOptions session_options_;
  size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Generation>> queue_;
  std::shared_ptr<Generation> running_;
  bool stopping_ = false;
  std::atomic<uint64_t> cancelled_count_{0};
  std::thread thread_;
};

}  // namespace inferno::server
