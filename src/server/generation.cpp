#include "server/generation.hpp"

#include <algorithm>

#include "server/stop_strings.hpp"

namespace inferno::server {

void Generation::post(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mutex_);
    pending_ += text;
  }
  changed_.notify_all();
}

void Generation::finish(GenerationOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    outcome_ = std::move(outcome);
    finished_ = true;
  }
  changed_.notify_all();
}

void Generation::abandon(const std::string& why) { finish({.finish_reason = "cancelled", .error = why}); }

Generation::Update Generation::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return finished_ || !pending_.empty(); });
  Update update;
  update.text.swap(pending_);
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

void Generation::start(Engine& engine, Model& model, std::shared_ptr<Generation> self,
                       std::atomic<uint64_t>& cancelled_count) noexcept {
  Generation& g = *self;
  try {
    auto stream = std::make_shared<TextStream>(model);
    auto stop = std::make_shared<StopMatcher>(g.request_.stop);
    EngineRequest r{.prompt = g.request_.prompt, .options = g.request_.options, .on_token = {}, .on_finish = {}};
    r.on_token = [self, stream, stop](int32_t token) {
      if (self->cancelled_) return false;
      self->post(stop->push(stream->push(token)));
      return !stop->stopped() && !self->cancelled_;
    };
    r.on_finish = [self, stream, stop, &cancelled_count](const EngineResult& res) {
      GenerationOutcome outcome;
      outcome.prompt_tokens = res.prompt_tokens;
      outcome.cached_tokens = res.cached_tokens;
      outcome.completion_tokens = int(res.tokens.size());
      outcome.first_token_seconds = res.first_token_seconds;
      outcome.seconds = res.seconds;
      try {
        if (!stop->stopped()) self->post(stop->push(stream->finish()));
        if (!stop->stopped()) self->post(stop->finish());
      } catch (const std::exception& e) {
        outcome.error = e.what();
      }
      if (res.finish_reason == "error") outcome.error = res.error;
      if (outcome.error) outcome.finish_reason = "error";
      else if (stop->stopped()) outcome.finish_reason = "stop";
      else if (self->cancelled_ || res.finish_reason == "cancelled") outcome.finish_reason = "cancelled";
      else outcome.finish_reason = res.finish_reason;
      if (outcome.finish_reason == "cancelled") ++cancelled_count;
      {
        std::lock_guard lock(self->mutex_);
        self->engine_cancel_ = nullptr;
      }
      self->finish(std::move(outcome));
    };
    const uint64_t id = engine.submit(std::move(r));
    {
      std::lock_guard lock(g.mutex_);
      if (!g.finished_) g.engine_cancel_ = [&engine, id] { engine.cancel(id); };
    }
    if (g.cancelled_) g.cancel();  // cancelled before the engine knew it
  } catch (const std::exception& e) {
    g.finish({.finish_reason = "error", .prompt_tokens = int(g.request_.prompt.size()), .error = e.what()});
  }
}

ModelWorker::ModelWorker(Model& model, EngineOptions engine_options, size_t max_queued)
    : model_(model), max_queued_(max_queued), engine_(model, engine_options) {}

ModelWorker::~ModelWorker() { cancel_all(); }

bool ModelWorker::submit(std::shared_ptr<Generation> generation) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || engine_.waiting() >= max_queued_) return false;
    std::erase_if(active_, [](const std::weak_ptr<Generation>& g) { return g.expired(); });
    active_.push_back(generation);
  }
  Generation::start(engine_, model_, std::move(generation), cancelled_count_);
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
