#version 450
// Writes this step's K and V rows (f32 [batch·tokens, kv_heads·head_dim], rows m = b·tokens + t) into the cache at
// slots past + t (past from the push constants, or from kv_start[past_slot] when the recording is replayed step after
// step), rounding to the cache dtype (round to nearest even, as PyTorch's .to(dtype) does). One invocation
// per pair of elements; the dispatch covers the planes [first_plane, first_plane + planes) of the cache.
#extension GL_GOOGLE_include_directive : require
#include "kv_cache.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer V { float v[]; };
layout(std430, binding = 2) writeonly buffer KCache { KV_WORD k_cache[]; };
layout(std430, binding = 3) writeonly buffer VCache { KV_WORD v_cache[]; };
layout(std430, binding = 4) readonly buffer KvStart { int kv_start[]; };  // read only for past_slot
layout(push_constant) uniform Push {
  uint tokens, past, kv_heads, head_dim, capacity;
  uint k_stride, v_stride;    // floats between rows of k and v
  uint first_plane, planes;   // the planes of this dispatch, as b · kv_heads + kv_head
  uint first_row;             // the row the k and v bindings start at (b0 · tokens)
  uint k_first, v_first;      // where that row starts in the k and v bindings, in floats
  uint cache_first;           // where plane first_plane starts in the cache bindings, in elements (even)
  uint past_slot;             // ~0u: past is pc.past; else kv_start[past_slot] holds it (a replayed recording)
} pc;

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint index = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint pairs = pc.head_dim / 2u;
  if (index >= pc.planes * pc.tokens * pairs) return;
  const uint d = 2u * (index % pairs);
  const uint t = (index / pairs) % pc.tokens;
  const uint local_plane = index / (pairs * pc.tokens);
  const uint plane = pc.first_plane + local_plane;
  const uint b = plane / pc.kv_heads, kv_head = plane % pc.kv_heads;
  const uint row = b * pc.tokens + t - pc.first_row;
  const uint column = kv_head * pc.head_dim + d;
  const uint ki = pc.k_first + row * pc.k_stride + column, vi = pc.v_first + row * pc.v_stride + column;
  const uint past = pc.past_slot == ~0u ? pc.past : uint(kv_start[pc.past_slot]);
  const uint slot = pc.cache_first + (local_plane * pc.capacity + past + t) * pc.head_dim + d;
  KV_STORE_PAIR(k_cache, slot, vec2(k[ki], k[ki + 1u]));
  KV_STORE_PAIR(v_cache, slot, vec2(v[vi], v[vi + 1u]));
}
