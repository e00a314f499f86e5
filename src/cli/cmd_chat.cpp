// `inferno chat`: multi-turn chat in the terminal. The KV cache is kept across turns, so each turn prefills only the
// tokens that are new (the template's rendering of the conversation so far shares its prefix with the last one).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.hpp"

namespace inferno::cli {

namespace {

// One chat turn from stdin is at most 1 MiB (some 250k tokens, more than any context holds): a stdin without line
// ends (/dev/zero, a binary file) is refused once that much has come, instead of growing the line without end.
constexpr size_t kMaxChatLineBytes = size_t(1) << 20;

// std::getline with a bound: false at the end of input (with nothing read), an Error past kMaxChatLineBytes.
bool read_bounded_line(std::istream& in, std::string& line) {
  line.clear();
  for (;;) {
    const int c = in.get();
    if (c == std::char_traits<char>::eof()) return !line.empty();
    if (c == '\n') return true;
    if (line.size() == kMaxChatLineBytes)
      throw Error("stdin: a line longer than " + std::to_string(kMaxChatLineBytes) + " bytes; chat reads one turn per line");
    line += char(c);
  }
}

struct ChatArgs {
  ModelArgs model;
  std::string system, template_file;
  int max_new_tokens = 512;
  bool greedy = false;
  std::optional<uint64_t> seed;
  std::optional<float> temperature;
};

int run_chat(const ChatArgs& a) {
  ModelArgs margs = a.model;
  if (!margs.ctx) margs.ctx = 4096;
  Model model = load_model(margs);
  std::optional<std::string> tmpl;
  if (!a.template_file.empty()) {
    tmpl = read_text_file(a.template_file, 100'000'000);
  }
  Session session(model, session_options(margs));
  GenerateOptions options;
  options.max_new_tokens = a.max_new_tokens;
  options.sampling = default_sampling(model);
  if (a.temperature) options.sampling.temperature = *a.temperature, options.sampling.do_sample = true;
  if (a.seed) options.sampling.seed = *a.seed, options.sampling.do_sample = true;
  if (a.greedy) options.sampling.do_sample = false;

  std::vector<ChatMessage> messages;
  if (!a.system.empty()) messages.push_back({"system", a.system});
  model.render_chat(messages.empty() ? std::vector<ChatMessage>{{"user", "hi"}} : messages, true, tmpl);  // fail early
  const bool interactive = isatty(STDIN_FILENO);
  if (interactive) std::fprintf(stderr, "chat with %s: /reset starts over, /exit or Ctrl-D leaves\n", model.info().path.c_str());
  std::string line;
  for (;;) {
    if (interactive) std::fprintf(stderr, "> ");
    if (!read_bounded_line(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages.resize(a.system.empty() ? 0 : 1);
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({"user", line});
    const auto prompt = model.tokenize(model.render_chat(messages, true, tmpl), false);
    TextStream stream(model);
    std::string reply;
    session.generate(prompt, options, [&](int32_t token) {
      const std::string piece = stream.push(token);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    const std::string rest = stream.finish();
    reply += rest;
    std::printf("%s\n", rest.c_str());
    std::fflush(stdout);
    messages.push_back({"assistant", reply});
    const auto& s = session.stats();
    std::fprintf(stderr, "[%d new prompt tokens, %d reused; %d tokens at %.1f tok/s]\n", s.prompt_tokens, s.reused_tokens,
                 s.new_tokens, s.decode_seconds > 0 ? (s.new_tokens - 1) / s.decode_seconds : 0.0);
  }
  return 0;
}

}  // namespace

void add_chat_command(CLI::App& app, Action& action) {
  auto a = std::make_shared<ChatArgs>();
  auto* cmd = app.add_subcommand("chat", "interactive multi-turn chat (reads user turns from stdin, one per line)");
  add_model_args(*cmd, a->model);
  cmd->add_option("--system", a->system, "system message");
  cmd->add_option("--template", a->template_file, "a Jinja chat template file instead of the model's");
  cmd->add_option("-n,--max-new-tokens", a->max_new_tokens, "tokens per reply at most (default 512)")->check(int_in(1, kMaxTokens));
  cmd->add_flag("--greedy", a->greedy, "greedy decoding");
  cmd->add_option("--seed", a->seed, "sampling seed")->check(uint64_any());
  cmd->add_option("--temperature", a->temperature, "sampling temperature")->check(real_in(0, 1e6, true));
  cmd->callback([&action, a] { action = [a] { return run_chat(*a); }; });
}

}  // namespace inferno::cli
