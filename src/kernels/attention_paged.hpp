#pragma once
// The KV-cache write and attention over a paged cache shared by many sequences (continuous batching).
//
// Pool layout per layer: K and V each [blocks, kv_heads, block_size, head_dim] in the cache dtype. A step's rows come
// from any number of sequences, each with its own length: `paging` (int32, host-visible) holds, for each row, the
// index of its sequence in this step, then from `table_first` on the sequences' block tables, `table_width` block ids
// each; `positions` (int32 [rows]) holds each row's position, which is both its cache slot and its RoPE position.
// Row m sees its sequence's keys 0 .. positions[m] (the keys of earlier rows of the same step included: the write
// comes first). The kernels are kv_write.comp's and attention.comp's arithmetic over another addressing, so the
// paged cache and its attention equal the contiguous ones bit for bit.
#include "kernels/attention.hpp"

namespace inferno::kernels {

struct PagedShape {
  uint32_t rows = 0;
  uint32_t heads = 1, kv_heads = 1, head_dim = 0;
  uint32_t block_size = 16;
  uint32_t blocks = 0;        // blocks in the pool
  uint32_t table_width = 0;   // block ids per sequence in `paging`
  uint32_t table_first = 0;   // where the tables start in `paging` (at least rows)
  uint32_t sequences = 0;     // tables in `paging`
  float scale = 0;
  // Split-K: keys in `splits` ranges of split_keys keys, each its own workgroup, merged by attention_combine.comp
  // (record_attention_paged's `partials`). split_keys must cover the longest row: splits · split_keys > positions.
  uint32_t splits = 1, split_keys = 0;
};

// Bytes of one layer's K (or V) pool.
uint64_t paged_pool_bytes(const PagedShape& shape, KvType type);
// Floats record_attention_paged's `partials` needs (0 without splits).
uint64_t paged_partial_floats(const PagedShape& shape);

// K and V rows (f32, row strides given, from columns k_column / v_column) rotated (K) and written into the pools at
// each row's position; the query heads (rope.q) rotated in place, as record_kv_write with RoPE does.
void record_kv_write_paged(vk::Device& device, vk::Recorder& rec, KvType type, const PagedShape& shape,
                           const vk::Buffer& k, uint32_t k_stride, uint32_t k_column, const vk::Buffer& v,
                           uint32_t v_stride, uint32_t v_column, const vk::Buffer& k_pool, const vk::Buffer& v_pool,
                           const vk::Buffer& paging, const vk::Buffer& positions, const KvWriteRope& rope);

// out[m, h·head_dim + d] = softmax_j(q·k_j · scale, j ≤ positions[m]) · v_j over row m's sequence, f32 throughout.
void record_attention_paged(vk::Device& device, vk::Recorder& rec, KvType type, const PagedShape& shape,
                            const vk::Buffer& q, uint32_t q_stride, const vk::Buffer& k_pool, const vk::Buffer& v_pool,
                            const vk::Buffer& paging, const vk::Buffer& positions, const vk::Buffer& out,
                            const vk::Buffer* partials = nullptr);

}  // namespace inferno::kernels
