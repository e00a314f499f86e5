#pragma once
// A model split over devices: one Forward per stage (its device, its layers, their KV cache), chained. A step runs
// each stage in turn; the hidden state of every row crosses each boundary through host-visible memory (read back
// from one device, written into the next one's mapped input). With one stage it is the plain Forward.
#include <memory>
#include <vector>

#include "model/forward.hpp"

namespace inferno::model {

class Pipeline {
 public:
  // stages: the first has the embedding, the last the head, each the layers after the one before it. Every stage
  // keeps `kv_type` (a stage without the embedding cannot tell the model's dtype).
  Pipeline(std::vector<const LlamaModel*> stages, uint32_t batch, uint32_t capacity, kernels::KvType kv_type,
           bool timestamps = false);

  std::vector<float> step(const Step& step);  // as Forward::step of the whole model
  uint32_t past() const { return forwards_.front()->past(); }
  void rewind(uint32_t past);
  size_t stages() const { return forwards_.size(); }
  Forward& stage(size_t i) { return *forwards_[i]; }
  const Forward& stage(size_t i) const { return *forwards_[i]; }
  uint64_t transferred_bytes() const { return transferred_bytes_; }  // hidden state across boundaries so far
  // Host seconds of each stage's last step, from its call to its result (recording, submission, the wait, the
  // hidden state's host copies).
  const std::vector<double>& last_stage_seconds() const { return stage_seconds_; }
  // Host seconds of the last step spent copying the hidden state into and out of the stages' mapped buffers.
  double last_transfer_seconds() const { return transfer_seconds_; }

 private:
  std::vector<std::unique_ptr<Forward>> forwards_;
  uint64_t transferred_bytes_ = 0;
  std::vector<double> stage_seconds_;
  double transfer_seconds_ = 0;
};

}  // namespace inferno::model
