#include "generate/logits_processors.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <system_error>

#include "util/error.hpp"

namespace inferno::gen {
namespace {

// transformers' filter_value: a removed token's score.
constexpr float kFilterValue = -std::numeric_limits<float>::infinity();

void check_not_empty(std::span<const float> scores, const char* processor) {
  if (scores.empty()) fail(std::string(processor) + ": the logits are empty (a vocabulary of 0 tokens)");
}

void check_min_tokens_to_keep(int min_tokens_to_keep, const char* processor) {
  if (min_tokens_to_keep < 1)
    fail(std::string(processor) + ": min_tokens_to_keep must be >= 1, got " + std::to_string(min_tokens_to_keep));
}

// torch indexes with these ids (gather/scatter), which fails for an id outside the vocabulary: so does this.
void check_token_ids(std::span<const int32_t> ids, size_t vocab_size, const char* processor) {
  for (int32_t id : ids)
    if (id < 0 || size_t(id) >= vocab_size)
      fail(std::string(processor) + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
           std::to_string(vocab_size) + " tokens");
}

bool contains(std::span<const int32_t> ids, int32_t id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

// torch's float orders: NaN sorts after every number ascending and before every number descending.
bool torch_less(float a, float b) { return (!std::isnan(a) && std::isnan(b)) || a < b; }
bool torch_greater(float a, float b) { return (std::isnan(a) && !std::isnan(b)) || a > b; }

// The permutation torch.sort(values) (ascending, stable=False) produces on CPU. ATen runs std::sort over (value,
// index) pairs that start in index order and compares values only; sorting indices with the same algorithm and
// comparator goes through the same steps, so ties come out in torch's order too (top-p cuts by position, so the
// order of equal logits decides which of them survive).
std::vector<int32_t> torch_sort_ascending(std::span<const float> values) {
  std::vector<int32_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return torch_less(values[a], values[b]); });
  return order;
}

// torch's max reduction: NaN wins.
float torch_max(std::span<const float> values) {
  float max = values[0];
  for (float v : values)
    if (std::isnan(v) || v > max) {
      max = v;
      if (std::isnan(v)) break;
    }
  return max;
}

// torch.softmax over a row in float32: exp(x - max) in float, times the reciprocal of their sum. torch sums in float
// vector lanes in an order of its own; the sum here is accumulated in double and rounded once, which is within an
// ulp of any float summation order.
std::vector<float> softmax_f32(std::span<const float> logits) {
  const float max = torch_max(logits);
  std::vector<float> probs(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp(logits[i] - max);
    sum += probs[i];
  }
  const float inverse_sum = 1.0f / float(sum);
  for (float& p : probs) p *= inverse_sum;
  return probs;
}

// torch.log_softmax over a row in float32: (x - max) - log(sum of exp(x - max)).
std::vector<float> log_softmax_f32(std::span<const float> logits) {
  const float max = torch_max(logits);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max);
  const float log_sum = std::log(float(sum));
  std::vector<float> log_probs(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) log_probs[i] = (logits[i] - max) - log_sum;
  return log_probs;
}

// torch.cumsum of a float32 row on CPU: ATen accumulates in double and rounds each partial sum to float.
std::vector<float> cumsum_f32(std::span<const float> values) {
  std::vector<float> sums(values.size());
  double running = 0.0;
  for (size_t i = 0; i < values.size(); ++i) {
    running += values[i];
    sums[i] = float(running);
  }
  return sums;
}

std::vector<float> gather(std::span<const float> values, std::span<const int32_t> order) {
  std::vector<float> out(order.size());
  for (size_t i = 0; i < order.size(); ++i) out[i] = values[order[i]];
  return out;
}

void ban_eos(std::span<float> scores, std::span<const int32_t> eos_ids) {
  for (int32_t eos : eos_ids)  // torch.isin: ids outside the vocabulary match nothing
    if (eos >= 0 && size_t(eos) < scores.size()) scores[eos] = kFilterValue;
}

// SamplingParams stores float fields, but transformers holds a Python float (a double) and computes some thresholds
// in double before torch rounds them to float32: `1 - top_p` for 0.8 gives 0.2f in transformers but the float
// below 0.2f from the float 0.8f. The float came from a decimal someone wrote, so the shortest decimal that rounds to
// it, read as a double, is the double transformers would hold.
double as_python_float(float value) {
  char text[64];
  const auto written = std::to_chars(text, text + sizeof text, value);
  double widened = value;
  if (written.ec == std::errc()) std::from_chars(text, written.ptr, widened);
  return widened;
}

}  // namespace

