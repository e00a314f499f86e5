// `inferno tokenize` and `inferno template`: text tools that need only the tokenizer files.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.hpp"

namespace inferno::cli {

namespace {

// Templates and message lists are kilobytes; 100 MB bounds what a wrong path can make the command read.
std::string read_text_file(const std::string& path) { return inferno::read_text_file(path, 100'000'000); }

struct TokenizeArgs {
  std::string path, text;
  bool no_special = false;
};

struct TemplateArgs {
  std::string path, template_file, messages_file;
  bool add_generation_prompt = false;
};

}  // namespace

void add_text_commands(CLI::App& app, Action& action) {
  {
    auto a = std::make_shared<TokenizeArgs>();
    auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text");
    cmd->add_option("-m,--model", a->path, "directory with tokenizer.json")->required();
    cmd->add_option("text", a->text, "the text")->required();
    cmd->add_flag("--no-special", a->no_special, "add no special tokens (BOS)");
    cmd->callback([&action, a] {
      action = [a] {
        const auto ids = Tokenizer::load(a->path).encode(a->text, !a->no_special);
        std::string line;
        for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
        std::printf("%s\n", line.c_str());
        return 0;
      };
    });
  }
  {
    auto a = std::make_shared<TemplateArgs>();
    auto* cmd = app.add_subcommand("template", "render the chat template for a list of messages");
    cmd->add_option("-m,--model", a->path, "directory with tokenizer_config.json")->required();
    cmd->add_option("--template", a->template_file, "a Jinja template file instead of the model's");
    cmd->add_option("--messages", a->messages_file, "JSON file: a list of {role, content}")->required();
    cmd->add_flag("--add-generation-prompt", a->add_generation_prompt, "end with the assistant's header");
    cmd->callback([&action, a] {
      action = [a] {
        std::optional<std::string> source;
        if (!a->template_file.empty()) source = read_text_file(a->template_file);
        const std::string text =
            Tokenizer::load(a->path).render_chat_json(read_text_file(a->messages_file), a->add_generation_prompt, source);
        std::fwrite(text.data(), 1, text.size(), stdout);
        return 0;
      };
    });
  }
}

}  // namespace inferno::cli
