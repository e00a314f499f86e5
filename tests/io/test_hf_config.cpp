// config.json and generation_config.json: the fixtures in both RoPE spellings, random valid configs, and a refused
// config for each kind of inconsistency, named by field.
#include <simdjson.h>

#include <map>

#include "io/hf_config.hpp"
#include "io_test_files.hpp"

using namespace inferno;
using namespace inferno::io;
using namespace inferno::testing;

namespace {

LlamaConfig fixture_config(const std::string& name) { return load_llama_config(data_path("hf-llama/" + name)); }

// A config.json built from raw JSON values: `fields` on top of a small valid base; a value "" drops the field.
std::string config_json(const std::map<std::string, std::string>& fields) {
  std::map<std::string, std::string> all = {
      {"hidden_size", "64"},        {"intermediate_size", "160"}, {"num_hidden_layers", "2"},
      {"num_attention_heads", "4"}, {"num_key_value_heads", "2"}, {"vocab_size", "512"},
      {"hidden_act", "\"silu\""},   {"model_type", "\"llama\""},
  };
  for (const auto& [key, value] : fields) all[key] = value;
  std::string json = "{";
  for (const auto& [key, value] : all) {
    if (value.empty()) continue;
    json += (json.size() > 1 ? "," : "") + ("\"" + key + "\":") + value;
  }
  return json + "}";
}

LlamaConfig parse(const std::map<std::string, std::string>& fields) {
  return parse_llama_config(config_json(fields), "test/config.json");
}

// The parse of these fields fails with a message naming the source, the field and the problem.
void check_refused(const std::map<std::string, std::string>& fields, std::initializer_list<std::string> needles) {
  CAPTURE(config_json(fields));
  const std::string message = error_message([&] { parse(fields); });
  INFO("error message: " << message);
  CHECK(message.find("test/config.json") != std::string::npos);
  for (const std::string& needle : needles) CHECK_MESSAGE(message.find(needle) != std::string::npos, needle);
}

}  // namespace

