// The `inferno` command as outside tools drive it (../shared/CONTRACT.md): outputs, exit codes, end-to-end text.
#include <simdjson.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "io/safetensors.hpp"
#include "test_support.hpp"

using namespace inferno;
using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

struct Run {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("inferno-cli-" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

// Runs `inferno ARGS` (arguments already shell-quoted), with optional stdin text.
Run run_inferno(const std::string& args, const std::string& stdin_text = "") {
  const char* bin = std::getenv("INFERNO_BIN");
  REQUIRE_MESSAGE(bin, "INFERNO_BIN is not set (meson sets it)");
  const fs::path out = temp_dir() / "stdout", err = temp_dir() / "stderr", in = temp_dir() / "stdin";
  std::ofstream(in, std::ios::binary) << stdin_text;
  const std::string cmd = std::string(bin) + " " + args + " <" + in.string() + " >" + out.string() + " 2>" + err.string();
  const int raw = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string fixture(const std::string& name) { return quote(data_path("hf-llama/" + name).string()); }

std::string join(const std::vector<int64_t>& ids, const char* sep) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? sep : "") + std::to_string(ids[i]);
  return s;
}

std::string trim(std::string s) {
  const auto a = s.find_first_not_of(" \n\r\t");
  if (a == std::string::npos) return "";
  const auto b = s.find_last_not_of(" \n\r\t");
  return s.substr(a, b - a + 1);
}

// A checkpoint directory with the real Llama 3 tokenizer beside the weights of llama3-vocab-tied-bf16.
fs::path llama3_text_model() {
  return llama3_text_checkpoint(temp_dir() / "llama3-text");
}

std::string brown() { return quote((root_dir() / "models/brown-8m-bf16").string()); }

}  // namespace

TEST_CASE("devices lists the chosen device") {
  const Run r = run_inferno("devices");
  CHECK(r.status == 0);
  CHECK(r.out.find("device 0:") != std::string::npos);
  CHECK(r.out.find("<- chosen") != std::string::npos);
  CHECK(r.out.find("maxStorageBufferRange") != std::string::npos);
}

TEST_CASE("info describes a checkpoint, in text and JSON") {
  const Run text = run_inferno("info -m " + fixture("mha-sharded-bf16"));
  REQUIRE(text.status == 0);
  CHECK(text.out.find("layers: 3") != std::string::npos);
  CHECK(text.out.find("3 shard(s)") != std::string::npos);

  const Run r = run_inferno("info --json --ctx 100 -m " + fixture("llama3-gqa-f32"));
  REQUIRE(r.status == 0);
  simdjson::dom::parser parser;
  simdjson::dom::element j = parser.parse(r.out);
  CHECK(uint64_t(j["layers"]) == 2);
  CHECK(uint64_t(j["hidden_size"]) == 64);
  CHECK(uint64_t(j["heads"]) == 4);
  CHECK(uint64_t(j["kv_heads"]) == 2);
  CHECK(uint64_t(j["head_dim"]) == 16);
  CHECK(uint64_t(j["vocab_size"]) == 512);
  CHECK(std::string_view(j["family"]) == "Llama (other)");
  const uint64_t file_bytes = fs::file_size(data_path("hf-llama/llama3-gqa-f32/model.safetensors"));
  const uint64_t weight_bytes = uint64_t(j["weight_bytes"]);
  CHECK(weight_bytes < file_bytes);
  CHECK(weight_bytes > file_bytes - 16384);  // the file is the tensors plus its JSON header
  CHECK(uint64_t(j["tensor_bytes_by_dtype"]["F32"]) == weight_bytes);
  // KV cache for 100 tokens of f32: 2 (K, V) x 2 layers x 2 KV heads x 100 x 16 x 4 bytes (+ the RoPE table)
  CHECK(uint64_t(j["kv_cache_bytes"]) >= 2ull * 2 * 2 * 100 * 16 * 4);
  CHECK(uint64_t(j["params"]) == weight_bytes / 4);
  simdjson::dom::array devices = j["devices"];
  CHECK(devices.size() >= 1);
  CHECK(bool(devices.at(0)["fits"]));
}

