// Files that are not what they claim: a FIFO or a device where a config, weights or text are expected, a file
// truncated while it is mapped, keys written twice, names megabytes long, and a write target that is not a regular
// file. Each must be refused with one error naming the file (and the field or tensor), never hang, crash or guess.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "io/checkpoint.hpp"
#include "io/gguf.hpp"
#include "io/hf_config.hpp"
#include "io/io_test_files.hpp"
#include "io/mapped_file.hpp"
#include "io/model_path.hpp"
#include "io/regular_file.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"

using namespace inferno;
using namespace inferno::testing;

namespace {

void make_fifo(const std::filesystem::path& path) { REQUIRE(::mkfifo(path.c_str(), 0600) == 0); }

// Three F32 tensors of 4096 values each: 16 KB apiece, so that truncating the file drops whole pages of data.
std::vector<std::byte> three_tensor_file() {
  std::string header = "{";
  for (int i = 0; i < 3; ++i)
    header += std::string(i ? "," : "") + "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[4096]," +
              "\"data_offsets\":[" + std::to_string(i * 16384) + "," + std::to_string((i + 1) * 16384) + "]}";
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  return safetensors_bytes(header, 3 * 16384);
}

}  // namespace

TEST_CASE("a FIFO or a directory where a file is read is refused as not a regular file, without blocking") {
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  make_fifo(dir / "config.json");
  check_error_mentions([&] { io::load_llama_config(dir.path()); },
                       {(dir / "config.json").string(), "not a regular file", "FIFO"});
  make_fifo(dir / "generation_config.json");
  check_error_mentions([&] { io::load_generation_config(dir.path()); },
                       {(dir / "generation_config.json").string(), "not a regular file"});
  make_fifo(dir / "model.safetensors");
  check_error_mentions([&] { io::SafetensorsFile file(dir / "model.safetensors"); },
                       {(dir / "model.safetensors").string(), "not a regular file"});
  make_fifo(dir / "model.gguf");
  check_error_mentions([&] { io::GgufFile file(dir / "model.gguf"); }, {"model.gguf", "not a regular file"});
  make_fifo(dir / "tokenizer_config.json");
  check_error_mentions([&] { io::read_regular_file(dir / "tokenizer_config.json"); },
                       {"tokenizer_config.json", "not a regular file", "FIFO"});
  std::filesystem::create_directory(dir / "tokenizer.json");
  check_error_mentions([&] { io::read_regular_file(dir / "tokenizer.json"); },
                       {"tokenizer.json", "not a regular file", "directory"});
  check_error_mentions([&] { io::read_regular_file("/dev/zero"); },
                       {"/dev/zero", "not a regular file", "character device"});
  check_error_mentions([&] { io::resolve_model_path(dir / "model.gguf"); }, {"model.gguf", "not a regular file"});
  // A FIFO shard named by an index: refused when the checkpoint opens it.
  std::filesystem::remove(dir / "model.safetensors");
  write_file(dir / "model.safetensors.index.json", std::string(R"({"weight_map": {"a": "shard.safetensors"}})"));
  make_fifo(dir / "shard.safetensors");
  check_error_mentions([&] { io::Checkpoint checkpoint(dir.path()); }, {"shard.safetensors", "not a regular file"});
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("read_regular_file reads a whole file and refuses one larger than its bound, naming it") {
  TempDir dir;
  write_file(dir / "text.txt", std::string("hello, world"));
  CHECK(io::read_regular_file(dir / "text.txt") == "hello, world");
  CHECK(io::read_regular_file(dir / "text.txt", 12) == "hello, world");
  check_error_mentions([&] { io::read_regular_file(dir / "text.txt", 11); }, {"text.txt", "12 bytes", "11 bytes"});
  check_error_mentions([&] { io::read_regular_file(dir / "absent.txt"); }, {"absent.txt", "cannot open"});
}

TEST_CASE("a mapped file truncated under its reader: the read completes and check_whole names the file") {
  TempDir dir;
  write_file(dir / "model.safetensors", three_tensor_file());
  io::MappedFile mapped(dir / "model.safetensors");
  CHECK_NOTHROW(mapped.check_whole());
  const std::byte first = mapped.bytes()[0];
  REQUIRE(::truncate((dir / "model.safetensors").c_str(), 0) == 0);
  // Without the SIGBUS guard this read kills the process: every page of the mapping now lies past the file's end.
  size_t nonzero = 0;
  for (size_t i = 0; i < mapped.size(); i += 512) nonzero += mapped.bytes()[i] != std::byte{0};
  (void)first;
  CHECK(nonzero <= 1);  // pages already copied-on-write may survive; the rest read as zeros
  check_error_mentions([&] { mapped.check_whole(); }, {(dir / "model.safetensors").string(), "truncated"});
}

TEST_CASE("a safetensors file that shrinks between two tensors is refused naming it, before and after the copy") {
  TempDir dir;
  write_file(dir / "model.safetensors", three_tensor_file());
  const io::SafetensorsFile file(dir / "model.safetensors");
  CHECK(file.read_f32("t0").size() == 4096);
  // Cut in the middle of t1: the data() of t2 refuses from fstat; t1's copy reads zeros past the end and the check
  // after it names the file.
  const uint64_t cut = file.at("t1").data_offset + 8192;
  REQUIRE(::truncate((dir / "model.safetensors").c_str(), off_t(cut)) == 0);
  check_error_mentions([&] { file.data(file.at("t2")); }, {(dir / "model.safetensors").string(), "shrank"});
  check_error_mentions([&] { file.read_f32("t1"); }, {(dir / "model.safetensors").string()});
}

TEST_CASE("names from a file are cut to 200 bytes in messages") {
  CHECK(io::quoted_name("abc") == "'abc'");
  const std::string huge(5'000'000, 'x');
  const std::string shown = io::quoted_name(huge);
  CHECK(shown.size() < 260);
  CHECK(shown.find("…") != std::string::npos);
  CHECK(shown.find("5000000 bytes") != std::string::npos);
  // Never inside a UTF-8 character: 'é' is two bytes, so 199 ASCII bytes and then 'é' cut at 200 drop it whole.
  const std::string accented = std::string(199, 'a') + "é" + std::string(10, 'b');
  const std::string cut = "'" + std::string(199, 'a') + "…";
  CHECK(io::quoted_name(accented).substr(0, cut.size()) == cut);
  // A safetensors header with a 5 MB tensor name of an unknown dtype: the error stays short.
  const std::string header = "{\"" + huge + "\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  const std::string message =
      error_message([&] { io::SafetensorsFile::from_bytes(safetensors_bytes(header, 4), "big.safetensors"); });
  CHECK(message.size() < 400);
  CHECK(message.find("big.safetensors") != std::string::npos);
}

TEST_CASE("a key written twice takes its last value, as Python's json does") {
  const std::string config = R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
      "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 100, "rms_norm_eps": 0.5,
      "rms_norm_eps": 1e-5, "rope_scaling": {"rope_type": "linear", "factor": 2.0, "factor": 4.0}})";
  const io::LlamaConfig c = io::parse_llama_config(config, "config.json");
  CHECK(c.num_hidden_layers == 3);
  CHECK(c.rms_norm_eps == 1e-5);  // exact: the same decimal text parses to the same double
  CHECK(c.rope.factor == 4.0);
  const io::GenerationConfig g =
      io::parse_generation_config(R"({"temperature": 0.1, "top_k": 5, "temperature": 0.7})", "generation_config.json");
  CHECK(*g.temperature == 0.7);
  CHECK(*g.top_k == 5);
  // A later null makes the key absent, as it would in transformers.
  const io::LlamaConfig nulled = io::parse_llama_config(
      R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
          "vocab_size": 100, "rms_norm_eps": 0.25, "rms_norm_eps": null})", "config.json");
  CHECK(nulled.rms_norm_eps == 1e-6);
}

