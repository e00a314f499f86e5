#pragma once
// A generation session: the prefill/decode loop over one model, its KV cache and the logits processors.
// One sequence (kept across calls so that chat turns only prefill what is new), or a batch of sequences left-padded
// exactly as transformers' `generate` does.
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "generate/grammar.hpp"
#include "generate/logits_processors.hpp"
#include "model/forward.hpp"
#include "model/pipeline.hpp"

namespace inferno::gen {

class Sampler;

struct GenerateOptions {
  int max_new_tokens = 20;
  // Treat the model as having no eos id (transformers' eos_token_id=None): never stop early, never ban eos.
  bool ignore_eos = false;
  SamplingParams sampling;  // sampling.eos_ids: the ids that end a sequence
  // Constrained decoding: only tokens the grammar allows are chosen, eos only once the text is complete, and the
  // sequence ends (as at eos) when the grammar allows nothing more. Null: free text.
  std::shared_ptr<const GrammarConstraint> grammar;
};

// Called with each new token as soon as it is chosen; returning false stops generation (stop strings, cancel).
using TokenCallback = std::function<bool(int32_t token)>;

struct GenerationStats {
  int prompt_tokens = 0;       // tokens prefilled by the last call (new ones only, when the cache was reused)
  int reused_tokens = 0;       // prompt tokens whose K/V came from the previous call
  int new_tokens = 0;
  double prefill_seconds = 0;  // the prompt's forward pass (= time to first token)
  double decode_seconds = 0;   // every later step
};

class Session {
 public:
  Session(const model::LlamaModel& model, uint32_t capacity, kernels::KvType kv_type, uint32_t batch = 1,
          bool timestamps = false);
  // A model split over devices: its stages in order (see model::Pipeline); the tokens are those of the whole model.
  Session(std::vector<const model::LlamaModel*> stages, uint32_t capacity, kernels::KvType kv_type, uint32_t batch = 1,
          bool timestamps = false);
  ~Session();

  // Generates for one sequence (batch-1 session). The KV cache of the previous call is reused for the longest
  // common prefix of its tokens and this prompt. Returns the new tokens.
  std::vector<int32_t> generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                const TokenCallback& on_token = {});
  // Generates for every prompt at once (a session made with batch = prompts.size()), left-padding with pad_id.
  // Finished sequences continue with pad_id until all are done, as transformers does; each result has the same length.
  std::vector<std::vector<int32_t>> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                   const GenerateOptions& options, int32_t pad_id);
  // Logits [T, vocab] of every position of `ids` in one pass over a fresh cache.
  std::vector<float> all_logits(std::span<const int32_t> ids);
  // Chooses the next token of one sequence from its logits (processors, then argmax or a draw).
  int32_t choose(std::span<float> logits, std::span<const int32_t> ids_so_far, int prompt_length,
                 const GenerateOptions& options, GrammarMatcher* matcher = nullptr);

  const GenerationStats& stats() const { return stats_; }
  model::Forward& forward() { return pipeline_.stage(0); }  // the first stage (the whole model when unsplit)
  model::Pipeline& pipeline() { return pipeline_; }
  const model::LlamaModel& model() const { return model_; }

 private:
  const model::LlamaModel& model_;
  model::Pipeline pipeline_;
  std::vector<int32_t> cached_;  // the tokens whose K/V the cache holds (batch-1 sessions)
  GenerationStats stats_;
  std::unique_ptr<Sampler> sampler_;
  uint64_t sampler_seed_ = 0;
};

}  // namespace inferno::gen
