// The C++ API over the engine's rooms: devices (vk), models (model + io), text (text), generation (generate).
#include "inferno/inferno.hpp"
#include "api/model_access.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "generate/json_schema.hpp"
#include "generate/session.hpp"
#include "io/checkpoint.hpp"
#include "io/hf_config.hpp"
#include "io/safetensors_writer.hpp"
#include "kernels/bandwidth.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"
#include "io/gguf.hpp"
#include "io/model_path.hpp"
#include "io/regular_file.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer_gguf.hpp"
#include "text/tokenizer.hpp"
#include "vk/device.hpp"
#include "vk/instance.hpp"

namespace inferno {

namespace {

DeviceInfo to_device_info(const vk::Capabilities& c, int index, bool chosen) {
  DeviceInfo d;
  d.index = index;
  d.name = c.name;
  d.type = c.type;
  d.driver = c.driver;
  d.api_version = std::to_string(VK_API_VERSION_MAJOR(c.api_version)) + "." +
                  std::to_string(VK_API_VERSION_MINOR(c.api_version)) + "." +
                  std::to_string(VK_API_VERSION_PATCH(c.api_version));
  d.memory_bytes = c.device_local_bytes;
  d.budget_bytes = c.budget_bytes;
  d.chosen = chosen;
  d.float16 = c.float16;
  d.int8 = c.int8;
  d.storage_16bit = c.storage_16bit;
  d.storage_8bit = c.storage_8bit;
  d.bfloat16 = c.bfloat16;
  d.cooperative_matrix = c.cooperative_matrix;
  d.cooperative_matrix_shapes = c.coopmat_shapes;
  d.integer_dot_product = c.integer_dot_product;
  d.subgroup_size = c.subgroup_size;
  d.min_subgroup_size = c.min_subgroup_size;
  d.max_subgroup_size = c.max_subgroup_size;
  d.subgroup_arithmetic = c.subgroup_arithmetic;
  d.max_storage_buffer_range = c.max_storage_buffer_range;
  d.max_allocation_bytes = c.max_memory_allocation_size;
  d.max_shared_memory = c.max_compute_shared_memory;
  d.timestamps = c.timestamp_period_ns > 0;
  d.timeline_semaphore = c.timeline_semaphore;
  d.external_timeline_fd = c.external_timeline_fd;
  d.host_memory_import = c.host_import;
  return d;
}

KvDtype from_kv_type(kernels::KvType t) {
  switch (t) {
    case kernels::KvType::F32: return KvDtype::F32;
    case kernels::KvType::F16: return KvDtype::F16;
    case kernels::KvType::BF16: return KvDtype::BF16;
    case kernels::KvType::Q8: return KvDtype::Q8;
  }
  return KvDtype::F32;
}

std::string read_file(const std::filesystem::path& p) { return io::read_regular_file(p); }

// A GGUF file by its magic, whatever its extension.
bool is_gguf(const std::filesystem::path& p) { return io::resolve_model_path(p).gguf; }

model::LlamaHyper hyper_of(const ModelInfo& info) {
  model::LlamaHyper h;
  h.layers = info.layers;
  h.hidden = info.hidden_size;
  h.intermediate = info.intermediate_size;
  h.heads = info.heads;
  h.kv_heads = info.kv_heads;
  h.head_dim = info.head_dim;
  h.vocab = info.vocab_size;
  return h;
}

// Text side of a model: tokenizer.json and tokenizer_config.json (chat template, special tokens) beside a
// safetensors checkpoint, or the vocabulary and chat template inside a GGUF file.
struct TextAssets {
  std::optional<text::Tokenizer> tokenizer;
  std::string tokenizer_config_json;        // empty when absent
  std::optional<std::string> gguf_template;  // tokenizer.chat_template of a GGUF file

