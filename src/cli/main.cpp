// inferno: Llama inference on Vulkan. Results go to stdout; progress, statistics and warnings to stderr; errors are
// one line on stderr with exit status 1 (2 for bad usage).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli/commands.hpp"

namespace inferno::cli {

namespace {
// An error message as one line: a newline or carriage return in it (a template's raise_exception message, a
// name read from a file) is written as \n or \r.
std::string one_line(std::string_view message) {
  std::string out;
  for (char c : message) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}
}  // namespace

void add_model_args(CLI::App& cmd, ModelArgs& a) {
  cmd.add_option("-m,--model", a.path, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd.add_option("--device", a.device, "Vulkan device index (see `inferno devices`); default: the preferred one")
      ->check(int_in(0, INT32_MAX));
  cmd.add_option("--kv-dtype", a.kv_dtype,
                 "KV cache dtype: f32, f16, bf16, q8 (int8, a scale per 32 values) (default: f32 for F32 weights, else f16)")
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16", "q8"}));
  cmd.add_option("--ctx", a.ctx, "KV cache size in tokens (default or 0: what the request needs)")
      ->check(int_in(0, kMaxCtx));
  cmd.add_flag("--quiet", a.quiet, "no loading bar");
  cmd.add_flag("--validation", a.validation, "enable the Vulkan validation layer (slow)");
  cmd.add_option("--quantize", a.quantize, "quantize float linear layers while loading: int8 (weight-only, per-row scales)")
      ->check(CLI::IsMember({"none", "int8"}));
  cmd.add_option("--devices", a.devices, "split the model's layers over these Vulkan devices, e.g. 0,1");
  cmd.add_option("--split", a.split, "layers per device with --devices: auto (from each device's free memory) or N1,N2,...");
}

std::vector<int> parse_devices(const std::string& text) {
  std::vector<int> devices;
  if (text.empty()) return devices;
  for (int32_t d : parse_ids(text, "--devices")) devices.push_back(int(d));
  return devices;
}

KvBudget parse_kv_budget_flag(const std::string& text) {
  try {
    return parse_kv_budget(text);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

std::vector<uint32_t> parse_split_flag(const std::string& text) {
  try {
    return parse_split(text);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

Model load_model(const ModelArgs& a) {
  ModelOptions options;
  options.device = a.device;
  options.quiet = a.quiet;
  options.validation = a.validation;
  options.quantize_int8 = a.quantize == "int8";
  options.devices = parse_devices(a.devices);
  if (!options.devices.empty() && a.device >= 0) throw UsageError("give --device or --devices, not both");
  options.split = parse_split_flag(a.split);
  if (!options.split.empty() && options.split.size() != std::max<size_t>(options.devices.size(), 1))
    throw UsageError("--split gives " + std::to_string(options.split.size()) + " layer counts for " +
                     std::to_string(std::max<size_t>(options.devices.size(), 1)) + " device(s)");
  options.ctx = a.ctx;
  options.kv_dtype = *parse_kv_dtype(a.kv_dtype);
  return Model::load(a.path, options);
}

SessionOptions session_options(const ModelArgs& a, uint32_t batch) {
  return {.ctx = a.ctx, .kv_dtype = *parse_kv_dtype(a.kv_dtype), .batch = batch};
}

namespace {
std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

CLI::Validator int_in(int64_t lo, int64_t hi) {
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(text.c_str(), &end, 10);
        if (text.empty() || end != text.c_str() + text.size())
          return "'" + text + "' is not an integer (expected " + range + ")";
        if (errno == ERANGE || v < lo || v > hi) return "must be in " + range + ", got " + text;
        return "";
      },
      "INT in " + range);
}

CLI::Validator uint64_any() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        errno = 0;
        char* end = nullptr;
        const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        if (digits) std::strtoull(text.c_str(), &end, 10);
        if (!digits || errno == ERANGE) return "must be an integer in 0..18446744073709551615, got " + text;
        return "";
      },
      "UINT64");
}

CLI::Validator real_in(double lo, double hi, bool lo_open, bool hi_open) {
  const std::string range =
      std::string(lo_open ? "(" : "[") + number_text(lo) + ", " + number_text(hi) + (hi_open ? ")" : "]");
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size())
          return "'" + text + "' is not a number (expected " + range + ")";
        const bool inside = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        if (!inside) return "must be a finite number in " + range + ", got " + text;
        return "";
      },
      "NUMBER in " + range);
}

std::vector<int32_t> parse_ids(const std::string& text, const char* flag) {
  std::vector<int32_t> ids;
  std::string cur;
  auto flush = [&] {
    if (cur.empty()) return;
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != cur.size() || v < 0 || v > INT32_MAX)
      throw UsageError(std::string(flag) + ": '" + cur + "' is not a token id");
    ids.push_back(int32_t(v));
    cur.clear();
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '\n' || c == '\t') flush();
    else cur += c;
  }
  flush();
  if (ids.empty()) throw UsageError(std::string(flag) + ": no token ids given");
  return ids;
}

}  // namespace inferno::cli

int main(int argc, char** argv) {
  using namespace inferno::cli;
  CLI::App app{"inferno: Llama inference on any Vulkan device"};
  app.require_subcommand(1);
  Action action;
  add_device_commands(app, action);
  add_run_commands(app, action);
  add_chat_command(app, action);
  add_text_commands(app, action);
  add_serve_command(app, action);
  add_bench_command(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "inferno: %s (see --help)\n", one_line(e.what()).c_str());
    return 2;
  }
  try {
    return action ? action() : 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "inferno: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inferno: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}