TEST_CASE("info describes every fixture checkpoint as its config.json says") {
  for (const char* name : {"llama3-gqa-f32", "llama3-tied-bf16", "bias-headdim-f16", "mha-sharded-bf16", "mqa-yarn-f32",
                           "w8a8-int8", "llama3-vocab-tied-bf16"}) {
    CAPTURE(name);
    simdjson::dom::parser cp, ip;
    simdjson::dom::element config = cp.load(data_path(std::string("hf-llama/") + name + "/config.json").string());
    const Run r = run_inferno("info --json -m " + fixture(name));
    REQUIRE(r.status == 0);
    simdjson::dom::element j = ip.parse(r.out);
    const uint64_t hidden = uint64_t(config["hidden_size"]), heads = uint64_t(config["num_attention_heads"]);
    CHECK(uint64_t(j["layers"]) == uint64_t(config["num_hidden_layers"]));
    CHECK(uint64_t(j["hidden_size"]) == hidden);
    CHECK(uint64_t(j["heads"]) == heads);
    CHECK(uint64_t(j["kv_heads"]) == uint64_t(config["num_key_value_heads"]));
    CHECK(uint64_t(j["head_dim"]) == uint64_t(config["head_dim"]));
    CHECK(uint64_t(j["vocab_size"]) == uint64_t(config["vocab_size"]));
    CHECK(bool(j["tied_embeddings"]) == bool(config["tie_word_embeddings"]));
    // weights on the device = the tensors' bytes on disk: the files minus their JSON headers
    uint64_t files = 0, tensors = 0;
    for (const auto& e : fs::directory_iterator(data_path(std::string("hf-llama/") + name)))
      if (e.path().extension() == ".safetensors" && e.path().filename() != "reference.safetensors") {
        files += fs::file_size(e.path());
        io::SafetensorsFile f(e.path());
        for (const auto& t : f.tensors())
          if (!(bool(config["tie_word_embeddings"]) && t.name == "lm_head.weight")) tensors += t.bytes;
      }
    CHECK(uint64_t(j["weight_bytes"]) == tensors);
    CHECK(tensors < files);
    uint64_t by_dtype = 0;
    for (auto [k, v] : simdjson::dom::object(j["tensor_bytes_by_dtype"])) by_dtype += uint64_t(v);
    CHECK(by_dtype == tensors);
  }
}

TEST_CASE("logits --out writes transformers' logits [T, V]") {
  io::SafetensorsFile ref(data_path("hf-llama/llama3-gqa-f32/reference.safetensors"));
  const auto ids = ref.read_i64("prompt1.input_ids");
  const fs::path out = temp_dir() / "logits.safetensors";
  const Run r = run_inferno("logits --quiet -m " + fixture("llama3-gqa-f32") + " --ids " + join(ids, ",") + " --out " +
                        quote(out.string()));
  REQUIRE(r.status == 0);
  io::SafetensorsFile got(out);
  CHECK(got.at("logits").shape == std::vector<int64_t>{int64_t(ids.size()), 512});
  const auto a = got.read_f32("logits"), b = ref.read_f32("prompt1.logits_f32");
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(double(b[i])));
    max_diff = std::max(max_diff, std::fabs(double(a[i]) - b[i]));
  }
  CHECK(max_diff / max_ref <= 1e-4);  // F32 checkpoint: the parity tolerance
}

TEST_CASE("generate --print-ids prints exactly one line of the greedy ids, for one prompt and a batch") {
  io::SafetensorsFile ref(data_path("hf-llama/bias-headdim-f16/reference.safetensors"));
  const auto ids = ref.read_i64("prompt2.input_ids");
  const Run r = run_inferno("generate --quiet -m " + fixture("bias-headdim-f16") + " --ids " + join(ids, ",") +
                        " -n 24 --greedy --ignore-eos --print-ids --kv-dtype f32");
  REQUIRE(r.status == 0);
  CHECK(r.out == join(ref.read_i64("prompt2.greedy_f32"), " ") + "\n");
  CHECK(r.err.find("decode:") != std::string::npos);  // statistics go to stderr

  const auto p0 = ref.read_i64("prompt0.input_ids"), p1 = ref.read_i64("prompt1.input_ids");
  const Run b = run_inferno("generate --quiet -m " + fixture("bias-headdim-f16") + " --ids " + join(p0, ",") + " --ids " +
                        join(p1, ",") + " -n 24 --greedy --ignore-eos --print-ids --kv-dtype f32");
  REQUIRE(b.status == 0);
  CHECK(b.out == join(ref.read_i64("prompt0.greedy_f32"), " ") + "\n" + join(ref.read_i64("prompt1.greedy_f32"), " ") + "\n");
}

TEST_CASE("text in, text out on the real Llama 3 vocabulary") {
  const fs::path dir = llama3_text_model();
  simdjson::dom::parser parser;
  simdjson::dom::element ref = parser.load(data_path("hf-llama/llama3-vocab-tied-bf16/reference.json").string());
  simdjson::dom::array texts = ref["texts"], prompts = ref["prompts"], greedy_text = ref["greedy_text"];
  for (size_t i = 0; i < texts.size(); ++i) {
    CAPTURE(i);
    const std::string text{std::string_view(texts.at(i))};
    std::vector<int64_t> want;
    for (auto id : simdjson::dom::array(prompts.at(i))) want.push_back(int64_t(id));
    const Run t = run_inferno("tokenize -m " + quote(dir.string()) + " " + quote(text));
    REQUIRE(t.status == 0);
    CHECK(t.out == join(want, " ") + "\n");
    const Run g = run_inferno("generate --quiet -m " + quote(dir.string()) + " -p " + quote(text) +
                          " -n 12 --greedy --ignore-eos --kv-dtype f32");
    REQUIRE(g.status == 0);
    CHECK(trim(g.out) == trim(std::string{std::string_view(greedy_text.at(i))}));
  }
}

