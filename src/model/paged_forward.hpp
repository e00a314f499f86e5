#pragma once
// The forward pass over the paged KV cache: one step runs the new tokens of any number of sequences, each with its own
// length and position (decode rows of some, prefill chunks of others), as one recorded command buffer and one
// submission. Every projection takes all the step's rows at once, so each weight is read once per step whatever the
// number of sequences.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/llama.hpp"
#include "model/paged_kv_cache.hpp"
#include "model/stage_link.hpp"
#include "vk/recorder.hpp"
#include "vk/timeline.hpp"

namespace inferno::model {

// One sequence's part of a step.
struct PagedSequence {
  std::span<const int32_t> ids;        // its new tokens
  uint32_t past = 0;                   // tokens of it already in the cache (the new ones go to positions past ...)
  std::span<const uint32_t> blocks;    // its block table, covering at least past + ids.size() tokens
  bool logits = true;                  // whether its last new token's logits are wanted
};

class PagedForward {
 public:
  // max_context: the longest a sequence may grow (the RoPE table's positions). `model` may be one stage of a model
  // split over devices (see LoadOptions): it runs the layers it holds, with their part of `cache`.
  PagedForward(const LlamaModel& model, PagedKvCache& cache, uint32_t max_context);

  // Runs the step and returns the logits [sequences with logits = true, vocab], in their order. A stage without the
  // embedding takes the hidden state of every row [rows, hidden] from the stage before; a stage without the head
  // returns that of every row instead of logits.
  // split_attention false: no split-K attention in this step whatever its size (a micro-batch of a larger step
  // takes the larger step's choice, which never splits, so that its rows are summed as the whole step's would be).
  std::vector<float> step(std::span<const PagedSequence> sequences, std::span<const float> hidden = {},
                          bool split_attention = true);
  // Checks a step as step() does (its sequences, tokens, block tables, the context) and returns its rows.
  uint32_t check(std::span<const PagedSequence> sequences) const;

  // The chained path of a split model (PagedPipeline), as Forward's: the hidden state comes from `in` (a buffer on
  // this device, for a stage without the embedding) and goes to `out` (for a stage without the head) at `offset`
  // bytes by this device's own copies, with a barrier that covers memory another device or the host shares.
  // record_linked checks the step, writes its inputs and records it; submit_linked submits it with the semaphores
  // given; once it is done finish_linked returns the logits (nothing for a stage without the head). Between
  // record_linked and finish_linked the stage takes no other step; abandon_linked waits for the submission (if any)
  // and drops the step.
  void set_links(const vk::Buffer* in, const vk::Buffer* out);
  void record_linked(std::span<const PagedSequence> sequences, bool split_attention, uint64_t offset);
  void submit_linked(std::span<const vk::SemaphoreValue> waits, std::span<const vk::SemaphoreValue> signals);
  std::vector<float> finish_linked();
  void abandon_linked();
  const LlamaModel& model() const { return model_; }

  uint32_t max_context() const { return max_context_; }
  PagedKvCache& cache() { return cache_; }
  uint64_t scratch_bytes() const;
  // Split-K attention: chosen from the device (1 on CPU drivers); tests set it.
  void set_attention_splits(uint32_t splits) { attention_splits_ = std::max(splits, 1u); }

 private:
  void ensure_scratch(uint32_t rows, uint32_t logits_rows, uint32_t paging_words, uint64_t partial_floats);

  const LlamaModel& model_;
  vk::Device& device_;
  PagedKvCache& cache_;
  uint32_t max_context_;
  vk::Recorder rec_;
  uint32_t scratch_rows_ = 0, logits_rows_ = 0, paging_words_ = 0;
  uint32_t attention_splits_ = 1;
  vk::Buffer x_, xn_, qkv_, attn_, gate_up_, act_, last_, logits_, readback_, partials_;
  vk::Buffer ids_, positions_, paging_;  // host-visible
  vk::Buffer rope_table_;
  vk::Buffer xq_, xscale_;
  vk::Buffer hidden_in_, hidden_out_;  // host-visible: the hidden state from the stage before, to the stage after
  const vk::Buffer* link_in_ = nullptr;
  const vk::Buffer* link_out_ = nullptr;
  struct Pending {  // a recorded step; pending_: a linked one (maybe submitted) whose result is not yet collected
    bool recorded = false;
    uint32_t rows = 0, out_rows = 0;
  };
  Pending pending_;