TEST_CASE("fixture configs: GQA, MQA, head_dim, biases, tying, every RoPE type in both spellings") {
  const LlamaConfig gqa = fixture_config("llama3-gqa-f32");
  CHECK(gqa.model_type == "llama");
  CHECK(gqa.architectures == std::vector<std::string>{"LlamaForCausalLM"});
  CHECK(gqa.hidden_size == 64);
  CHECK(gqa.intermediate_size == 160);
  CHECK(gqa.num_hidden_layers == 2);
  CHECK(gqa.num_attention_heads == 4);
  CHECK(gqa.num_key_value_heads == 2);
  CHECK(gqa.head_dim == 16);
  CHECK(gqa.vocab_size == 512);
  CHECK(gqa.max_position_embeddings == 256);
  CHECK(gqa.rms_norm_eps == 1e-5);
  CHECK(gqa.dtype == "float32");
  CHECK(gqa.bos_token_id == 1);
  CHECK(gqa.eos_token_ids == std::vector<int64_t>{2});
  CHECK(gqa.pad_token_id == 0);
  CHECK_FALSE(gqa.tie_word_embeddings);
  CHECK_FALSE(gqa.attention_bias);
  CHECK_FALSE(gqa.mlp_bias);
  // Legacy spelling: rope_theta at top level, rope_scaling beside it.
  CHECK(gqa.rope.type == "llama3");
  CHECK(gqa.rope.theta == 500000.0);
  CHECK(gqa.rope.factor == 8.0);
  CHECK(gqa.rope.low_freq_factor == 1.0);
  CHECK(gqa.rope.high_freq_factor == 4.0);
  CHECK(gqa.rope.original_max_position_embeddings == 16.0);
  CHECK(gqa.quantization_config_json.empty());

  // transformers-5 spelling: rope_parameters with rope_theta inside; same values as the legacy case.
  const LlamaConfig tied = fixture_config("llama3-tied-bf16");
  CHECK(tied.tie_word_embeddings);
  CHECK(tied.dtype == "bfloat16");
  CHECK(tied.rope.type == gqa.rope.type);
  CHECK(tied.rope.theta == gqa.rope.theta);
  CHECK(tied.rope.factor == gqa.rope.factor);
  CHECK(tied.rope.low_freq_factor == gqa.rope.low_freq_factor);
  CHECK(tied.rope.high_freq_factor == gqa.rope.high_freq_factor);
  CHECK(tied.rope.original_max_position_embeddings == gqa.rope.original_max_position_embeddings);

  const LlamaConfig bias = fixture_config("bias-headdim-f16");
  CHECK(bias.attention_bias);
  CHECK(bias.mlp_bias);
  CHECK(bias.head_dim == 32);
  CHECK(bias.head_dim != bias.hidden_size / bias.num_attention_heads);
  CHECK(bias.num_key_value_heads == bias.num_attention_heads);
  CHECK(bias.rope.type == "linear");
  CHECK(bias.rope.factor == 2.0);
  CHECK(bias.rope.theta == 10000.0);
  CHECK(bias.dtype == "float16");

  const LlamaConfig sharded = fixture_config("mha-sharded-bf16");
  CHECK(sharded.num_hidden_layers == 3);
  CHECK(sharded.num_key_value_heads == sharded.num_attention_heads);
  CHECK(sharded.rope.type == "default");  // "rope_scaling": null
  CHECK(sharded.rope.factor == 1.0);
  CHECK(sharded.rope.theta == 10000.0);

  const LlamaConfig yarn = fixture_config("mqa-yarn-f32");
  CHECK(yarn.num_key_value_heads == 1);
  CHECK(yarn.rope.type == "yarn");
  CHECK(yarn.rope.factor == 4.0);
  CHECK(yarn.rope.original_max_position_embeddings == 32.0);
  CHECK_FALSE(yarn.rope.beta_fast.has_value());  // kept as written: the model applies yarn's defaults
  CHECK(yarn.rope.truncate);

  const LlamaConfig w8a8 = fixture_config("w8a8-int8");
  CHECK(w8a8.quant_method == "compressed-tensors");
  simdjson::dom::parser parser;
  simdjson::dom::element quantization;
  REQUIRE(parser.parse(w8a8.quantization_config_json).get(quantization) == simdjson::SUCCESS);
  CHECK(std::string_view(quantization["format"]) == "int-quantized");
  CHECK(int64_t(quantization["config_groups"]["group_0"]["weights"]["num_bits"]) == 8);

  const LlamaConfig vocab = fixture_config("llama3-vocab-tied-bf16");
  CHECK(vocab.vocab_size == 128256);
  CHECK(vocab.head_dim == 8);
  CHECK(vocab.tie_word_embeddings);
  CHECK(vocab.bos_token_id == 128000);
  CHECK(vocab.eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  CHECK_FALSE(vocab.pad_token_id.has_value());
  CHECK(vocab.rope.original_max_position_embeddings == 8192.0);
}

TEST_CASE("generation_config.json of the fixtures, and its absence") {
  const auto generation = load_generation_config(data_path("hf-llama/llama3-vocab-tied-bf16"));
  REQUIRE(generation.has_value());
  CHECK(generation->bos_token_id == 128000);
  CHECK(generation->eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  CHECK_FALSE(generation->pad_token_id.has_value());
  CHECK_FALSE(generation->temperature.has_value());

  const auto gqa = load_generation_config(data_path("hf-llama/llama3-gqa-f32"));
  REQUIRE(gqa.has_value());
  CHECK(gqa->eos_token_ids == std::vector<int64_t>{2});
  CHECK(gqa->pad_token_id == 0);

  CHECK_FALSE(load_generation_config(data_path("hf-llama/w8a8-int8")).has_value());  // it ships none
}

TEST_CASE("generation_config.json: every sampling field, and bad values refused by name") {
  const GenerationConfig g = parse_generation_config(
      R"({"bos_token_id":1,"eos_token_id":[2,7],"pad_token_id":0,"do_sample":true,"temperature":0.6,"top_k":50,)"
      R"("top_p":0.9,"min_p":0.05,"typical_p":0.95,"repetition_penalty":1.1,"no_repeat_ngram_size":3,)"
      R"("max_new_tokens":64,"max_length":2048,"min_length":2,"min_new_tokens":1,"transformers_version":"5.17.0"})",
      "gen.json");
  CHECK(g.bos_token_id == 1);
  CHECK(g.eos_token_ids == std::vector<int64_t>{2, 7});
  CHECK(g.pad_token_id == 0);
  CHECK(g.do_sample == true);
  CHECK(g.temperature == 0.6);
  CHECK(g.top_k == 50);
  CHECK(g.top_p == 0.9);
  CHECK(g.min_p == 0.05);
  CHECK(g.typical_p == 0.95);
  CHECK(g.repetition_penalty == 1.1);
  CHECK(g.no_repeat_ngram_size == 3);
  CHECK(g.max_new_tokens == 64);
  CHECK(g.max_length == 2048);
  CHECK(g.min_length == 2);
  CHECK(g.min_new_tokens == 1);

  check_error_mentions([] { parse_generation_config(R"({"top_p":1.5})", "gen.json"); }, {"gen.json", "top_p"});
  check_error_mentions([] { parse_generation_config(R"({"top_k":-1})", "gen.json"); }, {"gen.json", "top_k"});
  check_error_mentions([] { parse_generation_config(R"({"temperature":"hot"})", "gen.json"); },
                       {"gen.json", "temperature", "expected a number"});
  check_error_mentions([] { parse_generation_config(R"({"eos_token_id":[2,"x"]})", "gen.json"); },
                       {"gen.json", "eos_token_id"});
  check_error_mentions([] { parse_generation_config(R"({"do_sample":1})", "gen.json"); },
                       {"gen.json", "do_sample", "true or false"});
  check_error_mentions([] { parse_generation_config("[]", "gen.json"); }, {"gen.json", "object"});
}

TEST_CASE("defaults: kv heads, head_dim, ids and RoPE as transformers fills them; the legacy 'type' key") {
  const LlamaConfig c = parse({{"num_key_value_heads", ""}});
  CHECK(c.num_key_value_heads == c.num_attention_heads);
  CHECK(c.head_dim == 16);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.max_position_embeddings == 2048);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int64_t>{2});
  CHECK_FALSE(c.pad_token_id.has_value());
  CHECK(c.rope.type == "default");
  CHECK(c.rope.theta == 10000.0);
  CHECK(c.hidden_act == "silu");

  const LlamaConfig nulls = parse({{"bos_token_id", "null"}, {"eos_token_id", "null"}, {"head_dim", "null"},
                                   {"num_key_value_heads", "null"}, {"pad_token_id", "-1"}});
  CHECK_FALSE(nulls.bos_token_id.has_value());
  CHECK(nulls.eos_token_ids.empty());
  CHECK(nulls.head_dim == 16);
  CHECK(nulls.num_key_value_heads == 4);
  CHECK_FALSE(nulls.pad_token_id.has_value());

  const LlamaConfig legacy = parse({{"rope_theta", "1e6"}, {"rope_scaling", R"({"type":"dynamic","factor":2.5})"}});
  CHECK(legacy.rope.type == "dynamic");
  CHECK(legacy.rope.factor == 2.5);
  CHECK(legacy.rope.theta == 1e6);

  // rope_parameters wins over the legacy keys when both are written.
  const LlamaConfig both = parse({{"rope_theta", "1e6"},
                                  {"rope_scaling", R"({"rope_type":"linear","factor":2})"},
                                  {"rope_parameters", R"({"rope_type":"yarn","factor":4,"rope_theta":5e5,)"
                                                      R"("beta_fast":16,"beta_slow":2,"mscale":1.5,)"
                                                      R"("mscale_all_dim":0.5,"attention_factor":1.2,)"
                                                      R"("truncate":false})"}});
  CHECK(both.rope.type == "yarn");
  CHECK(both.rope.theta == 5e5);
  CHECK(both.rope.beta_fast == 16.0);
  CHECK(both.rope.beta_slow == 2.0);
  CHECK(both.rope.mscale == 1.5);
  CHECK(both.rope.mscale_all_dim == 0.5);
  CHECK(both.rope.attention_factor == 1.2);
  CHECK_FALSE(both.rope.truncate);

  const LlamaConfig named = parse({{"_name_or_path", "\"meta-llama/Llama-3.2-1B\""}, {"torch_dtype", "\"float16\""}});
  CHECK(named.name_or_path == "meta-llama/Llama-3.2-1B");
  CHECK(named.dtype == "float16");
}

