#version 450
// kv_write.comp with RoPE (-DROPE there) for a paged cache (paged_kv.glsl): each row's K, rotated, and V go to its
// sequence's block at its position, and the row's query heads are rotated in place. One invocation per pair of
// elements (a block of 32 for Q8), rows of any number of sequences in one dispatch. The rotation and rounding are kv_write.comp's, so a
// paged cache holds bit for bit what the contiguous one does.
#extension GL_GOOGLE_include_directive : require
#include "kv_cache.glsl"

layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer V { float v[]; };
layout(std430, binding = 2) writeonly buffer KPool { KV_WORD k_pool[]; };
layout(std430, binding = 3) writeonly buffer VPool { KV_WORD v_pool[]; };
layout(std430, binding = 4) readonly buffer Paging { int paging[]; };  // row → sequence, then the block tables
layout(std430, binding = 5) readonly buffer Positions { int positions[]; };
layout(std430, binding = 6) buffer Q { float q[]; };
layout(std430, binding = 7) readonly buffer Table { vec2 cos_sin[]; };
layout(push_constant) uniform Push {
  uint rows, kv_heads, head_dim, block_size;
  uint table_width, table_first;  // blocks per table; where the tables start in `paging`
  uint k_stride, v_stride, q_stride;
  uint k_first, v_first, q_first;  // where row 0's k, v and q start in their bindings, in floats
  uint group_size;                 // query heads per KV head
  uint table_positions;            // rows of the cos/sin table
} pc;

#include "paged_kv.glsl"
#include "rope_turn.glsl"

float rotated_k(uint first, uint e, uint table_row) {
  const uint half_dim = pc.head_dim / 2u;
  if (e < half_dim) return rope_turn(k[first + e], k[first + e + half_dim], cos_sin[table_row + e]).x;
  const uint i = e - half_dim;
  return rope_turn(k[first + i], k[first + e], cos_sin[table_row + i]).y;
}

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint index = group * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint pairs = pc.head_dim / 2u;
  const uint items = pc.head_dim / KV_WRITE_VALUES;
  // Per (row, kv head): `items` invocations for the cache, then group_size · pairs for the query heads.
  const uint per_head = items + pc.group_size * pairs;
  if (index >= pc.rows * pc.kv_heads * per_head) return;
  const uint j = index % per_head;
  const uint kv_head = (index / per_head) % pc.kv_heads;
  const uint row = index / (per_head * pc.kv_heads);
  const int position = positions[row];
  const bool in_table = position >= 0 && uint(position) < pc.table_positions;
  const uint table_row = in_table ? uint(position) * pairs : 0u;
  if (j >= items) {  // a query pair (i, i + d/2), in place
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
  if (!in_table) return;  // the host never sends such a row: there is no slot to write
  const uint d = KV_WRITE_VALUES * j;
  const uint column = kv_head * pc.head_dim + d;
  const uint ki = pc.k_first + row * pc.k_stride + column, vi = pc.v_first + row * pc.v_stride + column;
  const uint slot = paged_element(uint(paging[row]), uint(position), kv_head, d);
  const uint head_first = ki - d;
#if defined(KV_Q8)
  float k_block[32], v_block[32];
  for (uint e = 0u; e < Q8_BLOCK; ++e) {
    k_block[e] = rotated_k(head_first, d + e, table_row);
    v_block[e] = v[vi + e];
  }
  KV_STORE_BLOCK(k_pool, slot, k_block);
  KV_STORE_BLOCK(v_pool, slot, v_block);
#else
  const vec2 k_pair = vec2(rotated_k(head_first, d, table_row), rotated_k(head_first, d + 1u, table_row));
  KV_STORE_PAIR(k_pool, slot, k_pair);
  KV_STORE_PAIR(v_pool, slot, vec2(v[vi], v[vi + 1u]));
#endif
}
