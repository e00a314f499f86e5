#pragma once
// The KV cache and the forward pass. One step = one recorded command buffer = one queue submission: embedding →
// L × block → final norm → lm_head for the rows asked for, with only those logits copied back to the host.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/attention.hpp"
#include "model/llama.hpp"
#include "vk/buffer.hpp"
#include "vk/recorder.hpp"

namespace inferno::model {

// The default KV cache dtype (the command-line contract): f32 for F32 weights, f16 otherwise, in any format. The token
// embedding's dtype stands for the weights' (loading keeps it as the file stores it), so that `inferno info`, which
// reads only the headers, and a session over the loaded model decide alike, both through this function.
kernels::KvType default_kv_type(bool f32_embedding);
kernels::KvType default_kv_type(const LlamaModel& model);

class KvCache {
 public:
  KvCache(vk::Device& device, const LlamaHyper& hyper, uint32_t batch, uint32_t capacity, kernels::KvType type);
  uint32_t batch() const { return batch_; }
  uint32_t capacity() const { return capacity_; }
  kernels::KvType type() const { return type_; }
  const vk::Buffer& k(uint32_t layer) const { return k_[layer]; }
  const vk::Buffer& v(uint32_t layer) const { return v_[layer]; }
  uint64_t bytes() const;  // device bytes held
  // What a cache of this shape takes, for `inferno info` before anything is allocated.
  static uint64_t bytes_for(const LlamaHyper& hyper, uint32_t batch, uint32_t capacity, kernels::KvType type);

 private:
  uint32_t batch_, capacity_;
  kernels::KvType type_;
  std::vector<vk::Buffer> k_, v_;
};

enum class LogitsRows { All, Last };

struct Step {
  uint32_t batch = 1, tokens = 0;
  std::span<const int32_t> ids;        // [batch * tokens], sequence-major
  std::span<const int32_t> positions;  // [batch * tokens] position ids (transformers' cumsum(mask) - 1 with pads at 1)
  std::span<const int32_t> kv_start;   // [batch] first cache slot that is not left padding
  LogitsRows rows = LogitsRows::Last;
  // A stage of a split model without the embedding: the hidden state [batch * tokens, hidden] the stage before it
  // gave out. A stage without the head gives out the hidden state of every row instead of logits.
  std::span<const float> hidden;
};

class Forward {
 public:
  // Runs the layers `model` holds (all of them, or one stage's range: see LoadOptions), with their KV cache.
  Forward(const LlamaModel& model, uint32_t batch, uint32_t capacity, kernels::KvType kv_type, bool timestamps = false);

  // Runs the new tokens of every sequence through the model, appends their K/V to the cache, and returns logits:
  // LogitsRows::All → [batch * tokens, vocab]; Last → [batch, vocab] (each sequence's last new token).
  // A stage without the head returns the hidden state [batch * tokens, hidden] instead.
  // Logits holding a NaN or infinity throw inferno::Error naming the first stage (the embedding, layer i, lm_head)
  // whose output does, found by running the step again stage by stage; the cache is then as before the step.
  std::vector<float> step(const Step& step);

  // The chained path of a split model (model::Pipeline): the hidden state comes from `in` (a buffer on this device,
  // for a stage without the embedding) and goes to `out` (for a stage without the head) by this device's own copies,
  // with a barrier that covers memory another device or the host shares. set_links holds the buffers until the next
  // call (any call re-records the decode step). record_linked checks, writes the step's inputs and records it (or
  // readies the decode recording), submit_linked submits it with the semaphores given, and once it is done
  // finish_linked advances the cache and returns the logits (nothing for a stage without the head). `offset`: where
  // the step's rows start in both link buffers, in bytes (the micro-batches of a pipelined step each have their own
  // place; a step at an offset is never a replayed decode step). Between
  // record_linked and finish_linked the stage takes no other step; abandon_linked waits for the submission and drops
  // the step (the cache as before it).
  void set_links(const vk::Buffer* in, const vk::Buffer* out);
  void record_linked(const Step& step, uint64_t offset = 0);
  void submit_linked(std::span<const vk::SemaphoreValue> waits, std::span<const vk::SemaphoreValue> signals);
  std::vector<float> finish_linked();
  void abandon_linked();

