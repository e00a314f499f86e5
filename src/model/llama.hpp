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

#include "io/gguf.hpp"
#include "io/gguf_config.hpp"
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
  // GGUF's rope_freqs.weight (Llama 3 scaling as llama.cpp stores it): inv_freq[i] = default inv_freq[i] / factor[i].
  std::vector<float> rope_freq_factors;
  uint32_t q_dim() const { return heads * head_dim; }
  uint32_t kv_dim() const { return kv_heads * head_dim; }
  uint32_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }  // a row of q | k | v
};

LlamaHyper hyper_from_config(const io::LlamaConfig& config);
// "Llama 3.2", "TinyLlama", "DeepSeek-R1-Distill-Llama", ... from what the config says.
std::string detect_family(const io::LlamaConfig& config);

// What a tensor is for, as `inferno info` reports the dtypes of a checkpoint.
enum class TensorGroup { Embedding, Attention, Mlp, Norm, LmHead };
const char* tensor_group_name(TensorGroup group);  // "embedding", "attention", "mlp", "norm", "lm_head"
inline constexpr TensorGroup kTensorGroups[] = {TensorGroup::Embedding, TensorGroup::Attention, TensorGroup::Mlp,
                                                TensorGroup::Norm, TensorGroup::LmHead};

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;  // rows first, as safetensors and this engine's GGUF reader give it
  TensorGroup group;
  bool bias = false;
};
// Every tensor the loader reads for these hyper-parameters (biases when the config has them, lm_head when it is
// not tied), with the shape the config implies: Hugging Face's names, or llama.cpp's for a GGUF file. Beyond these
// the loader reads only what a format adds (compressed-tensors scales, GGUF's rope_freqs).
std::vector<ExpectedTensor> expected_tensors(const LlamaHyper& h, bool gguf);

using FindTensor = std::function<const io::TensorInfo*(const std::string&)>;
// The tensor `name` of `source` (a checkpoint directory or GGUF file), which must have `shape`; throws naming the
// tensor when it is missing or shaped otherwise.
const io::TensorInfo& expect_tensor(const FindTensor& find, const std::string& source, const std::string& name,
                                    const std::vector<int64_t>& shape);
// Checks every expected tensor against the headers, before anything is loaded: both the loader and `inferno info`
// (which reads only headers) refuse a checkpoint that disagrees with its config with the same error.
void check_tensor_shapes(const LlamaHyper& h, bool gguf, const FindTensor& find, const std::string& source);

// One projection: its weight (float, a ggml block format, or int8 with row scales), its optional bias, and whether
// its input is quantized to int8 per token first (compressed-tensors w8a8 with dynamic activations).
struct Linear {
  kernels::DeviceMatrix weight;
  std::optional<kernels::DeviceVector> bias;
  bool int8_activations = false;  // w8a8: the input is quantized to int8 first
  float input_scale = 0;          // w8a8 with a static per-tensor activation scale; 0 = dynamic, per token
};

// Projections of one input whose outputs sit side by side (q | k | v; gate | up). Stacked by rows into one matrix
// where they can be (same dtype, columns, bias dtype and int8 activation scheme): one dispatch then computes them
// all. Otherwise (a GGUF Q4_K_M file keeps attn_v in Q6_K beside Q4_K q and k) the parts stay apart, each
// writing its own columns.
struct StackedLinear {
  std::vector<Linear> parts;
};
// The parts stacked into one Linear when they can be, as they are otherwise.
StackedLinear stack_linears(vk::Device& device, const std::string& name, std::vector<Linear> parts);

struct LayerWeights {
  kernels::DeviceVector attn_norm, ffn_norm;
  StackedLinear qkv;      // q (q_dim rows), k (kv_dim), v (kv_dim)
  Linear o;
  StackedLinear gate_up;  // gate (intermediate rows), up (intermediate)
  Linear down;
  std::vector<const Linear*> linears() const;  // every matrix of the layer, for accounting
};

struct LoadOptions {
  bool quiet = false;          // no progress bar
  bool quantize_int8 = false;  // `--quantize int8`: float linear layers become int8 with per-row scales on load
  // One stage of a model split over devices: layers [first_layer, last_layer) only, the embedding only when
  // `embedding`, the final norm and lm_head only when `head` (a tied lm_head then loads the embedding matrix).
  uint32_t first_layer = 0, last_layer = UINT32_MAX;
  bool embedding = true, head = true;
  // Called with each tensor's name once it is on the device (tests: to change the file between two tensors).
  std::function<void(const std::string&)> on_tensor_loaded;
};

class LlamaModel {
 public:
  // Loads a Hugging Face checkpoint directory (config.json + model.safetensors or shards) or a llama.cpp GGUF file.
  // Weights stream from the mapped files to the device in their own dtype or block format; the host never holds a
  // copy of the model (at most one tensor, when GGUF's Q/K rows are put back in Hugging Face's order).
  static std::unique_ptr<LlamaModel> load(vk::Device& device, const std::filesystem::path& dir, const LoadOptions& = {});

  vk::Device& device() const { return device_; }
  const LlamaHyper& hyper() const { return hyper_; }
  const io::LlamaConfig& config() const { return config_; }
  const std::filesystem::path& path() const { return path_; }
  const kernels::DeviceMatrix& embedding() const { return embed_; }
  const kernels::DeviceMatrix& lm_head() const { return lm_head_ ? *lm_head_ : embed_; }
  const kernels::DeviceVector& final_norm() const { return final_norm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }  // the loaded layers, from first_layer() on
  uint32_t first_layer() const { return first_layer_; }
  bool has_embedding() const { return has_embedding_; }
  bool has_head() const { return has_head_; }
  // Device bytes of all weights: equal to the sum of their on-disk bytes (a tied lm_head is not counted twice).
  uint64_t weight_bytes() const;
  // The dtype most weights have, for the default KV dtype (f32 only for F32 models).
  kernels::WeightType main_weight_type() const { return embed_.type; }
  const std::string& format() const { return format_; }  // "safetensors" or "gguf"
  // Scratch the forward pass needs for int8 activations: the widest quantized input (0 when none is quantized).
  uint32_t widest_int8_input() const;

 private:
  LlamaModel(vk::Device& device) : device_(device) {}
  static void load_safetensors(LlamaModel& m, const std::filesystem::path& dir, const LoadOptions& options);
  static void load_gguf(LlamaModel& m, const std::filesystem::path& file, const LoadOptions& options);
  std::pair<uint32_t, uint32_t> take_range(const LoadOptions& options);  // the layers to load; notes the stage
  vk::Device& device_;
  std::filesystem::path path_;
  io::LlamaConfig config_;
  LlamaHyper hyper_;
  kernels::DeviceMatrix embed_;
  std::optional<kernels::DeviceMatrix> lm_head_;
  kernels::DeviceVector final_norm_;
  std::vector<LayerWeights> layers_;
  std::string format_ = "safetensors";
  uint32_t first_layer_ = 0;
  bool has_embedding_ = true, has_head_ = true;
};

// llama.* metadata of a GGUF file as a config (the same fields config.json gives), for the model and `inferno info`.
using io::llama_config_from_gguf;

}  // namespace inferno::model