TEST_CASE("the bundled demo model reproduces its greedy reference and its perplexity") {
  simdjson::dom::parser parser;
  simdjson::dom::element ref = parser.load((root_dir() / "models/brown-8m-bf16/reference.json").string());
  simdjson::dom::array cases = ref["greedy_f32"];
  for (auto c : cases) {
    const std::string prompt{std::string_view(c["prompt"])};
    CAPTURE(prompt);
    std::vector<int64_t> all;
    for (auto id : simdjson::dom::array(c["ids"])) all.push_back(int64_t(id));
    const Run t = run_inferno("tokenize -m " + brown() + " " + quote(prompt));
    REQUIRE(t.status == 0);
    const size_t prompt_len = size_t(std::count(t.out.begin(), t.out.end(), ' ') + 1);
    CHECK(t.out == join(std::vector<int64_t>(all.begin(), all.begin() + long(prompt_len)), " ") + "\n");
    const Run g = run_inferno("generate --quiet -m " + brown() + " -p " + quote(prompt) +
                          " -n 40 --greedy --ignore-eos --kv-dtype f32 --print-ids");
    REQUIRE(g.status == 0);
    CHECK(g.out == join(std::vector<int64_t>(all.begin() + long(prompt_len), all.end()), " ") + "\n");
    const Run text = run_inferno("generate --quiet -m " + brown() + " -p " + quote(prompt) + " -n 40 --greedy --ignore-eos --kv-dtype f32");
    REQUIRE(text.status == 0);
    CHECK(trim(text.out) == trim(std::string{std::string_view(c["text"])}));
  }
  // The first 8 windows of the held-out text: 128.785 in transformers float32 (models/README.md), within 0.5 %.
  const Run p = run_inferno("perplexity --quiet -m " + brown() + " -f " +
                        quote((root_dir() / "models/brown-8m-bf16/heldout.txt").string()) + " --max-windows 8");
  REQUIRE(p.status == 0);
  const auto pos = p.out.rfind("perplexity: ");
  REQUIRE(pos != std::string::npos);
  const double ppl = std::stod(p.out.substr(pos + 12));
  const double want = double(ref["heldout_perplexity_f32_first_windows"]["8"]["perplexity"]);
  CHECK(std::fabs(ppl - want) / want <= 0.005);
}

TEST_CASE("bench reports speed against the measured bandwidth, in CONTRACT.md's JSON") {
  const Run r = run_inferno("bench --json -m " + brown() + " -p 8 -n 4 --repeats 1");
  REQUIRE(r.status == 0);
  simdjson::dom::parser parser;
  simdjson::dom::element j = parser.parse(r.out);
  CHECK(!std::string_view(j["device"]).empty());
  CHECK(std::string_view(j["model"]).find("brown-8m-bf16") != std::string_view::npos);
  CHECK(double(j["bandwidth_gb_per_s"]) > 0);
  CHECK(uint64_t(j["prefill"]["tokens"]) == 8);
  CHECK(double(j["prefill"]["tok_per_s"]) > 0);
  CHECK(uint64_t(j["decode"]["tokens"]) == 4);
  const double tps = double(j["decode"]["tok_per_s"]), gbps = double(j["decode"]["gb_per_s"]);
  CHECK(tps > 0);
  // gb_per_s is decode speed times the bytes a step reads (at least every weight once)
  CHECK(gbps >= tps * 17e6 / 1e9 * 0.99);
  CHECK(double(j["decode"]["roofline_pct"]) == doctest::Approx(100.0 * gbps / double(j["bandwidth_gb_per_s"])).epsilon(0.01));
  simdjson::dom::array kernels = j["kernels"];
  REQUIRE(kernels.size() > 3);
  double total = 0;
  for (auto k : kernels) total += double(k["share_pct"]);
  CHECK(total == doctest::Approx(100.0).epsilon(0.01));
  CHECK(std::string_view(kernels.at(0)["name"]).find("linear") != std::string_view::npos);  // weights dominate decode
}

