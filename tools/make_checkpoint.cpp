// inferno-make-checkpoint: writes a Hugging Face-layout Llama checkpoint (config.json, generation_config.json,
// model.safetensors or shards + index) with random weights and real shapes, so speed can be measured without
// downloads. Uses the engine's own safetensors writer, one tensor at a time. The output loads in transformers too.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/hf_config.hpp"
#include "io/safetensors_writer.hpp"
#include "util/error.hpp"
#include "util/half.hpp"

using namespace inferno;
namespace fs = std::filesystem;

namespace {

struct Shape {
  int64_t hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, max_pos;
  bool tied;
  double theta;
  std::string rope_json;  // the rope_scaling object, or "null"
  std::string name_or_path = "";  // config.json's _name_or_path (the family `inferno info` names)
  bool headers_only = false;      // sparse shards: real headers, the tensors' bytes left as holes
};

const std::map<std::string, Shape> kPresets = {
    {"llama-3.2-1b", {2048, 8192, 16, 32, 8, 64, 128256, 131072, true, 500000,
                      R"({"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192})"}},
    {"llama-3.1-8b", {4096, 14336, 32, 32, 8, 128, 128256, 131072, false, 500000,
                      R"({"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192})"}},
    {"tinyllama-1.1b", {2048, 5632, 22, 32, 4, 64, 32000, 2048, false, 10000, "null"}},
    // 141 GB of BF16: written as headers over sparse files (the data reads as zeros), for planning and refusals.
    {"deepseek-r1-distill-llama-70b", {8192, 28672, 80, 64, 8, 128, 128256, 131072, false, 500000,
                      R"({"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192})",
                      "deepseek-ai/DeepSeek-R1-Distill-Llama-70B", true}},
};