void apply_repetition_penalty(std::span<float> scores, std::span<const int32_t> ids_so_far, double penalty) {
  check_not_empty(scores, "repetition_penalty");
  if (!(penalty > 0)) fail("repetition_penalty must be > 0, got " + std::to_string(penalty));
  check_token_ids(ids_so_far, scores.size(), "repetition_penalty");
  const float penalty_f32 = float(penalty);  // torch rounds the Python float to the scores' dtype
  std::vector<char> penalized(scores.size(), 0);
  for (int32_t id : ids_so_far) {
    if (penalized[id]) continue;  // gather/scatter of a repeated id penalizes it once
    penalized[id] = 1;
    const float score = scores[id];
    scores[id] = score < 0 ? score * penalty_f32 : score / penalty_f32;
  }
}

void apply_no_repeat_ngram(std::span<float> scores, std::span<const int32_t> ids_so_far, int ngram_size) {
  check_not_empty(scores, "no_repeat_ngram_size");
  if (ngram_size <= 0) fail("no_repeat_ngram_size must be > 0, got " + std::to_string(ngram_size));
  check_token_ids(ids_so_far, scores.size(), "no_repeat_ngram_size");
  const size_t n = size_t(ngram_size);
  const size_t length = ids_so_far.size();
  if (length < n) return;  // no complete n-gram yet
  // The next token completes an n-gram whose first n-1 tokens are the last n-1 of the sequence; every window of the
  // sequence that starts with those tokens bans the token that completed it.
  const auto suffix = ids_so_far.subspan(length - (n - 1));
  for (size_t start = 0; start + n <= length; ++start)
    if (std::equal(suffix.begin(), suffix.end(), ids_so_far.begin() + start))
      scores[ids_so_far[start + n - 1]] = kFilterValue;
}

void apply_bad_words(std::span<float> scores, std::span<const int32_t> ids_so_far,
                     const std::vector<std::vector<int32_t>>& bad_words_ids, std::span<const int32_t> eos_ids) {
  check_not_empty(scores, "bad_words_ids");
  for (const auto& word : bad_words_ids) {
    if (word.empty()) fail("bad_words_ids: a bad word is an empty list of token ids");
    check_token_ids(word, scores.size(), "bad_words_ids");
  }
  // transformers turns each bad word into a bias of -inf on its last token and adds the bias to the scores.
  std::vector<char> banned(scores.size(), 0);
  for (const auto& word : bad_words_ids) {
    if (word.size() == 1) {
      if (!contains(eos_ids, word[0])) banned[word[0]] = 1;  // a bad word that is just an eos id is dropped
      continue;
    }
    if (word.size() > ids_so_far.size()) continue;  // transformers skips words longer than the sequence
    const size_t prefix_length = word.size() - 1;
    if (std::equal(word.begin(), word.begin() + prefix_length, ids_so_far.end() - prefix_length))
      banned[word.back()] = 1;
  }
  for (size_t token = 0; token < scores.size(); ++token)
    if (banned[token]) scores[token] += kFilterValue;
}

void apply_min_length(std::span<float> scores, size_t sequence_length, int min_length,
                      std::span<const int32_t> eos_ids) {
  check_not_empty(scores, "min_length");
  if (min_length < 0) fail("min_length must be >= 0, got " + std::to_string(min_length));
  if (sequence_length < size_t(min_length)) ban_eos(scores, eos_ids);
}

void apply_min_new_tokens(std::span<float> scores, size_t sequence_length, int prompt_length, int min_new_tokens,
                          std::span<const int32_t> eos_ids) {
  check_not_empty(scores, "min_new_tokens");
  if (min_new_tokens < 0) fail("min_new_tokens must be >= 0, got " + std::to_string(min_new_tokens));
  if (prompt_length < 0 || size_t(prompt_length) > sequence_length)
    fail("min_new_tokens: prompt length " + std::to_string(prompt_length) + " is not within the sequence of " +
         std::to_string(sequence_length) + " tokens");
  const size_t new_tokens = sequence_length - size_t(prompt_length);
  if (new_tokens < size_t(min_new_tokens)) ban_eos(scores, eos_ids);
}

void apply_suppress_tokens(std::span<float> scores, std::span<const int32_t> suppress_tokens) {
  check_not_empty(scores, "suppress_tokens");
  for (int32_t token : suppress_tokens)  // torch.isin: ids outside the vocabulary match nothing
    if (token >= 0 && size_t(token) < scores.size()) scores[token] = kFilterValue;
}

