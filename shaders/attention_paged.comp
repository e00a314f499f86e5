#version 450
// attention.comp over a paged cache (paged_kv.glsl): one workgroup per (row, query head, split), the row seeing its
// sequence's keys 0 .. positions[row]. The rows may come from many sequences at different lengths (decode rows of
// some, prefill chunks of others). Chunks, dot products, online softmax and split-K partials are attention.comp's,
// operation for operation, so the result equals the contiguous kernel's bit for bit over the same keys.
#extension GL_GOOGLE_include_directive : require
#include "kv_cache.glsl"

layout(local_size_x_id = 0) in;  // keys per chunk
layout(constant_id = 1) const uint DIMS_PER_INVOCATION = 1;  // ceil(head_dim / workgroup size)
layout(constant_id = 2) const uint SPLITS = 1;
const uint MAX_HEAD_DIM = 256u;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer KPool { KV_WORD k_cache[]; };
layout(std430, binding = 2) readonly buffer VPool { KV_WORD v_cache[]; };
layout(std430, binding = 3) readonly buffer Paging { int paging[]; };
layout(std430, binding = 4) readonly buffer Positions { int positions[]; };
layout(std430, binding = 5) writeonly buffer Out { float result[]; };
// SPLITS > 1: [rows, heads, SPLITS, head_dim + 2] (output, max, sum), merged by attention_combine.comp.
layout(std430, binding = 6) writeonly buffer Partials { float partials[]; };
layout(push_constant) uniform Push {
  uint rows, kv_heads, head_dim, block_size;
  uint table_width, table_first;
  uint group_size, q_stride, out_stride;
  uint q_first, out_first;
  float scale;
  uint split_keys, partial_first;
} pc;

#include "paged_kv.glsl"

shared float q_shared[MAX_HEAD_DIM];
shared float scores[gl_WorkGroupSize.x];
shared float weights[gl_WorkGroupSize.x];

void main() {
  const uint heads = pc.kv_heads * pc.group_size;
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (wg >= pc.rows * heads * SPLITS) return;  // the whole workgroup leaves together
  const uint tid = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
  const uint split = wg % SPLITS, item = wg / SPLITS;
  const uint head = item % heads, row = item / heads;
  const uint kv_head = head / pc.group_size;
  const uint seq = uint(paging[row]);
  const uint q_base = pc.q_first + row * pc.q_stride + head * pc.head_dim;
  const uint out_base = pc.out_first + row * pc.out_stride + head * pc.head_dim;

  for (uint d = tid; d < pc.head_dim; d += size) q_shared[d] = q[q_base + d];
  barrier();

  uint first_key = 0u;
  uint last_key = uint(positions[row]);
  if (SPLITS > 1u) {
    first_key = split * pc.split_keys;
    last_key = min(last_key, split * pc.split_keys + pc.split_keys - 1u);
  }

  float running_max = 0.0, running_sum = 0.0;
  float acc[DIMS_PER_INVOCATION];
  for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) acc[k] = 0.0;

  for (uint chunk = first_key; chunk <= last_key; chunk += size) {
    const uint keys_here = min(size, last_key + 1u - chunk);
    if (tid < keys_here) {
      const uint key_base = paged_element(seq, chunk + tid, kv_head, 0u);
      float dot_qk = 0.0;
      for (uint d = 0u; d < pc.head_dim; d += 2u) {
        const vec2 kk = KV_LOAD_PAIR(k_cache, key_base + d);
        dot_qk += q_shared[d] * kk.x + q_shared[d + 1u] * kk.y;
      }
      scores[tid] = dot_qk * pc.scale;
    }
    barrier();
    float new_max = scores[0];
    for (uint j = 1u; j < keys_here; ++j) new_max = max(new_max, scores[j]);
    if (chunk != first_key) new_max = max(new_max, running_max);
    const float rescale = chunk == first_key ? 0.0 : exp(running_max - new_max);
    running_max = new_max;
    if (tid < keys_here) weights[tid] = exp(scores[tid] - new_max);
    barrier();
    float chunk_sum = 0.0;
    for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
      const uint d = tid + k * size;
      if (d < pc.head_dim) {
        float weighted = 0.0;
        for (uint j = 0u; j < keys_here; ++j) {
          const float w = weights[j];
          weighted += w * KV_LOAD(v_cache, paged_element(seq, chunk + j, kv_head, d));
          if (k == 0u) chunk_sum += w;
        }
        acc[k] = acc[k] * rescale + weighted;
      }
    }
    running_sum = running_sum * rescale + chunk_sum;
  }

  if (SPLITS > 1u) {
    const uint p = pc.partial_first + ((row * heads + head) * SPLITS + split) * (pc.head_dim + 2u);
    for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
      const uint d = tid + k * size;
      if (d < pc.head_dim) partials[p + d] = acc[k];
    }
    if (tid == 0u) {
      partials[p + pc.head_dim] = running_max;
      partials[p + pc.head_dim + 1u] = running_sum;
    }
    return;
  }
  const float inv_sum = running_sum > 0.0 ? 1.0 / running_sum : 0.0;
  for (uint k = 0u; k < DIMS_PER_INVOCATION; ++k) {
    const uint d = tid + k * size;
    if (d < pc.head_dim) result[out_base + d] = acc[k] * inv_sum;
  }
}