  vk::Device& device() const { return device_; }
  uint32_t hidden_size() const { return model_.hyper().hidden; }
  uint32_t past() const { return past_; }          // cache slots filled
  void rewind(uint32_t past);                      // forget slots from `past` on (new prompt, or chat edits)
  const KvCache& cache() const { return cache_; }
  uint64_t scratch_bytes() const;                  // activations scratch held now
  // What scratch for `rows` rows of tokens takes, with `logits_rows` rows of logits (generation: one per sequence).
  static uint64_t scratch_bytes_for(const LlamaHyper& hyper, uint32_t batch, uint32_t rows, uint32_t logits_rows);
  const vk::Recorder& recorder() const { return *last_rec_; }  // the last step's commands (timings)
  // A stage of a split model: host seconds spent so far copying the hidden state into and out of its mapped
  // buffers (the device's own copies are timed among the recorder's timings as kTransferLabel).
  double hidden_copy_seconds() const { return hidden_copy_seconds_; }
  static constexpr const char* kTransferLabel = "hidden_state_transfer";
  uint64_t recordings() const { return recordings_; }          // steps recorded, not replayed
  // Decode steps replay one recording (the default); off, every step is recorded afresh (tests compare the two).
  void set_replay_decode(bool on) { replay_decode_ = on; }
  // Split-K attention for steps of up to kMaxSplitTokens tokens a sequence (decode): key ranges per (row, head).
  // Chosen from the device and capacity (1 on CPU drivers); tests set it.
  void set_attention_splits(uint32_t splits) {
    attention_splits_ = std::max(splits, 1u);
    decode_recorded_for_ = ~0ull;  // the recorded decode step has the old split
  }
  uint32_t attention_splits() const { return attention_splits_; }
  static constexpr uint32_t kMaxSplitTokens = 8;
  // RMSNorm folded into the projection after it (kernels::LinearArgs::norm) in steps of a few rows (decode): two
  // dispatches and barriers fewer a layer, for more arithmetic per weight in the projection. Off by default: on
  // lavapipe, whose matrix·vector kernel is bound by arithmetic, it costs 28 % of decode speed (TinyLlama shapes,
  // 4 layers); on a GPU it is to be measured (INFERNO_NORM_FOLD=1 turns it on, =0 off).
  void set_fold_norms(bool on) {
    fold_norms_ = on;
    decode_recorded_for_ = ~0ull;
  }
  bool fold_norms() const { return fold_norms_; }

 private:
  // Scratch for `rows` token rows, `logits_rows` rows of logits and split-K attention's partials; any reallocation
  // bumps buffers_generation_ (a replayed recording binds the old buffers).
  void ensure_scratch(uint32_t rows, uint32_t logits_rows, uint64_t attention_partial_floats);
  // The cos/sin table for a step at these positions (the largest one: max_pos); recomputed only when the
  // frequencies change (dynamic NTK scaling), never with a submission of its own during decoding.
  void update_rope_table(std::span<const int32_t> positions, int32_t max_pos);
  std::vector<float> finish_step(uint32_t tokens, uint32_t out_rows);  // past advances, the logits come back
  // step() without the check on the logits. Probe: the diagnosis pass (one submission per stage, each stage's output
  // read back, throws naming the first non-finite one). Linked: recorded for record_linked, not submitted.
  enum class Mode { Run, Probe, Linked };
  std::vector<float> run_step(const Step& step, Mode mode);

  const LlamaModel& model_;
  vk::Device& device_;
  KvCache cache_;
  vk::Recorder rec_;
  vk::Recorder decode_rec_;           // the decode step, recorded once, replayed while the buffers stay
  const vk::Recorder* last_rec_ = &rec_;
  bool replay_decode_ = true;
  uint64_t buffers_generation_ = 0;   // bumped whenever a scratch buffer is reallocated
  uint64_t decode_recorded_for_ = ~0ull;
  bool decode_linked_ = false;        // the decode recording reads and writes the links, not hidden_in_/out_
  const vk::Buffer* link_in_ = nullptr;
  const vk::Buffer* link_out_ = nullptr;
  uint64_t link_offset_ = 0;  // of the step being recorded
  struct Pending {  // a linked step recorded and maybe submitted, its result not yet collected (rec null: none)
    vk::Recorder* rec = nullptr;
    uint32_t tokens = 0, out_rows = 0;
  };
  Pending pending_;
  uint64_t recordings_ = 0;
  uint32_t past_ = 0;
  uint32_t scratch_rows_ = 0, logits_rows_ = 0;
  int64_t rope_seq_len_ = -1;  // the seq_len the current table was computed for (dynamic RoPE recomputes)
  vk::Buffer x_, xn_, qkv_, attn_, gate_up_, act_, last_, logits_;
  vk::Buffer partials_;  // split-K attention's per-split results (decode on GPUs)
  uint32_t attention_splits_ = 1;
  bool fold_norms_ = false;
  vk::Buffer ids_, positions_, kv_start_, readback_;  // host-visible
  vk::Buffer rope_table_;
  vk::Buffer xq_, xscale_;  // int8 activations of w8a8 layers (allocated only for such models)
  vk::Buffer hidden_in_, hidden_out_;  // host-visible: the hidden state from the stage before, to the stage after
  double hidden_copy_seconds_ = 0;
};

}  // namespace inferno::model
