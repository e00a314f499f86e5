#pragma once
// A model split over devices: one Forward per stage (its device, its layers, their KV cache), chained. A step runs
// each stage in turn; the hidden state of every row crosses each boundary as its StageLink allows: where every link
// is chained (timeline semaphores and memory both stages reach), all stages are recorded and submitted up front,
// each waiting for the one before on the device, and the host waits for the last one (and, over a host relay, once
// per boundary); otherwise each stage is submitted and waited for, and the host copies its hidden state into the next
// one's mapped input. With one stage it is the plain Forward.
//
// A step of many rows (a prefill) is cut into micro-batches of tokens and pipelined: one thread a stage, each
// running the micro-batches in order, so that stage d+1 works on micro-batch k while stage d works on k+1. This is
// exact: micro-batch k+1 on a stage attends to that stage's KV of micro-batches ≤ k, which the same thread wrote
// before, and every row goes through the same kernels as in one step (see micro_batches()).
#include <memory>
#include <vector>

#include "model/forward.hpp"
#include "model/stage_link.hpp"

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
  // The boundary between stage i and i + 1 (stages() - 1 of them).
  const StageLink& link(size_t i) const { return chain_.link(i); }
  // Links as the devices allow (the default, or INFERNO_STAGE_LINK=auto), or the host copy and a host wait per stage
  // whatever they allow (INFERNO_STAGE_LINK=host).
  void set_host_links(bool host_only);
  // The last step's host waits for a device (a fence or a timeline value) and bytes of the hidden state the host
  // copied (out of one device's mapping and into the next one's: twice the rows' bytes per boundary).
  uint32_t last_host_waits() const { return host_waits_; }
  uint64_t last_host_copy_bytes() const { return host_copy_bytes_; }
  // Host seconds of each stage's last step, from its call to its result (recording, submission, the wait, the
  // hidden state's host copies); summed over the micro-batches of a pipelined step.
  const std::vector<double>& last_stage_seconds() const { return stage_seconds_; }
  // Host seconds of the last step spent copying the hidden state into and out of the stages' mapped buffers.
  double last_transfer_seconds() const { return transfer_seconds_; }
  double last_step_seconds() const { return step_seconds_; }  // wall time of the last step
  // GPU time of every dispatch of each stage in the last step (with timestamps), every micro-batch's in turn: a
  // stage's recorder holds only its last submission's.
  const std::vector<std::vector<vk::DispatchTime>>& last_timings() const { return timings_; }

  // Rows (batch × tokens) a micro-batch aims at; 0 runs every step whole, stage after stage. Default: 64 with two
  // or more stages, or INFERNO_PIPELINE_MICROBATCH.
  void set_micro_batch(uint32_t rows) { micro_batch_ = rows; }
  uint32_t micro_batch() const { return micro_batch_; }
  // The token ranges [first, first + count) of each sequence a step of `batch` sequences and `tokens` tokens is cut
  // into (one range: not pipelined). Every range has at least 2 tokens and more than kernels::kMatvecMaxRows rows,
  // so that it runs the same matmul and attention kernels as the whole step (a step of a few rows takes the
  // matrix·vector kernel, whose sums may be ordered otherwise: subgroup reductions on GPUs); ranges differ in length
  // by at most one token.
  struct Range {
    uint32_t first, count;
  };
  std::vector<Range> micro_batches(uint32_t batch, uint32_t tokens) const;

  // When each stage ran each micro-batch of the last step: seconds from the step's start.
  struct MicroBatchTime {
    uint32_t stage, micro_batch;
    double start, end;
  };
  const std::vector<MicroBatchTime>& last_trace() const { return trace_; }

 private:
  std::vector<float> step_in_turn(const Step& step);
  std::vector<float> step_chained(const Step& step);
  std::vector<float> step_host(const Step& step);  // each stage submitted and waited for, the host copying between
  void connect(size_t stage);  // the stage's link buffers, as its links hold them now
  void reserve_links(uint64_t bytes);  // link memory for a step of `bytes` of hidden state, stages reconnected
  std::vector<float> step_pipelined(const Step& step, const std::vector<Range>& ranges);

  std::vector<std::unique_ptr<Forward>> forwards_;
  StageChain chain_;
  uint32_t host_waits_ = 0;
  uint64_t host_copy_bytes_ = 0;
  uint64_t transferred_bytes_ = 0;
  std::vector<double> stage_seconds_;
  double transfer_seconds_ = 0, step_seconds_ = 0;
  uint32_t micro_batch_ = 0;
  // Dynamic NTK RoPE past max_position_embeddings takes its frequencies from the step's largest position: such a
  // step is never cut (its micro-batches would rotate with other frequencies).
  bool dynamic_rope_ = false;
  uint32_t max_position_embeddings_ = 0;
  std::vector<MicroBatchTime> trace_;
  std::vector<std::vector<vk::DispatchTime>> timings_;
};

}  // namespace inferno::model
