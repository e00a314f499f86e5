// Weight upload: chunking by rows within the device's binding limits, byte accounting, clear errors, no leaks.
#include <cstring>

#include "gpu_support.hpp"
#include "kernels/weights.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::WeightType;

namespace {

std::vector<std::byte> random_bytes(Rng& rng, size_t count) {
  std::vector<std::byte> v(count);
  for (auto& b : v) b = std::byte(rng.integer(0, 255));
  return v;
}

}  // namespace

TEST_CASE("dtype names and sizes") {
  CHECK(std::string(kernels::weight_type_name(WeightType::F32)) == "f32");
  CHECK(std::string(kernels::weight_type_name(WeightType::F16)) == "f16");
  CHECK(std::string(kernels::weight_type_name(WeightType::BF16)) == "bf16");
  CHECK(kernels::weight_type_bytes(WeightType::F32) == 4);
  CHECK(kernels::weight_type_bytes(WeightType::F16) == 2);
  CHECK(kernels::weight_type_bytes(WeightType::BF16) == 2);
}

TEST_CASE("upload_matrix splits by rows, keeps every byte, and frees its memory") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(1);
  const uint64_t memory_before = d.allocated_bytes(), allocations_before = d.live_allocations();
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16}) {
    // At least three full chunks and a ragged one; rows of odd length.
    const uint32_t per_chunk = uint32_t(rng.integer(2, 50));
    const uint32_t rows = per_chunk * uint32_t(rng.integer(3, 5)) + uint32_t(rng.integer(1, int(per_chunk) - 1));
    const uint32_t cols = uint32_t(rng.integer(1, 99)) | 1u;
    const uint64_t row_bytes = uint64_t(cols) * kernels::weight_type_bytes(type);
    const auto data = random_bytes(rng, rows * row_bytes);
    CAPTURE(rows);
    CAPTURE(cols);

    // Device limits only: one chunk.
    {
      const auto whole = kernels::upload_matrix(d, "whole", type, rows, cols, data);
      CHECK(whole.chunks.size() == 1);
      CHECK(whole.bytes() == data.size());
      CHECK(whole.rows == rows);
      CHECK(whole.cols == cols);
      CHECK(whole.type == type);
    }

    // A small chunk limit: at least three chunks, the last ragged, rows in order, bytes unchanged.
    uint64_t told = 0;
    const auto m = kernels::upload_matrix(d, "blk.3.ffn_up", type, rows, cols, data, per_chunk * row_bytes + 16,
                                          [&](uint64_t b) { told += b; });
    CHECK(m.name == "blk.3.ffn_up");
    CHECK(m.bytes() == uint64_t(rows) * cols * kernels::weight_type_bytes(type));
    CHECK(told == m.bytes());
    REQUIRE(m.chunks.size() >= 3);
    CHECK(m.chunks.back().rows < per_chunk);
    uint32_t next_row = 0;
    for (const auto& c : m.chunks) {
      CHECK(c.first_row == next_row);
      CHECK(c.rows <= per_chunk);
      CHECK(c.buffer.size() <= d.caps().max_storage_buffer_range);
      const uint64_t bytes = uint64_t(c.rows) * row_bytes;
      CHECK(c.buffer.bytes() == bytes);
      const auto back = read_back<std::byte>(c.buffer, bytes);
      CHECK(std::memcmp(back.data(), data.data() + uint64_t(c.first_row) * row_bytes, bytes) == 0);
      next_row += c.rows;
    }
    CHECK(next_row == rows);
    CHECK(d.allocated_bytes() > memory_before);
  }
  CHECK(d.allocated_bytes() == memory_before);
  CHECK(d.live_allocations() == allocations_before);
}

