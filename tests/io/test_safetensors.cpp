// Reading safetensors: the fixtures, and a hand-made broken file for every way a header can be wrong.
#include <simdjson.h>

#include <cmath>

#include "io/dtype.hpp"
#include "io/mapped_file.hpp"
#include "io/safetensors.hpp"
#include "io_test_files.hpp"

using namespace inferno;
using namespace inferno::io;
using namespace inferno::testing;

TEST_CASE("dtype names and sizes round-trip through the safetensors spelling") {
  const DType all[] = {DType::F32, DType::F16,  DType::BF16, DType::F64,     DType::I8,     DType::U8,
                       DType::I16, DType::I32,  DType::I64,  DType::BOOL, DType::F8_E4M3, DType::F8_E5M2};
  for (DType dtype : all) {
    const auto parsed = parse_safetensors_dtype(dtype_name(dtype));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == dtype);
  }
  CHECK(dtype_size(DType::F32) == 4);
  CHECK(dtype_size(DType::BF16) == 2);
  CHECK(dtype_size(DType::I64) == 8);
  CHECK(dtype_size(DType::F8_E4M3) == 1);
  CHECK(dtype_name(DType::F8_E5M2) == "F8_E5M2");
  CHECK_FALSE(parse_safetensors_dtype("f32").has_value());  // the format's names are case-sensitive
  CHECK_FALSE(parse_safetensors_dtype("Q4_K").has_value());
}

TEST_CASE("MappedFile maps a file and reports empty, missing and non-regular files by path") {
  INFERNO_SEED_INFO();
  TempDir dir;
  Rng rng(1);
  std::vector<std::byte> content(size_t(rng.integer(1, 9000)));
  for (auto& b : content) b = std::byte(rng.integer(0, 255));
  write_file(dir / "data.bin", content);

  MappedFile file(dir / "data.bin");
  REQUIRE(file.size() == content.size());
  CHECK(std::memcmp(file.bytes().data(), content.data(), content.size()) == 0);
  CHECK(file.path() == dir / "data.bin");
  MappedFile moved = std::move(file);  // the mapping moves with it
  CHECK(moved.bytes().size() == content.size());
  CHECK(moved.bytes()[content.size() - 1] == content.back());

  write_file(dir / "empty.bin", std::vector<std::byte>{});
  check_error_mentions([&] { MappedFile f(dir / "empty.bin"); }, {(dir / "empty.bin").string(), "empty"});
  check_error_mentions([&] { MappedFile f(dir / "absent.bin"); }, {(dir / "absent.bin").string(), "cannot open"});
  check_error_mentions([&] { MappedFile f(dir.path()); }, {dir.path().string(), "not a regular file"});
}

TEST_CASE("reference.safetensors of every fixture: I64 ids equal reference.json, F32 logits have the vocabulary") {
  for (const std::string name : {"llama3-gqa-f32", "llama3-tied-bf16", "bias-headdim-f16", "mha-sharded-bf16",
                                 "mqa-yarn-f32", "w8a8-int8", "llama3-vocab-tied-bf16"}) {
    CAPTURE(name);
    const auto dir = data_path("hf-llama/" + name);
    // The w8a8 case stores the simulated-quantization logits in place of float32 ones.
    const std::string logits_key = name == "w8a8-int8" ? ".logits_w8a8_sim" : ".logits_f32";
    const SafetensorsFile reference(dir / "reference.safetensors");

    simdjson::dom::parser parser;
    simdjson::dom::element json = parser.load((dir / "reference.json").string());
    simdjson::dom::array prompts = json["prompts"].get_array();
    simdjson::dom::parser config_parser;
    const int64_t vocab = int64_t(config_parser.load((dir / "config.json").string())["vocab_size"]);

    size_t i = 0;
    for (simdjson::dom::element prompt : prompts) {
      const std::string key = "prompt" + std::to_string(i++);
      const TensorInfo& ids_info = reference.at(key + ".input_ids");
      CHECK(ids_info.dtype == DType::I64);
      const std::vector<int64_t> ids = reference.read_i64(key + ".input_ids");
      std::vector<int64_t> expected;
      for (int64_t id : prompt.get_array()) expected.push_back(id);
      CHECK(ids == expected);

      const TensorInfo& logits = reference.at(key + logits_key);
      CHECK(logits.dtype == DType::F32);
      REQUIRE(logits.shape.size() == 2);
      CHECK(logits.shape[1] == vocab);
      // Every position, except the 128K-vocabulary case that stores only the last one.
      CHECK((logits.shape[0] == int64_t(expected.size()) || logits.shape[0] == 1));
      const std::vector<float> values = reference.read_f32(key + logits_key);
      CHECK(values.size() == size_t(logits.elements()));
      CHECK(logits.bytes == values.size() * 4);
      bool all_finite = true, any_nonzero = false;
      for (float v : values) {
        all_finite = all_finite && std::isfinite(v);
        any_nonzero = any_nonzero || v != 0;
      }
      CHECK(all_finite);
      CHECK(any_nonzero);
    }
    CHECK(i >= 2);
    check_error_mentions([&] { reference.at("prompt9.nothing"); }, {"reference.safetensors", "prompt9.nothing"});
    check_error_mentions([&] { reference.read_i64("prompt0" + logits_key); }, {"prompt0" + logits_key, "F32"});
    check_error_mentions([&] { reference.read_f32("prompt0.input_ids"); }, {"prompt0.input_ids", "I64"});
  }
}

