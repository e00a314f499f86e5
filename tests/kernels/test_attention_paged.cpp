// The paged KV cache against the contiguous one: several sequences at different lengths share one pool whose blocks
// are handed out in a shuffled order; each step mixes decode rows of some sequences with prefill chunks of others in
// one dispatch. The rotated queries, the attention output and the cached K/V must equal, bit for bit, what the
// contiguous kernels (kv_write with RoPE, attention.comp's row kernel) give each sequence on its own cache: the paged
// kernels are the same arithmetic over another addressing, so any difference is an addressing error. The q8 cache
// included: its blocks are quantized by the same operations in both writes.
#include <algorithm>
#include <bit>
#include <numeric>

#include "kernels/attention_paged.hpp"
#include "ops_support.hpp"

using namespace inferno;
using namespace inferno::testing;
using kernels::KvType;

namespace {

struct PagedCase {
  uint32_t heads, kv_heads, head_dim, block_size, splits;
  std::vector<std::vector<uint32_t>> steps;  // new tokens of each sequence, step by step (0: not in this step)
};

void check_paged(const PagedCase& c, KvType type, Rng& rng) {
  vk::Device& d = test_device();
  const uint32_t seqs = uint32_t(c.steps[0].size());
  std::vector<uint32_t> total(seqs, 0);
  for (const auto& step : c.steps)
    for (uint32_t s = 0; s < seqs; ++s) total[s] += step[s];
  const uint32_t capacity = *std::max_element(total.begin(), total.end()) + 3;
  const uint32_t q_dim = c.heads * c.head_dim, kv_dim = c.kv_heads * c.head_dim, stride = q_dim + 2 * kv_dim;
  const uint32_t half = c.head_dim / 2, width = (capacity + c.block_size - 1) / c.block_size;
  std::vector<float> table(size_t(capacity) * half * 2);
  for (float& x : table) x = rng.uniform(-1.f, 1.f);
  const vk::Buffer table_b = device_buffer(table, "cos_sin");

  // The pool: more blocks than needed, handed out shuffled, so that neighbouring keys live far apart.
  const uint32_t blocks = seqs * width + 3;
  std::vector<int32_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng.engine);
  std::vector<int32_t> tables(size_t(seqs) * width);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = order[i];
  kernels::PagedShape ps{.heads = c.heads, .kv_heads = c.kv_heads, .head_dim = c.head_dim, .block_size = c.block_size,
                         .blocks = blocks, .table_width = width, .sequences = seqs,
                         .scale = float(1.0 / std::sqrt(double(c.head_dim))), .splits = c.splits,
                         .split_keys = (capacity + c.splits - 1) / c.splits};
  const uint64_t pool_bytes = kernels::paged_pool_bytes(ps, type);
  const vk::Buffer k_pool(d, pool_bytes, vk::MemoryKind::Device, "k pool"), v_pool(d, pool_bytes, vk::MemoryKind::Device, "v pool");
  const uint64_t cache_bytes = kernels::kv_bytes(type, uint64_t(c.kv_heads) * capacity * c.head_dim);
  std::vector<vk::Buffer> k_caches, v_caches;
  for (uint32_t s = 0; s < seqs; ++s) {
    k_caches.emplace_back(d, cache_bytes, vk::MemoryKind::Device, "k cache");
    v_caches.emplace_back(d, cache_bytes, vk::MemoryKind::Device, "v cache");
  }

