// Several devices from the command line: the plan (`inferno info --devices/--split/--device-memory`), checked on the
// real DeepSeek-R1-Distill-Llama-70B shapes written as headers over sparse shards, and the refusal before loading.
#include <simdjson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cli_support.hpp"
#include "test_support.hpp"
#include "two_lavapipes.hpp"

using namespace inferno::testing;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("inferno-devices-" + std::to_string(getpid()));
  fs::create_directories(dir);
  return dir;
}

struct RemoveTemp {
  ~RemoveTemp() {
    std::error_code ignored;
    fs::remove_all(temp_dir(), ignored);
  }
} remove_temp;

Run run(const std::string& program, const std::string& args, const std::string& env = "", const std::string& input = "") {
  return run_shell(env, program, args, input, temp_dir());
}

Run inferno_cli(const std::string& args, const std::string& env = "", const std::string& input = "") {
  return run(inferno_bin(), args, env, input);
}

// Two Vulkan devices from one lavapipe, for a child process: its VK_DRIVER_FILES setting.
std::string two_lavapipes() {
  const std::string files = two_lavapipe_driver_files(temp_dir());
  REQUIRE_MESSAGE(!files.empty(), kLavapipeIcd << " is missing (Mesa's lavapipe)");
  return "VK_DRIVER_FILES=" + files;
}

// The 70B checkpoint: real headers over sparse shards, made once.
fs::path deepseek_70b() {
  const fs::path dir = temp_dir() / "deepseek-r1-distill-llama-70b";
  if (fs::exists(dir / "config.json")) return dir;
  const char* maker = std::getenv("INFERNO_MAKE_CHECKPOINT");
  REQUIRE_MESSAGE(maker, "INFERNO_MAKE_CHECKPOINT is not set (meson sets it)");
  const Run r = run(maker, "--preset deepseek-r1-distill-llama-70b -o " + dir.string());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  return dir;
}

// The real model's numbers: 80 layers, hidden 8192, 64 heads of 128, 8 KV heads, intermediate 28672, vocab 128256,
// BF16, lm_head not tied.
constexpr uint64_t kHidden = 8192, kInter = 28672, kVocab = 128256, kLayers = 80, kKvDim = 8 * 128;
constexpr uint64_t kLayerParams = kHidden * kHidden * 2 + kHidden * kKvDim * 2 + kHidden * kInter * 3 + 2 * kHidden;
constexpr uint64_t kEmbedParams = kVocab * kHidden, kHeadParams = kVocab * kHidden + kHidden;
// K and V of one layer, f16, per token of context
constexpr uint64_t kKvPerToken = 2 * kKvDim * 2;

simdjson::dom::element parse(simdjson::dom::parser& p, const std::string& text) { return p.parse(text); }

// Every device of a plan holds its layers' bytes, their KV cache, the embedding on the first and the head on the last.
void check_plan_bytes(simdjson::dom::element plan, uint64_t ctx) {
  simdjson::dom::array devices = plan["devices"];
  uint64_t next_layer = 0, i = 0;
  for (simdjson::dom::element d : devices) {
    CAPTURE(i);
    const uint64_t first = uint64_t(d["first_layer"]), last = uint64_t(d["last_layer"]);
    CHECK(first == next_layer);
    next_layer = last;
    const bool embedding = bool(d["embedding"]), head = bool(d["lm_head"]);
    CHECK(embedding == (i == 0));
    CHECK(head == (i + 1 == devices.size()));
    const uint64_t weights = 2 * ((last - first) * kLayerParams + (embedding ? kEmbedParams : 0) + (head ? kHeadParams : 0));
    CHECK(uint64_t(d["weight_bytes"]) == weights);
    CHECK(uint64_t(d["kv_cache_bytes"]) == (last - first) * kKvPerToken * ctx);
    CHECK(uint64_t(d["total_bytes"]) ==
          uint64_t(d["weight_bytes"]) + uint64_t(d["kv_cache_bytes"]) + uint64_t(d["activation_bytes"]));
    CHECK(bool(d["fits"]) == (uint64_t(d["total_bytes"]) <= uint64_t(d["available_bytes"])));
    ++i;
  }
  CHECK(next_layer == kLayers);
}

}  // namespace

