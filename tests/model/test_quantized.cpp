// Quantized and GGUF models against transformers' float32 references: llama.cpp's GGUF files (float and block
// formats, run as stored), compressed-tensors w8a8 INT8, and float checkpoints quantized to int8 while loading.
#include <cmath>
#include <limits>

#include "generate/session.hpp"
#include "gpu_support.hpp"
#include "io/gguf.hpp"
#include "io/io_test_files.hpp"
#include "io/safetensors.hpp"
#include "model/checkpoint_edit.hpp"
#include "model/forward.hpp"
#include "model/llama.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

std::vector<int32_t> to_i32(const std::vector<int64_t>& v) { return std::vector<int32_t>(v.begin(), v.end()); }

struct Check {
  std::string model;      // path under tests/data
  std::string reference;  // reference.safetensors under tests/data
  std::string logits_key = "logits_f32", greedy_key = "greedy_f32";
  double tolerance;
  kernels::KvType logits_kv;  // the cache the logits are compared with
  bool quantize_int8 = false;
};

void check_logits_and_greedy(const Check& c) {
  CAPTURE(c.model);
  ValidationGuard guard;
  auto m = model::LlamaModel::load(test_device(), data_path(c.model), {.quiet = true, .quantize_int8 = c.quantize_int8});
  io::SafetensorsFile ref(data_path(c.reference));
  gen::Session logits_session(*m, 80, c.logits_kv);
  gen::Session greedy_session(*m, 80, kernels::KvType::F32);
  for (int p = 0; p < 3; ++p) {
    CAPTURE(p);
    const std::string key = "prompt" + std::to_string(p);
    const auto ids = to_i32(ref.read_i64(key + ".input_ids"));
    const std::vector<float> got = logits_session.all_logits(ids), want_logits = ref.read_f32(key + "." + c.logits_key);
    REQUIRE(got.size() >= want_logits.size());  // the references hold the last position only
    const double err = relative_max_error(std::span(got).subspan(got.size() - want_logits.size()), want_logits);
    MESSAGE(c.model << " prompt " << p << ": max|Δ|/max|ref| = " << err);
    CHECK(err <= c.tolerance);
    if (c.greedy_key.empty()) continue;
    const auto want = to_i32(ref.read_i64(key + "." + c.greedy_key));
    gen::GenerateOptions o;
    o.max_new_tokens = int(want.size());
    o.ignore_eos = true;
    CHECK(greedy_session.generate(ids, o) == want);
  }
}

}  // namespace

// Tolerances (max |Δ| / max |ref|): the float GGUF files hold the same weights as their safetensors twins, so the
// twins' tolerances apply (1e-4 F32, 3e-3 F16/BF16 with the default f16 cache). The block-format files are compared
// with transformers run on their dequantized weights: with float activations and an f32 cache the only difference is
// summation order (~2e-6, inside the 1e-3); the default f16 cache adds its own rounding of K and V (relative
// 2^-11 per element), measured at 2e-4 .. 1.04e-3 on these prompts, so that path is held to 1.5e-3.
TEST_CASE("GGUF float files equal their safetensors twins") {
  check_logits_and_greedy({"gguf/float/llama3-gqa-f32.gguf", "hf-llama/llama3-gqa-f32/reference.safetensors",
                           "logits_f32", "greedy_f32", 1e-4, kernels::KvType::F32});
  check_logits_and_greedy({"gguf/float/llama3-tied-bf16.gguf", "hf-llama/llama3-tied-bf16/reference.safetensors",
                           "logits_f32", "greedy_f32", 3e-3, kernels::KvType::F16});
  check_logits_and_greedy({"gguf/float/bias-headdim-f16.gguf", "hf-llama/bias-headdim-f16/reference.safetensors",
                           "logits_f32", "greedy_f32", 3e-3, kernels::KvType::F16});
}

TEST_CASE("GGUF block formats run as stored: Q8_0, Q4_0, Q6_K, Q4_K_M") {
  for (const char* name : {"tiny-k-q8_0", "tiny-k-q4_0", "tiny-k-q6_k", "tiny-k-q4_k_m"}) {
    const std::string model = std::string("gguf/") + name + "/model.gguf", ref = std::string("gguf/") + name + "/reference.safetensors";
    check_logits_and_greedy({model, ref, "logits_f32", "greedy_f32", 1e-3, kernels::KvType::F32});
    check_logits_and_greedy({model, ref, "logits_f32", "", 1.5e-3, kernels::KvType::F16});
  }
}

