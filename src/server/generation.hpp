#pragma once
// Generations of the server: each request becomes a Generation, submitted to the model's batching engine, which
// runs up to --parallel of them together over one paged KV cache and queues the rest in arrival order (a greedy
// answer is what the request would get alone). The HTTP thread that made the request waits on the Generation for
// its text as it comes, and cancels it when the client goes away.
#include <atomic>
#include <functional>
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
  int cached_tokens = 0;  // prompt tokens whose K/V came from the prefix cache
  double first_token_seconds = 0, seconds = 0;  // from the submission to the engine (EngineResult's)
  std::optional<std::string> error;  // the engine failed: its message
};

class Generation {
 public:
  explicit Generation(GenerationRequest request) : request_(std::move(request)) {}

  // Worker side: submits the generation to the engine; its text is posted as it becomes final. `self` is this
  // generation, kept alive by the engine until it ends. Never throws.
  static void start(Engine& engine, Model& model, std::shared_ptr<Generation> self,
                    std::atomic<uint64_t>& cancelled_count) noexcept;
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
  void cancel();
  bool cancelled() const { return cancelled_; }
  // Valid once next() has said done.
  const GenerationOutcome& outcome() const { return outcome_; }

 private:
  void post(const std::string& text);
  void finish(GenerationOutcome outcome);

  GenerationRequest request_;
  std::atomic<bool> cancelled_{false};
  std::function<void()> engine_cancel_;  // set while the engine holds the generation
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  bool finished_ = false;
  GenerationOutcome outcome_;
};

// The model's batching engine and the generations it holds.
class ModelWorker {
 public:
  ModelWorker(Model& model, EngineOptions engine_options, size_t max_queued);
  ~ModelWorker();  // cancels what runs, abandons what waits, joins
  ModelWorker(const ModelWorker&) = delete;
  ModelWorker& operator=(const ModelWorker&) = delete;

  // Submits a generation; false when max_queued are already waiting for a place in the batch.
  bool submit(std::shared_ptr<Generation> generation);
  // Cancels every generation, running or queued (the server is stopping).
  void cancel_all();
  uint64_t cancelled_count() const { return cancelled_count_; }  // generations cut short by cancel()
  const Engine& engine() const { return engine_; }  // its gauges, for /metrics and /ready

 private:
  Model& model_;
  size_t max_queued_;
  std::mutex mutex_;
  std::vector<std::weak_ptr<Generation>> active_;
  bool stopping_ = false;
  std::atomic<uint64_t> cancelled_count_{0};
  Engine engine_;  // last: destroyed (its thread joined) before what its callbacks touch
};

}  // namespace inferno::server