  explicit TextAssets(const std::filesystem::path& path) {
    if (is_gguf(path)) {
      io::GgufFile file(path);
      if (file.find("tokenizer.ggml.model")) tokenizer = text::tokenizer_from_gguf(file);
      gguf_template = file.optional_string("tokenizer.chat_template");
      return;
    }
    if (std::filesystem::exists(path / "tokenizer.json")) tokenizer = text::Tokenizer::from_dir(path);
    if (std::filesystem::exists(path / "tokenizer_config.json")) tokenizer_config_json = read_file(path / "tokenizer_config.json");
  }
  const text::Tokenizer& need_tokenizer(const std::filesystem::path& path) const {
    if (!tokenizer)
      throw Error((is_gguf(path) ? path : path / "tokenizer.json").string() +
                  ": no tokenizer with the model (pass token ids with --ids)");
    return *tokenizer;
  }
  std::optional<std::string> chat_template() const {
    std::optional<std::string> source = gguf_template;
    if (!source && !tokenizer_config_json.empty()) source = text::chat_template_from_tokenizer_config(tokenizer_config_json);
    if (!source && tokenizer) source = tokenizer->chat_template();
    return source;
  }
  std::string render(const std::filesystem::path& path, const text::Value& messages, bool add_generation_prompt,
                     const std::optional<std::string>& template_source, const text::Value* tools = nullptr) const {
    std::optional<std::string> source = template_source ? template_source : chat_template();
    if (!source) throw Error(path.string() + ": the model has no chat_template");
    text::Value extra = text::Value::dict();
    if (!tokenizer_config_json.empty()) {
      extra = text::special_tokens_from_tokenizer_config(tokenizer_config_json);
    } else if (tokenizer) {
      extra = text::Value::from_json("{\"bos_token\":" + text::Value(tokenizer->bos_token()).to_json() +
                                     ",\"eos_token\":" + text::Value(tokenizer->eos_token()).to_json() + "}");
    }
    if (tools) extra.set("tools", *tools);
    return text::ChatTemplate(*source).render(messages, add_generation_prompt, extra);
  }
};

// The layer a tensor belongs to ("model.layers.N." or GGUF's "blk.N."), -1 for none.
int layer_of(const std::string& name) {
  for (const char* prefix : {"model.layers.", "blk."}) {
    const size_t n = std::strlen(prefix);
    if (name.compare(0, n, prefix) != 0) continue;
    const size_t dot = name.find('.', n);
    if (dot == std::string::npos || dot == n || dot - n > 6) return -1;
    if (name.find_first_not_of("0123456789", n) != dot) return -1;
    return std::stoi(name.substr(n, dot - n));
  }
  return -1;
}

bool is_head_tensor(const std::string& name) {
  return name == "lm_head.weight" || name == "model.norm.weight" || name == "output.weight" || name == "output_norm.weight" ||
         name.rfind("lm_head.", 0) == 0;
}

text::Value messages_value(const std::vector<ChatMessage>& messages) {
  std::string json = "[";
  for (size_t i = 0; i < messages.size(); ++i) {
    auto quote = [](const std::string& s) { return text::Value(s).to_json(); };
    json += (i ? "," : "") + std::string("{\"role\":") + quote(messages[i].role) + ",\"content\":" + quote(messages[i].content) + "}";
  }
  return text::Value::from_json(json + "]");
}

// Refuses, before any weight is read, a model that does not fit on its devices: one line naming the device, the
// bytes needed and available, and what would fit. Returns the plan: the layers each device loads.
SplitPlan check_plan_fits(const std::filesystem::path& path, const ModelOptions& options) {
  PlanOptions p;
  p.devices = options.devices;
  if (p.devices.empty() && options.device >= 0) p.devices = {options.device};
  p.split = options.split;
  p.ctx = options.ctx ? options.ctx : 1;  // no context asked for yet: weights and activations
  p.batch = options.batch;
  p.kv_dtype = options.kv_dtype;
  p.quantize_int8 = options.quantize_int8;
  const SplitPlan plan = plan_devices(path, p);
  if (!plan.fits) throw Error(path.string() + ": " + plan_refusal(plan));
  return plan;
}

}  // namespace

std::vector<DeviceInfo> list_devices() {
  vk::Instance instance;
  const auto listing = vk::list_devices(instance);
  std::vector<DeviceInfo> out;
  for (size_t i = 0; i < listing.devices.size(); ++i)
    out.push_back(to_device_info(listing.devices[i], int(i), int(i) == listing.chosen));
  return out;
}

std::optional<KvDtype> parse_kv_dtype(const std::string& name) {
  if (name == "auto") return KvDtype::Auto;
  if (name == "f32") return KvDtype::F32;
  if (name == "f16") return KvDtype::F16;
  if (name == "bf16") return KvDtype::BF16;
  if (name == "q8") return KvDtype::Q8;
  return std::nullopt;
}

const char* kv_dtype_name(KvDtype d) {
  switch (d) {
    case KvDtype::Auto: return "auto";
    case KvDtype::F32: return "f32";
    case KvDtype::F16: return "f16";
    case KvDtype::BF16: return "bf16";
    case KvDtype::Q8: return "q8";
  }
  return "?";
}

ModelInfo inspect_model(const std::filesystem::path& given_path, bool quantize_int8) {
  const std::filesystem::path path = io::resolve_model_path(given_path).path;
  ModelInfo info;
  info.path = path;
  const bool gguf = is_gguf(path);
  info.format = gguf ? "gguf" : "safetensors";
  std::optional<io::GgufFile> gguf_file;
  if (gguf) gguf_file.emplace(path);
  const io::LlamaConfig c = gguf ? model::llama_config_from_gguf(*gguf_file) : io::load_llama_config(path);
  const model::LlamaHyper h = model::hyper_from_config(c);
  info.family = model::detect_family(c);
  info.layers = h.layers;
  info.hidden_size = h.hidden;
  info.intermediate_size = h.intermediate;
  info.heads = h.heads;
  info.kv_heads = h.kv_heads;
  info.head_dim = h.head_dim;
  info.vocab_size = h.vocab;
  info.max_position_embeddings = h.max_position_embeddings;
  info.rope_type = c.rope.type;
  info.dtype = c.dtype;
  info.quantization = c.quant_method;
  info.tokenizer = gguf ? gguf_file->optional_string("tokenizer.ggml.model").value_or("none")
                        : (std::filesystem::exists(path / "tokenizer.json") ? "tokenizer.json" : "none");
  info.tied_embeddings = c.tie_word_embeddings;
  info.attention_bias = c.attention_bias;
  info.mlp_bias = c.mlp_bias;
  // --quantize int8 turns every float linear layer (not the embedding, lm_head or norms) into int8 + f32 row scales.
  auto quantized_linear = [&](const io::TensorInfo& t) {
    if (!quantize_int8 || t.shape.size() != 2 || (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16))
      return false;
    const std::string& n = t.name;
    return n.find("embed") == std::string::npos && n.find("token_embd") == std::string::npos && n != "lm_head.weight" &&
           n != "output.weight";
  };
  info.layer_bytes.assign(h.layers, 0);
  auto count = [&](const io::TensorInfo& t) {
    if (c.tie_word_embeddings && t.name == "lm_head.weight") return;  // tied: the embedding serves, not loaded
    if (t.name == "rope_freqs.weight") return;                       // folded into the RoPE table
    info.params += uint64_t(t.elements());
    const bool quantized = quantized_linear(t);
    const uint64_t bytes = quantized ? uint64_t(t.elements()) + uint64_t(t.shape[0]) * 4 : t.bytes;
    info.weight_bytes += bytes;
    info.tensor_bytes_by_dtype[quantized ? std::string("I8") : std::string(io::dtype_name(t.dtype))] += bytes;
    const int layer = layer_of(t.name);
    if (layer >= 0 && uint32_t(layer) < h.layers) info.layer_bytes[size_t(layer)] += bytes;
    else if (is_head_tensor(t.name)) info.head_bytes += bytes;
    else info.embedding_bytes += bytes;
  };
  // Per group, the dtypes its weights are loaded in, once each.
  auto group_dtypes = [&](const model::FindTensor& find) {
    std::map<model::TensorGroup, std::set<std::string>> dtypes;
    for (const model::ExpectedTensor& e : model::expected_tensors(h, gguf)) {
      if (e.bias) continue;
      const io::TensorInfo& t = *find(e.name);
      dtypes[e.group].insert(quantized_linear(t) ? "I8" : std::string(io::dtype_name(t.dtype)));
    }
    if (h.tied_embeddings) dtypes[model::TensorGroup::LmHead] = dtypes[model::TensorGroup::Embedding];
    for (model::TensorGroup g : model::kTensorGroups) {
      std::string joined;
      for (const std::string& d : dtypes[g]) joined += (joined.empty() ? "" : "+") + d;
      info.dtype_by_group.emplace_back(model::tensor_group_name(g), joined);
    }
  };
  if (gguf) {
    const model::FindTensor find = [&](const std::string& n) { return gguf_file->find_tensor(n); };
    model::check_tensor_shapes(h, true, find, path.string());
    for (const auto& t : gguf_file->tensors()) count(t);
    group_dtypes(find);
    info.shards = {path};
    info.quantization = "gguf";
  } else {
    io::Checkpoint ckpt(path);
    const model::FindTensor find = [&](const std::string& n) { return ckpt.find(n); };
    model::check_tensor_shapes(h, false, find, path.string());
    for (const auto& name : ckpt.tensor_names()) count(ckpt.at(name));
    group_dtypes(find);
    info.shards = ckpt.shard_paths();
  }
  if (quantize_int8) info.quantization = "int8 (weight-only, on load)";
  for (const auto& s : info.shards) info.shard_bytes += std::filesystem::file_size(s);
  return info;
}

uint64_t kv_cache_bytes(const ModelInfo& info, uint32_t ctx, uint32_t batch, KvDtype dtype) {
  kernels::KvType t = kernels::KvType::F16;
  if (dtype == KvDtype::F32) t = kernels::KvType::F32;
  if (dtype == KvDtype::BF16) t = kernels::KvType::BF16;
  if (dtype == KvDtype::Q8) {
    t = kernels::KvType::Q8;
    kernels::check_kv_head_dim(info.path.string().c_str(), t, info.head_dim);
  }
  if (dtype == KvDtype::Auto) {
    // The rule a session applies to the loaded model, from the embedding's dtype as the file stores it.
    bool f32_embedding = false;
    for (const auto& [group, dtypes] : info.dtype_by_group)
      if (group == model::tensor_group_name(model::TensorGroup::Embedding)) f32_embedding = dtypes == "F32";
    t = model::default_kv_type(f32_embedding);
  }
  uint64_t bytes = model::KvCache::bytes_for(hyper_of(info), batch, ctx, t);
  if (__builtin_add_overflow(bytes, uint64_t(ctx) * info.head_dim * 4, &bytes))  // + the RoPE table
    throw Error("KV cache for batch " + std::to_string(batch) + " and context " + std::to_string(ctx) +
                ": its size overflows 64 bits");
  return bytes;
}

uint64_t scratch_bytes(const ModelInfo& info, uint32_t prompt_tokens, uint32_t batch) {
  return model::Forward::scratch_bytes_for(hyper_of(info), batch, prompt_tokens * batch, batch);
}

// ---- Model ----
struct Model::Impl {
  std::shared_ptr<vk::Instance> instance;
  // One per device the model is on, in the order of its layers: the first holds the embedding, the last the final
  // norm and lm_head, each its layers' weights (one stage holds them all when the model is not split).
  struct Stage {
    std::unique_ptr<vk::Device> device;
    std::unique_ptr<model::LlamaModel> llama;  // after the device: destroyed before it
    DeviceInfo info;
  };
  std::vector<Stage> stages;
  std::unique_ptr<TextAssets> text;
  std::optional<io::GenerationConfig> generation;
  ModelInfo info;

