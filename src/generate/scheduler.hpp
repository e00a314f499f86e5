#pragma once
// Continuous batching: many requests share one model and one paged KV cache. Each step decodes one token for every
// running sequence and prefills waiting ones within a token budget, so a long prompt is prefilled in chunks, each
// chunk its own submission, while the others keep decoding. Sequences join and leave between steps, and a finished
// or cancelled one returns its blocks at once. With the prefix cache, a prompt that begins with blocks computed
// before (a system prompt, earlier turns of a chat) takes them instead of prefilling them again.
//
// Admission reserves every block a request can need (prompt + max_new_tokens, within the context) before it starts,
// so a running sequence never waits for memory and nothing is ever preempted; requests that do not fit yet wait in
// arrival order.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "generate/session.hpp"
#include "model/paged_forward.hpp"

namespace inferno::gen {

enum class FinishReason { Eos, Length, Stopped, Cancelled, Error };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "stop", "cancelled", "error"

struct RequestResult {
  uint64_t id = 0;              // what submit returned
  std::vector<int32_t> tokens;  // generated
  FinishReason reason = FinishReason::Length;
  std::string error;            // FinishReason::Error: why
  int prompt_tokens = 0;
  int cached_tokens = 0;        // prompt tokens whose K/V came from the prefix cache
  double first_token_seconds = 0;  // from submission to the first token
  double seconds = 0;              // from submission to the end
  std::vector<TokenLogprobs> logprobs;  // one per generated token, when BatchRequest::logprobs >= 0
};

struct BatchRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  TokenCallback on_token;  // each new token, from the stepping thread; returning false stops the request
  std::function<void(const RequestResult&)> on_finish;  // once, from the stepping thread (or cancel's caller)
  // -1: no log-probabilities; k >= 0: each token's and the k most likely at its position (token_logprobs), kept in
  // the result and given to on_token_logprobs, which is then called instead of on_token when set.
  int logprobs = -1;
  std::function<bool(int32_t token, const TokenLogprobs&)> on_token_logprobs;
};

struct SchedulerOptions {
  uint32_t max_sequences = 8;   // --parallel: sequences in one step
  uint32_t batch_tokens = 512;  // --batch-tokens: rows of one step (decode rows + prefill chunks)
  uint32_t max_context = 2048;  // --ctx: the longest a sequence may grow
  bool prefix_cache = true;
};

struct SchedulerStats {
  uint64_t steps = 0, decode_rows = 0, prefill_rows = 0, cached_prompt_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const model::LlamaModel& model, model::PagedKvCache& cache, SchedulerOptions options);
  // A model split over devices: its stages in order (see model::PagedPipeline), `cache` holding every stage's layers.
  Scheduler(const std::vector<const model::LlamaModel*>& stages, model::PagedKvCache& cache, SchedulerOptions options);
  ~Scheduler();

  // Queues a request; thread-safe. Returns its id (for cancel).
  uint64_t submit(BatchRequest request);
  // Stops a request before its next token (or before it starts); its blocks go back to the pool. Thread-safe.
  void cancel(uint64_t id);
  // Runs one step from the calling thread (one thread at a time). false when there was nothing to do.
  bool step();
  // Steps until every queued request has finished.
  void run_until_idle();

  size_t running() const { return running_count_; }   // sequences in the batch after the last step
  size_t waiting() const { return waiting_count_; }   // requests queued behind them
  uint32_t kv_blocks_in_use() const { return kv_in_use_count_; }  // cache blocks held by sequences, as running()
  const SchedulerStats& stats() const { return stats_; }
  model::PagedKvCache& cache() { return cache_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Sequence;
  bool admit(Sequence& s);
  void finish(Sequence& s, FinishReason reason, std::string error = {});
  int32_t choose(Sequence& s, std::span<float> logits, TokenLogprobs* logprobs);
  void publish_full_blocks(Sequence& s);
  void publish_counts();

  const model::LlamaModel& model_;
  model::PagedKvCache& cache_;
  SchedulerOptions options_;
  model::PagedPipeline forward_;
  mutable std::mutex mutex_;
  std::deque<std::unique_ptr<Sequence>> incoming_;  // submitted, not yet seen by a step
  std::vector<uint64_t> cancelled_;
  uint64_t next_id_ = 1;
  std::atomic<size_t> running_count_{0}, waiting_count_{0};
  std::atomic<uint32_t> kv_in_use_count_{0};
  // Touched only by the stepping thread:
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  SchedulerStats stats_;
};

// A scheduler stepped by a thread of its own: requests from any thread, tokens through their callbacks.
class BatchEngine {
 public:
  // device_lock (optional): held around every step, for devices whose other users take it too.
  BatchEngine(const model::LlamaModel& model, model::PagedKvCache& cache, SchedulerOptions options,
              std::recursive_mutex* device_lock = nullptr);
  BatchEngine(const std::vector<const model::LlamaModel*>& stages, model::PagedKvCache& cache, SchedulerOptions options,
              std::recursive_mutex* device_lock = nullptr);
  ~BatchEngine();  // stops the thread; what is queued or running ends as cancelled
  BatchEngine(const BatchEngine&) = delete;
  BatchEngine& operator=(const BatchEngine&) = delete;

  uint64_t submit(BatchRequest request);
  void cancel(uint64_t id);
  Scheduler& scheduler() { return scheduler_; }
  // Seconds the step now running has taken so far (the wait for the device lock included); 0 between steps. A
  // step that never ends (a hung device, a callback that blocks) shows here as a number that keeps growing.
  double step_seconds() const;

 private:
  void loop();
  Scheduler scheduler_;
  std::recursive_mutex* device_lock_;
  std::mutex mutex_;
  std::condition_variable wake_;
  uint64_t pending_ = 0;  // submissions not yet seen by the loop
  bool stopping_ = false;
  std::atomic<int64_t> step_started_ns_{0};  // steady-clock time of the running step's start; 0: none runs
  std::thread thread_;
};

}  // namespace inferno::gen