TEST_CASE("the random-checkpoint maker writes a checkpoint that loads and runs, sharded when asked") {
  const char* maker = std::getenv("INFERNO_MAKE_CHECKPOINT");
  REQUIRE(maker);
  const fs::path out = temp_dir() / "random-ckpt";
  fs::remove_all(out);
  const std::string cmd = std::string(maker) + " --config " +
                          quote(data_path("hf-llama/llama3-gqa-f32/config.json").string()) +
                          " --dtype f16 --layers 3 --shard-gb 0.00005 -o " + quote(out.string()) + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(fs::exists(out / "model.safetensors.index.json"));
  const Run info = run_inferno("info --json -m " + quote(out.string()));
  REQUIRE(info.status == 0);
  simdjson::dom::parser parser;
  simdjson::dom::element j = parser.parse(info.out);
  CHECK(uint64_t(j["layers"]) == 3);
  CHECK(uint64_t(j["kv_heads"]) == 2);
  CHECK(uint64_t(j["tensor_bytes_by_dtype"]["F16"]) == uint64_t(j["params"]) * 2);
  CHECK(simdjson::dom::array(j["shards"]).size() > 1);
  const Run gen = run_inferno("generate --quiet -m " + quote(out.string()) + " --ids 1,2,3 -n 3 --print-ids --ignore-eos");
  CHECK(gen.status == 0);
  CHECK(std::count(gen.out.begin(), gen.out.end(), ' ') == 2);
}

TEST_CASE("a GGUF file runs like a checkpoint directory: its own tokenizer, info, text out") {
  const std::string gguf = quote(data_path("gguf/brown-8m-q8_0/model.gguf").string());
  simdjson::dom::parser parser;
  simdjson::dom::element ref = parser.load(data_path("gguf/brown-8m-q8_0/reference.json").string());
  simdjson::dom::array texts = ref["texts"], prompts = ref["prompts"], greedy_text = ref["greedy_text"];
  for (size_t i = 0; i < texts.size(); ++i) {
    CAPTURE(i);
    const std::string text{std::string_view(texts.at(i))};
    std::vector<int64_t> want;
    for (auto id : simdjson::dom::array(prompts.at(i))) want.push_back(int64_t(id));
    const Run t = run_inferno("tokenize -m " + gguf + " " + quote(text));
    REQUIRE(t.status == 0);
    CHECK(t.out == join(want, " ") + "\n");
    const Run g = run_inferno("generate --quiet -m " + gguf + " -p " + quote(text) + " -n 40 --greedy --ignore-eos --kv-dtype f32");
    REQUIRE(g.status == 0);
    CHECK(trim(g.out) == trim(std::string{std::string_view(greedy_text.at(i))}));
  }
  const Run info = run_inferno("info --json -m " + gguf);
  REQUIRE(info.status == 0);
  simdjson::dom::element j = parser.parse(info.out);
  CHECK(std::string_view(j["format"]) == "gguf");
  CHECK(std::string_view(j["tokenizer"]) == "llama");
  CHECK(uint64_t(j["layers"]) == 6);
  CHECK(uint64_t(j["tensor_bytes_by_dtype"]["Q8_0"]) > 0);
  const Run bad = run_inferno("info -m " + quote(data_path("hf-llama/llama3-gqa-f32/config.json").string()));
  CHECK(bad.status == 1);
}

TEST_CASE("chat keeps the KV cache across turns") {
  const fs::path dir = llama3_text_model();
  const Run r = run_inferno("chat --quiet -m " + quote(dir.string()) + " -n 4 --greedy", "Hello there\nAnd again\n");
  REQUIRE(r.status == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);  // one reply line per turn
  // the second turn's prompt starts with the whole first exchange: those tokens come from the cache
  const auto second = r.err.rfind("new prompt tokens");
  REQUIRE(second != std::string::npos);
  CHECK(r.err.find(" reused", second) != std::string::npos);
  CHECK(r.err.find(", 0 reused", second) == std::string::npos);
}

TEST_CASE("errors: one line naming the culprit, exit 1; bad usage exits 2") {
  const Run missing = run_inferno("generate -m /nonexistent/model --ids 1,2 -n 2");
  CHECK(missing.status == 1);
  CHECK(missing.err.find("/nonexistent/model") != std::string::npos);
  CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

  const Run usage = run_inferno("generate --ids 1,2");
  CHECK(usage.status == 2);
  const Run bad_ids = run_inferno("generate -m " + fixture("llama3-gqa-f32") + " --ids 1,x -n 2");
  CHECK(bad_ids.status == 2);
  CHECK(bad_ids.err.find("'x'") != std::string::npos);

  const Run unknown = run_inferno("generate --quiet -m " + fixture("llama3-gqa-f32") + " --ids 1,99999 -n 2");
  CHECK(unknown.status == 1);
  CHECK(unknown.err.find("99999") != std::string::npos);

  const Run utf8 = run_inferno("tokenize -m " + brown() + " " + quote("bad \xff\xfe text"));
  CHECK(utf8.status == 1);
  CHECK(utf8.err.find("UTF-8") != std::string::npos);
}