TEST_CASE("a chunk never exceeds the device's binding range or allocation size") {
  vk::Device& d = test_device();
  // Asking for more than the device allows gives the device's limit.
  const uint64_t limit = std::min(d.caps().max_storage_buffer_range, d.caps().max_memory_allocation_size);
  Rng rng(2);
  const uint32_t cols = 4097;
  const uint32_t rows = 3;
  const auto data = random_bytes(rng, uint64_t(rows) * cols * 2);
  const auto m = kernels::upload_matrix(d, "small", WeightType::BF16, rows, cols, data, limit * 4);
  CHECK(m.chunks.size() == 1);
  for (const auto& c : m.chunks) CHECK(c.buffer.size() <= limit);
}

TEST_CASE("upload errors name the tensor") {
  vk::Device& d = test_device();
  const uint64_t allocations_before = d.live_allocations();
  Rng rng(3);
  const auto data = random_bytes(rng, 100);
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "tok_embeddings", WeightType::F16, 10, 6, data),
                       doctest::Contains("tok_embeddings"), Error);  // 120 bytes needed
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "zero", WeightType::F32, 0, 25, {}), doctest::Contains("zero"), Error);
  // A row that cannot fit one chunk.
  CHECK_THROWS_WITH_AS(kernels::upload_matrix(d, "wide", WeightType::F32, 1, 25, data, 64), doctest::Contains("wide"),
                       Error);
  CHECK_THROWS_WITH_AS(kernels::upload_vector(d, "norm.weight", WeightType::BF16, 49, data),
                       doctest::Contains("norm.weight"), Error);
  CHECK(d.live_allocations() == allocations_before);  // nothing half-made is left behind
}

TEST_CASE("upload_vector keeps its dtype and bytes") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(4);
  const uint64_t before = d.allocated_bytes();
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16}) {
    const uint32_t size = uint32_t(rng.integer(1, 300));
    const auto data = random_bytes(rng, size * kernels::weight_type_bytes(type));
    const auto v = kernels::upload_vector(d, "bias", type, size, data);
    CHECK(v.type == type);
    CHECK(v.size == size);
    CHECK(v.buffer.bytes() == data.size());
    CHECK(read_back<std::byte>(v.buffer, data.size()) == data);
  }
  CHECK(d.allocated_bytes() == before);
}

TEST_CASE("binding windows start aligned and cover what was asked") {
  vk::Device& d = test_device();
  const uint64_t align = d.caps().min_storage_offset_alignment;
  vk::Buffer b(d, 1000, vk::MemoryKind::Device, "window");
  Rng rng(5);
  for (int i = 0; i < 200; ++i) {
    const uint32_t element = rng.integer(0, 1) ? 4 : 2;
    const uint64_t first = uint64_t(rng.integer(0, 990 / int(element) - 1)) * element;
    const uint64_t end = first + uint64_t(rng.integer(1, int((1000 - first) / element))) * element;
    const auto w = kernels::binding_window(d, b, first, end, element);
    CHECK(w.offset % align == 0);
    CHECK(w.offset <= first);
    CHECK(w.offset + uint64_t(w.first_element) * element == first);
    CHECK(w.offset + w.range >= end);
    CHECK(w.offset + w.range <= b.size());
  }
  // Rows that fit a binding: the window of that many rows, started anywhere, is within the limit.
  for (int i = 0; i < 200; ++i) {
    const uint64_t row = uint64_t(rng.integer(1, 50)) * 4, stride = row + uint64_t(rng.integer(0, 5)) * 4;
    const uint64_t limit = uint64_t(rng.integer(int(row + align + 4), 5000));
    const uint32_t rows = kernels::rows_per_binding(d, limit, stride, row, "act");
    CHECK(rows >= 1);
    CHECK((rows - 1) * stride + row + align + 4 <= limit);
    CHECK(rows * stride + row + align + 4 > limit);  // and no more
  }
  CHECK_THROWS_WITH_AS(kernels::rows_per_binding(d, 64, 400, 400, "hidden state"), doctest::Contains("hidden state"),
                       Error);
}
