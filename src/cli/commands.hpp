#pragma once
// The `inferno` subcommands, each group in its own file, written on the public C++ API only.
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

#include "inferno/inferno.hpp"

namespace inferno::cli {

// What the chosen subcommand runs after parsing; returns the exit status.
using Action = std::function<int()>;

// Options every command that runs a model takes (CONTRACT.md: -m, --device, --kv-dtype, --ctx).
struct ModelArgs {
  std::string path;
  int device = -1;
  std::string kv_dtype = "auto";
  uint32_t ctx = 0;
  bool quiet = false;
  bool validation = false;
  std::string quantize = "none";
  std::string devices, split = "auto";  // --devices 0,1 --split auto|N1,N2
};
void add_model_args(CLI::App& cmd, ModelArgs& args);
Model load_model(const ModelArgs& args);
SessionOptions session_options(const ModelArgs& args, uint32_t batch = 1);
// "1,2,3" (also spaces) → ids; an empty or malformed list is a usage error naming the flag.
std::vector<int32_t> parse_ids(const std::string& text, const char* flag);
// --devices "0,1" (empty: none given) and --split "auto|N1,N2"; bad lists are usage errors.
std::vector<int> parse_devices(const std::string& text);
std::vector<uint32_t> parse_split_flag(const std::string& text);

void add_device_commands(CLI::App& app, Action& action);  // devices, info
void add_run_commands(CLI::App& app, Action& action);     // logits, generate, perplexity
void add_chat_command(CLI::App& app, Action& action);     // chat
void add_text_commands(CLI::App& app, Action& action);    // tokenize, template
void add_serve_command(CLI::App& app, Action& action);    // serve
void add_bench_command(CLI::App& app, Action& action);    // bench

// Thrown for bad usage found after parsing (exit status 2).
struct UsageError : Error {
  using Error::Error;
};

}  // namespace inferno::cli
