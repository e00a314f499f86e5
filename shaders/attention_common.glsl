// What the attention kernels (attention.comp: a query row a workgroup; attention_prefill.comp: tiles of rows) share:
// their bindings of q, the cache planes, kv_start and the output, and their push constants, which the C++ side fills
// from one struct (kernels/attention.cpp's AttentionPush).
#ifndef ATTENTION_COMMON_GLSL
#define ATTENTION_COMMON_GLSL
#include "kv_cache.glsl"

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer KCache { KV_WORD k_cache[]; };
layout(std430, binding = 2) readonly buffer VCache { KV_WORD v_cache[]; };
layout(std430, binding = 3) readonly buffer KvStart { int kv_start[]; };
layout(std430, binding = 4) writeonly buffer Out { float result[]; };
layout(push_constant) uniform Push {
  uint tokens, past, kv_heads, group_size, head_dim, capacity;  // group_size = heads / kv_heads
  uint q_stride, out_stride;  // floats between rows of q and out
  uint first_plane, planes;   // the planes of this dispatch, as b · kv_heads + kv_head
  uint first_row;             // the row the q and out bindings start at (b0 · tokens)
  uint q_first, out_first;    // where that row starts in the q and out bindings, in floats
  uint cache_first;           // where plane first_plane starts in the cache bindings, in elements (even)
  float scale;
  uint past_slot;             // ~0u: past is pc.past; else kv_start[past_slot] holds it (a replayed recording)
  uint split_keys;            // attention.comp with SPLITS > 1: keys per split (split s takes keys s · split_keys ...)
  uint partial_first;         // ... and where this dispatch's row 0 starts in the partials binding, in floats
} pc;

#endif  // ATTENTION_COMMON_GLSL