TEST_CASE("random consistent configs parse back to the values written") {
  INFERNO_SEED_INFO();
  Rng rng(4);
  for (int round = 0; round < 50; ++round) {
    const int64_t kv_heads = rng.integer(1, 8), groups = rng.integer(1, 8), heads = kv_heads * groups;
    const int64_t head_dim = 2 * rng.integer(1, 64);
    const bool explicit_head_dim = rng.integer(0, 1) == 1;
    const int64_t hidden = explicit_head_dim ? rng.integer(1, 4096) : heads * head_dim;
    const int64_t intermediate = rng.integer(1, 20000), layers = rng.integer(1, 1024), vocab = rng.integer(1, 10'000'000);
    const double eps = rng.uniform(1e-7f, 1e-3f);
    std::map<std::string, std::string> fields = {
        {"hidden_size", std::to_string(hidden)},
        {"intermediate_size", std::to_string(intermediate)},
        {"num_hidden_layers", std::to_string(layers)},
        {"num_attention_heads", std::to_string(heads)},
        {"num_key_value_heads", std::to_string(kv_heads)},
        {"vocab_size", std::to_string(vocab)},
    };
    char eps_text[64];
    std::snprintf(eps_text, sizeof eps_text, "%.17g", eps);
    fields["rms_norm_eps"] = eps_text;
    if (explicit_head_dim) fields["head_dim"] = std::to_string(head_dim);
    CAPTURE(config_json(fields));
    const LlamaConfig c = parse(fields);
    CHECK(c.hidden_size == hidden);
    CHECK(c.intermediate_size == intermediate);
    CHECK(c.num_hidden_layers == layers);
    CHECK(c.num_attention_heads == heads);
    CHECK(c.num_key_value_heads == kv_heads);
    CHECK(c.head_dim == head_dim);
    CHECK(c.vocab_size == vocab);
    CHECK(c.rms_norm_eps == eps);  // %.17g round-trips a double exactly
  }
}

