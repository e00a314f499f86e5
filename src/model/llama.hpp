#pragma once
// The Llama model on the device: hyper-parameters from config.json, every weight in its on-disk dtype, and the
// forward pass recorded as one command buffer per step (see forward.cpp).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/hf_config.hpp"
#include "kernels/weights.hpp"
#include "model/rope.hpp"
#include "vk/device.hpp"

namespace inferno::model {

struct LlamaHyper {
  uint32_t layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  float rms_eps = 1e-6f;
  uint32_t max_position_embeddings = 0;
  bool attention_bias = false, mlp_bias = false, tied_embeddings = false;
  RopeParams rope;
  uint32_t q_dim() const { return heads * head_dim; }
  uint32_t kv_dim() const { return kv_heads * head_dim; }
};

LlamaHyper hyper_from_config(const io::LlamaConfig& config);
// "Llama 3.2", "TinyLlama", "DeepSeek-R1-Distill-Llama", ... from what the config says.
std::string detect_family(const io::LlamaConfig& config);

struct LayerWeights {
  kernels::DeviceVector attn_norm, ffn_norm;
  kernels::DeviceMatrix q, k, v, o, gate, up, down;
  std::optional<kernels::DeviceVector> q_bias, k_bias, v_bias, o_bias, gate_bias, up_bias, down_bias;
};

struct LoadOptions {
  bool quiet = false;  // no progress bar
};

class LlamaModel {
 public:
  // Loads a Hugging Face checkpoint directory: config.json + model.safetensors (or shards). Weights stream from the
  // mapped files to the device; the host never holds a copy.
  static std::unique_ptr<LlamaModel> load(vk::Device& device, const std::filesystem::path& dir, const LoadOptions& = {});

  vk::Device& device() const { return device_; }
  const LlamaHyper& hyper() const { return hyper_; }
  const io::LlamaConfig& config() const { return config_; }
  const std::filesystem::path& path() const { return path_; }
  const kernels::DeviceMatrix& embedding() const { return embed_; }
  const kernels::DeviceMatrix& lm_head() const { return lm_head_ ? *lm_head_ : embed_; }
  const kernels::DeviceVector& final_norm() const { return final_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  // Device bytes of all weights: equal to the sum of their on-disk bytes (a tied lm_head is not counted twice).
  uint64_t weight_bytes() const;
  // The dtype most weights have ("BF16", "F32", ...), for the default KV dtype.
  kernels::WeightType main_weight_type() const { return embed_.type; }

 private:
  LlamaModel(vk::Device& device) : device_(device) {}
  vk::Device& device_;
  std::filesystem::path path_;
  io::LlamaConfig config_;
  LlamaHyper hyper_;
  kernels::DeviceMatrix embed_;
  std::optional<kernels::DeviceMatrix> lm_head_;
  kernels::DeviceVector final_norm_;
  std::vector<LayerWeights> layers_;
};

}  // namespace inferno::model