TEST_CASE("-m resolution: GGUF by its magic whatever the extension, a file in a checkpoint stands for its directory") {
  TempDir dir;
  write_file(dir / "MODEL.GGUF", std::string("GGUF\x03\0\0\0", 8));
  const io::ModelPath gguf = io::resolve_model_path(dir / "MODEL.GGUF");
  CHECK(gguf.gguf);
  CHECK(gguf.path == dir / "MODEL.GGUF");
  write_file(dir / "model.safetensors", three_tensor_file());
  const io::ModelPath file = io::resolve_model_path(dir / "model.safetensors");
  CHECK_FALSE(file.gguf);
  CHECK(file.path == dir.path());
  CHECK(io::resolve_model_path(dir.path()).path == dir.path());
  CHECK_FALSE(io::resolve_model_path(dir.path()).gguf);
  CHECK(io::resolve_model_path(dir / "absent").path == dir / "absent");
  // A .gguf name without the magic is still GGUF, for the reader to refuse by name.
  write_file(dir / "broken.Gguf", std::string("not gguf"));
  CHECK(io::resolve_model_path(dir / "broken.Gguf").gguf);
}

TEST_CASE("write_safetensors replaces only a regular file or nothing: a symlink, a FIFO, a directory are refused") {
  TempDir dir;
  const std::vector<float> values = {1, 2};
  const std::vector<io::TensorToWrite> tensors = {
      {"x", io::DType::F32, {2}, std::as_bytes(std::span<const float>(values)), {}}};
  write_file(dir / "old.safetensors", std::string("stale"));
  io::write_safetensors(dir / "old.safetensors", tensors);  // a regular file is replaced
  CHECK(io::SafetensorsFile(dir / "old.safetensors").read_f32("x") == values);

  write_file(dir / "target", std::string("keep me"));
  std::filesystem::create_symlink(dir / "target", dir / "link.safetensors");
  check_error_mentions([&] { io::write_safetensors(dir / "link.safetensors", tensors); },
                       {"link.safetensors", "symbolic link", "refusing"});
  CHECK(std::filesystem::is_symlink(dir / "link.safetensors"));
  CHECK(read_file(dir / "target") == as_bytes("keep me"));

  make_fifo(dir / "fifo.safetensors");
  check_error_mentions([&] { io::write_safetensors(dir / "fifo.safetensors", tensors); }, {"fifo.safetensors", "FIFO"});
  CHECK(std::filesystem::is_fifo(dir / "fifo.safetensors"));
  std::filesystem::create_directory(dir / "dir.safetensors");
  check_error_mentions([&] { io::write_safetensors(dir / "dir.safetensors", tensors); }, {"dir.safetensors", "directory"});
  CHECK_FALSE(std::filesystem::exists(dir / "fifo.safetensors.partial"));
}
