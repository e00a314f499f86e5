#include "server/generation.hpp"

#include <algorithm>

#include "server/stop_strings.hpp"

namespace inferno::server {

namespace {

// A generated token's log-probabilities as the response shows them: the tokens' bytes instead of their ids.
// `offset` counts the characters of the choice's text so far (each UTF-8 character at its lead byte, so one split
// over two tokens counts once).
TokenLogprob token_logprob(const Model& model, int32_t token, const TokenLogprobs& logprobs, size_t& offset) {
  TokenLogprob out{.bytes = model.token_bytes(token), .logprob = logprobs.logprob, .top = {}, .text_offset = offset};
  for (const auto& [id, logprob] : logprobs.top) out.top.emplace_back(model.token_bytes(id), logprob);
  for (unsigned char b : out.bytes) offset += (b & 0xC0) != 0x80;
  return out;
}

}  // namespace

void apply_choice_fields(const CompletionRequest& request, GenerationRequest& generation) {
  generation.n = request.n;
  generation.logprobs = request.logprobs;
  generation.continue_prompt = !request.chat;
  SamplingOptions& s = generation.options.sampling;
  if (request.presence_penalty) s.presence_penalty = float(*request.presence_penalty);
  if (request.frequency_penalty) s.frequency_penalty = float(*request.frequency_penalty);
}

void Generation::post(Choice delta) {
  if (delta.text.empty() && delta.logprobs.empty() && !delta.finish_reason) return;
  {
    std::lock_guard lock(mutex_);
    if (delta.index < 0 || size_t(delta.index) >= choices_.size()) return;
    Choice& whole = choices_[size_t(delta.index)];
    whole.text += delta.text;
    whole.logprobs.insert(whole.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
    if (delta.finish_reason) whole.finish_reason = delta.finish_reason;
    // Pieces of one choice that no one has taken yet go out as one.
    if (!pending_.empty() && pending_.back().index == delta.index && !pending_.back().finish_reason) {
      Choice& last = pending_.back();
      last.text += delta.text;
      last.logprobs.insert(last.logprobs.end(), std::make_move_iterator(delta.logprobs.begin()),
                           std::make_move_iterator(delta.logprobs.end()));
      last.finish_reason = std::move(delta.finish_reason);
    } else {
      delta.with_logprobs = whole.with_logprobs;
      pending_.push_back(std::move(delta));
    }
  }
  changed_.notify_all();
}

void Generation::finish(GenerationOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    outcome_ = std::move(outcome);
    finished_ = true;
    engine_cancel_ = nullptr;
  }
  changed_.notify_all();
}

void Generation::abandon(const std::string& why) { finish({.finish_reason = "cancelled", .error = why}); }

Generation::Update Generation::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return finished_ || !pending_.empty(); });
  Update update;
  update.deltas.swap(pending_);
  update.done = finished_;
  return update;
}

void Generation::cancel() {
  cancelled_ = true;
  std::function<void()> engine_cancel;
  {
    std::lock_guard lock(mutex_);
    engine_cancel = engine_cancel_;
  }
  if (engine_cancel) engine_cancel();
}

// One choice has ended: its finish_reason goes out (a failed or cancelled one ends the whole response instead), and
// the last one to end ends the generation. The response's outcome is the first choice's, except that any error or
// cancellation is the response's.
void Generation::choice_finished(int index, const EngineResult& result, const std::string& finish_reason,
                                 const std::optional<std::string>& error, const std::vector<double>& token_gaps) {
  if (!error && finish_reason != "cancelled") post({.index = index, .finish_reason = finish_reason});
  bool last = false;
  GenerationOutcome outcome;
  {
    std::lock_guard lock(mutex_);
    GenerationOutcome& o = running_outcome_;
    o.completion_tokens += int(result.tokens.size());
    o.token_gaps.insert(o.token_gaps.end(), token_gaps.begin(), token_gaps.end());
    if (index == 0) {
      o.prompt_tokens = result.prompt_tokens;
      o.cached_tokens = result.cached_tokens;
      o.first_token_seconds = result.first_token_seconds;
      o.seconds = result.seconds;
      if (o.finish_reason.empty()) o.finish_reason = finish_reason;
    }
    if (error && !o.error) o.error = error;
    if (error || finish_reason == "cancelled") o.finish_reason = finish_reason;
    last = --choices_left_ == 0;
    if (last) outcome = o;
  }
  if (last) finish(std::move(outcome));
}