  const model::LlamaModel& llama() const { return *stages.front().llama; }  // hyper-parameters, config
  vk::Device& first_device() const { return *stages.front().device; }
  std::vector<const model::LlamaModel*> stage_models() const {
    std::vector<const model::LlamaModel*> out;
    for (const Stage& s : stages) out.push_back(s.llama.get());
    return out;
  }
  // Held by a batching Engine around each of its steps (its KV pool and step recordings are one stream of device
  // work); Sessions need none: the Device guards its own command pool and queue.
  std::recursive_mutex device_work;
  // The tokenizer's vocabulary as a trie of token bytes, made on the first constrained request.
  mutable std::mutex vocabulary_mutex;
  mutable std::shared_ptr<const gen::TokenTrie> vocabulary;

  std::vector<int32_t> eos_ids() const {  // generation_config.json, else config.json, else the tokenizer's
    std::vector<int32_t> ids;
    if (generation && generation->eos_token_ids) {
      for (auto id : *generation->eos_token_ids) ids.push_back(int32_t(id));
      return ids;
    }
    for (auto id : llama().config().eos_token_ids) ids.push_back(int32_t(id));
    if (ids.empty() && text->tokenizer) ids = text->tokenizer->eos_ids();
    return ids;
  }
  std::optional<int32_t> pad_id() const {
    if (generation && generation->pad_token_id) return int32_t(*generation->pad_token_id);
    if (llama().config().pad_token_id) return int32_t(*llama().config().pad_token_id);
    return std::nullopt;
  }
};

namespace {
// The shared state of a model that a Session or TextStream keeps alive; a moved-from Model has none.
std::shared_ptr<Model::Impl> need_model(const std::shared_ptr<Model::Impl>& impl, const char* user) {
  if (!impl) throw Error(std::string(user) + ": the Model was moved from (it holds no model any more)");
  return impl;
}
}  // namespace

Model::Model(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::load(const std::filesystem::path& given_path, const ModelOptions& options) {
  // A file inside a checkpoint directory stands for the directory; a GGUF file is known by its magic.
  const std::filesystem::path path = io::resolve_model_path(given_path).path;
  auto progress = [&](float fraction) {
    if (options.on_progress && !options.on_progress(fraction))
      throw Cancelled(path.string() + ": loading cancelled by the progress callback");
  };
  // The weights' upload is most of a load; the other stages get small shares of the bar.
  progress(0.0f);
  auto impl = std::make_shared<Impl>();
  impl->info = inspect_model(path, options.quantize_int8);
  const SplitPlan plan = check_plan_fits(path, options);
  impl->instance = std::make_shared<vk::Instance>(vk::InstanceOptions{.validation = options.validation});
  const bool split = options.devices.size() > 1;
  progress(0.05f);
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    const DevicePlan& d = plan.devices[i];
    Impl::Stage stage;
    // Unsplit, the device is opened as asked (-1: the preferred one), whichever index the plan resolved it to.
    stage.device = std::make_unique<vk::Device>(impl->instance, split || !options.devices.empty() ? d.index : options.device);
    stage.info = to_device_info(stage.device->caps(), stage.device->index(), !split && options.devices.empty() && options.device < 0);
    model::LoadOptions load{.quiet = options.quiet, .quantize_int8 = options.quantize_int8};
    if (split) {
      load.first_layer = d.first_layer;
      load.last_layer = d.last_layer;
      load.embedding = i == 0;
      load.head = i + 1 == plan.devices.size();
    }
    try {
      stage.llama = model::LlamaModel::load(*stage.device, path, load);
    } catch (const OutOfDeviceMemory& e) {
      // The driver's own refusal may not say which device ran out; with several, that is what the user needs.
      const std::string what = e.what(), label = stage.device->label();
      throw OutOfDeviceMemory(path.string() + ": " + (what.find(label) == std::string::npos ? label + ": " : "") + what);
    }
    impl->stages.push_back(std::move(stage));
    progress(0.05f + 0.9f * float(i + 1) / float(plan.devices.size()));
  }
  impl->text = std::make_unique<TextAssets>(path);
  impl->generation = io::load_generation_config(path);
  progress(1.0f);
  return Model(std::move(impl));
}

const ModelInfo& Model::info() const { return impl_->info; }
const DeviceInfo& Model::device() const { return impl_->stages.front().info; }
uint64_t Model::device_bytes_in_use() const {
  uint64_t total = 0;
  for (const auto& s : impl_->stages) total += s.device->allocated_bytes();
  return total;
}
std::vector<ModelStage> Model::stages() const {
  std::vector<ModelStage> out;
  for (const auto& s : impl_->stages) {
    const model::LlamaModel& m = *s.llama;
    out.push_back({.device = s.info, .first_layer = m.first_layer(),
                   .last_layer = m.first_layer() + uint32_t(m.layers().size()), .embedding = m.has_embedding(),
                   .lm_head = m.has_head(), .weight_bytes = m.weight_bytes(), .bytes_in_use = s.device->allocated_bytes()});
  }
  return out;
}
bool Model::has_tokenizer() const { return impl_->text->tokenizer.has_value(); }
bool Model::has_chat_template() const { return impl_->text->chat_template().has_value(); }

std::vector<int32_t> Model::tokenize(const std::string& text, bool add_special_tokens) const {
  return impl_->text->need_tokenizer(impl_->info.path).encode(text, add_special_tokens);
}

std::string Model::detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->text->need_tokenizer(impl_->info.path).decode(ids, skip_special_tokens);
}
std::string Model::token_bytes(int32_t id) const { return impl_->text->need_tokenizer(impl_->info.path).token_bytes(id); }

