// The `inferno` command as outside tools drive it (../shared/CONTRACT.md): outputs, exit codes, end-to-end text.
#include <simdjson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>

#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "cli_support.hpp"
#include "model/checkpoint_edit.hpp"
#include "test_support.hpp"

using namespace inferno;
using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

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
  return run_shell("", inferno_bin(), args, stdin_text, temp_dir());
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

// The checkpoint directories of tests/data/hf-llama that come with transformers' references, sorted.
std::vector<std::string> hf_fixtures() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(data_path("hf-llama")))
    if (fs::exists(e.path() / "config.json") && fs::exists(e.path() / "reference.safetensors"))
      names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The number right after the first `label` in `text` (followed by `unit` when one is given), or -1 when there is
// none. (No std::regex: g++ 12 warns inside <regex> at -O2, and the sanitizer build treats warnings as errors.)
double number_after(const std::string& text, const std::string& label, const std::string& unit = "") {
  const size_t at = text.find(label);
  if (at == std::string::npos) return -1;
  const char* start = text.c_str() + at + label.size();
  char* end = nullptr;
  const double value = std::strtod(start, &end);
  if (end == start || std::string_view(end).substr(0, unit.size()) != unit) return -1;
  return value;
}

// Tokens in one line of `inferno tokenize` output.
long count_ids(const std::string& line) {
  REQUIRE(!trim(line).empty());
  return long(std::count(line.begin(), line.end(), ' ')) + 1;
}

// stderr holds exactly one line, the error, and it names `culprit`.
void check_one_error_line(const Run& r, const std::string& culprit) {
  INFO("stderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK((!r.err.empty() && r.err.back() == '\n'));
  CHECK(r.err.find(culprit) != std::string::npos);
  CHECK(r.out.empty());
}

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
  CHECK(text.out.find("dtype by group: embedding BF16, attention BF16, mlp BF16, norm BF16, lm_head BF16\n") !=
        std::string::npos);

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
  struct Expected {
    const char* name;
    const char* family;        // the 512-token test models are no known family; the 128k-vocabulary one is 3.2
    const char* quantization;  // config.json's quantization_config.quant_method
    const char* weights;       // the dtype of every tensor group but the compressed-tensors linear layers
    const char* linear;        // the dtype of the attention and MLP projections
  };
  const Expected fixtures[] = {
      {"llama3-gqa-f32", "Llama (other)", "", "F32", "F32"},
      {"llama3-tied-bf16", "Llama (other)", "", "BF16", "BF16"},
      {"bias-headdim-f16", "Llama (other)", "", "F16", "F16"},
      {"mha-sharded-bf16", "Llama (other)", "", "BF16", "BF16"},
      {"mqa-yarn-f32", "Llama (other)", "", "F32", "F32"},
      {"dynamic-rope-f32", "Llama (other)", "", "F32", "F32"},
      {"w8a8-int8", "Llama (other)", "compressed-tensors", "BF16", "I8"},
      {"w8a8-static-int8", "Llama (other)", "compressed-tensors", "BF16", "I8"},
      {"llama3-vocab-tied-bf16", "Llama 3.2", "", "BF16", "BF16"},
  };
  for (const Expected& e : fixtures) {
    const std::string name = e.name;
    CAPTURE(name);
    simdjson::dom::parser cp, ip;
    simdjson::dom::element config = cp.load(data_path(std::string("hf-llama/") + name + "/config.json").string());
    const Run r = run_inferno("info --json -m " + fixture(name));
    REQUIRE(r.status == 0);
    simdjson::dom::element j = ip.parse(r.out);
    CHECK(std::string_view(j["family"]) == e.family);
    CHECK(std::string_view(j["quantization"]) == e.quantization);
    simdjson::dom::object groups = j["dtype_by_group"];
    CHECK(groups.size() == 5);
    for (const char* group : {"embedding", "norm", "lm_head"}) CHECK(std::string_view(groups[group]) == e.weights);
    for (const char* group : {"attention", "mlp"}) CHECK(std::string_view(groups[group]) == e.linear);
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
  CHECK(relative_max_error(got.read_f32("logits"), ref.read_f32("prompt1.logits_f32")) <= 1e-4);  // F32: parity's bound
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

TEST_CASE("generate --chat --system prefills the chat template's rendering of the two messages") {
  const fs::path dir = llama3_text_model();
  const std::string model = quote(dir.string()), system = "You are terse.", user = "Name a colour.";
  const fs::path messages = temp_dir() / "chat-messages.json";
  std::ofstream(messages) << R"([{"role": "system", "content": ")" << system << R"("}, {"role": "user", "content": ")"
                          << user << R"("}])";
  const Run tmpl = run_inferno("template -m " + model + " --messages " + quote(messages.string()) + " --add-generation-prompt");
  REQUIRE(tmpl.status == 0);
  CHECK(tmpl.out.find(system) != std::string::npos);
  const Run t = run_inferno("tokenize --no-special -m " + model + " " + quote(tmpl.out));
  REQUIRE(t.status == 0);
  const std::string generate = "generate -m " + model + " -p " + quote(user) + " -n 8 --greedy --ignore-eos --kv-dtype f32";
  const Run chat = run_inferno(generate + " --chat --system " + quote(system));
  REQUIRE(chat.status == 0);
  INFO("stderr: " << chat.err);
  CHECK(number_after(chat.err, "prompt tokens: ", " ") == count_ids(t.out));
  const Run plain = run_inferno(generate);
  REQUIRE(plain.status == 0);
  CHECK(number_after(plain.err, "prompt tokens: ", " ") < count_ids(t.out));
  CHECK(plain.out != chat.out);
}

