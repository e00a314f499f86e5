#pragma once
// The KV cache write and causal GQA attention over the cache.
//
// Cache layout per layer: K and V each [batch, kv_heads, capacity, head_dim] in the cache dtype (f32, f16, bf16, q8),
// in device memory for the whole session. A step processes `tokens` new tokens for each of `batch` sequences
// (left-padded so they have equal length): rows of Q/K/V are m = b * tokens + t, and token t of every sequence goes
// to cache slot past + t. Slots < kv_start[b] (left padding) are masked out for sequence b.
// The padding mask is this one integer a sequence rather than an additive [batch, capacity] float mask: with left
// padding and a causal mask, transformers' additive mask is -inf exactly on slots before the first unpadded one and
// after the query, so the integer carries all of it, costs no memory traffic, and cannot drift from the cache.
#include "vk/recorder.hpp"

namespace inferno::kernels {

// Q8: int8 values with an f32 scale (absmax / 127) per block of 32 along head_dim, 36 bytes a block (kv_cache.glsl);
// it needs head_dim to be a multiple of 32.
enum class KvType { F32, F16, BF16, Q8 };
const char* kv_type_name(KvType);
// Bytes of `elements` cache values (for Q8 a multiple of 32: whole heads).
uint64_t kv_bytes(KvType, uint64_t elements);
// Elements one cache-write invocation stores: a pair, or a Q8 block.
uint32_t kv_write_values(KvType);
// Throws naming `what` when a cache of this dtype cannot hold heads of head_dim values (Q8: a multiple of 32).
void check_kv_head_dim(const char* what, KvType type, uint32_t head_dim);

struct AttentionShape {
  uint32_t batch = 1, tokens = 1, past = 0;  // this step: batch × tokens new rows; `past` slots already filled
  uint32_t heads = 1, kv_heads = 1, head_dim = 0;
  uint32_t capacity = 0;  // cache slots per sequence
  float scale = 0;        // 1/sqrt(head_dim)
  // The kernels read `past` from kv_start[batch] when they run instead of taking this value: one recording then
  // serves every decode step (replayed with new ids, positions and past in host-visible buffers). The caller keeps
  // past + tokens within capacity; `past` here is only checked.
  bool past_at_run_time = false;
  // Split-K: the keys are taken in `splits` ranges of ceil(capacity / splits) slots by as many workgroups per
  // (query row, head), then combined (record_attention's `partials` holds their results). For decode over long
  // contexts on GPUs; 1 = one workgroup per (query row, head).
  uint32_t splits = 1;
  // Rows: one workgroup per (query row, head) (attention.comp; the only kernel with splits > 1). Tiles: one per
  // (tile of consecutive query rows, head), each chunk of keys read once for the whole tile (attention_prefill.comp).
  // Auto: Tiles for several query rows a sequence without splits, Rows otherwise.
  enum class Kernel { Auto, Rows, Tiles } kernel = Kernel::Auto;
};

// Keys a chunk of the online softmax takes in the kernel record_attention picks for this shape (its rounding error
// grows with the number of chunks; the tests' tolerance uses it).
uint32_t attention_chunk_keys(const AttentionShape& shape);

// Floats record_attention's `partials` needs for `rows` query rows (0 without splits).
uint64_t attention_partial_floats(const AttentionShape& shape, uint32_t rows);

// Writes K and V rows (f32 [batch*tokens, kv_heads*head_dim], row strides given, starting at column k_column /
// v_column of their rows: k and v may sit side by side in one q | k | v buffer) into the cache at slots
// past..past+tokens-1. kv_start (int32 [batch], [batch + 1] with past_at_run_time) is read only for the run-time past.
// RoPE applied by the KV write itself (one dispatch for a layer's rotation and cache write): K is rotated on its way
// into the cache, its rows left as they were, and the query heads (shape.heads of them, f32 rows of q_stride floats
// from column q_column) are rotated in place, exactly as record_rope turns them (rope.hpp: the table, positions and
// NaN for a position outside the table).
struct KvWriteRope {
  const vk::Buffer& q;
  uint32_t q_stride, q_column;
  const vk::Buffer& positions;      // int32 [batch * tokens]
  const vk::Buffer& cos_sin_table;  // [table_positions, head_dim / 2] of (cos, sin)
  uint32_t table_positions;
};
void record_kv_write(vk::Device& device, vk::Recorder& rec, KvType type, const AttentionShape& shape,
                     const vk::Buffer& k, uint32_t k_stride, const vk::Buffer& v, uint32_t v_stride,
                     const vk::Buffer& k_cache, const vk::Buffer& v_cache, const vk::Buffer& kv_start,
                     uint32_t k_column = 0, uint32_t v_column = 0, const KvWriteRope* rope = nullptr);

// out[m, h*head_dim + d] = softmax_j(q·k_j · scale, j ≤ past + t, j ≥ kv_start[b]) · v_j, f32 throughout.
// q: f32 [batch*tokens, heads*head_dim] (row stride q_stride), kv_start: int32 [batch] (then past, with
// past_at_run_time), out f32 [batch*tokens, heads*head_dim].
// A row that sees no key (a left-padding query in prefill: past + t < kv_start[b]) gets zeros, not NaN.
// head_dim must be even and at most 256. Keys are processed in chunks with an online softmax, so any context length
// works in bounded shared memory; a cache larger than one storage binding is processed in several dispatches.
void record_attention(vk::Device& device, vk::Recorder& rec, KvType type, const AttentionShape& shape,
                      const vk::Buffer& q, uint32_t q_stride, const vk::Buffer& k_cache, const vk::Buffer& v_cache,
                      const vk::Buffer& kv_start, const vk::Buffer& out, const vk::Buffer* partials = nullptr);

}  // namespace inferno::kernels
