#version 450
// Writes this step's K and V rows (f32 [batch·tokens, kv_heads·head_dim], rows m = b·tokens + t) into the cache at
// slots past + t (past from the push constants, or from kv_start[past_slot] when the recording is replayed step after
// step), rounding to the cache dtype (round to nearest even, as PyTorch's .to(dtype) does; Q8: kv_cache.glsl's
// blocks). One invocation per pair of elements (per block of 32 for Q8); the dispatch covers the planes
// [first_plane, first_plane + planes) of the cache.
//
// With -DROPE (kv_write_rope_*), the same dispatch also applies RoPE (rope.comp's rotation, table and NaN for a
// position outside it): K is rotated on its way into the cache (its rows stay as they were) and the plane's query
// heads (group_size of them per KV head) are rotated in place in the q rows, so that a layer needs no RoPE dispatch
// of its own. Each invocation computes its two cache elements independently (element e < d/2 pairs with e + d/2, the
// others with e − d/2), which suits any even head_dim.
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
#if defined(ROPE)
  uint group_size;            // query heads per KV head
  uint q_stride, q_first;     // floats between q rows; where row first_row starts in the q binding
  uint positions_first;       // where row first_row's position is in the positions binding
  uint table_positions;       // rows of the cos/sin table
#endif
} pc;

#if defined(ROPE)
#include "rope_turn.glsl"

layout(std430, binding = 5) buffer Q { float q[]; };
layout(std430, binding = 6) readonly buffer Positions { int positions[]; };
layout(std430, binding = 7) readonly buffer Table { vec2 cos_sin[]; };

// Element e of a head whose first element is x[first], rotated by the table row at `table_row` (rotate_half pairs).
float rotated_k(uint first, uint e, uint table_row) {
  const uint half_dim = pc.head_dim / 2u;
  if (e < half_dim) return rope_turn(k[first + e], k[first + e + half_dim], cos_sin[table_row + e]).x;
  const uint i = e - half_dim;
  return rope_turn(k[first + i], k[first + e], cos_sin[table_row + i]).y;
}
#endif

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint index = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint pairs = pc.head_dim / 2u;
  const uint items = pc.head_dim / KV_WRITE_VALUES;  // cache invocations per (plane, token)
#if defined(ROPE)
  // Per (plane, token): `items` invocations for the cache, then group_size · pairs for the query heads.
  const uint per_token = items + pc.group_size * pairs;
#else
  const uint per_token = items;
#endif
  if (index >= pc.planes * pc.tokens * per_token) return;
  const uint j = index % per_token;
  const uint t = (index / per_token) % pc.tokens;
  const uint local_plane = index / (per_token * pc.tokens);
  const uint plane = pc.first_plane + local_plane;
  const uint b = plane / pc.kv_heads, kv_head = plane % pc.kv_heads;
  const uint row = b * pc.tokens + t - pc.first_row;
#if defined(ROPE)
  const int position = positions[pc.positions_first + row];
  const bool in_table = position >= 0 && uint(position) < pc.table_positions;
  const uint table_row = in_table ? uint(position) * pairs : 0u;
  if (j >= items) {  // a query pair (i, i + d/2), in place, as rope.comp turns it
    const uint head = kv_head * pc.group_size + (j - items) / pairs, i = (j - items) % pairs;
    const uint first = pc.q_first + row * pc.q_stride + head * pc.head_dim + i;
    if (!in_table) {
      q[first] = quiet_nan();
      q[first + pairs] = quiet_nan();
      return;
    }
    const vec2 turned = rope_turn(q[first], q[first + pairs], cos_sin[table_row + i]);
    q[first] = turned.x;
    q[first + pairs] = turned.y;
    return;
  }
#endif
  const uint d = KV_WRITE_VALUES * j;
  const uint column = kv_head * pc.head_dim + d;
  const uint ki = pc.k_first + row * pc.k_stride + column, vi = pc.v_first + row * pc.v_stride + column;
  const uint past = pc.past_slot == ~0u ? pc.past : uint(kv_start[pc.past_slot]);
  const uint slot = pc.cache_first + (local_plane * pc.capacity + past + t) * pc.head_dim + d;
#if defined(KV_Q8)
  float k_block[32], v_block[32];
  for (uint e = 0u; e < Q8_BLOCK; ++e) {
#if defined(ROPE)
    k_block[e] = in_table ? rotated_k(ki - d, d + e, table_row) : quiet_nan();
#else
    k_block[e] = k[ki + e];
#endif
    v_block[e] = v[vi + e];
  }
  KV_STORE_BLOCK(k_cache, slot, k_block);
  KV_STORE_BLOCK(v_cache, slot, v_block);
#else
#if defined(ROPE)
  const uint head_first = ki - d;
  const vec2 k_pair = in_table ? vec2(rotated_k(head_first, d, table_row), rotated_k(head_first, d + 1u, table_row))
                               : vec2(quiet_nan());
#else
  const vec2 k_pair = vec2(k[ki], k[ki + 1u]);
#endif
  KV_STORE_PAIR(k_cache, slot, k_pair);
  KV_STORE_PAIR(v_cache, slot, vec2(v[vi], v[vi + 1u]));
#endif
}