TEST_CASE("a Q4_K_M file takes exactly its tensor bytes on the device") {
  const auto path = data_path("gguf/tiny-k-q4_k_m/model.gguf");
  io::GgufFile file(path);
  uint64_t tensor_bytes = 0;
  bool q4k = false, q6k = false;
  for (const auto& t : file.tensors()) {
    tensor_bytes += t.bytes;
    q4k = q4k || t.dtype == io::DType::Q4_K;
    q6k = q6k || t.dtype == io::DType::Q6_K;
  }
  CHECK(q4k);
  CHECK(q6k);
  const uint64_t before = test_device().allocated_bytes();
  {
    auto m = model::LlamaModel::load(test_device(), path, {.quiet = true});
    CHECK(m->weight_bytes() == tensor_bytes);
    // Q4_K_M mixes formats within a layer: what shares one (stacked into one matrix) and what does not (kept apart)
    // both run, and the stacked bytes are still the file's.
    size_t stacked = 0, apart = 0;
    for (const auto& l : m->layers())
      for (const model::StackedLinear* p : {&l.qkv, &l.gate_up}) (p->parts.size() == 1 ? stacked : apart) += 1;
    MESSAGE("Q4_K_M: " << stacked << " stacked projections, " << apart << " kept apart");
    CHECK(apart > 0);
    CHECK(test_device().allocated_bytes() - before >= tensor_bytes);
    CHECK(test_device().allocated_bytes() - before - tensor_bytes < 32 * 1024);  // allocation rounding only
  }
}

// The reference simulates w8a8 in float32 on exactly quantized values; integer dot products are exact here, so with
// an f32 cache the only differences are float32 summation order (~1e-7). An f16 cache would move activations by its
// rounding and flip some int8 roundings (each worth 1/127 of a row's max): about 1e-2, hence f32 for this check.
TEST_CASE("compressed-tensors w8a8 equals its float32 simulation") {
  check_logits_and_greedy({"hf-llama/w8a8-int8", "hf-llama/w8a8-int8/reference.safetensors", "logits_w8a8_sim",
                           "greedy_w8a8_sim", 2e-3, kernels::KvType::F32});
}

// Static per-tensor activation scales (`input_scale`, strategy tensor), calibrated so that some activations clamp;
// `ignore` spelled as a regular expression ("re:.*lm_head"). The reference is the same float32 simulation with those
// scales (tools/fixtures/make_w8a8_static.py, checked there against the dynamic fixture), so the bound is the same.
TEST_CASE("compressed-tensors w8a8 with static activation scales equals its float32 simulation") {
  check_logits_and_greedy({"hf-llama/w8a8-static-int8", "hf-llama/w8a8-static-int8/reference.safetensors",
                           "logits_w8a8_sim", "greedy_w8a8_sim", 2e-3, kernels::KvType::F32});
  auto m = model::LlamaModel::load(test_device(), data_path("hf-llama/w8a8-static-int8"), {.quiet = true});
  CHECK(m->layers()[1].down.input_scale > 0);
  // gate and up read one input, so calibration gave them one scale and they stack; down has its own.
  REQUIRE(m->layers()[1].gate_up.parts.size() == 1);
  CHECK(m->layers()[1].down.input_scale != m->layers()[1].gate_up.parts[0].input_scale);
  CHECK(m->lm_head().type == kernels::WeightType::BF16);  // ignored by the pattern
}

// What the engine does not run is refused by the field that says so, not run wrongly.
TEST_CASE("compressed-tensors schemes it does not support are refused, naming the field") {
  const std::filesystem::path fixture = data_path("hf-llama/w8a8-static-int8");
  std::ifstream in(fixture / "config.json");
  const std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t at = config.find("\"quantization_config\"");
  REQUIRE(at != std::string::npos);
  auto quantization = [](const std::string& weights, const std::string& activations, const std::string& rest) {
    return "\"quantization_config\": {\"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": {" +
           weights + "}, \"input_activations\": " + activations + "}}, " + rest + "}\n}\n";
  };
  const std::string w = "\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"channel\", \"group_size\": null";
  const std::string a = "{\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"dynamic\": false, \"strategy\": \"tensor\"}";
  const std::string r = "\"format\": \"int-quantized\", \"quant_method\": \"compressed-tensors\", \"ignore\": [\"lm_head\"]";
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    const size_t i = s.find(from);
    REQUIRE(i != std::string::npos);
    return s.replace(i, from.size(), to);
  };
  struct Case {
    std::string quantization_config, needle;
  };
  const std::vector<Case> cases = {
      {quantization(w, a, r), ""},  // the unchanged scheme loads: the cases below differ in one field each
      {quantization(replace(w, "\"symmetric\": true", "\"symmetric\": false"), a, r), "weights.symmetric"},
      {quantization(replace(w, "\"num_bits\": 8", "\"num_bits\": 4"), a, r), "weights.num_bits"},
      {quantization(replace(w, "\"type\": \"int\"", "\"type\": \"float\""), a, r), "weights.type"},
      {quantization(replace(w, "\"group_size\": null", "\"group_size\": 32"), a, r), "weights.group_size"},
      {quantization(replace(w, "\"channel\"", "\"block\""), a, r), "weights.strategy"},
      {quantization(w, replace(a, "\"symmetric\": true", "\"symmetric\": false"), r), "input_activations.symmetric"},
      {quantization(w, replace(a, "\"num_bits\": 8", "\"num_bits\": 4"), r), "input_activations.num_bits"},
      {quantization(w, replace(a, "\"dynamic\": false", "\"dynamic\": true"), r), "input_activations"},
      {quantization(w, a, replace(r, "int-quantized", "float-quantized")), "format"},
      {quantization(w, a, replace(r, "compressed-tensors", "gptq")), "quant_method"},
      {quantization(w, a, replace(r, "\"lm_head\"", "\"re:(lm_head\"")), "does not compile"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.quantization_config);
    TempDir dir;
    write_file(dir / "config.json", config.substr(0, at) + c.quantization_config);
    std::filesystem::create_symlink(std::filesystem::absolute(fixture / "model.safetensors"), dir / "model.safetensors");
    if (c.needle.empty()) {
      CHECK_NOTHROW(model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}));
    } else {
      check_error_mentions([&] { model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}); },
                           {(dir / "config.json").string(), c.needle});
    }
  }
  // Static activations asked for, but the weights (the dynamic fixture's) carry no input_scale.
  TempDir dir;
  write_file(dir / "config.json", config);
  std::filesystem::create_symlink(std::filesystem::absolute(data_path("hf-llama/w8a8-int8/model.safetensors")),
                                  dir / "model.safetensors");
  check_error_mentions([&] { model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}); },
                       {"model.layers.0.self_attn.q_proj.input_scale", "missing"});
}

