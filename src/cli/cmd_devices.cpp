// `inferno devices` and `inferno info`.
#include <algorithm>
#include <cstdio>
#include <optional>

#include "cli/commands.hpp"
#include "util/json_writer.hpp"

namespace inferno::cli {

namespace {

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / (1ull << 30));
  return buf;
}
std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1ull << 20));
  return buf;
}
const char* yes(bool b) { return b ? "yes" : "no"; }

int run_devices() {
  const auto devices = list_devices();
  if (devices.empty()) {
    std::printf("no Vulkan devices found\n");
    return 1;
  }
  for (const auto& d : devices) {
    std::printf("device %d: %s (%s)%s\n", d.index, d.name.c_str(), d.type.c_str(), d.chosen ? "  <- chosen" : "");
    std::printf("  driver: %s, Vulkan %s\n", d.driver.c_str(), d.api_version.c_str());
    std::printf("  memory: %s device-local (budget %s), largest allocation %s\n", gib(d.memory_bytes).c_str(),
                gib(d.budget_bytes).c_str(), gib(d.max_allocation_bytes).c_str());
    std::printf("  maxStorageBufferRange: %s, shared memory: %u bytes\n", mib(d.max_storage_buffer_range).c_str(),
                d.max_shared_memory);
    std::printf("  subgroup: size %u (%u..%u), arithmetic %s\n", d.subgroup_size, d.min_subgroup_size,
                d.max_subgroup_size, yes(d.subgroup_arithmetic));
    std::printf("  fp16 arithmetic %s, int8 arithmetic %s, 16-bit storage %s, 8-bit storage %s\n", yes(d.float16),
                yes(d.int8), yes(d.storage_16bit), yes(d.storage_8bit));
    std::printf("  bfloat16 %s, cooperative matrix %s, integer dot product %s, timestamps %s\n", yes(d.bfloat16),
                yes(d.cooperative_matrix), yes(d.integer_dot_product), yes(d.timestamps));
    std::printf("  timeline semaphores %s, shared as OPAQUE_FD %s, host memory import %s\n", yes(d.timeline_semaphore),
                yes(d.external_timeline_fd), yes(d.host_memory_import));
    if (!d.cooperative_matrix_shapes.empty()) {
      std::string shapes;
      for (const auto& s : d.cooperative_matrix_shapes) shapes += (shapes.empty() ? "" : ", ") + s;
      std::printf("  cooperative matrix shapes: %s\n", shapes.c_str());
    }
  }
  return 0;
}

struct InfoArgs {
  std::string path;
  uint32_t ctx = 0, batch = 1;
  std::string kv_dtype = "auto";
  std::string quantize = "none";
  bool json = false;
  std::string devices, split = "auto", device_memory;
};

// "layers 0-39 (40)", "no layers"
std::string layer_range(const DevicePlan& d) {
  if (d.first_layer == d.last_layer) return "no layers";
  return "layers " + std::to_string(d.first_layer) + "-" + std::to_string(d.last_layer - 1) + " (" +
         std::to_string(d.last_layer - d.first_layer) + ")";
}

std::string joined(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ", ") + i;
  return s;
}

void print_plan(const SplitPlan& plan) {
  std::string split;
  for (const auto& d : plan.devices) split += (split.empty() ? "" : ",") + std::to_string(d.last_layer - d.first_layer);
  std::printf("plan for ctx %u, batch %u, KV %s: split %s%s over %zu device(s)\n", plan.ctx, plan.batch,
              kv_dtype_name(plan.kv_dtype), split.c_str(), plan.auto_split ? " (auto)" : "", plan.devices.size());
  std::printf("  KV cache: %llu bytes per token (%s)\n", (unsigned long long)plan.kv_bytes_per_token,
              kv_dtype_name(plan.kv_dtype));
  for (const auto& d : plan.devices) {
    std::string extra;
    if (d.embedding) extra += " + embedding";
    if (d.lm_head) extra += " + final norm, lm_head";
    std::printf("  device %d %s: %s%s: weights %s + KV %s + activations %s = %s of %s -> %s\n", d.index, d.name.c_str(),
                layer_range(d).c_str(), extra.c_str(), gib(d.weight_bytes).c_str(), gib(d.kv_cache_bytes).c_str(),
                gib(d.activation_bytes).c_str(), gib(d.total_bytes).c_str(), gib(d.available_bytes).c_str(),
                d.fits ? "fits" : "does NOT fit");
  }
  if (plan.devices.size() > 1)
    std::printf("  hidden state across each of %zu boundaries: %llu bytes per token (f32)\n", plan.devices.size() - 1,
                (unsigned long long)plan.transfer_bytes_per_token);
  if (plan.fits) std::printf("plan: fits\n");
  else if (plan.suggestions.empty()) std::printf("plan: does NOT fit; no single change of --ctx, --kv-dtype, --quantize or --split fits\n");
  else std::printf("plan: does NOT fit; would fit: %s\n", joined(plan.suggestions).c_str());
}

