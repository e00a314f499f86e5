// `inferno devices` and `inferno info`.
#include <cstdio>

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
};

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
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16"}));
  info->add_option("--quantize", args->quantize, "show the footprint with float linear layers quantized: int8")
      ->check(CLI::IsMember({"none", "int8"}));
  info->add_flag("--json", args->json, "machine-readable output");
  info->callback([&action, args] { action = [args] { return run_info(*args); }; });
}

}  // namespace inferno::cli
