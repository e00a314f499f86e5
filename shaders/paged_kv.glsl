// The paged KV cache as the paged kernels see it: one pool per layer for K and one for V, each
// [blocks, kv_heads, block_size, head_dim] in the cache dtype (kv_cache.glsl), shared by every sequence. A step's rows
// come from several sequences: row m belongs to sequence paging[m] of the step, sits at cache position positions[m]
// (its RoPE position too: paged sequences have no padding), and a sequence's key j lives in block
// paging[table_first + seq · table_width + j / block_size] at offset j % block_size.
#ifndef PAGED_KV_GLSL
#define PAGED_KV_GLSL
#include "kv_cache.glsl"

// The element where (key, kv_head, d) of sequence `seq` starts in a pool binding.
uint paged_element(uint seq, uint key, uint kv_head, uint d) {
  const uint block = uint(paging[pc.table_first + seq * pc.table_width + key / pc.block_size]);
  return ((block * pc.kv_heads + kv_head) * pc.block_size + key % pc.block_size) * pc.head_dim + d;
}

#endif