// xorshift64*: fast enough for billions of weights; uniform in [-a, a] with a = 0.02·√3 (std 0.02, as HF's init).
struct Random {
  uint64_t state;
  float next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const uint64_t r = state * 0x2545F4914F6CDD1Dull;
    return (float((r >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * 0.0346410162f;
  }
};

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Kind { Weight, Norm, Int8, Scale } kind;
};

std::string config_json(const Shape& s, const std::string& dtype, bool w8a8) {
  std::ostringstream c;
  c << "{\n";
  if (!s.name_or_path.empty()) c << "  \"_name_or_path\": \"" << s.name_or_path << "\",\n";
  c << "  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
    << "  \"hidden_size\": " << s.hidden << ",\n  \"intermediate_size\": " << s.intermediate << ",\n"
    << "  \"num_hidden_layers\": " << s.layers << ",\n  \"num_attention_heads\": " << s.heads << ",\n"
    << "  \"num_key_value_heads\": " << s.kv_heads << ",\n  \"head_dim\": " << s.head_dim << ",\n"
    << "  \"vocab_size\": " << s.vocab << ",\n  \"max_position_embeddings\": " << s.max_pos << ",\n"
    << "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": " << s.theta << ",\n  \"rope_scaling\": " << s.rope_json << ",\n"
    << "  \"tie_word_embeddings\": " << (s.tied ? "true" : "false") << ",\n  \"attention_bias\": false,\n"
    << "  \"mlp_bias\": false,\n  \"hidden_act\": \"silu\",\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
    << "  \"torch_dtype\": \"" << dtype << "\"";
  if (w8a8)
    c << ",\n  \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"int-quantized\", "
         "\"quantization_status\": \"compressed\", \"ignore\": [\"lm_head\"], \"config_groups\": {\"group_0\": "
         "{\"targets\": [\"Linear\"], \"weights\": {\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, "
         "\"strategy\": \"channel\", \"dynamic\": false, \"group_size\": null}, \"input_activations\": {\"num_bits\": 8, "
         "\"type\": \"int\", \"symmetric\": true, \"strategy\": \"token\", \"dynamic\": true, \"group_size\": null}}}}";
  c << "\n}\n";
  return c.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"inferno-make-checkpoint: a random-weight Llama checkpoint with real shapes"};
  std::string preset, config_file, out, dtype = "bf16";
  int64_t layers = 0;
  bool w8a8 = false, headers_only = false;
  double shard_gb = 5.0;
  uint64_t seed = 1;
  app.add_option("--preset", preset, "llama-3.2-1b, llama-3.1-8b, tinyllama-1.1b or deepseek-r1-distill-llama-70b (headers only)");
  app.add_option("--config", config_file, "take the shapes from this config.json instead");
  app.add_option("--dtype", dtype, "bf16, f16 or f32")->check(CLI::IsMember({"bf16", "f16", "f32"}));
  app.add_flag("--w8a8", w8a8, "compressed-tensors INT8 weights (per-channel scales) and dynamic per-token activations");
  app.add_flag("--headers-only", headers_only, "sparse shards: real headers, the tensors' bytes left unwritten (read as zeros)");
  app.add_option("--layers", layers, "override the number of layers (quick tests)");
  app.add_option("--shard-gb", shard_gb, "largest shard in GB (default 5, as transformers)");
  app.add_option("--seed", seed, "random seed");
  app.add_option("-o,--out", out, "output directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    Shape s{};
    if (!config_file.empty()) {
      std::ifstream f(config_file);
      if (!f) throw Error(config_file + ": cannot read");
      std::stringstream ss;
      ss << f.rdbuf();
      const io::LlamaConfig c = io::parse_llama_config(ss.str(), config_file);
      s = {c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
           c.head_dim, c.vocab_size, c.max_position_embeddings, c.tie_word_embeddings, c.rope.theta, "null"};
    } else {
      auto it = kPresets.find(preset);
      if (it == kPresets.end()) throw Error("give --preset (llama-3.2-1b, llama-3.1-8b, tinyllama-1.1b, deepseek-r1-distill-llama-70b) or --config");
      s = it->second;
    }
    if (layers > 0) s.layers = layers;
    headers_only = headers_only || s.headers_only;
    const io::DType float_type = dtype == "f32" ? io::DType::F32 : dtype == "f16" ? io::DType::F16 : io::DType::BF16;
    const std::string torch_dtype = dtype == "f32" ? "float32" : dtype == "f16" ? "float16" : "bfloat16";

    std::vector<Tensor> tensors;
    auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
      if (w8a8) {
        tensors.push_back({name + ".weight", {rows, cols}, Tensor::Int8});
        tensors.push_back({name + ".weight_scale", {rows, 1}, Tensor::Scale});
      } else {
        tensors.push_back({name + ".weight", {rows, cols}, Tensor::Weight});
      }
    };
    tensors.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}, Tensor::Weight});
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      tensors.push_back({p + "input_layernorm.weight", {s.hidden}, Tensor::Norm});
      tensors.push_back({p + "post_attention_layernorm.weight", {s.hidden}, Tensor::Norm});
      linear(p + "self_attn.q_proj", s.heads * s.head_dim, s.hidden);
      linear(p + "self_attn.k_proj", s.kv_heads * s.head_dim, s.hidden);
      linear(p + "self_attn.v_proj", s.kv_heads * s.head_dim, s.hidden);
      linear(p + "self_attn.o_proj", s.hidden, s.heads * s.head_dim);
      linear(p + "mlp.gate_proj", s.intermediate, s.hidden);
      linear(p + "mlp.up_proj", s.intermediate, s.hidden);
      linear(p + "mlp.down_proj", s.hidden, s.intermediate);
    }
    tensors.push_back({"model.norm.weight", {s.hidden}, Tensor::Norm});
    if (!s.tied) tensors.push_back({"lm_head.weight", {s.vocab, s.hidden}, Tensor::Weight});

    fs::create_directories(out);
    std::ofstream(fs::path(out) / "config.json") << config_json(s, torch_dtype, w8a8);
    std::ofstream(fs::path(out) / "generation_config.json") << "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n";

    // Group tensors into shards of at most shard_gb.
    auto bytes_of = [&](const Tensor& t) {
      uint64_t n = 1;
      for (auto d : t.shape) n *= uint64_t(d);
      if (t.kind == Tensor::Int8) return n;
      if (t.kind == Tensor::Scale) return n * 2;  // BF16 scales, as compressed-tensors writes them
      return n * io::dtype_size(float_type);
    };
    std::vector<std::vector<const Tensor*>> shards(1);
    uint64_t in_shard = 0, total = 0;
    for (const auto& t : tensors) {
      const uint64_t b = bytes_of(t);
      if (in_shard > 0 && double(in_shard + b) > shard_gb * 1e9) shards.emplace_back(), in_shard = 0;
      shards.back().push_back(&t);
      in_shard += b;
      total += b;
    }
    Random rng{seed * 0x9E3779B97F4A7C15ull + 1};
    std::ostringstream index;
    index << "{\n  \"metadata\": {\"total_size\": " << total << "},\n  \"weight_map\": {";
    bool first_entry = true;
    for (size_t si = 0; si < shards.size(); ++si) {
      char name[64];
      if (shards.size() == 1) std::snprintf(name, sizeof name, "model.safetensors");
      else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", si + 1, shards.size());
      std::vector<io::TensorToWrite> writes;
      for (const Tensor* t : shards[si]) {
        io::TensorToWrite w;
        w.name = t->name;
        w.shape = t->shape;
        w.dtype = t->kind == Tensor::Int8 ? io::DType::I8 : t->kind == Tensor::Scale ? io::DType::BF16 : float_type;
        w.hole = headers_only;
        const auto kind = t->kind;
        const auto type = w.dtype;
        if (!w.hole) w.produce = [&rng, kind, type](std::span<std::byte> bytes) {
          if (kind == Tensor::Int8) {
            for (auto& b : bytes) b = std::byte(uint8_t(int8_t(std::lround(rng.next() / 0.0346410162f * 127.0f))));
            return;
          }
          const size_t n = bytes.size() / io::dtype_size(type);
          for (size_t i = 0; i < n; ++i) {
            // Norm weights are 1 (as initialised); int8 scales ~ 0.02/127 so that q·s has the float weights' range.
            const float v = kind == Tensor::Norm ? 1.0f : kind == Tensor::Scale ? 0.0346410162f / 127.0f : rng.next();
            if (type == io::DType::F32) std::memcpy(bytes.data() + i * 4, &v, 4);
            else {
              const uint16_t h = type == io::DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
              std::memcpy(bytes.data() + i * 2, &h, 2);
            }
          }
        };
        writes.push_back(std::move(w));
        index << (first_entry ? "\n" : ",\n") << "    \"" << t->name << "\": \"" << name << "\"";
        first_entry = false;
      }
      io::write_safetensors(fs::path(out) / name, writes, {{"format", "pt"}}, 64);  // tensors read in place
      std::fprintf(stderr, "wrote %s/%s\n", out.c_str(), name);
    }
    index << "\n  }\n}\n";
    if (shards.size() > 1) std::ofstream(fs::path(out) / "model.safetensors.index.json") << index.str();
    std::fprintf(stderr, "%zu tensors, %.2f GB in %zu file(s)\n", tensors.size(), double(total) / 1e9, shards.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "inferno-make-checkpoint: error: %s\n", e.what());
    return 1;
  }
}