std::string Model::render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                               const std::optional<std::string>& template_source) const {
  return impl_->text->render(impl_->info.path, messages_value(messages), add_generation_prompt, template_source);
}

std::string Model::render_chat_json(const std::string& messages_json, bool add_generation_prompt,
                                    const std::string& tools_json,
                                    const std::optional<std::string>& template_source) const {
  const text::Value messages = text::Value::from_json(messages_json);
  if (!messages.is_list()) throw Error("messages: expected a JSON list of message objects");
  if (tools_json.empty()) return impl_->text->render(impl_->info.path, messages, add_generation_prompt, template_source);
  const text::Value tools = text::Value::from_json(tools_json);
  if (!tools.is_list()) throw Error("tools: expected a JSON list of tool objects");
  return impl_->text->render(impl_->info.path, messages, add_generation_prompt, template_source, &tools);
}

std::vector<int32_t> Model::eos_ids() const { return impl_->eos_ids(); }
std::optional<int32_t> Model::pad_id() const { return impl_->pad_id(); }

namespace {
// generation_config.json's counts are read as 64-bit numbers (io bounds them to [0, 2^40]); the sampling options hold
// ints. Each count saturates where its meaning does not change: an n-gram or a minimum length of 2^31 - 1 tokens
// bans the same as a larger one within any context this engine can hold.
int saturate_int(int64_t v) { return int(std::min<int64_t>(v, INT32_MAX)); }
}  // namespace