void apply_presence_frequency_penalty(std::span<float> scores, std::span<const int32_t> generated, double presence,
                                      double frequency) {
  check_not_empty(scores, "presence/frequency penalty");
  for (const auto& [name, value] : {std::pair{"presence_penalty", presence}, std::pair{"frequency_penalty", frequency}})
    if (!(value >= -2.0 && value <= 2.0)) fail(std::string(name) + " must be in [-2, 2], got " + std::to_string(value));
  check_token_ids(generated, scores.size(), "presence/frequency penalty");
  std::vector<uint32_t> counts(scores.size(), 0);
  for (int32_t id : generated) ++counts[size_t(id)];
  for (size_t v = 0; v < scores.size(); ++v)
    if (counts[v]) scores[v] = float(double(scores[v]) - (presence + frequency * double(counts[v])));
}

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top) {
  check_not_empty(logits, "logprobs");
  if (token < 0 || size_t(token) >= logits.size())
    fail("logprobs: token id " + std::to_string(token) + " is outside the vocabulary of " +
         std::to_string(logits.size()) + " tokens");
  // log p(v) = x_v - (max + log(sum exp(x - max))): the sum in double, so the normalizer is exact to double
  // rounding; each value then rounds once to float.
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, double(x));
  double sum = 0.0;
  for (float x : logits) sum += std::exp(double(x) - max);
  const double log_normalizer = max + std::log(sum);
  TokenLogprobs out;
  out.logprob = float(double(logits[size_t(token)]) - log_normalizer);
  const size_t k = std::min(size_t(std::max(top, 0)), logits.size());
  if (k == 0) return out;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + long(k), order.end(), [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  for (size_t i = 0; i < k; ++i)
    out.top.emplace_back(order[i], float(double(logits[size_t(order[i])]) - log_normalizer));
  return out;
}

void apply_temperature(std::span<float> scores, double temperature) {
  check_not_empty(scores, "temperature");
  if (!(temperature > 0))
    fail("temperature must be > 0 when sampling, got " + std::to_string(temperature) +
         " (for greedy decoding, do not sample)");
  const float temperature_f32 = float(temperature);  // torch divides by the float32 rounding of the Python float
  for (float& s : scores) s = s / temperature_f32;
}

void apply_top_k(std::span<float> scores, int top_k, int min_tokens_to_keep) {
  check_not_empty(scores, "top_k");
  if (top_k <= 0) fail("top_k must be > 0, got " + std::to_string(top_k));
  check_min_tokens_to_keep(min_tokens_to_keep, "top_k");
  const size_t k = std::min(size_t(std::max(top_k, min_tokens_to_keep)), scores.size());
  std::vector<float> sorted(scores.begin(), scores.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), torch_greater);
  const float kth_largest = sorted[k - 1];
  for (float& s : scores)
    if (s < kth_largest) s = kFilterValue;
}

void apply_top_p(std::span<float> scores, double top_p, int min_tokens_to_keep) {
  check_not_empty(scores, "top_p");
  if (!(top_p >= 0 && top_p <= 1)) fail("top_p must be within [0, 1], got " + std::to_string(top_p));
  check_min_tokens_to_keep(min_tokens_to_keep, "top_p");
  const std::vector<int32_t> order = torch_sort_ascending(scores);
  const std::vector<float> cumulative = cumsum_f32(softmax_f32(gather(scores, order)));
  // `cumulative <= 1 - top_p`: the difference is taken in double, then torch compares in float32.
  const float removable_mass = float(1.0 - top_p);
  const size_t always_kept = std::min(size_t(min_tokens_to_keep), scores.size());
  const size_t removable = scores.size() - always_kept;  // the most probable tokens sit at the end
  std::vector<char> removed(scores.size(), 0);
  for (size_t position = 0; position < removable; ++position)
    if (cumulative[position] <= removable_mass) removed[order[position]] = 1;
  for (size_t token = 0; token < scores.size(); ++token)
    if (removed[token]) scores[token] = kFilterValue;
}

