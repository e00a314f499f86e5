#pragma once
// inferno's C++ API: the one door into the engine for C++ programs (and for inferno's own command line).
// Errors are thrown as inferno::Error (a std::runtime_error) with a one-line message naming the file, tensor or field.
//
// Thread-safety: a Model may be shared by several Sessions, also on different threads: every Session call that uses
// the device (construction, generate, logits, destruction) holds the model's lock, so their device work runs one
// at a time per model. Model's text functions (tokenize, detokenize, render_chat) are read-only and need no lock.
// A Session is used by one thread at a time. An on_token callback may use other sessions, never its own.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "inferno/error.hpp"

namespace inferno {

// ---- devices ----
struct DeviceInfo {
  int index = 0;
  std::string name, type, driver;  // type: discrete, integrated, virtual, cpu, other
  std::string api_version;
  uint64_t memory_bytes = 0;        // device-local heaps
  uint64_t budget_bytes = 0;
  bool chosen = false;              // what a run without --device takes
  bool float16 = false, int8 = false, storage_16bit = false, storage_8bit = false, bfloat16 = false;
  bool cooperative_matrix = false, integer_dot_product = false;
  std::vector<std::string> cooperative_matrix_shapes;  // "16x16x16 f16*f16+f32->f32", ...
  uint32_t subgroup_size = 0, min_subgroup_size = 0, max_subgroup_size = 0;
  bool subgroup_arithmetic = false;
  uint64_t max_storage_buffer_range = 0, max_allocation_bytes = 0;
  uint32_t max_shared_memory = 0;
  bool timestamps = false;
};
std::vector<DeviceInfo> list_devices();

// ---- models ----
enum class KvDtype { Auto, F32, F16, BF16 };  // Auto: f32 for F32 weights, f16 otherwise
std::optional<KvDtype> parse_kv_dtype(const std::string& name);
const char* kv_dtype_name(KvDtype);

// What a checkpoint holds, read from its headers and config alone (no device needed). A checkpoint whose tensors
// are missing or disagree in shape with its config is refused here, with the error loading it would give.
struct ModelInfo {
  std::filesystem::path path;
  std::string format;  // "safetensors" or "gguf"
  std::string tokenizer;  // "tokenizer.json", GGUF's "llama" / "gpt2", or "none"
  std::string family;  // "Llama 3.2", "TinyLlama", ...
  uint32_t layers = 0, hidden_size = 0, intermediate_size = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab_size = 0;
  uint32_t max_position_embeddings = 0;
  std::string rope_type, dtype, quantization;
  bool tied_embeddings = false, attention_bias = false, mlp_bias = false;
  uint64_t params = 0;                              // parameter count
  uint64_t weight_bytes = 0;                        // device bytes the weights take (= their on-disk bytes)
  std::map<std::string, uint64_t> tensor_bytes_by_dtype;
  // The dtype the weights of each group are stored in (as loaded: "I8" with quantize_int8), several joined by '+'
  // (a Q4_K_M file keeps some in Q6_K), in the order embedding, attention, mlp, norm, lm_head; a tied lm_head has
  // the embedding's. Biases are not counted.
  std::vector<std::pair<std::string, std::string>> dtype_by_group;
  std::vector<std::filesystem::path> shards;
  uint64_t shard_bytes = 0;                         // file sizes
};
// quantize_int8: the footprint `--quantize int8` gives (float linear layers as int8 + one f32 scale per row).
ModelInfo inspect_model(const std::filesystem::path& path, bool quantize_int8 = false);
// Device bytes of the KV cache (with its RoPE table) for a context and batch, and of the activations scratch that
// generation needs for a prompt of `prompt_tokens` per sequence (logits of each sequence's last token only).
uint64_t kv_cache_bytes(const ModelInfo& info, uint32_t ctx, uint32_t batch, KvDtype dtype);
uint64_t scratch_bytes(const ModelInfo& info, uint32_t prompt_tokens, uint32_t batch);

// Thrown by Model::load when its on_progress callback asks to stop.
struct Cancelled : Error {
  using Error::Error;
};

struct ModelOptions {
  int device = -1;     // -1: the preferred device
  bool quiet = false;  // no loading bar
  bool validation = false;  // Vulkan validation layer (slow; for debugging)
  bool quantize_int8 = false;  // float linear layers to int8 with per-row scales while loading (half the memory)
  // Called as loading goes on with the fraction done (0 first, 1 last); returning false stops the load, which then
  // throws Cancelled. Called between the loading stages (files checked, device opened, weights on the device,
  // tokenizer read), not per tensor.
  std::function<bool(float fraction)> on_progress;
};

struct ChatMessage {
  std::string role, content;
};

class Model {
 public:
  static Model load(const std::filesystem::path& path, const ModelOptions& options = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelInfo& info() const;
  const DeviceInfo& device() const;
  uint64_t device_bytes_in_use() const;  // everything inferno holds on the device right now

  // Text (needs tokenizer.json beside the weights).
  bool has_tokenizer() const;
  bool has_chat_template() const;  // tokenizer_config.json (or tokenizer.json) has one
  std::vector<int32_t> tokenize(const std::string& text, bool add_special_tokens = true) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const;
  // The model's chat template (tokenizer_config.json) or `template_source` when given.
  std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::optional<std::string>& template_source = std::nullopt) const;
  std::vector<int32_t> eos_ids() const;  // generation_config.json, else config.json, else the tokenizer's
  std::optional<int32_t> pad_id() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl>);
  std::unique_ptr<Impl> impl_;
};

