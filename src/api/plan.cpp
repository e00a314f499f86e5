// Planning a model over one or several devices from its headers alone: `inferno info --devices`, and the check every
// load makes before it reads a weight.
#include <algorithm>
#include <cstdio>

#include "inferno/inferno.hpp"
#include "model/plan.hpp"

namespace inferno {

namespace {

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / (1ull << 30));
  return buf;
}

struct Target {
  std::vector<int> indices;
  std::vector<std::string> names;
  std::vector<uint64_t> available;
  int machine_devices = 0;  // devices on this machine (0 when planning for given sizes)
};

Target resolve_devices(const PlanOptions& o) {
  Target t;
  if (!o.device_memory.empty()) {
    if (!o.devices.empty() && o.devices.size() != o.device_memory.size())
      throw Error("--devices names " + std::to_string(o.devices.size()) + " devices but --device-memory gives " +
                  std::to_string(o.device_memory.size()) + " sizes");
    for (size_t i = 0; i < o.device_memory.size(); ++i) {
      t.indices.push_back(o.devices.empty() ? int(i) : o.devices[i]);
      t.names.push_back("device of " + gib(o.device_memory[i]));
      t.available.push_back(o.device_memory[i]);
    }
    return t;
  }
  const std::vector<DeviceInfo> all = list_devices();
  t.machine_devices = int(all.size());
  std::vector<int> wanted = o.devices;
  if (wanted.empty())
    for (const auto& d : all)
      if (d.chosen) wanted.push_back(d.index);
  if (wanted.empty()) throw Error("no Vulkan 1.2 device to plan for (see `inferno devices`)");
  for (size_t i = 0; i < wanted.size(); ++i) {
    const int index = wanted[i];
    if (index < 0 || index >= int(all.size()))
      throw Error((wanted.size() == 1 ? "--device " : "--devices: device ") + std::to_string(index) + " does not exist (" +
                  std::to_string(all.size()) +
                  " found; see `inferno devices`)");
    for (size_t j = 0; j < i; ++j)
      if (wanted[j] == index) throw Error("--devices: device " + std::to_string(index) + " is named twice");
    t.indices.push_back(index);
    t.names.push_back(all[size_t(index)].name);
    t.available.push_back(all[size_t(index)].budget_bytes);
  }
  return t;
}

KvDtype resolve_kv(const ModelInfo& info, KvDtype kv) {
  if (kv != KvDtype::Auto) return kv;
  return info.dtype == "float32" ? KvDtype::F32 : KvDtype::F16;
}

model::PlanCosts costs_of(const ModelInfo& info, uint32_t ctx, uint32_t batch, KvDtype kv, size_t devices) {
  model::PlanCosts c;
  c.layer_bytes = info.layer_bytes;
  c.embedding_bytes = info.embedding_bytes;
  c.head_bytes = info.head_bytes;
  c.tied = info.tied_embeddings;
  if (c.tied) {
    c.tied_matrix_bytes = info.embedding_bytes;
    c.head_bytes += info.embedding_bytes;  // a device with the head but not the embedding holds the matrix too
  }
  const uint64_t rope_table = uint64_t(ctx) * info.head_dim * 4;
  ModelInfo one_layer = info;
  one_layer.layers = 1;
  c.kv_bytes_per_layer = kv_cache_bytes(one_layer, ctx, batch, kv) - rope_table;
  c.kv_bytes_per_token = kv_cache_bytes(info, 1, 1, kv) - uint64_t(info.head_dim) * 4;
  const uint32_t prompt = std::min<uint32_t>(ctx, 512);
  const uint64_t logits = uint64_t(batch) * info.vocab_size * 8;  // device logits + their host-visible copy
  c.logits_bytes = logits;
  c.per_device_bytes = scratch_bytes(info, prompt, batch) - logits + rope_table;
  if (devices > 1) c.per_device_bytes += uint64_t(prompt) * batch * info.hidden_size * 4 * 2;  // hidden state in, out
  return c;
}

struct Attempt {
  std::vector<uint32_t> split;
  std::vector<model::StagePlan> stages;
  bool fits = false;
};

Attempt attempt(const ModelInfo& info, uint32_t ctx, uint32_t batch, KvDtype kv, const std::vector<uint32_t>& split,
                const std::vector<uint64_t>& available) {
  const model::PlanCosts c = costs_of(info, ctx, batch, kv, available.size());
  Attempt a;
  a.split = split.empty() ? model::auto_split(c, available) : split;
  a.stages = model::plan_stages(c, a.split, available);
  a.fits = model::all_fit(a.stages);
  return a;
}

}  // namespace

std::vector<uint32_t> parse_split(const std::string& text) { return model::parse_split(text); }
std::vector<uint64_t> parse_memory_sizes(const std::string& text) { return model::parse_memory_sizes(text); }