SamplingOptions default_sampling(const Model& model) {
  SamplingOptions s;
  const auto& g = model.impl().generation;
  if (!g) return s;
  if (g->do_sample) s.do_sample = *g->do_sample;
  if (g->temperature) s.temperature = float(*g->temperature);
  // top_k at or past the vocabulary keeps every token: no top-k filtering (0).
  if (g->top_k) s.top_k = *g->top_k >= int64_t(model.info().vocab_size) ? 0 : int(*g->top_k);
  if (g->top_p) s.top_p = float(*g->top_p);
  if (g->min_p) s.min_p = float(*g->min_p);
  if (g->typical_p) s.typical_p = float(*g->typical_p);
  if (g->repetition_penalty) s.repetition_penalty = float(*g->repetition_penalty);
  if (g->no_repeat_ngram_size) s.no_repeat_ngram_size = saturate_int(*g->no_repeat_ngram_size);
  if (g->min_length) s.min_length = saturate_int(*g->min_length);
  if (g->min_new_tokens) s.min_new_tokens = saturate_int(*g->min_new_tokens);
  return s;
}

int default_max_new_tokens(const Model& model, size_t prompt_tokens, int fallback) {
  const auto& g = model.impl().generation;
  // A length past max_position_embeddings asks for more than the model's context: it means "until the context is
  // full" (transformers runs until eos or its length limit), so it stops at max_position_embeddings tokens in all
  // (one new token at least) instead of asking for a KV cache of that length.
  const int64_t positions = int64_t(model.info().max_position_embeddings);
  const int64_t room = std::max<int64_t>(positions - int64_t(prompt_tokens), 1);
  if (g && g->max_new_tokens) return int(*g->max_new_tokens > positions ? room : *g->max_new_tokens);
  if (g && g->max_length) {
    if (*g->max_length > positions) return int(room);
    return int(std::max<int64_t>(*g->max_length - int64_t(prompt_tokens), 0));
  }
  return fallback;
}