TEST_CASE("the 70B checkpoint is real safetensors headers over sparse shards, with an index") {
  const fs::path dir = deepseek_70b();
  CHECK(fs::exists(dir / "model.safetensors.index.json"));
  uint64_t size = 0, on_disk = 0, shards = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") {
      struct stat st{};
      REQUIRE(stat(e.path().c_str(), &st) == 0);
      size += uint64_t(st.st_size);
      on_disk += uint64_t(st.st_blocks) * 512;
      ++shards;
    }
  CHECK(shards == 30);  // 5 GB each at most, as transformers shards
  CHECK(size > 2 * (kLayers * kLayerParams + kEmbedParams + kHeadParams));
  CHECK(on_disk < (64ull << 20));  // headers only: the weights are holes

  simdjson::dom::parser p;
  const Run r = inferno_cli("info --json --device-memory 80G,80G -m " + dir.string());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  simdjson::dom::element j = parse(p, r.out);
  CHECK(std::string_view(j["family"]) == "DeepSeek-R1-Distill-Llama");
  CHECK(uint64_t(j["layers"]) == 80);
  CHECK(uint64_t(j["hidden_size"]) == 8192);
  CHECK(uint64_t(j["intermediate_size"]) == 28672);
  CHECK(uint64_t(j["heads"]) == 64);
  CHECK(uint64_t(j["kv_heads"]) == 8);
  CHECK(uint64_t(j["vocab_size"]) == 128256);
  CHECK(uint64_t(j["params"]) == kLayers * kLayerParams + kEmbedParams + kHeadParams);
  CHECK(uint64_t(j["weight_bytes"]) == 2 * (kLayers * kLayerParams + kEmbedParams + kHeadParams));
  for (simdjson::dom::element b : simdjson::dom::array(j["layer_bytes"])) CHECK(uint64_t(b) == 2 * kLayerParams);
  CHECK(uint64_t(j["embedding_bytes"]) == 2 * kEmbedParams);
  CHECK(uint64_t(j["head_bytes"]) == 2 * kHeadParams);
}

TEST_CASE("the 70B plan on 2 x 80 GB and 4 x 48 GB, printed without loading") {
  const fs::path dir = deepseek_70b();
  simdjson::dom::parser p;
  {
    const Run r = inferno_cli("info --json --device-memory 80G,80G -m " + dir.string());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    simdjson::dom::element plan = parse(p, r.out)["plan"];
    CHECK(bool(plan["fits"]));
    CHECK(uint64_t(plan["ctx"]) == 4096);
    CHECK(std::string_view(plan["kv_dtype"]) == "f16");
    CHECK(uint64_t(plan["transfer_bytes_per_token"]) == kHidden * 4);
    simdjson::dom::array devices = plan["devices"];
    REQUIRE(devices.size() == 2);
    CHECK(uint64_t(devices.at(0)["layers"]) == 40);
    CHECK(uint64_t(devices.at(1)["layers"]) == 40);
    CHECK(uint64_t(devices.at(0)["available_bytes"]) == 80ull << 30);
    check_plan_bytes(plan, 4096);
    CHECK(simdjson::dom::array(plan["suggestions"]).size() == 0);
  }
  {
    const Run r = inferno_cli("info --json --device-memory 48G,48G,48G,48G -m " + dir.string());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    simdjson::dom::element plan = parse(p, r.out)["plan"];
    CHECK(bool(plan["fits"]));
    REQUIRE(simdjson::dom::array(plan["devices"]).size() == 4);
    check_plan_bytes(plan, 4096);
    // the middle devices, without embedding or head, take at least as many layers as the ends
    CHECK(uint64_t(plan["devices"].at(1)["layers"]) >= uint64_t(plan["devices"].at(0)["layers"]));
  }
  {
    // Its full 131072-token context: 40 GiB of f16 KV more; 4 x 48 GB still holds it, 2 x 80 GB does not, and the
    // plan names what would fit there.
    const Run four = inferno_cli("info --json --ctx 131072 --device-memory 48G,48G,48G,48G -m " + dir.string());
    REQUIRE(four.status == 0);
    simdjson::dom::element plan4 = parse(p, four.out)["plan"];
    CHECK(bool(plan4["fits"]));
    check_plan_bytes(plan4, 131072);
    simdjson::dom::parser p2;
    const Run two = inferno_cli("info --json --ctx 131072 --device-memory 80G,80G -m " + dir.string());
    REQUIRE(two.status == 0);
    simdjson::dom::element plan2 = parse(p2, two.out)["plan"];
    CHECK(!bool(plan2["fits"]));
    check_plan_bytes(plan2, 131072);
    std::vector<std::string> suggestions;
    for (simdjson::dom::element s : simdjson::dom::array(plan2["suggestions"])) suggestions.emplace_back(std::string_view(s));
    REQUIRE(suggestions.size() == 3);
    CHECK(suggestions[1] == "--kv-dtype q8");  // 56 % of the f16 cache's bytes
    CHECK(suggestions[2] == "--quantize int8");
    // the largest context that fits: what 160 GiB leaves for KV after weights and activations
    REQUIRE(suggestions[0].rfind("--ctx ", 0) == 0);
    const uint64_t ctx = std::stoull(suggestions[0].substr(6));
    CHECK(ctx > 40000);
    CHECK(ctx < 131072);
    simdjson::dom::parser p3, p4;
    const Run at = inferno_cli("info --json --ctx " + std::to_string(ctx) + " --device-memory 80G,80G -m " + dir.string());
    CHECK(bool(parse(p3, at.out)["plan"]["fits"]));
    const Run above = inferno_cli("info --json --ctx " + std::to_string(ctx + 1) + " --device-memory 80G,80G -m " + dir.string());
    CHECK(!bool(parse(p4, above.out)["plan"]["fits"]));
  }
  {
    // An explicit split that overfills one device: the plan says which, and that the auto split would fit.
    const Run r = inferno_cli("info --split 70,10 --device-memory 80G,80G -m " + dir.string());
    REQUIRE(r.status == 0);
    CHECK(r.out.find("plan for ctx 4096, batch 1, KV f16: split 70,10 over 2 device(s)") != std::string::npos);
    CHECK(r.out.find("  device 0 device of 80.00 GiB: layers 0-69 (70) + embedding: weights 113.52 GiB") != std::string::npos);
    CHECK(r.out.find("-> does NOT fit\n  device 1 device of 80.00 GiB: layers 70-79 (10) + final norm, lm_head") != std::string::npos);
    CHECK(r.out.find("hidden state across each of 1 boundaries: 32768 bytes per token (f32)") != std::string::npos);
    CHECK(r.out.find("plan: does NOT fit; would fit: --split 40,40") != std::string::npos);
  }
}