TEST_CASE("inconsistent, absurd and mistyped configs are refused naming the field") {
  SUBCASE("hidden_size not divisible by heads, without head_dim") {
    check_refused({{"hidden_size", "66"}}, {"num_attention_heads", "hidden_size 66"});
    CHECK(parse({{"hidden_size", "66"}, {"head_dim", "16"}}).head_dim == 16);  // an explicit head_dim is fine
  }
  SUBCASE("heads not divisible by kv heads") {
    check_refused({{"num_attention_heads", "6"}, {"num_key_value_heads", "4"}, {"hidden_size", "96"}},
                  {"num_key_value_heads", "not a multiple"});
    check_refused({{"num_key_value_heads", "8"}}, {"num_key_value_heads", "out of range"});
  }
  SUBCASE("zero, negative and absurd sizes") {
    check_refused({{"hidden_size", "0"}}, {"hidden_size", "out of range"});
    check_refused({{"hidden_size", "2097152"}}, {"hidden_size", "out of range"});
    check_refused({{"vocab_size", "100000000"}}, {"vocab_size", "out of range"});
    check_refused({{"num_hidden_layers", "2000"}}, {"num_hidden_layers", "out of range"});
    check_refused({{"num_hidden_layers", "-2"}}, {"num_hidden_layers", "out of range"});
    check_refused({{"intermediate_size", "18446744073709551615"}}, {"intermediate_size", "out of range"});
    check_refused({{"head_dim", "15"}}, {"head_dim", "even"});
    check_refused({{"max_position_embeddings", "0"}}, {"max_position_embeddings"});
    check_refused({{"rms_norm_eps", "-1e-5"}}, {"rms_norm_eps"});
    check_refused({{"eos_token_id", "[2,-5]"}}, {"eos_token_id", "out of range"});
    check_refused({{"pad_token_id", "-3"}}, {"pad_token_id", "out of range"});
  }
  SUBCASE("missing required fields") {
    check_refused({{"hidden_size", ""}}, {"hidden_size", "missing"});
    check_refused({{"vocab_size", "null"}}, {"vocab_size", "missing"});
  }
  SUBCASE("wrong JSON types") {
    check_refused({{"hidden_size", "\"64\""}}, {"hidden_size", "expected an integer, got string"});
    check_refused({{"hidden_size", "64.0"}}, {"hidden_size", "expected an integer, got number"});
    check_refused({{"attention_bias", "\"yes\""}}, {"attention_bias", "true or false"});
    check_refused({{"eos_token_id", "\"2\""}}, {"eos_token_id", "integer"});
    check_refused({{"architectures", "\"LlamaForCausalLM\""}}, {"architectures", "list of strings"});
    check_refused({{"rope_scaling", "8"}}, {"rope_scaling", "expected an object"});
    check_refused({{"rope_theta", "\"1e4\""}}, {"rope_theta", "expected a number"});
    check_refused({{"quantization_config", "\"fp8\""}}, {"quantization_config", "expected an object"});
    const std::string message = error_message([] { parse_llama_config("[1]", "test/config.json"); });
    CHECK(message.find("test/config.json") != std::string::npos);
    check_error_mentions([] { parse_llama_config("{\"hidden_size\": 6", "test/config.json"); },
                         {"test/config.json", "malformed JSON"});
  }
  SUBCASE("activation other than silu") {
    check_refused({{"hidden_act", "\"gelu\""}}, {"hidden_act", "'gelu'"});
  }
  SUBCASE("RoPE parameters") {
    check_refused({{"rope_scaling", R"({"rope_type":"longrope","factor":2})"}}, {"rope_scaling.rope_type", "longrope"});
    check_refused({{"rope_scaling", R"({"type":"ntk","factor":2})"}}, {"rope_scaling.type", "ntk"});
    check_refused({{"rope_scaling", R"({"rope_type":"linear"})"}}, {"rope_scaling.factor", "missing"});
    check_refused({{"rope_parameters", R"({"rope_type":"llama3","factor":8,"high_freq_factor":4,)"
                                       R"("original_max_position_embeddings":8192})"}},
                  {"rope_parameters.low_freq_factor", "missing"});
    check_refused({{"rope_parameters", R"({"rope_type":"llama3","factor":8,"low_freq_factor":4,)"
                                       R"("high_freq_factor":4,"original_max_position_embeddings":8192})"}},
                  {"rope_parameters.high_freq_factor", "greater"});
    check_refused({{"rope_scaling", R"({"rope_type":"yarn","factor":-4})"}}, {"rope_scaling.factor", "positive"});
    check_refused({{"rope_theta", "0"}}, {"rope_theta", "positive"});
  }
}

TEST_CASE("load_llama_config names the file: missing, empty, broken") {
  TempDir dir;
  check_error_mentions([&] { load_llama_config(dir.path()); }, {(dir / "config.json").string(), "cannot open"});
  write_file(dir / "config.json", std::string());
  check_error_mentions([&] { load_llama_config(dir.path()); }, {(dir / "config.json").string(), "empty"});
  write_file(dir / "config.json", config_json({{"num_attention_heads", "3"}}));
  check_error_mentions([&] { load_llama_config(dir.path()); },
                       {(dir / "config.json").string(), "num_attention_heads"});
  write_file(dir / "generation_config.json", std::string("{\"top_k\": 1.5}"));
  check_error_mentions([&] { load_generation_config(dir.path()); },
                       {(dir / "generation_config.json").string(), "top_k"});
}
