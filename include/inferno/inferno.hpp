#pragma once
// inferno's C++ API: the one door into the engine for C++ programs (and for inferno's own command line).
// Errors are thrown as inferno::Error (a std::runtime_error) with a one-line message naming the file, tensor or field.
//
//
// Lifetimes: a Session or TextStream holds the model's shared state, not the Model handle: the handle may be moved
// (also into a growing std::vector) or destroyed while they live, and a Session or TextStream that outlives every
// handle of its model keeps the model (weights, device, tokenizer) alive until it goes. A moved-from Model holds no
// model: anything but assigning to it or destroying it throws or is undefined, as for any moved-from object.
//
// Thread-safety:
// - Free functions (list_devices, inspect_model, kv_cache_bytes, ...) may be called from any thread at any time.
// - Model: every const member function may be called from several threads at once (text functions read the
//   tokenizer only; device queries read atomics). Moving, assigning or destroying a handle is one thread's at a time.
// - Session: one thread at a time. Several sessions of one model may run on different threads at once: each has its
//   own KV cache, scratch and command recorder, so they record in parallel and share the device's queue, whose
//   submissions the device orders (vk::Device holds the locks). Greedy results do not depend on what other sessions
//   do. An on_token callback may use other sessions and the model, never its own session.
// - TextStream: one thread at a time. Tokenizer: const member functions from any thread at once.
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
  // What the devices of a split model can share: timeline semaphores, their export and import as OPAQUE_FD
  // (VK_KHR_external_semaphore_fd), host memory imported as device memory (VK_EXT_external_memory_host).
  bool timeline_semaphore = false, external_timeline_fd = false, host_memory_import = false;
};
std::vector<DeviceInfo> list_devices();

// ---- models ----
// Auto: f32 for F32 weights, f16 otherwise. Q8: int8 with an f32 scale per 32 values of a head (1.125 bytes a value,
// 56 % of f16's); it needs head_dim to be a multiple of 32.
enum class KvDtype { Auto, F32, F16, BF16, Q8 };
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
  // weight_bytes by where the weights go when layers are split over devices: each layer's, the embedding (with any
  // tensor of no layer), the final norm + lm_head (a tied lm_head: 0, the embedding serves).
  std::vector<uint64_t> layer_bytes;
  uint64_t embedding_bytes = 0, head_bytes = 0;
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
  // Several devices: the model's layers split over them (`--devices 0,1`), `split` layers each (empty: planned from
  // each device's free memory). Overrides `device`.
  std::vector<int> devices;
  std::vector<uint32_t> split;
  // The context, batch and KV dtype the sessions will use, for the check that the model fits before any weight is
  // read (ctx 0: weights and activations only; a session's KV cache is then checked when it is made).
  uint32_t ctx = 0, batch = 1;
  KvDtype kv_dtype = KvDtype::Auto;
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

// Where a loaded model is: one entry per device, in the order of its layers (one entry when it is not split).
struct ModelStage {
  DeviceInfo device;
  uint32_t first_layer = 0, last_layer = 0;  // layers [first, last) on this device
  bool embedding = false, lm_head = false;   // lm_head: the final norm and lm_head
  uint64_t weight_bytes = 0;                 // the weights on this device
  uint64_t bytes_in_use = 0;                 // everything inferno holds on this device now (weights, KV, scratch)
};