// Tokenizer and chat template alone, for directories without weights.
class Tokenizer {
 public:
  static Tokenizer load(const std::filesystem::path& dir);
  Tokenizer(Tokenizer&&) noexcept;
  ~Tokenizer();
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const;
  // Renders messages (a JSON list of {role, content, ...}) with the tokenizer's chat template or `template_source`.
  std::string render_chat_json(const std::string& messages_json, bool add_generation_prompt,
                               const std::optional<std::string>& template_source = std::nullopt) const;
  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl>);
  std::unique_ptr<Impl> impl_;
};

// Streams text token by token without splitting UTF-8 characters.
class TextStream {
 public:
  explicit TextStream(const Model& model, bool skip_special_tokens = true);
  TextStream(TextStream&&) noexcept;
  ~TextStream();
  std::string push(int32_t token);
  std::string finish();
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- generation ----
struct SamplingOptions {  // transformers' GenerationConfig semantics and defaults
  bool do_sample = false;
  float temperature = 1.0f;
  int top_k = 50;
  float top_p = 1.0f, min_p = 0.0f, typical_p = 1.0f;
  float repetition_penalty = 1.0f;
  int no_repeat_ngram_size = 0;
  std::vector<std::vector<int32_t>> bad_words_ids;
  std::vector<int32_t> suppress_tokens;
  int min_length = 0, min_new_tokens = 0;
  uint64_t seed = 0;
};
// The model's generation_config.json defaults (do_sample, temperature, top_k, top_p, ...).
SamplingOptions default_sampling(const Model& model);
// generation_config.json's length for a prompt of `prompt_tokens` (the longest, for a batch), as generate reads it:
// max_new_tokens when given, else max_length minus the prompt (at least 0); `fallback` when it names neither.
int default_max_new_tokens(const Model& model, size_t prompt_tokens, int fallback);

struct GenerateOptions {
  int max_new_tokens = 20;
  bool ignore_eos = false;             // never stop at eos, never ban it (eos_token_id = None)
  std::optional<std::vector<int32_t>> eos_ids;  // default: the model's
  SamplingOptions sampling;
};

struct SessionOptions {
  uint32_t ctx = 0;          // KV cache tokens; 0: set by the first call (prompt + max_new_tokens)
  KvDtype kv_dtype = KvDtype::Auto;
  uint32_t batch = 1;
  bool timestamps = false;   // GPU timestamps per kernel (bench)
};

struct GenerationStats {
  int prompt_tokens = 0, reused_tokens = 0, new_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

struct KernelTime {
  std::string name;
  double ns = 0;
};

class Session {
 public:
  Session(Model& model, const SessionOptions& options = {});
  Session(Session&&) noexcept;
  ~Session();

  // Returns the new tokens; on_token (optional) sees each one as it comes and may return false to stop.
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                const std::function<bool(int32_t)>& on_token = {});
  std::vector<std::vector<int32_t>> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                   const GenerateOptions& options);
  // Logits [ids.size(), vocab] for every position.
  std::vector<float> logits(const std::vector<int32_t>& ids);
  const GenerationStats& stats() const;
  std::vector<KernelTime> last_kernel_times() const;  // with SessionOptions::timestamps
  uint64_t submissions() const;                      // queue submissions so far on this model's device
  uint32_t ctx() const;
  KvDtype kv_dtype() const;
  uint64_t device_bytes() const;  // KV cache + scratch held by this session

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- measurement ----
// The device's achievable read bandwidth (a streaming-read kernel): the decode roofline.
struct Bandwidth {
  double bytes_per_second = 0;
  uint64_t bytes_per_pass = 0;
  bool gpu_timed = false;  // GPU timestamps (else wall clock)
};
Bandwidth measure_bandwidth(const Model& model);
// The device's achievable f32 multiply-add rate (chains of FMAs on registers): the prefill (matrix·matrix) roofline.
struct FmaRate {
  double fma_per_second = 0;
  bool gpu_timed = false;  // GPU timestamps (else wall clock)
};
FmaRate measure_fma_rate(const Model& model);

// ---- files ----
// Writes F32 tensors to a safetensors file (e.g. logits for comparison with transformers).
struct TensorF32 {
  std::string name;
  std::vector<int64_t> shape;
  const std::vector<float>* data = nullptr;
};
void write_safetensors_f32(const std::filesystem::path& path, const std::vector<TensorF32>& tensors);

}  // namespace inferno