// Weight-only int8 with per-row scales rounds each weight by up to half a step (max|row| / 254); on these random
// 64-wide models that moves the logits by about 3e-2 of their max. Bound: 6e-2. Greedy is not compared (it may change).
TEST_CASE("--quantize int8 halves the linear layers and stays near the float32 logits") {
  for (const char* name : {"llama3-tied-bf16", "mha-sharded-bf16"}) {
    check_logits_and_greedy({std::string("hf-llama/") + name, std::string("hf-llama/") + name + "/reference.safetensors",
                             "logits_f32", "", 6e-2, kernels::KvType::F32, true});
    auto f = model::LlamaModel::load(test_device(), data_path(std::string("hf-llama/") + name), {.quiet = true});
    auto q = model::LlamaModel::load(test_device(), data_path(std::string("hf-llama/") + name),
                                     {.quiet = true, .quantize_int8 = true});
    uint64_t float_linear = 0, int8_linear = 0;
    for (size_t l = 0; l < f->layers().size(); ++l) {
      const auto& a = f->layers()[l];
      const auto& b = q->layers()[l];
      const auto xs = a.linears(), ys = b.linears();
      REQUIRE(xs.size() == ys.size());
      for (size_t j = 0; j < xs.size(); ++j) {
        const model::Linear *x = xs[j], *y = ys[j];
        CHECK(y->weight.type == kernels::WeightType::I8);
        float_linear += x->weight.bytes();
        int8_linear += y->weight.bytes();
      }
    }
    // BF16 → int8 halves the weights; the f32 row scales add 4 bytes per row.
    CHECK(double(int8_linear) / double(float_linear) == doctest::Approx(0.5).epsilon(0.1));
    CHECK(q->weight_bytes() < f->weight_bytes());
  }
}

// A NaN, infinite or negative weight_scale (compressed-tensors) would make every logit NaN; a zero or NaN input_scale
// likewise. They are refused at load, naming the tensor. (A zero weight_scale is a row of zeros and loads.)
TEST_CASE("w8a8 scales that are not finite, negative, or a zero input_scale are refused at load naming the tensor") {
  struct Case {
    std::string fixture, tensor;
    size_t index;
    float value;
    bool refused;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {"hf-llama/w8a8-int8", "model.layers.0.self_attn.q_proj.weight_scale", 3, nan, true},
      {"hf-llama/w8a8-int8", "model.layers.1.mlp.down_proj.weight_scale", 0, inf, true},
      {"hf-llama/w8a8-int8", "model.layers.1.mlp.up_proj.weight_scale", 10, -0.5f, true},
      {"hf-llama/w8a8-int8", "model.layers.0.self_attn.o_proj.weight_scale", 2, 0.0f, false},
      {"hf-llama/w8a8-static-int8", "model.layers.1.self_attn.k_proj.input_scale", 0, 0.0f, true},
      {"hf-llama/w8a8-static-int8", "model.layers.0.mlp.gate_proj.input_scale", 0, nan, true},
      {"hf-llama/w8a8-static-int8", "model.layers.0.mlp.down_proj.weight_scale", 1, -inf, true},
  };
  for (const Case& c : cases) {
    CAPTURE(c.tensor);
    CAPTURE(c.value);
    TempDir dir;
    copy_checkpoint_with_element(data_path(c.fixture), dir.path(), c.tensor, c.index, c.value);
    if (c.refused) {
      check_error_mentions([&] { model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}); },
                           {dir.path().string(), "'" + c.tensor + "'"});
    } else {
      CHECK_NOTHROW(model::LlamaModel::load(test_device(), dir.path(), {.quiet = true}));
    }
  }
}