// ---- Tokenizer (no weights) ----
struct Tokenizer::Impl {
  std::filesystem::path dir;
  std::unique_ptr<TextAssets> text;
};
Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& dir) {
  auto impl = std::make_unique<Impl>();
  const io::ModelPath resolved = io::resolve_model_path(dir);
  impl->dir = resolved.path;
  if (!resolved.gguf && !std::filesystem::is_directory(resolved.path))
    throw Error(dir.string() + ": not a directory or a GGUF file");
  impl->text = std::make_unique<TextAssets>(impl->dir);
  if (!impl->text->tokenizer && impl->text->tokenizer_config_json.empty())
    throw Error(impl->dir.string() + ": neither tokenizer.json nor tokenizer_config.json is there");
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  return impl_->text->need_tokenizer(impl_->dir).encode(text, add_special_tokens);
}
std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  return impl_->text->need_tokenizer(impl_->dir).decode(ids, skip_special_tokens);
}
std::string Tokenizer::render_chat_json(const std::string& messages_json, bool add_generation_prompt,
                                        const std::optional<std::string>& template_source) const {
  const text::Value messages = text::Value::from_json(messages_json);
  if (!messages.is_list()) throw Error("messages: expected a JSON list of {role, content} objects");
  return impl_->text->render(impl_->dir, messages, add_generation_prompt, template_source);
}

// ---- TextStream ----
struct TextStream::Impl {
  std::shared_ptr<Model::Impl> model;  // first: the decoder refers to its tokenizer
  text::StreamingDecoder decoder;
};
TextStream::TextStream(const Model& model, bool skip_special_tokens) {
  std::shared_ptr<Model::Impl> m = need_model(model.impl_, "TextStream");
  const text::Tokenizer& tokenizer = m->text->need_tokenizer(m->info.path);
  impl_ = std::make_unique<Impl>(Impl{std::move(m), text::StreamingDecoder(tokenizer, skip_special_tokens)});
}
TextStream::TextStream(TextStream&&) noexcept = default;
TextStream::~TextStream() = default;
std::string TextStream::push(int32_t token) { return impl_->decoder.push(token); }
std::string TextStream::finish() { return impl_->decoder.finish(); }
void TextStream::prime(const std::vector<int32_t>& context) {
  for (int32_t token : context) impl_->decoder.push(token);
}

// ---- Session ----
struct Session::Impl {
  std::shared_ptr<Model::Impl> model;  // first: destroyed after the engine session, which uses its device
  SessionOptions options;
  std::unique_ptr<gen::Session> session;
  GenerationStats stats;