  // Checks the step, writes its inputs and records it (from and to the links when linked).
  Pending record(std::span<const PagedSequence> sequences, std::span<const float> hidden, bool split_attention,
                 bool linked, uint64_t offset);
  std::vector<float> collect(uint32_t rows, uint32_t out_rows, bool linked) const;
};

// The paged step over a model split over devices: one PagedForward per stage, each stage's hidden state of every
// row crossing each boundary as its StageLink allows (as model::Pipeline's): where every link is chained, all stages
// are recorded and submitted up front, each waiting on the device for the one before, and the host waits for the
// last one (and, over a host relay, once per boundary); otherwise each stage is submitted and waited for, and the
// host copies its hidden state into the next one's mapped input. With one stage it is the plain PagedForward.
//
// A step of more rows than a micro-batch (a prefill chunk: --batch-tokens rows) is cut into micro-batches that run
// through the stages pipelined (stage_threads.hpp). The cut keeps the step's arithmetic: every micro-batch has more
// than kernels::kMatvecMaxRows rows (the matrix·matrix kernels, as the whole step), none splits attention, the
// leading parts of long sequences go first and the last micro-batch holds every sequence's last token, in the
// step's order, so the lm_head runs once on the same rows as in the whole step. A sequence's later part attends to
// the K/V its earlier part wrote on the same device, as in one step. Over chained links each micro-batch's rows cross
// through their own place in the link memory (their offset in the step), with a host wait per micro-batch and stage
// as the stage threads hand over, and no host copy.
//
// A step that fails leaves no submission waiting (host relays released, recorded stages waited for and dropped);
// the K/V the stages that ran wrote belongs to the step's sequences, which the caller ends or writes again.
class PagedPipeline {
 public:
  PagedPipeline(const std::vector<const LlamaModel*>& stages, PagedKvCache& cache, uint32_t max_context);
  std::vector<float> step(std::span<const PagedSequence> sequences);
  size_t stages() const { return forwards_.size(); }
  PagedForward& stage(size_t i) { return *forwards_[i]; }
  // The boundary between stage i and i + 1 (stages() - 1 of them).
  const StageLink& link(size_t i) const { return chain_.link(i); }
  // Links as the devices allow (the default, or INFERNO_STAGE_LINK=auto), or the host copy and a host wait per stage
  // (INFERNO_STAGE_LINK=host).
  void set_host_links(bool host_only);
  // The last step's host waits for a device (a fence or a timeline value) and bytes of the hidden state the host
  // copied (out of one device's mapping and into the next one's: twice the rows' bytes per boundary).
  uint32_t last_host_waits() const { return host_waits_; }
  uint64_t last_host_copy_bytes() const { return host_copy_bytes_; }

  // Rows a micro-batch aims at; 0 runs every step whole, stage after stage. Default: 64 with two or more stages,
  // or INFERNO_PIPELINE_MICROBATCH.
  void set_micro_batch(uint32_t rows) { micro_batch_ = rows; }
  uint32_t micro_batch() const { return micro_batch_; }
  // The micro-batches a step is cut into (one: not cut), each a list of sequence parts as PagedForward::step takes.
  std::vector<std::vector<PagedSequence>> micro_batches(std::span<const PagedSequence> sequences) const;
  size_t last_micro_batches() const { return last_micro_batches_; }  // of the last step

 private:
  std::vector<float> step_chained(std::span<const PagedSequence> sequences);
  void connect(size_t stage);  // the stage's link buffers, as its links hold them now

  std::vector<std::unique_ptr<PagedForward>> forwards_;
  StageChain chain_;
  uint32_t host_waits_ = 0;
  uint64_t host_copy_bytes_ = 0;
  uint32_t micro_batch_ = 0;
  size_t last_micro_batches_ = 0;
};

}  // namespace inferno::model
