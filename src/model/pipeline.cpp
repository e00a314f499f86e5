#include "model/pipeline.hpp"

#include <chrono>

#include "util/error.hpp"

namespace inferno::model {

Pipeline::Pipeline(std::vector<const LlamaModel*> stages, uint32_t batch, uint32_t capacity, kernels::KvType kv_type,
                   bool timestamps) {
  if (stages.empty()) throw Error("a pipeline needs at least one stage");
  uint32_t next_layer = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const LlamaModel& m = *stages[i];
    const bool first = i == 0, last = i + 1 == stages.size();
    if (m.has_embedding() != first || m.has_head() != last || m.first_layer() != next_layer)
      throw Error("pipeline stage " + std::to_string(i) + " does not continue the stage before it (layers from " +
                  std::to_string(m.first_layer()) + ", expected " + std::to_string(next_layer) + ")");
    next_layer = m.first_layer() + uint32_t(m.layers().size());
    forwards_.push_back(std::make_unique<Forward>(m, batch, capacity, kv_type, timestamps));
  }
  if (next_layer != stages.front()->hyper().layers)
    throw Error("pipeline stages hold " + std::to_string(next_layer) + " of the model's " +
                std::to_string(stages.front()->hyper().layers) + " layers");
}

void Pipeline::rewind(uint32_t past) {
  for (auto& f : forwards_) f->rewind(past);
}

std::vector<float> Pipeline::step(const Step& s) {
  using Clock = std::chrono::steady_clock;
  stage_seconds_.assign(forwards_.size(), 0.0);
  double copies_before = 0;
  for (const auto& f : forwards_) copies_before += f->hidden_copy_seconds();
  auto t0 = Clock::now();
  std::vector<float> out = forwards_.front()->step(s);
  for (size_t i = 1; i < forwards_.size(); ++i) {
    const auto t1 = Clock::now();
    stage_seconds_[i - 1] = std::chrono::duration<double>(t1 - t0).count();
    t0 = t1;
    Step next = s;
    next.hidden = out;  // read back from stage i-1, written into stage i's mapped input
    transferred_bytes_ += out.size() * 4;
    out = forwards_[i]->step(next);
  }
  stage_seconds_.back() = std::chrono::duration<double>(Clock::now() - t0).count();
  transfer_seconds_ = -copies_before;
  for (const auto& f : forwards_) transfer_seconds_ += f->hidden_copy_seconds();
  return out;
}

}  // namespace inferno::model