  // Makes (or remakes, larger) the engine session so that `needed` tokens fit.
  gen::Session& ensure(uint32_t needed, uint32_t batch) {
    uint32_t ctx = options.ctx ? options.ctx : needed;
    if (needed > ctx)
      throw Error("the request needs " + std::to_string(needed) + " tokens of context, more than --ctx " +
                  std::to_string(ctx));
    if (session && session->forward().cache().capacity() >= needed && session->forward().cache().batch() == batch)
      return *session;
    const auto& llama = model->llama();
    if (ctx > llama.hyper().max_position_embeddings)
      std::fprintf(stderr, "inferno: warning: context %u exceeds max_position_embeddings %u\n", ctx,
                   llama.hyper().max_position_embeddings);
    session.reset();
    session = std::make_unique<gen::Session>(model->stage_models(), ctx, api::kv_type(options.kv_dtype, llama), batch,
                                             options.timestamps);
    return *session;
  }
  gen::GenerateOptions engine_options(const GenerateOptions& o) const {
    gen::GenerateOptions g = api::engine_options(o, model->eos_ids());
    g.grammar = api::grammar_constraint(*model, o.json_schema);
    return g;
  }
  void take_stats() {
    const auto& s = session->stats();
    stats = {s.prompt_tokens, s.reused_tokens, s.new_tokens, s.prefill_seconds, s.decode_seconds};
  }
};

Session::Session(const Model& model, const SessionOptions& options)
    : impl_(std::make_unique<Impl>(Impl{need_model(model.impl_, "Session"), options, {}, {}})) {
  if (options.batch == 0) throw Error("batch must be at least 1");
  if (options.ctx) impl_->ensure(options.ctx, options.batch);
}
Session::Session(Session&&) noexcept = default;
Session::~Session() = default;

std::vector<int32_t> Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                                       const std::function<bool(int32_t)>& on_token) {
  if (options.max_new_tokens < 0) throw Error("max_new_tokens must not be negative");
  auto& s = impl_->ensure(uint32_t(prompt.size() + size_t(options.max_new_tokens)), 1);
  auto out = s.generate(prompt, impl_->engine_options(options), on_token);
  impl_->take_stats();
  return out;
}

std::vector<std::vector<int32_t>> Session::generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                          const GenerateOptions& options) {
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  auto& s = impl_->ensure(uint32_t(longest + size_t(options.max_new_tokens)), uint32_t(prompts.size()));
  auto out = s.generate_batch(prompts, impl_->engine_options(options), impl_->model->pad_id().value_or(0));
  impl_->take_stats();
  return out;
}

std::vector<float> Session::logits(const std::vector<int32_t>& ids) {
  auto& s = impl_->ensure(uint32_t(ids.size()), 1);
  return s.all_logits(ids);
}

const GenerationStats& Session::stats() const { return impl_->stats; }

std::vector<KernelTime> Session::last_kernel_times() const {
  std::vector<KernelTime> out;
  if (!impl_->session) return out;
  const model::Pipeline& p = impl_->session->pipeline();
  for (const auto& stage : p.last_timings())
    for (const auto& t : stage) out.push_back({t.label, t.ns});
  return out;
}

std::vector<DeviceStepTime> Session::last_device_times() const {
  std::vector<DeviceStepTime> out;
  if (!impl_->session) return out;
  const model::Pipeline& p = impl_->session->pipeline();
  for (size_t i = 0; i < p.stages(); ++i) {
    DeviceStepTime d;
    d.device = impl_->model->stages[i].info.index;
    d.wall_ns = i < p.last_stage_seconds().size() ? p.last_stage_seconds()[i] * 1e9 : 0;
    if (i < p.last_timings().size())
      for (const auto& t : p.last_timings()[i])
        (t.label == model::Forward::kTransferLabel ? d.transfer_device_ns : d.kernel_ns) += t.ns;
    out.push_back(d);
  }
  return out;
}

TransferStats Session::transfers() const {
  TransferStats t;
  if (!impl_->session) return t;
  const model::Pipeline& p = impl_->session->pipeline();
  t.bytes = p.transferred_bytes();
  for (size_t i = 0; i < p.stages(); ++i) t.host_copy_seconds += p.stage(i).hidden_copy_seconds();
  t.last_step_host_copy_seconds = p.last_transfer_seconds();
  for (size_t i = 0; i + 1 < p.stages(); ++i)
    t.boundaries.push_back(std::string(model::StageLink::name(p.link(i).memory())) + ", " +
                           model::StageLink::name(p.link(i).order()));
  t.last_step_host_waits = p.last_host_waits();
  t.last_step_host_copy_bytes = p.last_host_copy_bytes();
  return t;
}

