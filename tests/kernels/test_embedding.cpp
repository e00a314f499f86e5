// record_embedding: rows gathered by id from a chunked table, bit-exact (every stored dtype converts to f32 exactly).
#include <cmath>
#include <cstring>
#include <limits>

#include "gpu_support.hpp"
#include "kernels/embedding.hpp"
#include "kernels/fill.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::WeightType;

namespace {

// A random table in `type`: its bytes and the f32 values they hold.
struct Table {
  std::vector<std::byte> bytes;
  std::vector<float> values;
};
Table make_table(Rng& rng, WeightType type, size_t count) {
  Table t;
  t.bytes.resize(count * kernels::weight_type_bytes(type));
  t.values.resize(count);
  for (size_t i = 0; i < count; ++i) {
    const float f = rng.normal(1.f);
    if (type == WeightType::F32) {
      std::memcpy(&t.bytes[i * 4], &f, 4);
      t.values[i] = f;
    } else {
      const uint16_t h = type == WeightType::F16 ? f32_to_f16(f) : f32_to_bf16(f);
      std::memcpy(&t.bytes[i * 2], &h, 2);
      t.values[i] = type == WeightType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return t;
}

}  // namespace

TEST_CASE("embedding gathers rows across chunk boundaries for every dtype") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  vk::Device& d = test_device();
  Rng rng(201);
  vk::Recorder rec(d);
  const uint64_t memory_before = d.allocated_bytes();
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16})
    for (uint32_t hidden : {1u, 3u, 17u, 130u, 257u})
      for (bool blocked : {false, true}) {
        const uint32_t per_chunk = uint32_t(rng.integer(2, 60));  // >= 3 chunks, the last ragged
        const uint32_t vocab = per_chunk * uint32_t(rng.integer(3, 5)) + uint32_t(rng.integer(1, int(per_chunk) - 1));
        const Table t = make_table(rng, type, size_t(vocab) * hidden);
        const auto table = kernels::upload_matrix(d, "embed", type, vocab, hidden, t.bytes,
                                                  uint64_t(per_chunk) * hidden * kernels::weight_type_bytes(type) + 16);
        REQUIRE(table.chunks.size() >= 4);
        REQUIRE(table.chunks.back().rows < per_chunk);
        // Random ids, plus the first and last row of every chunk, and two ids outside the vocabulary.
        std::vector<int32_t> ids;
        for (const auto& c : table.chunks) ids.insert(ids.end(), {int32_t(c.first_row), int32_t(c.first_row + c.rows - 1)});
        for (int i = rng.integer(1, 40); i > 0; --i) ids.push_back(rng.integer(0, int(vocab) - 1));
        ids.push_back(-1);
        ids.push_back(int32_t(vocab));
        for (size_t i = ids.size() - 1; i > 0; --i) std::swap(ids[i], ids[size_t(rng.integer(0, int(i)))]);
        const uint32_t m = uint32_t(ids.size());
        CAPTURE(kernels::weight_type_name(type));
        CAPTURE(hidden);
        CAPTURE(m);
        CAPTURE(blocked);

        const vk::Buffer id_buffer = device_buffer(ids, "ids");
        vk::Buffer out(d, uint64_t(m) * hidden * 4, vk::MemoryKind::Device, "out");
        rec.begin();
        kernels::record_fill(d, rec, out, 0, uint64_t(m) * hidden, std::numeric_limits<float>::quiet_NaN());
        // Blocked: a few rows of output at a time, at windows that start off the alignment (odd hidden sizes).
        const uint64_t max_binding = blocked ? uint64_t(rng.integer(1, 7)) * hidden * 4 + 20 : 0;
        kernels::record_embedding(d, rec, table, id_buffer, m, out, max_binding);
        rec.submit_and_wait();
        const auto got = read_back<float>(out, size_t(m) * hidden);
        size_t bad = 0;
        for (uint32_t i = 0; i < m; ++i)
          for (uint32_t c = 0; c < hidden; ++c) {
            const float g = got[size_t(i) * hidden + c];
            const bool ok = ids[i] < 0 || ids[i] >= int32_t(vocab)
                                ? std::isnan(g)  // out of range: the row is left as it was
                                : std::memcmp(&g, &t.values[size_t(ids[i]) * hidden + c], 4) == 0;  // exact
            if (!ok && bad++ < 5) FAIL_CHECK("out[" << i << "][" << c << "] = " << g << " for id " << ids[i]);
          }
        CHECK(bad == 0);
      }
  CHECK(d.allocated_bytes() == memory_before);
}

TEST_CASE("embedding refuses buffers too small, naming them") {
  vk::Device& d = test_device();
  Rng rng(202);
  const Table t = make_table(rng, WeightType::BF16, 10 * 4);
  const auto table = kernels::upload_matrix(d, "tok_embeddings", WeightType::BF16, 10, 4, t.bytes);
  vk::Buffer ids(d, 3 * 4, vk::MemoryKind::Device, "ids3"), out(d, 3 * 4 * 4, vk::MemoryKind::Device, "out3");
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH_AS(kernels::record_embedding(d, rec, table, ids, 4, out), doctest::Contains("ids3"), Error);
  vk::Buffer ids4(d, 4 * 4, vk::MemoryKind::Device, "ids4");
  CHECK_THROWS_WITH_AS(kernels::record_embedding(d, rec, table, ids4, 4, out), doctest::Contains("out3"), Error);
}