TEST_CASE("a hand-made file: offsets are absolute, tensors come in file order, metadata is kept") {
  // Header lists b before a, but a's data comes first in the file.
  const std::string header =
      R"({"__metadata__":{"format":"pt","note":"x"},)"
      R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},)"
      R"("a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
      R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[14,14]}})";
  std::vector<std::byte> bytes = safetensors_bytes(header, 14);
  const size_t data_start = 8 + header.size();
  const int32_t a_values[2] = {-7, 123456};
  const uint16_t b_values[3] = {0x3f80, 0xc000, 0x4049};  // bf16 for 1, -2, 3.140625
  std::memcpy(bytes.data() + data_start, a_values, 8);
  std::memcpy(bytes.data() + data_start + 8, b_values, 6);

  const SafetensorsFile file = SafetensorsFile::from_bytes(bytes, "made.safetensors");
  REQUIRE(file.tensors().size() == 3);
  CHECK(file.tensors()[0].name == "a");
  CHECK(file.tensors()[0].data_offset == data_start);
  CHECK(file.tensors()[1].name == "b");
  CHECK(file.tensors()[1].data_offset == data_start + 8);
  CHECK(file.at("empty").elements() == 0);
  CHECK(file.data(file.at("empty")).empty());
  CHECK(file.read_i64("a") == std::vector<int64_t>{-7, 123456});
  CHECK(file.read_f32("b") == std::vector<float>{1.0f, -2.0f, 3.140625f});
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}});
  CHECK(file.find("c") == nullptr);
}