TEST_CASE("a model that does not fit is refused before its weights are read: exit 1 naming device and bytes") {
  const fs::path dir = deepseek_70b();
  // 141 GB of weights against one lavapipe device (the machine's memory): refused at once.
  const Run r = inferno_cli("generate --quiet -m " + dir.string() + " --ids 1,2 -n 1");
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("does not fit on device 0 (") != std::string::npos);
  CHECK(r.err.find("it needs 1411") != std::string::npos);  // 141.1 GB of weights + activations
  CHECK(r.err.find(" GiB) are available") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  // Every command that loads a model checks first.
  // (perplexity reads its text first, and only a regular file: a small one beside the checkpoint.)
  const fs::path text = temp_dir() / "plan-perplexity.txt";
  std::ofstream(text) << "The jury said that the election was conducted.\n";
  for (const std::string& cmd : {std::string("logits --ids 1 --out /dev/null"), "perplexity -f " + text.string(),
                                std::string("bench -p 1 -n 2")}) {
    CAPTURE(cmd);
    const Run c = inferno_cli(cmd + " --quiet -m " + dir.string());
    CHECK(c.status == 1);
    CHECK(c.err.find("does not fit on device 0") != std::string::npos);
  }
  // On two devices the plan is the same arithmetic, named per device.
  const Run two = inferno_cli("info -m " + dir.string() + " --devices 0,1", two_lavapipes());
  REQUIRE_MESSAGE(two.status == 0, two.err);
  CHECK(two.out.find("split 40,40 (auto) over 2 device(s)") != std::string::npos);
  CHECK(two.out.find("plan: does NOT fit") != std::string::npos);
  const Run gen2 = inferno_cli("generate --quiet -m " + dir.string() + " --devices 0,1 --ids 1 -n 1", two_lavapipes());
  CHECK(gen2.status == 1);
  CHECK(gen2.err.find("does not fit on device 0 (") != std::string::npos);
}