void Generation::start(Engine& engine, Model& model, std::shared_ptr<Generation> self,
                       std::atomic<uint64_t>& cancelled_count, std::atomic<int64_t>& in_engine) noexcept {
  Generation& g = *self;
  const GenerationRequest& request = g.request_;
  int submitted = 0;
  try {
    {
      std::lock_guard lock(g.mutex_);
      g.choices_.assign(size_t(request.n), Choice{});
      for (int i = 0; i < request.n; ++i) {
        g.choices_[size_t(i)].index = i;
        g.choices_[size_t(i)].with_logprobs = request.logprobs >= 0;
      }
      g.choices_left_ = request.n;
    }
    std::vector<uint64_t> ids;
    for (int i = 0; i < request.n; ++i) {
      auto stream = std::make_shared<TextStream>(model);
      if (request.continue_prompt) stream->prime(request.prompt);
      auto stop = std::make_shared<StopMatcher>(request.stop);
      auto offset = std::make_shared<size_t>(0);
      // When the choice's last token came, and the gaps between its tokens (the inter-token latency metric).
      struct Gaps {
        std::optional<std::chrono::steady_clock::time_point> last;
        std::vector<double> seconds;
      };
      auto gaps = std::make_shared<Gaps>();
      EngineRequest r{.prompt = request.prompt, .options = request.options, .on_token = {}, .on_finish = {},
                      .logprobs = request.logprobs, .on_token_logprobs = {}};
      r.options.sampling.seed += uint64_t(i);
      r.on_token_logprobs = [self, stream, stop, offset, gaps, i, &model](int32_t token, const TokenLogprobs& logprobs) {
        const auto now = std::chrono::steady_clock::now();
        if (gaps->last) gaps->seconds.push_back(std::chrono::duration<double>(now - *gaps->last).count());
        gaps->last = now;
        if (self->cancelled_) return false;
        Choice delta{.index = i};
        delta.text = stop->push(stream->push(token));
        if (self->request_.logprobs >= 0) delta.logprobs.push_back(token_logprob(model, token, logprobs, *offset));
        self->post(std::move(delta));
        return !stop->stopped() && !self->cancelled_;
      };
      r.on_finish = [self, stream, stop, gaps, i, &cancelled_count, &in_engine](const EngineResult& res) {
        --in_engine;
        std::optional<std::string> error;
        try {
          if (!stop->stopped()) self->post({.index = i, .text = stop->push(stream->finish())});
          if (!stop->stopped()) self->post({.index = i, .text = stop->finish()});
        } catch (const std::exception& e) {
          error = e.what();
        }
        if (res.finish_reason == "error") error = res.error;
        std::string reason = res.finish_reason;
        if (error) reason = "error";
        else if (stop->stopped()) reason = "stop";
        else if (self->cancelled_ || res.finish_reason == "cancelled") reason = "cancelled";
        if (reason == "cancelled" && i == 0) ++cancelled_count;
        self->choice_finished(i, res, reason, error, gaps->seconds);
      };
      ids.push_back(engine.submit(std::move(r)));
      ++submitted;
    }
    {
      std::lock_guard lock(g.mutex_);
      if (!g.finished_)
        g.engine_cancel_ = [&engine, ids] {
          for (uint64_t id : ids) engine.cancel(id);
        };
    }
    if (g.cancelled_) g.cancel();  // cancelled before the engine knew it
  } catch (const std::exception& e) {
    in_engine -= request.n - submitted;  // reserved, never submitted
    g.finish({.finish_reason = "error", .prompt_tokens = int(request.prompt.size()), .error = e.what()});
  }
}

ModelWorker::ModelWorker(Model& model, EngineOptions engine_options, size_t max_queued)
    : model_(model), max_queued_(max_queued), engine_(model, engine_options) {}

ModelWorker::~ModelWorker() { cancel_all(); }

bool ModelWorker::submit(std::shared_ptr<Generation> generation) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || in_engine_ >= int64_t(engine_.parallel() + max_queued_)) return false;
    in_engine_ += generation->n();
    std::erase_if(active_, [](const std::weak_ptr<Generation>& g) { return g.expired(); });
    active_.push_back(generation);
  }
  Generation::start(engine_, model_, std::move(generation), cancelled_count_, in_engine_);
  return true;
}

void ModelWorker::cancel_all() {
  std::vector<std::weak_ptr<Generation>> active;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    active.swap(active_);
  }
  for (auto& weak : active)
    if (auto g = weak.lock()) g->cancel();
}

}  // namespace inferno::server
