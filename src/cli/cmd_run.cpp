// `inferno logits`, `inferno generate`, `inferno perplexity`: commands that run the model.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "cli/commands.hpp"

namespace inferno::cli {

namespace {

// -n when neither the flag nor generation_config.json gives a length (transformers would stop at 20 in all).
constexpr int kDefaultMaxNewTokens = 64;

struct LogitsArgs {
  ModelArgs model;
  std::string ids, out;
};

int run_logits(const LogitsArgs& a) {
  const auto ids = parse_ids(a.ids, "--ids");
  Model model = load_model(a.model);
  Session session(model, session_options(a.model));
  const auto logits = session.logits(ids);
  const int64_t vocab = int64_t(model.info().vocab_size);
  write_safetensors_f32(a.out, {{"logits", {int64_t(ids.size()), vocab}, &logits}});
  std::fprintf(stderr, "wrote logits [%zu, %lld] to %s\n", ids.size(), (long long)vocab, a.out.c_str());
  return 0;
}

struct GenerateArgs {
  ModelArgs model;
  std::vector<std::string> ids;  // one per sequence: several make a batch
  std::string prompt, system;
  bool chat = false, print_ids = false, ignore_eos = false, greedy = false;
  int max_new_tokens = -1;
  std::optional<uint64_t> seed;
  std::optional<float> temperature, top_p, min_p, typical_p, repetition_penalty;
  std::optional<int> top_k, no_repeat_ngram_size, min_new_tokens, min_length;
  std::string suppress_tokens, bad_words;
  std::vector<std::string> stop;
};

// "1,2;3" → {{1,2},{3}}
std::vector<std::vector<int32_t>> parse_id_lists(const std::string& text, const char* flag) {
  std::vector<std::vector<int32_t>> lists;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ';'))
    if (part.find_first_not_of(" ") != std::string::npos) lists.push_back(parse_ids(part, flag));
  return lists;
}

GenerateOptions generate_options(const GenerateArgs& a, const Model& model) {
  GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;  // -1: set in run_generate once the prompt length is known
  o.ignore_eos = a.ignore_eos;
  SamplingOptions& s = o.sampling;
  s = default_sampling(model);
  const bool asks_sampling = a.seed || a.temperature || a.top_p || a.min_p || a.typical_p || a.top_k;
  if (asks_sampling) s.do_sample = true;
  if (a.greedy) s.do_sample = false;
  if (a.temperature) s.temperature = *a.temperature;
  if (a.top_k) s.top_k = *a.top_k;
  if (a.top_p) s.top_p = *a.top_p;
  if (a.min_p) s.min_p = *a.min_p;
  if (a.typical_p) s.typical_p = *a.typical_p;
  if (a.repetition_penalty) s.repetition_penalty = *a.repetition_penalty;
  if (a.no_repeat_ngram_size) s.no_repeat_ngram_size = *a.no_repeat_ngram_size;
  if (a.min_new_tokens) s.min_new_tokens = *a.min_new_tokens;
  if (a.min_length) s.min_length = *a.min_length;
  if (!a.suppress_tokens.empty()) s.suppress_tokens = parse_ids(a.suppress_tokens, "--suppress-tokens");
  if (!a.bad_words.empty()) s.bad_words_ids = parse_id_lists(a.bad_words, "--bad-words-ids");
  if (a.seed) {
    s.seed = *a.seed;
  } else if (s.do_sample) {
    s.seed = std::random_device{}();
    std::fprintf(stderr, "sampling with seed %llu (pass --seed to repeat)\n", (unsigned long long)s.seed);
  }
  return o;
}

void print_stats(const Session& session) {
  const auto& s = session.stats();
  const double prefill_tps = s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0;
  const double decode_tps = s.decode_seconds > 0 && s.new_tokens > 1 ? (s.new_tokens - 1) / s.decode_seconds : 0;
  std::fprintf(stderr,
               "prompt tokens: %d (%d reused from the cache), new tokens: %d\n"
               "prefill: %.1f tok/s, decode: %.1f tok/s, time to first token: %.1f ms\n",
               s.prompt_tokens, s.reused_tokens, s.new_tokens, prefill_tps, decode_tps, s.prefill_seconds * 1e3);
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  return line;
}