TEST_CASE("the plan of a fixture: bytes by layer add up; bad --devices, --split, --device-memory") {
  simdjson::dom::parser p;
  const std::string model = data_path("hf-llama/mha-sharded-bf16").string();
  const Run r = inferno_cli("info --json --split 1,2 --devices 0,1 -m " + model, two_lavapipes());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  simdjson::dom::element j = parse(p, r.out);
  uint64_t sum = uint64_t(j["embedding_bytes"]) + uint64_t(j["head_bytes"]);
  for (simdjson::dom::element b : simdjson::dom::array(j["layer_bytes"])) sum += uint64_t(b);
  CHECK(sum == uint64_t(j["weight_bytes"]));
  simdjson::dom::array devices = j["plan"]["devices"];
  REQUIRE(devices.size() == 2);
  CHECK(uint64_t(devices.at(0)["layers"]) == 1);
  CHECK(uint64_t(devices.at(1)["layers"]) == 2);
  CHECK(bool(j["plan"]["fits"]));

  CHECK(inferno_cli("info --split 1,2 -m " + model).status == 2);          // two counts, one device
  CHECK(inferno_cli("info --split 1,x --devices 0,1 -m " + model, two_lavapipes()).status == 2);
  CHECK(inferno_cli("info --device-memory 80Q -m " + model).status == 2);
  const Run sum_wrong = inferno_cli("info --split 1,1 --devices 0,1 -m " + model, two_lavapipes());
  CHECK(sum_wrong.status == 1);
  CHECK(sum_wrong.err.find("--split 1,1 places 2 layers; the model has 3") != std::string::npos);
  const Run missing = inferno_cli("info --devices 0,7 -m " + model, two_lavapipes());
  CHECK(missing.status == 1);
  CHECK(missing.err.find("--devices: device 7 does not exist") != std::string::npos);
  CHECK(inferno_cli("generate --device 0 --devices 0,1 --ids 1 -n 1 -m " + model, two_lavapipes()).status == 2);
}

// Every command that runs a model, split over two devices with --devices 0,1 --split: the same output as on one
// device, byte for byte (the same kernels on the same driver; the hidden state crosses as f32).
TEST_CASE("generate, logits, perplexity and chat split over two devices print what one device prints") {
  const std::string brown = (root_dir() / "models/brown-8m-bf16").string();  // 6 layers
  const std::string gen = "generate --quiet -m " + brown + " -p 'The jury said' -n 12 --ignore-eos --greedy --kv-dtype f32";
  const Run one = inferno_cli(gen + " --print-ids");
  REQUIRE_MESSAGE(one.status == 0, one.err);
  for (const char* split : {"1,5", "0,6", "3,3", "6,0", "auto"}) {
    CAPTURE(split);
    const Run two = inferno_cli(gen + " --print-ids --devices 0,1 --split " + split, two_lavapipes());
    REQUIRE_MESSAGE(two.status == 0, two.err);
    CHECK(two.out == one.out);
  }
  const Run text_one = inferno_cli(gen), text_two = inferno_cli(gen + " --devices 0,1 --split 1,5", two_lavapipes());
  REQUIRE_MESSAGE(text_two.status == 0, text_two.err);
  CHECK(text_two.out == text_one.out);

  const fs::path a = temp_dir() / "logits-one.safetensors", b = temp_dir() / "logits-two.safetensors";
  const std::string logits = "logits --quiet -m " + brown + " --ids 1,450,432,8,99,1000";
  REQUIRE(inferno_cli(logits + " --out " + a.string()).status == 0);
  const Run l2 = inferno_cli(logits + " --devices 0,1 --split 2,4 --out " + b.string(), two_lavapipes());
  REQUIRE_MESSAGE(l2.status == 0, l2.err);
  CHECK(read_text(a) == read_text(b));

  const fs::path text = temp_dir() / "split-perplexity.txt";
  std::ofstream(text) << "The jury said that the election was conducted. It was a fine day in the county, and the "
                         "city hall was full of people who had come to hear the mayor speak about the new roads.\n";
  const std::string ppl = "perplexity --quiet -m " + brown + " -f " + text.string() + " --window 16 --stride 8";
  const Run p1 = inferno_cli(ppl), p2 = inferno_cli(ppl + " --devices 0,1 --split 4,2", two_lavapipes());
  REQUIRE_MESSAGE(p2.status == 0, p2.err);
  CHECK(p2.out == p1.out);
  CHECK(p1.out.find("perplexity: ") != std::string::npos);

  const fs::path chat_model = llama3_text_checkpoint(temp_dir() / "llama3-text");
  const std::string chat = "chat --quiet --greedy -n 8 -m " + chat_model.string();
  const std::string turns = "Hello there\nAnd again\n";  // two turns: the second reuses the first's cache
  const Run c1 = inferno_cli(chat, "", turns), c2 = inferno_cli(chat + " --devices 0,1 --split 1,1", two_lavapipes(), turns);
  REQUIRE_MESSAGE(c1.status == 0, c1.err);
  REQUIRE_MESSAGE(c2.status == 0, c2.err);
  CHECK(c2.out == c1.out);
}