uint64_t Session::submissions() const {
  uint64_t total = 0;
  for (const auto& s : impl_->model->stages) total += s.device->submissions();
  return total;
}
uint32_t Session::ctx() const { return impl_->session ? impl_->session->forward().cache().capacity() : impl_->options.ctx; }
KvDtype Session::kv_dtype() const {
  return impl_->session ? from_kv_type(impl_->session->forward().cache().type()) : impl_->options.kv_dtype;
}
uint64_t Session::device_bytes() const {
  if (!impl_->session) return 0;
  uint64_t total = 0;
  model::Pipeline& p = impl_->session->pipeline();
  for (size_t i = 0; i < p.stages(); ++i) total += p.stage(i).cache().bytes() + p.stage(i).scratch_bytes();
  return total;
}

Bandwidth measure_bandwidth(const Model& model) {
  const auto r = kernels::measure_read_bandwidth(model.impl().first_device());
  return {r.bytes_per_second, r.bytes_read, r.gpu_timed};
}

void check_json_schema(const std::string& schema) { gen::compile_json_schema(schema); }

std::string read_text_file(const std::filesystem::path& path, uint64_t max_bytes) {
  return io::read_regular_file(path, max_bytes);
}

FmaRate measure_fma_rate(const Model& model) {
  const auto r = kernels::measure_fma_rate(model.impl().first_device());
  return {r.fma_per_second, r.gpu_timed};
}

void write_safetensors_f32(const std::filesystem::path& path, const std::vector<TensorF32>& tensors) {
  std::vector<io::TensorToWrite> out;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    if (!t.data || int64_t(t.data->size()) != n) throw Error("tensor '" + t.name + "': data size disagrees with its shape");
    out.push_back({t.name, io::DType::F32, t.shape,
                   std::span(reinterpret_cast<const std::byte*>(t.data->data()), t.data->size() * sizeof(float))});
  }
  io::write_safetensors(path, out);
}

}  // namespace inferno

namespace inferno::api {
kernels::KvType kv_type(KvDtype d, const model::LlamaModel& m) {
  switch (d) {
    case KvDtype::F32: return kernels::KvType::F32;
    case KvDtype::F16: return kernels::KvType::F16;
    case KvDtype::BF16: return kernels::KvType::BF16;
    case KvDtype::Q8: return kernels::KvType::Q8;
    case KvDtype::Auto: break;
  }
  return model::default_kv_type(m);
}

const model::LlamaModel& llama_of(const Model& model) { return model.impl().llama(); }
std::vector<const model::LlamaModel*> stages_of(const Model& model) { return model.impl().stage_models(); }

std::shared_ptr<const gen::GrammarConstraint> grammar_constraint(const Model::Impl& model, const std::string& schema) {
  if (schema.empty()) return nullptr;
  auto grammar = std::make_shared<const gen::Grammar>(gen::compile_json_schema(schema));
  std::shared_ptr<const gen::TokenTrie> vocabulary;
  {
    std::lock_guard lock(model.vocabulary_mutex);
    if (!model.vocabulary) {
      const text::Tokenizer& tokenizer = model.text->need_tokenizer(model.info.path);
      std::vector<std::string> bytes = tokenizer.token_bytes();
      bytes.resize(model.llama().hyper().vocab);  // the logits' rows: padded embeddings have no token
      model.vocabulary = std::make_shared<const gen::TokenTrie>(bytes);
    }
    vocabulary = model.vocabulary;
  }
  return std::make_shared<const gen::GrammarConstraint>(gen::GrammarConstraint{std::move(grammar), std::move(vocabulary)});
}
std::recursive_mutex& device_lock_of(const Model& model) { return model.impl().device_work; }
gen::GenerateOptions engine_options(const GenerateOptions& o, const std::vector<int32_t>& model_eos) {
  gen::GenerateOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.ignore_eos = o.ignore_eos;
  const SamplingOptions& s = o.sampling;
  g.sampling = {.do_sample = s.do_sample, .temperature = s.temperature, .top_k = s.top_k, .top_p = s.top_p,
                .min_p = s.min_p, .typical_p = s.typical_p, .repetition_penalty = s.repetition_penalty,
                .no_repeat_ngram_size = s.no_repeat_ngram_size, .bad_words_ids = s.bad_words_ids,
                .suppress_tokens = s.suppress_tokens, .min_length = s.min_length, .min_new_tokens = s.min_new_tokens,
                .eos_ids = o.eos_ids ? *o.eos_ids : model_eos, .seed = s.seed,
                .presence_penalty = s.presence_penalty, .frequency_penalty = s.frequency_penalty};
  return g;
}
}  // namespace inferno::api