class Model {
 public:
  static Model load(const std::filesystem::path& path, const ModelOptions& options = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelInfo& info() const;
  const DeviceInfo& device() const;      // the first device (with the embedding) of a split model
  uint64_t device_bytes_in_use() const;  // everything inferno holds on its devices right now
  std::vector<ModelStage> stages() const;

  // Text (needs tokenizer.json beside the weights).
  bool has_tokenizer() const;
  bool has_chat_template() const;  // tokenizer_config.json (or tokenizer.json) has one
  std::vector<int32_t> tokenize(const std::string& text, bool add_special_tokens = true) const;
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const;
  // The bytes one token stands for within a text (" world"; a byte token's single byte, maybe part of a character).
  std::string token_bytes(int32_t id) const;
  // The model's chat template (tokenizer_config.json) or `template_source` when given.
  std::string render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                          const std::optional<std::string>& template_source = std::nullopt) const;
  // Messages as JSON (a list of objects with role, content and whatever else the template reads, such as
  // tool_calls), with `tools_json` (a JSON list; "" for none) given to the template as `tools`; `template_source` as
  // render_chat's.
  std::string render_chat_json(const std::string& messages_json, bool add_generation_prompt,
                               const std::string& tools_json = "",
                               const std::optional<std::string>& template_source = std::nullopt) const;
  std::vector<int32_t> eos_ids() const;  // generation_config.json, else config.json, else the tokenizer's
  std::optional<int32_t> pad_id() const;

  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  friend class Session;
  friend class TextStream;
  friend class Engine;
  explicit Model(std::shared_ptr<Impl>);
  std::shared_ptr<Impl> impl_;  // shared with the model's Sessions and TextStreams
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

// Streams text token by token without splitting UTF-8 characters. Keeps its model alive (see Lifetimes above).
class TextStream {
 public:
  explicit TextStream(const Model& model, bool skip_special_tokens = true);
  TextStream(TextStream&&) noexcept;
  ~TextStream();
  std::string push(int32_t token);
  std::string finish();
  // Feeds the tokens that precede the streamed ones (the prompt) without returning their text, so that the first
  // streamed token reads as it does after them: SentencePiece's "▁" at its start stays a space, and the text of
  // prompt then continuation is decode(prompt + continuation).
  void prime(const std::vector<int32_t>& context);
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- several devices: where the layers go and whether they fit ----
struct DevicePlan {
  int index = 0;                     // the Vulkan device (or the position in PlanOptions::device_memory)
  std::string name;
  uint64_t available_bytes = 0;      // the device's memory budget, or the size given
  uint32_t first_layer = 0, last_layer = 0;  // layers [first, last)
  bool embedding = false, lm_head = false;   // lm_head: the final norm and lm_head
  uint64_t weight_bytes = 0, kv_cache_bytes = 0, activation_bytes = 0, total_bytes = 0;
  bool fits = false;
};
struct PlanOptions {
  std::vector<int> devices;            // empty: the preferred device
  std::vector<uint32_t> split;         // layers per device; empty: auto
  std::vector<uint64_t> device_memory; // plan for devices of these sizes instead of the machine's own
  uint32_t ctx = 0;                    // 0: min(max_position_embeddings, 4096)
  uint32_t batch = 1;
  KvDtype kv_dtype = KvDtype::Auto;
  bool quantize_int8 = false;
};
struct SplitPlan {
  uint32_t ctx = 0, batch = 1;
  KvDtype kv_dtype = KvDtype::Auto;    // as resolved: f32 or f16 for Auto
  bool auto_split = true;
  std::vector<DevicePlan> devices;
  bool fits = false;
  uint64_t transfer_bytes_per_token = 0;  // the f32 hidden state crossing each device boundary, per token
  uint64_t kv_bytes_per_token = 0;        // K and V of one token over all layers, in the planned KV dtype
  // When it does not fit: the options that would, each tried alone ("--ctx 8192", "--kv-dtype f16",
  // "--quantize int8", "--split 30,50", "--devices 0,1,2").
  std::vector<std::string> suggestions;
};
// Plans from the checkpoint's headers alone (no weight is read, no device opened).
SplitPlan plan_devices(const std::filesystem::path& path, const PlanOptions& options);
// "auto" → {}; "40,40" → {40, 40}; "80G,80G" (K, M, G, T: powers of 1024) → bytes. Errors name the flag.
std::vector<uint32_t> parse_split(const std::string& text);
std::vector<uint64_t> parse_memory_sizes(const std::string& text);
// One line: which device does not fit, the bytes it needs and has, and what would fit.
std::string plan_refusal(const SplitPlan& plan);

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
  // OpenAI's penalties, over generated tokens only: logit -= presence·[count > 0] + frequency·count; in [-2, 2].
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
};
// The model's generation_config.json defaults (do_sample, temperature, top_k, top_p, ...).
SamplingOptions default_sampling(const Model& model);
// generation_config.json's length for a prompt of `prompt_tokens` (the longest, for a batch), as generate reads it:
// max_new_tokens when given, else max_length minus the prompt (at least 0); `fallback` when it names neither. A length
// past max_position_embeddings means "until the context is full": what max_position_embeddings leaves (at least 1).
int default_max_new_tokens(const Model& model, size_t prompt_tokens, int fallback);

struct GenerateOptions {
  int max_new_tokens = 20;
  bool ignore_eos = false;             // never stop at eos, never ban it (eos_token_id = None)
  std::optional<std::vector<int32_t>> eos_ids;  // default: the model's
  SamplingOptions sampling;
  // Constrained decoding: when not empty, a JSON schema (the subset check_json_schema takes; {"type": "object"}
  // for any object) that the output is a JSON text of. Only tokens that keep the output a prefix of such a text
  // are chosen, eos only once it is whole, and generation ends ("stop") when the text allows nothing more. A
  // generation cut by max_new_tokens may end inside the value.
  std::string json_schema;
};

// Throws Error naming the keyword (and where) when `schema` is not JSON or uses what constrained decoding does not
// support: type, properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength, enum,
// const, anyOf and local $ref ("#", "#/$defs/NAME", "#/definitions/NAME") are; annotations are ignored.
void check_json_schema(const std::string& schema);

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

// One device's part of the last step (a split model has one per device), with SessionOptions::timestamps for the
// GPU times: its kernels, its device-side copies of the hidden state in from the device before and out to the one
// after, and the host's wall time for its part (recording, submission, waiting, host copies of the hidden state).
struct DeviceStepTime {
  int device = 0;
  double kernel_ns = 0, transfer_device_ns = 0, wall_ns = 0;
};
// The hidden state moved between devices so far (f32, every row, each boundary), and the host's time copying it.
struct TransferStats {
  uint64_t bytes = 0;
  double host_copy_seconds = 0;
  double last_step_host_copy_seconds = 0;
  // Each boundary's link, "MEMORY, ORDER": how the hidden state crosses it (device buffer, shared host memory, host
  // copy) and how the device after it waits for the one before (timeline semaphore, shared timeline semaphore,
  // timeline semaphores with a host relay, host wait per stage).
  std::vector<std::string> boundaries;
  uint32_t last_step_host_waits = 0;        // the host's waits for a device in the last step
  uint64_t last_step_host_copy_bytes = 0;   // bytes of hidden state the host copied in the last step
};

// Keeps its model alive (see Lifetimes above).
class Session {
 public:
  explicit Session(const Model& model, const SessionOptions& options = {});
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
  std::vector<KernelTime> last_kernel_times() const;  // with SessionOptions::timestamps; every device's, in order
  std::vector<DeviceStepTime> last_device_times() const;
  TransferStats transfers() const;
  uint64_t submissions() const;                      // queue submissions so far on this model's devices
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

// ---- many requests at once (continuous batching) ----
// One engine per model serves many conversations together: every step decodes a token for each running request and
// prefills others in chunks, over one paged KV cache shared by all of them, whose blocks of earlier prompts are
// reused by later ones that begin the same way. Requests come from any thread; their tokens come back through the
// callbacks, from the engine's own thread.
struct EngineOptions {
  uint32_t parallel = 8;          // requests decoded together; more wait in a queue
  uint32_t ctx = 0;               // the longest a request may grow; 0: max_position_embeddings, at most 4096
  uint64_t kv_budget_bytes = 0;   // the KV pool; 0: room for `parallel` requests of `ctx` tokens
  // (0, 1]: the KV pool is this share of the device's memory left free after the weights (and whatever else inferno
  // holds on it), at most what one storage binding a layer allows; overrides kv_budget_bytes.
  double kv_budget_share = 0;
  uint32_t batch_tokens = 512;    // rows of one step: decode rows plus prefill chunks
  KvDtype kv_dtype = KvDtype::Auto;
  bool prefix_cache = true;
};

// The log-probabilities at one generated position: log-softmax of the model's raw logits there (before penalties,
// temperature or any filter), the chosen token's and the most likely ones, most likely first.
struct TokenLogprobs {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

struct EngineResult {
  std::vector<int32_t> tokens;
  std::string finish_reason;  // "stop" (eos, or on_token returned false), "length", "cancelled" or "error"
  std::string error;          // finish_reason "error": why
  int prompt_tokens = 0, cached_tokens = 0;  // cached: prompt tokens whose K/V came from the prefix cache
  double first_token_seconds = 0, seconds = 0;  // from submission
  std::vector<TokenLogprobs> logprobs;  // one per token, when EngineRequest::logprobs >= 0
  uint64_t id = 0;                              // what Engine::submit returned
};

struct EngineRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
  std::function<bool(int32_t)> on_token;  // may return false to stop
  std::function<void(const EngineResult&)> on_finish;  // called once
  // -1: none; k >= 0: each token's log-probability and the k most likely (EngineResult::logprobs), given to
  // on_token_logprobs, which is called instead of on_token when set.
  int logprobs = -1;
  std::function<bool(int32_t, const TokenLogprobs&)> on_token_logprobs;
};

// `--kv-budget`: "50%" (a share of the free device memory, 0 < PCT ≤ 100) or a size ("2G", "512M", "1048576";
// K, M, G, T: powers of 1024). Throws an Error naming --kv-budget on anything else.
struct KvBudget {
  uint64_t bytes = 0;
  double share = 0;
};
KvBudget parse_kv_budget(const std::string& text);

class Engine {
 public:
  Engine(Model& model, const EngineOptions& options = {});
  ~Engine();  // what is queued or running ends as cancelled
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  uint64_t submit(EngineRequest request);  // returns the id cancel takes
  void cancel(uint64_t id);
  // Submits and waits for the result (on_token as in EngineRequest).
  EngineResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                        const std::function<bool(int32_t)>& on_token = {});
  uint32_t parallel() const;
  uint32_t ctx() const;
  KvDtype kv_dtype() const;
  uint32_t kv_blocks() const;            // blocks of kv_block_tokens() tokens in the pool
  uint32_t kv_block_tokens() const;
  uint64_t kv_pool_bytes() const;
  size_t running() const;                // requests in the batch
  size_t waiting() const;                // requests queued behind them
  uint32_t kv_blocks_in_use() const;     // blocks held by requests after the last step (idle prefix-cache blocks are free)
  double step_seconds() const;           // how long the step now running has run (waiting for the device included); 0 between steps

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The whole of a file the user names (`perplexity -f`, `--template`, `--messages`): refused with an Error naming the
// path when it is not a regular file (a FIFO would block, /dev/zero never ends) or holds more than max_bytes.
std::string read_text_file(const std::filesystem::path& path, uint64_t max_bytes);

}  // namespace inferno