SplitPlan plan_devices(const std::filesystem::path& path, const PlanOptions& o) {
  if (o.batch == 0) throw Error("batch must be at least 1");
  const ModelInfo info = inspect_model(path, o.quantize_int8);
  const Target target = resolve_devices(o);
  SplitPlan plan;
  plan.ctx = o.ctx ? o.ctx : std::min<uint32_t>(info.max_position_embeddings, 4096);
  plan.batch = o.batch;
  plan.kv_dtype = resolve_kv(info, o.kv_dtype);
  plan.auto_split = o.split.empty();
  plan.transfer_bytes_per_token = target.available.size() > 1 ? uint64_t(info.hidden_size) * 4 : 0;
  plan.kv_bytes_per_token = costs_of(info, 1, 1, plan.kv_dtype, target.available.size()).kv_bytes_per_token;
  const Attempt a = attempt(info, plan.ctx, plan.batch, plan.kv_dtype, o.split, target.available);
  for (size_t i = 0; i < a.stages.size(); ++i) {
    const model::StagePlan& s = a.stages[i];
    plan.devices.push_back({.index = target.indices[i], .name = target.names[i], .available_bytes = s.available,
                            .first_layer = s.first, .last_layer = s.last, .embedding = s.embedding, .lm_head = s.head,
                            .weight_bytes = s.weight_bytes, .kv_cache_bytes = s.kv_bytes,
                            .activation_bytes = s.activation_bytes, .total_bytes = s.total(), .fits = s.fits()});
  }
  plan.fits = a.fits;
  if (plan.fits) return plan;

  // What would fit, each change alone.
  if (!o.split.empty()) {
    const Attempt automatic = attempt(info, plan.ctx, plan.batch, plan.kv_dtype, {}, target.available);
    if (automatic.fits) plan.suggestions.push_back("--split " + model::split_text(automatic.split));
  }
  if (plan.ctx > 1 && attempt(info, 1, plan.batch, plan.kv_dtype, o.split, target.available).fits) {
    uint32_t lo = 1, hi = plan.ctx - 1;  // the largest context that fits
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo + 1) / 2;
      if (attempt(info, mid, plan.batch, plan.kv_dtype, o.split, target.available).fits) lo = mid;
      else hi = mid - 1;
    }
    plan.suggestions.push_back("--ctx " + std::to_string(lo));
  }
  if (plan.kv_dtype == KvDtype::F32 && attempt(info, plan.ctx, plan.batch, KvDtype::F16, o.split, target.available).fits)
    plan.suggestions.push_back("--kv-dtype f16");
  if (plan.kv_dtype != KvDtype::Q8 && info.head_dim % 32 == 0 &&
      attempt(info, plan.ctx, plan.batch, KvDtype::Q8, o.split, target.available).fits)
    plan.suggestions.push_back("--kv-dtype q8");
  if (!o.quantize_int8 && info.quantization.empty()) {
    const ModelInfo int8 = inspect_model(path, true);
    if (int8.weight_bytes < info.weight_bytes &&
        attempt(int8, plan.ctx, plan.batch, plan.kv_dtype, o.split, target.available).fits)
      plan.suggestions.push_back("--quantize int8");
  }
  if (target.machine_devices > int(target.indices.size())) {
    PlanOptions every = o;
    every.devices.clear();
    every.split.clear();
    std::vector<uint64_t> available;
    const std::vector<DeviceInfo> all = list_devices();
    std::string list;
    for (const auto& d : all) {
      available.push_back(d.budget_bytes);
      list += (list.empty() ? "" : ",") + std::to_string(d.index);
    }
    if (attempt(info, plan.ctx, plan.batch, plan.kv_dtype, {}, available).fits) plan.suggestions.push_back("--devices " + list);
  }
  return plan;
}

std::string plan_refusal(const SplitPlan& plan) {
  std::string line;
  for (const DevicePlan& d : plan.devices) {
    if (d.fits) continue;
    line = "does not fit on device " + std::to_string(d.index) + " (" + d.name + "): it needs " +
           std::to_string(d.total_bytes) + " bytes (" + gib(d.total_bytes) + ": weights " + gib(d.weight_bytes) +
           " + KV cache " + gib(d.kv_cache_bytes) + " + activations " + gib(d.activation_bytes) +
           (d.first_layer == d.last_layer ? std::string(", no layers")
                                          : ", layers " + std::to_string(d.first_layer) + "-" + std::to_string(d.last_layer - 1)) +
           ") and " +
           std::to_string(d.available_bytes) + " bytes (" + gib(d.available_bytes) + ") are available";
    break;
  }
  if (plan.suggestions.empty()) return line + "; no single change of --ctx, --kv-dtype, --quantize or --split fits";
  std::string options;
  for (const auto& s : plan.suggestions) options += (options.empty() ? "" : ", ") + s;
  return line + "; would fit: " + options;
}

}  // namespace inferno
