#include "generate/scheduler.hpp"

#include <algorithm>
#include <chrono>

#include "generate/sampler.hpp"
#include "util/error.hpp"

namespace inferno::gen {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::Eos: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Stopped: return "stop";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "?";
}

struct Scheduler::Sequence {
  uint64_t id = 0;
  BatchRequest request;
  std::vector<int32_t> tokens;  // prompt, then what was generated
  size_t prompt_length = 0;
  uint32_t computed = 0;        // tokens whose K/V the cache holds
  std::vector<uint32_t> blocks;  // the block table; every block it can need, reserved at admission
  std::vector<uint64_t> chain;   // the prefix-cache hash of each full block computed so far (published or found)
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<GrammarMatcher> matcher;  // constrained decoding (options.grammar)
  RequestResult result;
  Clock::time_point submitted = Clock::now();
  bool done = false;
};

Scheduler::Scheduler(const model::LlamaModel& model, model::PagedKvCache& cache, SchedulerOptions options)
    : Scheduler(std::vector<const model::LlamaModel*>{&model}, cache, options) {}

Scheduler::Scheduler(const std::vector<const model::LlamaModel*>& stages, model::PagedKvCache& cache,
                     SchedulerOptions options)
    : model_(*stages.at(0)), cache_(cache), options_(options), forward_(stages, cache, options.max_context) {
  if (options_.max_sequences == 0) throw Error("the batch must hold at least one sequence (--parallel)");
  if (options_.batch_tokens < options_.max_sequences)
    throw Error("--batch-tokens " + std::to_string(options_.batch_tokens) + " is smaller than --parallel " +
                std::to_string(options_.max_sequences) + ": a step must hold one decode row of every sequence");
}

Scheduler::~Scheduler() {
  // Whatever is still queued or running ends as cancelled, and its blocks go back.
  for (auto& s : running_) finish(*s, FinishReason::Cancelled);
  for (auto& s : waiting_) finish(*s, FinishReason::Cancelled);
  for (auto& s : incoming_) finish(*s, FinishReason::Cancelled);
}

uint64_t Scheduler::submit(BatchRequest request) {
  auto s = std::make_unique<Sequence>();
  s->request = std::move(request);
  s->tokens = s->request.prompt;
  s->prompt_length = s->tokens.size();
  s->result.prompt_tokens = int(s->prompt_length);
  std::lock_guard lock(mutex_);
  s->id = next_id_++;
  s->result.id = s->id;
  const uint64_t id = s->id;
  incoming_.push_back(std::move(s));
  ++waiting_count_;
  return id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard lock(mutex_);
  cancelled_.push_back(id);
}

void Scheduler::publish_counts() {
  running_count_ = running_.size();
  kv_in_use_count_ = cache_.in_use();
  std::lock_guard lock(mutex_);
  waiting_count_ = waiting_.size() + incoming_.size();
}

void Scheduler::finish(Sequence& s, FinishReason reason, std::string error) {
  if (s.done) return;
  s.done = true;
  for (uint32_t b : s.blocks) cache_.release(b);
  s.blocks.clear();
  s.result.reason = reason;
  s.result.error = std::move(error);
  s.result.seconds = seconds_since(s.submitted);
  if (s.request.on_finish) s.request.on_finish(s.result);
}

// Takes the cached prefix and reserves the rest; false (holding nothing) when the pool cannot hold it yet.
bool Scheduler::admit(Sequence& s) {
  const uint32_t bs = cache_.block_size();
  const auto& o = s.request.options;
  const uint64_t longest = std::min<uint64_t>(s.prompt_length + uint64_t(std::max(o.max_new_tokens, 0)),
                                              options_.max_context);
  const uint32_t needed = uint32_t((longest + bs - 1) / bs);
  // Full blocks of the prompt already computed, but never the prompt's last token: its logits are needed.
  std::vector<uint32_t> found;
  std::vector<uint64_t> chain;
  if (options_.prefix_cache) {
    uint64_t parent = 0;
    for (size_t first = 0; first + bs <= s.prompt_length - 1; first += bs) {
      const std::span<const int32_t> tokens(s.tokens.data() + first, bs);
      const auto block = cache_.lookup(parent, tokens);
      if (!block) break;
      found.push_back(*block);
      parent = model::PagedKvCache::chain_hash(parent, tokens);
      chain.push_back(parent);
    }
  }
  if (cache_.available() < needed - found.size()) {
    for (uint32_t b : found) cache_.release(b);
    return false;
  }
  s.blocks = std::move(found);
  s.chain = std::move(chain);
  s.computed = uint32_t(s.blocks.size()) * bs;
  s.result.cached_tokens = int(s.computed);
  stats_.cached_prompt_tokens += s.computed;
  while (s.blocks.size() < needed) s.blocks.push_back(*cache_.allocate());
  return true;
}