  std::vector<uint32_t> past(seqs, 0);
  size_t bad = 0;
  for (const auto& step : c.steps) {
    uint32_t rows = 0;
    for (uint32_t n : step) rows += n;
    std::vector<float> qkv(size_t(rows) * stride);
    for (float& x : qkv) x = rng.uniform(-3.f, 3.f);
    std::vector<int32_t> paging(rows), positions(rows);
    for (uint32_t s = 0, r = 0; s < seqs; ++s)
      for (uint32_t t = 0; t < step[s]; ++t, ++r) {
        paging[r] = int32_t(s);
        positions[r] = int32_t(past[s] + t);
      }
    paging.insert(paging.end(), tables.begin(), tables.end());
    ps.rows = rows;
    ps.table_first = rows;
    const vk::Buffer qkv_paged = device_buffer(qkv, "qkv paged"), paging_b = device_buffer(paging, "paging"),
                     positions_b = device_buffer(positions, "positions");
    const vk::Buffer out_paged(d, uint64_t(rows) * q_dim * 4, vk::MemoryKind::Device, "out paged");
    const vk::Buffer partials(d, std::max<uint64_t>(kernels::paged_partial_floats(ps), 1) * 4, vk::MemoryKind::Device, "partials");
    vk::Recorder rec(d);
    rec.begin();
    poison(rec, out_paged, uint64_t(rows) * q_dim);
    const kernels::KvWriteRope rope{qkv_paged, stride, 0, positions_b, table_b, capacity};
    kernels::record_kv_write_paged(d, rec, type, ps, qkv_paged, stride, q_dim, qkv_paged, stride, q_dim + kv_dim,
                                   k_pool, v_pool, paging_b, positions_b, rope);
    kernels::record_attention_paged(d, rec, type, ps, qkv_paged, stride, k_pool, v_pool, paging_b, positions_b,
                                    out_paged, &partials);
    rec.submit_and_wait();
    const auto q_got = read_back<float>(qkv_paged, qkv.size()), out_got = read_back<float>(out_paged, size_t(rows) * q_dim);

    // Each sequence alone on its contiguous cache.
    for (uint32_t s = 0, r0 = 0; s < seqs; r0 += step[s], ++s) {
      if (step[s] == 0) continue;
      const uint32_t n = step[s];
      std::vector<float> own(qkv.begin() + long(size_t(r0) * stride), qkv.begin() + long(size_t(r0 + n) * stride));
      const std::vector<int32_t> own_positions(positions.begin() + r0, positions.begin() + r0 + n);
      const vk::Buffer qkv_b = device_buffer(own, "qkv"), pos_b = device_buffer(own_positions, "positions"),
                       starts = device_buffer(std::vector<int32_t>{0}, "kv_start");
      const vk::Buffer out(d, uint64_t(n) * q_dim * 4, vk::MemoryKind::Device, "out");
      kernels::AttentionShape cs{.batch = 1, .tokens = n, .past = past[s], .heads = c.heads, .kv_heads = c.kv_heads,
                                 .head_dim = c.head_dim, .capacity = capacity, .scale = ps.scale, .splits = c.splits,
                                 .kernel = kernels::AttentionShape::Kernel::Rows};
      const vk::Buffer own_partials(d, std::max<uint64_t>(kernels::attention_partial_floats(cs, n), 1) * 4,
                                    vk::MemoryKind::Device, "partials");
      rec.begin();
      const kernels::KvWriteRope own_rope{qkv_b, stride, 0, pos_b, table_b, capacity};
      kernels::record_kv_write(d, rec, type, cs, qkv_b, stride, qkv_b, stride, k_caches[s], v_caches[s], starts, q_dim,
                               q_dim + kv_dim, &own_rope);
      kernels::record_attention(d, rec, type, cs, qkv_b, stride, k_caches[s], v_caches[s], starts, out, &own_partials);
      rec.submit_and_wait();
      const auto q_want = read_back<float>(qkv_b, own.size()), out_want = read_back<float>(out, size_t(n) * q_dim);
      for (uint32_t t = 0; t < n; ++t) {
        for (uint32_t i = 0; i < q_dim; ++i) {
          const float got = q_got[size_t(r0 + t) * stride + i], want = q_want[size_t(t) * stride + i];
          if (std::bit_cast<uint32_t>(got) != std::bit_cast<uint32_t>(want) && bad++ < 3)
            FAIL_CHECK("sequence " << s << " token " << t << " rotated q[" << i << "] " << got << " vs " << want);
          const float og = out_got[size_t(r0 + t) * q_dim + i], ow = out_want[size_t(t) * q_dim + i];
          if (std::bit_cast<uint32_t>(og) != std::bit_cast<uint32_t>(ow) && bad++ < 3)
            FAIL_CHECK("sequence " << s << " token " << t << " (position " << past[s] + t << ") out[" << i << "] " << og
                                   << ", the contiguous cache gives " << ow);
        }
      }
      past[s] += n;
    }
  }
  // The cached keys and values themselves, element by element through the block tables.
  const uint64_t head_bytes = kernels::kv_bytes(type, c.head_dim);  // one key's head (q8: whole blocks)
  const auto k_pool_bytes = read_back<uint8_t>(k_pool, pool_bytes), v_pool_bytes = read_back<uint8_t>(v_pool, pool_bytes);
  for (uint32_t s = 0; s < seqs; ++s) {
    const auto kc = read_back<uint8_t>(k_caches[s], cache_bytes), vc = read_back<uint8_t>(v_caches[s], cache_bytes);
    for (uint32_t h = 0; h < c.kv_heads; ++h)
      for (uint32_t j = 0; j < past[s]; ++j) {
        const uint64_t block = uint64_t(tables[size_t(s) * width + j / c.block_size]);
        const uint64_t paged = ((block * c.kv_heads + h) * c.block_size + j % c.block_size) * head_bytes;
        const uint64_t contiguous = (uint64_t(h) * capacity + j) * head_bytes;
        if ((std::memcmp(&k_pool_bytes[paged], &kc[contiguous], head_bytes) != 0 ||
             std::memcmp(&v_pool_bytes[paged], &vc[contiguous], head_bytes) != 0) && bad++ < 3)
          FAIL_CHECK("sequence " << s << " kv head " << h << " key " << j << " differs between the pool and the cache");
      }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("paged attention equals the contiguous cache bit for bit: mixed decode and prefill rows, shuffled blocks") {
  INFERNO_SEED_INFO();
  ValidationGuard guard;
  Rng rng(909);
  const PagedCase cases[] = {
      // GQA 3, blocks of 16; a long prefill beside decodes, then chunks crossing block edges and a late joiner
      {6, 2, 32, 16, 1, {{5, 17, 1, 0}, {1, 1, 9, 0}, {1, 30, 1, 70}, {1, 1, 1, 1}}},
      // MQA, head_dim 128 (two output dims an invocation), blocks of 8, more than one 64-key chunk
      {4, 1, 128, 8, 1, {{70, 3}, {1, 1}, {1, 40}}},
      // MHA, odd head_dim / 2, split-K decode
      {2, 2, 10, 16, 3, {{20, 33, 2}, {1, 1, 1}, {1, 7, 1}}},
      // head_dim 256 and blocks of 32, split-K
      {2, 1, 256, 32, 2, {{40, 1}, {1, 1}}},
  };
  for (const PagedCase& c : cases)
    for (KvType type : {KvType::F32, KvType::F16, KvType::BF16, KvType::Q8}) {
      if (type == KvType::Q8 && c.head_dim % 32 != 0) continue;  // q8 blocks are 32 values of one head
      CAPTURE(kernels::kv_type_name(type));
      CAPTURE(c.head_dim);
      CAPTURE(c.block_size);
      CAPTURE(c.splits);
      check_paged(c, type, rng);
    }
}

TEST_CASE("paged attention refuses inconsistent shapes, naming what is wrong") {
  vk::Device& d = test_device();
  const vk::Buffer b(d, 4096, vk::MemoryKind::Device, "buffer");
  kernels::PagedShape s{.rows = 2, .heads = 3, .kv_heads = 2, .head_dim = 8, .blocks = 4, .table_width = 2,
                        .table_first = 2, .sequences = 1, .scale = 1};
  vk::Recorder rec(d);
  rec.begin();
  CHECK_THROWS_WITH(kernels::record_attention_paged(d, rec, KvType::F32, s, b, 24, b, b, b, b, b),
                    doctest::Contains("not a multiple of kv_heads"));
  s.heads = 4;
  s.table_first = 1;
  CHECK_THROWS_WITH(kernels::record_attention_paged(d, rec, KvType::F32, s, b, 32, b, b, b, b, b),
                    doctest::Contains("overlap"));
  s.table_first = 2;
  s.splits = 2;
  s.split_keys = 4;
  CHECK_THROWS_WITH(kernels::record_attention_paged(d, rec, KvType::F32, s, b, 32, b, b, b, b, b),
                    doctest::Contains("partials"));
}