TEST_CASE("bench over two devices reports each device's kernel time and the transfer per token") {
  simdjson::dom::parser p;
  const std::string brown = (root_dir() / "models/brown-8m-bf16").string();
  const Run r = inferno_cli("bench --json --quiet -m " + brown + " -p 8 -n 4 --repeats 1 --devices 0,1 --split 2,4",
                            two_lavapipes());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  simdjson::dom::element j = parse(p, r.out);
  simdjson::dom::array devices = j["devices"];
  REQUIRE(devices.size() == 2);
  CHECK(uint64_t(devices.at(0)["index"]) == 0);
  CHECK(uint64_t(devices.at(0)["last_layer"]) == 2);
  CHECK(uint64_t(devices.at(1)["first_layer"]) == 2);
  CHECK(uint64_t(devices.at(1)["last_layer"]) == 6);
  for (simdjson::dom::element d : devices) {
    CHECK(double(d["decode_kernel_ms"]) > 0);
    CHECK(double(d["decode_transfer_ms"]) >= 0);
    CHECK(double(d["decode_wall_ms"]) > 0);
  }
  CHECK(uint64_t(j["transfer"]["boundaries"]) == 1);
  CHECK(uint64_t(j["transfer"]["bytes_per_token_per_boundary"]) == 192 * 4);  // hidden 192, f32
  CHECK(double(j["transfer"]["ms_per_token"]) > 0);
  CHECK(double(j["decode"]["tok_per_s"]) > 0);
  // Two lavapipes import one host allocation and the host relays their timeline values: a host wait per device in a
  // decode step, no host copy; INFERNO_STAGE_LINK=host copies the row out and in (768 bytes each way).
  simdjson::dom::array links = j["transfer"]["links"];
  REQUIRE(links.size() == 1);
  CHECK(std::string(std::string_view(links.at(0))) == "shared host memory, timeline semaphores, host relay");
  CHECK(uint64_t(j["transfer"]["decode_host_waits"]) == 2);
  CHECK(uint64_t(j["transfer"]["decode_host_copy_bytes"]) == 0);
  const Run host = inferno_cli("bench --json --quiet -m " + brown + " -p 8 -n 4 --repeats 1 --devices 0,1 --split 2,4",
                               two_lavapipes() + " INFERNO_STAGE_LINK=host");
  REQUIRE_MESSAGE(host.status == 0, host.err);
  simdjson::dom::element jh = parse(p, host.out);
  CHECK(std::string(std::string_view(simdjson::dom::array(jh["transfer"]["links"]).at(0))) ==
        "host copy, host wait per stage");
  CHECK(uint64_t(jh["transfer"]["decode_host_waits"]) == 2);
  CHECK(uint64_t(jh["transfer"]["decode_host_copy_bytes"]) == 2 * 192 * 4);
  // One device: no boundary.
  const Run one = inferno_cli("bench --json --quiet -m " + brown + " -p 8 -n 4 --repeats 1");
  REQUIRE_MESSAGE(one.status == 0, one.err);
  simdjson::dom::element j1 = parse(p, one.out);
  CHECK(simdjson::dom::array(j1["devices"]).size() == 1);
  CHECK(uint64_t(j1["transfer"]["boundaries"]) == 0);
}

TEST_CASE("a device that runs out of memory while a split model loads is named, exit 1") {
  const std::string brown = (root_dir() / "models/brown-8m-bf16").string();
  const Run r = inferno_cli("generate --quiet -m " + brown + " --ids 1,2 -n 2 --devices 0,1 --split 3,3",
                            two_lavapipes() + " INFERNO_DEVICE_MEMORY_LIMIT=1:100000");
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.err.find("out of device memory on device 1 (") != std::string::npos, r.err);
  CHECK(r.out.empty());
}