int run_generate(const GenerateArgs& a) {
  if (a.ids.empty() == a.prompt.empty()) throw UsageError("generate: give exactly one of --ids and -p/--prompt");
  if ((a.chat || !a.system.empty()) && a.prompt.empty()) throw UsageError("generate: --chat and --system need -p");
  Model model = load_model(a.model);
  GenerateOptions options = generate_options(a, model);

  std::vector<std::vector<int32_t>> prompts;
  for (const auto& s : a.ids) prompts.push_back(parse_ids(s, "--ids"));
  if (!a.prompt.empty()) {
    if (a.chat) {
      std::vector<ChatMessage> messages;
      if (!a.system.empty()) messages.push_back({"system", a.system});
      messages.push_back({"user", a.prompt});
      // apply_chat_template(tokenize=True) adds no special tokens beyond what the template writes.
      prompts.push_back(model.tokenize(model.render_chat(messages, true), false));
    } else {
      prompts.push_back(model.tokenize(a.prompt, true));
    }
  }

  if (options.max_new_tokens < 0) {
    // No -n: generation_config.json's max_new_tokens or max_length, as transformers' generate reads them.
    size_t longest = 0;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    options.max_new_tokens = default_max_new_tokens(model, longest, kDefaultMaxNewTokens);
  }

  if (prompts.size() > 1) {  // a batch: ids only
    Session session(model, session_options(a.model, uint32_t(prompts.size())));
    const auto outs = session.generate_batch(prompts, options);
    for (const auto& out : outs) {
      if (a.print_ids || !model.has_tokenizer()) std::printf("%s\n", join_ids(out).c_str());
      else std::printf("%s\n", model.detokenize(out).c_str());
    }
    print_stats(session);
    return 0;
  }

  Session session(model, session_options(a.model));
  std::optional<TextStream> stream;
  bool print_ids = a.print_ids;
  if (!print_ids && !model.has_tokenizer()) {
    std::fprintf(stderr, "inferno: no tokenizer.json beside the model: printing token ids\n");
    print_ids = true;
  }
  if (!print_ids) {
    stream.emplace(model);
    stream->prime(prompts[0]);  // the continuation reads as it does after the prompt: its first space kept
  }
  std::string text;
  auto on_token = [&](int32_t token) {
    if (!stream) return true;
    const std::string piece = stream->push(token);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    text += piece;
    for (const auto& s : a.stop)
      if (!s.empty() && text.find(s) != std::string::npos) return false;
    return true;
  };
  const auto out = session.generate(prompts[0], options, on_token);
  if (print_ids) {
    std::printf("%s\n", join_ids(out).c_str());
  } else {
    const std::string rest = stream->finish();
    std::printf("%s\n", rest.c_str());
  }
  std::fflush(stdout);
  print_stats(session);
  return 0;
}

struct PerplexityArgs {
  ModelArgs model;
  std::string file;
  uint32_t window = 257, stride = 256, max_windows = 0;
};

// The text `perplexity -f` reads whole: 256 MB, twice WikiText-103's training split; the bound is what keeps a
// wrong path (a huge file) from being read into memory at all.
constexpr uint64_t kMaxPerplexityTextBytes = 256'000'000;

int run_perplexity(const PerplexityArgs& a) {
  if (a.window < 2 || a.stride == 0 || a.stride >= a.window + 1)
    throw UsageError("perplexity: need --window >= 2 and 0 < --stride <= --window");
  const std::string text = read_text_file(a.file, kMaxPerplexityTextBytes);
  Model model = load_model(a.model);
  const auto tokens = model.tokenize(text, false);
  if (tokens.size() < 2) throw Error(a.file + ": fewer than two tokens of text");
  ModelArgs margs = a.model;
  if (!margs.ctx) margs.ctx = a.window;
  Session session(model, session_options(margs));
  const size_t vocab = model.info().vocab_size;
  double nll = 0;
  uint64_t predicted = 0;
  uint32_t windows = 0;
  // Windows start every `stride` tokens and are `window` long; each predicts its tokens after the first from the
  // window start only (the windowing of models/README.md).
  for (size_t start = 0; start + 1 < tokens.size(); start += a.stride) {
    if (a.max_windows && windows == a.max_windows) break;
    const size_t end = std::min(tokens.size(), start + a.window);
    std::vector<int32_t> ids(tokens.begin() + long(start), tokens.begin() + long(end));
    const auto logits = session.logits(ids);
    for (size_t t = 0; t + 1 < ids.size(); ++t) {
      const float* row = logits.data() + t * vocab;
      double mx = row[0];
      for (size_t v = 1; v < vocab; ++v) mx = std::max(mx, double(row[v]));
      double sum = 0;
      for (size_t v = 0; v < vocab; ++v) sum += std::exp(double(row[v]) - mx);
      nll += (mx + std::log(sum)) - double(row[ids[t + 1]]);
      ++predicted;
    }
    ++windows;
    if (!a.model.quiet) std::fprintf(stderr, "\rwindow %u: perplexity so far %.4f", windows, std::exp(nll / double(predicted)));
  }
  if (!a.model.quiet) std::fprintf(stderr, "\n");
  std::fprintf(stderr, "predicted tokens: %llu in %u windows\n", (unsigned long long)predicted, windows);
  std::printf("perplexity: %.4f\n", std::exp(nll / double(predicted)));
  return 0;
}

}  // namespace

