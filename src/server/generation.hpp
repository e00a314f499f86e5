#pragma once
// Generations of the server: each request becomes a Generation, submitted to the model's batching engine, which
// runs up to --parallel of them together over one paged KV cache and queues the rest in arrival order (a greedy
// answer is what the request would get alone). A request for n choices submits n sequences. The HTTP thread that
// made the request waits on the Generation for its text as it comes, and cancels it when the client goes away.
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
#include "server/openai.hpp"

namespace inferno::server {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  std::vector<std::string> stop;
  int n = 1;                      // choices, each its own sequence; choice i samples with seed + i
  int logprobs = -1;              // -1: none; k: each token's log-probability and the k most likely
  bool continue_prompt = false;   // the text continues the prompt's (completions): its first space is kept
};

struct GenerationOutcome {
  std::string finish_reason;  // "stop" (eos or a stop string), "length", or "cancelled"; of the first choice
  int prompt_tokens = 0, completion_tokens = 0;  // the prompt once, the tokens of every choice
  int cached_tokens = 0;  // prompt tokens whose K/V came from the prefix cache (the first choice's)
  double first_token_seconds = 0, seconds = 0;  // from the submission to the engine (EngineResult's; the first choice's)
  std::vector<double> token_gaps;  // seconds between consecutive tokens of each choice, every choice's
  std::optional<std::string> error;  // the engine failed: its message
};

// The GenerationRequest of a checked OpenAI request whose prompt and base options are set: n, logprobs, penalties,
// and choice-dependent seeds.
void apply_choice_fields(const CompletionRequest& request, GenerationRequest& generation);

class Generation {
 public:
  explicit Generation(GenerationRequest request) : request_(std::move(request)) {}

  // Worker side: submits the generation to the engine; its text is posted as it becomes final. `self` is this
  // generation, kept alive by the engine until it ends. Never throws.
  // `in_engine` counts this generation's n choices already (ModelWorker reserved them); each ends with a decrement,
  // and a choice never submitted is taken off at once.
  static void start(Engine& engine, Model& model, std::shared_ptr<Generation> self,
                    std::atomic<uint64_t>& cancelled_count, std::atomic<int64_t>& in_engine) noexcept;
  // Ends a generation that will never run (the server is stopping).
  void abandon(const std::string& why);

  // HTTP side: waits up to `timeout` for text or the end. Returns what each choice added since the last call (text,
  // logprobs, its finish_reason when it ended), in order; `done` once the generation has ended and all was taken.
  struct Update {
    std::vector<Choice> deltas;
    bool done = false;
  };
  Update next(std::chrono::milliseconds timeout);
  // Every choice whole; valid once next() has said done.
  const std::vector<Choice>& choices() const { return choices_; }
  int n() const { return request_.n; }
  // Stops the generation at its next token (or before it starts).
  void cancel();
  bool cancelled() const { return cancelled_; }
  // Valid once next() has said done.
  const GenerationOutcome& outcome() const { return outcome_; }

 private:
  struct ChoiceState;
  void post(Choice delta);
  void finish(GenerationOutcome outcome);
  void choice_finished(int index, const EngineResult& result, const std::string& finish_reason,
                       const std::optional<std::string>& error, const std::vector<double>& token_gaps);

  GenerationRequest request_;
  std::atomic<bool> cancelled_{false};
  std::function<void()> engine_cancel_;  // set while the engine holds the generation
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Choice> pending_;   // deltas not yet taken by next()
  std::vector<Choice> choices_;   // each choice whole
  int choices_left_ = 0;          // choices the engine has not finished
  GenerationOutcome running_outcome_;  // summed as choices finish
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

  // Submits a generation; false when the engine holds parallel + max_queued sequences already (all but parallel of
  // them waiting for a place in the batch). Counted here as they are submitted and end, not from the engine's
  // gauges, which count a request as waiting until the engine's thread has taken it into the batch.
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
  std::atomic<int64_t> in_engine_{0};  // sequences submitted (or about to be) and not ended
  Engine engine_;  // last: destroyed (its thread joined) before what its callbacks touch
};

}  // namespace inferno::server
