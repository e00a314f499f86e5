#pragma once
// Logits processors and warpers with the semantics of Hugging Face transformers (generation/logits_process.py), on
// the float32 logits of one sequence. Each function edits `scores` in place and computes in float32 wherever torch
// does, so that the result matches transformers' CPU output value for value: filtered entries become -inf
// (filter_value), and sorting, ties and thresholds follow torch's rules (see each function).
//
// `ids_so_far` is the whole sequence the next token is predicted for: the prompt followed by the tokens generated so
// far (transformers' `input_ids`). Parameters are doubles because transformers holds them as Python floats.
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace inferno::gen {

// transformers' GenerationConfig fields; the defaults are transformers' defaults (min_p 0 means "off").
struct SamplingParams {
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 50;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float typical_p = 1.0f;
  float repetition_penalty = 1.0f;
  int no_repeat_ngram_size = 0;
  std::vector<std::vector<int32_t>> bad_words_ids;
  std::vector<int32_t> suppress_tokens;
  int min_length = 0;      // counts the prompt too
  int min_new_tokens = 0;  // counts generated tokens only
  std::vector<int32_t> eos_ids;
  uint64_t seed = 0;
  // OpenAI's penalties (not transformers'): 0 is off.
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
};

// ---- processors: always applied, in this order ----

// RepetitionPenaltyLogitsProcessor: every token present in ids_so_far (once, however often it occurs) has a negative
// score multiplied by `penalty` and a positive one divided by it.
void apply_repetition_penalty(std::span<float> scores, std::span<const int32_t> ids_so_far, double penalty);

// NoRepeatNGramLogitsProcessor: bans every token that would complete an n-gram already present in ids_so_far.
void apply_no_repeat_ngram(std::span<float> scores, std::span<const int32_t> ids_so_far, int ngram_size);

// NoBadWordsLogitsProcessor: a one-token bad word is always banned; a longer one bans its last token when ids_so_far
// ends with the rest of it. Bad words that are exactly one eos id are dropped, as transformers does.
void apply_bad_words(std::span<float> scores, std::span<const int32_t> ids_so_far,
                     const std::vector<std::vector<int32_t>>& bad_words_ids, std::span<const int32_t> eos_ids);

// MinLengthLogitsProcessor: bans the eos ids while the sequence (prompt included) is shorter than min_length.
void apply_min_length(std::span<float> scores, size_t sequence_length, int min_length,
                      std::span<const int32_t> eos_ids);

// MinNewTokensLengthLogitsProcessor: bans the eos ids while fewer than min_new_tokens tokens follow the prompt.
void apply_min_new_tokens(std::span<float> scores, size_t sequence_length, int prompt_length, int min_new_tokens,
                          std::span<const int32_t> eos_ids);

// SuppressTokensLogitsProcessor: bans the listed tokens (ids outside the vocabulary are ignored, as torch.isin does).
void apply_suppress_tokens(std::span<float> scores, std::span<const int32_t> suppress_tokens);

// OpenAI's presence and frequency penalties (their API reference, and vLLM): over the generated tokens only,
// logit[v] -= presence * (count[v] > 0) + frequency * count[v]. Both in [-2, 2]; outside is an error.
void apply_presence_frequency_penalty(std::span<float> scores, std::span<const int32_t> generated, double presence,
                                      double frequency);

// ---- warpers: applied only when sampling, in this order ----

// TemperatureLogitsWarper: scores / temperature (temperature > 0).
void apply_temperature(std::span<float> scores, double temperature);

// TopKLogitsWarper: keeps every score >= the k-th largest (so ties with it are all kept).
void apply_top_k(std::span<float> scores, int top_k, int min_tokens_to_keep = 1);

// TopPLogitsWarper: sorts ascending, removes the tokens whose cumulative probability is <= 1 - top_p, keeps the
// min_tokens_to_keep most probable.
void apply_top_p(std::span<float> scores, double top_p, int min_tokens_to_keep = 1);

// MinPLogitsWarper: removes tokens whose probability is below min_p times the top probability.
void apply_min_p(std::span<float> scores, double min_p, int min_tokens_to_keep = 1);

// TypicalLogitsWarper: keeps the tokens whose surprisal is closest to the entropy, up to probability mass `mass`.
void apply_typical(std::span<float> scores, double mass, int min_tokens_to_keep = 1);

// Log-probabilities of one position: log-softmax of its logits (as they come from the model, before any processor),
// the chosen token's and the `top` most likely ones, most likely first (equal ones: the lower id first).
struct TokenLogprobs {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
// `top` is clamped to the vocabulary; throws inferno::Error for empty logits or a token outside them.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top);

// The processors above in the order transformers' `generate` builds them (`_get_logits_processor`), each only when
// its parameter asks for it, the warpers only when params.do_sample. prompt_length is the number of leading entries
// of ids_so_far that are the prompt. Throws inferno::Error for an invalid parameter or token id.
void apply_logits_processors(std::span<float> scores, std::span<const int32_t> ids_so_far, int prompt_length,
                             const SamplingParams& params);

}  // namespace inferno::gen