void apply_min_p(std::span<float> scores, double min_p, int min_tokens_to_keep) {
  check_not_empty(scores, "min_p");
  if (!(min_p >= 0 && min_p <= 1)) fail("min_p must be within [0, 1], got " + std::to_string(min_p));
  check_min_tokens_to_keep(min_tokens_to_keep, "min_p");
  const std::vector<float> probs = softmax_f32(scores);
  const float threshold = float(min_p) * torch_max(probs);
  std::vector<char> removed(scores.size(), 0);
  for (size_t token = 0; token < scores.size(); ++token) removed[token] = probs[token] < threshold;
  // The min_tokens_to_keep most probable tokens stay whatever their probability (ties: lower id first).
  const size_t always_kept = std::min(size_t(min_tokens_to_keep), scores.size());
  std::vector<int32_t> by_probability(scores.size());
  std::iota(by_probability.begin(), by_probability.end(), 0);
  std::partial_sort(by_probability.begin(), by_probability.begin() + always_kept, by_probability.end(),
                    [&](int32_t a, int32_t b) {
                      if (torch_greater(probs[a], probs[b])) return true;
                      if (torch_greater(probs[b], probs[a])) return false;
                      return a < b;
                    });
  for (size_t i = 0; i < always_kept; ++i) removed[by_probability[i]] = 0;
  for (size_t token = 0; token < scores.size(); ++token)
    if (removed[token]) scores[token] = kFilterValue;
}

void apply_typical(std::span<float> scores, double mass, int min_tokens_to_keep) {
  check_not_empty(scores, "typical_p");
  if (!(mass > 0 && mass < 1)) fail("typical_p must be within (0, 1), got " + std::to_string(mass));
  check_min_tokens_to_keep(min_tokens_to_keep, "typical_p");
  const size_t vocab = scores.size();
  const std::vector<float> log_probs = log_softmax_f32(scores);
  // Entropy by nansum: a filtered token contributes (-inf) * 0 = NaN, which nansum skips.
  double negative_entropy = 0.0;
  for (float log_p : log_probs) {
    const float term = log_p * std::exp(log_p);
    if (!std::isnan(term)) negative_entropy += term;
  }
  const float entropy = -float(negative_entropy);
  std::vector<float> distance(vocab);  // |surprisal - entropy|
  for (size_t i = 0; i < vocab; ++i) distance[i] = std::fabs(-log_probs[i] - entropy);

  const std::vector<int32_t> order = torch_sort_ascending(distance);
  const std::vector<float> cumulative = cumsum_f32(softmax_f32(gather(scores, order)));
  const float mass_f32 = float(mass);
  size_t last_kept = 0;
  for (float c : cumulative) last_kept += c < mass_f32;
  last_kept = std::min(last_kept, vocab - 1);
  const float cutoff = distance[order[last_kept]];
  std::vector<char> removed(vocab, 0);
  for (size_t position = std::min(size_t(min_tokens_to_keep), vocab); position < vocab; ++position)
    if (distance[order[position]] > cutoff) removed[order[position]] = 1;
  for (size_t token = 0; token < vocab; ++token)
    if (removed[token]) scores[token] = kFilterValue;
}

void apply_logits_processors(std::span<float> scores, std::span<const int32_t> ids_so_far, int prompt_length,
                             const SamplingParams& params) {
  check_not_empty(scores, "logits processors");
  if (prompt_length < 0 || size_t(prompt_length) > ids_so_far.size())
    fail("logits processors: prompt length " + std::to_string(prompt_length) + " is not within the sequence of " +
         std::to_string(ids_so_far.size()) + " tokens");

  if (params.repetition_penalty != 1.0f)
    apply_repetition_penalty(scores, ids_so_far, as_python_float(params.repetition_penalty));
  if (params.no_repeat_ngram_size > 0) apply_no_repeat_ngram(scores, ids_so_far, params.no_repeat_ngram_size);
  if (!params.bad_words_ids.empty()) apply_bad_words(scores, ids_so_far, params.bad_words_ids, params.eos_ids);
  if (params.min_length > 0 && !params.eos_ids.empty())
    apply_min_length(scores, ids_so_far.size(), params.min_length, params.eos_ids);
  if (params.min_new_tokens > 0 && !params.eos_ids.empty())
    apply_min_new_tokens(scores, ids_so_far.size(), prompt_length, params.min_new_tokens, params.eos_ids);
  if (!params.suppress_tokens.empty()) apply_suppress_tokens(scores, params.suppress_tokens);
  if (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f)
    apply_presence_frequency_penalty(scores, ids_so_far.subspan(size_t(prompt_length)),
                                     as_python_float(params.presence_penalty), as_python_float(params.frequency_penalty));

  if (!params.do_sample) return;
  if (params.temperature != 1.0f) apply_temperature(scores, as_python_float(params.temperature));
  if (params.top_k != 0) apply_top_k(scores, params.top_k);
  if (params.top_p < 1.0f) apply_top_p(scores, as_python_float(params.top_p));
  if (params.min_p != 0.0f) apply_min_p(scores, as_python_float(params.min_p));  // min_p 0 removes nothing
  if (params.typical_p < 1.0f) apply_typical(scores, as_python_float(params.typical_p));
}

}  // namespace inferno::gen
