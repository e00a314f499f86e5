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

void Generation::run(Model& model, const SessionOptions& session_options) noexcept {
  GenerationOutcome outcome;
  outcome.prompt_tokens = int(request_.prompt.size());
  if (cancelled_) {
    outcome.finish_reason = "cancelled";
    finish(std::move(outcome));
    return;
  }
  try {
    Session session(model, session_options);
    TextStream stream(model);
    StopMatcher stop(request_.stop);
    const auto on_token = [&](int32_t token) {
      if (cancelled_) return false;
      post(stop.push(stream.push(token)));
      return !stop.stopped() && !cancelled_;
    };
    const std::vector<int32_t> out = session.generate(request_.prompt, request_.options, on_token);
    if (!stop.stopped()) post(stop.push(stream.finish()));
    if (!stop.stopped()) post(stop.finish());

    const std::vector<int32_t> eos = request_.options.eos_ids ? *request_.options.eos_ids : model.eos_ids();
    const bool ended_at_eos = !request_.options.ignore_eos && !out.empty() &&
                              std::find(eos.begin(), eos.end(), out.back()) != eos.end();
    outcome.completion_tokens = int(out.size());
    if (stop.stopped() || ended_at_eos) outcome.finish_reason = "stop";
    else if (cancelled_) outcome.finish_reason = "cancelled";
    else outcome.finish_reason = "length";
  } catch (const std::exception& e) {
    outcome.finish_reason = "error";
    outcome.error = e.what();
  } catch (...) {
    outcome.finish_reason = "error";
    outcome.error = "unknown failure";
  }
  finish(std::move(outcome));
}

ModelWorker::ModelWorker(Model& model, SessionOptions session_options, size_t max_queued)
    : model_(model), session_options_(session_options), max_queued_(max_queued), thread_([this] { loop(); }) {}

ModelWorker::~ModelWorker() {
  cancel_all();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool ModelWorker::submit(std::shared_ptr<Generation> generation) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(generation));
  }
  wake_.notify_one();
  return true;
}

void ModelWorker::cancel_all() {
  std::deque<std::shared_ptr<Generation>> waiting;
  {
    std::lock_guard lock(mutex_);
    waiting.swap(queue_);
    if (running_) running_->cancel();
  }
  for (auto& g : waiting) g->abandon("the server is stopping");
}

void ModelWorker::loop() {
  for (;;) {
    std::shared_ptr<Generation> job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ && queue_.empty()) return;
      job = queue_.front();
      queue_.pop_front();
      running_ = job;
    }
    job->run(model_, session_options_);
    if (job->outcome().finish_reason == "cancelled") ++cancelled_count_;
    std::lock_guard lock(mutex_);
    running_.reset();
  }
}

}  // namespace inferno::server
