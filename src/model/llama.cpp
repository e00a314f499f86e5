#include "model/llama.hpp"

#include <cstdio>

#include "io/checkpoint.hpp"
#include "util/error.hpp"
#include "util/progress.hpp"

namespace inferno::model {

namespace {

uint32_t to_u32(int64_t v, const char* field) {
  if (v < 0 || v > int64_t(UINT32_MAX)) throw Error(std::string("config.json: ") + field + " out of range");
  return uint32_t(v);
}

kernels::WeightType weight_type_of(const io::TensorInfo& t, const std::filesystem::path& dir) {
  switch (t.dtype) {
    case io::DType::F32: return kernels::WeightType::F32;
    case io::DType::F16: return kernels::WeightType::F16;
    case io::DType::BF16: return kernels::WeightType::BF16;
    default:
      throw Error(dir.string() + ": tensor '" + t.name + "' has dtype " + std::string(io::dtype_name(t.dtype)) +
                  ", which this engine does not run (supported: F32, F16, BF16)");
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Loads tensors of a checkpoint onto the device, checking each shape against what the config implies.
class Loader {
 public:
  Loader(vk::Device& device, const io::Checkpoint& ckpt, ProgressBar& progress)
      : device_(device), ckpt_(ckpt), progress_(progress) {}

  const io::TensorInfo& expect(const std::string& name, std::vector<int64_t> shape) const {
    const io::TensorInfo* t = ckpt_.find(name);
    if (!t) throw Error(ckpt_.directory().string() + ": tensor '" + name + "' is missing from the checkpoint");
    if (t->shape != shape)
      throw Error(ckpt_.directory().string() + ": tensor '" + name + "' has shape " + shape_string(t->shape) +
                  ", the config implies " + shape_string(shape));
    return *t;
  }

  kernels::DeviceMatrix matrix(const std::string& name, uint32_t rows, uint32_t cols) {
    const auto& t = expect(name, {rows, cols});
    return kernels::upload_matrix(device_, name, weight_type_of(t, ckpt_.directory()), rows, cols, ckpt_.data(t), 0,
                                  [&](uint64_t n) { progress_.advance(n); });
  }

  kernels::DeviceVector vector(const std::string& name, uint32_t size) {
    const auto& t = expect(name, {size});
    auto v = kernels::upload_vector(device_, name, weight_type_of(t, ckpt_.directory()), size, ckpt_.data(t));
    progress_.advance(t.bytes);
    return v;
  }

  std::optional<kernels::DeviceVector> optional_vector(bool present, const std::string& name, uint32_t size) {
    if (!present) return std::nullopt;
    return vector(name, size);
  }

 private:
  vk::Device& device_;
  const io::Checkpoint& ckpt_;
  ProgressBar& progress_;
};

}  // namespace

LlamaHyper hyper_from_config(const io::LlamaConfig& c) {
  LlamaHyper h;
  h.layers = to_u32(c.num_hidden_layers, "num_hidden_layers");
  h.hidden = to_u32(c.hidden_size, "hidden_size");
  h.intermediate = to_u32(c.intermediate_size, "intermediate_size");
  h.heads = to_u32(c.num_attention_heads, "num_attention_heads");
  h.kv_heads = to_u32(c.num_key_value_heads, "num_key_value_heads");
  h.head_dim = to_u32(c.head_dim, "head_dim");
  h.vocab = to_u32(c.vocab_size, "vocab_size");
  h.rms_eps = float(c.rms_norm_eps);
  h.max_position_embeddings = to_u32(c.max_position_embeddings, "max_position_embeddings");
  h.attention_bias = c.attention_bias;
  h.mlp_bias = c.mlp_bias;
  h.tied_embeddings = c.tie_word_embeddings;
  if (h.head_dim % 2 || h.head_dim > 256)
    throw Error("config.json: head_dim " + std::to_string(h.head_dim) + " is not supported (even, at most 256)");
  h.rope.type = c.rope.type;
  h.rope.theta = c.rope.theta;
  h.rope.factor = c.rope.factor;
  h.rope.head_dim = int(h.head_dim);
  h.rope.max_position_embeddings = int(h.max_position_embeddings);
  h.rope.original_max_position_embeddings = c.rope.original_max_position_embeddings;
  h.rope.low_freq_factor = c.rope.low_freq_factor;
  h.rope.high_freq_factor = c.rope.high_freq_factor;
  h.rope.beta_fast = c.rope.beta_fast;
  h.rope.beta_slow = c.rope.beta_slow;
  h.rope.attention_factor = c.rope.attention_factor;
  h.rope.mscale = c.rope.mscale;
  h.rope.mscale_all_dim = c.rope.mscale_all_dim;
  h.rope.truncate = c.rope.truncate;
  return h;
}

std::string detect_family(const io::LlamaConfig& c) {
  if (c.name_or_path.find("DeepSeek-R1-Distill-Llama") != std::string::npos) return "DeepSeek-R1-Distill-Llama";
  if (c.name_or_path.find("TinyLlama") != std::string::npos) return "TinyLlama";
  if (c.vocab_size >= 128000) {
    if (c.rope.type == "llama3") {
      if (c.tie_word_embeddings || c.num_hidden_layers <= 28) return "Llama 3.2";
      return "Llama 3.1";
    }
    return "Llama 3";
  }
  if (c.vocab_size == 32000 && c.hidden_size == 2048 && c.num_hidden_layers == 22) return "TinyLlama";
  if (c.vocab_size == 32000) return "Llama 2";
  return "Llama (other)";
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t total = embed_.bytes() + final_norm_.buffer.bytes();
  if (lm_head_) total += lm_head_->bytes();
  auto vec = [](const std::optional<kernels::DeviceVector>& v) { return v ? v->buffer.bytes() : 0; };
  for (const auto& l : layers_) {
    total += l.attn_norm.buffer.bytes() + l.ffn_norm.buffer.bytes();
    total += l.q.bytes() + l.k.bytes() + l.v.bytes() + l.o.bytes() + l.gate.bytes() + l.up.bytes() + l.down.bytes();
    total += vec(l.q_bias) + vec(l.k_bias) + vec(l.v_bias) + vec(l.o_bias) + vec(l.gate_bias) + vec(l.up_bias) +
             vec(l.down_bias);
  }
  return total;
}

std::unique_ptr<LlamaModel> LlamaModel::load(vk::Device& device, const std::filesystem::path& dir,
                                             const LoadOptions& options) {
  std::unique_ptr<LlamaModel> m(new LlamaModel(device));
  m->path_ = dir;
  m->config_ = io::load_llama_config(dir);
  if (!m->config_.quant_method.empty())
    throw Error((dir / "config.json").string() + ": quantization_config.quant_method '" + m->config_.quant_method +
                "' is not supported yet");
  const LlamaHyper h = m->hyper_ = hyper_from_config(m->config_);
  io::Checkpoint ckpt(dir);

  ProgressBar progress("loading", ckpt.total_tensor_bytes(), options.quiet);
  Loader load(device, ckpt, progress);
  m->embed_ = load.matrix("model.embed_tokens.weight", h.vocab, h.hidden);
  // transformers ties lm_head to the embedding when asked, whatever the file holds.
  const bool has_lm_head = ckpt.find("lm_head.weight") != nullptr;
  if (has_lm_head && !h.tied_embeddings) {
    m->lm_head_ = load.matrix("lm_head.weight", h.vocab, h.hidden);
  } else if (!h.tied_embeddings) {
    throw Error(dir.string() + ": tensor 'lm_head.weight' is missing and tie_word_embeddings is false");
  }
  m->final_norm_ = load.vector("model.norm.weight", h.hidden);
  for (uint32_t i = 0; i < h.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = load.vector(p + "input_layernorm.weight", h.hidden);
    l.ffn_norm = load.vector(p + "post_attention_layernorm.weight", h.hidden);
    l.q = load.matrix(p + "self_attn.q_proj.weight", h.q_dim(), h.hidden);
    l.k = load.matrix(p + "self_attn.k_proj.weight", h.kv_dim(), h.hidden);
    l.v = load.matrix(p + "self_attn.v_proj.weight", h.kv_dim(), h.hidden);
    l.o = load.matrix(p + "self_attn.o_proj.weight", h.hidden, h.q_dim());
    l.gate = load.matrix(p + "mlp.gate_proj.weight", h.intermediate, h.hidden);
    l.up = load.matrix(p + "mlp.up_proj.weight", h.intermediate, h.hidden);
    l.down = load.matrix(p + "mlp.down_proj.weight", h.hidden, h.intermediate);
    l.q_bias = load.optional_vector(h.attention_bias, p + "self_attn.q_proj.bias", h.q_dim());
    l.k_bias = load.optional_vector(h.attention_bias, p + "self_attn.k_proj.bias", h.kv_dim());
    l.v_bias = load.optional_vector(h.attention_bias, p + "self_attn.v_proj.bias", h.kv_dim());
    l.o_bias = load.optional_vector(h.attention_bias, p + "self_attn.o_proj.bias", h.hidden);
    l.gate_bias = load.optional_vector(h.mlp_bias, p + "mlp.gate_proj.bias", h.intermediate);
    l.up_bias = load.optional_vector(h.mlp_bias, p + "mlp.up_proj.bias", h.intermediate);
    l.down_bias = load.optional_vector(h.mlp_bias, p + "mlp.down_proj.bias", h.hidden);
    m->layers_.push_back(std::move(l));
  }
  progress.finish();
  return m;
}

}  // namespace inferno::model