// Every broken file must be refused with a message naming the file and, where there is one, the tensor.
TEST_CASE("broken safetensors files are refused with a message naming the file and the tensor") {
  TempDir dir;
  int counter = 0;
  // Writes the bytes to a file of their own, opens it, and checks the message.
  auto check_refused = [&](const std::vector<std::byte>& bytes, std::initializer_list<std::string> needles) {
    const auto path = dir / ("broken" + std::to_string(counter++) + ".safetensors");
    write_file(path, bytes);
    std::vector<std::string> all(needles);
    all.push_back(path.string());
    const std::string message = error_message([&] { SafetensorsFile file(path); });
    INFO("error message: " << message);
    for (const std::string& needle : all) CHECK_MESSAGE(message.find(needle) != std::string::npos, needle);
  };
  const std::string good_header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";

  SUBCASE("truncated: shorter than the header length field") { check_refused(as_bytes("abc"), {"too short"}); }
  SUBCASE("truncated: a real file cut in its data section") {
    auto bytes = read_file(data_path("hf-llama/llama3-gqa-f32/model.safetensors"));
    bytes.resize(bytes.size() / 2);
    check_refused(bytes, {"tensor '", "past the end of the data section"});
  }
  SUBCASE("truncated: a real file cut inside its header") {
    auto bytes = read_file(data_path("hf-llama/llama3-gqa-f32/model.safetensors"));
    bytes.resize(100);
    check_refused(bytes, {"header length", "past the end of the file"});
  }
  SUBCASE("header length past the end") {
    check_refused(safetensors_bytes(good_header.size() + 17, good_header, 16), {"past the end of the file"});
  }
  SUBCASE("header length absurd") {
    check_refused(safetensors_bytes(uint64_t(1) << 40, good_header, 16), {"absurd"});
    check_refused(safetensors_bytes(~uint64_t(0), good_header, 16), {"absurd"});
  }
  SUBCASE("malformed JSON") {
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})", 16),
                  {"malformed JSON"});
    check_refused(safetensors_bytes(std::string(R"({"w":)") + std::string(4000, '[') + "}", 0), {"malformed JSON"});
    check_refused(safetensors_bytes("{\"w\xff\":1}", 0), {"malformed JSON"});  // invalid UTF-8
  }
  SUBCASE("header JSON of the wrong shape") {
    check_refused(safetensors_bytes("[1,2,3]", 0), {"must be a JSON object"});
    check_refused(safetensors_bytes(R"({"w":[0,16]})", 16), {"tensor 'w'", "must be an object"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "'shape' must be a list"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "non-negative"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2.5],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "non-negative integers"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":7,"shape":[2,2],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "'dtype' must be a string"});
    check_refused(safetensors_bytes(R"({"w":{"shape":[2,2],"data_offsets":[0,16]}})", 16), {"tensor 'w'", "dtype"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2]}})", 16), {"tensor 'w'", "data_offsets"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]}})", 16),
                  {"tensor 'w'", "[begin, end]"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[-1,16]}})", 16),
                  {"tensor 'w'", "non-negative integers"});
    check_refused(safetensors_bytes(R"({"__metadata__":{"format":1}})", 0), {"__metadata__", "format"});
    check_refused(safetensors_bytes(R"({"__metadata__":[]})", 0), {"__metadata__", "must be an object"});
  }
  SUBCASE("unknown dtype") {
    check_refused(safetensors_bytes(R"({"w":{"dtype":"Q4_K","shape":[2,2],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "unknown dtype 'Q4_K'"});
  }
  SUBCASE("data range out of the file") {
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 15),
                  {"tensor 'w'", "past the end of the data section"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[],"data_offsets":[8,4]}})", 16),
                  {"tensor 'w'", "end before they begin"});
  }
  SUBCASE("shape times dtype size differs from the byte range") {
    check_refused(safetensors_bytes(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "needs 8 bytes", "hold 16"});
    check_refused(
        safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,16]}})", 16),
        {"tensor 'w'", "too large"});
    check_refused(safetensors_bytes(
                      R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}})", 16),
                  {"tensor 'w'", "too many elements"});
  }
  SUBCASE("overlapping tensors") {
    check_refused(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                    24),
                  {"overlaps", "'a'", "'b'"});
    // b lies inside a, a third tensor after both.
    check_refused(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                    R"("c":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},)"
                                    R"("b":{"dtype":"I8","shape":[2],"data_offsets":[4,6]}})",
                                    24),
                  {"overlaps", "'a'", "'b'"});
  }
  SUBCASE("offsets overflowing uint64") {
    // begin + size wraps around 2^64: must not pass as a small range.
    check_refused(safetensors_bytes(
                      R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551608,8]}})", 16),
                  {"tensor 'w'"});
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],)"
                                    R"("data_offsets":[18446744073709551600,18446744073709551615]}})",
                                    16),
                  {"tensor 'w'", "past the end of the data section"});
    // A number beyond 2^64 cannot be an offset at all.
    const std::string message = error_message([&] {
      SafetensorsFile::from_bytes(
          safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551616,0]}})", 16),
          "big.safetensors");
    });
    INFO("error message: " << message);
    CHECK(message.find("big.safetensors") != std::string::npos);
    MESSAGE(message);
  }
  SUBCASE("the same tensor twice") {
    check_refused(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    8),
                  {"tensor 'w'", "twice"});
  }
  SUBCASE("F8 dtypes are read; converting them is not the reader's business") {
    const auto bytes = safetensors_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]}})", 3);
    const SafetensorsFile file = SafetensorsFile::from_bytes(bytes, "f8.safetensors");
    CHECK(file.at("w").dtype == DType::F8_E4M3);
    CHECK(file.data(file.at("w")).size() == 3);
    check_error_mentions([&] { file.read_f32("w"); }, {"f8.safetensors", "tensor 'w'", "F8_E4M3"});
  }
}