void plan_json(JsonWriter& j, const SplitPlan& plan) {
  j.key("plan").begin_object();
  j.field("ctx", plan.ctx).field("batch", plan.batch).field("kv_dtype", std::string(kv_dtype_name(plan.kv_dtype)));
  j.field("auto_split", plan.auto_split).field("fits", plan.fits);
  j.field("transfer_bytes_per_token", plan.transfer_bytes_per_token);
  j.field("kv_bytes_per_token", plan.kv_bytes_per_token);
  j.key("devices").begin_array();
  for (const auto& d : plan.devices) {
    j.begin_object().field("index", d.index).field("name", d.name).field("available_bytes", d.available_bytes);
    j.field("first_layer", d.first_layer).field("last_layer", d.last_layer).field("layers", d.last_layer - d.first_layer);
    j.field("embedding", d.embedding).field("lm_head", d.lm_head).field("weight_bytes", d.weight_bytes);
    j.field("kv_cache_bytes", d.kv_cache_bytes).field("activation_bytes", d.activation_bytes);
    j.field("total_bytes", d.total_bytes).field("fits", d.fits).end_object();
  }
  j.end_array();
  j.key("suggestions").begin_array();
  for (const auto& s : plan.suggestions) j.value(s);
  j.end_array();
  j.end_object();
}