void Scheduler::publish_full_blocks(Sequence& s) {
  const uint32_t bs = cache_.block_size();
  while ((s.chain.size() + 1) * bs <= s.computed) {
    const size_t i = s.chain.size();
    const std::span<const int32_t> tokens(s.tokens.data() + i * bs, bs);
    const uint64_t parent = i == 0 ? 0 : s.chain.back();
    if (options_.prefix_cache) cache_.publish(s.blocks[i], parent, tokens);
    s.chain.push_back(model::PagedKvCache::chain_hash(parent, tokens));
  }
}

int32_t Scheduler::choose(Sequence& s, std::span<float> logits, TokenLogprobs* logprobs) {
  const GenerateOptions& o = s.request.options;
  SamplingParams params = o.sampling;
  if (o.ignore_eos) params.eos_ids.clear();
  std::vector<float> raw;  // the processors edit the logits in place; log-probabilities are of the model's own
  if (logprobs) raw.assign(logits.begin(), logits.end());
  if (o.grammar) {
    if (!s.matcher) s.matcher = std::make_unique<GrammarMatcher>(o.grammar);
    s.matcher->apply_mask(logits, params.eos_ids);
  }
  apply_logits_processors(logits, s.tokens, int(s.prompt_length), params);
  int32_t token;
  if (!params.do_sample) {
    token = argmax(logits);
  } else {
    if (!s.sampler) s.sampler = std::make_unique<Sampler>(params.seed);
    token = s.sampler->sample(logits);
  }
  if (logprobs) *logprobs = token_logprobs(raw, token, s.request.logprobs);
  return token;
}

