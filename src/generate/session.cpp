#include "generate/session.hpp"

#include <algorithm>
#include <optional>

#include "generate/sampler.hpp"
#include "util/error.hpp"

namespace inferno::gen {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool is_eos(int32_t token, const GenerateOptions& o) {
  if (o.ignore_eos) return false;
  return std::find(o.sampling.eos_ids.begin(), o.sampling.eos_ids.end(), token) != o.sampling.eos_ids.end();
}
}  // namespace

Session::Session(const model::LlamaModel& model, uint32_t capacity, kernels::KvType kv_type, uint32_t batch,
                 bool timestamps)
    : Session(std::vector<const model::LlamaModel*>{&model}, capacity, kv_type, batch, timestamps) {}

Session::Session(std::vector<const model::LlamaModel*> stages, uint32_t capacity, kernels::KvType kv_type,
                 uint32_t batch, bool timestamps)
    : model_(*stages.at(0)), pipeline_(stages, batch, capacity, kv_type, timestamps) {}

Session::~Session() = default;

int32_t Session::choose(std::span<float> logits, std::span<const int32_t> ids_so_far, int prompt_length,
                        const GenerateOptions& options, GrammarMatcher* matcher) {
  SamplingParams params = options.sampling;
  if (options.ignore_eos) params.eos_ids.clear();
  if (matcher) matcher->apply_mask(logits, params.eos_ids);
  apply_logits_processors(logits, ids_so_far, prompt_length, params);
  if (!params.do_sample) return argmax(logits);
  if (!sampler_ || sampler_seed_ != params.seed) {
    sampler_ = std::make_unique<Sampler>(params.seed);
    sampler_seed_ = params.seed;
  }
  return sampler_->sample(logits);
}

std::vector<int32_t> Session::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                       const TokenCallback& on_token) {
  if (forward().cache().batch() != 1) throw Error("Session::generate needs a batch-1 session");
  if (prompt.empty()) throw Error("the prompt is empty: nothing to generate from");
  stats_ = {};
  // Reuse the cache for the common prefix, but always run at least the prompt's last token to get its logits.
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  pipeline_.rewind(uint32_t(common));
  cached_.assign(prompt.begin(), prompt.begin() + long(common));
  stats_.reused_tokens = int(common);
  stats_.prompt_tokens = int(prompt.size() - common);
  const uint32_t capacity = forward().cache().capacity();
  if (prompt.size() > capacity)
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens, more than the " + std::to_string(capacity) +
                "-token context (raise --ctx)");

  std::vector<int32_t> ids(prompt.begin(), prompt.end()), generated;
  const int32_t kv_start = 0;
  std::vector<int32_t> step_ids(prompt.begin() + long(common), prompt.end()), positions;
  for (size_t i = common; i < prompt.size(); ++i) positions.push_back(int32_t(i));
  std::optional<GrammarMatcher> matcher;
  if (options.grammar) matcher.emplace(options.grammar);
  auto t0 = Clock::now();
  while (int(generated.size()) < options.max_new_tokens) {
    if (pipeline_.past() + step_ids.size() > capacity)
      throw Error("context full after " + std::to_string(generated.size()) + " new tokens: the KV cache holds " +
                  std::to_string(capacity) + " tokens (raise --ctx)");
    auto logits = pipeline_.step({.batch = 1, .tokens = uint32_t(step_ids.size()), .ids = step_ids,
                                 .positions = positions, .kv_start = std::span(&kv_start, 1)});
    cached_.insert(cached_.end(), step_ids.begin(), step_ids.end());
    if (generated.empty()) stats_.prefill_seconds = seconds_since(t0);
    const int32_t token = choose(logits, ids, int(prompt.size()), options, matcher ? &*matcher : nullptr);
    generated.push_back(token);
    ids.push_back(token);
    stats_.new_tokens = int(generated.size());
    const bool keep_going = !on_token || on_token(token);
    if (is_eos(token, options) || !keep_going) break;
    if (matcher && matcher->advance(token) && matcher->finished()) break;
    step_ids = {token};
    positions = {int32_t(ids.size() - 1)};
  }
  stats_.decode_seconds = seconds_since(t0) - stats_.prefill_seconds;
  return generated;
}