int run_info(const InfoArgs& a) {
  const ModelInfo info = inspect_model(a.path, a.quantize == "int8");
  const uint32_t ctx = a.ctx ? a.ctx : std::min<uint32_t>(info.max_position_embeddings, 4096);
  const KvDtype kv = *parse_kv_dtype(a.kv_dtype);
  const uint64_t kv_bytes = kv_cache_bytes(info, ctx, a.batch, kv);
  // Activations for a prompt that fills a 512-token prefill (the engine processes the prompt in one pass).
  const uint64_t act_bytes = scratch_bytes(info, std::min<uint32_t>(ctx, 512), a.batch);
  uint64_t total = 0;
  if (__builtin_add_overflow(info.weight_bytes, kv_bytes, &total) || __builtin_add_overflow(total, act_bytes, &total))
    throw Error("memory for ctx " + std::to_string(ctx) + ", batch " + std::to_string(a.batch) + ": overflows 64 bits");
  std::vector<DeviceInfo> devices;
  try {
    devices = list_devices();
  } catch (const Error&) {
    // No Vulkan at all: still describe the model.
  }
  // The plan: on the devices named (or the preferred one), or on devices of the sizes given.
  PlanOptions po;
  po.devices = parse_devices(a.devices);
  po.split = parse_split_flag(a.split);
  try {
    if (!a.device_memory.empty()) po.device_memory = parse_memory_sizes(a.device_memory);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  const size_t planned = !po.device_memory.empty() ? po.device_memory.size() : std::max<size_t>(po.devices.size(), 1);
  if (!po.split.empty() && po.split.size() != planned)
    throw UsageError("--split gives " + std::to_string(po.split.size()) + " layer counts for " + std::to_string(planned) +
                     " device(s)");
  po.ctx = ctx;
  po.batch = a.batch;
  po.kv_dtype = kv;
  po.quantize_int8 = a.quantize == "int8";
  std::optional<SplitPlan> plan;
  if (!devices.empty() || !po.device_memory.empty()) plan = plan_devices(a.path, po);
  if (a.json) {
    JsonWriter j;
    j.begin_object();
    j.field("path", info.path.string()).field("format", info.format).field("family", info.family);
    j.field("tokenizer", info.tokenizer);
    j.field("layers", info.layers).field("hidden_size", info.hidden_size).field("intermediate_size", info.intermediate_size);
    j.field("heads", info.heads).field("kv_heads", info.kv_heads).field("head_dim", info.head_dim);
    j.field("vocab_size", info.vocab_size).field("max_position_embeddings", info.max_position_embeddings);
    j.field("rope_type", info.rope_type).field("dtype", info.dtype).field("quantization", info.quantization);
    j.field("tied_embeddings", info.tied_embeddings);
    j.field("params", info.params).field("weight_bytes", info.weight_bytes);
    j.field("ctx", ctx).field("batch", a.batch).field("kv_cache_bytes", kv_bytes).field("activation_bytes", act_bytes);
    j.field("total_bytes", total);
    j.key("tensor_bytes_by_dtype").begin_object();
    for (const auto& [dtype, bytes] : info.tensor_bytes_by_dtype) j.field(dtype, bytes);
    j.end_object();
    j.key("dtype_by_group").begin_object();
    for (const auto& [group, dtype] : info.dtype_by_group) j.field(group, dtype);
    j.end_object();
    j.key("shards").begin_array();
    for (const auto& s : info.shards) j.value(s.filename().string());
    j.end_array();
    j.key("devices").begin_array();
    for (const auto& d : devices)
      j.begin_object().field("name", d.name).field("memory_bytes", d.memory_bytes).field("fits", total <= d.budget_bytes).end_object();
    j.end_array();
    j.key("layer_bytes").begin_array();
    for (uint64_t b : info.layer_bytes) j.value(b);
    j.end_array();
    j.field("embedding_bytes", info.embedding_bytes).field("head_bytes", info.head_bytes);
    if (plan) plan_json(j, *plan);
    j.end_object();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("model: %s\n", info.path.string().c_str());
  std::printf("format: %s, family: %s, tokenizer: %s\n", info.format.c_str(), info.family.c_str(), info.tokenizer.c_str());
  std::printf("layers: %u\n", info.layers);
  std::printf("hidden size: %u, intermediate size: %u\n", info.hidden_size, info.intermediate_size);
  std::printf("attention: %u heads, %u KV heads, head_dim %u%s\n", info.heads, info.kv_heads, info.head_dim,
              info.attention_bias ? ", with bias" : "");
  std::printf("vocabulary: %u, max positions: %u, rope: %s\n", info.vocab_size, info.max_position_embeddings,
              info.rope_type.c_str());
  std::printf("parameters: %llu (%.2f B)%s\n", (unsigned long long)info.params, double(info.params) / 1e9,
              info.tied_embeddings ? ", lm_head tied to the embedding" : "");
  std::printf("dtype: %s%s%s\n", info.dtype.empty() ? "(not stated)" : info.dtype.c_str(),
              info.quantization.empty() ? "" : ", quantization: ", info.quantization.c_str());
  for (const auto& [dtype, bytes] : info.tensor_bytes_by_dtype)
    std::printf("  %-6s %s\n", dtype.c_str(), mib(bytes).c_str());
  std::string groups;
  for (const auto& [group, dtype] : info.dtype_by_group) groups += (groups.empty() ? "" : ", ") + group + " " + dtype;
  std::printf("dtype by group: %s%s\n", groups.c_str(), info.tied_embeddings ? " (lm_head tied)" : "");
  std::printf("files: %zu shard(s), %s\n", info.shards.size(), mib(info.shard_bytes).c_str());
  std::printf("memory for ctx %u, batch %u (KV %s): weights %s + KV cache %s + activations %s = %s\n", ctx, a.batch,
              a.kv_dtype.c_str(), mib(info.weight_bytes).c_str(), mib(kv_bytes).c_str(), mib(act_bytes).c_str(),
              mib(total).c_str());
  for (const auto& d : devices)
    std::printf("  device %d %s: %s available -> %s\n", d.index, d.name.c_str(), gib(d.budget_bytes).c_str(),
                total <= d.budget_bytes ? "fits" : "does NOT fit");
  if (plan) print_plan(*plan);
  return 0;
}

}  // namespace

void add_device_commands(CLI::App& app, Action& action) {
  auto* devices = app.add_subcommand("devices", "list Vulkan devices, their capabilities and which one is chosen");
  devices->callback([&action] { action = run_devices; });

  auto args = std::make_shared<InfoArgs>();
  auto* info = app.add_subcommand("info", "describe a checkpoint and the memory it needs on each device");
  info->add_option("-m,--model", args->path, "Hugging Face checkpoint directory or .gguf file")->required();
  info->add_option("--ctx", args->ctx, "context length for the memory estimate (default or 0: min(max positions, 4096))")
      ->check(int_in(0, kMaxCtx));
  info->add_option("--batch", args->batch, "sequences for the memory estimate")->check(int_in(1, kMaxBatch));
  info->add_option("--kv-dtype", args->kv_dtype, "KV cache dtype for the estimate")
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16", "q8"}));
  info->add_option("--quantize", args->quantize, "show the footprint with float linear layers quantized: int8")
      ->check(CLI::IsMember({"none", "int8"}));
  info->add_flag("--json", args->json, "machine-readable output");
  info->add_option("--devices", args->devices, "plan the layers split over these Vulkan devices, e.g. 0,1");
  info->add_option("--split", args->split, "layers per device: auto (from each device's free memory) or N1,N2,...");
  info->add_option("--device-memory", args->device_memory,
                   "plan for devices of these sizes instead of this machine's, e.g. 80G,80G (K, M, G, T: powers of 1024)");
  info->callback([&action, args] { action = [args] { return run_info(*args); }; });
}

}  // namespace inferno::cli
