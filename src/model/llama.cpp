#include "model/llama.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "io/checkpoint.hpp"
#include "io/json_reader.hpp"
#include "io/model_path.hpp"
#include "kernels/int8.hpp"
#include "util/error.hpp"
#include "util/half.hpp"
#include "util/progress.hpp"
#include "util/regex_match.hpp"

namespace inferno::model {

namespace {

uint32_t to_u32(int64_t v, const char* field) {
  if (v < 0 || v > int64_t(UINT32_MAX)) throw Error(std::string("config: ") + field + " out of range");
  return uint32_t(v);
}

// The kernels' weight type of a tensor as stored; anything else is refused naming the tensor.
kernels::WeightType weight_type_of(const io::TensorInfo& t, const std::string& source) {
  using W = kernels::WeightType;
  switch (t.dtype) {
    case io::DType::F32: return W::F32;
    case io::DType::F16: return W::F16;
    case io::DType::BF16: return W::BF16;
    case io::DType::Q8_0: return W::Q8_0;
    case io::DType::Q4_0: return W::Q4_0;
    case io::DType::Q4_1: return W::Q4_1;
    case io::DType::Q5_0: return W::Q5_0;
    case io::DType::Q5_1: return W::Q5_1;
    case io::DType::Q4_K: return W::Q4_K;
    case io::DType::Q5_K: return W::Q5_K;
    case io::DType::Q6_K: return W::Q6_K;
    case io::DType::I8: return W::I8;
    default:
      throw Error(source + ": tensor '" + t.name + "' has dtype " + std::string(io::dtype_name(t.dtype)) +
                  ", which this engine does not run (F32, F16, BF16, INT8, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)");
  }
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// compressed-tensors INT8 as far as this engine runs it: symmetric int8 weights per channel (or per tensor), with
// dynamic per-token int8 activations or none (weight-only); the `ignore` list keeps modules in float.
struct Int8Scheme {
  bool active = false;
  bool int8_activations = false;
  bool static_activations = false;  // one `input_scale` per module instead of per-token scales
  std::vector<std::string> ignore;  // module names, or "re:PATTERN" (Python re.match)
  std::string where;                // the config file, for errors about a pattern
  bool ignored(const std::string& module) const {
    for (const auto& pattern : ignore) {
      if (pattern.rfind("re:", 0) == 0) {
        if (util::python_re_match(pattern.substr(3), module, where + ": quantization_config.ignore")) return true;
      } else if (module == pattern || (module.size() > pattern.size() &&
                                       module.compare(module.size() - pattern.size(), pattern.size(), pattern) == 0 &&
                                       module[module.size() - pattern.size() - 1] == '.')) {
        return true;
      }
    }
    return false;
  }
};

// Read through io::json::ObjectReader: every type error names config.json and the field path
// (quantization_config.config_groups.group_0.targets), and a key written twice takes its last value.
Int8Scheme parse_int8_scheme(const io::LlamaConfig& c, const std::string& source) {
  Int8Scheme scheme;
  scheme.where = source;
  if (c.quant_method.empty()) return scheme;
  const std::string where = source + ": quantization_config";
  if (c.quant_method != "compressed-tensors")
    throw Error(where + ".quant_method " + io::quoted_name(c.quant_method) +
                " is not supported (compressed-tensors INT8 is)");
  const io::json::Document document(c.quantization_config_json, source);
  simdjson::dom::object root;
  if (document.root().get_object().get(root)) throw Error(where + " must be an object");
  const io::json::ObjectReader q(root, source, "quantization_config.");
  const std::string format = q.optional_string("format").value_or("");
  if (format != "int-quantized" && format != "naive-quantized")
    q.fail_field("format", io::quoted_name(format) + " is not supported (int-quantized, naive-quantized)");
  const auto groups = q.optional_object("config_groups");
  if (!groups || groups->object().size() != 1) q.fail_field("config_groups", "exactly one group is supported");
  for (auto [name, group_element] : groups->object()) {
    simdjson::dom::object group_object;
    if (group_element.get_object().get(group_object))
      groups->fail_field(name, "expected an object, got " + std::string(io::json::type_name(group_element)));
    const io::json::ObjectReader group(group_object, source, groups->field_path(name) + ".");
    const auto targets = group.optional_string_list("targets");
    bool linear = false;
    for (const std::string& t : targets.value_or(std::vector<std::string>{})) linear = linear || t == "Linear";
    if (!linear) group.fail_field("targets", "only [\"Linear\"] is supported");
    const auto w = group.optional_object("weights");
    if (!w) group.fail_field("weights", "missing");
    if (w->optional_int("num_bits", 0, 64) != 8) w->fail_field("num_bits", "only 8 is supported");
    if (w->optional_string("type") != "int") w->fail_field("type", "only int is supported");
    if (w->optional_bool("symmetric") != true) w->fail_field("symmetric", "only symmetric is supported");
    const std::string strategy = w->optional_string("strategy").value_or("");
    if (strategy != "channel" && strategy != "tensor")
      w->fail_field("strategy", io::quoted_name(strategy) + " is not supported (channel, tensor)");
    // compressed-tensors' QuantizationArgs default group_size to None: absent or null is not group-wise.
    if (w->has("group_size")) w->fail_field("group_size", "group-wise weights are not supported");
    if (const auto a = group.optional_object("input_activations")) {
      if (a->optional_int("num_bits", 0, 64) != 8) a->fail_field("num_bits", "only 8 is supported");
      if (a->optional_bool("symmetric") != true) a->fail_field("symmetric", "only symmetric is supported");
      const bool dynamic = a->optional_bool("dynamic").value_or(false);
      const std::string a_strategy = a->optional_string("strategy").value_or("");
      if ((dynamic && a_strategy != "token") || (!dynamic && a_strategy != "tensor"))
        a->fail_field("strategy", std::string("dynamic per-token or static per-tensor activations are supported, not ") +
                                      (dynamic ? "dynamic " : "static ") + io::quoted_name(a_strategy));
      scheme.int8_activations = true;
      scheme.static_activations = !dynamic;
    }
  }
  scheme.ignore = q.optional_string_list("ignore").value_or(std::vector<std::string>{});
  scheme.active = true;
  return scheme;
}

// Element i of a float tensor's bytes (F32, F16 or BF16), read on the host.
float float_at(std::span<const std::byte> bytes, kernels::WeightType type, size_t i) {
  if (type == kernels::WeightType::F32) {
    float value = 0;
    std::memcpy(&value, bytes.data() + i * 4, 4);
    return value;
  }
  uint16_t half = 0;
  std::memcpy(&half, bytes.data() + i * 2, 2);
  return type == kernels::WeightType::BF16 ? bf16_to_f32(half) : f16_to_f32(half);
}

// Loads tensors onto the device, checking each shape against what the config implies. Works over a safetensors
// checkpoint or a GGUF file through the two functions it is given.
std::vector<std::byte> unpermute_heads(std::span<const std::byte> data, uint32_t heads, uint32_t head_dim);

// One projection as stored, found and checked before anything is uploaded, so that the parts of a stacked matrix
// can go straight into it (or be read in place).
struct LinearSpec {
  const io::TensorInfo* weight = nullptr;
  kernels::WeightType type = kernels::WeightType::F32;
  uint32_t rows = 0, cols = 0;
  const io::TensorInfo* scale = nullptr;  // I8: weight_scale, one per row or one for all rows
  kernels::WeightType scale_type = kernels::WeightType::F32;
  const io::TensorInfo* bias = nullptr;
  kernels::WeightType bias_type = kernels::WeightType::F32;
  bool int8_activations = false;
  float input_scale = 0;
  uint32_t permute_heads = 0, head_dim = 0;  // GGUF Q and K: rows put back in Hugging Face's order on the host
};

// Zero-copy loading (weights read in place from the mapped file) where the device shares memory with the host;
// INFERNO_ZERO_COPY=0 forces the copy, =1 forces import (an error on a device that cannot import host memory).
bool zero_copy(const vk::Device& device) {
  const char* env = std::getenv("INFERNO_ZERO_COPY");
  const std::string v = env ? env : "";
  const auto& caps = device.caps();
  if (v == "0") return false;
  if (v == "1") {
    if (!caps.host_import)
      throw Error("INFERNO_ZERO_COPY=1: device " + caps.name + " cannot import host memory (VK_EXT_external_memory_host)");
    return true;
  }
  if (v.empty() || v == "auto") return caps.host_import && caps.unified_memory;
  throw Error("INFERNO_ZERO_COPY must be 0, 1 or auto, not '" + v + "'");
}

class Loader {
 public:
  using Find = FindTensor;
  using Data = std::function<std::span<const std::byte>(const io::TensorInfo&)>;
  // Throws when the file holding the tensor was truncated while its bytes were being copied (they read as zeros):
  // called after each tensor is uploaded, so a file cut short under the loader fails naming the file, never SIGBUS.
  using CheckWhole = std::function<void(const io::TensorInfo&)>;
  using Mapped = std::function<kernels::MappedBytes(const io::TensorInfo&)>;
  Loader(vk::Device& device, std::string source, Find find, Data data, Mapped mapped, CheckWhole check_whole,
         ProgressBar& progress, const std::function<void(const std::string&)>& on_tensor_loaded)
      : device_(device), source_(std::move(source)), find_(std::move(find)), data_(std::move(data)),
        mapped_(std::move(mapped)), zero_copy_(zero_copy(device)), check_whole_(std::move(check_whole)),
        progress_(progress), on_tensor_loaded_(on_tensor_loaded) {}

  // A float (or block-format) projection `module`: weight `module + ".weight"`, bias `module + ".bias"` when asked.
  LinearSpec float_spec(const std::string& module, uint32_t rows, uint32_t cols, bool bias, uint32_t permute_heads = 0,
                        uint32_t head_dim = 0) const {
    LinearSpec s;
    s.weight = &expect(module + ".weight", {rows, cols});
    s.type = weight_type_of(*s.weight, source_);
    if (s.type == kernels::WeightType::I8)
      throw Error(source_ + ": tensor '" + s.weight->name + "' is INT8 but the config declares no quantization");
    s.rows = rows;
    s.cols = cols;
    if (bias) {
      s.bias = &expect(module + ".bias", {rows});
      s.bias_type = weight_type_of(*s.bias, source_);
    }
    s.permute_heads = permute_heads;
    s.head_dim = head_dim;
    return s;
  }

  // A compressed-tensors int8 projection: `module.weight` I8 with `module.weight_scale` per row or per tensor.
  LinearSpec int8_spec(const std::string& module, uint32_t rows, uint32_t cols, bool bias) const {
    LinearSpec s;
    s.weight = &expect(module + ".weight", {rows, cols});
    if (s.weight->dtype != io::DType::I8)
      throw Error(source_ + ": tensor '" + s.weight->name + "' should be I8 (compressed-tensors int8), not " +
                  std::string(io::dtype_name(s.weight->dtype)));
    s.type = kernels::WeightType::I8;
    s.rows = rows;
    s.cols = cols;
    s.scale = find_(module + ".weight_scale");
    if (!s.scale) throw Error(source_ + ": tensor '" + module + ".weight_scale' is missing");
    s.scale_type = weight_type_of(*s.scale, source_);
    if (!kernels::is_float_type(s.scale_type)) throw Error(source_ + ": tensor '" + s.scale->name + "' must be a float");
    if (s.scale->elements() != 1 && s.scale->elements() != rows)
      throw Error(source_ + ": tensor '" + s.scale->name + "' has shape " + shape_string(s.scale->shape) +
                  ", expected [" + std::to_string(rows) + ", 1]");
    // A NaN, infinite or negative scale would turn every logit into NaN (or flip a row's sign) with no other sign
    // of trouble; the scales are one float a row, cheap to check here. (A zero scale is a row of zeros: allowed.)
    const std::span<const std::byte> scales = data_(*s.scale);
    for (size_t i = 0; i < size_t(s.scale->elements()); ++i) {
      const float scale = float_at(scales, s.scale_type, i);
      if (!std::isfinite(scale) || scale < 0)
        throw Error(source_ + ": tensor '" + s.scale->name + "' holds " + std::to_string(scale) + " at row " +
                    std::to_string(i) + ", not a finite non-negative scale");
    }
    if (bias) {
      s.bias = &expect(module + ".bias", {rows});
      s.bias_type = weight_type_of(*s.bias, source_);
    }
    return s;
  }

  // Projections of one input (q, k, v; gate, up): stacked into one matrix `name` when their formats allow, each part
  // going straight into its rows (or read in place), else kept apart. --quantize int8 converts each part first.
  StackedLinear linears(const std::string& name, const std::vector<LinearSpec>& specs, bool quantize_int8) {
    bool any_float = false;
    for (const LinearSpec& s : specs) any_float = any_float || kernels::is_float_type(s.type);
    if (quantize_int8 && any_float) {
      std::vector<Linear> parts;
      for (const LinearSpec& s : specs) {
        Linear l;
        std::vector<std::byte> rows_hf;
        if (s.permute_heads) rows_hf = unpermute_heads(data_(*s.weight), s.permute_heads, s.head_dim);
        l.weight = matrix(s.weight->name, s.rows, s.cols, true, rows_hf);
        if (s.bias) {
          std::vector<std::byte> bias_hf;
          if (s.permute_heads) bias_hf = unpermute_heads(data_(*s.bias), s.permute_heads, s.head_dim);
          l.bias = vector(s.bias->name, s.rows, bias_hf);
        }
        parts.push_back(std::move(l));
      }
      return stack_linears(device_, name, std::move(parts));
    }
    const LinearSpec& first = specs[0];
    bool same = specs.size() >= 2;
    for (const LinearSpec& s : specs)
      same = same && s.type == first.type && s.cols == first.cols && (s.scale != nullptr) == (first.scale != nullptr) &&
             (!s.scale || s.scale_type == first.scale_type) && (s.bias != nullptr) == (first.bias != nullptr) &&
             (!s.bias || s.bias_type == first.bias_type) && s.int8_activations == first.int8_activations &&
             s.input_scale == first.input_scale;
    StackedLinear out;
    if (same) {
      out.parts.push_back(linear(name, specs));
    } else {
      for (const LinearSpec& s : specs) out.parts.push_back(linear(s.weight->name, {s}));
    }
    return out;
  }

  // One projection on its own (--quantize int8 converts it).
  Linear single(const LinearSpec& spec, bool quantize_int8) {
    StackedLinear s = linears(spec.weight->name, {spec}, quantize_int8);
    return std::move(s.parts[0]);
  }

  uint64_t imported_bytes() const { return imported_; }

  const io::TensorInfo& expect(const std::string& name, const std::vector<int64_t>& shape) const {
    return expect_tensor(find_, source_, name, shape);
  }
  std::span<const std::byte> data(const io::TensorInfo& t) const { return data_(t); }

  kernels::DeviceMatrix matrix(const std::string& name, uint32_t rows, uint32_t cols, bool quantize_int8 = false,
                               std::span<const std::byte> replacement = {}) {
    const auto& t = expect(name, {rows, cols});
    const auto type = weight_type_of(t, source_);
    const auto bytes = replacement.empty() ? data_(t) : replacement;
    auto tick = [&](uint64_t n) { progress_.advance(n); };
    if (type == kernels::WeightType::I8) throw Error(source_ + ": tensor '" + name + "' is INT8 but the config declares no quantization");
    auto m = quantize_int8 && kernels::is_float_type(type)
                 ? kernels::quantize_matrix_int8(device_, name, type, rows, cols, bytes, 0, tick)
                 : kernels::upload_matrix(device_, name, type, rows, cols, bytes, 0, tick);
    loaded(t);
    return m;
  }

  // A one-element float tensor (shape [1] or []), read on the host: a positive, finite scale.
  float scalar(const std::string& name) {
    const io::TensorInfo* t = find_(name);
    if (!t) throw Error(source_ + ": tensor '" + name + "' is missing");
    const auto type = weight_type_of(*t, source_);
    if (t->elements() != 1 || !kernels::is_float_type(type))
      throw Error(source_ + ": tensor '" + name + "' should hold one float, it has shape " + shape_string(t->shape) +
                  " and dtype " + std::string(io::dtype_name(t->dtype)));
    const float value = float_at(data_(*t), type, 0);
    loaded(*t);
    if (!(value > 0) || std::isinf(value))
      throw Error(source_ + ": tensor '" + name + "' holds " + std::to_string(value) + ", not a positive finite scale");
    progress_.advance(t->bytes);
    return value;
  }

  kernels::DeviceVector vector(const std::string& name, uint32_t size, std::span<const std::byte> replacement = {}) {
    const auto& t = expect(name, {size});
    auto v = kernels::upload_vector(device_, name, weight_type_of(t, source_), size,
                                    replacement.empty() ? data_(t) : replacement);
    progress_.advance(t.bytes);
    loaded(t);
    return v;
  }

  // After a tensor's bytes have been copied away: they were the file's (see CheckWhole).
  void loaded(const io::TensorInfo& t) {
    check_whole_(t);
    if (on_tensor_loaded_) on_tensor_loaded_(t.name);
  }

 private:
  // The parts of `specs` (one type and width) as one matrix `name`, their scales and biases stacked beside it. The
  // rows are read in place from the mapping where zero-copy loading is on and they qualify, else copied into place.
  Linear linear(const std::string& name, const std::vector<LinearSpec>& specs) {
    const LinearSpec& first = specs[0];
    std::vector<uint32_t> rows;
    for (const LinearSpec& s : specs) rows.push_back(s.rows);
    Linear out;
    out.int8_activations = first.int8_activations;
    out.input_scale = first.input_scale;
    std::vector<std::byte> held;  // a part made on the host, one at a time
    std::optional<kernels::DeviceMatrix> imported;
    bool permuted = false;
    for (const LinearSpec& s : specs) permuted = permuted || s.permute_heads;
    if (zero_copy_ && !permuted) {
      std::vector<kernels::MappedBytes> parts;
      for (const LinearSpec& s : specs) parts.push_back(mapped_(*s.weight));
      imported = kernels::import_matrix(device_, name, first.type, first.cols, rows, parts);
    }
    if (imported) {
      out.weight = std::move(*imported);
      for (const LinearSpec& s : specs) progress_.advance(s.weight->bytes);
      imported_ += out.weight.rows * out.weight.row_bytes();
    } else {
      out.weight = kernels::upload_stacked_matrix(
          device_, name, first.type, first.cols, rows,
          [&](size_t i) -> std::span<const std::byte> {
            const LinearSpec& s = specs[i];
            if (!s.permute_heads) return data_(*s.weight);
            held = unpermute_heads(data_(*s.weight), s.permute_heads, s.head_dim);
            return held;
          },
          0, [&](uint64_t n) { progress_.advance(n); });
    }
    if (first.scale) {
      out.weight.row_scales = kernels::upload_stacked_vector(
          device_, out.weight.name + " scales", first.scale_type, rows, [&](size_t i) -> std::span<const std::byte> {
            const LinearSpec& s = specs[i];
            const std::span<const std::byte> scales = data_(*s.scale);
            progress_.advance(s.scale->bytes);
            if (s.scale->elements() != 1) return scales;
            held.resize(size_t(s.rows) * scales.size());  // per-tensor strategy: the same scale for every row
            for (uint32_t r = 0; r < s.rows; ++r) std::memcpy(held.data() + size_t(r) * scales.size(), scales.data(), scales.size());
            return held;
          });
    }
    if (first.bias) {
      out.bias = kernels::upload_stacked_vector(
          device_, specs.size() > 1 ? name + ".bias" : first.bias->name, first.bias_type, rows,
          [&](size_t i) -> std::span<const std::byte> {
            const LinearSpec& s = specs[i];
            progress_.advance(s.bias->bytes);
            if (!s.permute_heads) return data_(*s.bias);
            held = unpermute_heads(data_(*s.bias), s.permute_heads, s.head_dim);
            return held;
          });
    }
    for (const LinearSpec& s : specs) {  // every byte came from the files as they were (see CheckWhole)
      loaded(*s.weight);
      if (s.scale) loaded(*s.scale);
      if (s.bias) loaded(*s.bias);
    }
    return out;
  }

  vk::Device& device_;
  std::string source_;
  Find find_;
  Data data_;
  Mapped mapped_;
  bool zero_copy_;
  uint64_t imported_ = 0;
  CheckWhole check_whole_;
  ProgressBar& progress_;
  const std::function<void(const std::string&)>& on_tensor_loaded_;
};

// GGUF stores the rows of Q and K of each head interleaved for llama.cpp's RoPE on pairs (2i, 2i+1); Hugging Face
// rotates (i, i + d/2). Putting the rows back in Hugging Face's order here, once, lets one RoPE kernel serve both
// formats. Row j·2 + s of a head holds Hugging Face's row s·d/2 + j. Works for any row size (block formats too).
std::vector<std::byte> unpermute_heads(std::span<const std::byte> data, uint32_t heads, uint32_t head_dim) {
  const size_t rows = size_t(heads) * head_dim, row_bytes = data.size() / rows;
  std::vector<std::byte> out(data.size());
  for (uint32_t h = 0; h < heads; ++h)
    for (uint32_t j = 0; j < head_dim / 2; ++j)
      for (uint32_t s = 0; s < 2; ++s) {
        const size_t gguf_row = size_t(h) * head_dim + j * 2 + s, hf_row = size_t(h) * head_dim + s * (head_dim / 2) + j;
        std::memcpy(out.data() + hf_row * row_bytes, data.data() + gguf_row * row_bytes, row_bytes);
      }
  return out;
}

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
    throw Error("config: head_dim " + std::to_string(h.head_dim) + " is not supported (even, at most 256)");
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

const char* tensor_group_name(TensorGroup group) {
  switch (group) {
    case TensorGroup::Embedding: return "embedding";
    case TensorGroup::Attention: return "attention";
    case TensorGroup::Mlp: return "mlp";
    case TensorGroup::Norm: return "norm";
    case TensorGroup::LmHead: return "lm_head";
  }
  return "?";
}

namespace {

// The same tensors under Hugging Face's names and llama.cpp's.
struct TensorNames {
  const char *embedding, *lm_head, *final_norm, *layer_prefix, *attn_norm, *ffn_norm;
  const char *q, *k, *v, *o, *gate, *up, *down;
};
constexpr TensorNames kHfNames{"model.embed_tokens", "lm_head", "model.norm", "model.layers.",
                               "input_layernorm", "post_attention_layernorm", "self_attn.q_proj", "self_attn.k_proj",
                               "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
constexpr TensorNames kGgufNames{"token_embd", "output", "output_norm", "blk.", "attn_norm", "ffn_norm", "attn_q",
                                 "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

}  // namespace

std::vector<ExpectedTensor> expected_tensors(const LlamaHyper& h, bool gguf) {
  using G = TensorGroup;
  const TensorNames& n = gguf ? kGgufNames : kHfNames;
  std::vector<ExpectedTensor> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, G group, bool bias = false) {
    out.push_back({name, std::move(shape), group, bias});
  };
  auto linear = [&](const std::string& name, uint32_t rows, uint32_t cols, G group, bool bias) {
    add(name + ".weight", {rows, cols}, group);
    if (bias) add(name + ".bias", {rows}, group, true);
  };
  // In the loader's order, so that a checkpoint wrong in several places is refused for the same tensor either way.
  add(std::string(n.embedding) + ".weight", {h.vocab, h.hidden}, G::Embedding);
  if (!h.tied_embeddings) add(std::string(n.lm_head) + ".weight", {h.vocab, h.hidden}, G::LmHead);
  add(std::string(n.final_norm) + ".weight", {h.hidden}, G::Norm);
  for (uint32_t i = 0; i < h.layers; ++i) {
    const std::string p = n.layer_prefix + std::to_string(i) + ".";
    add(p + n.attn_norm + ".weight", {h.hidden}, G::Norm);
    add(p + n.ffn_norm + ".weight", {h.hidden}, G::Norm);
    linear(p + n.q, h.q_dim(), h.hidden, G::Attention, h.attention_bias);
    linear(p + n.k, h.kv_dim(), h.hidden, G::Attention, h.attention_bias);
    linear(p + n.v, h.kv_dim(), h.hidden, G::Attention, h.attention_bias);
    linear(p + n.o, h.hidden, h.q_dim(), G::Attention, h.attention_bias);
    linear(p + n.gate, h.intermediate, h.hidden, G::Mlp, h.mlp_bias);
    linear(p + n.up, h.intermediate, h.hidden, G::Mlp, h.mlp_bias);
    linear(p + n.down, h.hidden, h.intermediate, G::Mlp, h.mlp_bias);
  }
  return out;
}

const io::TensorInfo& expect_tensor(const FindTensor& find, const std::string& source, const std::string& name,
                                    const std::vector<int64_t>& shape) {
  const io::TensorInfo* t = find(name);
  if (!t) throw Error(source + ": tensor '" + name + "' is missing");
  if (t->shape != shape)
    throw Error(source + ": tensor '" + name + "' has shape " + shape_string(t->shape) + ", the config implies " +
                shape_string(shape));
  return *t;
}

void check_tensor_shapes(const LlamaHyper& h, bool gguf, const FindTensor& find, const std::string& source) {
  for (const ExpectedTensor& e : expected_tensors(h, gguf)) {
    // A GGUF file without output.weight is tied by definition; a checkpoint says so in its config.
    if (e.group == TensorGroup::LmHead && !find(e.name))
      throw Error(source + ": tensor '" + e.name + "' is missing and tie_word_embeddings is false");
    expect_tensor(find, source, e.name, e.shape);
  }
}

StackedLinear stack_linears(vk::Device& device, const std::string& name, std::vector<Linear> parts) {
  std::vector<const kernels::DeviceMatrix*> weights;
  bool same = true;
  for (const Linear& p : parts) {
    weights.push_back(&p.weight);
    same = same && p.int8_activations == parts[0].int8_activations && p.input_scale == parts[0].input_scale &&
           p.bias.has_value() == parts[0].bias.has_value() && (!p.bias || p.bias->type == parts[0].bias->type);
  }
  if (parts.size() < 2 || !same || !kernels::can_stack_rows(weights)) return {std::move(parts)};
  Linear stacked;
  stacked.int8_activations = parts[0].int8_activations;
  stacked.input_scale = parts[0].input_scale;
  if (parts[0].bias) {
    std::vector<const kernels::DeviceVector*> biases;
    for (const Linear& p : parts) biases.push_back(&*p.bias);
    stacked.bias = kernels::stack_vectors(device, name + ".bias", biases);
  }
  std::vector<kernels::DeviceMatrix> matrices;
  for (Linear& p : parts) matrices.push_back(std::move(p.weight));
  stacked.weight = kernels::stack_rows(device, name, std::move(matrices));
  StackedLinear out;
  out.parts.push_back(std::move(stacked));
  return out;
}

std::vector<const Linear*> LayerWeights::linears() const {
  std::vector<const Linear*> all;
  for (const Linear& p : qkv.parts) all.push_back(&p);
  all.push_back(&o);
  for (const Linear& p : gate_up.parts) all.push_back(&p);
  all.push_back(&down);
  return all;
}

uint32_t LlamaModel::widest_int8_input() const {
  uint32_t widest = 0;
  for (const auto& l : layers_)
    for (const Linear* p : l.linears())
      if (p->int8_activations) widest = std::max(widest, p->weight.cols);
  return widest;
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t total = embed_.bytes() + final_norm_.buffer.bytes();
  if (lm_head_) total += lm_head_->bytes();
  for (const auto& l : layers_) {
    total += l.attn_norm.buffer.bytes() + l.ffn_norm.buffer.bytes();
    for (const Linear* p : l.linears()) total += p->weight.bytes() + (p->bias ? p->bias->buffer.bytes() : 0);
  }
  return total;
}

std::pair<uint32_t, uint32_t> LlamaModel::take_range(const LoadOptions& options) {
  const uint32_t last = std::min(options.last_layer, hyper_.layers);
  if (options.first_layer > last)
    throw Error(path_.string() + ": layers " + std::to_string(options.first_layer) + ".." + std::to_string(last) +
                " are not a range of the model's " + std::to_string(hyper_.layers));
  first_layer_ = options.first_layer;
  has_embedding_ = options.embedding;
  has_head_ = options.head;
  return {options.first_layer, last};
}

std::unique_ptr<LlamaModel> LlamaModel::load(vk::Device& device, const std::filesystem::path& path,
                                             const LoadOptions& options) {
  std::unique_ptr<LlamaModel> m(new LlamaModel(device));
  const io::ModelPath resolved = io::resolve_model_path(path);
  m->path_ = resolved.path;
  if (resolved.gguf) load_gguf(*m, resolved.path, options);
  else load_safetensors(*m, resolved.path, options);
  return m;
}

void LlamaModel::load_safetensors(LlamaModel& m, const std::filesystem::path& dir, const LoadOptions& options) {
  m.config_ = io::load_llama_config(dir);
  const std::string source = dir.string();
  const Int8Scheme scheme = parse_int8_scheme(m.config_, (dir / "config.json").string());
  if (scheme.active && options.quantize_int8)
    throw Error(source + ": the checkpoint is already quantized; --quantize int8 applies to float checkpoints");
  const LlamaHyper h = m.hyper_ = hyper_from_config(m.config_);
  // Shared with the weights read in place from its mappings, which keep it (and so the mappings) alive.
  const auto ckpt = std::make_shared<const io::Checkpoint>(dir);
  const FindTensor find = [&](const std::string& n) { return ckpt->find(n); };
  check_tensor_shapes(h, false, find, source);  // before uploading anything
  ProgressBar progress("loading", ckpt->total_tensor_bytes(), options.quiet);
  Loader load(
      m.device_, source, find, [&](const io::TensorInfo& t) { return ckpt->data(t); },
      [&](const io::TensorInfo& t) { return kernels::MappedBytes{ckpt->data(t), ckpt->file_of(t).mapping(), ckpt}; },
      [&](const io::TensorInfo& t) { ckpt->check_whole(t); }, progress, options.on_tensor_loaded);

  const auto [first, last] = m.take_range(options);
  if (options.embedding || (options.head && h.tied_embeddings))
    m.embed_ = load.single(load.float_spec("model.embed_tokens", h.vocab, h.hidden, false), false).weight;
  // transformers ties lm_head to the embedding when asked, whatever the file holds.
  if (options.head && !h.tied_embeddings)
    m.lm_head_ = load.single(load.float_spec("lm_head", h.vocab, h.hidden, false), false).weight;
  if (options.head) m.final_norm_ = load.vector("model.norm.weight", h.hidden);
  for (uint32_t i = first; i < last; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto spec = [&](const std::string& module, uint32_t rows, uint32_t cols, bool bias) {
      const std::string name = p + module;
      if (!scheme.active || scheme.ignored(name)) return load.float_spec(name, rows, cols, bias);
      LinearSpec s = load.int8_spec(name, rows, cols, bias);
      s.int8_activations = scheme.int8_activations;
      if (scheme.static_activations) s.input_scale = load.scalar(name + ".input_scale");
      return s;
    };
    LayerWeights l;
    l.attn_norm = load.vector(p + "input_layernorm.weight", h.hidden);
    l.ffn_norm = load.vector(p + "post_attention_layernorm.weight", h.hidden);
    const bool q8 = options.quantize_int8;
    l.qkv = load.linears(p + "self_attn.qkv_proj",
                         {spec("self_attn.q_proj", h.q_dim(), h.hidden, h.attention_bias),
                          spec("self_attn.k_proj", h.kv_dim(), h.hidden, h.attention_bias),
                          spec("self_attn.v_proj", h.kv_dim(), h.hidden, h.attention_bias)},
                         q8);
    l.o = load.single(spec("self_attn.o_proj", h.hidden, h.q_dim(), h.attention_bias), q8);
    l.gate_up = load.linears(p + "mlp.gate_up_proj",
                             {spec("mlp.gate_proj", h.intermediate, h.hidden, h.mlp_bias),
                              spec("mlp.up_proj", h.intermediate, h.hidden, h.mlp_bias)},
                             q8);
    l.down = load.single(spec("mlp.down_proj", h.hidden, h.intermediate, h.mlp_bias), q8);
    m.layers_.push_back(std::move(l));
  }
  progress.finish();
}

void LlamaModel::load_gguf(LlamaModel& m, const std::filesystem::path& file, const LoadOptions& options) {
  const auto owner = std::make_shared<const io::GgufFile>(file);
  const io::GgufFile& gguf = *owner;
  m.format_ = "gguf";
  m.config_ = io::llama_config_from_gguf(gguf);
  const LlamaHyper h = m.hyper_ = hyper_from_config(m.config_);
  const std::string source = file.string();
  uint64_t total = 0;
  for (const auto& t : gguf.tensors()) total += t.bytes;
  const FindTensor find = [&](const std::string& n) { return gguf.find_tensor(n); };
  check_tensor_shapes(h, true, find, source);  // before uploading anything
  ProgressBar progress("loading", total, options.quiet);
  Loader load(
      m.device_, source, find, [&](const io::TensorInfo& t) { return gguf.data(t); },
      [&](const io::TensorInfo& t) { return kernels::MappedBytes{gguf.data(t), gguf.mapping(), owner}; },
      [&](const io::TensorInfo&) { gguf.check_whole(); }, progress, options.on_tensor_loaded);

  if (const io::TensorInfo* f = gguf.find_tensor("rope_freqs.weight")) {
    if (f->dtype != io::DType::F32 || f->elements() != int64_t(h.head_dim / 2))
      throw Error(source + ": tensor 'rope_freqs.weight' should be F32 [" + std::to_string(h.head_dim / 2) + "]");
    const auto bytes = gguf.data(*f);
    m.hyper_.rope_freq_factors.resize(h.head_dim / 2);
    std::memcpy(m.hyper_.rope_freq_factors.data(), bytes.data(), bytes.size());
    gguf.check_whole();
    // Each divides a RoPE frequency: NaN, infinite, zero or negative factors would turn every position to garbage.
    for (size_t i = 0; i < m.hyper_.rope_freq_factors.size(); ++i) {
      const float factor = m.hyper_.rope_freq_factors[i];
      if (!(factor > 0) || std::isinf(factor))
        throw Error(source + ": tensor 'rope_freqs.weight': element " + std::to_string(i) + " is " +
                    std::to_string(factor) + ", not a positive finite factor");
    }
    progress.advance(f->bytes);
  }
  const bool q8 = options.quantize_int8;
  auto single = [&](const LinearSpec& spec) { return load.single(spec, q8); };
  const auto [first, last] = m.take_range(options);
  if (options.embedding || (options.head && h.tied_embeddings))
    m.embed_ = load.single(load.float_spec("token_embd", h.vocab, h.hidden, false), false).weight;
  if (options.head && !h.tied_embeddings)
    m.lm_head_ = load.single(load.float_spec("output", h.vocab, h.hidden, false), false).weight;
  if (options.head) m.final_norm_ = load.vector("output_norm.weight", h.hidden);
  for (uint32_t i = first; i < last; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    // Q and K (weights and biases) come back to Hugging Face's row order; everything else is used as stored.
    auto spec = [&](const std::string& name, uint32_t rows, uint32_t cols, bool bias, uint32_t permute_heads) {
      return load.float_spec(p + name, rows, cols, bias, permute_heads, h.head_dim);
    };
    LayerWeights l;
    l.attn_norm = load.vector(p + "attn_norm.weight", h.hidden);
    l.ffn_norm = load.vector(p + "ffn_norm.weight", h.hidden);
    l.qkv = load.linears(p + "attn_qkv",
                         {spec("attn_q", h.q_dim(), h.hidden, h.attention_bias, h.heads),
                          spec("attn_k", h.kv_dim(), h.hidden, h.attention_bias, h.kv_heads),
                          spec("attn_v", h.kv_dim(), h.hidden, h.attention_bias, 0)},
                         q8);
    l.o = single(spec("attn_output", h.hidden, h.q_dim(), h.attention_bias, 0));
    l.gate_up = load.linears(p + "ffn_gate_up",
                             {spec("ffn_gate", h.intermediate, h.hidden, h.mlp_bias, 0),
                              spec("ffn_up", h.intermediate, h.hidden, h.mlp_bias, 0)},
                             q8);
    l.down = single(spec("ffn_down", h.hidden, h.intermediate, h.mlp_bias, 0));
    m.layers_.push_back(std::move(l));
  }
  progress.finish();
}

}  // namespace inferno::model