std::vector<std::vector<int32_t>> Session::generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                          const GenerateOptions& options, int32_t pad_id) {
  const uint32_t batch = uint32_t(prompts.size());
  if (batch != forward().cache().batch())
    throw Error("generate_batch: " + std::to_string(batch) + " prompts for a session of batch " +
                std::to_string(forward().cache().batch()));
  size_t longest = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw Error("generate_batch: an empty prompt");
    longest = std::max(longest, p.size());
  }
  pipeline_.rewind(0);
  cached_.clear();
  stats_ = {};
  // Left padding, attention mask and position ids as transformers builds them: positions = cumsum(mask) - 1, and 1
  // where the mask is 0 (those slots are masked out of attention anyway).
  const uint32_t tokens = uint32_t(longest);
  std::vector<int32_t> step_ids(size_t(batch) * tokens, pad_id), positions(size_t(batch) * tokens, 1), kv_start(batch);
  std::vector<std::vector<int32_t>> seqs(batch);
  std::vector<int32_t> next_position(batch);
  for (uint32_t b = 0; b < batch; ++b) {
    const size_t pad = longest - prompts[b].size();
    kv_start[b] = int32_t(pad);
    for (size_t t = 0; t < prompts[b].size(); ++t) {
      step_ids[b * tokens + pad + t] = prompts[b][t];
      positions[b * tokens + pad + t] = int32_t(t);
    }
    seqs[b] = prompts[b];
    next_position[b] = int32_t(prompts[b].size());
  }
  stats_.prompt_tokens = int(step_ids.size());
  std::vector<std::vector<int32_t>> generated(batch);
  std::vector<bool> finished(batch, false);
  std::vector<std::optional<GrammarMatcher>> matchers(batch);
  if (options.grammar)
    for (auto& m : matchers) m.emplace(options.grammar);
  const uint32_t vocab = model_.hyper().vocab;
  auto t0 = Clock::now();
  for (int n = 0; n < options.max_new_tokens; ++n) {
    auto logits = pipeline_.step({.batch = batch, .tokens = uint32_t(step_ids.size() / batch), .ids = step_ids,
                                 .positions = positions, .kv_start = kv_start});
    if (n == 0) stats_.prefill_seconds = seconds_since(t0);
    step_ids.assign(batch, pad_id);
    positions.assign(batch, 0);
    for (uint32_t b = 0; b < batch; ++b) {
      int32_t token = pad_id;
      if (!finished[b]) {
        auto& matcher = matchers[b];
        token = choose(std::span(logits).subspan(size_t(b) * vocab, vocab), seqs[b], int(prompts[b].size()), options,
                       matcher ? &*matcher : nullptr);
        if (is_eos(token, options) || (matcher && matcher->advance(token) && matcher->finished())) finished[b] = true;
      }
      generated[b].push_back(token);
      seqs[b].push_back(token);
      step_ids[b] = token;
      positions[b] = next_position[b]++;
    }
    stats_.new_tokens = n + 1;
    if (std::all_of(finished.begin(), finished.end(), [](bool f) { return f; })) break;
  }
  stats_.decode_seconds = seconds_since(t0) - stats_.prefill_seconds;
  return generated;
}

std::vector<float> Session::all_logits(std::span<const int32_t> ids) {
  if (forward().cache().batch() != 1) throw Error("Session::all_logits needs a batch-1 session");
  if (ids.empty()) throw Error("no token ids given");
  pipeline_.rewind(0);
  cached_.assign(ids.begin(), ids.end());
  std::vector<int32_t> positions(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) positions[i] = int32_t(i);
  const int32_t kv_start = 0;
  return pipeline_.step({.batch = 1, .tokens = uint32_t(ids.size()), .ids = ids, .positions = positions,
                        .kv_start = std::span(&kv_start, 1), .rows = model::LogitsRows::All});
}

}  // namespace inferno::gen