bool Scheduler::step() {
  // New requests and cancellations, taken under the lock; callbacks run outside it (they may submit).
  std::vector<uint64_t> cancelled;
  {
    std::lock_guard lock(mutex_);
    for (auto& s : incoming_) waiting_.push_back(std::move(s));
    incoming_.clear();
    cancelled.swap(cancelled_);
  }
  for (uint64_t id : cancelled) {
    for (auto& s : running_)
      if (s->id == id) finish(*s, FinishReason::Cancelled);
    for (auto& s : waiting_)
      if (s->id == id) finish(*s, FinishReason::Cancelled);
  }
  auto drop_done = [](auto& seqs) {
    seqs.erase(std::remove_if(seqs.begin(), seqs.end(), [](const auto& s) { return s->done; }), seqs.end());
  };
  // Requests that can never run end here with their reason.
  for (auto& s : waiting_) {
    if (s->done) continue;
    if (s->prompt_length == 0) finish(*s, FinishReason::Error, "the prompt is empty: nothing to generate from");
    else if (s->prompt_length >= options_.max_context)
      finish(*s, FinishReason::Error, "the prompt has " + std::to_string(s->prompt_length) + " tokens, more than the " +
                                          std::to_string(options_.max_context - 1) + " a " +
                                          std::to_string(options_.max_context) + "-token context leaves (raise --ctx)");
    else if (s->request.options.max_new_tokens <= 0) finish(*s, FinishReason::Length);
  }
  drop_done(waiting_);
  drop_done(running_);
  // Join in arrival order while there is room in the batch and in the pool.
  while (!waiting_.empty() && running_.size() < options_.max_sequences) {
    Sequence& s = *waiting_.front();
    if (!admit(s)) {
      if (!running_.empty()) break;  // blocks come back as running sequences finish
      // Nothing runs, so every block is available: this request can never fit.
      const uint32_t bs = cache_.block_size();
      const uint64_t longest = std::min<uint64_t>(s.prompt_length + uint64_t(s.request.options.max_new_tokens),
                                                  options_.max_context);
      finish(s, FinishReason::Error, "the request needs " + std::to_string((longest + bs - 1) / bs) +
                                         " KV blocks of " + std::to_string(bs) + " tokens, the pool has " +
                                         std::to_string(cache_.blocks()) + " (raise --kv-budget or lower max_tokens)");
      waiting_.pop_front();
      continue;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  publish_counts();
  if (running_.empty()) return false;

  // The step: a decode row for every sequence past its prompt, then prefill chunks within the token budget.
  std::vector<model::PagedSequence> parts;
  std::vector<Sequence*> owners;
  uint32_t budget = options_.batch_tokens;
  for (auto& s : running_)
    if (s->computed + 1 == s->tokens.size()) {
      parts.push_back({.ids = std::span(s->tokens).subspan(s->computed, 1), .past = s->computed, .blocks = s->blocks});
      owners.push_back(s.get());
      --budget;
      ++stats_.decode_rows;
    }
  for (auto& s : running_) {
    if (budget == 0) break;
    if (s->computed + 1 >= s->tokens.size()) continue;
    const uint32_t chunk = std::min<uint32_t>(budget, uint32_t(s->tokens.size() - s->computed));
    parts.push_back({.ids = std::span(s->tokens).subspan(s->computed, chunk), .past = s->computed, .blocks = s->blocks,
                     .logits = s->computed + chunk == s->tokens.size()});
    owners.push_back(s.get());
    budget -= chunk;
    stats_.prefill_rows += chunk;
  }
  std::vector<float> logits;
  try {
    logits = forward_.step(parts);
  } catch (const std::exception& e) {
    for (Sequence* s : owners) finish(*s, FinishReason::Error, e.what());
    drop_done(running_);
    publish_counts();
    return true;
  }
  ++stats_.steps;
  const uint32_t vocab = model_.hyper().vocab;
  size_t row = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    Sequence& s = *owners[i];
    s.computed += uint32_t(parts[i].ids.size());
    publish_full_blocks(s);
    if (!parts[i].logits) continue;
    const std::span<float> own(logits.data() + row++ * vocab, vocab);
    int32_t token;
    TokenLogprobs logprobs;
    const bool want_logprobs = s.request.logprobs >= 0;
    try {
      token = choose(s, own, want_logprobs ? &logprobs : nullptr);
    } catch (const std::exception& e) {
      finish(s, FinishReason::Error, e.what());
      continue;
    }
    s.tokens.push_back(token);
    s.result.tokens.push_back(token);
    if (s.result.tokens.size() == 1) s.result.first_token_seconds = seconds_since(s.submitted);
    const auto& o = s.request.options;
    const bool eos = !o.ignore_eos && std::find(o.sampling.eos_ids.begin(), o.sampling.eos_ids.end(), token) !=
                                          o.sampling.eos_ids.end();
    if (want_logprobs) s.result.logprobs.push_back(logprobs);
    const bool keep_going = s.request.on_token_logprobs ? s.request.on_token_logprobs(token, logprobs)
                                                        : !s.request.on_token || s.request.on_token(token);
    // The grammar allows nothing after this token: the text is whole, which ends the sequence as eos would.
    const bool grammar_done = !eos && s.matcher && s.matcher->advance(token) && s.matcher->finished();
    if (eos || grammar_done) finish(s, FinishReason::Eos);
    else if (!keep_going) finish(s, FinishReason::Stopped);
    else if (int(s.result.tokens.size()) >= o.max_new_tokens || s.tokens.size() >= options_.max_context)
      finish(s, FinishReason::Length);
  }
  drop_done(running_);
  publish_counts();
  return true;
}

void Scheduler::run_until_idle() {
  while (step()) {
  }
}

BatchEngine::BatchEngine(const model::LlamaModel& model, model::PagedKvCache& cache, SchedulerOptions options,
                         std::recursive_mutex* device_lock)
    : BatchEngine(std::vector<const model::LlamaModel*>{&model}, cache, options, device_lock) {}

BatchEngine::BatchEngine(const std::vector<const model::LlamaModel*>& stages, model::PagedKvCache& cache,
                         SchedulerOptions options, std::recursive_mutex* device_lock)
    : scheduler_(stages, cache, options), device_lock_(device_lock), thread_([this] { loop(); }) {}

double BatchEngine::step_seconds() const {
  const int64_t started = step_started_ns_;
  if (started == 0) return 0;
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  return double(std::max<int64_t>(now - started, 0)) * 1e-9;
}

void BatchEngine::cancel(uint64_t id) {
  scheduler_.cancel(id);
  {
    std::lock_guard lock(mutex_);
    ++pending_;  // a queued request may end now
  }
  wake_.notify_all();
}

BatchEngine::~BatchEngine() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

uint64_t BatchEngine::submit(BatchRequest request) {
  const uint64_t id = scheduler_.submit(std::move(request));
  {
    std::lock_guard lock(mutex_);
    ++pending_;
  }
  wake_.notify_all();
  return id;
}

void BatchEngine::loop() {
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      pending_ = 0;
    }
    bool stepped;
    step_started_ns_ = std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now().time_since_epoch()).count());
    if (device_lock_) {
      std::lock_guard device(*device_lock_);
      stepped = scheduler_.step();
    } else {
      stepped = scheduler_.step();
    }
    step_started_ns_ = 0;
    if (stepped) continue;
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return stopping_ || pending_ > 0; });
  }
}

}  // namespace inferno::gen