void add_run_commands(CLI::App& app, Action& action) {
  {
    auto a = std::make_shared<LogitsArgs>();
    auto* cmd = app.add_subcommand("logits", "write the F32 logits of every position to a safetensors file");
    add_model_args(*cmd, a->model);
    cmd->add_option("--ids", a->ids, "prompt token ids, comma-separated")->required();
    cmd->add_option("--out", a->out, "output .safetensors file (tensor `logits`, [T, V])")->required();
    cmd->callback([&action, a] { action = [a] { return run_logits(*a); }; });
  }
  {
    auto a = std::make_shared<GenerateArgs>();
    auto* cmd = app.add_subcommand("generate", "generate a continuation of a prompt (text or token ids)");
    add_model_args(*cmd, a->model);
    cmd->add_option("--ids", a->ids, "prompt token ids, comma-separated; repeat for a batch of sequences");
    cmd->add_option("-p,--prompt", a->prompt, "prompt text");
    cmd->add_option("-n,--max-new-tokens", a->max_new_tokens, "tokens to generate at most (default: generation_config.json's max_new_tokens or max_length, else 64)")
        ->check(int_in(1, kMaxTokens));
    cmd->add_flag("--chat", a->chat, "wrap the prompt in the model's chat template");
    cmd->add_option("--system", a->system, "system message (with --chat)");
    cmd->add_flag("--print-ids", a->print_ids, "print the new token ids on one line instead of text");
    cmd->add_flag("--ignore-eos", a->ignore_eos, "do not stop at eos: generate exactly -n tokens");
    cmd->add_flag("--greedy", a->greedy, "greedy decoding (argmax)");
    cmd->add_option("--seed", a->seed, "sample with this seed (reproducible on the same device)")
        ->check(uint64_any());
    cmd->add_option("--temperature", a->temperature, "sampling temperature")->check(real_in(0, 1e6, true));
    cmd->add_option("--top-k", a->top_k, "keep the k most likely tokens (0: off)")->check(int_in(0, INT32_MAX));
    cmd->add_option("--top-p", a->top_p, "nucleus sampling mass")->check(real_in(0, 1));
    cmd->add_option("--min-p", a->min_p, "drop tokens below min_p times the top probability")
        ->check(real_in(0, 1));
    cmd->add_option("--typical-p", a->typical_p, "locally typical sampling mass (1: off)")->check(real_in(0, 1, true));
    cmd->add_option("--repetition-penalty", a->repetition_penalty, "penalty for tokens already present (1: off)")
        ->check(real_in(0, 1e6, true));
    cmd->add_option("--no-repeat-ngram-size", a->no_repeat_ngram_size, "ban repeating n-grams of this size (0: off)")
        ->check(int_in(0, INT32_MAX));
    cmd->add_option("--min-new-tokens", a->min_new_tokens, "ban eos before this many new tokens")->check(int_in(0, INT32_MAX));
    cmd->add_option("--min-length", a->min_length, "ban eos before the sequence has this many tokens")
        ->check(int_in(0, INT32_MAX));
    cmd->add_option("--suppress-tokens", a->suppress_tokens, "token ids never to generate, comma-separated");
    cmd->add_option("--bad-words-ids", a->bad_words, "banned id sequences: '1,2;3'");
    cmd->add_option("--stop", a->stop, "stop once the text contains this string (repeatable)");
    cmd->callback([&action, a] { action = [a] { return run_generate(*a); }; });
  }
  {
    auto a = std::make_shared<PerplexityArgs>();
    auto* cmd = app.add_subcommand("perplexity", "perplexity of a text file over sliding windows");
    add_model_args(*cmd, a->model);
    cmd->add_option("-f,--file", a->file, "text file")->required();
    cmd->add_option("--window", a->window, "tokens per window (default 257)")->check(int_in(2, kMaxCtx));
    cmd->add_option("--stride", a->stride, "tokens between window starts (default 256)")->check(int_in(1, kMaxCtx));
    cmd->add_option("--max-windows", a->max_windows, "stop after this many windows (0: no limit)")->check(int_in(0, INT32_MAX));
    cmd->callback([&action, a] { action = [a] { return run_perplexity(*a); }; });
  }
}

}  // namespace inferno::cli