TEST_CASE("template prints apply_chat_template's text exactly; a raise_exception exits 1 with its message") {
  simdjson::dom::parser parser;
  simdjson::dom::element cases = parser.load(data_path("hf-llama/chat_template_cases.json").string());
  const fs::path messages = temp_dir() / "template-messages.json";
  // Llama 3 (its template always ends with the assistant's header) and 3.1 (only when asked): the tokenizer's own
  // template; the one- and the four-message case of each.
  for (const char* family : {"llama3", "llama3_1"}) {
    for (auto c : simdjson::dom::array(cases[family])) {
      const std::string msgs = simdjson::minify(c["messages"]);
      if (msgs.find("\"system\"") != std::string::npos && !bool(c["add_generation_prompt"])) continue;
      if (msgs.find("\"system\"") == std::string::npos && bool(c["add_generation_prompt"])) continue;
      CAPTURE(family);
      CAPTURE(msgs);
      std::ofstream(messages) << msgs;
      const Run r = run_inferno("template -m " + quote(tokenizer_dir(family).string()) + " --messages " +
                                quote(messages.string()) + (bool(c["add_generation_prompt"]) ? " --add-generation-prompt" : ""));
      INFO("stderr: " << r.err);
      CHECK(r.status == 0);
      CHECK(r.out == std::string_view(c["text"]));
    }
  }
  // The Llama 2 template given with --template raises on two user turns in a row.
  size_t raised = 0;
  for (auto c : simdjson::dom::array(cases["llama2"])) {
    std::string_view error;
    if (c["error"].get(error) != simdjson::SUCCESS) continue;
    const fs::path tmpl = temp_dir() / "llama2.jinja";
    std::ofstream(tmpl) << std::string_view(c["chat_template"]);
    std::ofstream(messages) << simdjson::minify(c["messages"]);
    const Run r = run_inferno("template -m " + quote(tokenizer_dir(std::string(std::string_view(c["tokenizer"]))).string()) +
                              " --template " + quote(tmpl.string()) + " --messages " + quote(messages.string()));
    check_one_error_line(r, std::string(error));
    ++raised;
    break;
  }
  CHECK(raised == 1);
  // A message with a newline still makes one error line: the newline is written as \n. A template nested past the
  // interpreter's limit is one line naming the limit.
  const fs::path tmpl = temp_dir() / "hostile.jinja";
  std::ofstream(messages) << R"([{"role": "user", "content": "hi"}])";
  std::ofstream(tmpl) << R"({{ raise_exception("first line\nsecond line") }})";
  const std::string model = quote(tokenizer_dir("llama3").string());
  Run r = run_inferno("template -m " + model + " --template " + quote(tmpl.string()) + " --messages " +
                      quote(messages.string()));
  check_one_error_line(r, "first line\\nsecond line");
  std::ofstream(tmpl) << "{{ 'x'" << [] {
    std::string filters;
    for (int i = 0; i < 50000; ++i) filters += "|upper";
    return filters;
  }() << " }}";
  r = run_inferno("template -m " + model + " --template " + quote(tmpl.string()) + " --messages " +
                  quote(messages.string()));
  check_one_error_line(r, "expression nested deeper than 200 levels");
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

TEST_CASE("generate -p reports its statistics on stderr and keeps stdout for the text") {
  INFERNO_SEED_INFO();
  Rng rng(41);
  const std::string prompt = random_prompt(rng);
  CAPTURE(prompt);
  const Run t = run_inferno("tokenize -m " + brown() + " " + quote(prompt));
  REQUIRE(t.status == 0);
  const Run g = run_inferno("generate -m " + brown() + " -p " + quote(prompt) + " -n 8 --greedy --ignore-eos");
  REQUIRE(g.status == 0);
  INFO("stderr: " << g.err);
  INFO("stdout: " << g.out);
  CHECK(number_after(g.err, "prompt tokens: ", " ") == count_ids(t.out));  // the prompt as `tokenize` splits it
  CHECK(number_after(g.err, "new tokens: ") == 8);
  CHECK(number_after(g.err, "prefill: ", " tok/s") > 0);
  CHECK(number_after(g.err, "decode: ", " tok/s") > 0);
  CHECK(number_after(g.err, "time to first token: ", " ms") > 0);
  // stdout: the continuation only, then one newline
  CHECK(!trim(g.out).empty());
  CHECK(g.out.back() == '\n');
  for (const char* stat : {"prompt tokens", "new tokens", "prefill", "decode", "tok/s", "time to first token", "reused"})
    CHECK(g.out.find(stat) == std::string::npos);
}

// transformers' stop strings keep the stop string in the output; so does `--stop`: the text ends right after it.
TEST_CASE("generate --stop ends the greedy text right after the first occurrence of the stop string") {
  INFERNO_SEED_INFO();
  Rng rng(42);
  const std::string prompt = random_prompt(rng);
  CAPTURE(prompt);
  const std::string cmd = "generate --quiet -m " + brown() + " -p " + quote(prompt) + " -n 30 --greedy --ignore-eos";
  const Run full = run_inferno(cmd);
  REQUIRE(full.status == 0);
  const std::string text = full.out.substr(0, full.out.size() - 1);  // without the final newline
  CAPTURE(text);
  // Words of the text, from the middle on first: the stop string is one whose first occurrence is a whole word with
  // a space after it (the demo tokenizer's tokens start at spaces, so a token ends right where the word does) and
  // more text after that.
  std::vector<std::pair<size_t, size_t>> words;  // (start, length)
  for (size_t i = 0; i < text.size();) {
    const size_t a = text.find_first_not_of(" \n", i);
    if (a == std::string::npos) break;
    const size_t b = std::min(text.find_first_of(" \n", a), text.size());
    words.emplace_back(a, b - a);
    i = b;
  }
  std::rotate(words.begin(), words.begin() + long(words.size() / 2), words.end());
  std::string stop;
  size_t at = 0;
  for (const auto& [start, length] : words) {
    const std::string w = text.substr(start, length);
    const size_t p = text.find(w);
    const bool whole = (p == 0 || text[p - 1] == ' ' || text[p - 1] == '\n') && p + length < text.size() &&
                       text[p + length] == ' ' && trim(text.substr(p + length)).size() > 0;
    if (w.size() >= 2 && std::all_of(w.begin(), w.end(), [](unsigned char c) { return std::isalpha(c); }) && whole) {
      stop = w, at = p;
      break;
    }
  }
  REQUIRE_MESSAGE(!stop.empty(), "no word of the greedy text to stop at");
  CAPTURE(stop);
  const Run r = run_inferno(cmd + " --stop " + quote(stop));
  REQUIRE(r.status == 0);
  CHECK(r.out == text.substr(0, at + stop.size()) + "\n");  // the stop string printed, nothing after it
  CHECK(text.rfind(r.out.substr(0, r.out.size() - 1), 0) == 0);  // a prefix of the full greedy text
  const double made = number_after(r.err, "new tokens: ");
  CHECK(made >= 1);
  CHECK(made < 30);  // generation itself stopped, not only the printing
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
  // The compute roofline: prefill's (and decode's) multiply-adds a second against the measured multiply-add rate.
  const double fma_rate = double(j["fma_rate_gfma_per_s"]), prefill_gfma = double(j["prefill"]["gfma_per_s"]);
  CHECK(fma_rate > 0);
  CHECK(prefill_gfma > 0);
  CHECK(double(j["prefill"]["compute_pct"]) == doctest::Approx(100.0 * prefill_gfma / fma_rate).epsilon(0.01));
  CHECK(double(j["decode"]["compute_pct"]) ==
        doctest::Approx(100.0 * double(j["decode"]["gfma_per_s"]) / fma_rate).epsilon(0.01));
  simdjson::dom::array kernels = j["kernels"];
  REQUIRE(kernels.size() > 3);
  double total = 0, previous = 100.0;
  bool linear = false;
  for (auto k : kernels) {
    const double share = double(k["share_pct"]);
    total += share;
    CHECK(share <= previous);  // largest first
    previous = share;
    linear = linear || std::string_view(k["name"]).find("linear") != std::string_view::npos;
  }
  CHECK(total == doctest::Approx(100.0).epsilon(0.01));
  // The projections are among them (which kernel leads is the machine's business: on a loaded CPU driver a
  // dispatch's timestamps include the time its threads waited for a core).
  CHECK(linear);
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
  // Q4_K_M keeps some projections (attn_v, ffn_down) and output.weight in Q6_K: a group of two dtypes shows both.
  const Run mixed = run_inferno("info --json -m " + quote(data_path("gguf/tiny-k-q4_k_m/model.gguf").string()));
  REQUIRE(mixed.status == 0);
  simdjson::dom::element m = parser.parse(mixed.out);
  CHECK(std::string_view(m["dtype_by_group"]["attention"]) == "Q4_K+Q6_K");
  CHECK(std::string_view(m["dtype_by_group"]["norm"]) == "F32");
  CHECK(std::string_view(m["dtype_by_group"]["lm_head"]) == "Q6_K");
  // A file inside a checkpoint directory stands for the directory.
  const Run in_dir = run_inferno("info -m " + quote(data_path("hf-llama/llama3-gqa-f32/config.json").string()));
  CHECK(in_dir.status == 0);
}

TEST_CASE("chat keeps the KV cache across turns") {
  const fs::path dir = llama3_text_model();
  const Run r = run_inferno("chat --quiet -m " + quote(dir.string()) + " -n 4 --greedy", "Hello there\nAnd again\n");
  REQUIRE(r.status == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);  // one reply line per turn
  // one "[N new prompt tokens, R reused; ...]" line per turn
  std::vector<std::pair<int, int>> turns;  // (prefilled, reused)
  for (size_t at = r.err.find('['); at != std::string::npos; at = r.err.find('[', at + 1)) {
    const std::string line = r.err.substr(at, r.err.find('\n', at) - at);
    const double prefilled = number_after(line, "[", " new prompt tokens, ");
    const double reused = number_after(line, "new prompt tokens, ", " reused");
    if (prefilled >= 0 && reused >= 0) turns.emplace_back(int(prefilled), int(reused));
  }
  INFO("stderr: " << r.err);
  REQUIRE(turns.size() == 2);
  CHECK(turns[0].second == 0);  // a fresh cache
  CHECK(turns[0].first > 0);
  // the second turn's prompt starts with the whole first turn's prompt: at least those tokens come from the cache
  CHECK(turns[1].second >= turns[0].first);
  CHECK(turns[1].first > 0);
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

TEST_CASE("broken model files: generate and info exit 1 with one stderr line naming the file or tensor") {
  const fs::path dir = temp_dir() / "broken";
  fs::remove_all(dir);
  const fs::path truncated = dir / "truncated", wrong_shape = dir / "wrong-shape", bad_gguf = dir / "bad-magic.gguf";
  const fs::path fixture_dir = data_path("hf-llama/llama3-gqa-f32");
  fs::create_directories(truncated);

  // (a) the weights cut short: the header promises more bytes than the file has
  fs::copy_file(fixture_dir / "config.json", truncated / "config.json");
  fs::copy_file(fixture_dir / "model.safetensors", truncated / "model.safetensors");
  fs::resize_file(truncated / "model.safetensors", fs::file_size(truncated / "model.safetensors") - 100);
  // (b) config.json's intermediate_size (160) disagrees with the MLP weights
  link_weights_with_config(wrong_shape, fixture_dir,
                           replace_once(read_text(fixture_dir / "config.json"), "\"intermediate_size\": 160",
                                        "\"intermediate_size\": 128"));
  // (c) a GGUF file whose magic is not "GGUF"
  std::string gguf = read_text(data_path("gguf/float/llama3-gqa-f32.gguf"));
  gguf.replace(0, 4, "GGUX");
  std::ofstream(bad_gguf, std::ios::binary) << gguf;

  struct Case {
    fs::path model;
    std::vector<std::string> culprits;  // each must appear in the error
  };
  const Case cases[] = {
      {truncated, {(truncated / "model.safetensors").string()}},
      {wrong_shape, {"model.layers.0.mlp.gate_proj.weight", "[160, 64]", "[128, 64]"}},
      {bad_gguf, {bad_gguf.string()}},
  };
  for (const Case& c : cases) {
    for (const std::string command : {"info", "generate --ids 1,2 -n 2 --greedy --ignore-eos --print-ids"}) {
      CAPTURE(c.model);
      CAPTURE(command);
      const Run r = run_inferno(command + " -m " + quote(c.model.string()));
      for (const std::string& culprit : c.culprits) check_one_error_line(r, culprit);
    }
  }
  // The same wrong-shape copy with the original config.json runs: the error comes from the edit alone.
  fs::copy_file(fixture_dir / "config.json", wrong_shape / "config.json", fs::copy_options::overwrite_existing);
  CHECK(run_inferno("info -m " + quote(wrong_shape.string())).status == 0);
}

// Every reference fixture through the command line, with the flags outside tools pass: logits against transformers'
// float32 logits at the parity tolerances, and greedy ids with an f32 cache exactly. The shortest prompt of at least
// two tokens keeps this quick. The w8a8 fixtures' references simulate int8 in float32 (see tests/model/
// test_quantized.cpp): their own keys and bound, with the f32 cache that bound needs.
TEST_CASE("logits and generate with --kv-dtype f32 --ctx --device on every fixture equal the references") {
  const std::vector<std::string> names = hf_fixtures();
  REQUIRE(names.size() >= 8);
  for (const std::string& name : names) {
    CAPTURE(name);
    const fs::path dir = data_path("hf-llama/" + name);
    io::SafetensorsFile ref(dir / "reference.safetensors");
    const bool w8a8 = ref.find("prompt0.logits_w8a8_sim") != nullptr;
    const std::string logits_key = w8a8 ? "logits_w8a8_sim" : "logits_f32", greedy_key = w8a8 ? "greedy_w8a8_sim" : "greedy_f32";
    const bool f32 = io::Checkpoint(dir).at("model.embed_tokens.weight").dtype == io::DType::F32;
    const double tolerance = w8a8 ? 2e-3 : f32 ? 1e-4 : 3e-3;

    std::string key;
    int64_t shortest = 0;
    for (int p = 0; ref.find("prompt" + std::to_string(p) + ".input_ids"); ++p) {
      const std::string k = "prompt" + std::to_string(p);
      const int64_t len = ref.at(k + ".input_ids").shape.at(0);
      if (len >= 2 && (key.empty() || len < shortest)) key = k, shortest = len;
    }
    REQUIRE(!key.empty());
    CAPTURE(key);
    const auto ids = ref.read_i64(key + ".input_ids");
    const auto want_logits = ref.read_f32(key + "." + logits_key);  // every position, or the last only
    const int64_t tokens = int64_t(ids.size()), vocab = ref.at(key + "." + logits_key).shape.at(1);

    const fs::path out = temp_dir() / "fixture-logits.safetensors";
    fs::remove(out);
    const Run l = run_inferno("logits --quiet -m " + quote(dir.string()) + " --ids " + join(ids, ",") + " --out " +
                              quote(out.string()) + " --kv-dtype f32 --ctx " + std::to_string(tokens) + " --device 0");
    INFO("logits stderr: " << l.err);
    REQUIRE(l.status == 0);
    io::SafetensorsFile got(out);
    CHECK(got.at("logits").shape == std::vector<int64_t>{tokens, vocab});
    auto got_logits = got.read_f32("logits");
    got_logits.erase(got_logits.begin(), got_logits.end() - long(std::min(want_logits.size(), got_logits.size())));
    const double err = relative_max_error(got_logits, want_logits);
    MESSAGE(name << " " << key << ": max|Δ|/max|ref| = " << err);
    CHECK(err <= tolerance);

    const auto want_ids = ref.read_i64(key + "." + greedy_key);
    const size_t n = want_ids.size();
    const Run g = run_inferno("generate --quiet -m " + quote(dir.string()) + " --ids " + join(ids, ",") + " -n " +
                              std::to_string(n) + " --greedy --ignore-eos --print-ids --kv-dtype f32 --ctx " +
                              std::to_string(ids.size() + n) + " --device 0");
    INFO("generate stderr: " << g.err);
    REQUIRE(g.status == 0);
    CHECK(g.out == join(want_ids, " ") + "\n");
  }
}

TEST_CASE("--ctx and --device: too small a context and a missing device exit 1; a context past the model's warns") {
  const std::string model = fixture("llama3-gqa-f32");  // max_position_embeddings 256
  // one prompt token and 4 new ones need 5 positions
  const std::string generate = "generate --quiet -m " + model + " --ids 77 -n 4 --greedy --ignore-eos --print-ids";
  const Run fits = run_inferno(generate + " --ctx 5");
  CHECK(fits.status == 0);
  CHECK(std::count(fits.out.begin(), fits.out.end(), ' ') == 3);

  const Run small = run_inferno(generate + " --ctx 4");
  check_one_error_line(small, "context");
  CHECK(small.err.find("--ctx 4") != std::string::npos);
  const Run small_logits = run_inferno("logits --quiet -m " + model + " --ids 1,2,3 --ctx 2 --out " +
                                       quote((temp_dir() / "unused.safetensors").string()));
  check_one_error_line(small_logits, "context");

  check_one_error_line(run_inferno(generate + " --device 99"), "--device 99");

  const Run past = run_inferno(generate + " --ctx 300");
  CHECK(past.status == 0);
  CHECK(past.out == fits.out);
  CHECK(past.err.find("warning") != std::string::npos);
  CHECK(past.err.find("max_position_embeddings 256") != std::string::npos);
  CHECK(fits.err.find("warning") == std::string::npos);
}

namespace {

// Runs `inferno ARGS` under `timeout 20` with stdin from `stdin_path`; returns the status and the seconds it took.
std::pair<Run, double> run_hostile(const std::string& args, const std::string& stdin_path = "/dev/null") {
  const char* bin = std::getenv("INFERNO_BIN");
  REQUIRE_MESSAGE(bin, "INFERNO_BIN is not set (meson sets it)");
  const fs::path out = temp_dir() / "stdout", err = temp_dir() / "stderr";
  const std::string cmd = "timeout 20 " + std::string(bin) + " " + args + " <" + quote(stdin_path) + " >" +
                          out.string() + " 2>" + err.string();
  const auto start = std::chrono::steady_clock::now();
  const int raw = std::system(cmd.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Run r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  r.out = read_text(out);
  r.err = read_text(err);
  return {r, seconds};
}

// A checkpoint directory: the llama3-gqa-f32 fixture's weights (linked) and config.json (copied, or `config`).
fs::path hostile_checkpoint(const std::string& name, const std::string& config = "") {
  const fs::path dir = temp_dir() / "hostile" / name;
  fs::remove_all(dir);
  link_weights_with_config(dir, data_path("hf-llama/llama3-gqa-f32"),
                           config.empty() ? read_text(data_path("hf-llama/llama3-gqa-f32/config.json")) : config);
  return dir;
}

void make_fifo(const fs::path& path) { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }

}  // namespace

TEST_CASE("hostile files: a FIFO or device where a file is read exits 1 naming it, within a second") {
  {  // config.json
    const fs::path dir = hostile_checkpoint("fifo-config");
    fs::remove(dir / "config.json");
    make_fifo(dir / "config.json");
    const auto [r, seconds] = run_hostile("info -m " + quote(dir.string()));
    check_one_error_line(r, (dir / "config.json").string() + ": not a regular file");
    CHECK(seconds < 1.0);
  }
  {  // model.safetensors
    const fs::path dir = hostile_checkpoint("fifo-weights");
    fs::remove(dir / "model.safetensors");
    make_fifo(dir / "model.safetensors");
    const auto [r, seconds] = run_hostile("info -m " + quote(dir.string()));
    check_one_error_line(r, "model.safetensors: not a regular file");
    CHECK(seconds < 1.0);
  }
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {  // a FIFO, then a directory
    CAPTURE(name);
    for (bool fifo : {true, false}) {
      const fs::path dir = hostile_checkpoint(std::string("text-") + name + (fifo ? "-fifo" : "-dir"));
      if (fifo) make_fifo(dir / name);
      else fs::create_directory(dir / name);
      const auto [r, seconds] = run_hostile("tokenize -m " + quote(dir.string()) + " hello");
      check_one_error_line(r, (dir / name).string() + ": not a regular file");
      CHECK(seconds < 1.0);
    }
  }
  {  // generation_config.json
    const fs::path dir = hostile_checkpoint("fifo-generation");
    make_fifo(dir / "generation_config.json");
    const auto [r, seconds] = run_hostile("generate --quiet -m " + quote(dir.string()) + " --ids 1,2 -n 1");
    check_one_error_line(r, "generation_config.json: not a regular file");
    CHECK(seconds < 5.0);  // after the weights' load
  }
  {  // perplexity -f /dev/zero: refused before the model loads
    const auto [r, seconds] = run_hostile("perplexity --quiet -m " + brown() + " -f /dev/zero");
    check_one_error_line(r, "/dev/zero: not a regular file");
    CHECK(seconds < 1.0);
  }
}

TEST_CASE("hostile files: chat's stdin without line ends is refused at 1 MiB a line, not read forever") {
  const fs::path dir = llama3_text_model();
  const auto [r, seconds] = run_hostile("chat --quiet -m " + quote(dir.string()) + " --ctx 256 -n 2 --greedy", "/dev/zero");
  check_one_error_line(r, "stdin: a line longer than 1048576 bytes");
  CHECK(seconds < 5.0);
}

TEST_CASE("hostile files: a GGUF with 4294967295 layers exits 1 naming the file, key and value, within a second") {
  const fs::path dir = temp_dir() / "hostile";
  fs::create_directories(dir);
  std::string bytes = read_text(data_path("gguf/float/llama3-gqa-f32.gguf"));
  const std::string key = std::string("llama.block_count") + std::string("\x04\0\0\0", 4);
  const size_t at = bytes.find(key);
  REQUIRE(at != std::string::npos);
  bytes.replace(at + key.size(), 4, std::string("\xff\xff\xff\xff", 4));
  const fs::path gguf = dir / "layers.gguf";
  std::ofstream(gguf, std::ios::binary | std::ios::trunc) << bytes;
  const auto [r, seconds] = run_hostile("info -m " + quote(gguf.string()));
  check_one_error_line(r, gguf.string() + ": metadata key 'llama.block_count': value 4294967295 is out of range");
  CHECK(seconds < 1.0);
}

TEST_CASE("hostile files: -m takes a GGUF file by its magic and a file inside a checkpoint as its directory") {
  const fs::path dir = temp_dir() / "hostile" / "resolve";
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::create_symlink(data_path("gguf/brown-8m-q8_0/model.gguf"), dir / "MODEL.GGUF");
  const auto [gguf, gguf_seconds] = run_hostile("info --json -m " + quote((dir / "MODEL.GGUF").string()));
  INFO(gguf.err);
  CHECK(gguf.status == 0);
  CHECK(gguf.out.find("\"format\":\"gguf\"") != std::string::npos);
  const auto [file, file_seconds] =
      run_hostile("generate --quiet -m " + quote(data_path("hf-llama/llama3-gqa-f32/model.safetensors").string()) +
                  " --ids 1,2 -n 2 --greedy --print-ids");
  INFO(file.err);
  CHECK(file.status == 0);
  CHECK(std::count(file.out.begin(), file.out.end(), '\n') == 1);
}

TEST_CASE("hostile files: logits --out replaces only a regular file; a symlink or a FIFO is refused naming it") {
  const fs::path dir = temp_dir() / "hostile" / "out";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "target", std::ios::binary) << "keep me";
  fs::create_symlink(dir / "target", dir / "link.safetensors");
  make_fifo(dir / "fifo.safetensors");
  for (const char* name : {"link.safetensors", "fifo.safetensors"}) {
    CAPTURE(name);
    const auto [r, seconds] = run_hostile("logits --quiet -m " + fixture("llama3-gqa-f32") + " --ids 1,2 --out " +
                                          quote((dir / name).string()));
    check_one_error_line(r, (dir / name).string() + ": exists and is");
  }
  CHECK(read_text(dir / "target") == "keep me");
  CHECK(fs::is_symlink(dir / "link.safetensors"));
  CHECK(fs::is_fifo(dir / "fifo.safetensors"));
}

TEST_CASE("hostile files: quantization_config type errors name config.json and the field; absent group_size loads") {
  const std::string config = read_text(data_path("hf-llama/w8a8-int8/config.json"));
  const auto checkpoint = [&](const std::string& name, const std::string& edited) {
    const fs::path dir = temp_dir() / "hostile" / name;
    fs::remove_all(dir);
    link_weights_with_config(dir, data_path("hf-llama/w8a8-int8"), edited);
    return dir;
  };
  const fs::path targets = checkpoint("targets", replace_once(config, "\"Linear\"", "1"));
  const auto [r, seconds] = run_hostile("generate --quiet -m " + quote(targets.string()) + " --ids 1,2 -n 1");
  check_one_error_line(r, (targets / "config.json").string() +
                              ": field 'quantization_config.config_groups.group_0.targets': expected a list of strings");
  // compressed-tensors defaults group_size to None: without the key the weights are per channel, as with null.
  // (The weights' "group_size": null, renamed to a key nothing reads.)
  std::string without = config;
  const size_t weights = without.find("\"weights\"");
  REQUIRE(weights != std::string::npos);
  const size_t group_size = without.find("\"group_size\"", weights);
  REQUIRE(group_size != std::string::npos);
  without.insert(group_size + 1, "no_");
  const fs::path absent = checkpoint("no-group-size", without);
  const auto [ok, ok_seconds] = run_hostile("generate --quiet -m " + quote(absent.string()) + " --ids 1,2 -n 1 --print-ids");
  INFO(ok.err);
  CHECK(ok.status == 0);
}

// Numbers out of range are usage errors found while parsing: exit 2 with one stderr line naming the flag, before any
// model loads (the model path does not exist, so a run that got as far as loading would exit 1 naming the path).
TEST_CASE("numeric flags out of range: exit 2 at parse time naming the flag, before loading, with --greedy too") {
  const std::string gen = "generate -m /nonexistent/model --ids 1,2 ";
  const std::string model = " -m /nonexistent/model ";
  struct Case {
    std::string args, flag;
  };
  const Case cases[] = {
      {gen + "-n -5", "--max-new-tokens"},
      {gen + "-n 0", "--max-new-tokens"},
      {gen + "-n 99999999999", "--max-new-tokens"},
      {gen + "--top-p 2", "--top-p"},
      {gen + "--greedy --top-p 2", "--top-p"},
      {gen + "--top-p nan", "--top-p"},
      {gen + "--top-p -0.5", "--top-p"},
      {gen + "--temperature nan", "--temperature"},
      {gen + "--greedy --temperature inf", "--temperature"},
      {gen + "--temperature 0", "--temperature"},
      {gen + "--temperature -1", "--temperature"},
      {gen + "--temperature 1e400", "--temperature"},
      {gen + "--typical-p 5", "--typical-p"},
      {gen + "--typical-p 0", "--typical-p"},
      {gen + "--min-p 1.5", "--min-p"},
      {gen + "--min-p nan", "--min-p"},
      {gen + "--top-k -1", "--top-k"},
      {gen + "--top-k 4294967296", "--top-k"},
      {gen + "--repetition-penalty 0", "--repetition-penalty"},
      {gen + "--greedy --repetition-penalty nan", "--repetition-penalty"},
      {gen + "--no-repeat-ngram-size -2", "--no-repeat-ngram-size"},
      {gen + "--min-new-tokens -1", "--min-new-tokens"},
      {gen + "--min-length -1", "--min-length"},
      {gen + "--seed -1", "--seed"},
      {gen + "--seed 18446744073709551616", "--seed"},
      {gen + "--ctx -1", "--ctx"},
      {gen + "--ctx 4294967296", "--ctx"},
      {gen + "--device -3", "--device"},
      {"logits" + model + "--ids 1 --out /tmp/x.safetensors --ctx 1e3", "--ctx"},
      {"perplexity" + model + "-f x --window 1", "--window"},
      {"perplexity" + model + "-f x --stride 0", "--stride"},
      {"perplexity" + model + "-f x --max-windows -1", "--max-windows"},
      {"perplexity" + model + "-f x --window 8 --stride 9", "--stride"},
      {"chat" + model + "-n -5", "--max-new-tokens"},
      {"chat" + model + "--greedy --temperature nan", "--temperature"},
      {"chat" + model + "--seed x", "--seed"},
      {"bench" + model + "-n 1", "--gen-tokens"},
      {"bench" + model + "-p 0", "--prompt-tokens"},
      {"bench" + model + "--batch 0", "--batch"},
      {"bench" + model + "--repeats 0", "--repeats"},
      {"serve" + model + "--port 70000", "--port"},
      {"serve" + model + "--port -1", "--port"},
      {"serve" + model + "--max-body-bytes 0", "--max-body-bytes"},
      {"serve" + model + "--max-queue -1", "--max-queue"},
      {"serve" + model + "--default-max-tokens 0", "--default-max-tokens"},
      {"serve" + model + "--kv-budget 0%", "--kv-budget"},
      {"serve" + model + "--kv-budget 150%", "--kv-budget"},
      {"serve" + model + "--kv-budget half", "--kv-budget"},
      {"serve" + model + "--kv-budget -5", "--kv-budget"},
      {"serve" + model + "--kv-budget 0", "--kv-budget"},
      {"serve" + model + "--kv-budget nan%", "--kv-budget"},
      {"bench" + model + "--concurrency 1 --kv-budget 5X", "--kv-budget"},
      {"bench" + model + "--kv-budget 50%", "--kv-budget"},
      {gen + "--kv-dtype q4", "--kv-dtype"},
      {"info" + model + "--batch 0", "--batch"},
      {"info" + model + "--batch 268435456 --ctx 134217728", "--batch"},
      {"info" + model + "--ctx 4294967297", "--ctx"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const Run r = run_inferno(c.args);
    INFO("stderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(c.flag) != std::string::npos);
    CHECK(r.err.find("/nonexistent") == std::string::npos);  // refused before the model was looked at
    CHECK(r.err.size() < 200);                              // no 300-digit bounds
    CHECK(r.out.empty());
  }
  // The edges of each range are accepted: these reach the model and fail there (exit 1, naming the path).
  for (const std::string ok : {"-n 1 --top-p 1 --temperature 1e-3 --typical-p 1 --min-p 0 --top-k 0",
                               "--top-p 0 --min-p 1 --repetition-penalty 1e6 --no-repeat-ngram-size 0 --seed 0",
                               "--ctx 0 --device 0 --min-new-tokens 0 --top-k 2147483647"}) {
    CAPTURE(ok);
    const Run r = run_inferno(gen + ok);
    CHECK(r.status == 1);
    CHECK(r.err.find("/nonexistent/model") != std::string::npos);
  }
}

// A model whose embedding has more rows than its tokenizer has tokens (padded vocabularies are common): generated ids
// without a token are skipped in the text, as transformers' decode skips them; as input they are still refused.
TEST_CASE("generate prints the text of the ids the tokenizer has and skips the padded ones") {
  const fs::path dir = temp_dir() / "padded-vocab";
  fs::remove_all(dir);
  const fs::path fixture_dir = data_path("hf-llama/llama3-gqa-f32");  // vocab_size 512
  link_weights_with_config(dir, fixture_dir, read_text(fixture_dir / "config.json"));
  // 94 tokens, the printable ASCII characters '!'..'~' as ids 0..93, joined by a Fuse decoder.
  std::string vocab;
  for (int id = 0; id < 94; ++id) {
    const char c = char('!' + id);
    const std::string key = c == '"' || c == '\\' ? std::string("\\") + c : std::string(1, c);
    vocab += (id ? "," : "") + std::string("\"") + key + "\":" + std::to_string(id);
  }
  std::ofstream(dir / "tokenizer.json", std::ios::binary)
      << R"({"model": {"type": "BPE", "vocab": {)" << vocab << R"(}, "merges": []}, "decoder": {"type": "Fuse"}})";

  const std::string generate =
      "generate --quiet -m " + quote(dir.string()) + " --ids 1,2,3 -n 24 --greedy --ignore-eos --kv-dtype f32";
  const Run ids = run_inferno(generate + " --print-ids");
  REQUIRE(ids.status == 0);
  std::string expected;
  int beyond = 0;
  std::istringstream in(ids.out);
  for (int id; in >> id;) {
    if (id < 94) expected += char('!' + id);
    else ++beyond;
  }
  REQUIRE(beyond > 0);  // the random model does pick ids past the tokenizer's 94 (of its 512)
  const Run text = run_inferno(generate);
  INFO("stderr: " << text.err);
  CHECK(text.status == 0);
  CHECK(trim(text.out) == expected);

  // As input, an id past the model's vocabulary is still an error naming it.
  const Run input = run_inferno("generate --quiet -m " + quote(dir.string()) + " --ids 1,600 -n 2 --greedy");
  check_one_error_line(input, "600");
}

// NaN weights make NaN logits: greedy decoding must not print token 0 and exit 0. The error names the layer.
TEST_CASE("a NaN planted in one layer's weight: generate and logits exit 1 naming that layer") {
  const fs::path dir = temp_dir() / "nan-layer";
  fs::remove_all(dir);
  copy_checkpoint_with_element(data_path("hf-llama/llama3-gqa-f32"), dir, "model.layers.1.self_attn.o_proj.weight", 42,
                               std::numeric_limits<float>::quiet_NaN());
  for (const std::string& command : std::vector<std::string>{"generate --ids 1,2,3 -n 4 --greedy --print-ids",
                                                              "generate --ids 1,2 -n 4 --seed 3 --print-ids",
                                                              "logits --ids 1,2,3 --out " + quote((temp_dir() / "nan.safetensors").string())}) {
    CAPTURE(command);
    const Run r = run_inferno(command + " --quiet -m " + quote(dir.string()));
    check_one_error_line(r, "layer 1 (model.layers.1)");
  }
  CHECK(!fs::exists(temp_dir() / "nan.safetensors"));
}

// q8 KV on the command line: info plans 36 bytes per 32 values (9/16 of f16's), generate runs with it and keeps the
// f32 cache's greedy ids on the demo model (tests/api/test_kv_q8.cpp measures its logits), a head_dim 16 model
// refuses it naming head_dim, and bench --concurrency takes --kv-budget as a size.
TEST_CASE("--kv-dtype q8: info's plan at 9/16 of f16's KV bytes, generate, refusal on head_dim 16") {
  simdjson::dom::parser parser;
  auto info = [&](const std::string& kv) {
    const Run r = run_inferno("info --json --ctx 256 -m " + brown() + " --kv-dtype " + kv);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    return r.out;
  };
  const std::string f16_text = info("f16"), q8_text = info("q8");
  const simdjson::dom::element f16 = parser.parse(f16_text);
  const uint64_t f16_kv = uint64_t(f16["kv_cache_bytes"]), f16_token = uint64_t(f16["plan"]["kv_bytes_per_token"]);
  const simdjson::dom::element q8 = parser.parse(q8_text);
  const uint64_t rope_table = 256 * 32 * 4;  // brown-8m: head_dim 32
  CHECK((uint64_t(q8["kv_cache_bytes"]) - rope_table) * 16 == (f16_kv - rope_table) * 9);
  CHECK(std::string_view(q8["plan"]["kv_dtype"]) == "q8");
  CHECK(f16_token == 2ull * 6 * 2 * 32 * 2);  // K and V, 6 layers, 2 KV heads, head_dim 32, 2 bytes
  CHECK(uint64_t(q8["plan"]["kv_bytes_per_token"]) * 16 == f16_token * 9);
  const Run text = run_inferno("info --ctx 256 -m " + brown() + " --kv-dtype q8");
  CHECK(text.status == 0);
  CHECK(text.out.find("KV cache: 864 bytes per token (q8)") != std::string::npos);

  const std::string gen = "generate --quiet -m " + brown() + " -p " + quote("The jury said that") +
                          " -n 16 --greedy --ignore-eos --print-ids --kv-dtype ";
  const Run f32_ids = run_inferno(gen + "f32"), q8_ids = run_inferno(gen + "q8");
  REQUIRE_MESSAGE(q8_ids.status == 0, q8_ids.err);
  CHECK(q8_ids.out == f32_ids.out);

  const Run narrow = run_inferno("generate --quiet -m " + quote(data_path("hf-llama/llama3-gqa-f32").string()) +
                                 " --ids 1,2 -n 2 --kv-dtype q8");
  CHECK(narrow.status == 1);
  CHECK(narrow.err.find("head_dim is 16") != std::string::npos);
  const Run narrow_info = run_inferno("info -m " + quote(data_path("hf-llama/llama3-gqa-f32").string()) + " --kv-dtype q8");
  CHECK(narrow_info.status == 1);
  CHECK(narrow_info.err.find("head_dim is 16") != std::string::npos);

  const Run load = run_inferno("bench --quiet --json -m " + brown() +
                               " --concurrency 2 -p 8 -n 4 --repeats 1 --kv-dtype q8 --kv-budget 1M");
  REQUIRE_MESSAGE(load.status == 0, load.err);
  CHECK(uint64_t(parser.parse(load.out)["levels"].at(0)["concurrency"]) == 2);
}

// info's KV estimate follows the sessions' default (f32 for F32 weights, f16 otherwise) in both formats: the F32 GGUF
// file gets an f32 cache like its safetensors twin.
TEST_CASE("info estimates the KV cache at the default dtype a session uses, for GGUF as for safetensors") {
  auto kv_bytes = [](const std::string& model, const std::string& extra) {
    const Run r = run_inferno("info --json --ctx 64 -m " + quote(data_path(model).string()) + extra);
    REQUIRE(r.status == 0);
    simdjson::dom::parser parser;
    return uint64_t(parser.parse(r.out)["kv_cache_bytes"]);
  };
  // f32: 2 (K, V) x 2 layers x 2 KV heads x 64 x 16 x 4 bytes, + the RoPE table 64 x 16 x 4
  const uint64_t f32_bytes = 2ull * 2 * 2 * 64 * 16 * 4 + 64 * 16 * 4;
  for (const std::string model : {"gguf/float/llama3-gqa-f32.gguf", "hf-llama/llama3-gqa-f32"}) {
    CAPTURE(model);
    CHECK(kv_bytes(model, "") == f32_bytes);
    CHECK(kv_bytes(model, " --kv-dtype f16") < f32_bytes);
  }
  const uint64_t bf16_default = kv_bytes("gguf/float/llama3-tied-bf16.gguf", "");
  CHECK(bf16_default == kv_bytes("gguf/float/llama3-tied-bf16.gguf", " --kv-dtype f16"));
  CHECK(bf16_default < kv_bytes("gguf/float/llama3-tied-bf16.gguf", " --kv-dtype f32"));
}
