#include "model/pipeline.hpp"

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
  std::vector<float> out = forwards_.front()->step(s);
  for (size_t i = 1; i < forwards_.size(); ++i) {
    Step next = s;
    next.hidden = out;  // read back from stage i-1, written into stage i's mapped input
    transferred_bytes_ += out.size() * 4;
    out = forwards_[i]->step(next);
  }
  return out;
}

}  // namespace inferno::model
