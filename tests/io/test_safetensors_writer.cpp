// Writing safetensors: random tensors of every dtype round-trip, and re-writing Hugging Face's own files gives them
// back byte for byte (same header layout, padding and order).
#include <algorithm>
#include <cmath>

#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "io_test_files.hpp"
#include "util/half.hpp"

using namespace inferno;
using namespace inferno::io;
using namespace inferno::testing;

namespace {

std::vector<std::byte> float_bytes(const std::vector<float>& values, DType dtype) {
  std::vector<std::byte> bytes(values.size() * dtype_size(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &values[i], 4);
    } else {
      const uint16_t half = dtype == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
      std::memcpy(bytes.data() + 2 * i, &half, 2);
    }
  }
  return bytes;
}

}  // namespace

TEST_CASE("writer → reader round trip with random tensors of every dtype and odd shapes") {
  INFERNO_SEED_INFO();
  Rng rng(2);
  TempDir dir;
  const DType dtypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64,  DType::I8,      DType::U8,
                          DType::I16, DType::I32, DType::I64,  DType::BOOL, DType::F8_E4M3, DType::F8_E5M2};

  struct Made {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<std::byte> bytes;
  };
  std::vector<Made> made;
  const int count = rng.integer(12, 30);
  for (int t = 0; t < count; ++t) {
    Made m;
    // Names with characters JSON must escape, and non-ASCII UTF-8.
    m.name = "layer." + std::to_string(t) + (t % 5 == 0 ? ".\"quoted\"\\\n\tü" : ".weight");
    m.dtype = dtypes[size_t(rng.integer(0, int(std::size(dtypes)) - 1))];
    const int rank = rng.integer(0, 3);  // rank 0 is a scalar: one element
    int64_t elements = 1;
    for (int d = 0; d < rank; ++d) {
      m.shape.push_back(rng.integer(0, 6) == 0 ? 0 : rng.integer(1, 37));
      elements *= m.shape.back();
    }
    m.bytes.resize(size_t(elements) * dtype_size(m.dtype));
    for (auto& b : m.bytes) b = std::byte(rng.integer(0, 255));
    made.push_back(std::move(m));
  }
  std::vector<TensorToWrite> to_write;
  for (const Made& m : made) to_write.push_back({m.name, m.dtype, m.shape, m.bytes});
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"seed \"x\"", std::to_string(test_seed())}};

  const auto path = dir / "round.safetensors";
  write_safetensors(path, to_write, metadata);
  CHECK_FALSE(std::filesystem::exists(dir / "round.safetensors.partial"));

  const SafetensorsFile file(path);
  CHECK(file.metadata() == metadata);
  REQUIRE(file.tensors().size() == made.size());
  const auto raw = read_file(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, raw.data(), 8);
  CHECK(header_length % 8 == 0);  // the data section starts 8-byte aligned, as HF's writer leaves it
  uint64_t expected_offset = 8 + header_length;
  for (const Made& m : made) {
    CAPTURE(m.name);
    const TensorInfo& info = file.at(m.name);
    CHECK(info.dtype == m.dtype);
    CHECK(info.shape == m.shape);
    CHECK(info.data_offset == expected_offset);  // stored in the order given, back to back
    expected_offset += m.bytes.size();
    const auto data = file.data(info);
    REQUIRE(data.size() == m.bytes.size());
    CHECK(std::equal(data.begin(), data.end(), m.bytes.begin()));  // (memcmp may not take an empty tensor's null data)
  }
  CHECK(expected_offset == raw.size());
}

TEST_CASE("read_f32 converts F32, F16 and BF16 written from random floats") {
  INFERNO_SEED_INFO();
  Rng rng(3);
  TempDir dir;
  const size_t n = size_t(rng.integer(1, 999));
  const std::vector<float> values = rng.uniform_vector(n, -4.f, 4.f);
  const auto f32 = float_bytes(values, DType::F32), f16 = float_bytes(values, DType::F16),
             bf16 = float_bytes(values, DType::BF16);
  write_safetensors(dir / "floats.safetensors", {{"f32", DType::F32, {int64_t(n)}, f32},
                                                 {"f16", DType::F16, {int64_t(n)}, f16},
                                                 {"bf16", DType::BF16, {1, int64_t(n)}, bf16}});
  const SafetensorsFile file(dir / "floats.safetensors");
  const auto got_f32 = file.read_f32("f32"), got_f16 = file.read_f32("f16"), got_bf16 = file.read_f32("bf16");
  REQUIRE(got_f16.size() == n);
  REQUIRE(got_bf16.size() == n);
  for (size_t i = 0; i < n; ++i) {
    CAPTURE(values[i]);
    CHECK(got_f32[i] == values[i]);  // F32 is stored as is
    // Rounding to nearest: half an ulp, 2^-11 relative for F16 (11 significant bits) and 2^-8 for BF16 (8), plus
    // half F16's subnormal step (2^-25) for values near zero.
    CHECK(std::fabs(got_f16[i] - values[i]) <= std::ldexp(std::fabs(values[i]), -11) + std::ldexp(1.f, -25));
    CHECK(std::fabs(got_bf16[i] - values[i]) <= std::ldexp(std::fabs(values[i]), -8));
  }
}

TEST_CASE("re-writing Hugging Face's own files reproduces them byte for byte") {
  TempDir dir;
  for (const std::string name : {"llama3-gqa-f32/model.safetensors", "bias-headdim-f16/model.safetensors",
                           "w8a8-int8/model.safetensors", "mha-sharded-bf16/model-00002-of-00003.safetensors",
                           "mqa-yarn-f32/reference.safetensors", "sampling/processors.safetensors"}) {
    CAPTURE(name);
    const SafetensorsFile original(data_path("hf-llama/" + name));
    std::vector<TensorToWrite> tensors;
    for (const TensorInfo& t : original.tensors()) tensors.push_back({t.name, t.dtype, t.shape, original.data(t)});
    const auto copy = dir / "copy.safetensors";
    write_safetensors(copy, tensors, original.metadata());
    CHECK(read_file(copy) == read_file(original.path()));
  }
}

TEST_CASE("the writer refuses bad tensors, naming the file and the tensor") {
  TempDir dir;
  const auto path = dir / "out.safetensors";
  const std::vector<std::byte> twelve(12);
  check_error_mentions([&] { write_safetensors(path, {{"w", DType::F32, {2, 2}, twelve}}); },
                       {path.string(), "tensor 'w'", "12 bytes"});
  check_error_mentions([&] { write_safetensors(path, {{"w", DType::F32, {3, -1}, twelve}}); },
                       {path.string(), "tensor 'w'", "negative"});
  check_error_mentions(
      [&] { write_safetensors(path, {{"w", DType::F32, {3}, twelve}, {"w", DType::F32, {3}, twelve}}); },
      {path.string(), "tensor 'w'", "twice"});
  check_error_mentions([&] { write_safetensors(path, {{"__metadata__", DType::U8, {12}, twelve}}); },
                       {path.string(), "reserved"});
  check_error_mentions([&] { write_safetensors(path, {{"bad\xff", DType::U8, {12}, twelve}}); },
                       {path.string(), "UTF-8"});
  CHECK_FALSE(std::filesystem::exists(path));
  check_error_mentions([&] { write_safetensors(dir / "no/such/dir/x.safetensors", {}); }, {"no/such/dir"});
}
