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
// Range checks run while parsing, so that a number out of range is a usage error (exit 2) before any model loads.
// The message names the range in the flag's own terms (CLI11's Range prints its bounds as 300-digit doubles).
// An integer within [lo, hi]:
CLI::Validator int_in(int64_t lo, int64_t hi);
// Any 64-bit unsigned integer, written in decimal digits only (seeds: CLI11 alone wraps "-1" around).
CLI::Validator uint64_any();
// A finite number within the interval; open ends exclude the bound (temperature > 0, typical_p in (0, 1]).
CLI::Validator real_in(double lo, double hi, bool lo_open = false, bool hi_open = false);
// Bounds shared by the commands: context and batch sizes (positions are int32 on the device; the KV cache of
// every layer is one storage buffer, so larger values could never run) and token counts.
constexpr int64_t kMaxCtx = int64_t(1) << 28;
constexpr int64_t kMaxBatch = 65536;
constexpr int64_t kMaxTokens = int64_t(1) << 28;
// "1,2,3" (also spaces) → ids; an empty or malformed list is a usage error naming the flag.
std::vector<int32_t> parse_ids(const std::string& text, const char* flag);
// --devices "0,1" (empty: none given) and --split "auto|N1,N2"; bad lists are usage errors.
std::vector<int> parse_devices(const std::string& text);
std::vector<uint32_t> parse_split_flag(const std::string& text);
// --kv-budget PCT% | SIZE; a bad value is a usage error (exit 2) naming the flag.
KvBudget parse_kv_budget_flag(const std::string& text);

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
